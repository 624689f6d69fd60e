"""The Video tab's Prompts accordion as plain functions: show a frame in the click canvas, add clicks on it.

Each frame has its own click history (app.ui.prompts.PromptHistory: positive / negative points, boxes,
keypoints), kept in an immutable `VideoPromptState` (the tab's gr.State); `video_prompts` turns them
into the pipeline's VideoPrompts for the run (pipelines.tracking.prompts says what they do). The
canvas shows a downscaled copy of the frame; clicks come in display pixels and are stored in pixels of
the source video (origin at the top-left corner).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gradio as gr

from app.ui import canvas as C
from app.ui import guard as G
from app.ui import prompts as P
from pipelines.errors import UserFacingError
from pipelines.io.limits import MAX_VIDEO_PROMPTS
from pipelines.tracking.prompts import VideoPrompts

DISPLAY_MAX_SIDE = 960
"""The frame is shown downscaled to this many pixels at most."""


@dataclass(frozen=True)
class VideoPromptState:
    """The accordion's state: which video and frame is shown, and every frame's clicks."""

    path: str | None = None
    """The video the prompts are about (new video: prompts cleared)."""
    frame: int = 0
    """The frame shown (index in the video, 0-based)."""
    size_wh: tuple[int, int] = (0, 0)
    """The video's size, source pixels."""
    scale: float = 1.0
    """Display pixels per source pixel."""
    src: str = ""
    """The shown frame as a data: URL."""
    histories: dict[int, P.PromptHistory] = field(default_factory=dict)
    """Frame index -> its clicks (source pixels)."""


def _history(state: VideoPromptState) -> P.PromptHistory:
    return state.histories.get(state.frame, P.PromptHistory())


def _canvas(state: VideoPromptState) -> dict[str, Any] | None:
    if not state.src:
        return None
    w, h = (round(v * state.scale) for v in state.size_wh)
    svg = P.prompts_svg(_history(state), state.scale, (w, h))
    return C.canvas_value(state.src, (w, h), svg, sum(len(hi) for hi in state.histories.values()))


def status(state: VideoPromptState) -> str:
    """Which frame is shown, its prompts, and the frames that have some."""
    if not state.src:
        return "Upload a video, then show a frame to click on it."
    text = f"Frame {state.frame}: {P.describe(_history(state))}."
    others = [f"{i} ({P.summary(h)})" for i, h in sorted(state.histories.items()) if h.actions]
    if others:
        text += " Frames with prompts: " + ", ".join(others) + "."
    return text


def _answer(state: VideoPromptState) -> tuple[VideoPromptState, dict[str, Any] | None, str]:
    return state, _canvas(state), status(state)


@G.guarded
def on_show_frame(state: VideoPromptState | None, path: str | Path | None, frame: float | None
                  ) -> tuple[VideoPromptState, dict[str, Any] | None, str]:  # fmt: skip
    """Show frame `frame` of the video at `path` in the canvas (a new video clears the prompts)."""
    from pipelines.io.video_io import probe, read_video

    state = state or VideoPromptState()
    if path is None:
        return _answer(VideoPromptState())
    if not isinstance(path, str | Path):
        raise gr.Error("The video upload could not be read: it is not a file. Upload the video again.")
    index = int(G.number(frame, "frame number", 0, integer=True, minimum=0))  # type: ignore[arg-type]
    try:
        info = probe(path)
        if index < 0 or (info.frame_count > 0 and index >= info.frame_count):
            last = info.frame_count - 1
            raise UserFacingError(f"{info.path.name} has frames 0 to {last}; there is no frame {index}.")
        frames = read_video(info, start_s=index / info.fps, prefetch=0)
        try:
            decoded = next(iter(frames), None)
        finally:
            frames.close()
    except UserFacingError as err:
        raise gr.Error(str(err)) from err
    if decoded is None:
        raise gr.Error(f"Frame {index} of {Path(path).name} could not be read.")
    display, scale = P.display_image(decoded.rgb_hw3, DISPLAY_MAX_SIDE)
    histories = state.histories if state.path == str(path) else {}
    h, w = decoded.rgb_hw3.shape[:2]
    return _answer(VideoPromptState(str(path), decoded.index, (w, h), scale, C.data_url(display), histories))


def _edit(state: VideoPromptState | None, edit: Any) -> tuple[VideoPromptState, dict[str, Any] | None, str]:
    if state is None or not state.src:
        raise gr.Error("Show a frame of the video first (the Frame number, then Show frame).")
    try:
        history = edit(_history(state))
    except UserFacingError as err:
        raise gr.Error(str(err)) from err
    return _answer(replace(state, histories={**state.histories, state.frame: history}))


@G.guarded
def on_frame_click(state: VideoPromptState | None, mode: str, joint: str | None, x_display: float,
                   y_display: float) -> tuple[VideoPromptState, dict[str, Any] | None, str]:  # fmt: skip
    """A click at display pixel (x, y) on the shown frame adds a prompt of `mode` (app.ui.prompts.MODES)."""
    mode, joint = G.text(mode, "click mode", P.MODES), G.text(joint, "joint")  # type: ignore[assignment]
    x, y = G.number(x_display, "click position"), G.number(y_display, "click position")
    if x is None or y is None:
        raise gr.Error("The click carried no position; click on the frame again.")

    def add(history: P.PromptHistory) -> P.PromptHistory:
        assert state is not None
        n = sum(len(h.actions) for h in state.histories.values())
        if n >= MAX_VIDEO_PROMPTS:
            raise gr.Error(f"There are already {n} prompts on this video, the limit; undo or clear some first.")
        w, h = state.size_wh
        return P.add_click(history, mode, x / state.scale, y / state.scale, w, h, joint=joint)  # type: ignore[arg-type]

    return _edit(state, add)


@G.guarded
def on_frame_undo(state: VideoPromptState | None) -> tuple[VideoPromptState, dict[str, Any] | None, str]:
    return _edit(state, P.undo)


@G.guarded
def on_frame_clear(state: VideoPromptState | None) -> tuple[VideoPromptState, dict[str, Any] | None, str]:
    return _edit(state, P.clear)


@G.guarded
def video_prompts(state: VideoPromptState | None, path: str | Path | None) -> VideoPrompts | None:
    """The run's prompts: every frame's clicks on this video (None when there are none)."""
    if state is None or path is None or state.path != str(path):
        return None
    prompts = VideoPrompts()
    for index, history in sorted(state.histories.items()):
        frame = P.to_prompts(history)  # every point, the last box, the last position of each joint (as drawn)
        for x, y, label in frame.points_n3:
            prompts.add_point(index, x, y, int(label))
        if frame.box_xyxy is not None:
            prompts.add_box(index, *frame.box_xyxy)
        for name, (x, y) in frame.keypoints.items():
            prompts.add_keypoint(index, name, x, y)
    return None if prompts.is_empty() else prompts
