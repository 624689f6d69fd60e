"""Hub depth: MoGe-2's metric depth, point map and validity for the photo (no refinement by the people).

With a camera from MoGe-2 itself (source 'model') the inference of the camera stage is reused;
with a focal from the user, EXIF or the body fit, MoGe-2 is given that field of view, so the
depth and points agree with the camera the people were fitted with.
"""

from __future__ import annotations

import numpy as np

from pipelines import moge_model
from pipelines.depth.base import DepthResult
from pipelines.registry import register
from pipelines.types import Camera, PersonResult


@register("depth", "hub")
class HubMoGeDepth:
    """Metric depth in metres (OpenCV camera frame) with MoGe-2."""

    def __init__(self, repo_id: str = moge_model.DEFAULT_REPO, device: str | None = None,
                 num_tokens: int | None = None) -> None:  # fmt: skip
        self.moge = moge_model.shared(repo_id, device, num_tokens)

    @staticmethod
    def unavailable_reason() -> str | None:
        return moge_model.unavailable_reason()

    def estimate(
        self, image_rgb_hw3: np.ndarray, camera: Camera, people: list[PersonResult] | None = None
    ) -> DepthResult:
        """Depth of every pixel of `image_rgb_hw3`; `people` are not used yet (metric refinement: later)."""
        h, w = image_rgb_hw3.shape[:2]
        if (camera.width, camera.height) != (w, h):
            raise ValueError(f"the camera is {camera.width}x{camera.height}, the image {w}x{h}")
        fov_x = None if camera.source == "model" else camera.hfov_deg
        out = self.moge.infer(image_rgb_hw3, fov_x_deg=fov_x)
        return DepthResult(depth_hw=out.depth_hw, valid_hw=out.valid_hw, confidence_hw=out.confidence_hw,
                           points_hw3=out.points_hw3, K_33=out.K_33)  # fmt: skip
