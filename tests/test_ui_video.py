"""The Video tab's callbacks called in-process, as the page calls them, on the tab's example clip.

A run streams rrd chunks that Rerun reads back (the video asset, every processed frame on the frame
timeline), reports progress as frames done of planned, and writes its downloads; Cancel after N frames
keeps tracks.json and result.rrd with exactly those frames; bad videos and options give one sentence.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest
from rerun.chunk import RrdReader

from app.ui import handlers as H
from app.ui import video_handlers as VH
from app.ui.state import SessionRegistry
from app.ui.video_state import VideoSession
from viz.rrd_read import timeline_values

FPS = 60.0  # the example clip: 100 frames at 60 fps, 540x960
STRIDE, END_S = 6, 1.0  # frames 0, 6, ..., 54: 10 frames


@pytest.fixture()
def state() -> VideoSession:
    s = VideoSession()
    yield s
    s.cleanup()


def frames_in_chunk(chunk: bytes, path: Path) -> tuple[set[str], set[int]]:
    """Entity paths and frame-timeline values of one streamed chunk, read back with Rerun's reader."""
    path.write_bytes(chunk)
    entities, frames = set(), set()
    for c in RrdReader(path).stream():
        entities.add(c.entity_path.lstrip("/"))
        if not c.is_static and "frame" in c.timeline_names:
            frames.update(int(v) for v in c.to_record_batch().column("frame").to_pylist() if v is not None)
    return entities, frames


@pytest.fixture(scope="module")
def full_run(engine: H.Engine) -> tuple[VideoSession, list[VH.VideoUpdate], list[tuple]]:
    s = VideoSession()
    calls: list[tuple] = []
    def progress(value: object, **kw: object) -> None:
        calls.append((value, kw))

    updates = list(VH.on_video_run(s, VH.EXAMPLE_VIDEO, stride=STRIDE, end_s=END_S, engine=engine,
                                   progress=progress, stream_period_s=0.0))  # fmt: skip
    yield s, updates, calls
    s.cleanup()


def test_example_clip_is_small_and_credited() -> None:
    assert VH.EXAMPLE_VIDEO.is_file() and VH.EXAMPLE_VIDEO.stat().st_size < 2 * 2**20
    notes = (H.EXAMPLES_DIR / "LICENSES.md").read_text()
    assert "dancer.mp4" in notes and "BSD" in notes and "perfanalytics" in notes


def test_run_streams_every_frame_and_writes_downloads(full_run, tmp_path: Path) -> None:  # noqa: ANN001
    state, updates, calls = full_run
    expected = list(range(0, int(END_S * FPS), STRIDE))
    # Streamed while it runs: the first chunk holds the video asset, then one chunk per frame (period 0).
    assert updates[0].files == [] and updates[0].chunk is not None
    first_entities, _ = frames_in_chunk(updates[0].chunk, tmp_path / "first.rrd")
    assert "world/camera/image" in first_entities
    streamed: set[int] = set()
    for i, u in enumerate(updates):
        if u.chunk is not None:
            streamed |= frames_in_chunk(u.chunk, tmp_path / f"{i}.rrd")[1]
    assert streamed == set(expected)
    assert [u.frames_done for u in updates[1:-1]] == list(range(1, len(expected) + 1))
    assert "world/people/0/skeleton" in set().union(
        *(frames_in_chunk(u.chunk, tmp_path / "x.rrd")[0] for u in updates[1:3] if u.chunk))
    # Progress: frames done of planned (Gradio shows the bar and its ETA from these)
    tuples = [v for v, _ in calls if isinstance(v, tuple)]
    assert tuples[0] == (1, len(expected)) and tuples[-1] == (len(expected), len(expected))
    assert "left" in (updates[2].status or "")  # the ETA in the status line
    # The end: status, downloads, and outputs holding every processed frame
    last = updates[-1]
    assert last.status is not None and last.status.startswith("**Done**: 10 frames of dancer.mp4")
    assert "person 0" in last.status and "Traceback" not in last.status
    names = [Path(f).name for f in last.files or []]
    assert {"tracks.json", "result.rrd", "track_0.npz", "track_0.bvh"} <= set(names)
    out = Path(last.files[0]).parent
    doc = json.loads((out / "tracks.json").read_text())
    assert doc["frames"] == expected and doc["tracks"][0]["frames"] == expected
    assert 1.5 < doc["tracks"][0]["height_m"] < 1.95
    assert timeline_values(out / "result.rrd", "frame", "world/camera/image") == set(expected)
    assert not state.running and state.last is not None and not state.last.cancelled


def test_cancel_keeps_the_frames_done(engine: H.Engine, state: VideoSession) -> None:
    n_cancel = 3

    def progress(value: object, **_: object) -> None:  # Cancel pressed once 3 frames are done
        if isinstance(value, tuple) and value[0] == n_cancel:
            assert VH.on_video_cancel(state) is not None

    updates = list(VH.on_video_run(state, VH.EXAMPLE_VIDEO, stride=STRIDE, end_s=END_S, engine=engine,
                                   progress=progress))  # fmt: skip
    last = updates[-1]
    assert last.status is not None and last.status.startswith(f"**Cancelled** after {n_cancel} of 10 frames")
    out = Path(last.files[0]).parent
    doc = json.loads((out / "tracks.json").read_text())
    done = [0, STRIDE, 2 * STRIDE]
    assert doc["frames"] == done and doc["tracks"][0]["frames"] == done and doc["options"]["cancelled"] is True
    assert timeline_values(out / "result.rrd", "frame") == set(done)
    assert np.load(out / "track_0.npz")["bone_rot_cam_fj33"].shape[0] == n_cancel
    assert VH.on_video_cancel(state) is None  # nothing left to cancel


def test_truncated_video_keeps_what_could_be_processed(engine: H.Engine, state: VideoSession,
                                                        tmp_path: Path) -> None:  # fmt: skip
    data = VH.EXAMPLE_VIDEO.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    updates = list(VH.on_video_run(state, cut, stride=20, engine=engine))
    last = updates[-1]
    assert last.status is not None and "truncated video" in last.status and "cut.mp4" in last.status
    doc = json.loads((Path(last.files[0]).parent / "tracks.json").read_text())
    assert 1 <= len(doc["frames"]) < 5 and doc["frames"][0] == 0


def test_bad_videos_and_options_give_one_sentence(engine: H.Engine, state: VideoSession, tmp_path: Path) -> None:
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(b"this is not a video" * 100)
    with pytest.raises(gr.Error, match=r"holiday\.mp4 cannot be read"):
        list(VH.on_video_run(state, bad, engine=engine))
    assert not state.running and not any(state.tmp_dir.rglob("*.rrd"))  # nothing left behind
    with pytest.raises(gr.Error, match="Upload a video"):
        list(VH.on_video_run(state, None, engine=engine))
    with pytest.raises(gr.Error, match="stride must be at least 1"):
        list(VH.on_video_run(state, VH.EXAMPLE_VIDEO, stride=0, engine=engine))
    with pytest.raises(gr.Error, match="time range 2 s to 1 s is empty"):
        list(VH.on_video_run(state, VH.EXAMPLE_VIDEO, start_s=2, end_s=1, engine=engine))
    with pytest.raises(gr.Error, match="no frame in the requested time range"):
        list(VH.on_video_run(state, VH.EXAMPLE_VIDEO, start_s=5, engine=engine))  # the clip is 1.7 s long


def test_nobody_in_the_video(engine: H.Engine, state: VideoSession, tmp_path: Path) -> None:
    empty = tmp_path / "wall.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(4):
        writer.write(np.full((120, 160, 3), 90 + 10 * i, np.uint8))
    writer.release()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        updates = list(VH.on_video_run(state, empty, engine=engine))
    last = updates[-1]
    assert last.status is not None and "Nobody was found in the 4 processed frames" in last.status
    assert any("Nobody was found in wall.avi" in str(w.message) for w in caught)
    doc = json.loads((Path(last.files[0]).parent / "tracks.json").read_text())
    assert doc["frames"] == [0, 1, 2, 3] and doc["tracks"] == []


def test_closing_the_tab_removes_its_folder(engine: H.Engine) -> None:
    registry = SessionRegistry(factory=VideoSession)
    s = registry.get("tab-1")
    assert isinstance(s, VideoSession) and registry.get("tab-1") is s
    folder = s.tmp_dir
    out = s.start_run()
    out.mkdir(parents=True)
    (out / "tracks.json").write_text("{}")
    s.end_run(None)
    assert registry.close("tab-1") and not folder.exists() and s.should_stop()


def test_page_has_the_video_tab(engine: H.Engine) -> None:
    from app.ui.page import build_demo

    demo = build_demo(engine)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"video-upload", "video-example", "video-run", "video-cancel", "video-viewer", "video-status",
            "video-downloads", "upload", "viewer"} <= ids  # fmt: skip
    tabs = [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
    assert tabs[:2] == ["Image", "Video"]
