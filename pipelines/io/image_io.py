"""Decode photos into upright RGB uint8 arrays, with the EXIF focal length, or one plain error.

Every failure a user can cause (missing, empty, not an image, truncated, too small, too large)
raises BadImageError with one sentence that names the file. Pixels of the returned image have
their origin at the top-left corner; EXIF orientation is already applied.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from pipelines.camera.exif import ExifFocal, focal_from_exif
from pipelines.errors import BadImageError

MIN_SIDE_PX = 32
MAX_PIXELS = 50_000_000
LARGE_SIDE_PX = 4096


@dataclass
class LoadedImage:
    """A decoded photo."""

    rgb_hw3: np.ndarray
    """Upright RGB image, uint8 (H, W, 3)."""
    path: str
    """Where it came from (a file path, or the upload's name)."""
    exif_focal_px: float | None = None
    """Focal length in pixels of the upright image from EXIF; None when EXIF does not say."""
    exif_note: str | None = None
    """One sentence on the EXIF focal: where it came from, or why there is none."""
    warnings: list[str] = field(default_factory=list)
    """Plain-language notes on conversions (transparency dropped, 16-bit reduced, very large...)."""

    @property
    def width(self) -> int:
        return int(self.rgb_hw3.shape[1])

    @property
    def height(self) -> int:
        return int(self.rgb_hw3.shape[0])


def load_image(path: str | Path) -> LoadedImage:
    """Read and decode the image file at `path`."""
    path = Path(path)
    if not path.exists():
        raise BadImageError(f"The file {path} does not exist.")
    if not path.is_file():
        raise BadImageError(f"{path} is a folder, not an image file.")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BadImageError(f"The file {path} could not be read ({err.strerror or err}).") from err
    return decode_image_bytes(data, str(path))


def decode_image_bytes(data: bytes, name: str) -> LoadedImage:
    """Decode an encoded image (JPEG, PNG, WebP, TIFF, ...) held in memory; `name` is for messages."""
    if len(data) == 0:
        raise BadImageError(f"The file {name} is empty (0 bytes).")
    notes: list[str] = []
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Another library switched Pillow's global on: a cut-off file would decode with grey parts.
        notes.append("Truncated files cannot be detected (PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(name, err) from err
    except UnidentifiedImageError:
        rgb_hw3 = _decode_with_opencv(data, name, notes)
        note = "No EXIF data (decoded by OpenCV)."
        return LoadedImage(rgb_hw3=rgb_hw3, path=name, exif_note=note, warnings=notes)
    except OSError as err:
        raise BadImageError(f"The file {name} is not a readable image ({err}).") from err

    _check_size(im.width, im.height, name)
    try:
        exif_focal = focal_from_exif(im.getexif(), im.width, im.height)
    except Exception:  # malformed EXIF must not stop the photo from loading
        exif_focal = ExifFocal(None, "The EXIF data is unreadable.")
    try:
        im.load()
        im = ImageOps.exif_transpose(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(name, err) from err
    except (OSError, SyntaxError, ValueError) as err:
        if "truncated" in str(err).lower():
            msg = f"The image {name} is truncated (the file ends before the picture does)."
            raise BadImageError(msg) from err
        raise BadImageError(f"The image {name} could not be decoded ({err}).") from err
    rgb_hw3 = _to_rgb_uint8(im, notes)
    _note_large(rgb_hw3, notes)
    return LoadedImage(
        rgb_hw3=rgb_hw3,
        path=name,
        exif_focal_px=exif_focal.focal_px,
        exif_note=exif_focal.note,
        warnings=notes,
    )


def _too_large(name: str, err: Exception) -> BadImageError:
    """Pillow's decompression-bomb guard fired in Image.open (over twice PIL.Image.MAX_IMAGE_PIXELS)."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    size = f" ({int(found.group(1)) / 1e6:.0f} megapixels)" if found else ""
    limit = f"{MAX_PIXELS / 1e6:.0f} megapixels"
    return BadImageError(f"The image {name} is too large{size}; the limit is {limit}.")


def _check_size(width: int, height: int, name: str) -> None:
    if width * height > MAX_PIXELS:
        raise BadImageError(
            f"The image {name} is {width}x{height} pixels ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {MAX_PIXELS / 1e6:.0f} megapixels."
        )
    if min(width, height) < MIN_SIDE_PX:
        raise BadImageError(
            f"The image {name} is {width}x{height} pixels; need at least {MIN_SIDE_PX}x{MIN_SIDE_PX}."
        )


def _note_large(rgb_hw3: np.ndarray, notes: list[str]) -> None:
    h, w = rgb_hw3.shape[:2]
    if max(h, w) > LARGE_SIDE_PX:
        notes.append(f"The image is large ({w}x{h}); stages work on downscaled copies.")


def _high_bit_to_uint8(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    """Scale 16-bit (or 32-bit integer) samples to 0..255.

    Full-range data is divided by 65535/255. Data that only uses the low bits (10/12-bit
    sensor values stored in 16 bits, max < 4096) is stretched from 0 to its own maximum instead.
    """
    arr = arr.astype(np.float32)
    top = float(arr.max()) if arr.size else 0.0
    scale = 65535.0 if top >= 4096 else max(top, 1.0)
    if top > 65535:
        scale = top
    notes.append("The image has 16 bits per channel; reduced to 8 bits.")
    return np.clip(np.rint(arr * (255.0 / scale)), 0, 255).astype(np.uint8)


def _composite_on_white(rgba_hw4: np.ndarray, notes: list[str]) -> np.ndarray:
    alpha_hw1 = rgba_hw4[..., 3:4].astype(np.float32) / 255.0
    if alpha_hw1.min() < 1.0:
        notes.append("The image has transparency; transparent parts were filled with white.")
    rgb = rgba_hw4[..., :3].astype(np.float32) * alpha_hw1 + 255.0 * (1.0 - alpha_hw1)
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)


def _to_rgb_uint8(im: Image.Image, notes: list[str]) -> np.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        gray_hw = _high_bit_to_uint8(np.asarray(im), notes)
        return np.ascontiguousarray(np.repeat(gray_hw[..., None], 3, axis=2))
    if mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        notes.append("The image holds floating-point values; stretched to 8 bits.")
        gray_hw = np.clip(np.rint((arr - lo) * (255.0 / max(hi - lo, 1e-12))), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray_hw[..., None], 3, axis=2))
    if mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
        mode = im.mode
    if mode in ("LA", "La", "PA", "RGBa"):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode == "RGBA":
        return _composite_on_white(np.asarray(im), notes)
    if mode == "CMYK":
        notes.append("The image is CMYK; converted to RGB (colours may shift slightly).")
    if mode != "RGB":
        im = im.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _decode_with_opencv(data: bytes, name: str, notes: list[str]) -> np.ndarray:
    """Fallback for files Pillow does not recognise (some 16-bit or exotic formats)."""
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        arr = None
    if arr is None or arr.ndim not in (2, 3) or arr.size == 0:
        raise BadImageError(f"The file {name} is not an image (or not in a format this app can read).")
    _check_size(arr.shape[1], arr.shape[0], name)
    if arr.dtype != np.uint8:
        arr = _high_bit_to_uint8(arr, notes)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    elif arr.shape[2] == 4:
        arr = _composite_on_white(arr[..., [2, 1, 0, 3]], notes)
    else:
        arr = arr[..., 2::-1] if arr.shape[2] >= 3 else np.repeat(arr[..., :1], 3, axis=2)
    out = np.ascontiguousarray(arr)
    _note_large(out, notes)
    return out
