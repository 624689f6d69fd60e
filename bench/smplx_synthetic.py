"""A synthetic SMPLX_NEUTRAL.npz with every key and shape that smplx 0.1.28 reads (for tests and benches).

The real SMPL-X files are licence-gated (smpl-x.is.tue.mpg.de) and never shipped; this one is a crude
stick figure with SMPL-X's rig: its 55 joints and kinematic tree (smplx.joint_names order), 10,475
vertices (the vertex ids smplx picks for the nose, eyes, ears, toes, heels and fingertips exist and
sit where those points are), rigid skinning (each vertex follows one joint), random small shape
directions, zero pose correctives. Rest pose: T-pose, y up, facing +z, the person's left on +x, feet
at y = 0, metres.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

N_VERTS = 10475
N_JOINTS = 55
# SMPL's 22 body joints, then jaw, eyes, 15 joints per hand (index, middle, pinky, ring, thumb x 3)
_BODY_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15]
_FINGERS = ("index", "middle", "pinky", "ring", "thumb")
_FINGER_DZ = {"index": 0.03, "middle": 0.01, "ring": -0.01, "pinky": -0.03, "thumb": 0.05}


def _parents() -> np.ndarray:
    parents = list(_BODY_PARENTS)
    for wrist in (20, 21):
        for _finger in _FINGERS:
            base = len(parents)
            parents += [wrist, base, base + 1]
    return np.array(parents, dtype=np.int64)


def _rest_joints_j3() -> np.ndarray:
    j = np.zeros((N_JOINTS, 3))
    body = {
        0: (0, 0.95, 0), 1: (0.09, 0.88, 0), 2: (-0.09, 0.88, 0), 3: (0, 1.05, 0), 4: (0.1, 0.5, 0.01),
        5: (-0.1, 0.5, 0.01), 6: (0, 1.18, 0), 7: (0.1, 0.08, -0.02), 8: (-0.1, 0.08, -0.02), 9: (0, 1.3, 0),
        10: (0.1, 0.02, 0.1), 11: (-0.1, 0.02, 0.1), 12: (0, 1.5, 0), 13: (0.07, 1.43, 0), 14: (-0.07, 1.43, 0),
        15: (0, 1.6, 0.01), 16: (0.18, 1.43, 0), 17: (-0.18, 1.43, 0), 18: (0.45, 1.43, 0), 19: (-0.45, 1.43, 0),
        20: (0.7, 1.43, 0), 21: (-0.7, 1.43, 0), 22: (0, 1.57, 0.05), 23: (0.03, 1.66, 0.08), 24: (-0.03, 1.66, 0.08),
    }  # fmt: skip
    for i, xyz in body.items():
        j[i] = xyz
    k = 25
    for sign in (1.0, -1.0):
        for finger in _FINGERS:
            for seg in range(3):
                j[k] = (sign * (0.76 + 0.03 * seg), 1.43, _FINGER_DZ[finger])
                k += 1
    return j


# smplx's vertex ids (smplx.vertex_ids['smplx']) -> (where the point is, the joint it follows)
_NAMED_VERTS: dict[int, tuple[tuple[float, float, float], int]] = {
    9120: ((0, 1.64, 0.1), 15), 9929: ((-0.03, 1.67, 0.09), 15), 9448: ((0.03, 1.67, 0.09), 15),
    616: ((-0.075, 1.64, 0), 15), 6: ((0.075, 1.64, 0), 15),
    5770: ((0.1, 0.0, 0.2), 10), 5780: ((0.13, 0.0, 0.18), 10), 8846: ((0.1, 0.0, -0.06), 7),
    8463: ((-0.1, 0.0, 0.2), 11), 8474: ((-0.13, 0.0, 0.18), 11), 8635: ((-0.1, 0.0, -0.06), 8),
}  # fmt: skip
_TIP_VERTS = {  # fingertip vertex -> (side, finger)
    5361: (1.0, "thumb"), 4933: (1.0, "index"), 5058: (1.0, "middle"), 5169: (1.0, "ring"), 5286: (1.0, "pinky"),
    8079: (-1.0, "thumb"), 7669: (-1.0, "index"), 7794: (-1.0, "middle"), 7905: (-1.0, "ring"), 8022: (-1.0, "pinky"),
}  # fmt: skip


def synthetic_smplx(seed: int = 0, num_shape: int = 10, num_expr: int = 10) -> dict[str, np.ndarray]:
    """The arrays of a synthetic SMPLX_*.npz (see the module docstring)."""
    rng = np.random.default_rng(seed)
    parents = _parents()
    joints_j3 = _rest_joints_j3()
    owner_v = rng.integers(0, 22, N_VERTS)  # body joints carry the skin; fingers get their few vertices below
    verts_v3 = np.zeros((N_VERTS, 3))
    for v in range(N_VERTS):
        j = owner_v[v]
        kids = np.nonzero(parents == j)[0]
        end = joints_j3[kids[0]] if len(kids) else joints_j3[j] + np.array([0, 0.08, 0])
        t = rng.uniform(0, 1)
        verts_v3[v] = joints_j3[j] + t * (end - joints_j3[j]) + rng.normal(0, 0.04, 3)
    for v, (xyz, j) in _NAMED_VERTS.items():
        verts_v3[v], owner_v[v] = xyz, j
    for v, (sign, finger) in _TIP_VERTS.items():
        j = 25 + (0 if sign > 0 else 15) + 3 * _FINGERS.index(finger) + 2
        verts_v3[v], owner_v[v] = joints_j3[j] + np.array([sign * 0.03, 0, 0]), j
    free = [v for v in range(N_VERTS) if v not in _NAMED_VERTS and v not in _TIP_VERTS]
    for j in range(22, N_JOINTS):  # a few vertices around each face and finger joint
        for v in rng.choice(free, 6, replace=False):
            verts_v3[v], owner_v[v] = joints_j3[j] + rng.normal(0, 0.005, 3), j
    weights_vj = np.zeros((N_VERTS, N_JOINTS))
    weights_vj[np.arange(N_VERTS), owner_v] = 1.0
    # J_regressor: each joint is the mean of its vertices, shifted onto the designed joint position
    J_regressor = np.zeros((N_JOINTS, N_VERTS))
    for j in range(N_JOINTS):
        idx = np.nonzero(owner_v == j)[0]
        J_regressor[j, idx] = 1.0 / len(idx)
        verts_v3[idx] += joints_j3[j] - verts_v3[idx].mean(axis=0)
    faces = []
    for j in range(N_JOINTS):
        idx = np.nonzero(owner_v == j)[0]
        faces += [rng.choice(idx, 3, replace=False) for _ in range(max(1, len(idx) // 2))]
    shapedirs = rng.normal(0, 0.003, (N_VERTS, 3, num_shape + num_expr))
    n_lmk = 51
    return {
        "v_template": verts_v3.astype(np.float32),
        "f": np.array(faces, dtype=np.int64),
        "shapedirs": shapedirs.astype(np.float32),
        "posedirs": np.zeros((N_VERTS, 3, (N_JOINTS - 1) * 9), dtype=np.float32),
        "J_regressor": J_regressor.astype(np.float32),
        "weights": weights_vj.astype(np.float32),
        "kintree_table": np.stack([parents, np.arange(N_JOINTS)]).astype(np.int64),
        "hands_componentsl": np.eye(45, dtype=np.float32),
        "hands_componentsr": np.eye(45, dtype=np.float32),
        "hands_meanl": np.zeros(45, dtype=np.float32),
        "hands_meanr": np.zeros(45, dtype=np.float32),
        "lmk_faces_idx": rng.integers(0, len(faces), n_lmk).astype(np.int64),
        "lmk_bary_coords": np.full((n_lmk, 3), 1.0 / 3.0, dtype=np.float32),
    }


def save_synthetic_smplx(model_dir: str | Path, gender: str = "neutral", seed: int = 0) -> Path:
    """Write `model_dir/SMPLX_<GENDER>.npz` (the file name smplx looks for in a model folder)."""
    path = Path(model_dir) / f"SMPLX_{gender.upper()}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **synthetic_smplx(seed))
    return path
