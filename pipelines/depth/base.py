"""Depth stage (interface only for now): monocular scene depth, calibrated by the metric human.

A hub backend (MoGe-2) will predict relative depth; the fitted bodies anchor a smooth per-pixel
affine correction so the scene is metric in the same OpenCV camera frame as the people.
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


class DepthEstimator(Protocol):
    def estimate(self, image_rgb_hw3: np.ndarray, camera: Camera, people: list[PersonResult]) -> DepthResult:
        ...
