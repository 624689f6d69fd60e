"""The Video tab's callbacks as plain functions (app.ui.video_page wires them; tests call them in-process).

`on_video_run` parses the tab's inputs, runs app.video_run.VideoRun and streams its recording into the
viewer while it runs (a chunk at most every `stream_period_s`), with progress (frames done of planned,
ETA) through the Gradio progress tracker; `on_video_cancel` sets the session's cancel token, and the
run then writes what it has done so far and offers it for download. Errors a user can cause end the
run with one plain sentence (gr.Error), never a traceback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from app.ui import guard as G
from app.ui.handlers import EXAMPLES_DIR, Engine, default_engine
from app.ui.video_state import VideoSession
from app.video_run import VideoRun, VideoRunOptions, VideoRunSummary
from pipelines.errors import UserFacingError
from pipelines.modes.image import PipelineConfig
from pipelines.tracking.prompts import VideoPrompts

EXAMPLE_VIDEO = EXAMPLES_DIR / "dancer.mp4"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".webm")
"""Offered by the upload button (others that OpenCV decodes are tried too)."""
STREAM_PERIOD_S = 0.5
"""The viewer gets new data at most this often (each chunk also flushes the .rrd file: fewer, larger
chunks keep the file small and the run fast)."""
DEFAULT_MAX_SIDE = 1280

ProgressFn = Callable[..., Any]


class VideoUpdate(NamedTuple):
    """One step of a streamed video run."""

    chunk: bytes | None
    """New rrd bytes for the streaming viewer (None: nothing new)."""
    status: str | None
    """Markdown for the status box (None: unchanged)."""
    files: list[str] | None
    """The downloads ([]: cleared at the start; the written files at the end; None: unchanged)."""
    frames_done: int
    """Frames processed so far."""


def stream_outputs(update: VideoUpdate | Any, held: Any, first: bool) -> tuple:
    """A streamed run's step (a VideoUpdate or a MultiviewUpdate: chunk, status, files) as the tab's outputs
    (viewer, status, downloads, held session). The streaming viewer takes None as "no new chunk"
    (gr.skip() would break its stream); the held session is sent with the first step only."""
    return (update.chunk, gr.skip() if update.status is None else update.status,
            gr.skip() if update.files is None else (update.files or None), held if first else gr.skip())  # fmt: skip


def parse_options(stride: float | None, start_s: float | None, end_s: float | None, max_side: float | None,
                  smooth: bool, max_people: float | None) -> VideoRunOptions:  # fmt: skip
    """The tab's inputs as run options (empty fields take their defaults; an end of 0 means the end)."""
    end = G.number(end_s, "end time", None)
    options = VideoRunOptions(
        stride=G.number(stride, "frame stride", 1, integer=True),  # type: ignore[arg-type]
        start_s=G.number(start_s, "start time", 0.0),  # type: ignore[arg-type]
        end_s=end or None,
        max_side=G.number(max_side, "maximum resolution", DEFAULT_MAX_SIDE, integer=True) or None,  # type: ignore[arg-type]
        smooth=bool(smooth),
        max_people=G.number(max_people, "maximum number of people", 4, integer=True, maximum=100),  # type: ignore[arg-type]
    )  # fmt: skip
    try:
        options.check()
    except UserFacingError as err:
        raise gr.Error(str(err)) from err
    return options


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds // 60:.0f} min {seconds % 60:02.0f} s"


def progress_status(name: str, done: int, planned: int | None, elapsed_s: float, people: int) -> str:
    """The status line while a run goes on: frames done, rate, time left."""
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    head = f"**{name}**: frame {done}" + (f" of {planned}" if planned else "")
    parts = [head, f"{rate:.1f} frames/s"]
    if planned and rate > 0:
        parts.append(f"about {_duration((planned - done) / rate)} left")
    parts.append(f"{people} {'person' if people == 1 else 'people'} in the last frame")
    return " · ".join(parts) + ". Cancel keeps what is done."


def final_status(name: str, s: VideoRunSummary) -> str:
    """The status once the outputs are written."""
    of = f" of {s.frames_planned}" if s.frames_planned else ""
    if s.cancelled:
        head = (f"**Cancelled** after {s.frames_done}{of} frames of {name}: those frames are in the viewer "
                "and the downloads.")
    else:
        head = (f"**Done**: {s.frames_done} frames of {name} in {_duration(s.elapsed_s)} "
                f"({s.frames_per_s:.1f} frames/s).")
    lines = [head]
    if not s.tracks:
        lines.append(f"Nobody was found in the {s.frames_done} processed frames. Try a video where a whole person "
                     "is visible, or a longer time range.")  # fmt: skip
    else:
        n = len(s.tracks)
        lines.append(f"{n} {'track' if n == 1 else 'tracks'}:\n" + "\n".join(
            f"- person {t.id}: {t.frames} frames, {t.height_m:.2f} m tall, keypoint error {t.reprojection_px:.1f} px"
            for t in s.tracks))  # fmt: skip
        if s.frames_without_people:
            lines.append(f"Nobody was found in {s.frames_without_people} of the frames.")
    if s.focal_px is not None:
        lines.append(f"Camera (assumed static): focal {s.focal_px:.0f} px ({s.camera_source}).")
    lines += [f"⚠ {p}" for p in s.problems]
    return "\n\n".join(lines)


def _order(path: Path) -> tuple[int, str]:
    rank = {".json": 0, ".glb": 1, ".bvh": 2, ".npz": 3, ".rrd": 4}
    return rank.get(path.suffix, 9), path.name


@G.guarded
def on_video_run(
    state: VideoSession,
    path: str | Path | None,
    stride: float | None = 1,
    start_s: float | None = 0.0,
    end_s: float | None = None,
    max_side: float | None = DEFAULT_MAX_SIDE,
    smooth: bool = True,
    max_people: float | None = 4,
    progress: ProgressFn | None = None,
    engine: Engine | None = None,
    stream_period_s: float = STREAM_PERIOD_S,
    prompts: VideoPrompts | None = None,
) -> Iterator[VideoUpdate]:
    """Process the video at `path` with the tab's options, streaming into the viewer.

    Yields: first an update that clears the downloads, then the recording's new bytes (the video, the
    frames' people) at most every `stream_period_s` with a progress status, then one last update with
    the rest of the recording, the final status and the downloads. `prompts`: the Prompts accordion's
    clicks (source-video pixels; app.ui.video_prompts). After Cancel (the session's cancel
    token) the run stops before its next frame and the frames done so far are written and offered.
    """
    if path is None:
        raise gr.Error("Upload a video (or pick the example) first.")
    if state.running:
        raise gr.Error("A video is already being processed in this tab; wait for it or cancel it.")
    if not isinstance(path, str | Path):
        raise gr.Error("The video upload could not be read: it is not a file. Upload the video again.")
    options = parse_options(stride, start_s, end_s, max_side, smooth, max_people)
    path = Path(path)
    name = path.name
    engine = engine or default_engine()
    out_dir = state.start_run()
    summary: VideoRunSummary | None = None
    run: VideoRun | None = None
    try:
        with engine.acquire(PipelineConfig()) as pipeline:  # a worker of its own (models are not thread-safe)
            try:
                run = VideoRun(path, out_dir, options, pipeline, stream=True, prompts=prompts)
            except UserFacingError as err:
                raise gr.Error(str(err)) from err
            if progress is not None:
                progress(0.0, desc="Starting (first fit solves the body shape and the focal)")
            yield VideoUpdate(run.read(), f"**{name}**: starting...", [], 0)
            last_sent = time.perf_counter()
            for result in run.frames(state.should_stop):
                done = run.frames_done
                if progress is not None and run.planned:
                    progress((done, run.planned), desc="Frames", unit="frames")
                now = time.perf_counter()
                if now - last_sent >= stream_period_s:
                    last_sent = now
                    status = progress_status(name, done, run.planned, now - run.t0, len(result.people))
                    yield VideoUpdate(run.read(), status, None, done)
            if state.closed:  # the tab was closed meanwhile: its folder is gone
                run.abort()
                return
            try:
                summary = run.finish()
            except UserFacingError as err:
                raise gr.Error(str(err)) from err
            chunk = run.read()  # the last frames and what finish logged
        status = final_status(name, summary)
        if not summary.tracks:
            gr.Warning(f"Nobody was found in {name}.")
        yield VideoUpdate(chunk, status, [str(p) for p in sorted(summary.files, key=_order)], summary.frames_done)
    except BaseException:
        if run is not None and summary is None:
            run.abort()
        raise
    finally:
        state.end_run(summary)


@G.guarded
def on_video_cancel(state: VideoSession | None) -> str | None:
    """The Cancel button: the run stops before its next frame, then writes what it has done."""
    if state is None or not state.request_cancel():
        return None
    return "**Cancelling**: the frames done so far are being written..."
