"""Anny's rest bone orientations and its 'local-ref' pose parameters in numpy (no torch).

The same formulas as anny 0.6.2 (`RiggedModelWithLinearBlendShapes._get_cached_rest_model`,
`forward_kinematic` and `get_pose_parameterization`), for one body; tests/test_cold_start.py checks
them against Anny's own forward pass.
"""

from __future__ import annotations

import numpy as np

from pipelines.body.anny_tables import AnnyTables


def nearest_rotations(M_n33: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations nearest to each matrix in Frobenius norm (roma's special_procrustes)."""
    U, _, Vt = np.linalg.svd(M_n33)
    d = np.sign(np.linalg.det(U @ Vt))
    U = U.copy()
    U[:, :, 2] *= d[:, None]
    return U @ Vt


def rest_orientations(tables: AnnyTables, coeffs_n: np.ndarray) -> np.ndarray:
    """(J, 3, 3) rest bone orientations (columns: the bone's axes) for blendshape coefficients."""
    M = tables.orient0_j33 + np.einsum("n,nkij->kij", coeffs_n, tables.dorient_nj33)
    R = nearest_rotations(M)
    if tables.root_identity:
        R[0] = np.eye(3)
    return R


def depth_levels(parents_j: np.ndarray) -> list[np.ndarray]:
    """Bone indices per depth (root level first); parents come before their children."""
    depth = np.zeros(len(parents_j), dtype=np.int64)
    for j in range(1, len(parents_j)):
        depth[j] = depth[parents_j[j]] + 1
    return [np.flatnonzero(depth == d) for d in range(depth.max() + 1)]


def local_ref_pose(tables: AnnyTables, levels: list[np.ndarray], heads_j3: np.ndarray, rest_rot_j33: np.ndarray,
                   G_j33: np.ndarray, root_pos_3: np.ndarray) -> np.ndarray:  # fmt: skip
    """Anny's 'local-ref' pose (J, 4, 4) of a body posed by bone world rotations G (relative to rest)
    with the root head at root_pos ('world-orient': each head follows its parent)."""
    par = tables.bone_parents
    U = tables.reference_rot_j33
    R, h = rest_rot_j33, heads_j3
    # Anny's 'world-orient' chain, operation for operation (the fit's G drift slightly from orthonormal,
    # so a shortcut such as W_c = [G_c R_c | o_c] would differ from Anny by ~1e-4): deltas D = G R,
    # Ga = D R^T, T_0 = [Ga_0 | root - Ga_0 h_0], T_c = T_p [Ga_p^T Ga_c | h_c - Ga_p^T Ga_c h_c], W = T P.
    Ga = (G_j33 @ R) @ R.transpose(0, 2, 1)
    T_R = np.empty_like(Ga)
    T_t = np.empty_like(h)
    T_R[0] = Ga[0]
    T_t[0] = root_pos_3 - Ga[0] @ h[0]
    # Reference poses Q_c = [U_c | q_c]: q_c = q_p + A_p (h_c - h_p), A_p = U_p R_p^T (A_root = I).
    A = U @ R.transpose(0, 2, 1)
    A[0] = np.eye(3)
    q = np.empty_like(h)
    q[0] = h[0]
    for lvl in levels[1:]:
        p = par[lvl]
        K_R = Ga[p].transpose(0, 2, 1) @ Ga[lvl]
        K_t = h[lvl] - np.einsum("nab,nb->na", K_R, h[lvl])
        T_R[lvl] = T_R[p] @ K_R
        T_t[lvl] = np.einsum("nab,nb->na", T_R[p], K_t) + T_t[p]
        q[lvl] = q[p] + np.einsum("nab,nb->na", A[p], h[lvl] - h[p])
    D = T_R @ R
    o = np.einsum("nab,nb->na", T_R, h) + T_t
    c = np.arange(1, len(par))
    p = par[c]
    # local_c = (Q_p^-1 Q_c)^-1 (W_p^-1 W_c), then conjugated by the reference orientation U_c.
    ref_R = U[p].transpose(0, 2, 1) @ U[c]
    ref_t = np.einsum("nba,nb->na", U[p], q[c] - q[p])
    rel_R = D[p].transpose(0, 2, 1) @ D[c]
    rel_t = np.einsum("nba,nb->na", D[p], o[c] - o[p])
    out = np.tile(np.eye(4), (len(par), 1, 1))
    out[0, :3, :3] = D[0]
    out[0, :3, 3] = o[0]
    out[1:, :3, :3] = ref_R.transpose(0, 2, 1) @ rel_R
    out[1:, :3, 3] = np.einsum("nba,nb->na", ref_R, rel_t - ref_t)
    # [U | 0] X [U^T | 0] for every bone, the root's included.
    out[:, :3, :3] = U @ out[:, :3, :3] @ U.transpose(0, 2, 1)
    out[:, :3, 3] = np.einsum("nab,nb->na", U, out[:, :3, 3])
    return out
