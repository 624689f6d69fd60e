"""One multi-view run as a background job with progress and a cancel token: what the Multi-view tab drives.

Glue only, over pipelines.modes.multiview (checks, per-view keypoints, fusion) and viz.multiview_outputs
(tracks.json, report.json, calibration.json, TRC, BVH, result.rrd): the same steps as the CLI's
`multiview` command. The work runs in a thread so that the tab can show progress (frames read of all
views' planned frames) while it goes on. The views are fused only once every view is read, so Cancel
stops the run and nothing is written. Units: metres, the calibration's world frame; pixels of the
source videos.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipelines.errors import UserFacingError
from pipelines.io.video_io import probe
from pipelines.modes.multiview import MultiviewOptions, MultiviewResult, run_multiview
from pipelines.multiview.fuse import FuseOptions

CALIB_SUFFIXES = (".json", ".txt", ".toml", ".yml", ".yaml", ".xml")
"""Calibration files the upload accepts (project JSON, Qualisys .qca.txt / .xml, Pose2Sim .toml, OpenCV .yml)."""
SELF_CALIBRATION_NOTE = ("No calibration file: the cameras are estimated from the people (their keypoints over "
                         "time; the metric scale from the tallest person, taken to be 1.70 m tall).")  # fmt: skip
MIN_MAX_SIDE = 64


class RunCancelled(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside the job when the cancel token is set."""


@dataclass
class MultiviewRunOptions:
    """What the user chose for a multi-view capture."""

    n_frames: int | None = None
    """Process only the first N frames of each video (None: all)."""
    max_side: int | None = 1280
    """Downscale frames for the detector so that the longer side is at most this (None: never)."""
    sync: bool = True
    """Estimate each camera's time offset from the people's motion."""
    refine: bool = True
    """Refine the cameras by bundle adjustment on the people's keypoints."""

    def check(self) -> None:
        """Raise UserFacingError with one sentence for an option that cannot work."""
        if self.n_frames is not None and self.n_frames < 2:
            raise UserFacingError(f"Process at least 2 frames (0: all of them); got {self.n_frames}.")
        if self.max_side and self.max_side < MIN_MAX_SIDE:
            raise UserFacingError(f"The maximum resolution must be 0 (no limit) or at least {MIN_MAX_SIDE} pixels; "
                                  f"got {self.max_side}.")  # fmt: skip

    def mode_options(self) -> MultiviewOptions:
        return MultiviewOptions(n_frames=self.n_frames, max_side=self.max_side or None,
                                fuse=FuseOptions(sync=self.sync, refine=self.refine))  # fmt: skip


def prepare_calibration(paths: list[str | Path] | None, work_dir: Path) -> Path | None:
    """The calibration file to read from the uploaded file(s): one file, or intri.yml + extri.yml (copied
    into one folder, since each upload lands in its own). None when none was given: the cameras are then
    estimated from the people (SELF_CALIBRATION_NOTE)."""
    files = [Path(p) for p in (paths or []) if p]
    if not files:
        return None
    if len(files) == 1:
        return files[0]
    names = sorted(f.name.lower() for f in files)
    if len(files) == 2 and all(n.endswith((".yml", ".yaml")) for n in names) and names[0].startswith("extri") \
            and names[1].startswith("intri"):  # fmt: skip
        folder = work_dir / "calibration"
        folder.mkdir(parents=True, exist_ok=True)
        for f in files:
            role = "intri" if f.name.lower().startswith("intri") else "extri"
            shutil.copyfile(f, folder / f"{role}{f.suffix.lower()}")
        return next(folder.glob("intri.*"))
    raise UserFacingError(f"Upload one calibration file, or intri.yml and extri.yml together; got {len(files)} files "
                          f"({', '.join(f.name for f in files)}).")  # fmt: skip


def planned_frames(videos: list[Path], n_frames: int | None) -> int | None:
    """Frames to read over all views (None when a video does not announce its length)."""
    total = 0
    for v in videos:
        count = probe(v).frame_count
        if count <= 0:
            return None
        total += min(count, n_frames) if n_frames else count
    return total


@dataclass
class MultiviewJob:
    """A capture processed into `out_dir` in a background thread; `start()`, poll `done`, then `outcome()`."""

    videos: list[Path]
    """One video per camera."""
    calib: Path | None
    """The calibration file (None: the cameras are estimated from the people)."""
    out_dir: Path
    """Where the outputs go (written atomically at the end)."""
    options: MultiviewRunOptions
    """The user's options."""
    should_stop: Callable[[], bool] = lambda: False
    """The cancel token, asked after each decoded frame."""
    detector_factory: Callable[[], Any] | None = None
    """Makes one person detector shared by the views (default: none; the mode makes one per view, see
    MultiviewOptions.detector), closed after the run."""
    frames_read: int = 0
    """Frames read so far, all views together."""
    stage: str = "starting"
    """What the job is doing now, for the status."""
    t0: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    """Set once the job has ended (finished, failed or cancelled)."""
    result: MultiviewResult | None = None
    files: list[Path] = field(default_factory=list)
    error: BaseException | None = None
    cancelled: bool = False
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._work, name="multiview-run", daemon=True)
        self._thread.start()

    def _on_frame(self) -> None:
        self.frames_read += 1
        if self.should_stop():
            raise RunCancelled

    def _say(self, message: str) -> None:
        """A stage of the fusion starts: Cancel stops it here (the bundle adjustment takes tens of seconds)."""
        if self.should_stop():
            raise RunCancelled
        self.stage = message

    def _work(self) -> None:
        detector = None
        try:
            if self.detector_factory is not None:
                detector = self.detector_factory()
            result = run_multiview(self.videos, self.calib, self.options.mode_options(), detector=detector,
                                   progress=self._say, on_frame=self._on_frame)  # fmt: skip
            self.stage = "writing the outputs"  # a Cancel pressed after the fusion keeps its finished result
            from viz.multiview_outputs import write_outputs

            self.files = write_outputs(result, self.out_dir)
            self.result = result
        except RunCancelled:
            self.cancelled = True
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread by outcome()
            self.error = err
        finally:
            if detector is not None and hasattr(detector, "close"):
                detector.close()
            self.done.set()

    def wait(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the end; True once it has ended."""
        return self.done.wait(timeout_s)

    def outcome(self) -> MultiviewResult | None:
        """After `done`: the result (None when cancelled); re-raises the job's error."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.result

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.t0
