"""Body model stage: a parametric mesh (Anny by default; SMPL-X with the user's own model files).

What every body model gives the rest of the project, whatever its parametrisation: the mesh's
triangles, and for a set of parameters (typed per model, pipelines.body.params) the posed vertices
and named joints in metres in the frame the parameters put the body in (the camera frame after a fit).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pipelines.body.params import BodyParams


class BodyModel(Protocol):
    name: str
    """Body model name: 'anny', 'smplx', 'mhr'."""

    @property
    def faces_f3(self) -> np.ndarray:
        """Triangle indices (F, 3) of the mesh."""
        ...

    def keypoint_names(self) -> set[str]:
        """The detector / prompt names (BlazePose, COCO, hand names) this model has a point for."""
        ...

    def posed(self, params: BodyParams) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(vertices (V, 3), joint names, joints (J, 3)) in metres for `params`."""
        ...
