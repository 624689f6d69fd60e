"""Refine the cameras from the people: bundle adjustment on the keypoints over time.

Unknowns: each camera's pose (a rotation vector applied on the world side, R = R0 exp([w]x), and its
centre C) and the 3D points (one per person, frame and joint). Residuals: the confidence-weighted
reprojection error in undistorted pixels, under a robust loss (soft L1, scale `loss_px`), solved with
the analytic Jacobian by `schur_lm` (Levenberg-Marquardt, the points eliminated per step); with the
intrinsics free (the self-calibration) by scipy.optimize.least_squares on the sparsity pattern.
Distortion is held.

The gauge (a world rotation, translation and scale that move every camera and point together) is
fixed by 7 stiff residuals: the rotation vectors sum to zero, the centroid of the camera centres is
kept, and so is their mean distance to it. The metric scale, the world's position and its axes are
thus those of the given calibration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.sparse import csr_matrix, lil_matrix
from scipy.spatial.transform import Rotation

from pipelines.hmr.solver import _blas_controller
from pipelines.multiview.calibration import CalibratedCamera, make_camera
from pipelines.multiview.triangulate import inv_sym33


@dataclass
class RefineReport:
    """What the bundle adjustment changed."""

    cams: list[CalibratedCamera]
    """The refined cameras (same order, intrinsics unchanged)."""
    rotation_change_deg_v: np.ndarray
    """Per camera: angle of R_new R_old^T, degrees."""
    translation_change_m_v: np.ndarray
    """Per camera: distance its centre moved, metres."""
    median_px_before: float
    """Median reprojection error of the inlier observations before, pixels."""
    median_px_after: float
    """The same after."""
    n_observations: int
    """Observations used."""
    held_v: np.ndarray | None = None
    """Per camera: True where it was held as given because its observations cannot pin its pose (too few,
    too few distinct points, or all on nearly one point of its image: see `bundle_adjust`)."""
    warnings: list[str] = dataclasses.field(default_factory=list)
    """One line per camera held for a degenerate view of the points (for the run's warnings)."""


def _skew(v_n3: np.ndarray) -> np.ndarray:
    """Cross-product matrices (N, 3, 3): _skew(a) @ b = a x b."""
    out = np.zeros((len(v_n3), 3, 3))
    out[:, 0, 1], out[:, 0, 2], out[:, 1, 2] = -v_n3[:, 2], v_n3[:, 1], -v_n3[:, 0]
    out[:, 1, 0], out[:, 2, 0], out[:, 2, 1] = v_n3[:, 2], -v_n3[:, 1], v_n3[:, 0]
    return out


def _right_jacobian(w_3: np.ndarray) -> np.ndarray:
    """SO(3)'s right Jacobian at rotation vector w: exp(w + e) ~ exp(w) exp(Jr(w) e)."""
    theta = float(np.linalg.norm(w_3))
    W = _skew(w_3[None])[0]
    if theta < 1e-8:
        return np.eye(3) - 0.5 * W
    return np.eye(3) - (1 - np.cos(theta)) / theta**2 * W + (theta - np.sin(theta)) / theta**3 * W @ W


def _with_pose(cam: CalibratedCamera, R_33: np.ndarray, C_3: np.ndarray, K_33: np.ndarray) -> CalibratedCamera:
    T_44 = np.eye(4)
    T_44[:3, :3] = R_33
    T_44[:3, 3] = -R_33 @ C_3
    new = make_camera(cam.name, K_33, cam.dist_k, T_44, cam.camera.width, cam.camera.height)
    return dataclasses.replace(new, size_known=cam.size_known)


def bundle_adjust(xyz_n3: np.ndarray, obs_view_m: np.ndarray, obs_point_m: np.ndarray, obs_xy_m2: np.ndarray,
                  obs_w_m: np.ndarray, cams: list[CalibratedCamera], *, min_obs: int = 30, min_points: int = 6,
                  min_spread_px: float = 5.0, **kwargs: float | bool | str) -> RefineReport:  # fmt: skip
    """Refine the cameras that the observations can pin; see `_bundle_adjust` for the rest.

    A camera is held as given (nothing to pin it, it would drift and take up the gauge: with one camera
    seeing a single point, the whole rig turned by 13 degrees) when it has fewer than `min_obs`
    observations, when they see fewer than `min_points` distinct points, or when its observed pixels lie
    on nearly one point or one line of its image (the smaller standard deviation of their spread under
    `min_spread_px`, a few times the keypoints' noise); the last two are reported in `warnings`."""
    n_v = len(cams)
    counts = np.bincount(obs_view_m, minlength=n_v)
    held = counts < min_obs
    notes = []
    for v in np.flatnonzero(~held):
        m = obs_view_m == v
        n_points = len(np.unique(obs_point_m[m]))
        spread_px = float(np.sqrt(max(np.linalg.eigvalsh(np.cov(obs_xy_m2[m].T))[0], 0.0)))
        if n_points < min_points or spread_px < min_spread_px:
            held[v] = True
            notes.append(f"camera {cams[v].name}: its {counts[v]} observations see {n_points} distinct points "
                         f"spread over {spread_px:.1f} px (standard deviation across its narrowest direction): "
                         "too little to pin its pose, so the bundle adjustment holds it as calibrated.")  # fmt: skip
    active = np.flatnonzero(~held)
    if len(active) < 2:
        return RefineReport(list(cams), np.zeros(n_v), np.zeros(n_v), float("nan"), float("nan"), 0, held, notes)
    keep = np.isin(obs_view_m, active)
    remap = -np.ones(n_v, dtype=int)
    remap[active] = np.arange(len(active))
    # lsmr's many vector norms and products: OpenBLAS's thread pool makes each wait for its threads (5 ms a
    # norm on a busy machine, 90 % of the time); one thread is several times faster (as the body fit does).
    with _blas_controller().limit(limits=1, user_api="blas"):
        sub = _bundle_adjust(xyz_n3, remap[obs_view_m[keep]], obs_point_m[keep], obs_xy_m2[keep], obs_w_m[keep],
                             [cams[v] for v in active], **kwargs)  # fmt: skip
    out_cams, rot, trans = list(cams), np.zeros(n_v), np.zeros(n_v)
    for i, v in enumerate(active):
        out_cams[v], rot[v], trans[v] = sub.cams[i], sub.rotation_change_deg_v[i], sub.translation_change_m_v[i]
    return RefineReport(out_cams, rot, trans, sub.median_px_before, sub.median_px_after, sub.n_observations, held,
                        notes)  # fmt: skip


def _bundle_adjust(xyz_n3: np.ndarray, obs_view_m: np.ndarray, obs_point_m: np.ndarray, obs_xy_m2: np.ndarray,
                   obs_w_m: np.ndarray, cams: list[CalibratedCamera], *, loss_px: float = 3.0,
                   max_nfev: int = 60, intrinsics: bool | str = False, solver: str = "schur",
                   max_iter: int = 50) -> RefineReport:  # fmt: skip
    """Refine camera poses and points. Observation m is point obs_point_m[m] seen by view obs_view_m[m]
    at undistorted pixel obs_xy_m2[m] with weight obs_w_m[m] (confidence); xyz_n3 initial world points.
    `solver`: "schur" (poses and points: `schur_lm`, at most `max_iter` iterations) or "scipy"
    (scipy.optimize.least_squares, trf + lsmr, at most `max_nfev` evaluations; always with `intrinsics`)."""
    n_v, n_p = len(cams), len(xyz_n3)
    # per camera: rotation vector, centre[, log focal scale[, principal point]]; intrinsics="focal": the focal only
    n_c = 7 if intrinsics == "focal" else 9 if intrinsics else 6
    R0 = np.stack([c.cam_T_world_44[:3, :3] for c in cams])
    C0 = np.stack([c.centre_world_3 for c in cams])
    K = np.stack([c.camera.K_33 for c in cams])
    centroid0 = C0.mean(0)
    spread0 = np.linalg.norm(C0 - centroid0, axis=1).mean()
    sw = np.sqrt(np.clip(obs_w_m, 1e-3, None))
    gauge_w = 1e3

    def unpack(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cam = x[: n_c * n_v].reshape(n_v, n_c)
        return cam[:, :3], cam[:, 3:6], x[n_c * n_v:].reshape(n_p, 3)

    def intr(x: np.ndarray) -> np.ndarray:
        if not intrinsics:
            return K
        cam = x[: n_c * n_v].reshape(n_v, n_c)
        K1 = K.copy()
        K1[:, 0, 0] *= np.exp(cam[:, 6])
        K1[:, 1, 1] *= np.exp(cam[:, 6])
        if n_c == 9:
            K1[:, :2, 2] += cam[:, 7:9]
        return K1

    by_view = [np.flatnonzero(obs_view_m == v) for v in range(n_v)]
    point_of = [obs_point_m[m] for m in by_view]

    def project(w_v3: np.ndarray, C_v3: np.ndarray, X_n3: np.ndarray, K: np.ndarray = K) -> np.ndarray:
        R = R0 @ Rotation.from_rotvec(w_v3).as_matrix()
        out = np.empty((len(obs_view_m), 2))
        for v, (m, p) in enumerate(zip(by_view, point_of, strict=True)):  # one matrix product per view
            pc = (X_n3[p] - C_v3[v]) @ R[v].T
            z = np.where(np.abs(pc[:, 2]) > 1e-6, pc[:, 2], 1e-6)
            out[m, 0] = K[v, 0, 0] * pc[:, 0] / z + K[v, 0, 2]
            out[m, 1] = K[v, 1, 1] * pc[:, 1] / z + K[v, 1, 2]
        return out

    def residuals(x: np.ndarray) -> np.ndarray:
        w_v3, C_v3, X_n3 = unpack(x)
        r = ((project(w_v3, C_v3, X_n3, intr(x)) - obs_xy_m2) * sw[:, None]).ravel()
        centroid = C_v3.mean(0)
        gauge = np.concatenate([w_v3.sum(0), centroid - centroid0,
                                [np.linalg.norm(C_v3 - centroid, axis=1).mean() - spread0]]) * gauge_w  # fmt: skip
        return np.concatenate([r, gauge])

    n_obs = len(obs_view_m)
    n_x = n_c * n_v + 3 * n_p
    obs_rows = np.stack([2 * np.arange(n_obs), 2 * np.arange(n_obs) + 1], axis=1)  # (M, 2)
    obs_cols = np.concatenate([n_c * obs_view_m[:, None] + np.arange(6), n_c * n_v + 3 * obs_point_m[:, None]
                               + np.arange(3)], axis=1)  # (M, 9): rotation, centre, point  # fmt: skip
    gauge_rows = np.repeat(2 * n_obs + np.arange(7), n_v * 6)
    gauge_cols = np.tile((n_c * np.arange(n_v)[:, None] + np.arange(6)).ravel(), 7)

    def blocks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The analytic Jacobian of `residuals` in blocks: per observation (M, 2, 9) (rotation, centre, point)
        and of the 7 gauge residuals (7, n_v, 6) (poses and points only)."""
        w_v3, C_v3, X_n3 = unpack(x)
        Rw = Rotation.from_rotvec(w_v3).as_matrix()
        R = R0 @ Rw
        data = np.empty((n_obs, 2, 9))
        for v, (m, p) in enumerate(zip(by_view, point_of, strict=True)):
            y = X_n3[p] - C_v3[v]
            pc = y @ R[v].T
            z = np.where(np.abs(pc[:, 2]) > 1e-6, pc[:, 2], 1e-6)
            d = np.zeros((len(m), 2, 3))  # d pixel / d camera point
            d[:, 0, 0] = K[v, 0, 0] / z
            d[:, 1, 1] = K[v, 1, 1] / z
            d[:, 0, 2] = -K[v, 0, 0] * pc[:, 0] / z**2
            d[:, 1, 2] = -K[v, 1, 1] * pc[:, 1] / z**2
            d_X = d @ R[v]  # d pc / d X = R; / d C = -R
            # R0 exp(w + e) y ~ R0 exp(w) (y - [y]x Jr(w) e): d pc / d w = -R [y]x Jr(w)
            d_w = -np.einsum("mab,mbc->mac", d_X, _skew(y)) @ _right_jacobian(w_v3[v])
            data[m] = np.concatenate([d_w, -d_X, d_X], axis=2) * sw[m, None, None]
        centroid = C_v3.mean(0)
        e = C_v3 - centroid
        e /= np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
        g = np.zeros((7, n_v, 6))
        g[0:3, :, 0:3] = np.eye(3)[:, None, :]
        g[3:6, :, 3:6] = np.eye(3)[:, None, :] / n_v
        g[6, :, 3:6] = (e - e.mean(0)) / n_v
        return data, g * gauge_w

    def jacobian(x: np.ndarray) -> csr_matrix:
        """`blocks` as one sparse matrix (for scipy's least_squares)."""
        data, g = blocks(x)
        rows = np.concatenate([np.broadcast_to(obs_rows[:, :, None], (n_obs, 2, 9)).ravel(), gauge_rows])
        cols = np.concatenate([np.broadcast_to(obs_cols[:, None, :], (n_obs, 2, 9)).ravel(), gauge_cols])
        vals = np.concatenate([data.ravel(), g.ravel()])
        return csr_matrix((vals, (rows, cols)), shape=(2 * n_obs + 7, n_x))

    x0 = np.concatenate([np.zeros((n_v, 3)), C0, np.zeros((n_v, n_c - 6))], axis=1).ravel()
    x0 = np.concatenate([x0, xyz_n3.ravel()])
    err0 = np.linalg.norm(project(np.zeros((n_v, 3)), C0, xyz_n3) - obs_xy_m2, axis=1)
    x1: np.ndarray | None = None
    if solver == "schur" and not intrinsics:
        def split(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            r = residuals(x)
            return r[:-7].reshape(-1, 2), r[-7:]

        try:
            x1 = schur_lm(x0, split, blocks, obs_view_m, obs_point_m, n_v, loss_px=loss_px, max_iter=max_iter)
        except np.linalg.LinAlgError:  # a singular reduced camera system: scipy's trust region handles it
            x1 = None
    if x1 is None:
        if intrinsics:  # finite differences on the sparsity pattern
            J = lil_matrix((2 * n_obs + 7, n_c * n_v + 3 * n_p), dtype=np.int8)
            rows = np.arange(n_obs)
            for k in range(n_c):
                J[2 * rows, n_c * obs_view_m + k] = 1
                J[2 * rows + 1, n_c * obs_view_m + k] = 1
            for k in range(3):
                J[2 * rows, n_c * n_v + 3 * obs_point_m + k] = 1
                J[2 * rows + 1, n_c * n_v + 3 * obs_point_m + k] = 1
            J[2 * n_obs:, : n_c * n_v] = 1
        jac_kw = {"jac_sparsity": J} if intrinsics else {"jac": jacobian}
        x1 = least_squares(residuals, x0, loss="soft_l1", f_scale=loss_px, x_scale="jac", max_nfev=max_nfev,
                           method="trf", tr_solver="lsmr", **jac_kw).x  # fmt: skip
    w_v3, C_v3, X_n3 = unpack(x1)
    K1 = intr(x1)
    err1 = np.linalg.norm(project(w_v3, C_v3, X_n3, K1) - obs_xy_m2, axis=1)
    R1 = R0 @ Rotation.from_rotvec(w_v3).as_matrix()
    new_cams = [_with_pose(c, R1[v], C_v3[v], K1[v]) for v, c in enumerate(cams)]
    rot_deg = np.degrees(np.linalg.norm(Rotation.from_matrix(R1 @ np.swapaxes(R0, 1, 2)).as_rotvec(), axis=1))
    return RefineReport(new_cams, rot_deg, np.linalg.norm(C_v3 - C0, axis=1), float(np.median(err0)),
                        float(np.median(err1)), n_obs)  # fmt: skip


def schur_lm(x0: np.ndarray, residuals: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
             blocks: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], obs_view_m: np.ndarray,
             obs_point_m: np.ndarray, n_v: int, *, loss_px: float = 3.0, max_iter: int = 50,
             ftol: float = 1e-8) -> np.ndarray:  # fmt: skip
    """Levenberg-Marquardt for the bundle adjustment, the points eliminated by the Schur complement.

    x = (n_v poses of 6, then the points' xyz). `residuals(x)`: (M, 2) the weighted reprojection residuals
    of observation m (point obs_point_m[m], view obs_view_m[m]) under the soft L1 loss of scale `loss_px`
    (scipy's "soft_l1": f^2 (sqrt(1 + (r/f)^2) - 1) per residual), and (7,) the gauge's, plain squares;
    `blocks(x)`: their Jacobians, (M, 2, 9) (the view's 6 pose columns, the point's 3) and (7, n_v, 6).
    Each step solves the robust (IRLS-weighted) Gauss-Newton system with Marquardt's diagonal damping:
    the 3x3 point blocks are inverted and the 6 n_v pose unknowns solved on their own (6 n_v x 6 n_v),
    so a step costs a few vectorised passes over the observations instead of
    scipy's lsmr iterations (~100 sparse products each). Stops when a step lowers the cost by less
    than `ftol` of it, or after `max_iter` steps."""
    n_c = 6 * n_v
    n_p = (len(x0) - n_c) // 3
    f2 = loss_px**2

    def cost(r_m2: np.ndarray, g_7: np.ndarray) -> float:
        return float(f2 * np.sum(np.sqrt(1.0 + r_m2**2 / f2) - 1.0) + 0.5 * np.sum(g_7**2))

    x = x0.copy()
    r, g = residuals(x)
    c = cost(r, g)
    lam, nu = 1e-3, 2.0
    n_m = len(obs_view_m)
    # sums over the observations as sparse products: of each point's, each view's, each (view, point) pair's
    by_point = csr_matrix((np.ones(n_m), (obs_point_m, np.arange(n_m))), shape=(n_p, n_m))
    by_view = csr_matrix((np.ones(n_m), (obs_view_m, np.arange(n_m))), shape=(n_v, n_m))
    by_pair = csr_matrix((np.ones(n_m), (obs_point_m * n_v + obs_view_m, np.arange(n_m))), shape=(n_p * n_v, n_m))
    for _ in range(max_iter):
        J_m29, G_7v6 = blocks(x)
        # the loss's first derivative in r (the gradient) and its second (the curvature: exact in r)
        rho1_m2 = 1.0 / np.sqrt(1.0 + r**2 / f2)
        Jw = J_m29 * rho1_m2[..., None] ** 3
        gr_m2 = r * rho1_m2
        Jc, Jp, Jwc, Jwp = J_m29[..., :6], J_m29[..., 6:], Jw[..., :6], Jw[..., 6:]
        G = G_7v6.reshape(7, n_c)
        U_v66 = (by_view @ np.einsum("mri,mrj->mij", Jwc, Jc).reshape(n_m, 36)).reshape(n_v, 6, 6)
        U = np.zeros((n_v, 6, n_v, 6))
        U[np.arange(n_v), :, np.arange(n_v)] = U_v66
        U = U.reshape(n_c, n_c) + G.T @ G
        V = (by_point @ np.einsum("mri,mrj->mij", Jwp, Jp).reshape(n_m, 9)).reshape(n_p, 3, 3)
        # per point its (pose unknowns, xyz) block (n_p, 6 n_v, 3): the views that see it, zeros elsewhere
        W = (by_pair @ np.einsum("mri,mrj->mij", Jwc, Jp).reshape(n_m, 18)).reshape(n_p, n_c, 3)
        gc = (by_view @ np.einsum("mri,mr->mi", Jc, gr_m2)).ravel() + G.T @ g
        gp = by_point @ np.einsum("mri,mr->mi", Jp, gr_m2)
        dU, dV = np.diag(U).copy(), np.einsum("pii->pi", V).copy()
        W_c3p = W.transpose(1, 0, 2).reshape(n_c, 3 * n_p)
        accepted = False
        for _retry in range(12):
            Ud = U + np.diag(lam * dU + 1e-12)
            Vinv = inv_sym33(V + (lam * dV + 1e-12)[:, :, None] * np.eye(3))
            WV_c3p = (W @ Vinv).transpose(1, 0, 2).reshape(n_c, 3 * n_p)
            S = Ud - WV_c3p @ W_c3p.T
            d_c = np.linalg.solve(S, -gc + WV_c3p @ gp.ravel())
            d_p = -(Vinv @ (gp + (W_c3p.T @ d_c).reshape(n_p, 3))[..., None])[..., 0]
            x_new = x + np.concatenate([d_c, d_p.ravel()])
            r_new, g_new = residuals(x_new)
            c_new = cost(r_new, g_new)
            # the decrease the quadratic model predicts (Nielsen's damping update from its ratio to the real one)
            pred = 0.5 * (lam * (dU @ d_c**2 + np.sum(dV * d_p**2)) - gc @ d_c - np.sum(gp * d_p))
            if np.isfinite(c_new) and c_new < c:
                accepted = True
                rho = (c - c_new) / max(pred, 1e-300)
                lam, nu = max(lam * max(1 / 3, 1 - (2 * rho - 1) ** 3), 1e-9), 2.0
                break
            lam, nu = lam * nu, nu * 2
        if not accepted:
            break
        gain = c - c_new
        x, r, g, c = x_new, r_new, g_new, c_new
        if gain < ftol * c:
            break
    return x

