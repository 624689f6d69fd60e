"""Decode a video, or a folder of frames, as a stream of RGB frames (OpenCV), with a stride, a time range
and a size limit.

Frames are decoded in order (no seeking, which is frame-inexact for many codecs) and handed out one
at a time, optionally from a decoder thread with a small bounded queue, so memory stays flat
whatever the video's length. Pixels: origin at the top-left corner, RGB uint8 (H, W, 3).

A folder of frames: its jpg / jpeg / png / bmp / webp files, sorted by name with numbers in
numerical order (frame_2 before frame_10), at a stated rate (DEFAULT_FPS unless given). A file that
cannot be read, or of another size than the first, is skipped with a note.

Times: a video's frame times are the container's timestamps; when they are not evenly spaced (a
variable frame rate, as phones record) they are used as they are and a note says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from pipelines.errors import UserFacingError
from pipelines.io.ahead import run_ahead
from pipelines.io.image_io import check_image_file
from pipelines.io.limits import MAX_VIDEO_FRAMES
from pipelines.multiview.video import _open as open_capture

DEFAULT_FPS = 30.0
"""Frame rate assumed when the container announces none, and of a folder of frames unless given."""
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
"""Files of a folder of frames."""
MAX_FRAMES = 20_000
"""Default limit on the frames to process (about 11 minutes at 30 frames/s): longer requests are refused
up front (pick a range or a stride); see check_length."""


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
    frame_paths: list[Path] | None = None
    """A folder of frames: its image files in order; None for a video file."""

    @property
    def is_folder(self) -> bool:
        return self.frame_paths is not None


@dataclass
class VideoFrame:
    """One decoded frame, downscaled by `scale` when it is used as pixels.

    The decoder hands out the source frame (`source_bgr_hw3`) and the downscaled RGB frame is made on
    first use of `rgb_hw3` (and kept): the landmark tracker crops its 256 px regions from the source
    frame and needs the downscaled one only on the frames its person detector runs, so most frames
    are never downscaled (pipelines.tracking.landmark_tracking)."""

    index: int
    """Index of the frame in the video (0-based, before the stride)."""
    time_s: float
    """Presentation time in seconds (index / fps)."""
    _rgb_hw3: np.ndarray | None = field(repr=False)
    """The frame downscaled, RGB uint8; None until `rgb_hw3` makes it from the source frame."""
    scale: float = 1.0
    """Processed pixels per source pixel (1.0 when not downscaled)."""
    source_bgr_hw3: np.ndarray | None = field(default=None, repr=False)
    """The frame as decoded, BGR uint8, source pixels; None when only the processed frame is known."""

    @property
    def rgb_hw3(self) -> np.ndarray:
        """The frame, RGB uint8, downscaled by `scale` (made from the source frame on first use)."""
        if self._rgb_hw3 is None:
            assert self.source_bgr_hw3 is not None
            small_bgr_hw3 = _scaled_to(self.source_bgr_hw3, self.shape_hw)
            self._rgb_hw3 = cv2.cvtColor(small_bgr_hw3, cv2.COLOR_BGR2RGB)
        return self._rgb_hw3

    def window_rgb(self, x0: float, y0: float, x1: float, y1: float) -> tuple[np.ndarray, int, int]:
        """The processed frame's pixels over the window (x0, y0, x1, y1) (processed pixels), grown to the
        downscale's pixel grid, and its top-left corner (ox, oy): the same values as that part of
        `rgb_hw3`, made from the source frame's pixels under it alone (a pixel-area downscale by a ratio
        p / q maps source pixel q * k onto processed pixel p * k exactly). When the frame is already made,
        or the ratio is not a small fraction, the window of `rgb_hw3` itself."""
        h, w = self.shape_hw
        ix0, iy0 = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.floor(y0), 0, h - 1))
        ix1, iy1 = int(np.clip(np.ceil(x1), ix0 + 1, w)), int(np.clip(np.ceil(y1), iy0 + 1, h))
        grid = None if self._rgb_hw3 is not None or self.source_bgr_hw3 is None else _area_grid(
            self.source_bgr_hw3.shape[:2], (h, w))  # fmt: skip
        if grid is None:
            return self.rgb_hw3[iy0:iy1, ix0:ix1], ix0, iy0
        (py, qy), (px, qx) = grid
        ix0, iy0 = ix0 // px * px, iy0 // py * py
        ix1, iy1 = min(w, -(-ix1 // px) * px), min(h, -(-iy1 // py) * py)
        src = self.source_bgr_hw3[iy0 // py * qy : iy1 // py * qy, ix0 // px * qx : ix1 // px * qx]
        small_bgr = cv2.resize(src, (ix1 - ix0, iy1 - iy0), interpolation=cv2.INTER_AREA)
        return cv2.cvtColor(small_bgr, cv2.COLOR_BGR2RGB), ix0, iy0

    @property
    def shape_hw(self) -> tuple[int, int]:
        """(height, width) of the processed frame, without making it."""
        if self._rgb_hw3 is not None:
            return int(self._rgb_hw3.shape[0]), int(self._rgb_hw3.shape[1])
        assert self.source_bgr_hw3 is not None
        h, w = self.source_bgr_hw3.shape[:2]
        return scaled_size_hw(h, w, self.scale)


@dataclass
class DecodeReport:
    """How decoding went; filled while frames are read."""

    decoded: int = 0
    """Frames decoded (wanted or not) before the stream ended."""
    problems: list[str] = field(default_factory=list)
    """Plain-language notes on frames lost: truncated file, damaged frame (the stream ended early)."""
    notes: list[str] = field(default_factory=list)
    """Plain-language notes that lose nothing: variable frame rate, skipped unreadable frame files."""


def _natural_key(path: Path) -> list:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]


def probe_folder(path: Path, fps: float | None = None) -> VideoInfo:
    """A folder of frames (see the module docstring); raises UserFacingError naming the folder."""
    frames = sorted((p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()),
                    key=_natural_key)  # fmt: skip
    if not frames:
        raise UserFacingError(f"The folder {path.name} holds no frames ({', '.join(FRAME_SUFFIXES)} files).")
    if fps is not None and not (0 < fps <= 1000):
        raise UserFacingError(f"The frame rate must be between 0 and 1000 frames/s; got {fps}.")
    first = None
    for p in frames[:5]:
        try:
            check_image_file(p, f"{path.name}/{p.name}")  # size by the header (pipelines.io.limits), before decoding
        except UserFacingError:
            continue
        first = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if first is not None:
            break
    if first is None:
        raise UserFacingError(f"The frames in {path.name} cannot be read (the first ones are damaged or not images).")
    h, w = first.shape[:2]
    return VideoInfo(path, float(fps or DEFAULT_FPS), len(frames), w, h, frames)


def probe(path: str | Path, fps: float | None = None) -> VideoInfo:
    """Open the video (or folder of frames) and read its announced properties; raises UserFacingError
    naming the file. `fps`: the rate of a folder of frames (ignored for a video file)."""
    path = Path(path)
    if path.is_dir():
        return probe_folder(path, fps)
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


def wanted_range(info: VideoInfo, start_s: float, end_s: float | None) -> tuple[int, int | None]:
    """First and last frame indices of a time range (last None: to the end)."""
    first = max(0, int(math.ceil(start_s * info.fps - 1e-9)))
    last = None if end_s is None else int(math.floor(end_s * info.fps - 1e-9))
    return first, last


def check_length(info: VideoInfo, stride: int, start_s: float, end_s: float | None, max_frames: int) -> int:
    """The number of frames a request processes (as announced); raises UserFacingError, before anything
    is decoded, when it is over `max_frames` (0 = no limit), saying how to narrow it."""
    first, last = wanted_range(info, start_s, end_s)
    end = info.frame_count - 1 if last is None else min(last, info.frame_count - 1)
    n = max(0, (end - first) // stride + 1) if info.frame_count else 0
    if max_frames and n > max_frames:
        minutes = info.frame_count / info.fps / 60
        raise UserFacingError(
            f"{info.path.name} is {minutes:.1f} min long: {n} frames to process, more than the limit of "
            f"{max_frames} (about {max_frames / info.fps / 60:.0f} min at {info.fps:g} frames/s). Pick a range "
            f"(--start/--end), a --stride, or raise --max-frames.")  # fmt: skip
    return n


def scaled_size_hw(h: int, w: int, scale: float) -> tuple[int, int]:
    """(height, width) of an h x w frame downscaled by `scale` (as the decoder rounds them)."""
    if scale >= 1.0:
        return h, w
    return max(1, round(h * scale)), max(1, round(w * scale))


def _scale_for(h: int, w: int, max_side: int | None) -> float:
    """The scale that brings the longer side to at most max_side (1.0: not downscaled)."""
    return max_side / max(h, w) if max_side and max(h, w) > max_side else 1.0


def _area_grid(src_hw: tuple[int, int], dst_hw: tuple[int, int], max_q: int = 8
               ) -> tuple[tuple[int, int], tuple[int, int]] | None:  # fmt: skip
    """Per axis (rows, columns), the downscale's ratio dst / src as (p, q) in lowest terms, when both are
    small fractions (q <= max_q) that tile both sizes (1080 -> 720 and 1920 -> 1280: 2 / 3); else None."""
    out = []
    for src, dst in zip(src_hw, dst_hw, strict=True):
        ratio = Fraction(int(dst), int(src))
        if ratio.denominator > max_q or dst % ratio.numerator:
            return None
        out.append((ratio.numerator, ratio.denominator))
    return out[0], out[1]


def _scaled_to(image_hw3: np.ndarray, shape_hw: tuple[int, int]) -> np.ndarray:
    """The image resampled to `shape_hw` by pixel-area averaging (as is, when already that size)."""
    if image_hw3.shape[:2] == tuple(shape_hw):
        return image_hw3
    return cv2.resize(image_hw3, (shape_hw[1], shape_hw[0]), interpolation=cv2.INTER_AREA)


def _lazy_frame(index: int, time_s: float, bgr_hw3: np.ndarray, max_side: int | None, keep_source: bool
                ) -> VideoFrame:  # fmt: skip
    """A frame of the decoded `bgr_hw3`, downscaled to max_side: when used (VideoFrame.rgb_hw3) with
    `keep_source`, else now (in the decoding thread; the source frame is not kept)."""
    h, w = bgr_hw3.shape[:2]
    frame = VideoFrame(index, time_s, None, _scale_for(h, w, max_side), bgr_hw3)
    if not keep_source:
        frame.rgb_hw3  # noqa: B018 - made here
        frame.source_bgr_hw3 = None
    return frame


def _folder_frames(info: VideoInfo, stride: int, first: int, last: int | None, max_side: int | None,
                   report: DecodeReport, keep_source: bool) -> Iterator[VideoFrame]:  # fmt: skip
    assert info.frame_paths is not None
    for index, path in enumerate(info.frame_paths):
        if last is not None and index > last:
            break
        report.decoded = index + 1
        if index < first or (index - first) % stride:
            continue
        try:
            check_image_file(path, f"{info.path.name}/{path.name}")  # before decoding: the limits by the header
        except UserFacingError as err:
            report.notes.append(f"{err} Frame {index} skipped.")
            continue
        bgr_hw3 = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr_hw3 is None:
            report.notes.append(f"{info.path.name}/{path.name}: not a readable image; frame {index} skipped.")
            continue
        if bgr_hw3.shape[:2] != (info.height, info.width):
            h, w = bgr_hw3.shape[:2]
            report.notes.append(f"{info.path.name}/{path.name}: {w}x{h}, not {info.width}x{info.height} as the "
                                f"first frame; frame {index} skipped.")  # fmt: skip
            continue
        yield _lazy_frame(index, index / info.fps, bgr_hw3, max_side, keep_source)


def _frames(info: VideoInfo, stride: int, start_s: float, end_s: float | None, max_side: int | None,
            report: DecodeReport, keep_source: bool) -> Iterator[VideoFrame]:  # fmt: skip
    first, last = wanted_range(info, start_s, end_s)
    if info.is_folder:
        yield from _folder_frames(info, stride, first, last, max_side, report, keep_source)
        return
    capture = open_capture(info.path)
    variable = False
    prev_t, t0_ms = -1.0, 0.0
    try:
        index = 0
        while last is None or index <= last:
            if index >= MAX_VIDEO_FRAMES:  # a container that does not say its length (pipelines.io.limits)
                report.problems.append(f"{info.path.name}: decoding stopped after {MAX_VIDEO_FRAMES} frames, the "
                                       "limit.")  # fmt: skip
                break
            if not capture.grab():
                break
            report.decoded = index + 1
            # The container's timestamp of this frame; index / fps when it has none (or goes backwards).
            # (From the first frame's, which some containers do not put at 0.)
            t_ms = capture.get(cv2.CAP_PROP_POS_MSEC)
            if index == 0:
                t0_ms = t_ms if math.isfinite(t_ms) else 0.0
            t_s = (t_ms - t0_ms) / 1e3
            time_s = t_s if math.isfinite(t_s) and t_s > prev_t and (index == 0 or t_ms > 0) else index / info.fps
            prev_t = time_s
            if not variable and abs(time_s - index / info.fps) > 1.5 / info.fps:
                variable = True
                report.notes.append(f"{info.path.name}: variable frame rate (frame {index} at {time_s:.3f} s, not "
                                    f"{index / info.fps:.3f} s): the frames' own timestamps are used.")  # fmt: skip
            if index >= first and (index - first) % stride == 0:
                ok, bgr_hw3 = capture.retrieve()
                if not ok or bgr_hw3 is None:
                    report.problems.append(f"{info.path.name}: frame {index} is damaged; decoding stopped there.")
                    break
                yield _lazy_frame(index, time_s, bgr_hw3, max_side, keep_source)
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
               prefetch: int = 4, keep_source: bool = False) -> Iterator[VideoFrame]:  # fmt: skip
    """Yield the wanted frames in order: every `stride`-th frame from `start_s` up to `end_s` (seconds),
    downscaled so that the longer side is at most `max_side` pixels. With `prefetch` > 0 frames are
    decoded in a thread, at most `prefetch` ahead (OpenCV releases the GIL while decoding). `keep_source`:
    each frame keeps the decoded frame and is downscaled on first use (VideoFrame; the video mode's
    landmark tracker crops from the source frame); else frames are downscaled while decoding.
    Problems met while decoding (truncated file, damaged frame) end the stream and are added to `report`.
    """
    if stride < 1:
        raise UserFacingError(f"The frame stride must be at least 1; got {stride}.")
    if start_s < 0 or (end_s is not None and end_s <= start_s):
        raise UserFacingError(f"The time range {start_s}..{end_s} s is empty or negative.")
    report = report if report is not None else DecodeReport()
    frames = _frames(info, stride, start_s, end_s, max_side, report, keep_source)
    if prefetch <= 0:
        yield from frames
        return
    ahead = run_ahead(frames, lambda frame: frame, prefetch, "video-decode")
    try:
        yield from ahead
    finally:
        ahead.close()
