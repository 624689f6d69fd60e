"""The focal-length prior of a photo without EXIF or a user focal (backend-neutral).

The prior is a 63.5 degree diagonal field of view (a 35 mm lens in 35 mm terms), log-normal with sigma
0.35 (x0.70 to x1.42 at one sigma: 25 to 50 mm equivalent). Why its centre is there:

- The body says little about the focal. On the tuning data, fits at fixed focals 0.7-1.25x the estimate
  change a body's cost by under 1.5 (chi-square units; H36M S1, S5) to 4-8 (pose2sim_single's dancer;
  bystanders pull either way), so the estimate stays near the prior's centre: the centre decides most of
  the focal error.
- Chosen on the tuning data, on the one calibrated camera there that is not a held-out view: H36M S1 / S5's
  camera 54138969 (f = 1144 px at 1000x1002, a 63.5 degree diagonal). pose2sim_single was not used: its
  cameras are the held-out pose2sim_multi's (one calibration file), and H36M's held-out frames (S7, S8)
  come from a sibling camera of the same model (f = 1149 px), so H36M's held-out figure is not independent
  of this choice.
- Camera statistics bracket it: a phone's main camera (24-26 mm equivalent, 79-84 degrees on a 4:3 photo)
  films 16:9 video over the sensor's width (75 degrees diagonal at 26 mm, ~69 with the stabilisation crop);
  webcams are 65-78 degrees; a phone's 2x portrait lens (48-52 mm, 45 degrees) and photos from other
  cameras (35-50 mm, 63-47 degrees) sit on the narrow side. Full-body photos and videos of people are mostly
  taken with the main camera, which puts the centre on the wide side of the last release's 60 degrees (a
  37.5 mm lens, the log-midpoint of the phone's 1x and 2x lenses), whose estimates were all too long on the
  calibrated views (bench/bench_focal_solve.py, README "Focal and distance").
"""

from __future__ import annotations

import math

PRIOR_DIAGONAL_FOV_DEG = 63.5
PRIOR_SIGMA_LOG = 0.35
PREVIOUS_DIAGONAL_FOV_DEG = 60.0
"""The last release's centre (bench/bench_focal_solve.py measures it beside the current one)."""


def default_focal_px(width: int, height: int, diagonal_fov_deg: float | None = None) -> float:
    """Focal length in pixels giving the prior's diagonal field of view (or `diagonal_fov_deg`) for this
    image size."""
    fov = PRIOR_DIAGONAL_FOV_DEG if diagonal_fov_deg is None else diagonal_fov_deg
    return 0.5 * math.hypot(width, height) / math.tan(math.radians(fov) / 2)


def focal_prior_px(width: int, height: int) -> tuple[float, float]:
    """Log-normal prior on the focal length: (median focal in pixels, sigma of log(focal))."""
    return default_focal_px(width, height), PRIOR_SIGMA_LOG
