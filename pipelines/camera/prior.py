"""The focal-length prior of a photo without EXIF or a user focal (backend-neutral).

The prior is a 60 degree diagonal field of view (a 37.5 mm lens in 35 mm terms). Why 60:
phone main cameras are ~26 mm equivalent (79 degrees diagonal) but phone portraits are often
taken with the 2x-3x lens or cropped, and photos from other cameras and the web cluster around
35-50 mm (63-47 degrees). 60 degrees sits between them in log-focal space; the log-normal prior
of `focal_prior_px` (sigma 0.35, i.e. x0.70 to x1.42 at one sigma = 26 to 53 mm) covers both ends.
"""

from __future__ import annotations

import math

PRIOR_DIAGONAL_FOV_DEG = 60.0
PRIOR_SIGMA_LOG = 0.35


def default_focal_px(width: int, height: int) -> float:
    """Focal length in pixels giving the prior's diagonal field of view for this image size."""
    return 0.5 * math.hypot(width, height) / math.tan(math.radians(PRIOR_DIAGONAL_FOV_DEG) / 2)


def focal_prior_px(width: int, height: int) -> tuple[float, float]:
    """Log-normal prior on the focal length: (median focal in pixels, sigma of log(focal))."""
    return default_focal_px(width, height), PRIOR_SIGMA_LOG
