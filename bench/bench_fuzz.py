"""Fuzz run: hostile images, videos, calibration files and event values through the same functions the CLI
and the playground's three tabs call, in-process; bounded in count and in time.

`python -m bench.bench_fuzz [--budget-s 180] [--seed 0]` makes its inputs (bench.hostile: decompression-bomb
headers of every image format read, corrupt files of every format Pillow writes, hostile video containers
and calibrations, malformed event values) and sends each one to the CLI's loader (load_image, probe,
load_calibration) and to the tab handlers (Image upload / example / click / run, Video show-frame / click /
run, Multi-view run). The heavy work itself is replaced by a stub engine and detector that fail with an
internal error: that checks the generic "error id" sentence, and keeps the run fast. Counted per input:
accepted, refused with a sentence, internal errors shown as the generic sentence with an id, crashes
(an exception other than the expected user error left the function) and raw exception texts shown
(bench.hostile.RAW_MARKERS, or the library's own message, in what the user sees). Peak memory is the
process's resident memory, sampled every 20 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from app.native_logs import native_logs_hidden
from bench import hostile as HX
from bench.bench_video import PeakRss, rss_mb
from bench.common import DATA_DIR, machine_description, markdown_table

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "assets" / "examples"
SHARES = {"images": 0.35, "videos": 0.25, "calibrations": 0.15, "events": 0.25}
"""Share of the time budget per kind of input."""


class StubFailure(RuntimeError):
    """What the stub engine raises: an internal error whose text must never reach the user."""


STUB_TEXT = "stub engine internal failure at 0x7f00 (must not be shown)"


class StubEngine:
    """Stands for app.ui.handlers.Engine: every pipeline fails with an internal error."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def pipeline(self, config: Any) -> Any:  # noqa: ARG002
        raise StubFailure(STUB_TEXT)


def stub_detector() -> Any:
    class Detector:
        def __getattr__(self, name: str) -> Any:
            raise StubFailure(STUB_TEXT)

        def close(self) -> None:
            pass

    return Detector()


class Records(logging.Handler):
    """Counts the server-side error logs (with their exception types) of the guard."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.types: Counter[str] = Counter()
        self.last = ""
        """The type of the last exception logged (reset by the runner before each call)."""

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        self.last = type(exc).__name__ if exc else "?"
        self.types[self.last] += 1


RECORDS = Records()


class Tally:
    """Outcomes per kind of input."""

    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = defaultdict(Counter)
        self.examples: dict[str, list[str]] = defaultdict(list)
        self.slowest_ms: dict[str, float] = defaultdict(float)

    def add(self, kind: str, outcome: str, detail: str, elapsed_s: float) -> None:
        self.counts[kind][outcome] += 1
        self.slowest_ms[kind] = max(self.slowest_ms[kind], 1000 * elapsed_s)
        if outcome in ("crash", "raw", "internal") and len(self.examples[kind]) < 8:
            self.examples[kind].append(detail[:300])


def loader_outcome(fn: Callable[..., Any], *args: Any, library_message: str | None = None) -> tuple[str, str]:
    """A CLI-side function: accepted, refused (UserFacingError with a clean sentence), raw, or crash."""
    from pipelines.errors import UserFacingError

    try:
        fn(*args)
    except UserFacingError as err:
        msg = str(err)
        return ("raw" if HX.raw_text_in(msg, library_message) or "\n" in msg else "refused"), msg
    except Exception as err:  # noqa: BLE001 - what the bench counts
        return "crash", f"{type(err).__name__}: {err}"
    return "accepted", ""


def handler_outcome(fn: Callable[..., Any], *args: Any, library_message: str | None = None,
                    **kwargs: Any) -> tuple[str, str]:  # fmt: skip
    """A tab handler (generators run to the end): accepted, refused (gr.Error), generic (the id sentence),
    raw, or crash (anything but gr.Error left it)."""
    import gradio as gr

    from app.ui.guard import GENERIC

    RECORDS.last = ""
    try:
        out = fn(*args, **kwargs)
        if isinstance(out, Iterator):
            for _ in out:
                pass
    except gr.Error as err:
        msg = str(err.message)
        if HX.raw_text_in(msg, library_message) or STUB_TEXT in msg:
            return "raw", msg
        if msg.startswith(GENERIC.split("{")[0]):  # the id sentence: the stub engine's failure, or a real one
            return ("engine" if RECORDS.last == StubFailure.__name__ else "internal"), f"{RECORDS.last}: {msg}"
        return "refused", msg
    except Exception as err:  # noqa: BLE001 - what the bench counts
        return "crash", f"{type(err).__name__}: {err}"
    return "accepted", ""


def _pillow_message(data: bytes) -> str | None:
    """What Pillow itself says of these bytes (None when it decodes them)."""
    from PIL import Image

    from pipelines.io.limits import MAX_IMAGE_PIXELS

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            if im.width * im.height <= MAX_IMAGE_PIXELS:  # a bomb would cost this bench, not the app, its memory
                im.load()
    except Exception as err:  # noqa: BLE001
        return str(err)
    return None


# ------------------------------------------------------------------------------------------- kinds


def image_inputs(rng: np.random.Generator) -> Iterator[tuple[str, str, bytes]]:
    for fmt, data in HX.image_bombs().items():
        yield f"bomb {fmt}", f"bomb_{fmt.replace(' ', '_').lower()}.img", data
    valid = HX.valid_images()
    for round_ in range(1000):
        for fmt, data in valid.items():
            for what, bad in HX.corrupt_variants(data, rng, 1):
                yield f"{fmt} {what}", f"corrupt_{round_}.{fmt.lower()}", bad
        yield "random bytes", f"random_{round_}.jpg", rng.integers(0, 256, int(rng.integers(1, 5000)),
                                                                   dtype=np.uint8).tobytes()  # fmt: skip


def run_images(tally: Tally, folder: Path, rng: np.random.Generator, deadline: float) -> None:
    from app.ui import handlers as H
    from app.ui.state import UISession
    from pipelines.io.image_io import load_image

    session = UISession(session_id="fuzz-images")
    try:
        for what, name, data in image_inputs(rng):
            if time.perf_counter() > deadline:
                break
            path = HX.save(folder, name, data)
            lib = _pillow_message(data)
            t = time.perf_counter()
            outcome, detail = _worst([loader_outcome(load_image, path, library_message=lib),
                                      handler_outcome(H.on_upload, session, str(path), library_message=lib)])
            tally.add("images", outcome, f"{name}: {detail}", time.perf_counter() - t)
            if what.startswith("bomb"):
                tally.add("- of which bomb headers", outcome, f"{name}: {detail}", time.perf_counter() - t)
            path.unlink()
    finally:
        session.cleanup()


def run_videos(tally: Tally, folder: Path, rng: np.random.Generator, deadline: float) -> None:
    from app.ui import video_handlers as VH
    from app.ui import video_prompts as VP
    from app.ui.video_state import VideoSession
    from pipelines.io.video_io import probe

    real = (EXAMPLES / "multiview" / "cam01.mp4").read_bytes()
    engine = StubEngine()
    for i, (what, suffix, data) in enumerate(HX.hostile_videos(real, rng, 100000)):
        if time.perf_counter() > deadline:
            break
        path = HX.save(folder, f"video_{i}{suffix}", data)
        t = time.perf_counter()
        outcomes = [loader_outcome(probe, path),
                    handler_outcome(VP.on_show_frame, VP.VideoPromptState(), str(path), 0)]  # fmt: skip
        if i % 3 == 0:
            state = VideoSession()
            try:
                outcomes.append(handler_outcome(VH.on_video_run, state, str(path), engine=engine))
            finally:
                state.cleanup()
        worst = _worst(outcomes)
        tally.add("videos", worst[0], f"{path.name}: {worst[1]}", time.perf_counter() - t)
        if "claims" in what or "nested" in what or "moov" in what:
            tally.add("- of which header bombs", worst[0], f"{what}: {worst[1]}", time.perf_counter() - t)
        path.unlink()


def _worst(outcomes: list[tuple[str, str]]) -> tuple[str, str]:
    rank = {"crash": 0, "raw": 1, "internal": 2, "refused": 3, "engine": 4, "accepted": 5}
    return min(outcomes, key=lambda o: rank[o[0]])


def _valid_calibrations(folder: Path) -> dict[str, bytes]:
    from pipelines.multiview.formats import load_calibration, save_opencv_yml, save_pose2sim_toml

    folder.mkdir(parents=True, exist_ok=True)
    src = EXAMPLES / "multiview" / "calibration.json"
    cams = load_calibration(src)
    out = {"calibration.json": src.read_bytes()}
    qca = DATA_DIR / "multiview" / "pose2sim_single" / "Calib.qca.txt"
    if qca.is_file():
        out["Calib.qca.txt"] = qca.read_bytes()
    out["Calib.toml"] = save_pose2sim_toml(cams, folder / "Calib.toml").read_bytes()
    (folder / "yml").mkdir(exist_ok=True)
    intri, extri = save_opencv_yml(cams, folder / "yml")
    out["intri.yml"] = intri.read_bytes()
    (folder / "extri.yml").write_bytes(extri.read_bytes())  # the partner of every intri.yml tried
    return out


def run_calibrations(tally: Tally, folder: Path, rng: np.random.Generator, deadline: float) -> None:
    from app.ui import multiview_handlers as MH
    from app.ui.multiview_state import MultiviewSession
    from pipelines.multiview.formats import load_calibration

    valid = _valid_calibrations(folder)
    videos = [str(p) for p in MH.EXAMPLE_VIDEOS]
    for i, (_what, name, data) in enumerate(HX.hostile_calibrations(valid, rng, 100000)):
        if time.perf_counter() > deadline:
            break
        path = HX.save(folder, name, data)
        lib = _parser_message(path)
        t = time.perf_counter()
        outcomes = [loader_outcome(load_calibration, path, library_message=lib)]
        if i % 5 == 0:
            state = MultiviewSession()
            try:
                outcomes.append(handler_outcome(MH.on_multiview_run, state, videos, [str(path)], 2,
                                                detector_factory=stub_detector, poll_s=0.05,
                                                library_message=lib))  # fmt: skip
            finally:
                state.cleanup()
        worst = _worst(outcomes)
        tally.add("calibrations", worst[0], f"{name}: {worst[1]}", time.perf_counter() - t)


def _parser_message(path: Path) -> str | None:
    """What the parsers themselves say of the file (json, tomllib), for the raw-text check."""
    import tomllib

    try:
        text = path.read_bytes().decode("utf-8", errors="strict")
        if path.suffix == ".json":
            json.loads(text)
        elif path.suffix == ".toml":
            tomllib.loads(text)
    except Exception as err:  # noqa: BLE001
        return str(err)
    return None


def run_events(tally: Tally, folder: Path, rng: np.random.Generator, deadline: float) -> None:
    import gradio as gr

    from app.ui import canvas as C
    from app.ui import handlers as H
    from app.ui import multiview_handlers as MH
    from app.ui import video_handlers as VH
    from app.ui import video_prompts as VP
    from app.ui.multiview_state import MultiviewSession
    from app.ui.state import UISession
    from app.ui.video_state import VideoSession

    weird = HX.WEIRD_VALUES
    engine = StubEngine()
    photo = UISession(session_id="fuzz-events")
    H.on_upload(photo, str(EXAMPLES / "astronaut.png"))
    empty = UISession(session_id="fuzz-empty")
    video = str(EXAMPLES / "dancer.mp4")
    frame_state, _, _ = VP.on_show_frame(VP.VideoPromptState(), video, 0)
    modes = ["positive", "negative", "box", "keypoint"]

    def pick(valid: list[Any]) -> Any:
        return valid[int(rng.integers(len(valid)))] if rng.random() < 0.4 else weird[int(rng.integers(len(weird)))]

    def page_click(state: UISession, mode: Any, joint: Any, payload: Any) -> Any:
        """What app.ui.page's click callback does with the canvas's event data."""
        try:
            x, y = C.click_xy(payload)
        except ValueError as err:
            raise gr.Error(f"The click could not be read ({err}); click on the photo again.") from err
        return H.on_click(state, mode, joint, x, y)

    cases: list[Callable[[], tuple[str, str]]] = [
        lambda: handler_outcome(H.on_example, photo, HX.FakeSelect(pick([0, 1, 2]))),
        lambda: handler_outcome(H.on_example, empty, pick([0, 2])),
        lambda: handler_outcome(H.on_click, photo, pick(modes), pick(["left_wrist", None]), pick([10.0, 100]),
                                pick([20.0, 200])),  # fmt: skip
        lambda: handler_outcome(page_click, photo, pick(modes), pick(["left_wrist"]),
                                pick([{"x": 10, "y": 20}, {"x": 1e9, "y": 2}, {"x": "1"}])),  # fmt: skip
        lambda: handler_outcome(H.on_click, empty, pick(modes), None, 1.0, 2.0),
        lambda: handler_outcome(H.on_undo, (photo, empty)[int(rng.integers(2))]),
        lambda: handler_outcome(H.run_latest, photo, pick([None, 60.0, 0]),
                                pick([{}, {"segmentation": "embedded"}, {"hmr": ["x"]}, {"camera": "nope"}]),
                                engine=engine, force=True),  # fmt: skip
        lambda: handler_outcome(VH.on_video_run, VideoSession(), pick([video]), pick([1, 2]), pick([0.0]),
                                pick([None, 1.0]), pick([640]), pick([True]), pick([2]), engine=engine),  # fmt: skip
        lambda: handler_outcome(VP.on_show_frame, frame_state, pick([video]), pick([0, 5, 99])),
        lambda: handler_outcome(VP.on_frame_click, frame_state, pick(modes), pick(["left_wrist"]), pick([10.0]),
                                pick([20.0])),  # fmt: skip
        lambda: handler_outcome(MH.on_multiview_run, MultiviewSession(),
                                pick([[str(p) for p in MH.EXAMPLE_VIDEOS], [str(p) for p in MH.EXAMPLE_VIDEOS] * 3]),
                                pick([[str(MH.EXAMPLE_CALIBRATION)]]), pick([2, 0]), pick([640]), pick([True]),
                                pick([False]), detector_factory=stub_detector, poll_s=0.05),  # fmt: skip
    ]
    try:
        i = 0
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            outcome, detail = cases[i % len(cases)]()
            tally.add("events", outcome, f"case {i % len(cases)}: {detail}", time.perf_counter() - t)
            i += 1
    finally:
        photo.cleanup()
        empty.cleanup()
        for leftover in Path(tempfile.gettempdir()).glob("hmr-playground-*"):
            if leftover.is_dir() and leftover.stat().st_mtime > START_WALL:
                shutil.rmtree(leftover, ignore_errors=True)


def _import_all() -> None:
    import importlib

    for module in ("app.ui.handlers", "app.ui.video_handlers", "app.ui.video_prompts", "app.ui.multiview_handlers",
                   "pipelines.io.video_io", "pipelines.multiview.formats", "cv2"):  # fmt: skip
        importlib.import_module(module)
    HX.valid_images(), HX.image_bombs()  # cached: encoding AVIF takes ~0.5 GB for a moment (not the app)


START_WALL = time.time()
RUNNERS = {"images": run_images, "videos": run_videos, "calibrations": run_calibrations, "events": run_events}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-s", type=float, default=180.0, help="total time for all the inputs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the full report here")
    args = parser.parse_args(argv)

    warnings.simplefilter("ignore")  # gr.Warning outside a page, Pillow's corrupt-EXIF notes
    records = RECORDS
    logging.getLogger("app.ui").addHandler(records)
    logging.getLogger("app.ui").propagate = False  # the tracebacks are counted, not printed
    _import_all()  # before the clock starts: the imports are not the inputs' cost
    rng = np.random.default_rng(args.seed)
    tally = Tally()
    folder = Path(tempfile.mkdtemp(prefix="bench_fuzz_"))
    peaks: dict[str, float] = {}
    start_mb = rss_mb()
    t0 = time.perf_counter()
    try:
        with native_logs_hidden(), PeakRss() as overall:  # FFmpeg's notes on the damaged videos
            for kind, runner in RUNNERS.items():
                base = rss_mb()
                with PeakRss() as peak:
                    runner(tally, folder / kind, rng, time.perf_counter() + args.budget_s * SHARES[kind])
                peaks[kind] = max(peak.peak_mb, base) - base
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.perf_counter() - t0

    headers = ["inputs", "tried", "accepted", "refused with a sentence", "reached the stub engine (id sentence)",
               "other internal errors (id sentence)", "crashes", "raw exception texts shown", "slowest (ms)",
               "peak RSS rise (MB)"]  # fmt: skip
    rows = []
    for kind in tally.counts:
        c = tally.counts[kind]
        peak = round(peaks[kind]) if kind in peaks else None
        rows.append([kind, sum(c.values()), c["accepted"], c["refused"], c["engine"], c["internal"], c["crash"],
                     c["raw"], round(tally.slowest_ms[kind]), peak])  # fmt: skip
    total: Counter[str] = Counter()
    for kind, c in tally.counts.items():
        if kind in RUNNERS:
            total.update(c)
    rows.append(["all", sum(total.values()), total["accepted"], total["refused"], total["engine"], total["internal"],
                 total["crash"], total["raw"], round(max(tally.slowest_ms.values(), default=0)),
                 round(overall.peak_mb - start_mb)])  # fmt: skip
    print(f"Machine: {machine_description()}; load average {os.getloadavg()[0]:.1f} at the end; "
          f"{elapsed:.0f} s for {sum(total.values())} inputs (budget {args.budget_s:.0f} s, seed {args.seed}).")
    print(f"Peak resident memory of the process: {overall.peak_mb:.0f} MB (at start {start_mb:.0f} MB).")
    print(f"Internal errors logged by the guard, by type: {dict(records.types)} (StubFailure: the stub engine, "
          "by design).")  # fmt: skip
    print()
    print(markdown_table(headers, rows))
    for kind, lines in tally.examples.items():
        for line in lines:
            print(f"  {kind}: {line}")
    if args.json:
        args.json.write_text(json.dumps({"counts": {k: dict(v) for k, v in tally.counts.items()},
                                         "examples": tally.examples, "peaks_mb": peaks,
                                         "errors_logged": dict(records.types)}, indent=2))  # fmt: skip
    return 1 if total["crash"] or total["raw"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
