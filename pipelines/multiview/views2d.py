"""Per view: people's 2D keypoints over time, tracked with stable ids (the video mode's pieces).

Each view's video is decoded with pipelines.io.video_io (optionally downscaled for the detector),
people are detected by the embedded segmentation stage in one pass per frame (as the video mode does),
tracked by pipelines.tracking.tracker.PersonTracker and their 2D keypoints smoothed by the video mode's
1-euro filter (pipelines.tracking.smoothing.keypoint_smoother_2d: the 2D keypoints alone). Keypoints are
returned in pixels of the SOURCE video (origin top-left, with the lens distortion of the raw image),
BlazePose order (33 points).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.io.atomic import atomic_path
from pipelines.io.video_io import DecodeReport, VideoFrame, VideoInfo, read_video
from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.tracking.smoothing import CoordinateFilters, keypoint_smoother_2d
from pipelines.tracking.tracker import PersonTracker

N_KP = len(BLAZEPOSE_NAMES)


@dataclass
class ViewTracks:
    """One view's tracked people over the processed frames."""

    name: str
    """The view's name (its camera's name)."""
    frames: np.ndarray
    """Processed frame indices (F,) of this video."""
    xy_tfk2: np.ndarray
    """Keypoints (tracks, F, 33, 2) in source-video pixels (raw, distorted); NaN where the track is absent."""
    conf_tfk: np.ndarray
    """Confidences (tracks, F, 33); 0 where the track is absent."""
    track_ids: list[int]
    """The view's own track id of each row."""
    problems: list[str] = field(default_factory=list)
    """Decoding problems (truncated video, damaged frame)."""

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, tmp.open("wb") as fh:
            np.savez_compressed(fh, name=self.name, frames=self.frames, xy_tfk2=self.xy_tfk2,
                                conf_tfk=self.conf_tfk, track_ids=np.asarray(self.track_ids))  # fmt: skip

    @staticmethod
    def load(path: str | Path) -> ViewTracks:
        d = np.load(path)
        return ViewTracks(str(d["name"]), d["frames"], d["xy_tfk2"], d["conf_tfk"], d["track_ids"].tolist())


def track_view(info: VideoInfo, name: str, detector: Any, *, n_frames: int | None = None, stride: int = 1,
               max_side: int | None = 1280, smooth: bool = True, min_track_frames: int = 3,
               on_frame: Callable[[], None] | None = None) -> ViewTracks:  # fmt: skip
    """Detect and track the people of one video; `detector` is a segmentation backend (`.detect(rgb)`)."""
    end_s = None if n_frames is None else (n_frames * stride - 0.5) / info.fps
    report = DecodeReport()
    tracker = PersonTracker(max_age=15)
    smoothers: dict[int, CoordinateFilters] = {}
    per_frame: list[tuple[int, dict[int, tuple[np.ndarray, np.ndarray]]]] = []
    # A detector that crops from the decoded frame (the landmark tracker's detect_frame) gets frames that
    # keep it: only the pixels under the tracked regions are downscaled, the whole frame only where the person
    # detector runs, nothing on interpolated frames (the same crops to the bit).
    lazy = callable(getattr(detector, "detect_frame", None))
    frames = read_video(info, stride=stride, end_s=end_s, max_side=max_side, report=report, keep_source=lazy)
    for frame, dets in _frame_detections(frames, detector):
        ids = tracker.update(dets)
        found: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for tid, det in zip(ids, dets, strict=True):
            kp = det.keypoints2d
            xy_k2 = np.asarray(kp.xy_k2[:N_KP], np.float64)
            if smooth:  # the video mode's 1-euro filter, on the 2D keypoints only (the 3D ones are not used)
                xy_k2 = smoothers.setdefault(tid, keypoint_smoother_2d(info.fps / stride))(xy_k2, frame.time_s)
            xy_k2 = xy_k2 / frame.scale
            found[tid] = (xy_k2, np.asarray(kp.conf_k[:N_KP], np.float64))
        per_frame.append((frame.index, found))
        if on_frame is not None:
            on_frame()
    frames = np.array([f for f, _ in per_frame], dtype=int)
    counts: dict[int, int] = {}
    for _, found in per_frame:
        for tid in found:
            counts[tid] = counts.get(tid, 0) + 1
    keep = sorted(t for t, c in counts.items() if c >= min_track_frames)
    xy = np.full((len(keep), len(frames), N_KP, 2), np.nan)
    conf = np.zeros((len(keep), len(frames), N_KP))
    row = {t: i for i, t in enumerate(keep)}
    for f, (_, found) in enumerate(per_frame):
        for tid, (xy_k2, conf_k) in found.items():
            if tid in row:
                xy[row[tid], f], conf[row[tid], f] = xy_k2, conf_k
    return ViewTracks(name, frames, xy, conf, keep, report.problems)


def _frame_detections(frames: Iterable[VideoFrame], detector: Any) -> Iterator[tuple[VideoFrame, list[Any]]]:
    """Each frame with its people, in order; a detector with `can_skip` / `detect_span` (the landmark
    tracker with LandmarkTrackingOptions.skip_motion) gets the frames it may skip with the next one after them;
    one with `detect_frame` gets the decoded frames themselves (else their RGB pixels)."""
    can_skip = getattr(detector, "can_skip", None)
    by_frame = callable(getattr(detector, "detect_frame", None))
    detect = detector.detect_frame if by_frame else lambda f: detector.detect(f.rgb_hw3)
    pixels = (lambda f: f) if by_frame else (lambda f: f.rgb_hw3)
    pending: list[VideoFrame] = []
    for frame in frames:
        if can_skip is not None and can_skip(len(pending)):
            pending.append(frame)
        elif pending:
            skipped, last = detector.detect_span([pixels(f) for f in pending], pixels(frame))
            yield from zip(pending, skipped, strict=True)
            yield frame, last
            pending = []
        else:
            yield frame, detect(frame)
    if pending:  # the last frames
        if len(pending) > 1:
            skipped, last = detector.detect_span([pixels(f) for f in pending[:-1]], pixels(pending[-1]))
            yield from zip(pending[:-1], skipped, strict=True)
            yield pending[-1], last
        else:
            yield pending[0], detect(pending[0])


def make_view_detector(kind: str = "tracking", max_people: int = 4, model_threads: int | None = None,
                       skip_motion: float | None = None, skip_span: int = 2) -> Any:  # fmt: skip
    """A person detector for one view's frames: "tracking" = BlazePose landmarks tracked from frame to frame,
    the person detector every 10 frames (pipelines.tracking.landmark_tracking, the video mode's default;
    crops cut with its exact 2:1 halving, LandmarkTrackingOptions.even_halving); "image" = the embedded
    segmenter's full single-pass detection on every frame (the first slice's). `model_threads`: threads of
    each model's interpreter (None: the default); `skip_motion`: the tracker's landmark model on every
    `skip_span`-th frame only, where people move less (LandmarkTrackingOptions.skip_motion / skip_span;
    "tracking" only)."""
    if kind == "tracking":
        from pipelines.tracking.landmark_tracking import LandmarkTrackingDetector, LandmarkTrackingOptions

        options = LandmarkTrackingOptions(max_people=max_people, landmark_threads=model_threads, even_halving=True,
                                          skip_motion=skip_motion, skip_span=skip_span)  # fmt: skip
        return LandmarkTrackingDetector(options)
    from pipelines.registry import create

    return create("segmentation", "embedded", single_pass=True, max_people=max_people)


def track_views(infos: list[VideoInfo], names: list[str], *, detector: Any = None, kind: str = "tracking",
                threads: int = 2, progress: Callable[[str], None] | None = None, skip_motion: float | None = None,
                skip_span: int = 2, **kwargs: Any) -> list[ViewTracks]:  # fmt: skip
    """Every view's tracks. With `detector` (one shared stage): the views one after the other (its tracked
    people forgotten between views); else one detector of `kind` per view, `threads` views at a time (the
    decoders and the TFLite models release the GIL), each model on cores / (views at a time) threads (at
    most 2: one on this 2-core machine when two views run side by side, as they already fill both cores and a
    second interpreter thread only waits: ~15 % more CPU a landmark run; two for a single view).
    `skip_motion`, `skip_span`: make_view_detector's. `kwargs` go to track_view."""
    say = progress or (lambda _msg: None)
    if detector is not None:
        out = []
        for info, name in zip(infos, names, strict=True):
            say(f"keypoints and tracking: {info.path.name}")
            if hasattr(detector, "reset"):
                detector.reset()
            out.append(track_view(info, name, detector, **kwargs))
        return out
    from concurrent.futures import ThreadPoolExecutor

    at_once = max(1, min(threads, len(infos)))
    model_threads = min(2, max(1, (os.cpu_count() or 1) // at_once))
    # One detector per worker thread, started over for each of its views (`restart`: the same tracks as a
    # new one) where it can be, so the models' interpreters are made once a thread, not once a view.
    local = threading.local()
    made: list[Any] = []

    def one(item: tuple[VideoInfo, str]) -> ViewTracks:
        own = getattr(local, "detector", None)
        if own is None or not hasattr(own, "restart"):
            own = make_view_detector(kind, model_threads=model_threads, skip_motion=skip_motion, skip_span=skip_span)
            local.detector = own
            made.append(own)
        else:
            own.restart()
        return track_view(item[0], item[1], own, **kwargs)

    say(f"keypoints and tracking: {len(infos)} views, {at_once} at a time")
    try:
        with ThreadPoolExecutor(max_workers=at_once, thread_name_prefix="view-keypoints") as pool:
            futures = [pool.submit(one, item) for item in zip(infos, names, strict=True)]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        for own in made:
            if hasattr(own, "close"):
                own.close()
