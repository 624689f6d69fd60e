"""The camera before any body is fitted: the user's focal, else EXIF's, else a prior (pipelines.camera.prior).

Why the prior is a 63.5 degree diagonal field of view: see pipelines.camera.prior.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines.camera.exif import plausible_focal_range_px
from pipelines.camera.prior import (  # noqa: F401 - re-exported (their old home)
    PRIOR_DIAGONAL_FOV_DEG,
    PRIOR_SIGMA_LOG,
    default_focal_px,
    focal_prior_px,
)
from pipelines.errors import BadPromptError
from pipelines.registry import register
from pipelines.types import Camera


def check_user_focal(focal_px: float, width: int, height: int) -> float:
    """Return the focal as float, or raise BadPromptError when it cannot be this image's."""
    lo, hi = plausible_focal_range_px(width, height)
    try:
        value = float(focal_px)
    except (TypeError, ValueError) as err:
        raise BadPromptError(f"The focal length {focal_px!r} is not a number.") from err
    if not math.isfinite(value) or not lo <= value <= hi:
        raise BadPromptError(
            f"A focal length of {value:g} px is implausible for a {width}x{height} image "
            f"(expected {lo:.0f}-{hi:.0f} px)."
        )
    return value


@register("camera", "embedded")
class EmbeddedCamera:
    """Camera intrinsics from the user, EXIF or the prior; no model needed."""

    def initial(
        self, width: int, height: int, exif_focal_px: float | None, user_focal_px: float | None,
        image_rgb_hw3: np.ndarray | None = None,
    ) -> Camera:
        """The camera before any body is fitted: user value > EXIF > prior (source 'default').
        `image_rgb_hw3` is not needed (the prior does not look at the image)."""
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        if user_focal_px is not None:
            return Camera.from_focal(check_user_focal(user_focal_px, width, height), width, height, "user")
        if exif_focal_px is not None:
            lo, hi = plausible_focal_range_px(width, height)
            if math.isfinite(exif_focal_px) and lo <= exif_focal_px <= hi:
                return Camera.from_focal(float(exif_focal_px), width, height, "exif")
        return Camera.from_focal(default_focal_px(width, height), width, height, "default")
