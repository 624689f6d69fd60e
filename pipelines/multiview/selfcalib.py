"""Cameras from the people themselves, without a calibration file.

1. Intrinsics: the project's focal prior per video (pipelines.camera.prior), principal point at the image
   centre, no lens distortion (refined later with the poses).
2. Relative poses: per view, against the reference view (the first), every hypothesis of which of its
   tracks is which track of the reference (no track twice) gives one essential matrix from all its pairs'
   co-visible keypoints over time at once (OpenCV findEssentialMat, RANSAC; recoverPose: the inliers in
   front of both cameras); a pair stays one person only when its triangulated limbs keep their lengths
   (MAX_BONE_SPREAD); the hypothesis with the most inliers wins. (Two people walking side by side: each
   alone gives a poorly constrained pose, and a person paired with the other person of another view still
   fits many keypoints; both people at once pin the right pose and pairing.) The view with the most inliers
   gives the first relative pose; the people of its hypothesis are triangulated (baseline 1, an arbitrary
   scale), and every other view is placed against all of them at once (solvePnPRansac over the hypotheses
   of which of its tracks is which person; the most inliers in front of the camera win), so that all views
   share one scale.
3. The usual fusion (association, time offsets, bundle adjustment, here with the intrinsics free) runs
   on those cameras; the metric scale then comes from the people's height (the tallest fused person is
   taken to be `person_height_m`, 1.70 m by default: state yours when you know it), and the world frame
   is set from the people: z up along their median body axis (ankles to shoulders), origin on the
   floor under their median position (the heels), x along the reference camera's x.
Units: metres (after the scale), OpenCV camera frames, undistorted pixels of the source videos.
"""

from __future__ import annotations

import dataclasses
import itertools
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


MIN_SHARED = 60
"""Co-visible keypoints (frames x joints) a pair of tracks needs to take part in a relative pose."""
MIN_PNP = 20
"""Keypoints a view needs in common with the triangulated people to be placed on them."""
MAX_HYPOTHESES = 200
"""At most this many hypotheses of which track is which person, per pair of views."""
MAX_BONE_SPREAD = 0.25
"""A track pair can be one person only when its triangulated limbs keep their lengths: the median over the
limbs of (std / mean of the length over time) below this (the focal prior's error stretches them too: 0.03-0.06
for the right pairs of pose2sim_single)."""
_LIMBS = [(f"{s}_{a}", f"{s}_{b}") for s in ("left", "right")
          for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"),
                       ("shoulder", "hip"))] + [("left_shoulder", "right_shoulder"), ("left_hip", "right_hip")]


@dataclass
class _PairPose:
    """A relative pose of two views and the track pairs (row in a, row in b) it was found from, with their
    inlier keypoints (normalised coordinates) and keys (frame, joint); one pair when `pa` is set."""

    n_inliers: int
    matching: list[tuple[int, int]]
    R_33: np.ndarray
    t_3: np.ndarray
    pa: np.ndarray | None = None
    pb: np.ndarray | None = None
    keys: tuple[np.ndarray, np.ndarray] | None = None


def _bone_spread(pair: _PairPose) -> float:
    """Median relative spread over time of the limb lengths of one track pair triangulated with its pose."""
    P0, P1 = np.hstack([np.eye(3), np.zeros((3, 1))]), np.hstack([pair.R_33, pair.t_3.reshape(3, 1)])
    X4 = cv2.triangulatePoints(P0, P1, pair.pa.T.astype(np.float64), pair.pb.T.astype(np.float64))
    with np.errstate(all="ignore"):
        X = (X4[:3] / X4[3]).T
    f_idx, k_idx = pair.keys
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


def _pair_points(a: ViewTracks, b: ViewTracks, ra: int, rb: int, Ka: np.ndarray, Kb: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]] | None:  # fmt: skip
    """Normalised co-visible keypoints of track ra of a and track rb of b (the same frame index, the fused
    joints), and their (frame, joint) keys; None when they share fewer than MIN_SHARED."""
    n_f = min(a.xy_tfk2.shape[1], b.xy_tfk2.shape[1])
    ca, cb = a.conf_tfk[ra, :n_f][:, _IDX], b.conf_tfk[rb, :n_f][:, _IDX]
    both = (ca >= MIN_CONF) & (cb >= MIN_CONF)
    if both.sum() < MIN_SHARED:
        return None
    pa = _norm(a.xy_tfk2[ra, :n_f][:, _IDX][both], Ka)
    pb = _norm(b.xy_tfk2[rb, :n_f][:, _IDX][both], Kb)
    return pa, pb, tuple(np.nonzero(both))


def _matchings(edges: list[tuple[int, int]], cap: int = MAX_HYPOTHESES) -> list[list[tuple[int, int]]]:
    """Every non-empty set of track pairs in which no track appears twice. Where there are more than `cap`
    (many track fragments), the `cap` smallest ones: every single pair first, then every two pairs, ..., so
    that no pair is left untried because the first pairs fill the budget."""
    out: list[list[tuple[int, int]]] = []

    def grow(i: int, chosen: list[tuple[int, int]]) -> None:
        if len(out) > cap:
            return
        if i == len(edges):
            if chosen:
                out.append(list(chosen))
            return
        ra, rb = edges[i]
        if all(ra != a and rb != b for a, b in chosen):
            grow(i + 1, [*chosen, edges[i]])
        grow(i + 1, chosen)

    grow(0, [])
    if len(out) <= cap:
        return out
    out = []
    for size in range(1, len(edges) + 1):
        for combo in itertools.combinations(edges, size):
            if len({a for a, _ in combo}) == size and len({b for _, b in combo}) == size:
                out.append(list(combo))
                if len(out) == cap:
                    return out
    return out


def _best_pose(a: ViewTracks, b: ViewTracks, Ka: np.ndarray, Kb: np.ndarray, thr_px: float) -> _PairPose | None:
    """The relative pose of view b against view a from the people: every hypothesis of which track of a is
    which track of b (no track twice) gives one essential matrix from all its pairs' keypoints at once
    (findEssentialMat, RANSAC; recoverPose: inliers in front of both cameras); the hypothesis with the most
    inliers wins, after dropping the pairs whose limbs do not keep their lengths (MAX_BONE_SPREAD)."""
    points = {}
    for ra in range(len(a.track_ids)):
        for rb in range(len(b.track_ids)):
            got = _pair_points(a, b, ra, rb, Ka, Kb)
            if got is not None:
                points[(ra, rb)] = got
    best = None
    for matching in _matchings(list(points)):
        pa = np.concatenate([points[e][0] for e in matching])
        pb = np.concatenate([points[e][1] for e in matching])
        E, mask = cv2.findEssentialMat(pa, pb, focal=1.0, pp=(0.0, 0.0), method=cv2.RANSAC, prob=0.999,
                                       threshold=thr_px / Ka[0, 0])  # fmt: skip
        if E is None or E.shape[0] < 3:
            continue
        _, R, t, mask2 = cv2.recoverPose(E[:3], pa, pb, focal=1.0, pp=(0.0, 0.0), mask=mask.copy())
        keep = mask2.ravel() > 0
        kept, start = [], 0
        for e in matching:  # the pairs' own inliers, and whether their limbs keep their lengths
            n = len(points[e][0])
            k = keep[start:start + n]
            start += n
            pair = _PairPose(int(k.sum()), [e], R, t.ravel(), points[e][0][k], points[e][1][k],
                             (points[e][2][0][k], points[e][2][1][k]))  # fmt: skip
            if pair.n_inliers >= MIN_SHARED and _bone_spread(pair) < MAX_BONE_SPREAD:
                kept.append(pair)
        if not kept:
            continue
        n_in = sum(p.n_inliers for p in kept)
        if best is None or n_in > best.n_inliers:
            best = _PairPose(n_in, [p.matching[0] for p in kept], R, t.ravel())
    return best


def _track_points(view: ViewTracks, row: int, K_33: np.ndarray, n_f: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised keypoints (n_f * K, 2) of one track (fused joints) and their confidences."""
    xy = view.xy_tfk2[row, :n_f][:, _IDX]
    c = view.conf_tfk[row, :n_f][:, _IDX]
    pad = n_f - len(xy)
    if pad > 0:
        xy = np.concatenate([xy, np.full((pad, *xy.shape[1:]), np.nan)])
        c = np.concatenate([c, np.zeros((pad, c.shape[1]))])
    return _norm(xy.reshape(-1, 2), K_33), c.reshape(-1)


def _pnp(view: ViewTracks, K_33: np.ndarray, people3d: dict[int, np.ndarray], n_f: int, thr_px: float
         ) -> tuple[int, np.ndarray, np.ndarray] | None:  # fmt: skip
    """The pose of one view against the triangulated people (per person: its points (n_f * K, 3)): every
    hypothesis of which of its tracks is which person (no track or person twice) gives one solvePnPRansac on
    all its pairs' points at once; the hypothesis with the most inliers in front of the camera wins.
    (inliers, rotation vector, translation) after an LM refinement on them, or None."""
    tracks = {r: _track_points(view, r, K_33, n_f) for r in range(len(view.track_ids))}
    edges = []
    for r, (xy, c) in tracks.items():
        for person, X in people3d.items():
            if (np.isfinite(X).all(1) & np.isfinite(xy).all(1) & (c >= MIN_CONF)).sum() >= MIN_PNP:
                edges.append((r, person))
    best = None
    for matching in _matchings(edges):
        X_parts, xy_parts = [], []
        for r, person in matching:
            xy, c = tracks[r]
            X = people3d[person]
            ok = np.isfinite(X).all(1) & np.isfinite(xy).all(1) & (c >= MIN_CONF)
            X_parts.append(X[ok])
            xy_parts.append(xy[ok])
        X_all, xy_all = np.concatenate(X_parts), np.concatenate(xy_parts)
        found, rvec, tvec, idx = cv2.solvePnPRansac(X_all, xy_all, np.eye(3), None, iterationsCount=300,
                                                    reprojectionError=thr_px / K_33[0, 0], flags=cv2.SOLVEPNP_EPNP)
        if not found or idx is None:
            continue
        idx = idx.ravel()
        depth = (X_all[idx] @ Rotation.from_rotvec(rvec.ravel()).as_matrix().T)[:, 2] + tvec.ravel()[2]
        idx = idx[depth > 0]
        if best is None or len(idx) > best[0]:
            best = (len(idx), X_all[idx], xy_all[idx], rvec, tvec)
    if best is None or best[0] < MIN_PNP:
        return None
    n_in, X_in, xy_in, rvec, tvec = best
    rvec, tvec = cv2.solvePnPRefineLM(X_in, xy_in, np.eye(3), None, rvec, tvec)
    return n_in, rvec, tvec


def initial_cameras(views: list[ViewTracks], sizes: list[tuple[int, int]], thr_px: float = 8.0
                    ) -> tuple[list[CalibratedCamera | None], list[int], list[str]]:  # fmt: skip
    """Cameras with the reference view (0) at the origin and an arbitrary scale (see the module docstring),
    the inlier count per view, and notes; raises UserFacingError when fewer than two views can be placed."""
    guess = [guess_camera(v.name, w, h) for v, (w, h) in zip(views, sizes, strict=True)]
    K = [c.camera.K_33 for c in guess]
    best = {}
    for v in range(1, len(views)):
        pose = _best_pose(views[0], views[v], K[0], K[v], thr_px)
        if pose is not None:
            best[v] = pose
    if not best:
        raise UserFacingError("The cameras cannot be estimated from the people: no view shares enough keypoints "
                              f"of one person with {views[0].name} (give a calibration file).")  # fmt: skip
    v1 = max(best, key=lambda v: best[v].n_inliers)
    first = best[v1]
    T = {0: np.eye(4), v1: np.eye(4)}
    T[v1][:3, :3], T[v1][:3, 3] = first.R_33, first.t_3 / np.linalg.norm(first.t_3)
    # The people the reference view shares with v1 (the winning hypothesis' pairs), triangulated (baseline 1);
    # keypoints that do not fit the pose are left out.
    n_f = max(len(v.frames) for v in views)
    cams01 = [make_camera(n, np.eye(3), np.zeros(5), T[v], 2, 2) for n, v in (("a", 0), ("b", v1))]
    people3d: dict[int, np.ndarray] = {}
    for ra, rb in first.matching:
        xy0, c0 = _track_points(views[0], ra, K[0], n_f)
        xy1, c1 = _track_points(views[v1], rb, K[v1], n_f)
        with np.errstate(all="ignore"):
            tri = triangulate_points(np.stack([xy0, xy1]), np.stack([c0, c1]), cams01, distorted=False,
                                     min_conf=MIN_CONF, outlier_px=np.inf)  # fmt: skip
        err = np.where(tri.used_vn, tri.reproj_px_vn, -np.inf).max(axis=0)
        good = np.isfinite(err) & (err < thr_px / K[0][0, 0]) & (c0 >= MIN_CONF) & (c1 >= MIN_CONF)
        people3d[ra] = np.where(good[:, None], tri.xyz_n3, np.nan)
    inliers = [0] * len(views)
    inliers[v1] = first.n_inliers
    notes = []
    for v in range(1, len(views)):
        if v == v1:
            continue
        placed = _pnp(views[v], K[v], people3d, n_f, thr_px)
        if placed is None:
            notes.append(f"view {views[v].name}: its pose could not be found from the people it shares with the "
                         "other views; it is left out.")  # fmt: skip
            continue
        n_in, rvec, tvec = placed
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
