"""One video run as a stream of processed frames, with a cancel token: what the playground's Video tab drives.

Glue only, over pipelines.io.video_io (decode), pipelines.modes.video (detection, tracking, smoothing,
fits) and viz.video_outputs (the .rrd, tracks.json, per-track files): the same steps as the CLI's
`video` command. Frames are processed as they are decoded; `frames()` yields each result once it is
logged, `read()` gives the recording's new bytes for a streaming viewer, and `finish()` writes the
outputs of the frames processed so far, whether the video ended, was cancelled or was cut short by a
damaged frame. Units: metres, OpenCV camera frame; pixels of the source video in the outputs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipelines.errors import UserFacingError
from pipelines.io.video_io import DecodeReport, VideoInfo, probe, read_video
from pipelines.modes.image import ImagePipeline
from pipelines.modes.video import VideoFrameResult, VideoOptions, VideoPipeline
from pipelines.tracking.prompts import VideoPrompts

MIN_MAX_SIDE = 64
"""The smallest maximum resolution accepted (pixels of the longer side)."""


@dataclass
class VideoRunOptions:
    """What the user chose for a video."""

    stride: int = 1
    """Process every `stride`-th frame."""
    start_s: float = 0.0
    """First time processed, seconds."""
    end_s: float | None = None
    """Last time processed, seconds (None: to the end)."""
    max_side: int | None = 1280
    """Downscale frames so that the longer side is at most this many pixels (None or 0: never)."""
    smooth: bool = True
    """Temporal smoothing of each whole track once the video has run (VideoOptions.smooth)."""
    max_people: int = 4
    """At most this many people per frame."""
    focal_px: float | None = None
    """Focal length in pixels of the source video (None: estimated on the first fitted frame)."""
    mesh_hz: float = 1.0
    """Full meshes per second in the recording (skeletons are on every frame)."""

    def check(self) -> None:
        """Raise UserFacingError with one sentence for an option that cannot work."""
        if self.stride < 1:
            raise UserFacingError(f"The frame stride must be at least 1; got {self.stride}.")
        if self.max_side and self.max_side < MIN_MAX_SIDE:
            raise UserFacingError(f"The maximum resolution must be 0 (no limit) or at least {MIN_MAX_SIDE} pixels; "
                                  f"got {self.max_side}.")  # fmt: skip
        if self.start_s < 0 or (self.end_s is not None and self.end_s <= self.start_s):
            end = "the end" if self.end_s is None else f"{self.end_s:g} s"
            raise UserFacingError(f"The time range {self.start_s:g} s to {end} is empty or negative.")
        if self.max_people < 1:
            raise UserFacingError(f"The maximum number of people must be at least 1; got {self.max_people}.")

    def as_dict(self) -> dict[str, object]:
        return {"stride": self.stride, "start_s": self.start_s, "end_s": self.end_s, "max_side": self.max_side,
                "smooth": self.smooth, "max_people": self.max_people}  # fmt: skip


@dataclass
class TrackSummary:
    """One track of a finished run, for the status."""

    id: int
    """Track id (its colour in the viewer)."""
    frames: int
    """Frames with a fitted body."""
    height_m: float | None
    """Its held body height, metres."""
    reprojection_px: float
    """Mean 2D keypoint error of its fits, pixels."""


@dataclass
class VideoRunSummary:
    """How a run ended and what it wrote."""

    frames_done: int
    """Frames processed."""
    frames_planned: int | None
    """Frames the options asked for (None when the video does not announce its length)."""
    elapsed_s: float
    """Wall time from the first frame asked for to the outputs written."""
    files: list[Path]
    """The written outputs (tracks.json, result.rrd, per-track files)."""
    tracks: list[TrackSummary]
    """Tracks with at least one fitted body."""
    frames_without_people: int
    """Processed frames in which nobody was found."""
    cancelled: bool
    """Stopped by the user; the outputs hold the frames done before."""
    problems: list[str] = field(default_factory=list)
    """Decoding problems (truncated video, damaged frame): the frames before were processed."""
    focal_px: float | None = None
    """The video's focal length, pixels of the source video."""
    camera_source: str = ""
    """Where that focal comes from ('user', 'estimated', ...)."""

    @property
    def frames_per_s(self) -> float:
        return self.frames_done / self.elapsed_s if self.elapsed_s > 0 else float("nan")


def planned_frames(info: VideoInfo, stride: int, start_s: float, end_s: float | None) -> int | None:
    """How many frames `read_video` will yield with these options (None when the length is unknown)."""
    if info.frame_count <= 0:
        return None
    first = max(0, int(np.ceil(start_s * info.fps - 1e-9)))
    last = info.frame_count - 1
    if end_s is not None:
        last = min(last, int(np.floor(end_s * info.fps - 1e-9)))
    return max(0, (last - first) // stride + 1)


class VideoRun:
    """A video being processed into `out_dir`; create, iterate `frames()`, then `finish()` (or `abort()`).

    Raises UserFacingError (one sentence naming the file) when the video cannot be opened or an option
    cannot work; nothing is written then.
    """

    def __init__(self, path: str | Path, out_dir: str | Path, options: VideoRunOptions, image: ImagePipeline, *,
                 stream: bool = False, prompts: VideoPrompts | None = None) -> None:  # fmt: skip
        """`prompts`: the user's clicks on frames, source-video pixels (pipelines.tracking.prompts);
        checked against the video here (BadPromptError)."""
        from viz.video_log import VideoLogger
        from viz.video_outputs import VideoOutputs

        options.check()
        self.options = options
        self.info = probe(path)
        long_side = max(self.info.width, self.info.height)
        self.scale = options.max_side / long_side if options.max_side and long_side > options.max_side else 1.0
        focal = None if options.focal_px is None else options.focal_px * self.scale
        self.planned = planned_frames(self.info, options.stride, options.start_s, options.end_s)
        self.prompts = prompts or VideoPrompts()
        self.prompts.validate(self.info.width, self.info.height, self.info.frame_count, self._processed())
        self.pipeline = VideoPipeline(image, VideoOptions(
            focal_px=focal, smooth=options.smooth, rate_hz=self.info.fps / options.stride,
            max_people=options.max_people, mesh_hz=options.mesh_hz), prompts=self.prompts)  # fmt: skip
        self.report = DecodeReport()
        self.warnings: list[str] = []
        self.frames_without_people = 0
        self.cancelled = False
        self.t0 = time.perf_counter()
        # The outputs' recording is this run's own logger, streaming (when asked) as well as writing the file.
        self.outputs = VideoOutputs(out_dir, self.info, write_rrd=False)
        try:
            self.logger = VideoLogger(self.outputs.tmp / "result.rrd", self.info, mesh_hz=options.mesh_hz,
                                      stream=stream)  # fmt: skip
        except BaseException:
            self.outputs.abort()
            raise
        self.outputs.logger = self.logger

    def _processed(self) -> list[int] | None:
        """The indices of the frames the options ask for (None when the video does not say its length)."""
        if self.planned is None:
            return None
        first = max(0, int(np.ceil(self.options.start_s * self.info.fps - 1e-9)))
        return [first + i * self.options.stride for i in range(self.planned)]

    @property
    def frames_done(self) -> int:
        return len(self.pipeline.frames_done)

    def frames(self, should_stop: Callable[[], bool] | None = None) -> Iterator[VideoFrameResult]:
        """Process the wanted frames in order, logging each; yields each result once it is logged.
        `should_stop` (the cancel token) is asked after each frame: once it answers True no further
        frame is processed (`cancelled`); the pipeline's iterator is closed, which stops its threads."""
        o = self.options
        decoded = read_video(self.info, stride=o.stride, start_s=o.start_s, end_s=o.end_s,
                             max_side=o.max_side or None, report=self.report,
                             keep_source=self.pipeline.wants_source_frames)  # fmt: skip
        results = self.pipeline.run(decoded)
        try:
            if should_stop is not None and should_stop():
                self.cancelled = True
                return
            for result in results:
                self.outputs.add(result)
                self.frames_without_people += not result.people
                self.warnings += result.warnings
                yield result
                if should_stop is not None and should_stop():
                    self.cancelled = True
                    return
        finally:
            results.close()
            decoded.close()  # stops the decoder thread when the caller stops early

    def read(self) -> bytes | None:
        """The recording's bytes logged since the last read (with `stream`), for a streaming viewer; after
        `finish`, what it logged last (the recording's end)."""
        return self.logger.read()

    def abort(self) -> None:
        """Drop everything (nothing is left in `out_dir`)."""
        self.pipeline.close()
        self.outputs.abort()

    def finish(self) -> VideoRunSummary:
        """Write the outputs of the frames processed so far. Raises UserFacingError (and writes nothing)
        when no frame was processed."""
        self.pipeline.close()  # no frame comes after this
        if not self.pipeline.frames_done:
            self.outputs.abort()
            name = self.info.path.name
            if self.cancelled:
                raise UserFacingError(f"{name}: cancelled before the first frame was processed; nothing was written.")
            why = self.report.problems[0] if self.report.problems else f"{name}: no frame in the requested time range."
            raise UserFacingError(why)
        problems = list(self.report.problems) + self.pipeline.prompts.problems  # for the status
        # as the CLI: decoding problems, then notes (variable frame rate, skipped frame files), then the
        # frames' warnings (which carry the prompts' problems)
        files = self.outputs.finish(self.pipeline, self.report.problems + self.report.notes + self.warnings,
                                    {**self.options.as_dict(), "cancelled": self.cancelled,
                                     "prompts": self.prompts.as_dict()})  # fmt: skip
        tracks = [TrackSummary(t.id, len(t.frames), t.height_m, float(np.mean(t.reprojection_px_f)))
                  for t in sorted(self.pipeline.tracks.values(), key=lambda t: t.id) if t.frames]  # fmt: skip
        cam = self.pipeline.camera
        return VideoRunSummary(
            frames_done=self.frames_done, frames_planned=self.planned, elapsed_s=time.perf_counter() - self.t0,
            files=files, tracks=tracks, frames_without_people=self.frames_without_people, cancelled=self.cancelled,
            problems=problems, focal_px=None if cam is None else cam.focal_px / self.scale,
            camera_source="" if cam is None else cam.source,
        )  # fmt: skip
