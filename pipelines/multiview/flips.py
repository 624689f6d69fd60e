"""Left/right swaps: a single-view detector often mixes up the person's left and right (seen from behind,
or sideways). Per person, view, frame and joint group (face, arms, legs), the view's keypoints are compared with
the joints triangulated from the other views and reprojected (median distance in pixels), as detected
and with the group's left_* / right_* pairs swapped; the swapped version is kept when it is clearly
closer (`ratio`)."""

from __future__ import annotations

import numpy as np

from pipelines.multiview.associate import MIN_CONF
from pipelines.multiview.calibration import CalibratedCamera
from pipelines.multiview.triangulate import triangulate_points


def left_right_permutation(names: list[str]) -> np.ndarray:
    """Index k -> the index of k's mirror joint (itself for the middle ones)."""
    def mirror(n: str) -> str:
        if n.startswith("left_"):
            return "right_" + n[5:]
        if n.startswith("right_"):
            return "left_" + n[6:]
        return n

    return np.array([names.index(mirror(n)) for n in names])


GROUPS: dict[str, tuple[str, ...]] = {
    "face": ("eye", "ear", "mouth"),
    "arms": ("shoulder", "elbow", "wrist", "pinky", "index", "thumb"),
    "legs": ("hip", "knee", "ankle", "heel", "foot_index"),
}
"""Joint groups swapped independently (a detector often swaps the legs only, or the arms only)."""


def group_permutations(names: list[str]) -> list[np.ndarray]:
    """Per group: the permutation that swaps left and right of that group's joints only."""
    full = left_right_permutation(names)
    out = []
    for parts in GROUPS.values():
        perm = np.arange(len(names))
        for k, n in enumerate(names):
            if n.startswith(("left_", "right_")) and n.split("_", 1)[1] in parts:
                perm[k] = full[k]
        out.append(perm)
    return out


def fix_left_right(xy_vfk2: np.ndarray, conf_vfk: np.ndarray, cams: list[CalibratedCamera], names: list[str],
                   ratio: float = 0.6, outlier_px: float = 50.0) -> np.ndarray:  # fmt: skip
    """Permutation per (view, frame) (views, F, K) that undoes the detector's left/right swaps, group by
    group (one person, undistorted pixels on a common frame grid); identity where nothing is swapped.
    Each view is compared with the joints triangulated from the other views (robustly) and reprojected."""
    n_v = len(cams)
    n_f, n_k = conf_vfk.shape[1:]
    perm_vfk = np.tile(np.arange(n_k), (n_v, n_f, 1))
    if n_v < 3:
        return perm_vfk
    for v in range(n_v):
        rest = [u for u in range(n_v) if u != v]
        c = np.where(conf_vfk[rest] >= MIN_CONF, conf_vfk[rest], 0.0)
        tri = triangulate_points(xy_vfk2[rest].reshape(len(rest), -1, 2), c.reshape(len(rest), -1),
                                 [cams[u] for u in rest], distorted=False, min_conf=1e-6, outlier_px=outlier_px)
        proj_fk2 = np.full((n_f * n_k, 2), np.nan)
        ok = tri.valid_n
        proj_fk2[ok] = cams[v].project_world(tri.xyz_n3[ok])
        proj_fk2 = proj_fk2.reshape(n_f, n_k, 2)
        seen_fk = conf_vfk[v] >= MIN_CONF
        for perm in group_permutations(names):
            moved = perm != np.arange(n_k)
            d_orig = np.linalg.norm(proj_fk2 - xy_vfk2[v], axis=-1)
            d_swap = np.linalg.norm(proj_fk2 - xy_vfk2[v][:, perm], axis=-1)
            use = moved[None] & seen_fk & seen_fk[:, perm] & np.isfinite(d_orig) & np.isfinite(d_swap)
            enough = use.sum(1) >= 2
            with np.errstate(invalid="ignore"):
                m_orig = np.nanmedian(np.where(use, d_orig, np.nan)[enough], axis=1)
                m_swap = np.nanmedian(np.where(use, d_swap, np.nan)[enough], axis=1)
            swap_f = np.zeros(n_f, dtype=bool)
            swap_f[enough] = m_swap < ratio * m_orig
            perm_vfk[v, swap_f] = perm_vfk[v, swap_f][:, perm]
    return perm_vfk


def apply_swaps(a_vfk: np.ndarray, perm_vfk: np.ndarray) -> np.ndarray:
    """The per-view, per-frame joint array (views, F, K, ...) with each frame's joints permuted."""
    v, f, k = np.indices(perm_vfk.shape)
    return a_vfk[v, f, perm_vfk]
