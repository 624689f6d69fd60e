"""SMPLify-style fitting of Anny to keypoints, 3D landmarks, prompts and a mask (Levenberg-Marquardt).

Terms (each a block of residuals; all in the OpenCV camera frame, metres, pixels):
- 2D reprojection of the detected keypoints, confidence-weighted, Huber-robust;
- 2D keypoint prompts ("this joint is here"): the same with a much smaller sigma (strong);
- the detector's metric 3D landmarks, hip-centred, compared up to a rotation (Procrustes), also where
  the 2D is unsure (occluded limbs keep their 3D guess, at a floor weight);
- the directions of the main bones against the landmarks' (same rotation), free of the landmarks' bone
  lengths: each limb keeps its own length and takes its tilt in depth from the 3D;
- the person mask: projected surface samples are pulled inside the mask (distance transform);
- a pose prior per bone (twist / swing / hinge, see prior.py) and a shape prior toward the average;
- optionally (FitOptions.sigma_length) free bone lengths under a Gaussian prior (bone_lengths.py);
- optionally a log-normal prior on the focal length when the focal is estimated with the body.
Pose, translation, phenotype (shape) and focal length are solved together; shape and focal are
switched on after a few pose-only iterations. The fit reports the variance of log(focal) so that
several people seen by one camera can share one focal (pipelines/camera/focal.py). (A step that
scales the root with the focal conditions the focal better, but on real photos it only let the weak,
noisy evidence of one body move the focal further: 13 % median error instead of 11 % on pose2sim_single.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.body.anny_model import FIT_PHENOTYPES, AnnyBody, RestState
from pipelines.body.anny_pose import nearest_rotations
from pipelines.hmr.bone_lengths import LengthTerms
from pipelines.hmr.kinematics import PointModel, Skeleton, forward, rotvec_to_matrix
from pipelines.hmr.prior import PriorTerms

# Bones whose direction the 3D landmarks give (parent keypoint, child keypoint).
DIRECTION_BONES: list[tuple[str, str]] = [("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")]
for _s in ("left", "right"):
    DIRECTION_BONES += [(f"{_s}_shoulder", f"{_s}_elbow"), (f"{_s}_elbow", f"{_s}_wrist"),
                        (f"{_s}_hip", f"{_s}_knee"), (f"{_s}_knee", f"{_s}_ankle"), (f"{_s}_hip", f"{_s}_shoulder"),
                        (f"{_s}_heel", f"{_s}_foot_index")]  # fmt: skip


@dataclass
class FitTargets:
    """What the fit must explain, for one person."""

    names: list[str]
    """Keypoint names (a subset of the Anny point names)."""
    xy_k2: np.ndarray
    """Detected pixel positions (K, 2)."""
    conf_k: np.ndarray
    """Confidences in [0, 1]; 0 = unused."""
    hip3d_k3: np.ndarray | None = None
    """Metric 3D landmarks (K, 3), hip-centred, camera-aligned axes; NaN rows are unused."""
    prompts: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Keypoint prompts: name -> pixel position; strong constraints."""
    mask_hw: np.ndarray | None = None
    """Person mask in [0, 1] at image resolution (silhouette term), or None."""


@dataclass
class FitState:
    """A body pose in the camera frame: the fit's variables."""

    local_j33: np.ndarray
    """Bone rotations relative to the parent (root: world rotation), Anny 'world-orient' convention."""
    root_pos_3: np.ndarray
    """Root bone head in the camera frame (metres)."""
    pheno_p: np.ndarray
    """Anny phenotype values (AnnyBody.phenotype_labels order)."""
    focal_px: float
    length_scale_l: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Relative change of each bone length of pipelines.hmr.bone_lengths (empty: lengths not fitted)."""

    def copy(self) -> FitState:
        return FitState(self.local_j33.copy(), self.root_pos_3.copy(), self.pheno_p.copy(), float(self.focal_px),
                        self.length_scale_l.copy())  # fmt: skip


@dataclass
class FitOptions:
    pose_iters: int = 6
    """LM iterations on pose and translation only."""
    shape_iters: int = 4
    """Further iterations with shape (and focal, if estimated) free too."""
    fit_shape: bool = True
    fit_focal: bool = False
    focal_prior_px: float | None = None
    focal_sigma_log: float = 0.35
    min_conf_2d: float = 0.05
    """2D keypoints of a lower confidence are not used (their 3D landmarks still are, at min_weight_3d); above
    it a keypoint weighs its confidence. Under 0.05 BlazePose's points are mostly extrapolations out of the
    frame (20 COCO tuning photos: ankles and knees of confidence < 0.05 lie 54-69 % of the box, median, from
    the body); the keypoints of 0.05-0.2 (occluded but in the frame) were dropped by the earlier cut at 0.2,
    which left the body's joint 4.2 % of the box (median) from its keypoint there, against 0.7 % above 0.2
    (1.7 % with this cut; README, "Finding everyone")."""
    sigma_px: float | None = None
    """2D sigma in pixels; None = 0.4% of the person's height in the image (at least 1.5 px)."""
    sigma_prompt_px: float = 0.5
    sigma_3d_m: float = 0.06
    min_weight_3d: float = 0.3
    """Weight of a 3D landmark whose 2D confidence is lower than this (occluded joints keep their 3D)."""
    sigma_dir: float = 0.15
    """Sigma of the bone-direction term (difference of unit vectors, about radians); 0 = off."""
    sigma_dir_depth: float | None = None
    """Sigma of the same term's depth component (camera z: towards / away), which the 2D cannot tell;
    None = sigma_dir. 0.08 (chosen on the tuning data, bench/accuracy_lab3d.py's TUNED_ON) took H36M S1+S5
    from +9 % to +4 % of MediaPipe's PA-MPJPE but changed nothing beyond noise on the held-out data and
    raised the 2D error (pose2sim_multi 3.99 -> 4.65 px), so it is not the default."""
    sigma_shape: float = 0.3
    sigma_length: float = 0.0
    """Prior sigma of each bone length's relative change (pipelines.hmr.bone_lengths); 0 = lengths fixed
    (Anny's proportions). 0.08 changed the held-out PA-MPJPE within noise (S7 -3.6 mm, S8 -0.8 mm,
    pose2sim_multi -0.1 mm) and cost pose2sim_single 0.9 mm (README, 3D accuracy), so it is not the default."""
    sigma_mask_px: float = 6.0
    mask_samples: int = 300
    huber_k: float = 2.5
    loss_2d: str = "huber"
    """Robust loss of the 2D term beyond huber_k sigmas, as IRLS weights: "huber" (linear), or "cauchy"
    (redescending: weight 1 / (1 + (r / huber_k)^2), so the cost the LM compares, r^2 / (1 + (r / huber_k)^2),
    is bounded and a keypoint far off stops pulling; the multi-view body fit, whose inlier keypoints can
    disagree with any body during a fast motion)."""

    def __post_init__(self) -> None:
        if self.loss_2d not in LOSSES_2D:
            raise ValueError(f"FitOptions.loss_2d must be one of {', '.join(LOSSES_2D)}, not {self.loss_2d!r}")


SCALE_CONF = 0.2
"""Keypoints of at least this confidence set the 2D sigma's scale (the person's height in the image)."""

LOSSES_2D: tuple[str, ...] = ("huber", "cauchy")
"""The robust losses of the 2D term (FitOptions.loss_2d)."""


def robust_sqrt_weight(norm: np.ndarray, o: FitOptions) -> np.ndarray:
    """Square root of the IRLS weight of each 2D residual norm (in sigmas), of any shape: Huber (1 up to
    huber_k, then sqrt(huber_k / r)) or Cauchy (1 / sqrt(1 + (r / huber_k)^2)), as `o.loss_2d` says."""
    if o.loss_2d == "cauchy":
        return 1.0 / np.sqrt(1.0 + (norm / o.huber_k) ** 2)
    if o.loss_2d != "huber":  # set after the options were made (FitOptions.__post_init__ checks the others)
        raise ValueError(f"FitOptions.loss_2d must be one of {', '.join(LOSSES_2D)}, not {o.loss_2d!r}")
    return np.where(norm > o.huber_k, np.sqrt(o.huber_k / np.maximum(norm, 1e-9)), 1.0)


@dataclass
class FitReport:
    state: FitState
    rest: RestState
    G_j33: np.ndarray
    o_j3: np.ndarray
    xy_pred_k2: np.ndarray
    """Projection of every target keypoint after the fit."""
    err_px_k: np.ndarray
    """2D error per target keypoint (NaN where unused)."""
    iterations: int
    cost: float
    focal_log_var: float | None = None
    """When the focal was solved: the variance of log(focal) at the solution (Laplace approximation,
    the focal prior included), to weigh this person's focal against other people's."""


def _with_focal(j: np.ndarray, free_focal: bool, col: np.ndarray | None = None) -> np.ndarray:
    """Jacobian rows (..., C) with the focal's column appended (zeros, or `col`) when the focal is free."""
    if not free_focal:
        return j
    return np.concatenate([j, (np.zeros(j.shape[:-1]) if col is None else col)[..., None]], axis=-1)


def term_2d_b(uv_bo2: np.ndarray, duv_bo23: np.ndarray, dx_bo3c: np.ndarray | None, xy_bo2: np.ndarray,
              sig_bo: np.ndarray, sqrt_w_bo: np.ndarray, cxy: np.ndarray, o: FitOptions,
              free_focal: bool) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """The 2D term of B people (keypoints and prompts, Huber or Cauchy via IRLS weights): residuals (B, 2O) of
    the projections uv (B, O, 2) against the observations, and with the points' Jacobian dx (B, O, 3, C) theirs
    (B, 2O, C (+1 with a free focal: uv - c is d uv / d log f))."""
    n_b = len(uv_bo2)
    e = (uv_bo2 - xy_bo2) / sig_bo[..., None]
    wk = (sqrt_w_bo * robust_sqrt_weight(np.linalg.norm(e, axis=-1), o))[..., None]
    r = (e * wk).reshape(n_b, -1)
    if dx_bo3c is None:
        return r, None
    j = (duv_bo23 @ dx_bo3c) / sig_bo[..., None, None] * wk[..., None]
    j = _with_focal(j, free_focal, (uv_bo2 - cxy) / sig_bo[..., None] * wk)
    return r, j.reshape(n_b, -1, j.shape[-1])


def terms_3d_b(x_bk3: np.ndarray, dx_bk3c: np.ndarray | None, hip_idx: list[int], h3_bk3: np.ndarray,
               w3_bk: np.ndarray, use3d_b: np.ndarray, bone_a: np.ndarray, bone_b: np.ndarray, w_bone_bp: np.ndarray,
               o: FitOptions, free_focal: bool) -> list[tuple[np.ndarray, np.ndarray | None]]:  # fmt: skip
    """The 3D terms of B people: the metric landmarks h3 (hip-centred, weights w3, 0 = unused) against the
    hip-centred points up to a rotation (Procrustes), then the directions of the bones (bone_a -> bone_b,
    weights w_bone) against the landmarks' (the same rotation). (residuals (B, R), Jacobian (B, R, C) or None)
    per term; people without 3D (use3d_b False) get the identity rotation (and should have weights 0)."""
    n_b = len(x_bk3)
    rel = x_bk3 - x_bk3[:, hip_idx].mean(1)[:, None]
    # The rotation only for people with 3D: numpy's stacked SVD raises for the whole stack if one matrix
    # holds a NaN, so another person's must not enter it.
    R = np.broadcast_to(np.eye(3), (n_b, 3, 3))
    if use3d_b.any():
        every = use3d_b.all()  # (the one-person fit: no copies)
        h3, w3, rel3 = (h3_bk3, w3_bk, rel) if every else (h3_bk3[use3d_b], w3_bk[use3d_b], rel[use3d_b])
        U, _, Vt = np.linalg.svd((h3 * w3[..., None] ** 2).transpose(0, 2, 1) @ rel3)
        neg = np.linalg.det(U @ Vt) < 0
        if neg.any():
            U[neg, :, -1] *= -1
        R_33 = (U @ Vt).transpose(0, 2, 1)
        if every:
            R = R_33
        else:
            R = R.copy()
            R[use3d_b] = R_33
    r3 = (rel - h3_bk3 @ R.transpose(0, 2, 1)) / o.sigma_3d_m * w3_bk[..., None]
    j3 = None
    if dx_bk3c is not None:
        d_rel = dx_bk3c - dx_bk3c[:, hip_idx].mean(1, keepdims=True)
        j3 = _with_focal(d_rel / o.sigma_3d_m * w3_bk[..., None, None], free_focal)
        j3 = j3.reshape(n_b, -1, j3.shape[-1])
    out = [(r3.reshape(n_b, -1), j3)]
    # Bone directions against the landmarks' (same rotation): free of the landmarks' bone lengths, so a limb
    # keeps its own length and takes its tilt in depth from the 3D.
    if len(bone_a) and o.sigma_dir > 0:
        d_b3 = x_bk3[:, bone_b] - x_bk3[:, bone_a]
        length = np.linalg.norm(d_b3, axis=-1, keepdims=True)
        u_b3 = d_b3 / length
        tgt = h3_bk3[:, bone_b] - h3_bk3[:, bone_a]
        tn = np.linalg.norm(tgt, axis=-1, keepdims=True)
        tgt = tgt @ R.transpose(0, 2, 1) / np.where(tn > 0, tn, 1.0)
        sig_c = np.array([o.sigma_dir, o.sigma_dir, o.sigma_dir_depth or o.sigma_dir])
        wb = w_bone_bp[..., None] / sig_c
        jd = None
        if dx_bk3c is not None:
            P = (np.eye(3) - u_b3[..., :, None] * u_b3[..., None, :]) / length[..., None]
            jd = (P @ (dx_bk3c[:, bone_b] - dx_bk3c[:, bone_a])) * wb[..., None]
            jd = _with_focal(jd, free_focal)
            jd = jd.reshape(n_b, -1, jd.shape[-1])
        out.append((((u_b3 - tgt) * wb).reshape(n_b, -1), jd))
    return out


def term_mask_b(d_bm: np.ndarray, g_bm2: np.ndarray | None, uv_bm2: np.ndarray, duv_bm23: np.ndarray,
                dx_bm3c: np.ndarray | None, scale_b: np.ndarray, cxy: np.ndarray,
                free_focal: bool) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """The silhouette term of B people: the distances d (B, M) (px) of the projected surface samples uv to the
    mask, times scale_b (1 / sigma / sqrt(M / 50); 0 without a mask), and with the distance's image gradient g
    (B, M, 2) and the samples' Jacobian dx (B, M, 3, C) their Jacobian (B, M, C (+1 with a free focal))."""
    r = d_bm * scale_b[:, None]
    if dx_bm3c is None or g_bm2 is None:
        return r, None
    js = np.einsum("zmb,zmbn->zmn", np.einsum("zma,zmab->zmb", g_bm2, duv_bm23), dx_bm3c)  # (2x faster than @)
    js = _with_focal(js, free_focal, np.einsum("bka,bka->bk", g_bm2, uv_bm2 - cxy))
    return r, js * scale_b[:, None, None]


def term_pose_prior_b(rp_ba5: np.ndarray, Jp_ba53: np.ndarray | None, cols_a: np.ndarray, n_active: int,
                      n_cols: int) -> tuple[np.ndarray, np.ndarray | None]:  # fmt: skip
    """The pose prior's residuals (B, A, 5) and Jacobians (B, A, 5, 3) (prior.prior_residuals_b) as rows (B, 5A)
    and (B, 5A, C): prior bone a turns active bone cols_a[a] (columns 3 cols_a[a] .. +3 of the 3 n_active)."""
    n_b, n_pr = rp_ba5.shape[:2]
    r = rp_ba5.reshape(n_b, -1)
    if Jp_ba53 is None:
        return r, None
    jp = np.zeros((n_b, n_pr, 5, n_active, 3))
    jp[:, np.arange(n_pr), :, cols_a, :] = Jp_ba53.transpose(1, 0, 2, 3)
    jp = jp.reshape(n_b, n_pr * 5, 3 * n_active)
    return r, np.concatenate([jp, np.zeros((n_b, n_pr * 5, n_cols - 3 * n_active))], axis=2)


def terms_shape_focal_b(pheno_bs: np.ndarray, focal_b: np.ndarray, k_shape: int, n_cols: int, o: FitOptions,
                        free_shape: bool, free_focal: bool,
                        want_jac: bool) -> list[tuple[np.ndarray, np.ndarray | None]]:  # fmt: skip
    """The shape prior (the fitted phenotypes pheno_bs (B, S) toward 0.5, columns k_shape .. +S) and the focal
    prior (log-normal around o.focal_prior_px, the last column) of B people, where free."""
    n_b, n_s = pheno_bs.shape
    out: list[tuple[np.ndarray, np.ndarray | None]] = []
    if free_shape:
        js = None
        if want_jac:
            js = np.zeros((n_b, n_s, n_cols))
            js[:, :, k_shape : k_shape + n_s] = np.eye(n_s) / o.sigma_shape
        out.append(((pheno_bs - 0.5) / o.sigma_shape, js))
    if free_focal and o.focal_prior_px:
        jf = None
        if want_jac:
            jf = np.zeros((n_b, 1, n_cols))
            jf[:, 0, -1] = 1.0 / o.focal_sigma_log
        out.append(((np.log(focal_b / o.focal_prior_px) / o.focal_sigma_log)[:, None], jf))
    return out


class _Problem:
    """Residuals and Jacobians of one fit, for a fixed set of targets."""

    def __init__(self, body: AnnyBody, skel: Skeleton, pm: PointModel, targets: FitTargets, K_33: np.ndarray,
                 opts: FitOptions, surface: PointModel | None) -> None:  # fmt: skip
        self.body, self.skel, self.pm, self.opts = body, skel, pm, opts
        self._dc: np.ndarray | None = None
        self.obs_point: np.ndarray | None = None
        """Point index of each 2D observation row (None: one row per target point, in order); set by
        subclasses that see a point several times (pipelines.multiview.body_fit: once per camera)."""
        self._dc_rest: RestState | None = None
        self.stop_rel = 0.0
        """An LM phase stops early once an accepted step lowers the cost by less than this fraction of it (0 =
        never: the phase's iterations run unless no step improves); set by pipelines.multiview.body_fit."""
        self.cxy = K_33[:2, 2].copy()
        self.lengths = LengthTerms.build(skel, body.bone_labels) if opts.sigma_length > 0 else None
        self.n_length = self.lengths.n_lengths if self.lengths is not None else 0
        self.surface = surface
        names = targets.names
        # Effective 2D observations: prompts replace detections of the same name.
        xy = targets.xy_k2.astype(np.float64).copy()
        w2d = np.clip(targets.conf_k.astype(np.float64), 0, 1).copy()
        # The sigma's scale, the person's height in the image, from the confident keypoints only.
        vis = w2d >= SCALE_CONF
        w2d[w2d < opts.min_conf_2d] = 0.0
        sig = np.full(len(names), 1.0)
        if opts.sigma_px is not None:
            base_sigma = opts.sigma_px
        elif vis.sum() >= 2:
            base_sigma = max(1.5, 0.004 * float(np.ptp(xy[vis, 1])) / 0.8)
        else:
            base_sigma = 3.0
        sig[:] = base_sigma
        for name, (px, py) in targets.prompts.items():
            k = names.index(name)
            xy[k] = (px, py)
            w2d[k] = 1.0
            sig[k] = opts.sigma_prompt_px
        self.xy_obs, self.sqrt_w2d, self.sig2d = xy, np.sqrt(w2d), sig
        self.hip_idx = [names.index("left_hip"), names.index("right_hip")]
        h3 = targets.hip3d_k3
        self.use3d = h3 is not None and np.isfinite(h3).all(axis=1).sum() >= 6
        if self.use3d:
            # Every landmark the detector placed in 3D counts, also where its 2D is unsure (occluded
            # limbs): there the 3D guess is the only evidence besides the prior.
            valid = np.isfinite(h3).all(axis=1)
            self.h3_valid = valid
            self.h3 = np.where(valid[:, None], h3 - h3[self.hip_idx].mean(0), 0.0)
            self.w3 = np.sqrt(np.where(valid, np.clip(targets.conf_k, opts.min_weight_3d, 1), 0.0))
            pairs = [(names.index(p), names.index(c)) for p, c in DIRECTION_BONES if p in names and c in names]
            pairs = [(i, j) for i, j in pairs if valid[i] and valid[j]]
            self.bone_a = np.array([i for i, _ in pairs], dtype=np.int64)
            self.bone_b = np.array([j for _, j in pairs], dtype=np.int64)
            self.w_bone = self.w3[self.bone_a] * self.w3[self.bone_b]
        if targets.mask_hw is not None and surface is not None:
            self._prepare_mask(targets.mask_hw)
        else:
            self.dt = None

    def _prepare_mask(self, mask_hw: np.ndarray) -> None:
        import cv2

        # Distance (px) to the mask, on a crop around it: outside the crop the distance is extrapolated
        # by clamping, which still points back toward the person.
        inside = mask_hw >= 0.5
        rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
        if len(rows) == 0:
            self.dt = None
            return
        h, w = mask_hw.shape
        pad = int(0.15 * max(rows[-1] - rows[0], cols[-1] - cols[0])) + 8
        y0, y1 = max(0, rows[0] - pad), min(h, rows[-1] + pad + 1)
        x0, x1 = max(0, cols[0] - pad), min(w, cols[-1] + pad + 1)
        outside = (~inside[y0:y1, x0:x1]).astype(np.uint8)
        dt = cv2.distanceTransform(outside, cv2.DIST_L2, 3).astype(np.float32)
        self.dt = dt
        self.dt_gx = cv2.Sobel(dt, cv2.CV_32F, 1, 0, ksize=3) / 8.0
        self.dt_gy = cv2.Sobel(dt, cv2.CV_32F, 0, 1, ksize=3) / 8.0
        self.dt_origin = np.array([x0, y0], dtype=np.float64)

    @staticmethod
    def _bilinear(img: np.ndarray, xy_n2: np.ndarray) -> np.ndarray:
        h, w = img.shape
        x = np.clip(xy_n2[:, 0] - 0.5, 0, w - 1.001)
        y = np.clip(xy_n2[:, 1] - 0.5, 0, h - 1.001)
        x0, y0 = x.astype(int), y.astype(int)
        fx, fy = x - x0, y - y0
        return (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
                + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)  # fmt: skip

    def project(self, x_k3: np.ndarray, focal: float) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (K, 2) and d pixel / d x (K, 2, 3)."""
        z = np.clip(x_k3[:, 2], 1e-3, None)
        uv = focal * x_k3[:, :2] / z[:, None] + self.cxy
        d = np.zeros((len(z), 2, 3))
        d[:, 0, 0] = focal / z
        d[:, 1, 1] = focal / z
        d[:, :, 2] = -focal * x_k3[:, :2] / z[:, None] ** 2
        return uv, d

    def build(self, state: FitState, rest: RestState, active: np.ndarray, sub_aj: np.ndarray, prior: PriorTerms,
              free_shape: bool, free_focal: bool, want_jac: bool):  # fmt: skip
        """Stacked residuals, and the Jacobian if asked: columns [3A rotations, 3 translation,
        L bone lengths (with sigma_length), S shape, 1 focal]."""
        o_opts = self.opts
        heads = rest.heads_j3
        n_l = self.n_length
        if n_l:
            heads = self.lengths.shifted_heads(rest.heads_j3, state.length_scale_l)
        G, o = forward(self.skel, heads, state.local_j33, state.root_pos_3)
        offs = self.pm.rest_offsets(rest.coeffs_n, rest.heads_j3)
        x, contrib = self.pm.evaluate(offs, G, o)
        f = state.focal_px
        obs = self.obs_point
        uv, duv_dx = self.project(x if obs is None else x[obs], f)
        n_a = len(active)
        n_s = len(FIT_PHENOTYPES) if free_shape else 0
        n_cols = 3 * n_a + 3 + n_l + n_s + (1 if free_focal else 0)
        res, jacs = [], []

        dx_dtheta = None
        if want_jac:
            Jr = self.pm.rotation_jacobian(contrib, o, sub_aj, active).reshape(len(x), 3, 3 * n_a)
            dx_dtheta = np.concatenate([Jr, np.broadcast_to(np.eye(3), (len(x), 3, 3))], axis=2)
            if n_l:
                dx_dtheta = np.concatenate([dx_dtheta, self.lengths.point_jacobian(self.pm, rest.heads_j3, G)], axis=2)
            if free_shape:
                dx_dtheta = np.concatenate([dx_dtheta, self._shape_jac(rest, G, self.pm)], axis=2)

        # 2D keypoints and prompts; the metric 3D landmarks and bone directions (batches of one)
        dx_obs = None if dx_dtheta is None else (dx_dtheta if obs is None else dx_dtheta[obs])[None]
        r2, j2 = term_2d_b(uv[None], duv_dx[None], dx_obs, self.xy_obs[None], self.sig2d[None], self.sqrt_w2d[None],
                           self.cxy, o_opts, free_focal)  # fmt: skip
        terms = [(r2, j2)]
        if self.use3d:
            terms += terms_3d_b(x[None], None if dx_dtheta is None else dx_dtheta[None], self.hip_idx, self.h3[None],
                                self.w3[None], np.ones(1, dtype=bool), self.bone_a, self.bone_b, self.w_bone[None],
                                o_opts, free_focal)  # fmt: skip
        for r_t, j_t in terms:
            res.append(r_t[0])
            if want_jac:
                jacs.append(j_t[0])

        # Silhouette: surface samples pulled inside the mask
        if self.dt is not None and self.surface is not None:
            xs, cs = self.surface.evaluate(self.surface.rest_offsets(rest.coeffs_n, rest.heads_j3), G, o)
            uvs, duvs = self.project(xs, f)
            uvc = uvs - self.dt_origin
            g = dxs = None
            if want_jac:
                g = np.stack([self._bilinear(self.dt_gx, uvc), self._bilinear(self.dt_gy, uvc)], axis=1)[None]
                Jrs = self.surface.rotation_jacobian(cs, o, sub_aj, active).reshape(len(xs), 3, 3 * n_a)
                dxs = np.concatenate([Jrs, np.broadcast_to(np.eye(3), (len(xs), 3, 3))], axis=2)
                if n_l:
                    dxs = np.concatenate([dxs, self.lengths.point_jacobian(self.surface, rest.heads_j3, G)], axis=2)
                if free_shape:
                    dxs = np.concatenate([dxs, self._shape_jac(rest, G, self.surface)], axis=2)
                dxs = dxs[None]
            scale = np.array([1.0 / o_opts.sigma_mask_px / np.sqrt(len(xs) / 50.0)])
            rs, js = term_mask_b(self._bilinear(self.dt, uvc)[None], g, uvs[None], duvs[None], dxs, scale, self.cxy,
                                 free_focal)  # fmt: skip
            res.append(rs[0])
            if want_jac:
                jacs.append(js[0])

        # Pose prior, bone-length prior, shape and focal priors
        rp, Jp = prior.residuals(state.local_j33, G, self.skel.parents)
        pos = {int(b): i for i, b in enumerate(active)}
        cols = np.array([pos[int(b)] for b in prior.bones], dtype=np.int64)
        terms = [term_pose_prior_b(rp[None], Jp[None] if want_jac else None, cols, n_a, n_cols)]
        if n_l:
            jl = np.zeros((1, n_l, n_cols))
            jl[0, :, 3 * n_a + 3 : 3 * n_a + 3 + n_l] = np.eye(n_l) / o_opts.sigma_length
            terms.append(((state.length_scale_l / o_opts.sigma_length)[None], jl))
        terms += terms_shape_focal_b(state.pheno_p[self._shape_idx()][None], np.array([f]), 3 * n_a + 3 + n_l, n_cols,
                                     o_opts, free_shape, free_focal, want_jac)  # fmt: skip
        for r_t, j_t in terms:
            res.append(r_t[0])
            if want_jac:
                jacs.append(j_t[0])

        r = np.concatenate(res)
        J = np.concatenate(jacs, axis=0) if want_jac else None
        return r, J, (x, uv, G, o)

    def _shape_idx(self) -> list[int]:
        return [self.body.phenotype_labels.index(n) for n in FIT_PHENOTYPES]

    def _shape_jac(self, rest: RestState, G: np.ndarray, pm: PointModel) -> np.ndarray:
        if self._dc_rest is not rest:  # the phenotype Jacobian changes only with the rest state
            self._dc = self.body.coeffs_jacobian(rest.pheno_p, indices=self._shape_idx())
            self._dc_rest = rest
        _, dheads = self.body.heads_basis
        return pm.shape_jacobian(self._dc, dheads, G)


def rotate_subtrees_b(skel: Skeleton, local_bj33: np.ndarray, G_bj33: np.ndarray, active: np.ndarray,
                      is_active_bj: np.ndarray, delta_ba3: np.ndarray) -> np.ndarray:  # fmt: skip
    """Local rotations (B, J, 3, 3) of B people after turning each active bone's subtree about its head by a
    world-axis rotation vector (delta (B, A, 3), parents first: each child in its rotated parent's world), one
    depth level at a time; a bone outside a person's own active set (is_active_bj False) keeps its rotation."""
    n_b = len(local_bj33)
    E = np.broadcast_to(np.eye(3), local_bj33.shape).copy()
    E[:, active] = rotvec_to_matrix(delta_ba3.reshape(-1, 3)).reshape(n_b, len(active), 3, 3)
    new = local_bj33.copy()
    G_new = np.empty_like(G_bj33)
    G_new[:, 0] = np.where(is_active_bj[:, 0, None, None], E[:, 0] @ G_bj33[:, 0], G_bj33[:, 0])
    new[:, 0] = G_new[:, 0]
    for lvl, p in zip(skel.levels[1:], skel.level_parents, strict=True):
        Gp = G_new[:, p]
        act = is_active_bj[:, lvl]
        some = act.any(axis=0)  # the level's bones that someone turns
        if some.any():
            a, Ga = lvl[some], Gp[:, some]
            L = Ga.transpose(0, 1, 3, 2) @ E[:, a] @ Ga @ local_bj33[:, a]
            new[:, a] = L if act[:, some].all() else np.where(act[:, some, None, None], L, local_bj33[:, a])
        G_new[:, lvl] = Gp @ new[:, lvl]
    # Rounding makes products of rotations drift from orthonormal, and a transpose is the inverse only of a
    # rotation: over chained warm starts (video) the drift grows. Project the updated bones back (batched).
    proj = nearest_rotations(new[:, active].reshape(-1, 3, 3)).reshape(n_b, len(active), 3, 3)
    mine = is_active_bj[:, active]
    new[:, active] = proj if mine.all() else np.where(mine[..., None, None], proj, new[:, active])
    return new


def rotate_subtrees(skel: Skeleton, local_j33: np.ndarray, G_j33: np.ndarray, active: np.ndarray,
                    delta_a3: np.ndarray) -> np.ndarray:  # fmt: skip
    """rotate_subtrees_b for one person (every bone of `active` turned)."""
    is_active = np.zeros((1, len(local_j33)), dtype=bool)
    is_active[0, active] = True
    return rotate_subtrees_b(skel, local_j33[None], G_j33[None], active, is_active, delta_a3[None])[0]


def apply_update(skel: Skeleton, state: FitState, G_j33: np.ndarray, active: np.ndarray, step: np.ndarray,
                 shape_idx: list[int], free_shape: bool, free_focal: bool, n_length: int = 0) -> FitState:  # fmt: skip
    """New state after an LM step: world-axis rotations of each active bone's subtree (parents first)."""
    n_a = len(active)
    new = state.copy()
    new.local_j33 = rotate_subtrees(skel, state.local_j33, G_j33, active, step[: 3 * n_a].reshape(n_a, 3))
    new.root_pos_3 = state.root_pos_3 + step[3 * n_a : 3 * n_a + 3]
    k = 3 * n_a + 3
    if n_length:
        new.length_scale_l = np.clip(state.length_scale_l + step[k : k + n_length], -0.3, 0.4)
        k += n_length
    if free_shape:
        new.pheno_p = state.pheno_p.copy()
        new.pheno_p[shape_idx] = np.clip(state.pheno_p[shape_idx] + step[k : k + len(shape_idx)], 0.0, 1.0)
        k += len(shape_idx)
    if free_focal:
        new.focal_px = float(state.focal_px * np.exp(np.clip(step[k], -0.5, 0.5)))
    return new
