"""Write a body's skeleton motion as BVH (Biovision Hierarchy), for animation tools.

A small writer (the format is a text hierarchy plus one line of channels per frame). Axes: by default
the OpenCV camera frame turned to BVH's y-up convention by a 180 degree rotation about x,
(x, y, z) -> (x, -y, -z), so the camera looks down -z as in glTF (see viz.export); with `out_T_cam_44`,
any rigid frame with y up (the video mode passes the ground's world frame: y = the ground's normal,
the floor at y = 0). Units: metres.
The rest pose is the body's own (its shape, held over the track), turned from Anny's z-up axes to y-up;
every joint's rest orientation is the identity, so a joint's channels are its rotation relative to
its parent. Rotation channels are Z X Y Euler angles in degrees (intrinsic: R = Rz Rx Ry).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from pipelines.io.atomic import write_text_atomic

BVH_T_CAM_33 = np.diag([1.0, -1.0, -1.0])
"""OpenCV camera axes -> BVH axes (y up, camera looking down -z)."""
BVH_T_REST_33 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""Anny's rest axes (z up) -> BVH axes (y up)."""


def bvh_joint_names(labels: Sequence[str]) -> list[str]:
    """BVH-safe joint names (letters, digits, underscores), one per bone label, unique."""
    out, used = [], set()
    for label in labels:
        name = re.sub(r"[^A-Za-z0-9_]", "_", label.replace(".", "_")) or "joint"
        while name in used:
            name += "_"
        used.add(name)
        out.append(name)
    return out


def out_frame(out_T_cam_44: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(rotation (3, 3), translation (3,)) of an export's camera -> file transform; None: BVH_T_CAM_33.
    Raises ValueError for a transform that is not a proper rotation (a mirror would flip the skeleton)."""
    if out_T_cam_44 is None:
        return BVH_T_CAM_33, np.zeros(3)
    T = np.asarray(out_T_cam_44, dtype=np.float64)
    R = T[:3, :3]
    if not (np.allclose(R @ R.T, np.eye(3), atol=1e-5) and np.linalg.det(R) > 0):
        raise ValueError("out_T_cam_44 must be a rigid transform (a rotation and a translation)")
    return R, T[:3, 3].copy()


def write_bvh(path: str | Path, bone_labels: Sequence[str], parents_j: np.ndarray, rest_heads_j3: np.ndarray,
              bone_rot_cam_fj33: np.ndarray, root_pos_cam_f3: np.ndarray, fps: float,
              out_T_cam_44: np.ndarray | None = None) -> Path:  # fmt: skip
    """Write F frames of motion. `bone_rot_cam_fj33` are the bones' world rotations relative to rest
    (camera frame, the fit's G), `root_pos_cam_f3` the root bone's head in the camera frame (metres),
    `rest_heads_j3` the rest-pose bone heads (Anny axes, metres), `parents_j` the parent of each bone
    (-1 for the root, parents before children). `out_T_cam_44`: the rigid transform from the camera
    frame to the file's frame (y up); default BVH_T_CAM_33 (the camera's up). Written atomically
    (temporary file + rename)."""
    path = Path(path)
    R_oc_33, t_o_3 = out_frame(out_T_cam_44)
    parents = np.asarray(parents_j, dtype=int)
    n_j = len(parents)
    names = bvh_joint_names(bone_labels)
    children: list[list[int]] = [[] for _ in range(n_j)]
    for j in range(1, n_j):
        children[parents[j]].append(j)
    heads_bvh_j3 = np.asarray(rest_heads_j3, dtype=np.float64) @ BVH_T_REST_33.T

    lines = ["HIERARCHY"]
    order: list[int] = []

    def emit(j: int, depth: int) -> None:
        pad = "  " * depth
        order.append(j)
        if parents[j] < 0:
            lines.append(f"{pad}ROOT {names[j]}")
            offset = heads_bvh_j3[j] * 0.0
            channels = "CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation"
        else:
            lines.append(f"{pad}JOINT {names[j]}")
            offset = heads_bvh_j3[j] - heads_bvh_j3[parents[j]]
            channels = "CHANNELS 3 Zrotation Xrotation Yrotation"
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {offset[0]:.6f} {offset[1]:.6f} {offset[2]:.6f}")
        lines.append(f"{pad}  {channels}")
        if children[j]:
            for c in children[j]:
                emit(c, depth + 1)
        else:
            end_site = ["End Site", "{", "  OFFSET 0.000000 0.010000 0.000000", "}"]
            lines.extend(f"{pad}  {line}" for line in end_site)
        lines.append(f"{pad}}}")

    emit(0, 0)
    G = np.asarray(bone_rot_cam_fj33, dtype=np.float64)
    n_f = len(G)
    # World rotation of each BVH joint: BVH-rest coords -> BVH world = C G A^T; local = parent^T child.
    W_fj33 = R_oc_33 @ G @ BVH_T_REST_33.T
    local_fj33 = W_fj33.copy()
    has_parent = parents >= 0
    par = np.where(has_parent, parents, 0)
    local_fj33[:, has_parent] = np.swapaxes(W_fj33[:, par[has_parent]], -1, -2) @ W_fj33[:, has_parent]
    euler_fj3 = Rotation.from_matrix(local_fj33[:, order].reshape(-1, 3, 3)).as_euler("ZXY", degrees=True)
    euler_fj3 = euler_fj3.reshape(n_f, len(order), 3)
    root_bvh_f3 = np.asarray(root_pos_cam_f3, dtype=np.float64) @ R_oc_33.T + t_o_3
    lines += ["MOTION", f"Frames: {n_f}", f"Frame Time: {1.0 / fps:.8f}"]
    for f in range(n_f):
        values = np.concatenate([root_bvh_f3[f], euler_fj3[f].ravel()])
        lines.append(" ".join(f"{v:.5f}" for v in values))
    return write_text_atomic(path, "\n".join(lines) + "\n")
