"""Typed body-model parameters, one class per body model (as smplx's output classes are).

Each is a dataclass with a docstring per field; it also reads like a mapping of its set fields
(`params["betas"]`, `dict(params)`), which is what the .npz writer saves and what older callers
index by name. Frames: the OpenCV camera frame (x right, y down, z forward), metres, radians.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields

import numpy as np


class BodyParams(Mapping[str, np.ndarray]):
    """Base of the typed parameter classes: the set (not None) fields as a read-only-by-name mapping,
    plus item assignment of declared fields (an exporter adding a native pose)."""

    model: str = ""

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._names() or getattr(self, key) is None:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, value: np.ndarray) -> None:
        if key not in self._names():
            raise KeyError(f"{type(self).__name__} has no field {key!r}")
        setattr(self, key, value)

    def __iter__(self) -> Iterator[str]:
        return (n for n in self._names() if getattr(self, n) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def _names(self) -> list[str]:
        return [f.name for f in fields(self)]  # type: ignore[arg-type]


@dataclass
class AnnyParams(BodyParams):
    """The Anny body (pipelines.body.anny_model) fitted in the camera frame."""

    phenotype: np.ndarray
    """Phenotype values in [0, 1] (P,), in the order of `phenotype_labels` (Anny's shape parameters)."""
    phenotype_labels: np.ndarray
    """Names of the phenotype values (P,)."""
    bone_labels: np.ndarray
    """Anny bone names (J,)."""
    bone_rot_world_j33: np.ndarray
    """World (= camera frame) rotation of every bone (J, 3, 3)."""
    root_pos_cam_3: np.ndarray
    """Position of the root bone in metres, camera frame (3,)."""
    focal_px: np.ndarray
    """The focal length the body was fitted with, in pixels (scalar array)."""
    pose_local_ref_j44: np.ndarray | None = None
    """Anny's own 'local-ref' pose (J, 4, 4), added on export (EmbeddedHMR.add_native_pose)."""
    model = "anny"


@dataclass
class SMPLXParams(BodyParams):
    """SMPL-X (PyPI smplx, the user's own model files) in the camera frame: smplx's forward arguments."""

    betas: np.ndarray
    """Shape coefficients (B,)."""
    global_orient_3: np.ndarray
    """Root rotation, axis-angle in radians (3,): SMPL-X's canonical frame -> the camera frame."""
    body_pose_j3: np.ndarray
    """Axis-angle rotations of the 21 body joints relative to their parents (21, 3)."""
    transl_3: np.ndarray
    """Translation in metres (3,), camera frame (added after the root rotation, as smplx does)."""
    focal_px: np.ndarray
    """The focal length the body was fitted with, in pixels (scalar array)."""
    left_hand_pose_j3: np.ndarray | None = None
    """Axis-angle rotations of the 15 left-hand joints (15, 3) (None: the flat hand)."""
    right_hand_pose_j3: np.ndarray | None = None
    """Axis-angle rotations of the 15 right-hand joints (15, 3) (None: the flat hand)."""
    gender: np.ndarray | None = None
    """'neutral', 'male' or 'female': which model file was used (string array)."""
    model = "smplx"


@dataclass
class MHRParams(BodyParams):
    """The MHR rig (Meta's Momentum Human Rig, PyPI mhr) as SAM 3D Body predicts it, camera frame."""

    shape_params: np.ndarray
    """Identity (shape) coefficients of the MHR model."""
    model_params: np.ndarray
    """MHR model parameters: the rig's pose (joint angles, global rotation) and scales."""
    cam_t_3: np.ndarray
    """Translation of the body in metres in the camera frame, from SAM 3D Body's camera head."""
    focal_px: np.ndarray
    """The focal length used for the prediction, in pixels (scalar array)."""
    expr_params: np.ndarray | None = None
    """Face expression coefficients, where predicted."""
    model = "mhr"
