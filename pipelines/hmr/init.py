"""Analytic initialisation of a fit from the detector's metric 3D landmarks (no optimisation).

1. Global rotation: Procrustes between the model's torso points and the landmarks (hip-centred).
2. Each bone chain (spine, neck, head, arms, legs, feet, hands) turned so that its direction
   matches the landmarks', parents first.
3. Translation: linear least squares on the 2D keypoints with the focal length.
"""

from __future__ import annotations

import numpy as np

from pipelines.body.anny_model import RestState
from pipelines.hmr.fit import FitTargets
from pipelines.hmr.kinematics import (
    PointModel,
    Skeleton,
    evaluate_b,
    forward,
    rest_offsets_b,
    rotation_between,
    rotvec_to_matrix,
)
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


def analytic_init_b(skel: Skeleton, bone_labels: list[str], pm: PointModel, coeffs_bn: np.ndarray,
                    heads_bj3: np.ndarray, targets: list[FitTargets], focal_b: np.ndarray,
                    cxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Local rotations (B, J, 3, 3) and root positions (B, 3) of a first guess in the camera frame for B people
    (targets over pm's names, e.g. batch_fit.pad_targets), each with its rest state (coeffs, heads) and focal:
    one batched forward pass per bone chain for everyone whose chain the 3D landmarks give."""
    names = pm.points.names
    n_b, n_j = len(targets), len(skel.parents)
    local = np.tile(np.eye(3), (n_b, n_j, 1, 1))
    local[:, 0] = ANNY_TO_CAM_FACING_33
    offs = rest_offsets_b(pm, coeffs_bn, heads_bj3)
    root = np.tile([0.0, 0.0, 3.0], (n_b, 1))

    def points(sel: np.ndarray, loc: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        G, o = forward(skel, heads_bj3[sel], loc, root[sel])
        return evaluate_b(pm, offs[sel], G, o)[0], G

    ok3 = [np.isfinite(t.hip3d_k3).all(axis=1) if t.hip3d_k3 is not None else np.zeros(len(names), bool)
           for t in targets]  # fmt: skip
    torso = [names.index(n) for n in ("left_hip", "right_hip", "left_shoulder", "right_shoulder") if n in names]
    chained = np.array([i for i, t in enumerate(targets) if t.hip3d_k3 is not None and len(torso) == 4
                        and all(ok3[i][k] for k in torso)], dtype=np.int64)  # fmt: skip
    if len(chained):
        x_rest, _ = points(chained, np.tile(np.eye(3), (len(chained), n_j, 1, 1)))
        for x_k3, i in zip(x_rest, chained, strict=True):
            local[i, 0] = procrustes(x_k3[torso], targets[i].hip3d_k3[torso], with_scale=False).R_33
    ok_all = np.ones(len(names), dtype=bool)
    for bone, a, b in CHAINS:
        if bone not in bone_labels:
            continue
        goals = {}
        for i in chained:
            ta, tb = _point(a, names, targets[i].hip3d_k3, ok3[i]), _point(b, names, targets[i].hip3d_k3, ok3[i])
            if ta is not None and tb is not None:
                goals[int(i)] = tb - ta
        if not goals:
            continue
        sel = np.array(list(goals), dtype=np.int64)
        x, G = points(sel, local[sel])
        j = bone_labels.index(bone)
        for x_k3, G_j33, i in zip(x, G, sel, strict=True):
            delta = rotation_between(_point(b, names, x_k3, ok_all) - _point(a, names, x_k3, ok_all), goals[int(i)])
            Gp = G_j33[skel.parents[j]]
            local[i, j] = Gp.T @ rotvec_to_matrix(delta[None])[0] @ Gp @ local[i, j]
    x, _ = points(np.arange(n_b), local)
    for i, t in enumerate(targets):
        w = np.where(t.conf_k > 0.3, t.conf_k, 0.0)
        if (w > 0).sum() >= 2:
            tr = solve_translation(x[i] - root[i], t.xy_k2, w, float(focal_b[i]), cxy)
            if tr[2] > 0.3:
                root[i] = tr
    return local, root


def analytic_init(skel: Skeleton, bone_labels: list[str], pm: PointModel, rest: RestState,
                  names: list[str], xy_k2: np.ndarray, conf_k: np.ndarray, hip3d_k3: np.ndarray | None,
                  focal: float, cxy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Local rotations (J, 3, 3) and root position (3,) of a first guess for one person (`names`: pm's);
    analytic_init_b of one."""
    targets = [FitTargets(list(names), xy_k2, conf_k, hip3d_k3)]
    local, root = analytic_init_b(skel, bone_labels, pm, rest.coeffs_n[None], rest.heads_j3[None], targets,
                                  np.array([focal]), cxy)  # fmt: skip
    return local[0], root[0]
