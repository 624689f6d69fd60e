"""The playground's callbacks as plain functions: plain values in, plain values out.

The Gradio page (app.ui.page) only wires these to components, so tests and the benchmark call the
very same code in-process. Errors a user can cause raise `gr.Error` with one plain sentence;
notes that do not stop anything go through `gr.Warning` (a toast on the page, a Python warning
outside Gradio). Images are RGB uint8 arrays; click coordinates arrive in pixels of the displayed
(possibly downscaled) canvas and are converted to pixels of the full image here. Every handler goes
through app.ui.guard.guarded (an unexpected exception reaches the page as one sentence with an error id)
and checks the event values it gets (a crafted request may send anything).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import gradio as gr
import numpy as np

from app.ui import canvas as C
from app.ui import guard as G
from app.ui import prompts as P
from app.ui.state import PromptSnapshot, UISession
from pipelines.errors import UserFacingError
from pipelines.io.image_io import decode_image_bytes
from pipelines.io.limits import MAX_IMAGE_BYTES, check_file_size
from pipelines.modes.image import ImagePipeline, ImageSession, PipelineConfig
from pipelines.registry import availability, backend_names
from pipelines.scene.summary import scene_summary
from pipelines.types import FrameResult
from viz.outputs import write_outputs

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = REPO_ROOT / "assets" / "examples"
EXAMPLE_NAMES: list[str] = ["lunge.jpg", "astronaut.png", "grace_hopper.jpg"]
CANVAS_MAX_SIDE = 1024
"""The click canvas shows the photo downscaled to this many pixels at most (fast round trips)."""
CONFIG_STAGES: tuple[str, ...] = ("segmentation", "keypoints", "camera", "hmr", "body")
"""PipelineConfig fields the page offers as selectors (stage name in pipelines.registry)."""
FOV_RANGE_DEG = (5.0, 175.0)
HEAVY_JOBS = max(1, min(2, os.cpu_count() or 1))
"""Heavy jobs (runs of any tab) at once: one per core, two at most (each job's models run on one thread)."""

ProgressFn = Callable[..., Any]


class RunUpdate(NamedTuple):
    """One step of a streamed run."""

    chunk: bytes | None
    """A self-contained rrd chunk with what this stage logged (None: nothing new for the viewer)."""
    status: str | None
    """Markdown for the run status box (None: unchanged)."""
    stage: str
    """'image', 'detections', 'bodies' (the pipeline's stages) or 'done' (the result is recorded)."""
    files: list[str] | None = None
    """Paths of the downloads (run_latest: [] on its first update, to clear them; the shown result's
    files on its 'done'); None: unchanged."""


# ------------------------------------------------------------------------------------ the engine


class _Worker:
    """One set of pipelines (one per backend choice) sharing one model cache, used by one job at a time:
    MediaPipe's landmarkers and the TFLite interpreters are not thread-safe, so workers share nothing."""

    def __init__(self, pipelines: tuple[ImagePipeline, ...] = ()) -> None:
        self.pipelines: dict[tuple[str, ...], ImagePipeline] = {config_key(p.config): p for p in pipelines}
        self.models: dict[tuple[str, ...], object] = pipelines[0].models if pipelines else {}

    def pipeline(self, config: PipelineConfig) -> ImagePipeline:
        key = config_key(config)
        if key not in self.pipelines:
            self.pipelines[key] = ImagePipeline(config, models=self.models)
        return self.pipelines[key]

    def reset(self) -> None:
        """Drop the pipelines and models (after a job died in them: the next job loads fresh ones)."""
        self.pipelines, self.models = {}, {}


class Engine:
    """The pipelines of `workers` heavy jobs at once: each job takes a worker of its own (`acquire`)."""

    def __init__(self, *pipelines: ImagePipeline, workers: int = 1) -> None:
        """`pipelines`: already built pipelines to reuse in the first worker (e.g. a warm one shared with
        tests); the other workers load their own models on first use (or in `warmup`)."""
        self.workers = max(1, int(workers))
        self._workers = [_Worker(pipelines)] + [_Worker() for _ in range(self.workers - 1)]
        self._free: queue.LifoQueue[_Worker] = queue.LifoQueue()  # LIFO: the warmest worker first
        for worker in reversed(self._workers):
            self._free.put(worker)
        self.warm = False

    @property
    def models(self) -> dict[tuple[str, ...], object]:
        """The first worker's model cache (one copy per backend, device and checkpoint)."""
        return self._workers[0].models

    def pipeline(self, config: PipelineConfig) -> ImagePipeline:
        """The first worker's pipeline for `config` (for code that runs no concurrent jobs: tests, benches)."""
        return self._workers[0].pipeline(config)

    @contextlib.contextmanager
    def acquire(self, config: PipelineConfig) -> Iterator[ImagePipeline]:
        """A free worker's pipeline for `config`, for one job (waits while every worker is busy). A job that
        fails with anything but a user error (a model error, out of memory) leaves its worker reset: the next
        job gets freshly loaded models, never ones a crash may have left half-updated."""
        worker = self._free.get()
        try:
            yield worker.pipeline(config)
        except (UserFacingError, gr.Error, GeneratorExit):
            raise
        except BaseException:
            worker.reset()
            raise
        finally:
            self._free.put(worker)

    def warmup(self, example: str | Path | None = None) -> float:
        """Load the default models and run one example end to end through the handlers; seconds taken."""
        t = time.perf_counter()
        for worker in self._workers:
            worker.pipeline(PipelineConfig()).warmup()
        session = UISession(session_id="warmup")
        try:
            on_upload(session, str(example or EXAMPLES_DIR / EXAMPLE_NAMES[0]))
            for _ in run_latest(session, engine=self):
                pass
            x, y = _centre(session)
            on_click(session, "positive", None, x * session.display_scale, y * session.display_scale)
            for _ in run_latest(session, engine=self):
                pass
        finally:
            session.cleanup()
        self.warm = True
        return time.perf_counter() - t


@functools.cache
def default_engine() -> Engine:
    """The process-wide engine, HEAVY_JOBS workers (created on first use; models load lazily)."""
    return Engine(workers=HEAVY_JOBS)


def config_key(config: PipelineConfig) -> tuple[str, ...]:
    return tuple(str(getattr(config, s)) for s in CONFIG_STAGES)


def backend_choices() -> dict[str, tuple[list[str], dict[str, str]]]:
    """Per selectable stage: the usable backend names, and name -> why not for the others."""
    out: dict[str, tuple[list[str], dict[str, str]]] = {}
    for stage in CONFIG_STAGES:
        avail = availability(stage)
        out[stage] = ([n for n, why in avail.items() if why is None],
                      {n: why for n, why in avail.items() if why is not None})  # fmt: skip
    return out


# ---------------------------------------------------------------------------------- small helpers


def _size(state: UISession) -> tuple[int, int]:
    assert state.image is not None
    return state.image.width, state.image.height


def _centre(state: UISession) -> tuple[float, float]:
    w, h = _size(state)
    return w / 2, h / 2


def _require_image(state: UISession) -> None:
    if state.image is None:
        raise gr.Error("Upload a photo (or pick an example) first.")


def canvas(state: UISession, snapshot: PromptSnapshot | None = None) -> dict[str, Any] | None:
    """The click canvas's value (app.ui.canvas): the photo once, the prompts of `snapshot` as an overlay."""
    snap = snapshot or state.snapshot()
    if state.display_rgb_hw3 is None or snap.image is None:
        return None
    h, w = state.display_rgb_hw3.shape[:2]
    svg = P.prompts_svg(snap.history, state.display_scale, (w, h))
    return C.canvas_value(state.display_src, (w, h), svg, snap.revision)


def _prompt_status(snapshot: PromptSnapshot, extra: str = "") -> str:
    """The prompt status box: the photo and its current prompts (the run status says what the mesh used)."""
    lines = []
    if snapshot.image is not None:
        w, h = snapshot.image.width, snapshot.image.height
        lines.append(f"**{snapshot.image_name}** ({w}x{h}). {P.describe(snapshot.history)}.")
    if extra:
        lines.append(extra)
    return "\n\n".join(lines)


def focal_from_fov(fov_deg: float | None, width: int) -> float | None:
    """Focal length in pixels for a horizontal field of view in degrees (None or 0: automatic)."""
    if fov_deg is None or (isinstance(fov_deg, float) and math.isnan(fov_deg)) or fov_deg == 0:
        return None
    fov_deg = G.number(fov_deg, "field of view")
    if fov_deg is None:
        return None
    lo, hi = FOV_RANGE_DEG
    if not lo <= float(fov_deg) <= hi:
        raise gr.Error(
            f"The field of view must be between {lo:g} and {hi:g} degrees (or empty for automatic); got {fov_deg:g}."
        )
    return (width / 2) / math.tan(math.radians(float(fov_deg)) / 2)


# ------------------------------------------------------------------------------ photo and prompts


@G.guarded
def load_photo(state: UISession, path: str | Path | None, name: str | None = None
               ) -> tuple[dict[str, Any] | None, str]:  # fmt: skip
    """Decode a photo into the session. Returns (canvas, prompt status); raises gr.Error if unreadable."""
    if path is None:
        return canvas(state), _prompt_status(state.snapshot(), "Upload a photo or pick an example.")
    if not isinstance(path, str | Path):
        raise gr.Error("The upload could not be read: it is not a file. Upload the photo again.")
    path = Path(path)
    name = name or path.name
    try:
        check_file_size(path, MAX_IMAGE_BYTES, "image", name)  # before reading it into memory
        data = path.read_bytes()
    except OSError as err:
        raise gr.Error(f"The upload {name} could not be read ({err.strerror or 'read error'}).") from None
    try:
        image = decode_image_bytes(data, name)
    except UserFacingError as err:
        raise gr.Error(str(err)) from err
    display, scale = P.display_image(image.rgb_hw3, CANVAS_MAX_SIDE)
    snap = state.set_image(image, name, display, C.data_url(display), scale)
    for note in image.warnings:
        gr.Warning(note)
    return canvas(state, snap), _prompt_status(snap, "Click on the photo to add prompts.")


@G.guarded
def on_upload(state: UISession, path: str | Path | None) -> tuple[dict[str, Any] | None, str]:
    """A file was uploaded (Gradio gives its temporary path)."""
    return load_photo(state, path)


@G.guarded
def on_example(state: UISession, index: Any) -> tuple[dict[str, Any] | None, str]:
    """An example of assets/examples was picked (by its index in EXAMPLE_NAMES, or the gallery's
    gr.SelectData: checked, since a crafted event may carry anything)."""
    i = G.index(index, len(EXAMPLE_NAMES), "example")
    return load_photo(state, EXAMPLES_DIR / EXAMPLE_NAMES[i])


def _edit(state: UISession, edit: Callable[[P.PromptHistory], P.PromptHistory]) -> tuple[dict[str, Any] | None, str]:
    try:
        snap = state.edit_prompts(edit)
    except UserFacingError as err:
        raise gr.Error(str(err)) from err
    return canvas(state, snap), _prompt_status(snap)


@G.guarded
def on_click(
    state: UISession, mode: str, joint: str | None, x_display: float, y_display: float
) -> tuple[dict[str, Any] | None, str]:
    """A click on the canvas at display pixel (x, y): add a prompt of `mode` (see prompts.MODES)."""
    _require_image(state)
    mode, joint = G.text(mode, "click mode", P.MODES), G.text(joint, "joint")  # type: ignore[assignment]
    x_display, y_display = G.number(x_display, "click position"), G.number(y_display, "click position")
    if x_display is None or y_display is None:
        raise gr.Error("The click carried no position; click on the photo again.")
    x, y = x_display / state.display_scale, y_display / state.display_scale
    w, h = _size(state)
    return _edit(state, lambda history: P.add_click(history, mode, x, y, w, h, joint=joint))  # type: ignore[arg-type]


@G.guarded
def on_undo(state: UISession) -> tuple[dict[str, Any] | None, str]:
    return _edit(state, P.undo)


@G.guarded
def on_clear(state: UISession) -> tuple[dict[str, Any] | None, str]:
    return _edit(state, P.clear)


def needs_run(state: UISession) -> bool:
    """True when the photo and prompts differ from those of the last run started on this photo (a click
    that changes nothing, or half a box, is not run)."""
    snap, ran = state.snapshot(), state.ran
    if snap.image is None or snap.history.pending:
        return False
    return ran is None or ran.image is not snap.image or ran.history.actions != snap.history.actions


# ------------------------------------------------------------------------------------------ runs


def _backends(backends: Mapping[str, Any] | None) -> dict[str, str]:
    """The page's backend choices, checked: stage -> a known backend name (empty ones are the defaults)."""
    if backends is None:
        return {}
    if not isinstance(backends, Mapping):
        raise gr.Error("The backend choices could not be read; pick them again.")
    out = {}
    for stage, name in backends.items():
        if stage in CONFIG_STAGES and name:
            out[stage] = G.text(name, f"{stage} backend", backend_names(stage))
    return out


def _camera_line(frame: FrameResult) -> str:
    cam = frame.camera
    source = {"exif": "from EXIF", "user": "set by you", "estimated": "estimated with the body",
              "default": "prior guess"}.get(cam.source, cam.source)  # fmt: skip
    return f"Camera: focal {cam.focal_px:.0f} px, horizontal field of view {cam.hfov_deg:.0f}° ({source})."


def _people_lines(frame: FrameResult) -> list[str]:
    lines = []
    for p in frame.people:
        if p.body is None:
            lines.append(f"- person {p.id}: found (score {p.detection.score:.2f}), no body fitted")
            continue
        b = p.body
        dist = float(np.median(np.asarray(b.verts_cam_v3)[:, 2]))
        lines.append(
            f"- person {p.id}: {b.height_m:.2f} m tall, {dist:.1f} m from the camera, "
            f"keypoint error {b.reprojection_px_mean:.1f} px (mean)"
        )
    return lines


def _stage_status(stage: str, frame: FrameResult, elapsed_s: float) -> str:
    lines = [f"**{stage}** after {1000 * elapsed_s:.0f} ms"]
    if stage == "image":
        lines.append(_camera_line(frame))
    elif stage == "detections":
        n = len(frame.people)
        lines.append(f"Found {n} {'person' if n == 1 else 'people'}; fitting bodies...")
    else:
        lines.append(_camera_line(frame))
        lines += _people_lines(frame)
    return "\n\n".join(lines[:1] + ["\n".join(lines[1:])])


def _final_status(snapshot: PromptSnapshot, frame: FrameResult, elapsed_s: float, latest: bool) -> str:
    n_body, n = sum(p.body is not None for p in frame.people), len(frame.people)
    found = "nobody found" if n == 0 else f"{n_body} of {n} {'person' if n == 1 else 'people'} with a body"
    head = f"**Done** in {1000 * elapsed_s:.0f} ms: {found}."
    timings = " · ".join(f"{k} {1000 * v:.0f} ms" for k, v in frame.timings_s.items() if v >= 0.0005)
    used = f"Prompts used: {P.summary(snapshot.history)}."
    if not latest:
        used += " Your newer prompts are not in it yet."
    parts = [head, _camera_line(frame), "\n".join(_people_lines(frame)), used]
    if timings:
        parts.append(f"Stages: {timings}.")
    if frame.warnings:
        parts.append("\n".join(f"⚠ {w}" for w in frame.warnings))
    parts.append("\n".join(line.strip() for line in scene_summary(frame.scene)))
    # The revision of the prompts this result used, for scripts and tests (the canvas carries the current one).
    parts.append(f'<span class="shown-rev rev-{snapshot.revision}"></span>')
    return "\n\n".join(p for p in parts if p)


@G.guarded
def on_run(
    state: UISession,
    fov_deg: float | None = None,
    backends: Mapping[str, str] | None = None,
    progress: ProgressFn | None = None,
    engine: Engine | None = None,
) -> Iterator[RunUpdate]:
    """Run the pipeline once on a snapshot of the session's photo and prompts, streaming each stage.

    Yields one RunUpdate per pipeline stage (image + camera, detections, bodies) as soon as it is
    logged, then 'done' once the result is recorded as the shown one (nothing is recorded when a new
    photo came meanwhile). Edits made during the run do not change what it computes; its final status
    says which prompts it used. Detections and fits are cached in the session, so a run after a prompt
    edit only re-runs the prompt-dependent stages (warm-started fit).
    """
    _require_image(state)
    snap = state.snapshot()
    assert snap.image is not None
    engine = engine or default_engine()
    config = PipelineConfig(**_backends(backends))
    key = config_key(config)
    if state.config_key != key:
        state.image_session, state.config_key = ImageSession(), key
    focal_px = focal_from_fov(fov_deg, snap.image.width)
    prompts = P.to_prompts(snap.history)
    state.ran = snap
    session, recording = state.image_session, state.recording
    t0 = time.perf_counter()
    events: queue.Queue[tuple[Any, ...]] = queue.Queue()

    def on_stage(stage: str, frame: FrameResult) -> None:
        if stage == "image":
            recording.log_image(snap.image_key, frame)
        elif stage == "detections":
            recording.log_detections(frame)
        elif stage == "bodies":
            recording.log_image(snap.image_key, frame)  # the focal may have been estimated with the bodies
            recording.log_detections(frame)
            recording.log_bodies(frame)
        events.put(("stage", stage, recording.read(), _stage_status(stage, frame, time.perf_counter() - t0)))

    def work() -> None:
        try:
            with state.run_lock, engine.acquire(config) as pipeline:
                frame = pipeline.run(
                    snap.image, prompts=prompts, focal_px=focal_px, session=session, on_stage=on_stage,
                    progress=lambda frac, msg: events.put(("progress", frac, msg)),
                )  # fmt: skip
            events.put(("done", frame))
        except BaseException as err:  # noqa: BLE001 - handed to the generator, which re-raises
            events.put(("error", err))
        finally:
            state.run_finished()

    state.run_started()  # the worker calls run_finished
    threading.Thread(target=work, name=f"run-{state.session_id[:8]}", daemon=True).start()
    while True:
        event = events.get()
        kind = event[0]
        if kind == "progress":
            if progress is not None:
                progress(float(event[1]), desc=str(event[2]))
        elif kind == "stage":
            yield RunUpdate(chunk=event[2], status=event[3], stage=event[1])
        elif kind == "error":
            err = event[1]
            if isinstance(err, UserFacingError):
                raise gr.Error(str(err)) from err
            raise err
        else:
            frame: FrameResult = event[1]
            break
    elapsed_s = time.perf_counter() - t0
    if state.record_result(snap, frame, elapsed_s) is None:
        return  # a new photo was loaded meanwhile: this result is stale
    for note in frame.warnings:
        if note.startswith("No person"):
            gr.Warning("No person was found in the image. Try a photo where a whole person is visible, "
                       "or click on the person (positive point) or draw a box around them.")  # fmt: skip
        else:
            gr.Warning(note)
    status = _final_status(snap, frame, elapsed_s, latest=state.is_latest(snap))
    yield RunUpdate(chunk=None, status=status, stage="done")


@G.guarded
def run_latest(
    state: UISession,
    fov_deg: float | None = None,
    backends: Mapping[str, str] | None = None,
    progress: ProgressFn | None = None,
    engine: Engine | None = None,
    force: bool = False,
) -> Iterator[RunUpdate]:
    """Run until the shown result belongs to the latest photo and prompts, then write its downloads.

    However many edits arrive during a run, the next run takes the state as it is then: many quick
    clicks give few runs, and the last one always uses every click. `force` runs once even when nothing
    changed (the Run button: the camera or the backends may have). Yields the runs' stage updates (the
    first one clears the downloads, files=[]: they would not match the mesh being streamed), then one
    'done' update with the final status and the downloads of the shown result together; nothing at all
    when there was nothing to do. Edits that came back to the shown result's prompts (a click, then
    Undo) need no run: the shown result is relabelled as the latest.
    """
    cleared = False
    while force or needs_run(state):
        force = False
        for update in on_run(state, fov_deg, backends, progress=progress, engine=engine):
            if update.stage == "done":
                continue  # the final status goes out with the downloads, below
            yield update if cleared else update._replace(files=[])
            cleared = True
    adopted = state.adopt_latest()
    shown = state.shown
    if shown is None or not (cleared or adopted):
        return
    status = _final_status(shown.snapshot, shown.frame, shown.elapsed_s, latest=state.is_latest(shown.snapshot))
    yield RunUpdate(chunk=None, status=status, stage="done", files=on_downloads(state))


@G.guarded
def on_downloads(state: UISession) -> list[str] | None:
    """Write the shown result's files (GLB, OBJ, NPZ per person, result.json, result.rrd, overlay.png)
    into the session's temporary folder, once per result; their paths (None before the first result)."""
    shown = state.shown
    if shown is None:
        return None
    if shown.downloads is None:
        out_dir = state.tmp_dir / "result"
        paths = write_outputs(out_dir, shown.frame, image_path=shown.snapshot.image_name or None)
        order = {".glb": 0, ".obj": 1, ".npz": 2, ".json": 3, ".rrd": 4, ".png": 5}
        shown.downloads = [str(p) for p in sorted(paths, key=lambda p: (order.get(p.suffix, 9), p.name))]
    return shown.downloads


def unavailable_note(choices: Mapping[str, tuple[list[str], dict[str, str]]]) -> str:
    """Markdown listing the backends that cannot be selected here, and why."""
    lines = [f"- {stage} **{name}**: {why}" for stage, (_, missing) in choices.items() for name, why in missing.items()]
    return ("Not available here:\n" + "\n".join(lines)) if lines else "Every installed backend is available."
