"""Fuse tracked 2D people of several calibrated views into 3D people over time.

1. keypoints undistorted (per view), people associated across views (pipelines.multiview.associate);
2. time offsets estimated from the people's motion (pipelines.multiview.sync);
3. robust confidence-weighted triangulation (pipelines.multiview.triangulate), then the cameras
   refined by bundle adjustment on the inlier keypoints (pipelines.multiview.refine); offsets are
   estimated again with the refined cameras (and the cameras refined again if they changed);
4. final triangulation per person and frame, a skeleton check (consistent_bones: joints of bones far from the
   person's median length triangulated again from a consistent subset of their views, or left out), light
   temporal smoothing (Savitzky-Golay over ~0.1 s,
   scipy.signal), and one height per person for the sequence (median bone lengths).
World frame and units are those of the calibration (metres); pixels are undistorted source pixels.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy.signal import savgol_filter

from pipelines.keypoints.names import BLAZEPOSE_NAMES, COCO17_NAMES
from pipelines.multiview.associate import MIN_CONF, Person, associate
from pipelines.multiview.calibration import CalibratedCamera, undistort_points
from pipelines.multiview.flips import apply_swaps, fix_left_right
from pipelines.multiview.refine import RefineReport, bundle_adjust
from pipelines.multiview.sync import estimate_offsets, shift_frames
from pipelines.multiview.triangulate import TriangulationResult, triangulate_points
from pipelines.multiview.views2d import ViewTracks

FUSED_JOINT_NAMES: list[str] = COCO17_NAMES + ["left_heel", "right_heel", "left_foot_index", "right_foot_index"]
"""The joints fused and written (BlazePose names: COCO-17 and the feet)."""
HEAD_ABOVE_EARS_M = 0.12
"""Height of the head above the ears added to the segment lengths (a typical adult's), metres."""
_IDX = np.array([BLAZEPOSE_NAMES.index(n) for n in FUSED_JOINT_NAMES])
CHECKED_BONES: list[tuple[str, str]] = [
    ("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"),
    ("left_shoulder", "left_hip"), ("right_shoulder", "right_hip"),
    ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
    ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"),
    ("left_hip", "left_knee"), ("left_knee", "left_ankle"),
    ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
]  # fmt: skip
"""The bones whose lengths the skeleton check compares with the person's median (FuseOptions.bone_tolerance)."""


@dataclass
class FuseOptions:
    """How the views are fused."""

    sync: bool = True
    """Estimate each camera's time offset."""
    max_offset: int = 6
    """Largest offset searched, in frames."""
    refine: bool = True
    """Refine the cameras by bundle adjustment."""
    fix_left_right: bool = True
    """Swap a view's left/right keypoints in the frames where the swapped ones agree much better with the
    other views (pipelines.multiview.flips)."""
    intrinsics: bool | str = False
    """Also refine each camera's focal length and principal point (True), or its focal length only ("focal")."""
    ba_frames: int = 25
    """Bundle adjustment on about this many frames, evenly spread: every n-th frame, n = frames // ba_frames (at
    least 1), so its cost stays bounded on long captures; the final triangulation uses every frame. On 100
    frames every 4th (before: every 2nd; chosen on pose2sim_single: median reprojection 5.16 -> 5.11 px, the
    bundle adjustment ~2x faster)."""
    outlier_px: float = 50.0
    """Views farther than this from the consensus are left out of a point (triangulate_points)."""
    refined_outlier_px: float = 20.0
    """The same threshold for the final triangulation once the cameras are refined (about 3 sigma of the
    keypoints' noise once the cameras agree; chosen on pose2sim_single)."""
    bone_tolerance: float = 0.3
    """Skeleton check of the final triangulation: a bone (shoulders, hips, upper and lower limbs, torso sides)
    whose length on a frame differs from the person's median over the sequence by more than this fraction of
    it (and by more than `bone_tolerance_m`) is implausible, however well its views agree (two views wrong the
    same way, a left/right swap in one view); its joints are triangulated again from the subset of their views
    that makes their bones plausible (most views, then least error), and a joint no subset explains is left out
    (no observation: the body fit predicts it from the others). 0 = off. See `consistent_bones`."""
    bone_tolerance_m: float = 0.05
    """The smallest length change counted as implausible (metres; the keypoints' own noise on short bones)."""
    smooth_s: float = 0.0
    """Length of a Savitzky-Golay window over the 3D joints in seconds (0 = none; the 2D keypoints are
    already 1-euro filtered per view). Off by default: 0.1 s raised the median reprojection on
    pose2sim_single from 5.7 to 6.1 px and on pose2sim_multi from 7.2 to 10.1 px."""


@dataclass
class BoneCheck:
    """What the skeleton check (consistent_bones) changed on one person."""

    retriangulated: int = 0
    """(frame, joint) points triangulated again from a subset of their views."""
    dropped: int = 0
    """(frame, joint) points left out (no subset of views gives them plausible bones)."""


@dataclass
class FusedPerson:
    """One person in 3D over the frame grid."""

    id: int
    """Person id (0, 1, ... by decreasing number of views and frames)."""
    members: dict[int, list[int]]
    """View index -> that view's track rows that are this person."""
    joints_fk3: np.ndarray
    """World joints (F, K, 3) in metres (FUSED_JOINT_NAMES); NaN where not triangulated."""
    height_m: float
    """Standing height estimated from the median bone lengths, metres."""
    obs_xy_vfk2: np.ndarray | None = None
    """The keypoints the final triangulation saw (views, F, K, 2): undistorted source pixels, shifted onto the
    frame grid by the time offsets, left/right swaps undone (the body fit's targets)."""
    conf_vfk: np.ndarray | None = None
    """Their confidences (views, F, K); 0 where absent."""
    inlier_vfk: np.ndarray | None = None
    """Bool (views, F, K): the observation took part in the final triangulation (outlier views out)."""
    bone_check: BoneCheck | None = None
    """What the skeleton check changed (FuseOptions.bone_tolerance); None when it did not run."""

    @property
    def frames_ok(self) -> np.ndarray:
        """Frames (grid indices) where the person has at least 12 triangulated joints."""
        return np.isfinite(self.joints_fk3).all(-1).sum(-1) >= 12


@dataclass
class FusionResult:
    """Everything the multi-view fusion found."""

    cams: list[CalibratedCamera]
    """The cameras used for the final result (refined when refinement ran)."""
    offsets_v: np.ndarray
    """Per view: time offset in frames (see pipelines.multiview.sync)."""
    people: list[FusedPerson]
    """The fused people."""
    n_frames: int
    """Length of the common frame grid (reference view frames)."""
    reproj_px_vf: np.ndarray
    """Per view and frame: median reprojection error of the fused joints on that view's inlier keypoints."""
    median_reproj_px: float
    """Median over every inlier observation of every view, person and frame (pixels)."""
    median_reproj_px_v: np.ndarray
    """The same per view."""
    plain_median_reproj_px: float
    """Plain triangulation with the given calibration and no offsets (the baseline), pixels."""
    refine: RefineReport | None = None
    """What the bundle adjustment changed (None without refinement)."""
    obs_xy_pvfk2: list[np.ndarray] = field(default_factory=list)
    """Per person: the raw (distorted) keypoints (views, F, K, 2) on the grid, for the viewer."""
    warnings: list[str] = field(default_factory=list)
    """Plain-language notes (views that see nobody, ...)."""
    inlier_share: float = float("nan")
    """Share of the confident keypoints (>= 0.5) of the associated people that the final triangulation used."""
    median_reproj_all_px: float = float("nan")
    """Median reprojection over all those confident keypoints, inliers or not (pixels)."""
    left_right_swaps: int = 0
    """(person, view, frame) detections where some left/right joints were swapped back."""

    @property
    def used_v(self) -> np.ndarray:
        """Bool per view: some fused person is seen by it (the others' offsets and errors mean nothing)."""
        return np.array([any(v in p.members for p in self.people) for v in range(len(self.cams))])


def _view_obs(view: ViewTracks, cam: CalibratedCamera, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undistorted and raw keypoints (tracks, n_frames, K, 2) and conf of one view (fused joints only)."""
    t, f = view.xy_tfk2.shape[:2]
    raw = np.full((t, n_frames, len(_IDX), 2), np.nan)
    conf = np.zeros((t, n_frames, len(_IDX)))
    raw[:, :f] = view.xy_tfk2[:, :, _IDX]
    conf[:, :f] = view.conf_tfk[:, :, _IDX]
    und = undistort_points(raw.reshape(-1, 2), cam).reshape(raw.shape) if t else raw.copy()
    conf = np.where(np.isfinite(und).all(-1), conf, 0.0)
    return und, raw, conf


def _person_obs(person: Person, arrays: list[np.ndarray], n_views: int, fill: float) -> np.ndarray:
    """Merge a person's rows per view into (views, F, K[, 2])."""
    shape = next(a.shape[1:] for a in arrays if len(a))
    out = np.full((n_views, *shape), fill)
    for v, rows in person.members.items():
        for r in rows:
            seen = np.isfinite(arrays[v][r]) if fill != fill else arrays[v][r] > 0
            if seen.ndim == 3:
                seen = seen.all(-1)
            frames = seen.any(-1)
            out[v, frames] = arrays[v][r][frames]
    return out


def _shifted(a_vf: np.ndarray, offsets_v: np.ndarray, fill: float) -> np.ndarray:
    return np.stack([shift_frames(a_vf[v], float(offsets_v[v]), fill) for v in range(len(a_vf))])


def _triangulate_people(und: list[np.ndarray], conf: list[np.ndarray], offsets_v: np.ndarray,
                        cams: list[CalibratedCamera], outlier_px: float, irls: int = 3,
                        huber_px: float = 3.0, every: int = 1):  # noqa: ANN202 - list of (result, xy, conf)
    """Per person: the robust triangulation of every `every`-th grid frame (after the time shift; each point
    is solved on its own, so a subsample gives the same points as the whole), with its shifted inputs."""
    out = []
    for xy_vfk2, c_vfk in zip(und, conf, strict=True):
        xy_s, c_s = _shifted(xy_vfk2, offsets_v, np.nan), _shifted(c_vfk, offsets_v, 0.0)
        xy_s, c_s = xy_s[:, ::every], c_s[:, ::every]
        n_v, n_f, n_k = c_s.shape
        xy_vn2, c_vn = xy_s.reshape(n_v, -1, 2), np.where(c_s >= MIN_CONF, c_s, 0.0).reshape(n_v, -1)
        w_vn = c_vn
        for _ in range(1 + irls):  # reweighted (Huber, `huber_px`) as the bundle adjustment's robust loss
            res = triangulate_points(xy_vn2, w_vn, cams, distorted=False, min_conf=1e-6, outlier_px=outlier_px)
            err = np.nan_to_num(res.reproj_px_vn, nan=np.inf)
            w_vn = c_vn * np.minimum(1.0, huber_px / np.maximum(err, 1e-9))
            w_vn = np.where(np.isfinite(err) | (c_vn == 0), w_vn, c_vn)
        out.append((res, xy_s, c_s))
    return out


def consistent_bones(res: TriangulationResult, xy_vfk2: np.ndarray, w_vfk: np.ndarray, cams: list[CalibratedCamera],
                     outlier_px: float, tolerance: float, tolerance_m: float,
                     passes: int = 2) -> tuple[TriangulationResult, BoneCheck]:  # fmt: skip
    """The skeleton check of one person's triangulation (points n = frame * K + joint, FUSED_JOINT_NAMES).

    The person's bone lengths (CHECKED_BONES) are their medians over the sequence; on a frame a bone is
    implausible when its length is off by more than max(`tolerance` x median, `tolerance_m`). Each joint of an
    implausible bone is triangulated again (plain DLT + Gauss-Newton) from every subset of at least 2 of its
    confident views (`w_vfk` > 0) whose views all reproject it within `outlier_px`; the subset with the fewest
    implausible bones around the joint (the neighbours as they are), then the most views, then the smallest mean
    error replaces it where it has fewer implausible bones than now. `passes` rounds (a joint fixed in one lets its
    neighbour be judged in the next); then the joints that the still implausible bones blame are left out (NaN, no
    view used; `_blamed_joints`: a wrong elbow, not the right wrist beyond it). Returns the new result
    (reprojection errors recomputed) and what changed."""
    n_v, n_f, n_k = w_vfk.shape
    xyz_fk3 = res.xyz_n3.reshape(n_f, n_k, 3).copy()
    used_vfk = res.used_vn.reshape(n_v, n_f, n_k).copy()
    a_b = np.array([FUSED_JOINT_NAMES.index(a) for a, _ in CHECKED_BONES])
    b_b = np.array([FUSED_JOINT_NAMES.index(b) for _, b in CHECKED_BONES])
    incidence_bk = np.zeros((len(a_b), n_k), dtype=int)
    incidence_bk[np.arange(len(a_b)), a_b] = incidence_bk[np.arange(len(a_b)), b_b] = 1

    def lengths(x_fk3: np.ndarray) -> np.ndarray:
        return np.linalg.norm(x_fk3[:, a_b] - x_fk3[:, b_b], axis=-1)

    with warnings.catch_warnings():  # a bone never seen: its median is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        median_b = np.nanmedian(lengths(xyz_fk3), axis=0)
    tol_b = np.maximum(tolerance * median_b, tolerance_m)
    check = BoneCheck()
    if not np.isfinite(median_b).any():
        return res, check

    def bad(len_fb: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            return np.abs(len_fb - median_b) > tol_b  # NaN (a joint missing, a bone never seen): not implausible

    seen_vfk = w_vfk > 0
    subsets = [np.isin(np.arange(n_v), s) for r in range(n_v, 1, -1) for s in combinations(range(n_v), r)]
    changed_fk = np.zeros((n_f, n_k), dtype=bool)
    for _ in range(passes):
        n_bad_fk = bad(lengths(xyz_fk3)).astype(int) @ incidence_bk
        fs, ks = np.nonzero(n_bad_fk)
        if not len(fs):
            break
        best_bad, best_n, best_err = n_bad_fk[fs, ks].copy(), np.zeros(len(fs), int), np.full(len(fs), np.inf)
        best_x, best_used = xyz_fk3[fs, ks].copy(), used_vfk[:, fs, ks].copy()
        for m_v in subsets:
            idx = np.flatnonzero(seen_vfk[m_v][:, fs, ks].all(0))
            if not len(idx):
                continue
            f_i, k_i = fs[idx], ks[idx]
            w_vi = np.where(m_v[:, None], w_vfk[:, f_i, k_i], 0.0)
            tri = triangulate_points(xy_vfk2[:, f_i, k_i], w_vi, cams, distorted=False, min_conf=1e-6,
                                     outlier_px=np.inf)  # fmt: skip
            err_i = tri.reproj_px_vn[m_v]
            agree_i = np.isfinite(err_i).all(0) & (np.nan_to_num(err_i, nan=np.inf).max(0) < outlier_px)
            # the candidate's bones, its neighbours as they are
            n_bad_i = np.zeros(len(idx), int)
            for bone, (a, b) in enumerate(zip(a_b, b_b, strict=True)):
                for end, other in ((a, b), (b, a)):
                    sel = k_i == end
                    if sel.any():
                        length = np.linalg.norm(tri.xyz_n3[sel] - xyz_fk3[f_i[sel], other], axis=-1)
                        with np.errstate(invalid="ignore"):
                            n_bad_i[sel] += np.abs(length - median_b[bone]) > tol_b[bone]
            n_i, e_i = int(m_v.sum()), np.where(np.isfinite(err_i), err_i, 0.0).mean(0)
            better = agree_i & ((n_bad_i < best_bad[idx]) | ((n_bad_i == best_bad[idx]) & (best_n[idx] > 0)
                                                           & ((n_i > best_n[idx]) | ((n_i == best_n[idx])
                                                                                     & (e_i < best_err[idx])))))
            j = idx[better]
            best_bad[j], best_n[j], best_err[j] = n_bad_i[better], n_i, e_i[better]
            best_x[j], best_used[:, j] = tri.xyz_n3[better], m_v[:, None]
        new = best_n > 0
        xyz_fk3[fs[new], ks[new]] = best_x[new]
        used_vfk[:, fs[new], ks[new]] = best_used[:, new]
        changed_fk[fs[new], ks[new]] = True
    drop_fk = _blamed_joints(xyz_fk3, a_b, b_b, median_b, tol_b)
    xyz_fk3[drop_fk] = np.nan
    used_vfk[:, drop_fk] = False
    check.retriangulated, check.dropped = int((changed_fk & ~drop_fk).sum()), int(drop_fk.sum())
    xyz_n3 = xyz_fk3.reshape(-1, 3)
    err_vn = _reproj_vn(xyz_n3, xy_vfk2.reshape(n_v, -1, 2), cams)
    return TriangulationResult(xyz_n3, err_vn, used_vfk.reshape(n_v, -1)), check


def _blamed_joints(xyz_fk3: np.ndarray, a_b: np.ndarray, b_b: np.ndarray, median_b: np.ndarray,
                   tol_b: np.ndarray) -> np.ndarray:  # fmt: skip
    """Bool (F, K): the joints to leave out for the implausible bones (joints a_b-b_b, length off their median
    `median_b` by more than `tol_b`).

    Per frame, greedily: of the joints all of whose known bones are implausible, those with the most such bones
    go first, then the bones are judged again without them. A wrong elbow (its two bones implausible) goes and
    the wrist beyond it, whose one bone was implausible only through the elbow, stays; a wrong wrist goes alone;
    two joints that only share one implausible bone (equal evidence) both go. A joint left without a known
    bone this way (an orphan: the wrist beyond an elbow that went) goes too unless its own track vouches for it:
    the mean of its positions on the previous and the next frame (where it had no implausible bone) within its
    bones' tolerance (the smallest); a wrong elbow often comes with a wrong wrist (a limb mistaken in two views)."""
    n_k = xyz_fk3.shape[1]
    incidence_bk = np.zeros((len(a_b), n_k), dtype=int)
    incidence_bk[np.arange(len(a_b)), a_b] = incidence_bk[np.arange(len(a_b)), b_b] = 1

    def counts(drop_fk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x_fk3 = np.where(drop_fk[..., None], np.nan, xyz_fk3)
        len_fb = np.linalg.norm(x_fk3[:, a_b] - x_fk3[:, b_b], axis=-1)
        with np.errstate(invalid="ignore"):  # NaN (a joint missing, a bone never seen): not implausible
            bad_fb = np.abs(len_fb - median_b) > tol_b
        return bad_fb.astype(int) @ incidence_bk, np.isfinite(len_fb).astype(int) @ incidence_bk

    drop_fk = np.zeros(xyz_fk3.shape[:2], dtype=bool)
    n_bad_fk, n_known_fk = counts(drop_fk)
    had_bad_fk = n_bad_fk > 0
    for _ in range(n_k):
        blamed_fk = (n_bad_fk > 0) & (n_bad_fk == n_known_fk)
        if not blamed_fk.any():
            break
        drop_fk |= blamed_fk & (n_bad_fk == np.where(blamed_fk, n_bad_fk, 0).max(1, keepdims=True))
        n_bad_fk, n_known_fk = counts(drop_fk)
    # an orphan stays only where its own track vouches for it (the frames either side, without implausible bones)
    orphan_fk = had_bad_fk & (n_known_fk == 0) & ~drop_fk & np.isfinite(xyz_fk3).all(-1)
    trusted_fk3 = np.where(had_bad_fk[..., None], np.nan, xyz_fk3)
    track_fk3 = np.full_like(xyz_fk3, np.nan)
    track_fk3[1:-1] = 0.5 * (trusted_fk3[:-2] + trusted_fk3[2:])
    tol_k = np.full(n_k, np.inf)
    np.fmin.at(tol_k, a_b, tol_b)  # fmin: a bone never seen (NaN tolerance) does not count
    np.fmin.at(tol_k, b_b, tol_b)
    with np.errstate(invalid="ignore"):
        vouched_fk = np.linalg.norm(xyz_fk3 - track_fk3, axis=-1) <= tol_k  # NaN (no trusted neighbour): not
    drop_fk |= orphan_fk & ~vouched_fk
    return drop_fk


def _reproj_vn(xyz_n3: np.ndarray, xy_vn2: np.ndarray, cams: list[CalibratedCamera]) -> np.ndarray:
    err = np.full(xy_vn2.shape[:2], np.nan)
    for v, cam in enumerate(cams):
        with np.errstate(invalid="ignore"):
            err[v] = np.linalg.norm(cam.project_world(xyz_n3) - xy_vn2[v], axis=-1)
    return err


def smooth_joints(joints_fk3: np.ndarray, window: int, max_gap: int = 5) -> np.ndarray:
    """Fill gaps of up to `max_gap` frames linearly, then Savitzky-Golay (order 2) over runs long enough."""
    out = joints_fk3.copy()
    if window < 5:
        return out
    window |= 1
    n_f = len(out)
    t = np.arange(n_f)
    for k in range(out.shape[1]):
        for d in range(3):
            x = out[:, k, d]
            ok = np.isfinite(x)
            if ok.sum() < 2:
                continue
            filled = np.interp(t, t[ok], x[ok])
            gap = np.zeros(n_f, dtype=bool)  # frames within a gap longer than max_gap stay NaN
            run_start = None
            for f in range(n_f + 1):
                missing = f < n_f and not ok[f]
                if missing and run_start is None:
                    run_start = f
                elif not missing and run_start is not None:
                    if f - run_start > max_gap or run_start == 0 or f == n_f:
                        gap[run_start:f] = True
                    run_start = None
            filled[gap] = np.nan
            good = np.isfinite(filled)
            start = None
            for f in range(n_f + 1):
                if f < n_f and good[f]:
                    start = f if start is None else start
                elif start is not None:
                    if f - start >= window:
                        filled[start:f] = savgol_filter(filled[start:f], window, 2)
                    start = None
            out[:, k, d] = filled
    return out


def height_from_joints(joints_fk3: np.ndarray) -> float:
    """Standing height (m) from median segment lengths: heel-ankle-knee-hip, hip-shoulder, shoulder-ear,
    plus the head above the ears (0.12 m, a typical adult's)."""
    j = {n: joints_fk3[:, i] for i, n in enumerate(FUSED_JOINT_NAMES)}

    def seg(a: np.ndarray, b: np.ndarray) -> float:
        d = np.linalg.norm(a - b, axis=-1)
        d = d[np.isfinite(d)]
        return float(np.median(d)) if len(d) else float("nan")

    def mid(a: str, b: str) -> np.ndarray:
        return (j[a] + j[b]) / 2

    legs = np.nanmean([seg(j[f"{s}_heel"], j[f"{s}_ankle"]) + seg(j[f"{s}_ankle"], j[f"{s}_knee"])
                       + seg(j[f"{s}_knee"], j[f"{s}_hip"]) for s in ("left", "right")])  # fmt: skip
    torso = seg(mid("left_hip", "right_hip"), mid("left_shoulder", "right_shoulder"))
    neck = seg(mid("left_shoulder", "right_shoulder"), mid("left_ear", "right_ear"))
    return float(legs + torso + neck + HEAD_ABOVE_EARS_M)


def fuse_views(views: list[ViewTracks], cams: list[CalibratedCamera], options: FuseOptions | None = None, *,
               fps: float = 30.0, progress: Callable[[str], None] | None = None) -> FusionResult:  # fmt: skip
    """Fuse the views (same order as `cams`); see the module docstring."""
    options = options or FuseOptions()
    say = progress or (lambda _msg: None)
    n_views = len(views)
    n_frames = max(len(v.frames) for v in views)
    warnings: list[str] = []
    und, raw, conf = zip(*[_view_obs(v, c, n_frames) for v, c in zip(views, cams, strict=True)], strict=True)
    for view in views:
        if not len(view.track_ids):
            warnings.append(f"view {view.name}: nobody was found in this video; it is left out of the fusion.")
    say("associating people across views")
    people = associate(list(und), list(conf), cams, min_samples=min(100, max(20, 5 * n_frames)))
    if not people:
        return FusionResult(list(cams), np.zeros(n_views, int), [], n_frames, np.full((n_views, n_frames), np.nan),
                            float("nan"), np.full(n_views, np.nan), float("nan"), None, [], warnings +
                            ["no person is seen by two views: nothing can be triangulated."])  # fmt: skip
    people.sort(key=lambda p: -sum(len(r) for r in p.members.values()))
    und_p = [_person_obs(p, list(und), n_views, np.nan) for p in people]
    raw_p = [_person_obs(p, list(raw), n_views, np.nan) for p in people]
    conf_p = [np.where(np.isfinite(u).all(-1), _person_obs(p, list(conf), n_views, 0.0), 0.0)
              for p, u in zip(people, und_p, strict=True)]  # fmt: skip
    zero = np.zeros(n_views)
    plain = _triangulate_people(und_p, conf_p, zero, cams, options.outlier_px, irls=0)
    plain_err = np.concatenate([r.reproj_px_vn[r.used_vn] for r, _, _ in plain])
    plain_median = float(np.nanmedian(plain_err)) if len(plain_err) else float("nan")
    swaps = 0
    if options.fix_left_right:
        for i in range(len(people)):
            perm_vfk = fix_left_right(und_p[i], conf_p[i], cams, FUSED_JOINT_NAMES)
            swaps += int((perm_vfk != np.arange(perm_vfk.shape[-1])).any(-1).sum())
            und_p[i], raw_p[i], conf_p[i] = (apply_swaps(a, perm_vfk) for a in (und_p[i], raw_p[i], conf_p[i]))
    for v, view in enumerate(views):
        if len(view.track_ids) and not any(v in p.members for p in people):
            warnings.append(f"view {view.name}: its people match nobody in the other views (wrong calibration or "
                            "camera order?); it is left out of the fusion.")  # fmt: skip

    offsets = zero
    max_offset = min(options.max_offset, n_frames // 4)  # a shift leaves at least 3/4 of a short clip to compare
    if options.sync and max_offset >= 1:
        say("estimating time offsets")
        offsets, _ = estimate_offsets(und_p, conf_p, cams, max_offset)
    cur_cams = list(cams)
    report = None
    if options.refine:
        for _round in range(2):
            say("refining the cameras (bundle adjustment)")
            report = _refine(und_p, conf_p, offsets, cams, options)
            cur_cams = report.cams
            if not options.sync or max_offset < 1:
                break
            new_offsets, _ = estimate_offsets(und_p, conf_p, cur_cams, max_offset)
            if np.allclose(new_offsets, offsets, atol=0.05):
                break
            offsets = new_offsets
        if report is not None:
            warnings += report.warnings  # cameras held for a degenerate view of the people (the last round's)
    say("triangulating the people")
    final_outlier_px = options.refined_outlier_px if report is not None else options.outlier_px
    final = _triangulate_people(und_p, conf_p, offsets, cur_cams, final_outlier_px)
    bone_checks = [BoneCheck() for _ in final]
    if options.bone_tolerance > 0:
        say("checking the skeletons")
        for i, (res, xy_s, c_s) in enumerate(final):
            res, bone_checks[i] = consistent_bones(res, xy_s, np.where(c_s >= MIN_CONF, c_s, 0.0), cur_cams,
                                                   final_outlier_px, options.bone_tolerance,
                                                   options.bone_tolerance_m)  # fmt: skip
            final[i] = (res, xy_s, c_s)
    window = int(round(options.smooth_s * fps))
    fused: list[FusedPerson] = []
    err_all, err_view, err_conf, n_used = [], [[] for _ in range(n_views)], [], 0
    err_vf = [[[] for _ in range(n_frames)] for _ in range(n_views)]
    for pid, ((res, xy_s, _c), person) in enumerate(zip(final, people, strict=True)):
        n_k = len(FUSED_JOINT_NAMES)
        joints = smooth_joints(res.xyz_n3.reshape(n_frames, n_k, 3), window)
        err = _reproj_vn(joints.reshape(-1, 3), xy_s.reshape(n_views, -1, 2), cur_cams)
        used = res.used_vn & np.isfinite(err)
        confident = (_c.reshape(n_views, -1) >= MIN_CONF) & np.isfinite(err)
        err_conf.append(err[confident])
        n_used += int(used.sum())
        for v in range(n_views):
            e = err[v][used[v]]
            err_view[v].append(e)
            err_all.append(e)
            for n in np.flatnonzero(used[v]):
                err_vf[v][n // n_k].append(err[v, n])
        fused.append(FusedPerson(pid, person.members, joints, height_from_joints(joints), xy_s, _c,
                                 used.reshape(n_views, n_frames, n_k), bone_checks[pid]))  # fmt: skip
    all_e = np.concatenate(err_all) if err_all else np.zeros(0)
    per_view = np.array([np.median(np.concatenate(e)) if sum(map(len, e)) else np.nan for e in err_view])
    reproj_vf = np.array([[np.median(x) if x else np.nan for x in row] for row in err_vf])
    raw_shifted = [_shifted(r, offsets, np.nan) for r in raw_p]
    conf_e = np.concatenate(err_conf) if err_conf else np.zeros(0)
    return FusionResult(cur_cams, offsets, fused, n_frames, reproj_vf, float(np.median(all_e)) if len(all_e)
                        else float("nan"), per_view, plain_median, report, raw_shifted, warnings,
                        n_used / max(1, len(conf_e)), float(np.median(conf_e)) if len(conf_e) else float("nan"),
                        swaps)  # fmt: skip


def _refine(und_p: list[np.ndarray], conf_p: list[np.ndarray], offsets: np.ndarray, cams: list[CalibratedCamera],
            options: FuseOptions) -> RefineReport:  # fmt: skip
    """Bundle adjustment on the inlier keypoints of about `ba_frames` frames (starting from `cams`)."""
    every = max(1, und_p[0].shape[1] // max(1, options.ba_frames))
    tri = _triangulate_people(und_p, conf_p, offsets, cams, options.outlier_px, every=every)
    pts, views, pidx, xy, w = [], [], [], [], []
    base = 0
    for res, xy_s, c_s in tri:
        n_v = len(cams)
        keep_n = res.valid_n
        idx = np.flatnonzero(keep_n)
        remap = -np.ones(len(keep_n), dtype=int)
        remap[idx] = np.arange(len(idx)) + base
        pts.append(res.xyz_n3[idx])
        used = res.used_vn & keep_n[None]
        flat_xy, flat_c = xy_s.reshape(n_v, -1, 2), c_s.reshape(n_v, -1)
        for v in range(n_v):
            n = np.flatnonzero(used[v])
            views.append(np.full(len(n), v))
            pidx.append(remap[n])
            xy.append(flat_xy[v, n])
            w.append(flat_c[v, n])
        base += len(idx)
    return bundle_adjust(np.concatenate(pts), np.concatenate(views), np.concatenate(pidx), np.concatenate(xy),
                         np.concatenate(w), cams, intrinsics=options.intrinsics)  # fmt: skip
