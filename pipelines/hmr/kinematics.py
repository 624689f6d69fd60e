"""Fast forward kinematics of skin points, with analytic Jacobians, for fitting (numpy, float64).

Pose is held as bone world rotations relative to rest, G_j (Anny's 'world-orient' convention): a
bone's head follows its parent, o_c = o_p + G_p (h_c - h_p), and a skin point is
x_k = sum over its (point, bone) pairs of G_b (a_pb - w_pb h_b) + w_pb o_b, with a the weighted
rest position. The fit updates a bone by a small rotation delta (world axes) of its whole subtree
about its head, so d x_k / d delta_j = -[S_kj - W_kj o_j]_x with S, W the subtree sums of the
point's pair contributions and weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from pipelines.body.anny_model import PointSet


def skew(v_n3: np.ndarray) -> np.ndarray:
    """(N, 3) vectors -> (N, 3, 3) cross-product matrices."""
    z = np.zeros(v_n3.shape[:-1])
    x, y, w = v_n3[..., 0], v_n3[..., 1], v_n3[..., 2]
    return np.stack([np.stack([z, -w, y], -1), np.stack([w, z, -x], -1), np.stack([-y, x, z], -1)], -2)


def rotvec_to_matrix(r_n3: np.ndarray) -> np.ndarray:
    """Rodrigues' formula, vectorised: (N, 3) rotation vectors -> (N, 3, 3)."""
    theta = np.linalg.norm(r_n3, axis=-1)[..., None, None]
    K = skew(r_n3)
    small = theta < 1e-8
    safe = np.where(small, 1.0, theta)
    a = np.where(small, 1.0, np.sin(safe) / safe)
    b = np.where(small, 0.5, (1 - np.cos(safe)) / safe**2)
    return np.eye(3) + a * K + b * (K @ K)


def matrix_to_rotvec(R_n33: np.ndarray) -> np.ndarray:
    """(N, 3, 3) rotations -> (N, 3) rotation vectors (angles in [0, pi])."""
    cos = np.clip((np.trace(R_n33, axis1=-2, axis2=-1) - 1) / 2, -1.0, 1.0)
    theta = np.arccos(cos)
    w = np.stack([R_n33[..., 2, 1] - R_n33[..., 1, 2], R_n33[..., 0, 2] - R_n33[..., 2, 0],
                  R_n33[..., 1, 0] - R_n33[..., 0, 1]], -1)  # fmt: skip
    sin = np.sin(theta)
    out = np.where((sin > 1e-6)[..., None], w * (theta / np.where(sin > 1e-6, 2 * sin, 1.0))[..., None], w / 2)
    # Near pi the antisymmetric part vanishes: take the axis from the symmetric part.
    near_pi = theta > np.pi - 1e-3
    if np.any(near_pi):
        for i in np.flatnonzero(near_pi.ravel()):
            R = R_n33.reshape(-1, 3, 3)[i]
            col = np.argmax(np.diag(R))
            axis = (R[:, col] + np.eye(3)[col]) / np.sqrt(2 * (1 + R[col, col]))
            out.reshape(-1, 3)[i] = axis * theta.ravel()[i]
    return out


def rotation_between(a_3: np.ndarray, b_3: np.ndarray) -> np.ndarray:
    """Smallest rotation vector turning direction a into direction b."""
    a = a_3 / (np.linalg.norm(a_3) + 1e-12)
    b = b_3 / (np.linalg.norm(b_3) + 1e-12)
    axis = np.cross(a, b)
    s = np.linalg.norm(axis)
    angle = np.arctan2(s, float(a @ b))
    if s < 1e-9:
        return np.zeros(3)
    return axis / s * angle


@dataclass
class Skeleton:
    """Bone hierarchy in depth order, with subtree membership for the Jacobians."""

    parents: np.ndarray
    """(J,) parent index per bone, -1 for the root (index 0)."""
    levels: list[np.ndarray] = field(init=False)
    """Bone indices per depth (root level first)."""

    def __post_init__(self) -> None:
        depth = np.zeros(len(self.parents), dtype=np.int64)
        for j in range(1, len(self.parents)):
            depth[j] = depth[self.parents[j]] + 1
        self.levels = [np.flatnonzero(depth == d) for d in range(depth.max() + 1)]
        self.order = np.concatenate(self.levels)
        self.level_parents = [self.parents[lvl] for lvl in self.levels[1:]]
        """Parent indices of each level's bones (levels[1:])."""

    def subtree_matrix(self, bones: np.ndarray) -> np.ndarray:
        """(A, J) 1.0 where bone j is in the subtree of bones[a] (itself included)."""
        n = len(self.parents)
        anc = np.zeros((n, n), dtype=bool)  # anc[j, i]: i is j or an ancestor of j
        for j in self.order:
            anc[j, j] = True
            if self.parents[j] >= 0:
                anc[j] |= anc[self.parents[j]]
        return anc[:, bones].T.astype(np.float64)


def forward(skel: Skeleton, heads_j3: np.ndarray, local_j33: np.ndarray, root_pos_3: np.ndarray):
    """Bone world rotations G (J, 3, 3) and posed heads o (J, 3) from local rotations
    (L_c = G_p^T G_c; for the root, L_0 = G_0) and the root head's position. Leading batch axes are
    allowed: heads (..., J, 3), local (..., J, 3, 3), root (..., 3) -> G (..., J, 3, 3), o (..., J, 3)."""
    # One (3, 4) transform [G | o] per bone, one matmul per depth level: T_c = T_p [[L_c, h_c - h_p], [0, 1]].
    par = skel.parents
    batch = local_j33.shape[:-3]
    n_j = local_j33.shape[-3]
    loc4 = np.zeros((*batch, n_j, 4, 4))
    loc4[..., :3, :3] = local_j33
    loc4[..., 1:, :3, 3] = heads_j3[..., 1:, :] - heads_j3[..., par[1:], :]
    loc4[..., 3, 3] = 1.0
    T = np.empty((*batch, n_j, 3, 4))
    T[..., 0, :, :3] = local_j33[..., 0, :, :]
    T[..., 0, :, 3] = root_pos_3
    for lvl, p in zip(skel.levels[1:], skel.level_parents, strict=True):
        T[..., lvl, :, :] = T[..., p, :, :] @ loc4[..., lvl, :, :]
    return np.ascontiguousarray(T[..., :3]), np.ascontiguousarray(T[..., 3])


@dataclass
class PointModel:
    """A PointSet bound to a skeleton: evaluates points and their Jacobians."""

    points: PointSet
    skel: Skeleton
    n_bones: int

    def __post_init__(self) -> None:
        n_k = len(self.points.names)
        n_p = len(self.points.pair_point)
        rows = self.points.pair_point * self.n_bones + self.points.pair_bone
        self._agg = sp.csr_matrix((np.ones(n_p), (rows, np.arange(n_p))), shape=(n_k * self.n_bones, n_p))
        self._pair_to_point = sp.csr_matrix(
            (np.ones(n_p), (self.points.pair_point, np.arange(n_p))), shape=(n_k, n_p)
        )
        w_kj = (self._agg @ self.points.pair_w).reshape(n_k, self.n_bones)
        self.w_kj = w_kj

    def rest_offsets(self, coeffs_n: np.ndarray, heads_j3: np.ndarray) -> np.ndarray:
        """(P, 3) pair rest positions relative to their bone's head, weighted: a - w h_b."""
        a = self.points.rest_positions(coeffs_n)
        return a - self.points.pair_w[:, None] * heads_j3[self.points.pair_bone]

    def evaluate(self, offs_p3: np.ndarray, G_j33: np.ndarray, o_j3: np.ndarray):
        """Posed points (K, 3) and the per-pair contributions (P, 3)."""
        b = self.points.pair_bone
        contrib = np.einsum("pab,pb->pa", G_j33[b], offs_p3) + self.points.pair_w[:, None] * o_j3[b]
        return self._pair_to_point @ contrib, contrib

    def rotation_jacobian(self, contrib_p3: np.ndarray, o_j3: np.ndarray, subtree_aj: np.ndarray,
                          active: np.ndarray) -> np.ndarray:
        """(K, 3, A, 3): d x_k / d delta_a for a small world-axis rotation of bone active[a]'s subtree."""
        n_k = len(self.points.names)
        C_jk3 = (self._agg @ contrib_p3).reshape(n_k, self.n_bones, 3).transpose(1, 0, 2).reshape(self.n_bones, -1)
        S_ka3 = (subtree_aj @ C_jk3).reshape(len(active), n_k, 3).transpose(1, 0, 2)
        W_ka = self.w_kj @ subtree_aj.T
        v_ka3 = S_ka3 - W_ka[..., None] * o_j3[active][None]
        return -skew(v_ka3).transpose(0, 2, 1, 3)  # (K, 3, A, 3)

    def shape_jacobian(self, dcoeffs_ns: np.ndarray, dheads_nj3: np.ndarray, G_j33: np.ndarray) -> np.ndarray:
        """(K, 3, S): derivative of the points along S blendshape-coefficient directions, pose fixed."""
        pts = self.points
        da_sp3 = np.einsum("ns,npc->spc", dcoeffs_ns, pts.pair_da_np3)
        dh_sj3 = np.einsum("ns,njc->sjc", dcoeffs_ns, dheads_nj3)
        # Heads: do_0 = 0 (the root position is a parameter), do_c = do_p + G_p (dh_c - dh_p)
        do = np.zeros_like(dh_sj3)
        par = self.skel.parents
        for lvl in self.skel.levels[1:]:
            p = par[lvl]
            do[:, lvl] = do[:, p] + np.einsum("nab,snb->sna", G_j33[p], dh_sj3[:, lvl] - dh_sj3[:, p])
        b = pts.pair_bone
        d_off = da_sp3 - pts.pair_w[None, :, None] * dh_sj3[:, b]
        dcontrib = np.einsum("pab,spb->spa", G_j33[b], d_off) + pts.pair_w[None, :, None] * do[:, b]
        dx = np.stack([self._pair_to_point @ dcontrib[s] for s in range(dcontrib.shape[0])], axis=-1)
        return dx  # (K, 3, S)


# ----- the same, batched over people (leading axis B) -----


def evaluate_b(pm: PointModel, offs_bp3: np.ndarray, G_bj33: np.ndarray, o_bj3: np.ndarray):
    """Posed points (B, K, 3) and pair contributions (B, P, 3)."""
    b = pm.points.pair_bone
    contrib = (G_bj33[:, b] @ offs_bp3[..., None])[..., 0] + pm.points.pair_w[:, None] * o_bj3[:, b]
    n_b, n_p = contrib.shape[:2]
    x = (pm._pair_to_point @ contrib.transpose(1, 0, 2).reshape(n_p, -1)).reshape(-1, n_b, 3).transpose(1, 0, 2)
    return x, contrib


def rest_offsets_b(pm: PointModel, coeffs_bn: np.ndarray, heads_bj3: np.ndarray) -> np.ndarray:
    pts = pm.points
    n_c, n_p = pts.pair_da_np3.shape[:2]
    a = pts.pair_a0_p3 + (coeffs_bn @ pts.pair_da_np3.reshape(n_c, -1)).reshape(-1, n_p, 3)
    return a - pts.pair_w[:, None] * heads_bj3[:, pts.pair_bone]
