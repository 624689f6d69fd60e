"""The input limits of the CLI and the playground, in one place, and the checks that enforce them.

Every check runs before anything is decoded and raises UserFacingError with one sentence that names
the file (or the input) and the limit. Formats are told by content (magic bytes), never by file name:
images by Pillow's own header sniffing restricted to IMAGE_FORMATS (pipelines.io.image_io), videos by
their container header (pipelines.io.video_header). README's "Limits" section states the same numbers.
"""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.errors import UserFacingError
from pipelines.io.video_header import VideoHeader, read_video_header

MiB = 1 << 20

# ---------------------------------------------------------------------------------------- images
MAX_IMAGE_BYTES = 160 * MiB
"""An image file (upload or CLI); enough for an uncompressed 50-megapixel 8-bit TIFF."""
MAX_IMAGE_PIXELS = 50_000_000
"""Width x height announced by the image's header (a 50-megapixel phone photo passes)."""
MAX_FLOAT_IMAGE_PIXELS = 16_000_000
"""Width x height of a floating-point image (Radiance .hdr: 12 bytes per pixel once decoded)."""
MIN_IMAGE_SIDE_PX = 32
"""The shorter side of an image."""
IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM", "AVIF")
"""Pillow formats read (told apart by content; JPEG includes MPO, PPM includes PGM, PBM and PFM).
Radiance .hdr is read too (by OpenCV, after its header is checked here); every other format is refused."""

# ---------------------------------------------------------------------------------------- videos
MAX_VIDEO_BYTES = 2048 * MiB
"""A video file (upload or CLI): frames are streamed from disk, so this bounds the disk, not memory."""
MAX_VIDEO_SIDE_PX = 4096
"""The longer side of a video frame (4K UHD and DCI 4K pass)."""
MAX_VIDEO_FRAME_PIXELS = 4096 * 2304
"""Width x height of a video frame."""
MAX_VIDEO_DURATION_S = 3600.0
"""The length of a video, as its container announces it."""
MAX_VIDEO_FRAMES = 216_000
"""Frames in a video, as its container announces them (an hour at 60 frames/s); decoding also stops there
when the container does not say."""
VIDEO_CONTAINERS: tuple[str, ...] = ("MP4/MOV", "AVI", "Matroska/WebM")
"""Containers read (told apart by content)."""

# --------------------------------------------------------------------------- prompts, views, calibration
MAX_IMAGE_PROMPTS = 64
"""Clicks (points, boxes and keypoints) on one photo."""
MAX_VIDEO_PROMPTS = 256
"""Clicks over all the frames of one video."""
MAX_VIEWS = 8
"""Videos (cameras) in one multi-view run."""
MAX_CALIBRATION_BYTES = 1 * MiB
"""A calibration file (a rig of 8 cameras takes a few kilobytes)."""

MAX_UPLOAD_BYTES = max(MAX_IMAGE_BYTES, MAX_VIDEO_BYTES)
"""What the web server accepts for one file (Gradio's max_file_size); each kind has its own limit above."""


def _size_text(n_bytes: float) -> str:
    return f"{n_bytes / MiB:.0f} MB" if n_bytes >= MiB else f"{n_bytes / 1024:.0f} kB"


def check_file_size(path: str | Path, limit_bytes: int, what: str, name: str | None = None) -> int:
    """The size of the file at `path` in bytes; UserFacingError when over `limit_bytes` (`what`: "image",
    "video", "calibration file"; `name`: how to call the file, default its name)."""
    path = Path(path)
    name = name or path.name
    try:
        size = os.stat(path).st_size
    except OSError as err:
        raise UserFacingError(f"The {what} {name} could not be read ({err.strerror or 'no such file'}).") from None
    check_byte_count(size, limit_bytes, what, name)
    return size


def check_byte_count(size: int, limit_bytes: int, what: str, name: str) -> None:
    """UserFacingError when a file of `size` bytes is over `limit_bytes`."""
    if size > limit_bytes:
        raise UserFacingError(f"The {what} {name} is {_size_text(size)}; the limit is {_size_text(limit_bytes)}.")


def check_image_size(width: int, height: int, name: str, fmt: str, floating: bool = False) -> None:
    """The size an image's header announces, before it is decoded (`floating`: 32-bit float samples)."""
    limit = MAX_FLOAT_IMAGE_PIXELS if floating else MAX_IMAGE_PIXELS
    if width <= 0 or height <= 0:
        raise UserFacingError(f"The image {name} ({fmt}) announces a size of {width}x{height} pixels; the file is "
                              "damaged.")  # fmt: skip
    if width * height > limit:
        kind = "floating-point images" if floating else "images"
        raise UserFacingError(f"The image {name} is too large: {width}x{height} pixels "
                              f"({width * height / 1e6:.0f} megapixels); the limit for {kind} is "
                              f"{limit / 1e6:.0f} megapixels.")  # fmt: skip
    if min(width, height) < MIN_IMAGE_SIDE_PX:
        raise UserFacingError(f"The image {name} is {width}x{height} pixels; need at least "
                              f"{MIN_IMAGE_SIDE_PX}x{MIN_IMAGE_SIDE_PX}.")  # fmt: skip


def check_video_size(width: int, height: int, name: str) -> None:
    """The frame size a video announces, before any frame is decoded."""
    if max(width, height) > MAX_VIDEO_SIDE_PX or width * height > MAX_VIDEO_FRAME_PIXELS:
        raise UserFacingError(f"The video {name} is {width}x{height} pixels; the limit is {MAX_VIDEO_SIDE_PX} pixels "
                              f"on the longer side and {MAX_VIDEO_FRAME_PIXELS / 1e6:.1f} megapixels a frame "
                              "(downscale it first).")  # fmt: skip


def check_video_length(duration_s: float | None, frame_count: int | None, name: str) -> None:
    """The length a video's container announces (None: not announced)."""
    if duration_s is not None and duration_s > MAX_VIDEO_DURATION_S:
        raise UserFacingError(f"The video {name} is {duration_s / 60:.0f} min long; the limit is "
                              f"{MAX_VIDEO_DURATION_S / 60:.0f} min (cut it first).")  # fmt: skip
    if frame_count is not None and frame_count > MAX_VIDEO_FRAMES:
        raise UserFacingError(f"The video {name} has {frame_count} frames; the limit is {MAX_VIDEO_FRAMES} "
                              "(cut it first).")  # fmt: skip


def check_prompt_count(n: int, limit: int, where: str) -> None:
    """UserFacingError for more than `limit` prompts (`where`: "this photo", "video.mp4")."""
    if n > limit:
        raise UserFacingError(f"{n} prompts on {where}; the limit is {limit} (undo or clear some).")


def check_view_count(n: int) -> None:
    """UserFacingError for a multi-view run of more than MAX_VIEWS videos."""
    if n > MAX_VIEWS:
        raise UserFacingError(f"{n} videos were given; a multi-view run takes at most {MAX_VIEWS} (one per camera).")


def check_video_file(path: str | Path) -> VideoHeader:
    """A video file's size, container (by content) and announced frame size and length, before OpenCV opens
    it; its header. Raises UserFacingError naming the file."""
    check_file_size(path, MAX_VIDEO_BYTES, "video")
    header = read_video_header(path)
    name = Path(path).name
    check_video_size(header.width, header.height, name)
    check_video_length(header.duration_s, header.frame_count, name)
    return header


def check_calibration_file(path: str | Path) -> None:
    """A calibration file's size, before it is parsed."""
    check_file_size(path, MAX_CALIBRATION_BYTES, "calibration file")
