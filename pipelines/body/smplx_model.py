"""The SMPL-X body model (PyPI `smplx`) from the user's own model files (licence-gated, never shipped).

Point the app at a folder holding `SMPLX_NEUTRAL.npz` (or .pkl; also `smplx/SMPLX_*.npz` as the
official download unpacks), e.g. `--body smplx --smplx-model-dir DIR`. SMPL-X's canonical frame is
y up, facing +z, the person's left on +x, metres; the fit's root rotation maps it into the OpenCV
camera frame (x right, y down, z forward).

Besides smplx's own forward (the full mesh), this module gives the fit a fast differentiable path
for its keypoints: joints and the few vertices smplx selects as extra joints (nose, eyes, ears, toes,
heels, fingertips), skinned without pose correctives (they move those points by millimetres).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.body.params import SMPLXParams
from pipelines.hub import HubUnavailable, require_package
from pipelines.registry import register

WHAT = "The SMPL-X body model"
SMPLX_URL = "https://smpl-x.is.tue.mpg.de"
NUM_BETAS = 10

# detector / prompt name (BlazePose, COCO, MediaPipe hands) -> smplx joint name (smplx.joint_names)
KEYPOINT_TO_SMPLX: dict[str, str] = {
    **{n: n for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")},
    **{f"{s}_{j}": f"{s}_{j}" for s in ("left", "right")
       for j in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle", "heel")},
    "left_foot_index": "left_big_toe", "right_foot_index": "right_big_toe",
}  # fmt: skip
_HAND_SEGMENTS = {"thumb": ("cmc", "mcp", "ip"), "index_finger": ("mcp", "pip", "dip"),
                  "middle_finger": ("mcp", "pip", "dip"), "ring_finger": ("mcp", "pip", "dip"),
                  "pinky": ("mcp", "pip", "dip")}  # fmt: skip
for _side in ("left", "right"):  # MediaPipe hand keypoints: joints 1-3 of each finger, the tip a vertex
    KEYPOINT_TO_SMPLX[f"{_side}_hand_wrist"] = f"{_side}_wrist"
    for _mp, _segments in _HAND_SEGMENTS.items():
        _sx = _mp.split("_")[0]
        for _k, _seg in enumerate(_segments, start=1):
            KEYPOINT_TO_SMPLX[f"{_side}_hand_{_mp}_{_seg}"] = f"{_side}_{_sx}{_k}"
        KEYPOINT_TO_SMPLX[f"{_side}_hand_{_mp}_tip"] = f"{_side}_{_sx}"
OUTPUT_JOINTS: list[str] = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "pelvis", "neck", "head", "left_heel", "right_heel", "left_big_toe", "right_big_toe",
]  # fmt: skip
"""The joints a fitted SMPL-X reports (the 17 COCO names first), camera frame."""


def find_model_file(model_dir: str | Path, gender: str = "neutral") -> Path:
    """The SMPL-X file of `gender` in `model_dir` (or its smplx/ subfolder), .npz before .pkl."""
    root = Path(model_dir).expanduser()
    if root.is_file():
        return root
    name = f"SMPLX_{gender.upper()}"
    for folder in (root, root / "smplx"):
        for ext in ("npz", "pkl"):
            if (folder / f"{name}.{ext}").is_file():
                return folder / f"{name}.{ext}"
    why = "does not exist" if not root.exists() else f"holds no {name}.npz or {name}.pkl (nor smplx/{name}.npz)"
    raise HubUnavailable(
        f"{WHAT}: the model folder {root} {why}; download SMPL-X from {SMPLX_URL} (free registration, "
        f"its licence applies) and pass the folder that holds {name}.npz with --smplx-model-dir."
    )


def check_model_dir(model_dir: str | Path | None, gender: str = "neutral") -> Path:
    """The model file, or HubUnavailable saying how to get SMPL-X (no folder given, or a wrong one).
    Without `model_dir`, the folder in the environment variable SMPLX_MODEL_DIR (for the UI)."""
    model_dir = model_dir or os.environ.get("SMPLX_MODEL_DIR") or None
    if model_dir is None:
        raise HubUnavailable(f"{WHAT} needs your own model files: download SMPL-X from {SMPLX_URL} (free "
                             "registration, its licence applies) and pass --smplx-model-dir DIR (the folder "
                             f"with SMPLX_{gender.upper()}.npz) or set SMPLX_MODEL_DIR.")  # fmt: skip
    return find_model_file(model_dir, gender)


@register("body", "smplx")
class SmplxBody:
    """SMPL-X from the user's files: its mesh, joints and a differentiable keypoint forward (torch)."""

    name = "smplx"

    def __init__(self, model_dir: str | Path | None = None, gender: str = "neutral") -> None:
        self.path = check_model_dir(model_dir, gender)
        self.gender = gender
        require_package("smplx", "smplx", WHAT)
        self._lock = threading.Lock()

    @staticmethod
    def unavailable_reason() -> str | None:
        from pipelines.hub import missing_packages

        missing = missing_packages("smplx", "torch")
        if missing:
            return f"SMPL-X needs the Python package(s) {', '.join(missing)}"
        try:
            check_model_dir(None)
        except HubUnavailable as err:
            return str(err)
        return None

    @cached_property
    def model(self) -> Any:
        """smplx.SMPLX (float32, CPU), loaded once; smplx's own WARNING prints are kept off stdout."""
        smplx = require_package("smplx", "smplx", WHAT)
        with self._lock, contextlib.redirect_stdout(io.StringIO()):
            try:
                return smplx.SMPLX(str(self.path), gender=self.gender, ext=self.path.suffix[1:], use_pca=False,
                                   num_betas=NUM_BETAS, flat_hand_mean=True)  # fmt: skip
            except (KeyError, AttributeError, ValueError, AssertionError, OSError) as err:
                raise HubUnavailable(f"{WHAT}: {self.path} is not an SMPL-X model file smplx can read "
                                     f"({type(err).__name__}: {err}).") from err  # fmt: skip

    @cached_property
    def faces_f3(self) -> np.ndarray:
        return np.asarray(self.model.faces, dtype=np.int64)

    @cached_property
    def joint_names(self) -> list[str]:
        """smplx's output joint names (55 joints, then the vertex joints, then face landmarks)."""
        from smplx.joint_names import JOINT_NAMES

        return list(JOINT_NAMES)

    def keypoint_names(self) -> set[str]:
        """Detector / prompt names SMPL-X has a point for (pipelines.body.base.BodyModel)."""
        known = set(self.joint_names[:76])
        return {k for k, v in KEYPOINT_TO_SMPLX.items() if v in known}

    @cached_property
    def _vertex_joints(self) -> dict[str, int]:
        """smplx joint name -> vertex id, for the extra joints smplx takes from vertices."""
        from smplx.vertex_ids import vertex_ids

        ids = vertex_ids["smplx"]
        short = {"nose": "nose", "reye": "right_eye", "leye": "left_eye", "rear": "right_ear", "lear": "left_ear",
                 "LBigToe": "left_big_toe", "LSmallToe": "left_small_toe", "LHeel": "left_heel",
                 "RBigToe": "right_big_toe", "RSmallToe": "right_small_toe", "RHeel": "right_heel"}  # fmt: skip
        out = {v: ids[k] for k, v in short.items()}
        for side, s in (("left", "l"), ("right", "r")):
            for finger in ("thumb", "index", "middle", "ring", "pinky"):
                out[f"{side}_{finger}"] = ids[f"{s}{finger}"]
        return out

    @functools.lru_cache(maxsize=16)  # noqa: B019 - one body per process, keyed by name tuples
    def _keypoint_basis(self, smplx_names: tuple[str, ...]) -> dict[str, Any]:
        """The linear pieces of `keypoints` for these names (torch tensors)."""
        import torch

        m = self.model
        vj = self._vertex_joints
        is_vert = [n in vj for n in smplx_names]
        vids = torch.tensor([vj[n] for n in smplx_names if n in vj], dtype=torch.long)
        jids = torch.tensor([self.joint_names.index(n) for n in smplx_names if n not in vj], dtype=torch.long)
        n_b = NUM_BETAS
        order = np.argsort(np.concatenate([np.nonzero(~np.array(is_vert, bool))[0], np.nonzero(is_vert)[0]]))
        return {
            "J0": m.J_regressor @ m.v_template,
            "Jd": torch.einsum("jv,vcb->jcb", m.J_regressor, m.shapedirs[:, :, :n_b]),
            "V0": m.v_template[vids], "Vd": m.shapedirs[vids, :, :n_b], "W": m.lbs_weights[vids], "jids": jids,
            "order": torch.tensor(order, dtype=torch.long),
        }  # fmt: skip

    def keypoints(self, smplx_names: list[str], betas: Any, global_orient: Any, body_pose: Any, transl: Any,
                  hand_pose: tuple[Any, Any] | None = None) -> Any:  # fmt: skip
        """Differentiable positions (K, 3) in metres of joints / vertex points by smplx name (torch;
        batch of one; no pose correctives)."""
        import torch
        from smplx.lbs import batch_rigid_transform, batch_rodrigues

        basis = self._keypoint_basis(tuple(smplx_names))
        joints_rest = basis["J0"] + basis["Jd"] @ betas
        zeros_hand = torch.zeros(15, 3, dtype=betas.dtype)
        left, right = hand_pose if hand_pose is not None else (zeros_hand, zeros_hand)
        full = torch.cat([global_orient.reshape(1, 3), body_pose.reshape(21, 3), torch.zeros(3, 3, dtype=betas.dtype),
                          left.reshape(15, 3), right.reshape(15, 3)])  # fmt: skip
        rot = batch_rodrigues(full).reshape(1, -1, 3, 3)
        posed_j, A = batch_rigid_transform(rot, joints_rest[None], self.model.parents)
        T = torch.einsum("kj,jab->kab", basis["W"], A[0])
        rest_v = basis["V0"] + basis["Vd"] @ betas
        verts = torch.einsum("kab,kb->ka", T[:, :3, :3], rest_v) + T[:, :3, 3]
        points = torch.cat([posed_j[0, basis["jids"]], verts])[basis["order"]]
        return points + transl.reshape(1, 3)

    def forward(self, params: SMPLXParams) -> tuple[np.ndarray, np.ndarray]:
        """smplx's full forward: (vertices (V, 3), joints (J, 3)) in metres, in the params' frame."""
        import torch

        def t(x: np.ndarray | None, n: int) -> torch.Tensor:
            return torch.zeros(1, n) if x is None else torch.as_tensor(np.asarray(x, np.float32).reshape(1, n))

        with torch.no_grad():
            out = self.model(betas=t(params.betas, NUM_BETAS), global_orient=t(params.global_orient_3, 3),
                             body_pose=t(params.body_pose_j3, 63), left_hand_pose=t(params.left_hand_pose_j3, 45),
                             right_hand_pose=t(params.right_hand_pose_j3, 45), transl=t(params.transl_3, 3),
                             return_verts=True)  # fmt: skip
        return out.vertices[0].numpy().astype(np.float64), out.joints[0].numpy().astype(np.float64)

    def posed(self, params: SMPLXParams) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(vertices, joint names, joints) in metres (pipelines.body.base.BodyModel)."""
        verts_v3, joints_j3 = self.forward(params)
        idx = [self.joint_names.index(n) for n in OUTPUT_JOINTS]
        return verts_v3, list(OUTPUT_JOINTS), joints_j3[idx]

    def height_m(self, betas: np.ndarray) -> float:
        """Standing height (y extent of the zero-pose mesh) for these shape coefficients, in metres."""
        zero = SMPLXParams(betas=np.asarray(betas), global_orient_3=np.zeros(3), body_pose_j3=np.zeros((21, 3)),
                           transl_3=np.zeros(3), focal_px=np.array(0.0))  # fmt: skip
        verts_v3, _ = self.forward(zero)
        return float(np.ptp(verts_v3[:, 1]))
