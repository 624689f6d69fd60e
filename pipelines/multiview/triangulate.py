"""Triangulation of 2D keypoints seen by several calibrated cameras.

Input pixels have their origin at the top-left corner of the image; output points are in the
world frame of the calibration, in metres. Each point is solved independently:
1. weighted DLT (linear least squares, rows weighted by the 2D confidence), in normalised
   camera coordinates for conditioning;
2. robust step: every pair of views proposes a point (DLT); the views that reproject it within
   `outlier_px` are its inliers; the largest consensus (ties: lowest weighted error) is kept and
   solved again by DLT with those views only (a point needs two agreeing views);
3. optional Gauss-Newton refinement of the confidence-weighted reprojection error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from pipelines.multiview.calibration import CalibratedCamera, undistort_points


@dataclass
class TriangulationResult:
    """3D points from several views, with per-view diagnostics."""

    xyz_n3: np.ndarray
    """World points (N, 3) in metres; NaN where fewer than two views could be used."""
    reproj_px_vn: np.ndarray
    """Reprojection error (views, N) in undistorted pixels, for every view with a finite
    observation (used or not); NaN where the view has no observation or the point is NaN."""
    used_vn: np.ndarray
    """Bool (views, N): the view took part in the final solution of the point."""

    @property
    def valid_n(self) -> np.ndarray:
        """Bool (N,): the point was triangulated."""
        return np.isfinite(self.xyz_n3).all(axis=1)

    def median_reproj_px(self) -> float:
        """Median reprojection error over the (view, point) pairs used by the solution."""
        err = self.reproj_px_vn[self.used_vn]
        err = err[np.isfinite(err)]
        return float(np.median(err)) if len(err) else float("nan")


def _normalised(xy_vn2: np.ndarray, cams: Sequence[CalibratedCamera]) -> np.ndarray:
    """Pixels (views, N, 2) -> normalised image coordinates x = (u - cx) / fx, y = (v - cy) / fy."""
    out_vn2 = np.empty_like(xy_vn2)
    for v, cam in enumerate(cams):
        K_33 = cam.camera.K_33
        out_vn2[v] = (xy_vn2[v] - K_33[:2, 2]) / np.array([K_33[0, 0], K_33[1, 1]])
    return out_vn2


def _dlt(xn_vn2: np.ndarray, weight_vn: np.ndarray, Rt_v34: np.ndarray) -> np.ndarray:
    """Weighted DLT for every point at once; rows of views with weight 0 vanish."""
    n_views, n_points = weight_vn.shape
    # rows: w * (x * P3 - P1), w * (y * P3 - P2)  -> A (N, 2V, 4)
    row_x_vn4 = xn_vn2[..., 0:1] * Rt_v34[:, None, 2, :] - Rt_v34[:, None, 0, :]
    row_y_vn4 = xn_vn2[..., 1:2] * Rt_v34[:, None, 2, :] - Rt_v34[:, None, 1, :]
    A_vn24 = np.stack([row_x_vn4, row_y_vn4], axis=2) * weight_vn[..., None, None]
    A_n_2v_4 = A_vn24.transpose(1, 0, 2, 3).reshape(n_points, 2 * n_views, 4)
    A_n_2v_4 = np.nan_to_num(A_n_2v_4, nan=0.0, posinf=0.0, neginf=0.0)
    # The homogeneous solution (A^T A's eigenvector of the smallest eigenvalue) by one step of inverse iteration
    # from the inhomogeneous one (X4 = 1: the 3x3 normal equations, solved in closed form): the eigenvalue gap is
    # large (the noise against the views' spread), so it agrees with np.linalg.eigh's to ~1e-8 m at a
    # fraction of its cost (one LAPACK eigenproblem per point was a fifth of the fusion's CPU).
    AtA_n44 = np.einsum("nri,nrj->nij", A_n_2v_4, A_n_2v_4)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        X_n3 = _solve_sym33(AtA_n44[:, :3, :3], -AtA_n44[:, :3, 3])
        h_n4 = np.concatenate([X_n3, np.ones((n_points, 1))], axis=1)
        h_n4 = np.linalg.solve(AtA_n44 + 1e-12 * np.eye(4), h_n4[..., None])[..., 0]
        return h_n4[:, :3] / h_n4[:, 3:4]


def _solve_sym33(M_n33: np.ndarray, b_n3: np.ndarray) -> np.ndarray:
    """x = M^-1 b for symmetric 3x3 matrices (NaN / inf where M is singular)."""
    return (inv_sym33(M_n33) @ b_n3[..., None])[..., 0]


def inv_sym33(M_n33: np.ndarray) -> np.ndarray:
    """Inverses of symmetric 3x3 matrices (N, 3, 3) by the adjugate (no LAPACK call per matrix; NaN / inf where
    one is singular)."""
    a, b, c = M_n33[:, 0, 0], M_n33[:, 0, 1], M_n33[:, 0, 2]
    d, e, f = M_n33[:, 1, 1], M_n33[:, 1, 2], M_n33[:, 2, 2]
    A, B, C = d * f - e * e, c * e - b * f, b * e - c * d
    D, E, F = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * A + b * B + c * C
    adj_n33 = np.stack([np.stack([A, B, C], -1), np.stack([B, D, E], -1), np.stack([C, E, F], -1)], 1)
    return adj_n33 / det[:, None, None]


def _project_all(xyz_n3: np.ndarray, cams: Sequence[CalibratedCamera]) -> tuple[np.ndarray, np.ndarray]:
    """Undistorted pixels (views, N, 2) and camera-frame depth (views, N)."""
    xy_vn2 = np.empty((len(cams), len(xyz_n3), 2))
    z_vn = np.empty((len(cams), len(xyz_n3)))
    for v, cam in enumerate(cams):
        K_33 = cam.camera.K_33
        xyz_cam_n3 = cam.to_cam(xyz_n3)
        z_vn[v] = xyz_cam_n3[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            xy_vn2[v] = (xyz_cam_n3[:, :2] / xyz_cam_n3[:, 2:3]) @ K_33[:2, :2].T + K_33[:2, 2]
    return xy_vn2, z_vn


def _reproj_errors(xyz_n3: np.ndarray, xy_vn2: np.ndarray, cams: Sequence[CalibratedCamera]) -> np.ndarray:
    proj_vn2, z_vn = _project_all(xyz_n3, cams)
    err_vn = np.linalg.norm(proj_vn2 - xy_vn2, axis=-1)
    err_vn[z_vn <= 0] = np.inf  # behind the camera: as wrong as can be
    err_vn[~np.isfinite(xy_vn2).all(axis=-1)] = np.nan
    return err_vn


def _consensus_views(
    xn_vn2: np.ndarray,
    xy_vn2: np.ndarray,
    active_vn: np.ndarray,
    weight_vn: np.ndarray,
    Rt_v34: np.ndarray,
    cams: Sequence[CalibratedCamera],
    outlier_px: float,
) -> np.ndarray:
    """Per point, the largest set of views that agree within `outlier_px` (views, N) bool.

    Every pair of views proposes a point; the views that reproject it within the threshold are
    its inliers. The pair with the most inliers wins (ties: smallest confidence-weighted error).
    Points where no pair reaches two inliers keep all their views.
    """
    n_views, n_points = active_vn.shape
    best_count_n = np.zeros(n_points, dtype=int)
    best_cost_n = np.full(n_points, np.inf)
    best_vn = active_vn.copy()
    for a, b in combinations(range(n_views), 2):
        pair_n = active_vn[a] & active_vn[b]
        if not pair_n.any():
            continue
        ab = [a, b]  # the pair's rows only (the other views' rows would be zero)
        xyz_n3 = _dlt(xn_vn2[ab][:, pair_n], weight_vn[ab][:, pair_n], Rt_v34[ab])
        err_vn = _reproj_errors(xyz_n3, xy_vn2[:, pair_n], cams)
        inlier_vn = active_vn[:, pair_n] & (np.nan_to_num(err_vn, nan=np.inf) < outlier_px)
        count_n = inlier_vn.sum(axis=0)
        cost_n = (weight_vn[:, pair_n] * np.where(inlier_vn, err_vn, 0.0)).sum(axis=0)
        idx_n = np.flatnonzero(pair_n)
        prev_count_n, prev_cost_n = best_count_n[idx_n], best_cost_n[idx_n]
        tie_n = (count_n == prev_count_n) & (cost_n < prev_cost_n)
        better_n = (count_n >= 2) & ((count_n > prev_count_n) | tie_n)
        best_count_n[idx_n[better_n]] = count_n[better_n]
        best_cost_n[idx_n[better_n]] = cost_n[better_n]
        best_vn[:, idx_n[better_n]] = inlier_vn[:, better_n]
    return best_vn


def _gauss_newton(
    xyz_n3: np.ndarray,
    xy_vn2: np.ndarray,
    weight_vn: np.ndarray,
    cams: Sequence[CalibratedCamera],
    n_iter: int,
) -> np.ndarray:
    """Minimise sum_v w_v |proj_v(X) - x_v|^2 per point (Gauss-Newton, all points at once)."""
    xyz_n3 = xyz_n3.copy()
    ok_n = np.isfinite(xyz_n3).all(axis=1) & ((weight_vn > 0).sum(axis=0) >= 2)
    xy_vn2 = np.where(np.isfinite(xy_vn2), xy_vn2, 0.0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # points at infinity stay out (ok_n)
        return _gauss_newton_steps(xyz_n3, xy_vn2, weight_vn, cams, n_iter, ok_n)


def _gauss_newton_steps(xyz_n3: np.ndarray, xy_vn2: np.ndarray, weight_vn: np.ndarray,
                        cams: Sequence[CalibratedCamera], n_iter: int, ok_n: np.ndarray) -> np.ndarray:  # fmt: skip
    """The Gauss-Newton steps on the points `ok_n` (the others are returned as they are), every view at once."""
    idx_n = np.flatnonzero(ok_n)
    if not len(idx_n):
        return xyz_n3
    R_v33 = np.stack([cam.cam_T_world_44[:3, :3] for cam in cams])
    t_v3 = np.stack([cam.cam_T_world_44[:3, 3] for cam in cams])
    f_v2 = np.stack([[cam.camera.K_33[0, 0], cam.camera.K_33[1, 1]] for cam in cams])
    c_v2 = np.stack([cam.camera.K_33[:2, 2] for cam in cams])
    X_n3 = xyz_n3[idx_n]
    n_points = len(idx_n)
    xy_vn2, w_vn = xy_vn2[:, idx_n], weight_vn[:, idx_n]
    eye_33 = 1e-9 * np.eye(3)
    for _ in range(n_iter):
        p_vn3 = X_n3 @ R_v33.transpose(0, 2, 1) + t_v3[:, None]
        z_vn = np.where(np.abs(p_vn3[..., 2]) > 1e-6, p_vn3[..., 2], 1e-6)
        r_vn2 = p_vn3[..., :2] / z_vn[..., None] * f_v2[:, None] + c_v2[:, None] - xy_vn2
        # d(pixel)/d(cam point): [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]], then d(cam point)/d(X) = R
        D_vn23 = np.zeros((*z_vn.shape, 2, 3))
        D_vn23[..., 0, 0] = f_v2[:, None, 0] / z_vn
        D_vn23[..., 1, 1] = f_v2[:, None, 1] / z_vn
        D_vn23[..., 0, 2] = -f_v2[:, None, 0] * p_vn3[..., 0] / z_vn**2
        D_vn23[..., 1, 2] = -f_v2[:, None, 1] * p_vn3[..., 1] / z_vn**2
        J_vn23 = D_vn23 @ R_v33[:, None]
        # Per point, the views' rows stacked (N, 2V, 3): H = Jw^T J and g = Jw^T r as batched matrix products
        # (the einsums' sums, ~30 % faster).
        J_nr3 = J_vn23.transpose(1, 0, 2, 3).reshape(n_points, -1, 3)
        JwT_n3r = (J_vn23 * w_vn[..., None, None]).transpose(1, 3, 0, 2).reshape(n_points, 3, -1)
        H_n33 = JwT_n3r @ J_nr3 + eye_33
        g_n3 = (JwT_n3r @ r_vn2.transpose(1, 0, 2).reshape(n_points, -1, 1))[..., 0]
        step_n3 = np.linalg.solve(H_n33, -g_n3[..., None])[..., 0]
        X_n3 = X_n3 + step_n3
        if np.nanmax(np.abs(step_n3), initial=0.0) < 1e-9:
            break
    out_n3 = xyz_n3.copy()
    out_n3[idx_n] = X_n3
    return out_n3


def triangulate_points(
    xy_vn2: np.ndarray,
    conf_vn: np.ndarray,
    cams: Sequence[CalibratedCamera],
    *,
    distorted: bool = True,
    min_conf: float = 0.1,
    outlier_px: float = 50.0,
    refine: bool = True,
) -> TriangulationResult:
    """Triangulate N points seen in several views.

    xy_vn2: pixels (views, N, 2), NaN where a view did not see the point; raw detector output
    (with lens distortion) when `distorted`, else already undistorted.
    conf_vn: confidence (views, N) in [0, 1]; views under `min_conf` are ignored, the others
    weigh by their confidence.
    cams: the calibrated camera of each view, in the same order.
    outlier_px: a view farther than this from the consensus is left out. 50 px suits real rigs whose
    calibration is a little off (Pose2Sim's demo: 12-16 px median error): on it, 30 px drops so many
    good views that limbs rest on two views only, and bone lengths vary twice as much over time.
    """
    xy_vn2 = np.asarray(xy_vn2, dtype=np.float64)
    conf_vn = np.asarray(conf_vn, dtype=np.float64)
    n_views, n_points = conf_vn.shape
    if xy_vn2.shape != (n_views, n_points, 2) or len(cams) != n_views:
        raise ValueError(f"shapes disagree: xy {xy_vn2.shape}, conf {conf_vn.shape}, {len(cams)} cameras")
    if distorted:
        xy_vn2 = np.stack([undistort_points(xy_vn2[v], cam) for v, cam in enumerate(cams)])

    finite_vn = np.isfinite(xy_vn2).all(axis=-1) & np.isfinite(conf_vn)
    active_vn = finite_vn & (conf_vn >= min_conf)
    weight_vn = np.where(active_vn, np.clip(conf_vn, 1e-3, None), 0.0)
    xn_vn2 = _normalised(xy_vn2, cams)
    Rt_v34 = np.stack([cam.cam_T_world_44[:3, :] for cam in cams])

    if np.isfinite(outlier_px):
        active_vn = _consensus_views(xn_vn2, xy_vn2, active_vn, weight_vn, Rt_v34, cams, outlier_px)
    weight_vn = np.where(active_vn, weight_vn, 0.0)
    xyz_n3 = _dlt(xn_vn2, weight_vn, Rt_v34)

    if refine:
        xyz_n3 = _gauss_newton(xyz_n3, xy_vn2, weight_vn, cams, n_iter=10)

    enough_n = active_vn.sum(axis=0) >= 2
    xyz_n3[~enough_n] = np.nan
    err_vn = _reproj_errors(xyz_n3, xy_vn2, cams)
    err_vn[:, ~enough_n] = np.nan
    used_vn = active_vn & enough_n[None, :]
    return TriangulationResult(xyz_n3=xyz_n3, reproj_px_vn=err_vn, used_vn=used_vn)
