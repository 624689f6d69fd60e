"""Cameras from the people themselves, without a calibration file.

1. Intrinsics: the project's focal prior per video (pipelines.camera.prior), principal point at the image
   centre, no lens distortion (refined later with the poses).
2. Relative poses: per view, against the reference view (the first), every pair of tracks gives an
   essential matrix from all their co-visible keypoints over time (OpenCV findEssentialMat, RANSAC); the
   pair is the same person when its triangulated limbs keep their lengths (MAX_BONE_SPREAD); the view whose
   best pair has the most inliers gives the first relative pose (recoverPose). Every person
   the two views share (a track pair whose keypoints fit that pose) is triangulated (baseline 1, an
   arbitrary scale); every other view is placed against those points (solvePnPRansac, each of its
   tracks against each person; the most inliers win), so that all views share one scale.
3. The usual fusion (association, time offsets, bundle adjustment, here with the intrinsics free) runs
   on those cameras; the metric scale then comes from the people's height (the tallest fused person is
   taken to be `person_height_m`, 1.70 m by default: state yours when you know it), and the world frame
   is set from the people: z up along their median body axis (ankles to shoulders), origin on the
   floor under their median position (the heels), x along the reference camera's x.
Units: metres (after the scale), OpenCV camera frames, undistorted pixels of the source videos.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from pipelines.camera.prior import focal_prior_px
from pipelines.errors import UserFacingError
from pipelines.hmr.kinematics import rotation_between
from pipelines.multiview.associate import MIN_CONF
from pipelines.multiview.calibration import CalibratedCamera, make_camera
from pipelines.multiview.fuse import _IDX, FUSED_JOINT_NAMES, HEAD_ABOVE_EARS_M, FuseOptions, FusionResult, fuse_views
from pipelines.multiview.triangulate import triangulate_points
from pipelines.multiview.views2d import ViewTracks

DEFAULT_HEIGHT_M = 1.70
"""The height the tallest person is taken to have when nobody says (a typical adult's)."""


@dataclass
class SelfCalibReport:
    """How the cameras were found."""

    inliers_v: list[int]
    """Per view: keypoint correspondences with the reference view that fit its essential matrix (0 for the
    reference itself)."""
    person_height_m: float
    """The height the metric scale was set from."""
    scale: float
    """Metres per unit of the initial reconstruction (reference-to-best-view baseline = 1)."""
    notes: list[str] = field(default_factory=list)
    """Plain-language notes (views that could not be placed)."""


def guess_camera(name: str, width: int, height: int) -> CalibratedCamera:
    f, _ = focal_prior_px(width, height)
    K = np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])
    return make_camera(name, K, np.zeros(5), np.eye(4), width, height)


def _norm(xy_n2: np.ndarray, K_33: np.ndarray) -> np.ndarray:
    return (xy_n2 - K_33[:2, 2]) / np.array([K_33[0, 0], K_33[1, 1]])


def _pairs(a: ViewTracks, b: ViewTracks, Ka: np.ndarray, Kb: np.ndarray, thr_px: float) -> list:  # noqa: ANN401
    """Per pair of tracks (row in a, row in b): (inliers, R, t, points of a, points of b, keys) from the essential
    matrix of their co-visible keypoints (normalised coordinates); keys = (frame, joint) of each point."""
    n_f = min(a.xy_tfk2.shape[1], b.xy_tfk2.shape[1])
    out = []
    for ra in range(len(a.track_ids)):
        for rb in range(len(b.track_ids)):
            ca, cb = a.conf_tfk[ra, :n_f][:, _IDX], b.conf_tfk[rb, :n_f][:, _IDX]
            both = (ca >= MIN_CONF) & (cb >= MIN_CONF)
            if both.sum() < 60:
                continue
            f_idx, k_idx = np.nonzero(both)
            pa = _norm(a.xy_tfk2[ra, :n_f][:, _IDX][both], Ka)
            pb = _norm(b.xy_tfk2[rb, :n_f][:, _IDX][both], Kb)
            E, mask = cv2.findEssentialMat(pa, pb, focal=1.0, pp=(0.0, 0.0), method=cv2.RANSAC, prob=0.999,
                                           threshold=thr_px / Ka[0, 0])  # fmt: skip
            if E is None or E.shape != (3, 3):
                continue
            n_in, R, t, mask2 = cv2.recoverPose(E, pa, pb, focal=1.0, pp=(0.0, 0.0), mask=mask.copy())
            keep = mask2.ravel() > 0
            out.append((int(keep.sum()), ra, rb, R, t.ravel(), pa[keep], pb[keep], (f_idx[keep], k_idx[keep])))
    return out


MAX_BONE_SPREAD = 0.25
"""A track pair can be one person only when its triangulated limbs keep their lengths: the median over the
limbs of (std / mean of the length over time) below this (the focal prior's error stretches them too: 0.04-0.15
for the right pairs of pose2sim_single). Two people walking side by side give an essential matrix with many
inliers too, but limbs that stretch and shrink; among the pairs with at least half the most inliers, the one
with the steadiest limbs is taken."""
_LIMBS = [(f"{s}_{a}", f"{s}_{b}") for s in ("left", "right")
          for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"),
                       ("shoulder", "hip"))] + [("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")]


def _bone_spread(pair: tuple) -> float:
    """Median relative spread over time of the limb lengths of a track pair triangulated with its pose."""
    _, _, _, R, t, pa, pb, (f_idx, k_idx) = pair
    P0, P1 = np.hstack([np.eye(3), np.zeros((3, 1))]), np.hstack([R, t.reshape(3, 1)])
    X4 = cv2.triangulatePoints(P0, P1, pa.T.astype(np.float64), pb.T.astype(np.float64))
    with np.errstate(all="ignore"):
        X = (X4[:3] / X4[3]).T
    n_f = int(f_idx.max()) + 1 if len(f_idx) else 0
    J = np.full((n_f, len(FUSED_JOINT_NAMES), 3), np.nan)
    J[f_idx, k_idx] = X
    spreads = []
    for a, b in _LIMBS:
        d = np.linalg.norm(J[:, FUSED_JOINT_NAMES.index(a)] - J[:, FUSED_JOINT_NAMES.index(b)], axis=-1)
        d = d[np.isfinite(d)]
        if len(d) >= 5 and np.mean(d) > 0:
            spreads.append(float(np.std(d) / np.mean(d)))
    return float(np.median(spreads)) if len(spreads) >= 3 else float("inf")


def _track_points(view: ViewTracks, row: int, K_33: np.ndarray, n_f: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised keypoints (n_f * K, 2) of one track (fused joints) and their confidences."""
    xy = view.xy_tfk2[row, :n_f][:, _IDX]
    c = view.conf_tfk[row, :n_f][:, _IDX]
    pad = n_f - len(xy)
    if pad > 0:
        xy = np.concatenate([xy, np.full((pad, *xy.shape[1:]), np.nan)])
        c = np.concatenate([c, np.zeros((pad, c.shape[1]))])
    return _norm(xy.reshape(-1, 2), K_33), c.reshape(-1)


def initial_cameras(views: list[ViewTracks], sizes: list[tuple[int, int]], thr_px: float = 8.0
                    ) -> tuple[list[CalibratedCamera | None], list[int], list[str]]:  # fmt: skip
    """Cameras with the reference view (0) at the origin and an arbitrary scale (see the module docstring),
    the inlier count per view, and notes; raises UserFacingError when fewer than two views can be placed."""
    guess = [guess_camera(v.name, w, h) for v, (w, h) in zip(views, sizes, strict=True)]
    K = [c.camera.K_33 for c in guess]
    best = {}
    for v in range(1, len(views)):
        pairs = [(p, _bone_spread(p)) for p in _pairs(views[0], views[v], K[0], K[v], thr_px)]
        pairs = [(p, spread) for p, spread in pairs if spread < MAX_BONE_SPREAD]
        if pairs:  # among the pairs with at least half the most inliers, the one whose limbs vary least
            most = max(p[0] for p, _ in pairs)
            best[v] = min([(p, spread) for p, spread in pairs if p[0] >= 0.5 * most], key=lambda ps: ps[1])[0]
    if not best:
        raise UserFacingError("The cameras cannot be estimated from the people: no view shares enough keypoints "
                              f"of one person with {views[0].name} (give a calibration file).")  # fmt: skip
    v1 = max(best, key=lambda v: best[v][0])
    n1, _, _, R1, t1, _, _, _ = best[v1]
    T = {0: np.eye(4), v1: np.eye(4)}
    T[v1][:3, :3], T[v1][:3, 3] = R1, t1 / np.linalg.norm(t1)
    # Every person the reference view shares with v1, triangulated (baseline 1): a track pair whose
    # keypoints mostly fit the pose is one person.
    n_f = max(len(v.frames) for v in views)
    cams01 = [make_camera(n, np.eye(3), np.zeros(5), T[v], 2, 2) for n, v in (("a", 0), ("b", v1))]
    tracks3d: list[np.ndarray] = []
    for ra in range(len(views[0].track_ids)):
        xy0, c0 = _track_points(views[0], ra, K[0], n_f)
        for rb in range(len(views[v1].track_ids)):
            xy1, c1 = _track_points(views[v1], rb, K[v1], n_f)
            both = (c0 >= MIN_CONF) & (c1 >= MIN_CONF)
            if both.sum() < 60:
                continue
            with np.errstate(all="ignore"):  # points of another person land anywhere, even at infinity
                tri = triangulate_points(np.stack([xy0, xy1]), np.stack([c0, c1]), cams01, distorted=False,
                                         min_conf=MIN_CONF, outlier_px=np.inf)  # fmt: skip
            err = np.where(tri.used_vn, tri.reproj_px_vn, -np.inf).max(axis=0)
            good = np.isfinite(err) & (err < thr_px / K[0][0, 0]) & both
            if good.sum() >= 0.5 * both.sum():
                X = np.where(good[:, None], tri.xyz_n3, np.nan)
                tracks3d.append(X)
    inliers = [0] * len(views)
    inliers[v1] = n1
    notes = []
    for v in range(1, len(views)):
        if v == v1:
            continue
        found_best = None
        for rc in range(len(views[v].track_ids)):
            xyv, cv = _track_points(views[v], rc, K[v], n_f)
            for X in tracks3d:
                ok = np.isfinite(X).all(1) & np.isfinite(xyv).all(1) & (cv >= MIN_CONF)
                if ok.sum() < 30:
                    continue
                found, rvec, tvec, idx = cv2.solvePnPRansac(X[ok], xyv[ok], np.eye(3), None,
                                                            reprojectionError=thr_px / K[v][0, 0],
                                                            iterationsCount=300, flags=cv2.SOLVEPNP_EPNP)  # fmt: skip
                if found and idx is not None and (found_best is None or len(idx) > found_best[0]):
                    found_best = (len(idx), X[ok][idx.ravel()], xyv[ok][idx.ravel()], rvec, tvec)
        if found_best is None or found_best[0] < 20:
            notes.append(f"view {views[v].name}: its pose could not be found from the people it shares with the "
                         "other views; it is left out.")  # fmt: skip
            continue
        n_in, X_in, xy_in, rvec, tvec = found_best
        rvec, tvec = cv2.solvePnPRefineLM(X_in, xy_in, np.eye(3), None, rvec, tvec)
        T[v] = np.eye(4)
        T[v][:3, :3], T[v][:3, 3] = Rotation.from_rotvec(rvec.ravel()).as_matrix(), tvec.ravel()
        inliers[v] = int(n_in)
    cams = [make_camera(views[v].name, K[v], np.zeros(5), T[v], *sizes[v]) if v in T else None
            for v in range(len(views))]  # fmt: skip
    return cams, inliers, notes


def metric_world(fusion: FusionResult, person_height_m: float | None) -> tuple[np.ndarray, float, float]:
    """The similarity that makes the fused result metric and upright: (world_T_old 4x4 rotation+translation
    after scaling, scale, height used). z up along the tallest person's median ankles-to-shoulders axis."""
    people = [p for p in fusion.people if np.isfinite(p.height_m)]
    if not people:
        raise UserFacingError("The cameras cannot be scaled: nobody was fused from two views.")
    tall = max(people, key=lambda p: p.height_m)
    height = person_height_m or DEFAULT_HEIGHT_M
    # height_from_joints adds a fixed head above the ears (metres): only the measured segments scale
    scale = (height - HEAD_ABOVE_EARS_M) / (tall.height_m - HEAD_ABOVE_EARS_M)
    j = {n: tall.joints_fk3[:, i] * scale for i, n in enumerate(FUSED_JOINT_NAMES)}
    axis = (j["left_shoulder"] + j["right_shoulder"]) / 2 - (j["left_ankle"] + j["right_ankle"]) / 2
    axis = axis[np.isfinite(axis).all(1)]
    up = np.median(axis / np.linalg.norm(axis, axis=1, keepdims=True), axis=0)
    R = Rotation.from_rotvec(rotation_between(up, np.array([0.0, 0.0, 1.0]))).as_matrix()
    heels = np.concatenate([j["left_heel"], j["right_heel"]])
    heels = heels[np.isfinite(heels).all(1)] @ R.T
    origin = np.array([np.median(heels[:, 0]), np.median(heels[:, 1]), np.percentile(heels[:, 2], 10)])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, -origin
    return T, scale, height


def rescaled(cams: list[CalibratedCamera], world_T_old_44: np.ndarray, scale: float) -> list[CalibratedCamera]:
    """The cameras in the new world: X_new = world_T_old (scale * X_old)."""
    out = []
    inv = np.linalg.inv(world_T_old_44)
    for c in cams:
        T = c.cam_T_world_44.copy()
        T[:3, 3] *= scale  # X_cam = R (X_old_scaled / scale) * scale + t * scale
        T = T @ inv
        out.append(make_camera(c.name, c.camera.K_33, c.dist_k, T, c.camera.width, c.camera.height))
    return out


def self_calibrate(views: list[ViewTracks], placeholders: list[CalibratedCamera], fuse: FuseOptions, fps: float,
                   person_height_m: float | None = None, progress: Callable[[str], None] | None = None
                   ) -> tuple[list[int], list[CalibratedCamera], FusionResult, SelfCalibReport]:  # fmt: skip
    """Estimate the cameras and fuse (see the module docstring): (kept view indices, their metric cameras, the
    fusion with them, the report). `placeholders` give each view's image size and name."""
    sizes = [(c.camera.width, c.camera.height) for c in placeholders]
    init, inliers, notes = initial_cameras(views, sizes)
    keep = [v for v, c in enumerate(init) if c is not None]
    kept_views = [views[v] for v in keep]
    first = fuse_views(kept_views, [init[v] for v in keep], dataclasses.replace(fuse, refine=True, intrinsics="focal"),
                       fps=fps, progress=progress)  # fmt: skip
    world_T_old, scale, height = metric_world(first, person_height_m)
    cams = rescaled(first.cams, world_T_old, scale)
    final = fuse_views(kept_views, cams, dataclasses.replace(fuse, refine=False), fps=fps, progress=progress)
    final.refine = first.refine
    return keep, cams, final, SelfCalibReport([inliers[v] for v in keep], height, scale, notes)
