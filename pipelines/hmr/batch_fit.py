"""Several people of one photo fitted together: the fit of pipelines.hmr.fit, batched over people.

The same residuals, Jacobians and Levenberg-Marquardt steps as BodyFitter.fit, with the people stacked on a
leading axis so that each numpy call serves everyone (at this size the cost is per call, not per number).
Every person is padded to the union of the keypoint names (confidence 0 and no 3D where a person has no such
keypoint), the bones to the union of the active bones (the columns of a bone a person does not fit are
masked, so its rotation stays put) and the bone-direction pairs to their union (weight 0 where missing).
Each person keeps its own damping, its own accept/reject and stops on its own, in lockstep with the others:
the result is each person's one-by-one fit up to rounding. Options the batch does not cover (free bone
lengths) go through the one-by-one fit (BodyFitter.fit_many decides). The residual terms, the subtree update
and the analytic init are one implementation each, batched (pipelines.hmr.fit's term_*_b, rotate_subtrees_b,
pipelines.hmr.init.analytic_init_b), which the one-person fit calls with a batch of one; what stays here is
the batch's own bookkeeping (padding, packed masks, masked columns, the lockstep LM).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from pipelines.body.anny_model import FIT_PHENOTYPES, RestState
from pipelines.hmr.fit import (
    FitOptions,
    FitReport,
    FitState,
    FitTargets,
    _Problem,
    rotate_subtrees_b,
    term_2d_b,
    term_mask_b,
    term_pose_prior_b,
    terms_3d_b,
    terms_shape_focal_b,
)
from pipelines.hmr.init import analytic_init_b
from pipelines.hmr.kinematics import PointModel, Skeleton, evaluate_b, forward, rest_offsets_b
from pipelines.hmr.prior import PriorTerms, prior_residuals_b


def pad_targets(targets: FitTargets, names_u: list[str]) -> FitTargets:
    """The same targets over the names `names_u` (a superset): missing keypoints unused (confidence 0, no 3D)."""
    n_u = len(names_u)
    pos = [names_u.index(n) for n in targets.names]
    xy = np.zeros((n_u, 2))
    conf = np.zeros(n_u)
    xy[pos] = targets.xy_k2
    conf[pos] = targets.conf_k
    hip3d = None
    if targets.hip3d_k3 is not None:
        hip3d = np.full((n_u, 3), np.nan)
        hip3d[pos] = targets.hip3d_k3
    return FitTargets(list(names_u), xy, conf, hip3d, dict(targets.prompts), targets.mask_hw)


# ----- batched point models (people on the leading axis) -----


def subtree_sums(pm: PointModel, subtree_aj: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """(K*A, P) sparse sum of point k's pair contributions over the subtree of active bone a, and the
    same for the weights (K, A): the S and W of PointModel.rotation_jacobian in one sparse product."""
    pts = pm.points
    n_k, n_a = len(pts.names), len(subtree_aj)
    a_idx, p_idx = np.nonzero(subtree_aj[:, pts.pair_bone])
    rows = pts.pair_point[p_idx] * n_a + a_idx
    S = sp.csr_matrix((np.ones(len(rows)), (rows, p_idx)), shape=(n_k * n_a, len(pts.pair_bone)))
    return S, pm.w_kj @ subtree_aj.T


def rotation_jacobian_b(S_kap: sp.csr_matrix, W_ka: np.ndarray, contrib_bp3: np.ndarray, o_bj3: np.ndarray,
                        active: np.ndarray) -> np.ndarray:  # fmt: skip
    """(B, K, 3, 3A): d x_k / d delta_a (PointModel.rotation_jacobian per person): -[S_ka - W_ka o_a]_x."""
    n_b, n_p = contrib_bp3.shape[:2]
    n_k, n_a = W_ka.shape
    S = (S_kap @ contrib_bp3.transpose(1, 0, 2).reshape(n_p, -1)).reshape(n_k, n_a, n_b, 3).transpose(2, 0, 1, 3)
    v = S - W_ka[None, :, :, None] * o_bj3[:, active][:, None]
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    J = np.zeros((n_b, n_k, 3, n_a, 3))
    J[:, :, 0, :, 1], J[:, :, 0, :, 2] = z, -y
    J[:, :, 1, :, 0], J[:, :, 1, :, 2] = -z, x
    J[:, :, 2, :, 0], J[:, :, 2, :, 1] = y, -x
    return J.reshape(n_b, n_k, 3, 3 * n_a)


def shape_jacobian_b(pm: PointModel, skel: Skeleton, dc_bns: np.ndarray, dheads_nj3: np.ndarray,
                     G_bj33: np.ndarray) -> np.ndarray:  # fmt: skip
    """(B, K, 3, S): PointModel.shape_jacobian per person."""
    pts = pm.points
    n_b, n_c, n_s = dc_bns.shape
    n_p, n_j = pts.pair_da_np3.shape[1], dheads_nj3.shape[1]
    dcT = dc_bns.transpose(0, 2, 1)
    da = (dcT @ pts.pair_da_np3.reshape(n_c, -1)).reshape(n_b, n_s, n_p, 3)
    dh = (dcT @ dheads_nj3.reshape(n_c, -1)).reshape(n_b, n_s, n_j, 3)
    do = np.zeros_like(dh)
    for lvl, p in zip(skel.levels[1:], skel.level_parents, strict=True):
        do[:, :, lvl] = do[:, :, p] + (G_bj33[:, None, p] @ (dh[:, :, lvl] - dh[:, :, p])[..., None])[..., 0]
    b = pts.pair_bone
    w = pts.pair_w[:, None]
    d_off = da - w * dh[:, :, b]
    dcontrib = (G_bj33[:, None, b] @ d_off[..., None])[..., 0] + w * do[:, :, b]  # (B, S, P, 3)
    dx = pm._pair_to_point @ dcontrib.transpose(2, 0, 1, 3).reshape(n_p, -1)  # (K, B*S*3)
    return dx.reshape(-1, n_b, n_s, 3).transpose(1, 0, 3, 2)


# ----- the batched problem -----


@dataclass
class BatchState:
    """The fit's variables of B people (FitState, stacked)."""

    local_bj33: np.ndarray
    root_b3: np.ndarray
    pheno_bp: np.ndarray
    focal_b: np.ndarray
    coeffs_bn: np.ndarray
    """The rest state's blendshape coefficients (follows pheno_bp)."""
    heads_bj3: np.ndarray
    """The rest state's bone heads."""
    offs_bp3: np.ndarray
    """The keypoints' pair rest offsets (rest_offsets_b; follow the rest state)."""
    soffs_bp3: np.ndarray | None
    """The same for the surface samples (None without a mask term)."""

    def take(self, sel: np.ndarray) -> BatchState:
        return BatchState(*(None if a is None else a[sel] for a in self.__dict__.values()))

    def put(self, sel: np.ndarray, other: BatchState) -> None:
        for k, v in other.__dict__.items():
            if v is not None:
                getattr(self, k)[sel] = v


class BatchProblem:
    """_Problem's residuals for B people at once (one camera, the same options; no free bone lengths)."""

    def __init__(self, problems: list[_Problem], pm: PointModel, surface: PointModel | None, skel: Skeleton,
                 active: np.ndarray, is_active_bj: np.ndarray, priors: list[PriorTerms], prior_rows_ba: np.ndarray,
                 opts: FitOptions, body) -> None:  # noqa: ANN001 - AnnyBody  # fmt: skip
        self.pm, self.surface, self.skel, self.opts, self.body = pm, surface, skel, opts, body
        self.active, self.is_active_bj = active, is_active_bj
        self.subtree_aj = skel.subtree_matrix(active)
        self.sums = {id(m): subtree_sums(m, self.subtree_aj) for m in (pm, surface) if m is not None}
        self.cxy = problems[0].cxy
        self.hip_idx = problems[0].hip_idx
        n_b, n_k = len(problems), len(pm.points.names)
        self.xy_obs = np.stack([p.xy_obs for p in problems])
        self.sqrt_w2d = np.stack([p.sqrt_w2d for p in problems])
        self.sig2d = np.stack([p.sig2d for p in problems])
        self.use3d = np.array([p.use3d for p in problems], dtype=bool)
        self.h3 = np.zeros((n_b, n_k, 3))
        self.w3 = np.zeros((n_b, n_k))
        for i, p in enumerate(problems):
            if p.use3d:
                self.h3[i], self.w3[i] = p.h3, p.w3
        pairs = sorted({(int(a), int(b)) for p in problems if p.use3d for a, b in zip(p.bone_a, p.bone_b, strict=True)})
        self.bone_a = np.array([a for a, _ in pairs], dtype=np.int64)
        self.bone_b = np.array([b for _, b in pairs], dtype=np.int64)
        self.w_bone = np.zeros((n_b, len(pairs)))
        for i, p in enumerate(problems):
            if p.use3d:
                for a, b, w in zip(p.bone_a, p.bone_b, p.w_bone, strict=True):
                    self.w_bone[i, pairs.index((int(a), int(b)))] = w
        # Priors: the union's bones, each person's own axes; rows of bones a person does not fit are masked.
        self.prior_bones = priors[0].bones
        self.prior_axis_ba3 = np.stack([pr.axis_a3 for pr in priors])
        self.prior_sig_axis, self.prior_sig_perp, self.prior_hinge = (priors[0].sigma_axis_a,
                                                                      priors[0].sigma_perp_a, priors[0].hinge_a)
        self.prior_rows_ba = prior_rows_ba.astype(np.float64)
        pos = {int(b): i for i, b in enumerate(active)}
        self.prior_cols = np.array([pos[int(b)] for b in self.prior_bones], dtype=np.int64)
        # Masks, packed into flat images with per-person offsets (a person without a mask: weight 0).
        self.has_mask = np.array([p.dt is not None for p in problems], dtype=np.float64)
        if surface is not None and self.has_mask.any():
            imgs = [(p.dt, p.dt_gx, p.dt_gy, p.dt_origin) if p.dt is not None else
                    (np.zeros((2, 2), np.float32),) * 3 + (np.zeros(2),) for p in problems]  # fmt: skip
            sizes = np.array([im[0].shape for im in imgs])
            self.dt_hw = sizes
            self.dt_off = np.concatenate([[0], np.cumsum(sizes[:, 0] * sizes[:, 1])[:-1]]).astype(np.int64)
            self.dt_flat = [np.concatenate([im[c].ravel() for im in imgs]).astype(np.float64) for c in range(3)]
            self.dt_origin = np.stack([im[3] for im in imgs])
        else:
            self.has_mask[:] = 0.0
        _, self.dheads = body.heads_basis
        self.shape_idx = [body.phenotype_labels.index(n) for n in FIT_PHENOTYPES]

    def take(self, sel: np.ndarray) -> BatchProblem:
        """The same problem for the people `sel` only."""
        sub = object.__new__(BatchProblem)
        sub.__dict__.update(self.__dict__)
        for k in ("is_active_bj", "xy_obs", "sqrt_w2d", "sig2d", "use3d", "h3", "w3", "w_bone", "prior_axis_ba3",
                  "prior_rows_ba", "has_mask"):  # fmt: skip
            setattr(sub, k, getattr(self, k)[sel])
        if self.has_mask.any():
            sub.dt_hw, sub.dt_off, sub.dt_origin = self.dt_hw[sel], self.dt_off[sel], self.dt_origin[sel]
        return sub

    def _bilinear(self, c: int, xy_bm2: np.ndarray) -> np.ndarray:
        img = self.dt_flat[c]
        h, w = self.dt_hw[:, 0, None], self.dt_hw[:, 1, None]
        x = np.clip(xy_bm2[..., 0] - 0.5, 0, w - 1.001)
        y = np.clip(xy_bm2[..., 1] - 0.5, 0, h - 1.001)
        x0, y0 = x.astype(int), y.astype(int)
        fx, fy = x - x0, y - y0
        i = self.dt_off[:, None] + y0 * w + x0
        return (img[i] * (1 - fx) * (1 - fy) + img[i + 1] * fx * (1 - fy)
                + img[i + w] * (1 - fx) * fy + img[i + w + 1] * fx * fy)  # fmt: skip

    def _project(self, x_bk3: np.ndarray, f_b: np.ndarray):
        z = np.clip(x_bk3[..., 2], 1e-3, None)
        f = f_b[:, None]
        uv = f[..., None] * x_bk3[..., :2] / z[..., None] + self.cxy
        d = np.zeros((*z.shape, 2, 3))
        d[..., 0, 0] = f / z
        d[..., 1, 1] = f / z
        d[..., :, 2] = -f[..., None] * x_bk3[..., :2] / z[..., None] ** 2
        return uv, d

    def _dx(self, pm: PointModel, contrib, o, st: BatchState, G, dc, free_shape: bool) -> np.ndarray:  # noqa: ANN001
        Jr = rotation_jacobian_b(*self.sums[id(pm)], contrib, o, self.active)
        n_b, n_k = Jr.shape[:2]
        parts = [Jr, np.broadcast_to(np.eye(3), (n_b, n_k, 3, 3))]
        if free_shape:
            parts.append(shape_jacobian_b(pm, self.skel, dc, self.dheads, G))
        return np.concatenate(parts, axis=3)

    def build(self, st: BatchState, free_shape: bool, free_focal: bool, want_jac: bool):
        """Residuals (B, R) and, if asked, Jacobians (B, R, C) with _Problem.build's columns (masked per person)."""
        r, J, prior, aux = self._build(st, free_shape, free_focal, want_jac, split_prior=False)
        return r, J, aux

    def normal_equations(self, st: BatchState, free_shape: bool, free_focal: bool):
        """Residuals r (B, R), J^T J (B, C, C) and J^T r (B, C) of build's J (masked columns 0), and build's
        aux. The pose prior's rows each turn one bone (3 columns): their share of J^T J is a 3x3 block per
        prior bone, added as such instead of as 5 dense rows of C columns per bone in the product."""
        r, J, (rp_bp5, jp_bp53, cols_p, k0), aux = self._build(st, free_shape, free_focal, True, split_prior=True)
        r_dense = np.concatenate([r[:, :k0], r[:, k0 + rp_bp5[0].size :]], axis=1)  # J's rows
        JtJ = J.transpose(0, 2, 1) @ J
        g = (J.transpose(0, 2, 1) @ r_dense[..., None])[..., 0]
        if len(cols_p):
            idx = 3 * cols_p[:, None] + np.arange(3)  # (P, 3) the columns each prior bone turns
            blocks = np.einsum("bpki,bpkj->bpij", jp_bp53, jp_bp53)
            g_p = np.einsum("bpki,bpk->bpi", jp_bp53, rp_bp5)
            if len(np.unique(cols_p)) == len(cols_p):
                JtJ[:, idx[:, :, None], idx[:, None, :]] += blocks
                g[:, idx] += g_p
            else:
                np.add.at(JtJ, (slice(None), idx[:, :, None], idx[:, None, :]), blocks)
                np.add.at(g, (slice(None), idx), g_p)
        return r, JtJ, g, aux

    def _build(self, st: BatchState, free_shape: bool, free_focal: bool, want_jac: bool, split_prior: bool):
        """build's residuals and Jacobian; with `split_prior` the Jacobian lacks the pose prior's rows, given
        apart as (its residuals (B, P, 5), their Jacobian (B, P, 5, 3) with the columns masked, the active
        bone of each prior bone (P,), the index of its first residual in r)."""
        o_opts = self.opts
        G, o = forward(self.skel, st.heads_bj3, st.local_bj33, st.root_b3)
        x, contrib = evaluate_b(self.pm, st.offs_bp3, G, o)
        f = st.focal_b
        uv, duv_dx = self._project(x, f)
        n_a = len(self.active)
        n_s = len(FIT_PHENOTYPES) if free_shape else 0
        n_cols = 3 * n_a + 3 + n_s + (1 if free_focal else 0)
        res, jacs = [], []
        dx = dc = None
        if want_jac:
            if free_shape:
                dc = self.body.coeffs_jacobian_batch(st.pheno_bp, indices=self.shape_idx)
            dx = self._dx(self.pm, contrib, o, st, G, dc, free_shape)

        # 2D keypoints and prompts; the metric 3D landmarks and bone directions (people without 3D: weight 0)
        terms = [term_2d_b(uv, duv_dx, dx, self.xy_obs, self.sig2d, self.sqrt_w2d, self.cxy, o_opts, free_focal)]
        terms += terms_3d_b(x, dx, self.hip_idx, self.h3, self.w3, self.use3d, self.bone_a, self.bone_b, self.w_bone,
                            o_opts, free_focal)  # fmt: skip
        for r_t, j_t in terms:
            res.append(r_t)
            if want_jac:
                jacs.append(j_t)

        # Silhouette: surface samples pulled inside the mask
        if self.surface is not None and self.has_mask.any():
            sf = self.surface
            xs, cs = evaluate_b(sf, st.soffs_bp3, G, o)
            uvs, duvs = self._project(xs, f)
            uvc = uvs - self.dt_origin[:, None]
            scale = self.has_mask / o_opts.sigma_mask_px / np.sqrt(xs.shape[1] / 50.0)
            g = dxs = None
            if want_jac:
                g = np.stack([self._bilinear(1, uvc), self._bilinear(2, uvc)], axis=-1)
                dxs = self._dx(sf, cs, o, st, G, dc, free_shape)
            rs, js = term_mask_b(self._bilinear(0, uvc), g, uvs, duvs, dxs, scale, self.cxy, free_focal)
            res.append(rs)
            if want_jac:
                jacs.append(js)

        # Pose prior (the union's bones; a person's rows of bones it does not fit are 0)
        bones = self.prior_bones
        rows = self.prior_rows_ba[..., None]
        rp, Jp = prior_residuals_b(st.local_bj33, G, self.skel.parents, bones, self.prior_axis_ba3,
                                   self.prior_sig_axis, self.prior_sig_perp, self.prior_hinge)  # fmt: skip
        jp = Jp * rows[..., None] if want_jac else None
        rp = rp * rows
        prior = None
        if split_prior:
            n_b = len(rp)
            cm = self.col_mask(free_shape, free_focal)
            jp = jp * cm[:, : 3 * n_a].reshape(n_b, n_a, 3)[:, self.prior_cols, None, :]
            prior = (rp.reshape(n_b, len(bones), -1), jp, self.prior_cols, sum(r_t.shape[1] for r_t in res))
            res.append(rp.reshape(n_b, -1))
            terms = []
        else:
            terms = [term_pose_prior_b(rp, jp, self.prior_cols, n_a, n_cols)]
        terms += terms_shape_focal_b(st.pheno_bp[:, self.shape_idx], f, 3 * n_a + 3, n_cols, o_opts, free_shape,
                                     free_focal, want_jac)  # fmt: skip
        for r_t, j_t in terms:
            res.append(r_t)
            if want_jac:
                jacs.append(j_t)
        r = np.concatenate(res, axis=1)
        J = None
        if want_jac:
            J = np.concatenate(jacs, axis=1)
            J *= self.col_mask(free_shape, free_focal)[:, None, :]
        return r, J, prior, (x, uv, G, o)

    def col_mask(self, free_shape: bool, free_focal: bool) -> np.ndarray:
        """(B, C) 1 for the columns each person fits (its own active bones), 0 for the union's others."""
        n_b = len(self.is_active_bj)
        rot = np.repeat(self.is_active_bj[:, self.active], 3, axis=1).astype(np.float64)
        n_rest = 3 + (len(FIT_PHENOTYPES) if free_shape else 0) + (1 if free_focal else 0)
        return np.concatenate([rot, np.ones((n_b, n_rest))], axis=1)

    def set_offsets(self, st: BatchState) -> None:
        """Recompute the pair rest offsets of `st` after its rest state changed."""
        st.offs_bp3 = rest_offsets_b(self.pm, st.coeffs_bn, st.heads_bj3)
        if self.surface is not None:
            st.soffs_bp3 = rest_offsets_b(self.surface, st.coeffs_bn, st.heads_bj3)

    def apply_update(self, st: BatchState, G: np.ndarray, step_bc: np.ndarray, free_shape: bool,
                     free_focal: bool) -> BatchState:  # fmt: skip
        n_a = len(self.active)
        local = rotate_subtrees_b(self.skel, st.local_bj33, G, self.active, self.is_active_bj,
                                  step_bc[:, : 3 * n_a].reshape(-1, n_a, 3))  # fmt: skip
        new = BatchState(local, st.root_b3 + step_bc[:, 3 * n_a : 3 * n_a + 3], st.pheno_bp.copy(), st.focal_b.copy(),
                         st.coeffs_bn, st.heads_bj3, st.offs_bp3, st.soffs_bp3)  # fmt: skip
        k = 3 * n_a + 3
        if free_shape:
            idx = self.shape_idx
            new.pheno_bp[:, idx] = np.clip(st.pheno_bp[:, idx] + step_bc[:, k : k + len(idx)], 0.0, 1.0)
            k += len(idx)
            new.coeffs_bn = self.body.coeffs_batch(new.pheno_bp)
            heads0, dheads = self.body.heads_basis
            new.heads_bj3 = heads0 + (new.coeffs_bn @ dheads.reshape(len(dheads), -1)).reshape(len(st.root_b3), -1, 3)
            self.set_offsets(new)
        if free_focal:
            new.focal_b = st.focal_b * np.exp(np.clip(step_bc[:, k], -0.5, 0.5))
        return new


MAX_TRIES = 5
"""Steps tried per LM iteration and person before its phase ends (BodyFitter._lm's 5)."""


def _try_steps(sub: BatchProblem, cur: BatchState, normal: tuple, pos: np.ndarray, lam_p: np.ndarray,
               free_shape: bool, free_focal: bool) -> tuple[np.ndarray, BatchState]:  # fmt: skip
    """LM steps of the people at positions `pos` of the batch (repeats allowed) with dampings lam_p, from
    `normal` = (J^T J, J^T r, diag(J^T J), masked-column identity, G, cost): whether each lowers that person's
    cost, and the candidate states."""
    JtJ, g, diag, off, G, cost = normal
    A = JtJ[pos] + (lam_p[:, None] * diag[pos] + off[pos])[:, :, None] * np.eye(JtJ.shape[1])
    step = np.linalg.solve(A, -g[pos][..., None])[..., 0]
    sub_p = sub.take(pos)
    cand = sub_p.apply_update(cur.take(pos), G[pos], step, free_shape, free_focal)
    r_new, _, _ = sub_p.build(cand, free_shape, free_focal, False)
    return np.einsum("br,br->b", r_new, r_new) < cost[pos], cand


def lm_batch(problem: BatchProblem, st: BatchState, n_iter: int, free_shape: bool, free_focal: bool
             ) -> tuple[BatchState, np.ndarray, np.ndarray]:  # fmt: skip
    """BodyFitter._lm for every person in lockstep (each its own damping, accept/reject and stop); returns
    the states, the iterations each person ran and the variance of log(focal) (NaN without a free focal)."""
    n_b = len(st.root_b3)
    lam = np.full(n_b, 1e-3)
    running = np.ones(n_b, dtype=bool)
    n_done = np.zeros(n_b, dtype=np.int64)
    focal_log_var = np.full(n_b, np.nan)
    for _ in range(n_iter):
        sel = np.flatnonzero(running)
        if len(sel) == 0:
            break
        n_done[sel] += 1
        sub, cur = problem.take(sel), st.take(sel)
        r, JtJ, g, (_, _, G, _) = sub.normal_equations(cur, free_shape, free_focal)
        cost = np.einsum("br,br->b", r, r)
        off = 1.0 - sub.col_mask(free_shape, free_focal)  # masked columns: identity, step 0
        diag = np.einsum("bii->bi", JtJ) + 1e-9
        if free_focal:
            A_bcc = JtJ + (1e-9 * diag + off)[:, :, None] * np.eye(JtJ.shape[1])
            e_c1 = np.zeros((JtJ.shape[1], 1))
            e_c1[-1] = 1.0  # the last column of the inverse (the focal's): one solve, not a full inverse
            try:
                focal_log_var[sel] = np.linalg.solve(A_bcc, e_c1)[:, -1, 0]
            except np.linalg.LinAlgError:  # one singular matrix fails the stack: each person on its own
                for i, A_cc in zip(sel, A_bcc, strict=True):
                    try:
                        focal_log_var[i] = np.linalg.solve(A_cc, e_c1)[-1, 0]
                    except np.linalg.LinAlgError:
                        focal_log_var[i] = np.nan
        normal = (JtJ, g, diag, off, G, cost)
        # Up to MAX_TRIES steps a person, the damping x6 after each rejected one. The first try for everyone;
        # the people it fails are given all their remaining tries at once (one call for them all: at this size
        # a call costs the same for 1 or 10 people), and each takes its first improving one, as in turn.
        pending = np.arange(len(sel))  # positions in sel
        ok, cand = _try_steps(sub, cur, normal, pending, lam[sel], free_shape, free_focal)
        acc = pending[ok]
        if len(acc):
            st.put(sel[acc], cand.take(np.flatnonzero(ok)))
            lam[sel[acc]] = np.maximum(lam[sel[acc]] / 3, 1e-7)
        pending = pending[~ok]
        if len(pending):
            lam_tk = np.empty((MAX_TRIES - 1, len(pending)))
            lam_k = lam[sel[pending]]
            for k in range(MAX_TRIES - 1):
                lam_k = lam_k * 6
                lam_tk[k] = lam_k
            pos = np.tile(pending, MAX_TRIES - 1)  # try-major: try k of pending person i at k * n + i
            ok_all, cand_all = _try_steps(sub, cur, normal, pos, lam_tk.ravel(), free_shape, free_focal)
            ok_tk = ok_all.reshape(MAX_TRIES - 1, len(pending))
            found = ok_tk.any(axis=0)
            first = ok_tk.argmax(axis=0)
            if found.any():
                i = np.flatnonzero(found)
                st.put(sel[pending[i]], cand_all.take(first[i] * len(pending) + i))
                lam[sel[pending[i]]] = np.maximum(lam_tk[first[i], i] / 3, 1e-7)
            lam[sel[pending[~found]]] = lam_k[~found] * 6
            pending = pending[~found]
        running[sel[pending]] = False  # no step improved: this person's phase ends
    return st, n_done, focal_log_var


def fit_batch(fitter, targets: list[FitTargets], K_33: np.ndarray, opts: FitOptions,  # noqa: ANN001 - BodyFitter
              warms: list[FitState | None]) -> list[FitReport]:  # fmt: skip
    """Fit several people of one camera together (the one-by-one BodyFitter._fit, batched)."""
    body, skel = fitter.body, fitter.skel
    names_u: list[str] = []
    for tg in targets:
        names_u += [n for n in tg.names if n not in names_u]
    pm = fitter.point_model(tuple(names_u))
    surface = fitter.surface_model(opts.mask_samples) if any(t.mask_hw is not None for t in targets) else None
    n_j = len(body.bone_labels)
    actives, prior_sets = [], []
    for tg in targets:
        act, pri = fitter._active([n for n, c in zip(tg.names, tg.conf_k, strict=True) if c > 0.2])
        actives.append(act)
        prior_sets.append(pri)
    union_bones = set().union(*(set(a.tolist()) for a in actives))
    active = np.array([b for b in skel.order if b in union_bones])
    is_active = np.zeros((len(targets), n_j), dtype=bool)
    for i, a in enumerate(actives):
        is_active[i, a] = True
    union_priors: dict = {}
    for pri in prior_sets:
        union_priors.update({k: v for k, v in pri.items() if k not in union_priors})
    prior_rows = np.array([[name in pri for name in union_priors] for pri in prior_sets])

    phenos, focals, priors, problems, padded = [], [], [], [], []
    for tg, warm in zip(targets, warms, strict=True):
        focals.append(float(K_33[0, 0]) if warm is None or not opts.fit_focal else warm.focal_px)
        pheno = warm.pheno_p.copy() if warm is not None else body.default_pheno()
        phenos.append(pheno)
        rest = body.rest_heads(pheno)
        priors.append(PriorTerms.build(union_priors, body.bone_labels, rest.heads_j3, skel.parents,
                                       fitter.chain_children))  # fmt: skip
        padded.append(pad_targets(tg, names_u))
        problems.append(_Problem(body, skel, pm, padded[-1], K_33, opts, surface))
    pheno_bp = np.array(phenos)
    coeffs = np.stack([body.coeffs(p) for p in pheno_bp])
    heads0, dheads = body.heads_basis
    heads = heads0 + np.einsum("bn,njc->bjc", coeffs, dheads)
    local, root = np.zeros((len(targets), len(body.bone_labels), 3, 3)), np.zeros((len(targets), 3))
    cold = [i for i, w in enumerate(warms) if w is None]
    for i, w in enumerate(warms):
        if w is not None:
            local[i], root[i] = w.local_j33, w.root_pos_3
    if cold:
        local[cold], root[cold] = analytic_init_b(skel, body.bone_labels, pm, coeffs[cold], heads[cold],
                                                  [padded[i] for i in cold], np.array(focals)[cold], K_33[:2, 2])
    st = BatchState(local, root, pheno_bp, np.array(focals), coeffs, heads, np.zeros(0), None)
    problem = BatchProblem(problems, pm, surface, skel, active, is_active, priors, prior_rows, opts, body)
    problem.set_offsets(st)

    n_done = np.zeros(len(targets), dtype=np.int64)
    focal_log_var = np.full(len(targets), np.nan)
    phases = [(False, opts.pose_iters)]
    if opts.fit_shape or opts.fit_focal:
        phases.append((True, opts.shape_iters))
    for late, n_phase in phases:
        free_shape, free_focal = opts.fit_shape and late, opts.fit_focal and late
        st, n, var = lm_batch(problem, st, n_phase, free_shape, free_focal)
        n_done += n
        if free_focal:
            focal_log_var = var
    r, _, (x, uv, G, o) = problem.build(st, False, False, False)
    reports = []
    for i, (tg, prob) in enumerate(zip(targets, problems, strict=True)):
        keep = [names_u.index(n) for n in tg.names]
        used = prob.sqrt_w2d[keep] > 0
        uv_k2 = uv[i, keep]
        err = np.where(used, np.linalg.norm(uv_k2 - prob.xy_obs[keep], axis=1), np.nan)
        state = FitState(st.local_bj33[i].copy(), st.root_b3[i].copy(), st.pheno_bp[i].copy(), float(st.focal_b[i]))
        rest = RestState(st.pheno_bp[i].copy(), st.coeffs_bn[i].copy(), st.heads_bj3[i].copy(), np.empty((0, 3, 3)))
        var = float(focal_log_var[i]) if np.isfinite(focal_log_var[i]) else None
        reports.append(FitReport(state, rest, G[i], o[i], uv_k2, err, int(n_done[i]), float(r[i] @ r[i]), var))
    return reports
