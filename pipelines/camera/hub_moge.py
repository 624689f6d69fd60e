"""Hub camera: the field of view from the photo itself with MoGe-2 (when neither the user nor EXIF gives it).

User focal > EXIF focal > MoGe-2's intrinsics (source 'model'). The model copy and its inference are
shared with the depth hub backend (pipelines.moge_model), so a photo runs MoGe-2 once.
"""

from __future__ import annotations

import math

import numpy as np

from pipelines import moge_model
from pipelines.camera.embedded import EmbeddedCamera
from pipelines.camera.exif import plausible_focal_range_px
from pipelines.registry import register
from pipelines.types import Camera


@register("camera", "hub")
class HubMoGeCamera:
    """Intrinsics from the user, EXIF, else MoGe-2 on the image."""

    def __init__(self, repo_id: str = moge_model.DEFAULT_REPO, device: str | None = None,
                 num_tokens: int | None = None) -> None:  # fmt: skip
        self.moge = moge_model.shared(repo_id, device, num_tokens)
        self._given = EmbeddedCamera()

    @staticmethod
    def unavailable_reason() -> str | None:
        return moge_model.unavailable_reason()

    def embedded_fallback(self) -> EmbeddedCamera:
        """The camera stage when MoGe-2 cannot be had: user value > EXIF > the embedded prior."""
        return self._given

    def initial(
        self, width: int, height: int, exif_focal_px: float | None, user_focal_px: float | None,
        image_rgb_hw3: np.ndarray | None = None,
    ) -> Camera:
        """User value > EXIF > MoGe-2 (source 'model'); without the image, the embedded prior ('default')."""
        camera = self._given.initial(width, height, exif_focal_px, user_focal_px)
        if camera.source != "default" or image_rgb_hw3 is None:
            return camera
        if image_rgb_hw3.shape[:2] != (height, width):
            raise ValueError(f"the image is {image_rgb_hw3.shape[1]}x{image_rgb_hw3.shape[0]}, not {width}x{height}")
        K_33 = self.moge.infer(image_rgb_hw3).K_33
        focal_px = float(math.sqrt(K_33[0, 0] * K_33[1, 1]))
        lo, hi = plausible_focal_range_px(width, height)
        if not (math.isfinite(focal_px) and lo <= focal_px <= hi):
            return camera  # a field of view no lens has: keep the prior, the body fit estimates it
        return Camera.from_focal(focal_px, width, height, "model")
