"""Analytic initialisation of a fit from the detector's metric 3D landmarks (no optimisation).

1. Global rotation: Procrustes between the model's torso points and the landmarks (hip-centred).
2. Each bone chain (spine, neck, head, arms, legs, feet, hands) turned so that its direction
   matches the landmarks', parents first.
3. Translation: linear least squares on the 2D keypoints with the focal length.
"""

from __future__ import annotations

import numpy as np

from pipelines.body.anny_model import RestState
from pipelines.hmr.kinematics import PointModel, Skeleton, forward, rotation_between, rotvec_to_matrix
from pipelines.metrics import procrustes

# Anny (x: person's left, y: back, z: up) -> OpenCV camera, for a person facing the camera upright.
ANNY_TO_CAM_FACING_33 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])

# (bone to turn, from point, to point); 'a+b' is the midpoint of a and b
CHAINS: list[tuple[str, str, str]] = [
    ("spine04", "left_hip+right_hip", "left_shoulder+right_shoulder"),
    ("neck01", "left_shoulder+right_shoulder", "left_ear+right_ear"),
    ("head", "left_ear+right_ear", "nose"),
]
for _s, _S in (("left", "L"), ("right", "R")):
    CHAINS += [
        (f"upperarm01.{_S}", f"{_s}_shoulder", f"{_s}_elbow"),
        (f"lowerarm01.{_S}", f"{_s}_elbow", f"{_s}_wrist"),
        (f"wrist.{_S}", f"{_s}_wrist", f"{_s}_index+{_s}_pinky"),
        (f"upperleg01.{_S}", f"{_s}_hip", f"{_s}_knee"),
        (f"lowerleg01.{_S}", f"{_s}_knee", f"{_s}_ankle"),
        (f"foot.{_S}", f"{_s}_heel", f"{_s}_foot_index"),
    ]


def _point(name: str, names: list[str], pts_k3: np.ndarray, ok_k: np.ndarray) -> np.ndarray | None:
    parts = name.split("+")
    idx = [names.index(p) for p in parts if p in names]
    if len(idx) != len(parts) or not all(ok_k[i] for i in idx):
        return None
    return pts_k3[idx].mean(0)


def solve_translation(x_k3: np.ndarray, xy_k2: np.ndarray, w_k: np.ndarray, focal: float,
                      cxy: np.ndarray) -> np.ndarray:  # fmt: skip
    """Translation t minimising the 2D error of the points x + t (linearised pinhole)."""
    u = xy_k2 - cxy
    rows, rhs, ws = [], [], []
    for k in np.flatnonzero(w_k > 0):
        rows.append([focal, 0.0, -u[k, 0]])
        rhs.append(u[k, 0] * x_k3[k, 2] - focal * x_k3[k, 0])
        rows.append([0.0, focal, -u[k, 1]])
        rhs.append(u[k, 1] * x_k3[k, 2] - focal * x_k3[k, 1])
        ws += [w_k[k], w_k[k]]
    sw = np.sqrt(np.asarray(ws))
    t, *_ = np.linalg.lstsq(np.asarray(rows) * sw[:, None], np.asarray(rhs) * sw, rcond=None)
    return t


def analytic_init(skel: Skeleton, bone_labels: list[str], pm: PointModel, rest: RestState,
                  names: list[str], xy_k2: np.ndarray, conf_k: np.ndarray, hip3d_k3: np.ndarray | None,
                  focal: float, cxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Local rotations (J, 3, 3) and root position (3,) of a first guess in the camera frame."""
    n_j = len(skel.parents)
    local = np.tile(np.eye(3), (n_j, 1, 1))
    local[0] = ANNY_TO_CAM_FACING_33
    offs = pm.rest_offsets(rest.coeffs_n, rest.heads_j3)
    root = np.array([0.0, 0.0, 3.0])

    def points(loc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        G, o = forward(skel, rest.heads_j3, loc, root)
        x, _ = pm.evaluate(offs, G, o)
        return x, G, o

    ok3 = np.zeros(len(names), dtype=bool)
    if hip3d_k3 is not None:
        ok3 = np.isfinite(hip3d_k3).all(axis=1)
    torso = [names.index(n) for n in ("left_hip", "right_hip", "left_shoulder", "right_shoulder") if n in names]
    if hip3d_k3 is not None and all(ok3[i] for i in torso) and len(torso) == 4:
        rest_local = np.tile(np.eye(3), (n_j, 1, 1))
        G, o = forward(skel, rest.heads_j3, rest_local, root)
        x_rest, _ = pm.evaluate(offs, G, o)
        local[0] = procrustes(x_rest[torso], hip3d_k3[torso], with_scale=False).R_33
        for bone, a, b in CHAINS:
            if bone not in bone_labels:
                continue
            target_a, target_b = _point(a, names, hip3d_k3, ok3), _point(b, names, hip3d_k3, ok3)
            if target_a is None or target_b is None:
                continue
            x, G, _ = points(local)
            ok_all = np.ones(len(names), dtype=bool)
            model_a, model_b = _point(a, names, x, ok_all), _point(b, names, x, ok_all)
            delta = rotation_between(model_b - model_a, target_b - target_a)
            j = bone_labels.index(bone)
            Gp = G[skel.parents[j]]
            local[j] = Gp.T @ rotvec_to_matrix(delta[None])[0] @ Gp @ local[j]
    x, _, _ = points(local)
    w = np.where(conf_k > 0.3, conf_k, 0.0)
    if (w > 0).sum() >= 2:
        t = solve_translation(x - root, xy_k2, w, focal, cxy)
        if t[2] > 0.3:
            root = t
    return local, root
