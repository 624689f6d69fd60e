"""Depth stage: monocular scene depth in metres, in the same OpenCV camera frame as the people.

A backend predicts depth from the image (and the camera, when its focal is known). Scaling the
scene by the fitted people (a per-pixel affine correction anchored on the bodies) is a separate,
later step; backends may ignore `people`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from pipelines.types import Camera, PersonResult


@dataclass
class DepthResult:
    depth_hw: np.ndarray
    """Metric depth (z along the optical axis) in metres per pixel, NaN where unknown."""
    valid_hw: np.ndarray
    """Boolean mask of the pixels with a depth."""
    confidence_hw: np.ndarray | None = None
    """The backend's confidence in [0, 1] per pixel, where it gives one."""
    points_hw3: np.ndarray | None = None
    """Point map (H, W, 3) in metres, OpenCV camera frame, NaN where unknown (where the backend gives one)."""
    K_33: np.ndarray | None = None
    """The intrinsics (pixels) the depth is consistent with."""


class DepthEstimator(Protocol):
    def estimate(
        self, image_rgb_hw3: np.ndarray, camera: Camera, people: list[PersonResult] | None = None
    ) -> DepthResult:
        ...
