"""A joint skeleton for the fused 3D keypoints: one rest pose per person, bone rotations per frame (for BVH).

Bones link the fused joints (plus three virtual ones: pelvis = mid-hip, neck = mid-shoulder,
head = mid-ear). The rest pose stands upright (world z up, the person facing -y) with each bone
at the person's median length over the sequence (one shape per person). A joint's rotation per
frame turns its rest child directions onto the observed ones (weighted Procrustes with several
children, the smallest rotation with one; a leaf takes its parent's). World frame, metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from pipelines.hmr.kinematics import rotation_between
from pipelines.metrics import procrustes
from pipelines.multiview.fuse import FUSED_JOINT_NAMES

# (joint, parent, rest direction in world axes: z up, person facing -y, person's left = +x)
_BONES: list[tuple[str, str | None, tuple[float, float, float]]] = [
    ("pelvis", None, (0, 0, 0)),
    ("left_hip", "pelvis", (1, 0, 0)), ("left_knee", "left_hip", (0, 0, -1)),
    ("left_ankle", "left_knee", (0, 0, -1)), ("left_heel", "left_ankle", (0, 0.3, -1)),
    ("left_foot_index", "left_ankle", (0, -1, -0.4)),
    ("right_hip", "pelvis", (-1, 0, 0)), ("right_knee", "right_hip", (0, 0, -1)),
    ("right_ankle", "right_knee", (0, 0, -1)), ("right_heel", "right_ankle", (0, 0.3, -1)),
    ("right_foot_index", "right_ankle", (0, -1, -0.4)),
    ("neck", "pelvis", (0, 0, 1)),
    ("left_shoulder", "neck", (1, 0, 0)), ("left_elbow", "left_shoulder", (0, 0, -1)),
    ("left_wrist", "left_elbow", (0, 0, -1)),
    ("right_shoulder", "neck", (-1, 0, 0)), ("right_elbow", "right_shoulder", (0, 0, -1)),
    ("right_wrist", "right_elbow", (0, 0, -1)),
    ("head", "neck", (0, 0, 1)), ("nose", "head", (0, -1, -0.3)),
]  # fmt: skip
BONE_NAMES = [b[0] for b in _BONES]
PARENTS = np.array([-1 if p is None else BONE_NAMES.index(p) for _, p, _ in _BONES])


def bone_points(joints_fk3: np.ndarray) -> np.ndarray:
    """(F, B, 3) positions of the skeleton's joints (virtual ones included) from the fused joints."""
    j = {n: joints_fk3[:, i] for i, n in enumerate(FUSED_JOINT_NAMES)}
    j["pelvis"] = (j["left_hip"] + j["right_hip"]) / 2
    j["neck"] = (j["left_shoulder"] + j["right_shoulder"]) / 2
    j["head"] = (j["left_ear"] + j["right_ear"]) / 2
    return np.stack([j[n] for n in BONE_NAMES], axis=1)


def fill_gaps(x_fb3: np.ndarray) -> np.ndarray:
    """Missing frames of each point filled by linear interpolation (ends: the nearest value)."""
    out = x_fb3.copy()
    t = np.arange(len(out))
    for b in range(out.shape[1]):
        ok = np.isfinite(out[:, b]).all(-1)
        if ok.any():
            for d in range(3):
                out[:, b, d] = np.interp(t, t[ok], out[ok, b, d])
        else:
            out[:, b] = 0.0
    return out


@dataclass
class SkeletonMotion:
    """The skeleton's rest pose and motion, in the world frame (metres, z up)."""

    rest_heads_b3: np.ndarray
    """Rest position of each joint (B, 3), pelvis at the origin."""
    rot_world_fb33: np.ndarray
    """Per frame: each joint's rotation from rest (world frame)."""
    root_world_f3: np.ndarray
    """Per frame: the pelvis position."""


def skeleton_motion(joints_fk3: np.ndarray) -> SkeletonMotion:
    pts = fill_gaps(bone_points(joints_fk3))
    n_f, n_b = pts.shape[:2]
    lengths = np.ones(n_b)
    for b in range(1, n_b):
        d = np.linalg.norm(pts[:, b] - pts[:, PARENTS[b]], axis=-1)
        lengths[b] = float(np.median(d)) if len(d) else 0.1
    rest = np.zeros((n_b, 3))
    dirs = np.array([d for _, _, d in _BONES], dtype=np.float64)
    for b in range(1, n_b):
        rest[b] = rest[PARENTS[b]] + dirs[b] / np.linalg.norm(dirs[b]) * lengths[b]
    children = [np.flatnonzero(b == PARENTS) for b in range(n_b)]
    rot = np.tile(np.eye(3), (n_f, n_b, 1, 1))
    for f in range(n_f):
        for b in range(n_b):
            kids = children[b]
            if len(kids) == 0:
                rot[f, b] = rot[f, PARENTS[b]]
                continue
            src = rest[kids] - rest[b]
            dst = pts[f, kids] - pts[f, b]
            if len(kids) == 1:
                rot[f, b] = Rotation.from_rotvec(rotation_between(src[0], dst[0])).as_matrix()
            else:
                rot[f, b] = procrustes(src, dst, with_scale=False, with_translation=False).R_33
    return SkeletonMotion(rest, rot, pts[:, 0])
