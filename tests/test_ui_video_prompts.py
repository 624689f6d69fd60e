"""The Video tab's Prompts accordion, called in-process as the page calls it, on the tab's example clip:
a frame shows in the click canvas, clicks land in source-video pixels, and the run uses (and records) them."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import pytest

from app.ui import handlers as H
from app.ui import video_handlers as VH
from app.ui import video_prompts as VP
from app.ui.video_state import VideoSession

SOURCE_WH = (540, 960)  # the example clip's size, 100 frames


def test_a_frame_shows_and_clicks_are_in_source_pixels() -> None:
    state, canvas, status = VP.on_show_frame(None, str(VH.EXAMPLE_VIDEO), 30)
    assert state.frame == 30 and state.size_wh == SOURCE_WH
    assert canvas["src"].startswith("data:image/jpeg;base64,")
    assert (canvas["w"], canvas["h"]) == (round(540 * state.scale), round(960 * state.scale))
    assert "Frame 30" in status
    state, canvas, status = VP.on_frame_click(state, "positive", None, 100 * state.scale, 200 * state.scale)
    state, canvas, status = VP.on_frame_click(state, "keypoint", "left_wrist", 50 * state.scale, 60 * state.scale)
    assert canvas["svg"].count('class="pos"') == 1 and canvas["svg"].count('class="kp"') == 1
    assert "1 positive" in status and "1 keypoint" in status
    # Another frame: its own clicks; the first frame's stay
    state, canvas, status = VP.on_show_frame(state, str(VH.EXAMPLE_VIDEO), 0)
    assert 'class="pos"' not in canvas["svg"] and "Frames with prompts: 30" in status
    prompts = VP.video_prompts(state, str(VH.EXAMPLE_VIDEO))
    assert prompts is not None and list(prompts.frames) == [30]
    (x, y, label), = prompts.frames[30].points_n3
    assert (x, y, label) == (pytest.approx(100.0, abs=0.01), pytest.approx(200.0, abs=0.01), 1)
    assert prompts.frames[30].keypoints["left_wrist"] == (pytest.approx(50.0, abs=0.01), pytest.approx(60.0, abs=0.01))
    state, _, _ = VP.on_frame_undo(VP.on_show_frame(state, str(VH.EXAMPLE_VIDEO), 30)[0])
    assert list(VP.video_prompts(state, str(VH.EXAMPLE_VIDEO)).frames[30].keypoints) == []
    assert VP.video_prompts(state, "another.mp4") is None  # prompts belong to their video


def test_bad_frames_and_clicks_give_a_sentence() -> None:
    with pytest.raises(gr.Error, match="has frames 0 to 99; there is no frame 500"):
        VP.on_show_frame(None, str(VH.EXAMPLE_VIDEO), 500)
    with pytest.raises(gr.Error, match="Show a frame"):
        VP.on_frame_click(VP.VideoPromptState(), "positive", None, 1.0, 1.0)
    state = VP.on_show_frame(None, str(VH.EXAMPLE_VIDEO), 0)[0]
    with pytest.raises(gr.Error, match="outside the 540x960 image"):
        VP.on_frame_click(state, "positive", None, 5000.0, 1.0)


def test_the_run_uses_and_records_the_prompts(pipeline) -> None:  # noqa: ANN001 - conftest's warm ImagePipeline
    state = VP.on_show_frame(None, str(VH.EXAMPLE_VIDEO), 0)[0]
    state = VP.on_frame_click(state, "positive", None, 2 * state.scale, 2 * state.scale)[0]  # the empty corner
    session = VideoSession()
    try:
        updates = list(VH.on_video_run(session, VH.EXAMPLE_VIDEO, stride=6, end_s=0.2, engine=H.Engine(pipeline),
                                       stream_period_s=0.0, prompts=VP.video_prompts(state, str(VH.EXAMPLE_VIDEO))))
        last = updates[-1]
        assert "⚠ the point at (2, 2) on frame 0 is on nobody; nothing was selected" in last.status
        doc = json.loads(Path(next(f for f in last.files if f.endswith("tracks.json"))).read_text())
        assert doc["options"]["prompts"]["0"]["points"] == [[2.0, 2.0, 1]]
        assert len(doc["tracks"]) == 1  # nothing selected: the dancer is still tracked
        with pytest.raises(gr.Error, match="a prompt is on frame 3, which is not processed"):
            bad = VP.on_frame_click(VP.on_show_frame(state, str(VH.EXAMPLE_VIDEO), 3)[0], "positive", None, 9, 9)[0]
            list(VH.on_video_run(session, VH.EXAMPLE_VIDEO, stride=6, end_s=0.2, engine=H.Engine(pipeline),
                                 prompts=VP.video_prompts(bad, str(VH.EXAMPLE_VIDEO))))
    finally:
        session.cleanup()
