"""Human mesh recovery stage: one person's detection (+ keypoint prompts) -> a body in the camera frame.

Backends: `embedded` (the promptable fit of pipelines.hmr.embedded), `smplx` bodies through the same
protocol (pipelines.hmr.smplx_fit), and a `hub` regressor (SAM 3D Body, pipelines.hmr.hub_sam3d). The image
mode talks to this protocol only: it reads `PersonFit.body`, the focal in `PersonFit.state.focal_px`
and its uncertainty in `PersonFit.report.focal_log_var`, and hands `PersonFit.state` back as `warm`.
"""

from __future__ import annotations

from typing import Any, Protocol

from pipelines.types import BodyFit, Camera, PersonDetection


class NoBodyFound(Exception):  # noqa: N818 - a per-person outcome, not a failure of the stage
    """The hmr backend found no body for one person (the stage itself works: the other people are fitted)."""


class HumanMeshRecovery(Protocol):
    needs_keypoints: bool
    """Whether a person needs detected keypoints to be fitted (False: the box / mask is enough, e.g.
    SAM 3D Body; the image mode skips people with too few keypoints otherwise). Default True."""

    def warmup(self) -> None:
        """Load the models (so that the first photo does not pay for it)."""
        ...

    def fit(self, camera: Camera, person: PersonDetection, prompts: dict[str, tuple[float, float]] | None = None,
            warm: Any = None, estimate_focal: bool = False, focal_prior_px: float | None = None,
            fast: bool = False, image_rgb_hw3: Any = None) -> Any:  # fmt: skip
        """Fit one person (pixels of the image, OpenCV camera frame, metres). `prompts`: joint name -> where
        it really is; `warm`: the state of the previous fit of this person; `estimate_focal`: solve the
        focal too (log-normal prior around `focal_prior_px`); `image_rgb_hw3`: the photo, for backends
        that look at it (SAM 3D Body). Returns a PersonFit (body, state, report)."""
        ...

    def add_native_pose(self, fit: BodyFit) -> None:
        """Add the body model's own pose parameters to fit.params before export (may do nothing)."""
        ...
