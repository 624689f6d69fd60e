"""Decode photos into upright RGB uint8 arrays, with the EXIF focal length, or one plain error.

Every failure a user can cause (missing, empty, not an image, truncated, too small, too large)
raises BadImageError with one sentence that names the file. Pixels of the returned image have
their origin at the top-left corner; EXIF orientation is already applied. The limits (file size,
pixels announced by the header, formats told by content) are pipelines.io.limits's, checked before
any pixel is decoded; Pillow's and OpenCV's own texts never reach the message.
"""

from __future__ import annotations

import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

from pipelines.camera.exif import ExifFocal, focal_from_exif
from pipelines.errors import BadImageError, UserFacingError
from pipelines.io import limits as L

MIN_SIDE_PX = L.MIN_IMAGE_SIDE_PX
MAX_PIXELS = L.MAX_IMAGE_PIXELS
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
    _limit(L.check_file_size, path, L.MAX_IMAGE_BYTES, "image", str(path))  # before reading it
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BadImageError(f"The file {path} could not be read ({err.strerror or err}).") from err
    return decode_image_bytes(data, str(path))


def check_image_file(path: str | Path, name: str | None = None) -> tuple[int, int]:
    """(width, height) of the image file at `path` from its header, after the limits of decode_image_bytes
    (file size, format by content, pixels); nothing is decoded. Raises BadImageError naming the file."""
    path = Path(path)
    name = name or path.name
    _limit(L.check_file_size, path, L.MAX_IMAGE_BYTES, "image", name)
    try:
        with open(path, "rb") as f, warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            head = f.read(64)
            f.seek(0)
            try:
                im = Image.open(f, formats=L.IMAGE_FORMATS)
            except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
                raise _too_large(name, err) from None
            except Exception:  # noqa: BLE001 - Pillow's text is not for users
                raise _unreadable(head, name) from None
            _limit(L.check_image_size, im.width, im.height, name, str(im.format), im.mode == "F")
            return im.width, im.height
    except OSError as err:
        raise BadImageError(f"The file {name} could not be read ({err.strerror or 'read error'}).") from None


def decode_image_bytes(data: bytes, name: str) -> LoadedImage:
    """Decode an encoded image (JPEG, PNG, WebP, TIFF, ...) held in memory; `name` is for messages.

    The format is told by content and must be one of pipelines.io.limits.IMAGE_FORMATS (or Radiance
    .hdr); the size its header announces is checked before any pixel is decoded."""
    if len(data) == 0:
        raise BadImageError(f"The file {name} is empty (0 bytes).")
    _limit(L.check_byte_count, len(data), L.MAX_IMAGE_BYTES, "image", name)
    notes: list[str] = []
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Another library switched Pillow's global on: a cut-off file would decode with grey parts.
        notes.append("Truncated files cannot be detected (PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on).")
    if is_radiance_hdr(data):
        rgb_hw3 = _decode_hdr(data, name, notes)
        return LoadedImage(rgb_hw3=rgb_hw3, path=name, exif_note="No EXIF data (Radiance HDR).", warnings=notes)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data), formats=L.IMAGE_FORMATS)  # reads the header only
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(name, err) from None
    except Exception:  # noqa: BLE001 - Pillow's text ("maxval must be ...") is not for users
        raise _unreadable(data, name) from None

    fmt = str(im.format or "image")
    _limit(L.check_image_size, im.width, im.height, name, fmt, im.mode == "F")
    try:
        exif_focal = focal_from_exif(im.getexif(), im.width, im.height)
    except Exception:  # malformed EXIF must not stop the photo from loading
        exif_focal = ExifFocal(None, "The EXIF data is unreadable.")
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise _too_large(name, err) from None
    except Exception as err:  # noqa: BLE001 - OSError, SyntaxError, ValueError, struct.error...
        if "truncated" in str(err).lower() or "end of file" in str(err).lower():
            msg = f"The image {name} is truncated (the file ends before the picture does)."
        else:
            msg = f"The image {name} ({fmt}) could not be decoded: the file is damaged."
        raise BadImageError(msg) from None
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a bad orientation tag: use the image as stored
        notes.append("The EXIF orientation is unreadable; the image is used as stored.")
    try:
        rgb_hw3 = _to_rgb_uint8(im, notes)
    except Exception:  # noqa: BLE001 - a pixel layout Pillow cannot convert
        raise BadImageError(f"The image {name} ({fmt}, pixel mode {im.mode}) cannot be converted to RGB.") from None
    _note_large(rgb_hw3, notes)
    return LoadedImage(
        rgb_hw3=rgb_hw3,
        path=name,
        exif_focal_px=exif_focal.focal_px,
        exif_note=exif_focal.note,
        warnings=notes,
    )


def _limit(check: Callable[..., None], *args: object) -> None:
    """Run a pipelines.io.limits check, as a BadImageError."""
    try:
        check(*args)
    except UserFacingError as err:
        raise BadImageError(str(err)) from None


READABLE = "JPEG, PNG, WebP, TIFF, BMP, GIF, PPM/PGM/PFM, AVIF or Radiance HDR"
"""The formats read, for messages (pipelines.io.limits.IMAGE_FORMATS and .hdr)."""


WEAK_MAGIC = frozenset({"CUR", "ICO", "PCX", "DCX", "FLI", "MPEG", "SUN", "GBR", "MCIDAS", "PIXAR", "WMF", "MSP"})
"""Pillow formats whose magic bytes are too short to name a file by them."""


def sniff_format(prefix: bytes) -> str | None:
    """The Pillow format whose magic bytes start `prefix` (any format Pillow knows), or None."""
    Image.init()
    for fmt in Image.ID:
        accept = Image.OPEN[fmt][1]
        if accept is None:
            continue
        try:
            if accept(prefix):
                return fmt
        except Exception:  # noqa: BLE001,S112 - a plugin's sniffing failing is "not this format"
            continue
    return None


def _unreadable(data: bytes, name: str) -> BadImageError:
    """The error for a file Pillow could not open among the formats read: damaged, another format, or no image."""
    fmt = sniff_format(data[:64])
    if fmt in L.IMAGE_FORMATS:
        return BadImageError(f"The image {name} ({fmt}) is damaged: its header cannot be read.")
    if fmt is not None and fmt not in WEAK_MAGIC:
        return BadImageError(f"The file {name} is in the {fmt} format, which this app does not read; use {READABLE}.")
    return BadImageError(f"The file {name} is not an image (or not in a format this app can read: {READABLE}).")


def _too_large(name: str, err: Exception) -> BadImageError:
    """Pillow's decompression-bomb guard fired in Image.open (over twice PIL.Image.MAX_IMAGE_PIXELS)."""
    found = re.search(r"\((\d+) pixels\)", str(err))
    size = f" ({int(found.group(1)) / 1e6:.0f} megapixels)" if found else ""
    limit = f"{L.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels"
    return BadImageError(f"The image {name} is too large{size}; the limit is {limit}.")


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


HDR_RESOLUTION = re.compile(rb"^([-+])([XY]) (\d{1,9}) ([-+])([XY]) (\d{1,9})$")
HDR_HEADER_MAX_BYTES = 65536


def is_radiance_hdr(data: bytes) -> bool:
    """Radiance RGBE (.hdr, .pic) by its magic line ("#?RADIANCE" or "#?RGBE")."""
    return data.startswith((b"#?RADIANCE", b"#?RGBE"))


def radiance_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a Radiance header (lines up to a blank one, then e.g. "-Y 480 +X 640"); None
    when the header is malformed or longer than HDR_HEADER_MAX_BYTES."""
    head = data[:HDR_HEADER_MAX_BYTES]
    blank = head.find(b"\n\n")
    if blank < 0:
        return None
    line = head[blank + 2:].split(b"\n", 1)[0].strip()
    found = HDR_RESOLUTION.match(line)
    if found is None or found.group(2) == found.group(5):
        return None
    first, second = int(found.group(3)), int(found.group(6))
    return (second, first) if found.group(2) == b"Y" else (first, second)


def _decode_hdr(data: bytes, name: str, notes: list[str]) -> np.ndarray:
    """A Radiance HDR image: its header size checked, then decoded by OpenCV (Pillow does not read it)."""
    import cv2

    size = radiance_size(data)
    if size is None:
        raise BadImageError(f"The image {name} (Radiance HDR) is damaged: its header cannot be read.")
    _limit(L.check_image_size, size[0], size[1], name, "Radiance HDR", True)
    try:
        arr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        arr = None
    if arr is None or arr.ndim != 3 or arr.shape[1::-1] != size or arr.shape[2] != 3:
        raise BadImageError(f"The image {name} (Radiance HDR) could not be decoded: the file is damaged.")
    arr = _high_bit_to_uint8(arr, notes)
    out = np.ascontiguousarray(arr[..., ::-1])
    _note_large(out, notes)
    return out
