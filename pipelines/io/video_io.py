"""Decode a video as a stream of RGB frames (OpenCV), with a stride, a time range and a size limit.

Frames are decoded in order (no seeking, which is frame-inexact for many codecs) and handed out one
at a time, optionally from a decoder thread with a small bounded queue, so memory stays flat
whatever the video's length. Pixels: origin at the top-left corner, RGB uint8 (H, W, 3).
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipelines.errors import UserFacingError
from pipelines.multiview.video import _open as open_capture

DEFAULT_FPS = 30.0
"""Frame rate assumed when the container announces none."""


@dataclass
class VideoInfo:
    """What the container announces about a video."""

    path: Path
    """The video file."""
    fps: float
    """Frames per second (DEFAULT_FPS when the container gives none)."""
    frame_count: int
    """Number of frames announced (may be approximate; 0 when unknown)."""
    width: int
    """Frame width in pixels, as decoded."""
    height: int
    """Frame height in pixels, as decoded."""


@dataclass
class VideoFrame:
    """One decoded (and possibly downscaled) frame."""

    index: int
    """Index of the frame in the video (0-based, before the stride)."""
    time_s: float
    """Presentation time in seconds (index / fps)."""
    rgb_hw3: np.ndarray
    """The frame, RGB uint8, downscaled by `scale`."""
    scale: float
    """Processed pixels per source pixel (1.0 when not downscaled)."""


@dataclass
class DecodeReport:
    """How decoding went; filled while frames are read."""

    decoded: int = 0
    """Frames decoded (wanted or not) before the stream ended."""
    problems: list[str] = field(default_factory=list)
    """Plain-language notes: truncated file, damaged frame."""


def probe(path: str | Path) -> VideoInfo:
    """Open the video and read its announced properties; raises UserFacingError naming the file."""
    path = Path(path)
    capture = open_capture(path)
    try:
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0)
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0)
    finally:
        capture.release()
    if not math.isfinite(fps) or fps <= 0 or fps > 1000:
        fps = DEFAULT_FPS
    return VideoInfo(path, fps, max(count, 0), width, height)


def _frames(info: VideoInfo, stride: int, start_s: float, end_s: float | None, max_side: int | None,
            report: DecodeReport) -> Iterator[VideoFrame]:  # fmt: skip
    first = max(0, int(math.ceil(start_s * info.fps - 1e-9)))
    last = None if end_s is None else int(math.floor(end_s * info.fps - 1e-9))
    capture = open_capture(info.path)
    try:
        index = 0
        while last is None or index <= last:
            if not capture.grab():
                break
            report.decoded = index + 1
            if index >= first and (index - first) % stride == 0:
                ok, bgr_hw3 = capture.retrieve()
                if not ok or bgr_hw3 is None:
                    report.problems.append(f"{info.path.name}: frame {index} is damaged; decoding stopped there.")
                    break
                rgb_hw3 = cv2.cvtColor(bgr_hw3, cv2.COLOR_BGR2RGB)
                scale = 1.0
                h, w = rgb_hw3.shape[:2]
                if max_side and max(h, w) > max_side:
                    scale = max_side / max(h, w)
                    size = (max(1, round(w * scale)), max(1, round(h * scale)))
                    rgb_hw3 = cv2.resize(rgb_hw3, size, interpolation=cv2.INTER_AREA)
                yield VideoFrame(index, index / info.fps, rgb_hw3, scale)
            index += 1
    finally:
        capture.release()
    if report.decoded == 0:
        report.problems.append(f"{info.path.name}: the video has no frame that can be decoded.")
    elif last is None and info.frame_count > 0 and report.decoded < info.frame_count - 1:
        report.problems.append(f"{info.path.name}: truncated video: {info.frame_count} frames announced, "
                               f"{report.decoded} decoded.")  # fmt: skip


def read_video(info: VideoInfo, *, stride: int = 1, start_s: float = 0.0, end_s: float | None = None,
               max_side: int | None = None, report: DecodeReport | None = None,
               prefetch: int = 4) -> Iterator[VideoFrame]:  # fmt: skip
    """Yield the wanted frames in order: every `stride`-th frame from `start_s` up to `end_s` (seconds),
    downscaled so that the longer side is at most `max_side` pixels. With `prefetch` > 0 frames are
    decoded in a thread, at most `prefetch` ahead (OpenCV releases the GIL while decoding).
    Problems met while decoding (truncated file, damaged frame) end the stream and are added to `report`.
    """
    if stride < 1:
        raise UserFacingError(f"The frame stride must be at least 1; got {stride}.")
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise UserFacingError(f"The time range {start_s}..{end_s} s is empty or negative.")
    report = report if report is not None else DecodeReport()
    frames = _frames(info, stride, start_s, end_s, max_side, report)
    if prefetch <= 0:
        yield from frames
        return
    q: queue.Queue = queue.Queue(maxsize=prefetch)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        q.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    break
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            q.put(err)
            return
        finally:
            frames.close()
        q.put(done)

    thread = threading.Thread(target=work, name="video-decode", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)
