"""The Multi-view tab's callbacks as plain functions (app.ui.multiview_page wires them; tests call them in-process).

`on_multiview_run` parses the tab's inputs, runs app.multiview_run.MultiviewJob in the background and
reports progress (frames read of all views' planned frames, ETA) through the Gradio progress tracker
and the status; once the views are fused it streams the recording into the viewer and offers the
downloads, with the report (median reprojection, per-view time offsets and camera changes) as a table
in the status. `on_multiview_cancel` sets the session's cancel token: the run stops after its next
frame (the views are fused only once all are read, so nothing is written). Errors a user can cause end
the run with one plain sentence (gr.Error), never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr

from app.multiview_run import MultiviewJob, MultiviewRunOptions, planned_frames, prepare_calibration
from app.ui import guard as G
from app.ui.handlers import EXAMPLES_DIR
from app.ui.multiview_state import MultiviewSession
from app.ui.video_handlers import _duration
from pipelines.errors import UserFacingError
from pipelines.io.limits import check_view_count

EXAMPLE_DIR = EXAMPLES_DIR / "multiview"
EXAMPLE_VIDEOS = [EXAMPLE_DIR / f"cam0{i}.mp4" for i in range(1, 5)]
EXAMPLE_CALIBRATION = EXAMPLE_DIR / "calibration.json"
POLL_PERIOD_S = 0.5
"""The status and progress are refreshed this often while the job runs."""
DEFAULT_MAX_SIDE = 1280
JOB_STOP_WAIT_S = 60.0
"""How long a run whose page stopped listening waits for its job to stop (it stops after its next frame)."""

ProgressFn = Callable[..., Any]


class MultiviewUpdate(NamedTuple):
    """One step of a multi-view run."""

    chunk: bytes | None
    """Rrd bytes for the streaming viewer (None: nothing new)."""
    status: str | None
    """Markdown for the status box (None: unchanged)."""
    files: list[str] | None
    """The downloads ([]: cleared at the start; the written files at the end; None: unchanged)."""
    frames_read: int
    """Frames read so far, all views together."""


def parse_options(n_frames: float | None, max_side: float | None, sync: bool, refine: bool) -> MultiviewRunOptions:
    """The tab's inputs as run options (empty fields take their defaults; 0 frames means all)."""
    options = MultiviewRunOptions(n_frames=G.number(n_frames, "number of frames", 0, integer=True) or None,  # type: ignore[arg-type]
                                  max_side=G.number(max_side, "maximum resolution", DEFAULT_MAX_SIDE,  # type: ignore[arg-type]
                                                    integer=True) or None,
                                  sync=bool(sync), refine=bool(refine))  # fmt: skip
    try:
        options.check()
    except UserFacingError as err:
        raise gr.Error(str(err)) from err
    return options


def _paths(files: Sequence[Any] | str | None) -> list[Path]:
    if files is None:
        return []
    if isinstance(files, str | Path):
        files = [files]
    if not isinstance(files, list | tuple):
        raise gr.Error("The uploaded files could not be read; upload them again.")
    paths = [getattr(f, "name", f) for f in files if f]
    if not all(isinstance(p, str | Path) for p in paths):
        raise gr.Error("The uploaded files could not be read: one of them is not a file. Upload them again.")
    return [Path(p) for p in paths]


def progress_status(job: MultiviewJob, planned: int | None, n_views: int) -> str:
    """The status line while a run goes on: stage, frames read, rate, time left for the keypoints."""
    done, elapsed = job.frames_read, job.elapsed_s
    rate = done / elapsed if elapsed > 0 else 0.0
    parts = [f"**{n_views} views**: {job.stage}", f"frame {done}" + (f" of {planned}" if planned else ""),
             f"{rate:.1f} frames/s"]  # fmt: skip
    if planned and rate > 0 and done < planned:
        parts.append(f"about {_duration((planned - done) / rate)} left before the fusion")
    return " · ".join(parts) + ". Cancel stops the run (nothing is kept: the views are fused once all are read)."


def _fmt(x: float | None, spec: str) -> str:
    """A report figure for the status ("–" when missing; no "-0.0")."""
    if x is None:
        return "–"
    text = format(x, spec)
    return text.replace("-", "+", 1) if float(text) == 0 and text.startswith("-") else text


def final_status(job: MultiviewJob) -> str:
    """The status once the outputs are written: the headline figures, the per-view report as a table,
    the people, and any problems."""
    from viz.multiview_outputs import report_dict

    result = job.result
    assert result is not None
    rep = report_dict(result)
    n_views, n_frames, people = len(result.infos), result.fusion.n_frames, result.fusion.people
    lines = [f"**Done**: {n_frames} frames of {n_views} views fused in {_duration(job.elapsed_s)} "
             f"({_fmt(rep['fused_fps'], '.1f')} fused frames/s); {len(people)} "
             f"{'person' if len(people) == 1 else 'people'}.",
             f"Median reprojection **{_fmt(rep['median_reproj_px'], '.1f')} px** (plain triangulation with the "
             f"given calibration: {_fmt(rep['plain_median_reproj_px'], '.1f')} px; source-video pixels)."]  # fmt: skip
    rows = ["| camera | video | time offset (frames) | reprojection (px) | rotation change (°) | moved (m) |",
            "| --- | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for v in rep["views"]:
        rows.append(f"| {v['name']} | {v['video']} | {_fmt(v['time_offset_frames'], '+.1f')} | "
                    f"{_fmt(v['median_reproj_px'], '.1f')} | {_fmt(v['rotation_change_deg'], '.2f')} | "
                    f"{_fmt(v['translation_change_m'], '.3f')} |")  # fmt: skip
    lines.append("\n".join(rows))
    if not people:
        lines.append("Nobody was seen by two cameras at once: check that the videos show the same people at the "
                     "same time and that the calibration is this rig's.")  # fmt: skip
    else:
        lines.append("\n".join(
            f"- person {p.id}: {int(p.frames_ok.sum())} frames, {p.height_m:.2f} m tall, seen by "
            f"{', '.join(result.fusion.cams[v].name for v in sorted(p.members))}" for p in people))  # fmt: skip
    if result.bodies:
        lines.append("Anny bodies (animated in each track_<id>.glb): " + "; ".join(
            f"person {b.id}: {len(b.frames)} frames, {b.height_m:.2f} m, reprojection {b.median_reproj_px:.1f} px"
            for b in result.bodies) + ".")  # fmt: skip
    if result.selfcalib is not None:
        lines.append(f"Cameras **estimated from the people** (no calibration file): the metric scale takes the "
                     f"tallest person to be {result.selfcalib.person_height_m:.2f} m tall; the world's z is up "
                     "along the bodies, its origin on the floor under them.")  # fmt: skip
    lines += [f"⚠ {w}" for w in result.warnings]
    return "\n\n".join(lines)


def _order(path: Path) -> tuple[int, str]:
    rank = {".json": 0, ".glb": 1, ".trc": 2, ".bvh": 3, ".npz": 4, ".rrd": 5}
    return rank.get(path.suffix, 9), path.name


@G.guarded
def on_multiview_run(
    state: MultiviewSession,
    videos: Sequence[Any] | None,
    calibration: Sequence[Any] | str | None,
    n_frames: float | None = 0,
    max_side: float | None = DEFAULT_MAX_SIDE,
    sync: bool = True,
    refine: bool = True,
    progress: ProgressFn | None = None,
    detector_factory: Callable[[], Any] | None = None,
    poll_s: float = POLL_PERIOD_S,
) -> Iterator[MultiviewUpdate]:
    """Process the uploaded videos with the calibration and the tab's options.

    Yields: an update that clears the downloads, then a progress status every `poll_s` while the views
    are read and fused, then one last update with the whole recording for the viewer, the final status
    and the downloads. After Cancel the run stops after its next frame and says that nothing was written.
    """
    paths = _paths(videos)
    if len(paths) < 2:
        raise gr.Error("Upload at least two videos of the same people, one per camera (or use the example).")
    check_view_count(len(paths))
    if state.running:
        raise gr.Error("A multi-view run is already going on in this tab; wait for it or cancel it.")
    options = parse_options(n_frames, max_side, sync, refine)
    out_dir = state.start_run()
    job: MultiviewJob | None = None
    try:
        try:
            calib = prepare_calibration(_paths(calibration), out_dir.parent)
            planned = planned_frames(paths, options.n_frames)  # an unreadable video fails here, naming it
        except UserFacingError as err:
            raise gr.Error(str(err)) from err
        job = MultiviewJob(paths, calib, out_dir, options, should_stop=state.should_stop,
                           detector_factory=detector_factory)  # fmt: skip
        job.start()
        if progress is not None:
            progress(0.0, desc="Starting (loading the person detector)")
        yield MultiviewUpdate(None, f"**{len(paths)} views**: starting...", [], 0)
        while not job.wait(poll_s):
            if progress is not None and planned:
                progress((min(job.frames_read, planned), planned), desc=job.stage, unit="frames")
            yield MultiviewUpdate(None, progress_status(job, planned, len(paths)), None, job.frames_read)
        if state.closed:  # the tab was closed meanwhile: its folder is gone
            return
        try:
            result = job.outcome()
        except UserFacingError as err:
            raise gr.Error(str(err)) from err
        if result is None:
            yield MultiviewUpdate(None, f"**Cancelled** after {job.frames_read} frames were read: nothing was "
                                        "written (the views are fused only once every view is read).", [],
                                  job.frames_read)  # fmt: skip
            return
        rrd = next((f for f in job.files if f.suffix == ".rrd"), None)
        chunk = rrd.read_bytes() if rrd is not None else None
        if not result.fusion.people:
            gr.Warning("Nobody was seen by two cameras at once.")
        yield MultiviewUpdate(chunk, final_status(job), [str(p) for p in sorted(job.files, key=_order)],
                              job.frames_read)  # fmt: skip
    finally:
        if job is not None and not job.done.is_set():  # the page stopped listening: stop the job too
            state.cancel_event.set()
            job.wait(JOB_STOP_WAIT_S)
        state.end_run(None)


@G.guarded
def on_multiview_cancel(state: MultiviewSession | None) -> str | None:
    """The Cancel button: the run stops after its next frame; nothing is written."""
    if state is None or not state.request_cancel():
        return None
    return "**Cancelling**..."
