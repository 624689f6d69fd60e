"""Focal length in pixels from a photo's EXIF tags.

Two routes, best first:
1. FocalLengthIn35mmFilm: the focal a full-frame (36 x 24 mm) camera would need for the same
   field of view. "Same field of view" is defined on the diagonal (CIPA DC-004), so
   f_px = f35 * diagonal_px / diagonal_35mm, with diagonal_35mm = sqrt(36^2 + 24^2) = 43.27 mm.
   This holds for any aspect ratio and survives resizing (both diagonals scale together).
2. FocalLength (mm on the real sensor) times FocalPlaneXResolution (sensor pixels per unit,
   unit from FocalPlaneResolutionUnit: 2 = inch, 3 = cm, 4 = mm, 5 = micrometre). The
   resolution refers to the image the camera wrote (ExifImageWidth x ExifImageHeight); if the
   file was resized afterwards, the focal is rescaled by the ratio of the long sides.

Values outside a plausible range (0.1 to 20 image diagonals) are ignored with a note.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

from PIL import Image

EXIF_IFD = 0x8769
TAG_FOCAL_LENGTH = 0x920A
TAG_FOCAL_35MM = 0xA405
TAG_FOCAL_PLANE_XRES = 0xA20E
TAG_FOCAL_PLANE_UNIT = 0xA210
TAG_EXIF_IMAGE_WIDTH = 0xA002
TAG_EXIF_IMAGE_HEIGHT = 0xA003

DIAGONAL_35MM_MM = math.hypot(36.0, 24.0)
_MM_PER_UNIT = {2: 25.4, 3: 10.0, 4: 1.0, 5: 1e-3}
PLAUSIBLE_FOCAL_DIAGONALS = (0.1, 20.0)
"""A focal length is plausible between these multiples of the image diagonal (in pixels)."""


@dataclass
class ExifFocal:
    """What EXIF says about the focal length."""

    focal_px: float | None
    """Focal length in pixels of the image as stored (rotation does not change it); None if unknown."""
    note: str | None
    """One sentence on where the value came from or why there is none."""


def _as_float(value: object) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]  # IFDRational, int, float or tuple
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return out if math.isfinite(out) and out > 0 else None


def plausible_focal_range_px(width: int, height: int) -> tuple[float, float]:
    diag = math.hypot(width, height)
    return PLAUSIBLE_FOCAL_DIAGONALS[0] * diag, PLAUSIBLE_FOCAL_DIAGONALS[1] * diag


def focal_from_tags(tags: dict[int, object], width: int, height: int) -> ExifFocal:
    """Focal length in pixels from a flat {tag id: value} dict of EXIF tags (image `width` x `height`)."""
    lo, hi = plausible_focal_range_px(width, height)

    f35 = _as_float(tags.get(TAG_FOCAL_35MM))
    if f35 is not None:
        f_px = f35 * math.hypot(width, height) / DIAGONAL_35MM_MM
        if lo <= f_px <= hi:
            return ExifFocal(f_px, f"EXIF: {f35:g} mm (35 mm equivalent) = {f_px:.0f} px.")

    f_mm = _as_float(tags.get(TAG_FOCAL_LENGTH))
    xres = _as_float(tags.get(TAG_FOCAL_PLANE_XRES))
    unit = tags.get(TAG_FOCAL_PLANE_UNIT, 2)  # EXIF default unit: inch
    if f_mm is None:
        return ExifFocal(None, "EXIF has no focal length.")
    if xres is None or unit not in _MM_PER_UNIT:
        return ExifFocal(None, f"EXIF gives {f_mm:g} mm but not the sensor size, so pixels are unknown.")
    f_px = f_mm * xres / _MM_PER_UNIT[int(unit)]  # type: ignore[call-overload]
    exif_w = _as_float(tags.get(TAG_EXIF_IMAGE_WIDTH))
    exif_h = _as_float(tags.get(TAG_EXIF_IMAGE_HEIGHT))
    if exif_w is not None:
        # Compare long sides: some writers store the upright size, others the stored one.
        exif_long = max(exif_w, exif_h or 0.0)
        f_px *= max(width, height) / exif_long
    if not lo <= f_px <= hi:
        return ExifFocal(None, f"EXIF focal ({f_px:.0f} px) is implausible for this image; ignored.")
    return ExifFocal(f_px, f"EXIF: {f_mm:g} mm on the sensor = {f_px:.0f} px.")


def focal_from_exif(exif: Image.Exif, width: int, height: int) -> ExifFocal:
    """Focal length in pixels from a Pillow Exif object of an image of `width` x `height` pixels."""
    tags: dict[int, object] = dict(exif)
    with contextlib.suppress(Exception):  # a malformed EXIF block must never stop the image loading
        tags.update(exif.get_ifd(EXIF_IFD))
    if not tags:
        return ExifFocal(None, "The image has no EXIF data.")
    return focal_from_tags(tags, width, height)
