"""Camera stage: the field of view (intrinsics) of the photo."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pipelines.types import Camera


class CameraSolver(Protocol):
    def initial(self, width: int, height: int, exif_focal_px: float | None, user_focal_px: float | None,
                image_rgb_hw3: np.ndarray | None = None) -> Camera:  # fmt: skip
        """The camera before any body is fitted: user value > EXIF > the backend's own guess (the
        embedded prior: source 'default'; an image model, which needs `image_rgb_hw3`: 'model')."""
        ...
