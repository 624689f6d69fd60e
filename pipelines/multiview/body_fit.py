"""One Anny body per fused person and frame, fitted to every calibrated view at once.

The video mode's fit (pipelines.hmr.solver.BodyFitter, Levenberg-Marquardt on pose, translation and
shape with its pose and shape priors) with a multi-camera data term (MultiViewProblem): each fused
keypoint is projected into every view that saw it, and compared with that view's keypoint
(undistorted source pixels, shifted by the view's time offset, left/right swaps undone); only the
observations the robust triangulation kept (outlier views out) count, confidence-weighted, with a
redescending (Cauchy) robust loss (BodyOptions.loss_2d). The cameras are the fusion's (refined) ones.

Per person:
- the fit's frame is the OpenCV frame of its reference camera (the view that saw it most): the body
  is initialised there from the fused 3D joints (orientation and limbs: pipelines.hmr.init), then
  fitted to all views with its shape free (phenotype; one shape per person), on its best-seen frame;
- every `fit_every`-th frame from there, forward then backward, is fitted warm-started from the
  previous fit (pose and translation only, the shape held), on the 1-euro-filtered keypoints; the frames
  between are interpolated (bone rotations slerped, root linearly);
- recovery: a fitted or interpolated frame whose body reprojects more than `reinit_sigmas` view sigmas
  (median) from the person has lost it (a wrong pose carried over from the previous frame, a fast turn):
  more iterations, then a fit from scratch from the frame's fused joints, kept where clearly better;
- temporal smoothness: the whole motion is then filtered over time by the video mode's zero-phase
  Savitzky-Golay filter (pipelines.tracking.track_smoothing: each bone's rotation as a quaternion, the
  root's position; `smooth_s`), and the body posed again from it;
- the results are turned into the calibration's world frame (metres, z up): bone rotations, bone
  heads, joints. Frames where the person has fewer than 12 triangulated joints get no body.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection

import numpy as np
from scipy.spatial.transform import Rotation

from pipelines.body.anny_model import AnnyBody, RestState
from pipelines.body.anny_points import OUTPUT_JOINT_NAMES
from pipelines.hmr.fit import FitOptions, FitReport, FitState, FitTargets, _Problem, robust_sqrt_weight
from pipelines.hmr.kinematics import PointModel, forward
from pipelines.hmr.solver import BodyFitter
from pipelines.multiview.calibration import CalibratedCamera
from pipelines.multiview.fuse import FUSED_JOINT_NAMES, FusedPerson, FusionResult
from pipelines.tracking.track_smoothing import TrackSmoothingOptions, savgol_track, smooth_rotations

MIN_JOINTS = 12
"""A frame gets a body when the person has at least this many triangulated joints (FusedPerson.frames_ok)."""


@dataclass
class BodyOptions:
    """How the fused people's bodies are fitted."""

    fit: bool = True
    """Fit the bodies at all (off: keypoint tracks only)."""
    fit_every: int = 2
    """Fit every n-th frame, interpolate the others (speed; 1 = every frame: pose2sim_single 6.57 -> 6.50 px
    with `offset_pose_iters` 3, the same distance to the truth on synthetic views with the keypoints'
    temporally correlated noise, bench/multiview_noise_floor.py, ~+10 % of the pipeline's CPU)."""
    first_pose_iters: int = 8
    """LM iterations of the first (shape-solving) frame, pose only, then `shape_iters` with the shape free."""
    shape_iters: int = 6
    """LM iterations with the shape free on the first frame."""
    warm_pose_iters: int = 3
    """LM iterations of a warm-started frame (pose and translation only)."""
    sigma_frac: float = 0.005
    """2D sigma per view: this fraction of the person's height in that view's image (at least 1.5 px), as
    the single-view fit's 0.4 % / 0.8."""
    sigma_3d_m: float = 0.0
    """> 0: the warm-started frames also fit the fused (triangulated) joints, hip-centred, with this sigma
    (metres; the single-view fit's 3D landmark and bone-direction terms); 0 = the views' 2D only."""
    keypoint_offsets: bool = True
    """Per person, where the detector's keypoints sit on this body: after a first pass over the sequence, one
    rigid offset per keypoint in its main bone's frame (rest-pose axes, metres) is solved on every fitted
    frame and view at once (poses held; `_solve_keypoint_offsets`), and the fitted frames are fitted again
    with it (`offset_pose_iters`). Off: the keypoints are Anny's regressed points as they are."""
    offset_sigma_m: float = 0.03
    """Prior sigma of each keypoint offset (metres, zero mean)."""
    offset_every: int = 4
    """The first pass (for the offsets only) fits every n-th frame."""
    offset_pose_iters: int = 4
    """LM iterations of a warm-started frame in the final pass, once the offsets are known (4, was 2; chosen on
    pose2sim_single: 2 / 4 / 6 gave body median reprojection 6.72 / 6.57 / 6.49 px, and on its synthetic views
    of a known motion with the keypoints' noise, bench/multiview_noise_floor.py, 7.1 -> 6.6 mm from the truth
    (i.i.d. noise) and 8.6 -> 8.2 mm (noise correlated over time as the real one); bodies stage about
    +0.1-0.3 CPU s per person and 100 frames)."""
    stop_rel: float = 0.01
    """A warm-started frame's fit stops once an LM step lowers its cost by less than this fraction
    (MultiViewProblem.stop_rel; 0 = every iteration runs). 0.01 chosen on pose2sim_single (LM iterations with a
    Jacobian over the sequence / body px): 0: 290 / 6.452, 0.002: 284 / 6.443, 0.005: 278 / 6.449, 0.01: 265 / 6.444,
    0.02: 245 / 6.461; on its synthetic views (bench/multiview_noise_floor.py) 0 to 0.02 all 6.7 mm (i.i.d.) and
    8.5-8.6 mm (correlated noise) from the truth."""
    loss_2d: str = "cauchy"
    """Robust loss of the views' 2D term (FitOptions.loss_2d): "cauchy" (redescending: during a fast motion a
    view's inlier keypoints can disagree with any body, and a keypoint far off stops pulling) or "huber" (the
    single-view fit's; pose2sim_single 7.56 px against 6.74 with cauchy)."""
    loss_k: float = 1.5
    """Where that loss departs from the square, in sigmas (FitOptions.huber_k; pose2sim_single: 1.5 / 2.5 / 4
    gave 6.74 / 6.95 / 7.40 px with cauchy)."""
    reinit_sigmas: float = 3.0
    """A fitted frame whose keypoints reproject farther than this from the person (median over its inlier
    observations, in each view's 2D sigmas) has lost the person (a fast turn or limb, a wrong local minimum
    carried over from the previous frame): it gets `first_pose_iters` more iterations and, if still lost, a fit
    from scratch, initialised from the frame's fused 3D joints (the shape held), which replaces it only where it
    reprojects clearly better (`reinit_ratio`); an interpolated frame that far off is fitted too. 0 = never.
    On pose2sim_single no fitted frame is beyond 2.8 sigmas; a body turned by 90-180 degrees is 20-90 off."""
    reinit_ratio: float = 0.5
    """The fresh fit replaces a lost frame's only where its error (as reinit_sigmas) is below this fraction of the
    continued fit's (fused joints can be wrong themselves, e.g. left and right swapped, and a fresh start from
    them would flip the body between frames); 0 = more iterations only."""
    smooth_s: float = 0.2
    """Temporal smoothing of the fitted motion: a zero-phase Savitzky-Golay window (seconds) over each bone's
    rotation and the root (the video mode's pipelines.tracking.track_smoothing, its polynomial order), the
    bodies posed again from them; 0 = off (also when fit_bodies is not told the frame rate)."""
    processes: int = 2
    """People fitted at the same time: this process and up to `processes - 1` forked ones (each person's fit is
    single-threaded numpy, which holds the GIL, so threads would not help); 1 = one after the other. The same
    bodies to the bit either way. Only where the platform forks (Linux); elsewhere one after the other."""


@dataclass
class PersonBody:
    """A fused person's body over the frame grid (world frame of the calibration: metres, z up)."""

    id: int
    """The fused person's id (FusedPerson.id)."""
    pheno_p: np.ndarray
    """Anny phenotype (one shape for the sequence)."""
    height_m: float
    """Standing height of that body (rest pose), metres."""
    ref_view: int
    """Index of the camera whose frame the fit ran in."""
    frames: np.ndarray
    """Grid frame indices with a body (F',)."""
    fitted_f: np.ndarray
    """Bool (F',): the frame was fitted (False: interpolated)."""
    bone_rot_world_fj33: np.ndarray
    """Per frame: each bone's rotation relative to rest, world frame (J, 3, 3) (the fit's G turned into the world)."""
    bone_head_world_fj3: np.ndarray
    """Per frame: each bone's posed head (J, 3), metres, world frame."""
    root_world_f3: np.ndarray
    """Per frame: the root bone's head, metres, world frame."""
    joints_world_fk3: np.ndarray
    """Per frame: the body's joints (OUTPUT_JOINT_NAMES), metres, world frame."""
    keypoints_world_fk3: np.ndarray
    """Per frame: the body's points for FUSED_JOINT_NAMES (where the detector's keypoints sit on it), world frame."""
    reproj_px_vf: np.ndarray
    """Per view and grid frame: median distance between the body's reprojected keypoints and that view's
    inlier keypoints (undistorted source pixels); NaN where none."""
    median_reproj_px: float
    """Median of that distance over every inlier observation of every view and frame with a body."""
    fit_s: float = 0.0
    """Wall time of this person's fits, seconds."""
    joint_names: list[str] = field(default_factory=lambda: list(OUTPUT_JOINT_NAMES))
    """Names of joints_world_fk3."""


class OffsetPoints:
    """A PointModel whose point k is moved by a rigid offset `offset_k3[k]` on its main bone (the bone of its
    largest skinning weight): posed, it adds G_bone @ offset (rest-pose axes, metres). It is added to that
    (point, bone) pair's rest offset, so the pose and shape Jacobians of the wrapped model stay exact (an
    offset does not change with the shape)."""

    def __init__(self, pm: PointModel, offset_k3: np.ndarray) -> None:
        self.pm, self.offset_k3 = pm, offset_k3
        self.pair_k = main_pairs(pm)
        self.bone_k = pm.points.pair_bone[self.pair_k]

    def rest_offsets(self, coeffs_n: np.ndarray, heads_j3: np.ndarray) -> np.ndarray:
        offs = self.pm.rest_offsets(coeffs_n, heads_j3)
        offs[self.pair_k] += self.offset_k3
        return offs

    def __getattr__(self, name: str):  # noqa: ANN204 - everything else is the wrapped model's
        return getattr(self.pm, name)


def main_pairs(pm: PointModel) -> np.ndarray:
    """Per point of `pm`: the index of its (point, bone) pair of largest skinning weight (K,)."""
    pts = pm.points
    order = np.lexsort((-pts.pair_w, pts.pair_point))  # by point, the heaviest pair first
    first = np.r_[True, np.diff(pts.pair_point[order]) != 0]
    out = np.empty(len(pts.names), dtype=np.int64)
    out[pts.pair_point[order][first]] = order[first]
    return out


def project_observations(x_o3: np.ndarray, R_o33: np.ndarray, t_o3: np.ndarray, fxy_o2: np.ndarray,
                         cxy_o2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Each observation's point x_o3 (fit frame) in its camera (rotation R, translation t from the fit frame;
    focal lengths, principal point): undistorted pixels (O, 2) and d pixel / d x (O, 2, 3); depths clipped to
    1 mm in front of the camera. The one projection of the fit, its loss check and the keypoint offsets."""
    p = np.einsum("oab,ob->oa", R_o33, x_o3) + t_o3
    z = np.clip(p[:, 2], 1e-3, None)
    uv = fxy_o2 * p[:, :2] / z[:, None] + cxy_o2
    d = np.zeros((len(z), 2, 3))
    d[:, 0, 0] = fxy_o2[:, 0] / z
    d[:, 1, 1] = fxy_o2[:, 1] / z
    d[:, :, 2] = -fxy_o2 * p[:, :2] / z[:, None] ** 2
    return uv, np.einsum("oab,obc->oac", d, R_o33)


class MultiViewProblem(_Problem):
    """The single-view fit's residuals with the 2D term over several cameras: observation row o is target
    point `obs_point[o]` seen by a camera with rotation R (fit frame -> that camera), translation t,
    focal lengths and principal point (undistorted pixels); `offset_k3`: the person's keypoint offsets
    (OffsetPoints), None = none; `stop_rel`: _Problem.stop_rel (BodyOptions.stop_rel)."""

    def __init__(self, body: AnnyBody, skel, pm, targets: FitTargets, K_33: np.ndarray,  # noqa: ANN001
                 opts: FitOptions, surface, *, obs_point_o: np.ndarray, xy_o2: np.ndarray, w_o: np.ndarray,  # noqa: ANN001
                 sigma_o: np.ndarray, R_o33: np.ndarray, t_o3: np.ndarray, fxy_o2: np.ndarray,
                 cxy_o2: np.ndarray, offset_k3: np.ndarray | None = None, stop_rel: float = 0.0) -> None:  # fmt: skip
        super().__init__(body, skel, pm, targets, K_33, opts, surface)
        self.stop_rel = stop_rel
        if offset_k3 is not None:  # the person's keypoint offsets (BodyOptions.keypoint_offsets)
            self.pm = OffsetPoints(pm, offset_k3)
        self.obs_point = obs_point_o
        self.xy_obs, self.sqrt_w2d, self.sig2d = xy_o2, np.sqrt(w_o), sigma_o
        self.R_o33, self.t_o3, self.fxy_o2, self.cxy_o2 = R_o33, t_o3, fxy_o2, cxy_o2

    def project(self, x_o3: np.ndarray, focal: float) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (O, 2) of each observation's camera and d pixel / d x (O, 2, 3) (x in the fit frame)."""
        return project_observations(x_o3, self.R_o33, self.t_o3, self.fxy_o2, self.cxy_o2)


def _relative(cams: list[CalibratedCamera], ref: int) -> tuple[np.ndarray, np.ndarray]:
    """Per view: rotation (V, 3, 3) and translation (V, 3) from the reference camera's frame to the view's."""
    R_ref, t_ref = cams[ref].cam_T_world_44[:3, :3], cams[ref].cam_T_world_44[:3, 3]
    R = np.stack([c.cam_T_world_44[:3, :3] @ R_ref.T for c in cams])
    t = np.stack([c.cam_T_world_44[:3, 3] for c in cams]) - np.einsum("vab,b->va", R, t_ref)
    return R, t


class _PersonFitter:
    """Fits one fused person frame by frame (see the module docstring)."""

    def __init__(self, fitter: BodyFitter, person: FusedPerson, cams: list[CalibratedCamera], options: BodyOptions):
        self.fitter, self.person, self.cams, self.options = fitter, person, cams, options
        self.names = list(FUSED_JOINT_NAMES)
        w_vfk = np.where(person.inlier_vfk, person.conf_vfk, 0.0)
        self.w_vfk = w_vfk
        self.ref = int(np.argmax((w_vfk > 0).sum((1, 2))))
        self.R_v33, self.t_v3 = _relative(cams, self.ref)
        K_v33 = np.stack([c.camera.K_33 for c in cams])
        self.fxy_v2, self.cxy_v2 = np.stack([K_v33[:, 0, 0], K_v33[:, 1, 1]], axis=1), K_v33[:, :2, 2]
        """Per view: focal lengths and principal point (undistorted pixels)."""
        ref_T = cams[self.ref].cam_T_world_44
        self.R_ref, self.t_ref = ref_T[:3, :3], ref_T[:3, 3]
        xy = person.obs_xy_vfk2
        sig = np.full(len(cams), 3.0)
        for v in range(len(cams)):  # the person's height in each view's image
            ys = xy[v][..., 1][w_vfk[v] > 0]
            if len(ys) > 10:
                span = np.percentile(ys.reshape(-1), 98) - np.percentile(ys.reshape(-1), 2)
                sig[v] = max(1.5, options.sigma_frac * span)
        self.sigma_v = sig
        self.offset_k3: np.ndarray | None = None
        """The person's keypoint offsets once solved (OffsetPoints), None before."""
        self.n_reinit = 0
        """Frames found lost (tracked_step: beyond BodyOptions.reinit_sigmas after their warm-started fit)."""
        self._rest: tuple[bytes, RestState] | None = None
        """The last phenotype's rest state (`rest`): the shape is held after the first frame."""

    def rest(self, pheno_p: np.ndarray) -> RestState:
        """The body's rest state for `pheno_p` (the last one kept: the same arrays, not to be changed)."""
        key = np.asarray(pheno_p, dtype=np.float64).tobytes()
        if self._rest is None or self._rest[0] != key:
            self._rest = (key, self.fitter.body.rest_heads(pheno_p))
        return self._rest[1]

    def targets(self, f: int) -> tuple[FitTargets, Callable[..., _Problem]]:
        """The frame's targets (the fused joints, hip-centred in the reference camera, for the 3D init) and
        the multi-view problem factory over its observations."""
        p = self.person
        v_idx, k_idx = np.nonzero(self.w_vfk[:, f] > 0)
        fxy, cxy = self.fxy_v2[v_idx], self.cxy_v2[v_idx]
        j_ref = p.joints_fk3[f] @ self.R_ref.T + self.t_ref
        hips = [self.names.index("left_hip"), self.names.index("right_hip")]
        hip3d = j_ref - np.nanmean(j_ref[hips], axis=0)
        ref = self.ref
        conf_ref = np.where(p.inlier_vfk[ref, f], p.conf_vfk[ref, f], 0.0)
        xy_ref = np.nan_to_num(p.obs_xy_vfk2[ref, f])
        tg = FitTargets(self.names, xy_ref, conf_ref, hip3d)
        factory = partial(MultiViewProblem, obs_point_o=k_idx, xy_o2=p.obs_xy_vfk2[v_idx, f, k_idx],
                          w_o=np.clip(self.w_vfk[v_idx, f, k_idx], 0, 1), sigma_o=self.sigma_v[v_idx],
                          R_o33=self.R_v33[v_idx], t_o3=self.t_v3[v_idx], fxy_o2=fxy, cxy_o2=cxy,
                          offset_k3=self.offset_k3)  # fmt: skip
        return tg, factory

    def fit_options(self, hmr_options: FitOptions) -> FitOptions:
        """A copy of the HMR stage's fit options with this fit's robust loss."""
        opts = FitOptions(**{**hmr_options.__dict__})
        opts.loss_2d, opts.huber_k = self.options.loss_2d, self.options.loss_k
        return opts

    def first(self, f: int, hmr_options: FitOptions) -> FitState:
        """Initialise on frame f from the fused 3D joints, then fit pose and shape to every view."""
        o = self.options
        tg, factory = self.targets(f)
        K_ref = self.cams[self.ref].camera.K_33
        init = FitOptions(**{**hmr_options.__dict__})
        init.pose_iters, init.shape_iters, init.fit_shape, init.fit_focal = 2, 0, False, False
        warm = self.fitter.fit(tg, K_ref, init, None).state  # the 3D init in the reference view
        full = self.fit_options(hmr_options)
        full.pose_iters, full.shape_iters = o.first_pose_iters, o.shape_iters
        full.fit_shape, full.fit_focal = True, False
        full.sigma_dir = 0.0
        no3d = FitTargets(tg.names, tg.xy_k2, tg.conf_k, None)
        return self.fitter.fit(no3d, K_ref, full, warm, problem_factory=factory).state

    def step(self, f: int, warm: FitState, hmr_options: FitOptions, iters: int | None = None) -> FitState:
        """Fit frame f warm-started from `warm` (pose and translation only; `iters` LM iterations, default
        BodyOptions.warm_pose_iters)."""
        return self.step_report(f, warm, hmr_options, iters).state

    def step_report(self, f: int, warm: FitState, hmr_options: FitOptions, iters: int | None = None) -> FitReport:
        """`step`'s whole fit report (its 2D errors: `report_lost_sigmas`)."""
        tg, factory = self.targets(f)
        opts = self.fit_options(hmr_options)
        opts.pose_iters, opts.shape_iters = self.options.warm_pose_iters if iters is None else iters, 0
        opts.fit_shape, opts.fit_focal = False, False
        factory = partial(factory, stop_rel=self.options.stop_rel)
        if self.options.sigma_3d_m > 0:  # the fused joints as a target too
            opts.sigma_3d_m = self.options.sigma_3d_m
        else:
            tg = FitTargets(tg.names, tg.xy_k2, tg.conf_k, None)
        return self.fitter.fit(tg, self.cams[self.ref].camera.K_33, opts, warm.copy(), problem_factory=factory)

    def keypoints(self, state: FitState) -> np.ndarray:
        """The body's points for FUSED_JOINT_NAMES (K, 3) in the fit frame, with the keypoint offsets if solved."""
        rest = self.rest(state.pheno_p)
        pm = self.fitter.point_model(tuple(self.names))
        if self.offset_k3 is not None:
            pm = OffsetPoints(pm, self.offset_k3)
        G, o = forward(self.fitter.skel, rest.heads_j3, state.local_j33, state.root_pos_3)
        return pm.evaluate(pm.rest_offsets(rest.coeffs_n, rest.heads_j3), G, o)[0]

    def lost_sigmas(self, state: FitState, f: int) -> float:
        """How far the body of `state` is from the person on frame f: the median, over the frame's inlier
        observations, of its keypoint's reprojection error in that view's 2D sigmas (0 when there is none:
        nothing to lose, and nothing a re-fit could use)."""
        v_idx, k_idx = np.nonzero(self.w_vfk[:, f] > 0)
        if not len(v_idx):
            return 0.0
        x_k3 = self.keypoints(state)
        uv, _ = project_observations(x_k3[k_idx], self.R_v33[v_idx], self.t_v3[v_idx], self.fxy_v2[v_idx],
                                     self.cxy_v2[v_idx])  # fmt: skip
        err = np.linalg.norm(uv - self.person.obs_xy_vfk2[v_idx, f, k_idx], axis=1) / self.sigma_v[v_idx]
        return float(np.median(err))

    def report_lost_sigmas(self, report: FitReport, f: int) -> float:
        """lost_sigmas of a step's result from its own report (the same observations, in the same order, and the
        same projection: the same value, without posing the body again)."""
        v_idx = np.nonzero(self.w_vfk[:, f] > 0)[0]
        if not len(v_idx):
            return 0.0
        return float(np.median(report.err_px_k / self.sigma_v[v_idx]))

    def fresh_step(self, f: int, pheno_p: np.ndarray, hmr_options: FitOptions) -> FitReport:
        """Frame f fitted from scratch: initialised from its fused 3D joints (as the first frame) with the shape
        `pheno_p` held, then `first_pose_iters` LM iterations on every view."""
        tg, _ = self.targets(f)
        init = FitOptions(**{**hmr_options.__dict__})
        init.pose_iters, init.shape_iters, init.fit_shape, init.fit_focal = 2, 0, False, False
        fresh = self.fitter.fit(tg, self.cams[self.ref].camera.K_33, init, None).state  # the 3D init
        fresh.pheno_p = pheno_p.copy()
        return self.step_report(f, fresh, hmr_options, self.options.first_pose_iters)

    def tracked_step(self, f: int, warm: FitState, hmr_options: FitOptions, iters: int | None = None) -> FitState:
        """`step`, and where its result has lost the person (BodyOptions.reinit_sigmas): more iterations from it,
        and a fit initialised again from the fused 3D joints (the shape held), which replaces it only where its
        keypoints reproject clearly better (BodyOptions.reinit_ratio: a wrong fresh start, from fused joints
        that are themselves wrong, must not flip the body between frames)."""
        out = self.step_report(f, warm, hmr_options, iters)
        limit = self.options.reinit_sigmas
        if limit <= 0 or self.report_lost_sigmas(out, f) <= limit:
            return out.state
        self.n_reinit += 1
        more = self.step_report(f, out.state, hmr_options, self.options.first_pose_iters)
        lost = self.report_lost_sigmas(more, f)
        if lost <= limit or self.options.reinit_ratio <= 0:
            return more.state
        fresh = self.fresh_step(f, warm.pheno_p, hmr_options)
        return fresh.state if self.report_lost_sigmas(fresh, f) < self.options.reinit_ratio * lost else more.state

    def solve_offsets(self, states: dict[int, FitState], frames: np.ndarray, n_iter: int = 2) -> np.ndarray:
        """The keypoint offsets (K, 3) (OffsetPoints: rest-pose axes of each keypoint's main bone, metres) that
        bring the bodies of `states` (key -> state of grid frame frames[key]; poses held) closest to every
        view's inlier keypoints: per keypoint, Gauss-Newton on its confidence-weighted, Huber-robust
        reprojection residuals over all those frames and views (the fit's sigma per view), under a zero-mean
        Gaussian prior of sigma BodyOptions.offset_sigma_m. The offset of a keypoint enters only its own
        residuals, so each is a 3x3 solve."""
        fitter, o = self.fitter, self.options
        names = tuple(self.names)
        pm = fitter.point_model(names)
        n_k = len(names)
        pheno = next(iter(states.values())).pheno_p
        rest = fitter.body.rest_heads(pheno)
        offs0 = pm.rest_offsets(rest.coeffs_n, rest.heads_j3)
        pair_k = main_pairs(pm)
        bone_k = pm.points.pair_bone[pair_k]
        x0, Gb, v_o, k_o, xy_o, w_o = [], [], [], [], [], []
        for i, (key, st) in enumerate(sorted(states.items())):
            f = int(frames[key])
            G, og = forward(fitter.skel, rest.heads_j3, st.local_j33, st.root_pos_3)
            x0.append(pm.evaluate(offs0, G, og)[0])
            Gb.append(G[bone_k])
            v_idx, k_idx = np.nonzero(self.w_vfk[:, f] > 0)
            v_o.append(v_idx)
            k_o.append(i * n_k + k_idx)
            xy_o.append(self.person.obs_xy_vfk2[v_idx, f, k_idx])
            w_o.append(np.clip(self.w_vfk[v_idx, f, k_idx], 0, 1))
        x0_n3, G_n33 = np.concatenate(x0), np.concatenate(Gb)  # n = (state, keypoint)
        v, n, xy, w = (np.concatenate(a) for a in (v_o, k_o, xy_o, w_o))
        k = n % n_k
        sig = self.sigma_v[v]
        offset_loss = FitOptions(huber_k=2.5, loss_2d="huber")  # the offsets' own robust loss
        d_k3 = np.zeros((n_k, 3))
        for _ in range(n_iter):
            x = x0_n3[n] + np.einsum("oab,ob->oa", G_n33[n], d_k3[k])
            uv, duv_dx = project_observations(x, self.R_v33[v], self.t_v3[v], self.fxy_v2[v], self.cxy_v2[v])
            e = (uv - xy) / sig[:, None]
            norm = np.linalg.norm(e, axis=1)
            wt = w * robust_sqrt_weight(norm, offset_loss) ** 2  # IRLS weights
            J = np.einsum("oab,obc->oac", duv_dx, G_n33[n]) / sig[:, None, None]  # d e / d offset
            H = np.zeros((n_k, 3, 3))
            g = np.zeros((n_k, 3))
            np.add.at(H, k, wt[:, None, None] * np.einsum("oai,oaj->oij", J, J))
            np.add.at(g, k, wt[:, None] * np.einsum("oai,oa->oi", J, e))
            prec = 1.0 / o.offset_sigma_m**2
            d_k3 = d_k3 - np.linalg.solve(H + prec * np.eye(3), (g + prec * d_k3)[..., None])[..., 0]
        return d_k3


def _slerp_local(a_j33: np.ndarray, b_j33: np.ndarray, s: float) -> np.ndarray:
    """Per bone, the rotation a fraction s of the way from a to b."""
    rel = Rotation.from_matrix(np.swapaxes(a_j33, -1, -2) @ b_j33).as_rotvec()
    return a_j33 @ Rotation.from_rotvec(rel * s).as_matrix()


def _smoothed(fitter: BodyFitter, heads_j3: np.ndarray, G_fj33: np.ndarray, root_f3: np.ndarray, times_s: np.ndarray,
              window_s: float) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Bone rotations (F, J, 3, 3) and root heads (F, 3) filtered over time (track_smoothing), and the motion
    posed again from them: (G, posed heads (F, J, 3))."""
    options = TrackSmoothingOptions(window_s=window_s)
    G = smooth_rotations(G_fj33, times_s, options)
    root = savgol_track(root_f3, times_s, options)
    par = fitter.skel.parents
    local = G.copy()
    local[:, 1:] = np.swapaxes(G[:, par[1:]], -1, -2) @ G[:, 1:]
    out = [forward(fitter.skel, heads_j3, local[i], root[i]) for i in range(len(G))]
    return np.stack([g for g, _ in out]), np.stack([o for _, o in out])


def fit_person(fitter: BodyFitter, person: FusedPerson, cams: list[CalibratedCamera], options: BodyOptions,
               hmr_options: FitOptions, should_stop: Callable[[], None] | None = None,
               fps: float | None = None) -> PersonBody | None:  # fmt: skip
    """Fit one fused person (see the module docstring); None when no frame has enough joints. `fps`: the
    videos' frame rate (the temporal smoothing needs it)."""
    import time

    t0 = time.perf_counter()
    body = fitter.body
    ok_f = person.frames_ok
    frames = np.flatnonzero(ok_f)
    if not len(frames) or person.obs_xy_vfk2 is None:
        return None
    pf = _PersonFitter(fitter, person, cams, options)
    seen = (pf.w_vfk[:, frames] > 0).sum((0, 2))
    start_i = int(np.flatnonzero(seen >= 0.9 * seen.max())[0])
    first = pf.first(int(frames[start_i]), hmr_options)

    def fit_pass(every: int, iters: int | None) -> dict[int, FitState]:
        """Every `every`-th frame (and the ends), forward then backward from the start frame, each warm-started
        from the previous one."""
        keys = sorted(set(range(start_i % every, len(frames), every)) | {0, len(frames) - 1, start_i})
        out = {start_i: first if pf.offset_k3 is None else pf.step(int(frames[start_i]), first, hmr_options, iters)}
        for seq in ([k for k in keys if k > start_i], [k for k in keys if k < start_i][::-1]):
            prev = out[start_i]
            for k in seq:
                if should_stop is not None:
                    should_stop()
                prev = out[k] = pf.tracked_step(int(frames[k]), prev, hmr_options, iters)
        return out

    step = max(1, options.fit_every)
    iters_final = options.offset_pose_iters if options.keypoint_offsets else None
    if options.keypoint_offsets:
        pf.offset_k3 = pf.solve_offsets(fit_pass(max(1, options.offset_every), None), frames)
    states = fit_pass(step, iters_final)
    pheno = first.pheno_p
    rest = body.rest_heads(pheno)
    # Every frame with a body: fitted keys as they are, the others interpolated between their keys.
    key_arr = np.array(sorted(states))
    extra: dict[int, FitState] = {}
    n_b = len(body.bone_labels)
    n = len(frames)
    G_f = np.empty((n, n_b, 3, 3))
    o_f = np.empty((n, n_b, 3))
    for i in range(n):
        j = int(np.searchsorted(key_arr, i))
        if j < len(key_arr) and key_arr[j] == i:
            local, root = states[i].local_j33, states[i].root_pos_3
        else:
            a, b = int(key_arr[j - 1]), int(key_arr[j])
            s = (frames[i] - frames[a]) / (frames[b] - frames[a])
            local = _slerp_local(states[a].local_j33, states[b].local_j33, s)
            root = (1 - s) * states[a].root_pos_3 + s * states[b].root_pos_3
            limit = options.reinit_sigmas
            if limit > 0 and pf.lost_sigmas(FitState(local, root, pheno, first.focal_px), int(frames[i])) > limit:
                # the motion between the keys is not a slerp (a fast limb): this frame is fitted too
                near = states[a] if s <= 0.5 else states[b]
                extra[i] = pf.tracked_step(int(frames[i]), near, hmr_options, iters_final)
                local, root = extra[i].local_j33, extra[i].root_pos_3
        G_f[i], o_f[i] = forward(fitter.skel, rest.heads_j3, local, root)
    if fps and options.smooth_s > 0:
        G_f, o_f = _smoothed(fitter, rest.heads_j3, G_f, o_f[:, 0], frames / fps, options.smooth_s)
    # Into the world frame: x_world = R_ref^T (x_ref - t_ref).
    R_t = pf.R_ref.T
    G_w = np.einsum("ab,fjbc->fjac", R_t, G_f)
    o_w = (o_f - pf.t_ref) @ R_t.T
    rest_v = body.rest_vertices(rest.coeffs_n)
    # The reported joints (the regressor's vertices, skinned) as a point model: linear blend skinning is linear,
    # so each is a sum over bones of a bone transform and a precomputed term; no vertex is skinned.
    pm_joints = fitter.point_model(tuple(f"anny:{name}" for name in OUTPUT_JOINT_NAMES))
    offs_joints = pm_joints.rest_offsets(rest.coeffs_n, rest.heads_j3)
    joints = np.stack([pm_joints.evaluate(offs_joints, G_w[i], o_w[i])[0] for i in range(n)])
    pm = fitter.point_model(tuple(FUSED_JOINT_NAMES))
    if pf.offset_k3 is not None:
        pm = OffsetPoints(pm, pf.offset_k3)
    offs = pm.rest_offsets(rest.coeffs_n, rest.heads_j3)
    kp = np.stack([pm.evaluate(offs, G_w[i], o_w[i])[0] for i in range(n)])
    n_v = len(cams)
    err_vf = np.full((n_v, len(ok_f)), np.nan)
    all_err = []
    for v, cam in enumerate(cams):
        proj = cam.project_world(kp.reshape(-1, 3)).reshape(n, -1, 2)
        err = np.linalg.norm(proj - person.obs_xy_vfk2[v, frames], axis=-1)
        inl = pf.w_vfk[v, frames] > 0
        for i, f in enumerate(frames):
            if inl[i].any():
                err_vf[v, f] = float(np.median(err[i][inl[i]]))
        all_err.append(err[inl])
    errs = np.concatenate(all_err)
    return PersonBody(person.id, pheno.copy(), float(np.ptp(rest_v[:, 2])), pf.ref, frames,
                      np.isin(np.arange(n), [*key_arr, *extra]), G_w.astype(np.float32), o_w.astype(np.float32),
                      o_w[:, 0].copy(),
                      joints, kp, err_vf, float(np.median(errs)) if len(errs) else float("nan"),
                      time.perf_counter() - t0)  # fmt: skip


def fit_bodies(fusion: FusionResult, options: BodyOptions | None = None, *, hmr=None,  # noqa: ANN001
               progress: Callable[[str], None] | None = None, fps: float | None = None,
               meanwhile: Callable[[], None] | None = None) -> list[PersonBody]:  # fmt: skip
    """One body per fused person (see the module docstring); `hmr`: an embedded HMR stage (its body and
    fitter; created when None); `fps`: the videos' frame rate (without it, no temporal smoothing). With
    BodyOptions.processes > 1 and several people, people are fitted in forked processes beside this one
    (`_fit_people_forked`). `meanwhile`: other work for this process, called once (the outputs that need only
    the fusion, pipelines.modes.multiview's `on_fused`): with forked processes while they fit (then also with
    one person: it is fitted in a forked process), else before the fits (without bodies: at once). The same
    bodies to the bit either way."""
    options = options or BodyOptions()
    if not options.fit or not fusion.people:
        if meanwhile is not None:
            meanwhile()
        return []
    if hmr is None:
        from pipelines.registry import create

        hmr = create("hmr", "embedded")
    say = progress or (lambda _msg: None)
    people = list(fusion.people)
    fitted: dict[int, PersonBody | None] = {}
    # Linux only: macOS offers fork too, but a child forked after its system frameworks (Accelerate, the
    # Objective-C runtime) are loaded may crash or hang; a daemonic process (a Pool's worker) may have no children
    if (options.processes > 1 and (len(people) > 1 or meanwhile is not None) and sys.platform.startswith("linux")
            and not multiprocessing.current_process().daemon):  # fmt: skip
        fitted = _fit_people_forked(hmr, people, list(fusion.cams), options, say, fps, meanwhile)
    elif meanwhile is not None:
        meanwhile()
    for i, person in enumerate(people):
        if i not in fitted:  # one after the other (or a forked fit that did not come back: its error is raised here)
            message = f"fitting the body of person {person.id}"
            say(message)
            fitted[i] = fit_person(hmr.fitter, person, list(fusion.cams), options, hmr.options,
                                   partial(say, message), fps)  # fmt: skip
    return [fitted[i] for i in range(len(people)) if fitted[i] is not None]


def _forked_fit(conn: Connection, indices: list[int], work: tuple) -> None:
    """A forked process's work: fit the people `indices` of `work` (fitter, people, cameras, options, hmr options,
    fps: with fork, a Process's arguments are inherited, not pickled, so the loaded body model too) one after the
    other and send each back as it is done, (index, "ok", PersonBody), or (index, "failed", None) on an error: the
    parent then fits that person itself, so a failure is raised there with its own traceback."""
    fitter, people, cams, options, hmr_options, fps = work
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the process group: the parent kills its children
    try:
        for index in indices:
            try:
                out: PersonBody | None = fit_person(fitter, people[index], cams, options, hmr_options, None, fps)
            except Exception:  # noqa: BLE001 - reported to the parent, which fits this person again itself
                conn.send((index, "failed", None))
            else:
                conn.send((index, "ok", out))
    finally:
        conn.close()


FORKED_WAIT_FACTOR = 3.0
"""A forked group may take this many times as long as this process's own group, plus FORKED_WAIT_MIN_S, before
it is taken for stuck (say, on a lock another thread held at the fork): it is killed and its people are fitted
here. Not tuned: a group of equal work takes about 1x on a free core and 2x on a shared one."""
FORKED_WAIT_MIN_S = 30.0
FORKED_FRAME_S = 0.25
"""With no group of its own (one person and `meanwhile`: this process only writes outputs), the time bound is this
many seconds per frame of the forked people instead (plus FORKED_WAIT_MIN_S): ~10-25x a fitted frame's cost here
(9-26 ms a frame on pose2sim_single / pose2sim_multi at load 1-3). Not tuned."""


def _fit_people_forked(hmr, people: list[FusedPerson], cams: list[CalibratedCamera], options: BodyOptions,  # noqa: ANN001
                       say: Callable[[str], None], fps: float | None,
                       meanwhile: Callable[[], None] | None = None) -> dict[int, PersonBody | None]:  # fmt: skip
    """People split into `options.processes` groups of about equal work (frames with a body, the largest
    first): the first group fitted here, each other group in one forked process (started before this process's
    own fits), its people one after the other. With `meanwhile`, this process calls it first and then fits the
    last (lightest) group, or none with one group (all forked). Returns person index -> body for the people that
    came back; the people of a child that failed, died or outlived its time bound (FORKED_WAIT_FACTOR) are left
    out, and fit_bodies fits them here. `say` (the progress callback, which may raise to cancel) is called while
    waiting; on any exception the children are killed."""
    n_groups = min(options.processes, len(people))
    load = [0] * n_groups
    groups: list[list[int]] = [[] for _ in range(n_groups)]
    for i in sorted(range(len(people)), key=lambda i: -int(people[i].frames_ok.sum())):
        g = int(np.argmin(load))
        groups[g].append(i)
        load[g] += int(people[i].frames_ok.sum())
    if meanwhile is None:
        own, forked = groups[0], groups[1:]
    else:  # this process has the other work: the lightest group (the last one filled), none when there is one
        own, forked = (groups[-1], groups[:-1]) if n_groups > 1 else ([], groups)
    ctx = multiprocessing.get_context("fork")
    children: list[tuple[list[int], multiprocessing.process.BaseProcess, Connection]] = []
    out: dict[int, PersonBody | None] = {}
    try:
        # the work as the Process's arguments, not a module global: two runs at once (threads) must not mix
        work = (hmr.fitter, people, cams, options, hmr.options, fps)
        for indices in forked:
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_forked_fit, args=(send, indices, work), daemon=True)
            try:
                proc.start()
            except OSError:  # no fork (memory, process limits): this group's people are fitted here
                recv.close()
                break
            finally:
                send.close()
            children.append((indices, proc, recv))
        t0 = time.perf_counter()
        if meanwhile is not None:
            meanwhile()
        for i in own:
            message = f"fitting the body of person {people[i].id}"
            say(message)
            out[i] = fit_person(hmr.fitter, people[i], cams, options, hmr.options, partial(say, message), fps)
        t1 = time.perf_counter()
        if own:
            bound_s = FORKED_WAIT_FACTOR * (t1 - t0)
        else:  # nothing fitted here to compare with
            bound_s = FORKED_FRAME_S * sum(int(people[i].frames_ok.sum()) for group in forked for i in group)
        deadline = t1 + bound_s + FORKED_WAIT_MIN_S
        for indices, proc, recv in children:
            for i in indices:
                message = f"fitting the body of person {people[i].id}"
                say(message)
                while not recv.poll(0.1):
                    say(message)
                    if time.perf_counter() > deadline or (not proc.is_alive() and not recv.poll(0)):
                        break
                else:
                    try:
                        index, status, body = recv.recv()
                    except (EOFError, OSError):  # the child died before sending, or while it sent
                        break
                    if status == "ok":
                        out[index] = body
                    continue
                break  # this child is done for (died or stuck): the people it did not send are fitted here
    finally:
        for _, proc, recv in children:
            if proc.is_alive():
                proc.kill()
            proc.join()
            recv.close()
    return out

