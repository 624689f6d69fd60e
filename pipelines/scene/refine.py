"""Metric depth from a monocular depth map, anchored on the fitted people (the MetricHMSR idea).

The people of known metric size are a ruler: the visible surface of their fitted meshes (a z-buffer)
gives metric depths inside their masks, and the ground plane under their feet gives more on the
floor. The input depth is mapped to metres by

    refined(x) = s(x) * d(x) + b(x)

first with one global scale and shift (robust fit), then, by default, with the log-scale model

    refined(x) = exp(h(x)) * (g(x) + delta),   g = the global fit,

h a smooth field on a coarse grid and delta one global shift, in depth (in disparity for kind 'inverse':
1 / depth = exp(h) (g + delta)), fitted by Gauss-Newton IRLS on the relative residuals (`_fit_log_field`,
`RefineOptions.log_scale_kinds`). Otherwise (`log_scale_kinds=()`, the previous release) with a smooth
per-pixel affine field. For kind
'inverse' (disparity up to scale and shift) the global fit is in disparity (1 / depth = s * d + b), then
turned into depth, and the field maps that depth (d(x) above = 1 / (s d + b)), plus one global term
in its square (`RefineOptions.inverse_quadratic`). The field:
s and b live on a coarse grid of nodes, are bilinearly upsampled, kept smooth by second-difference
regularisation plus a weaker first-difference term (so that away from the anchors they level off rather
than extrapolate a slope) and pulled weakly towards the global fit; the data term is a relative error
(refined - anchor) / anchor, Cauchy-robust (IRLS on the sparse bilinear design; the 2 x nodes normal
equations solved directly), so that mask errors and occluders in front of a person count little.

Inputs are plain numpy arrays, the same size H x W: the depth (any units), anchor depths in metres
(NaN where none), and K_33 (pixels) for the ground. Depth = z along the optical axis, OpenCV frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import scipy.sparse as sp

DepthKind = Literal["metric", "relative", "inverse"]
DEPTH_KINDS: tuple[str, ...] = ("metric", "relative", "inverse")


@dataclass
class RefineOptions:
    """Constants of the refinement (chosen on the tuning seeds of bench/bench_scene.py)."""

    grid_cells: int = 6
    """Cells of the coarse grid along the image's long side (the short side: in proportion)."""
    smoothness: float = 0.1
    """Weight of the second differences of s and b between grid nodes (relative to all the data)."""
    first_diff: float = 0.02
    """Weight of the first differences of s and b (a membrane: far from the anchors, e.g. on the walls
    above the floor, the field levels off instead of extrapolating the anchors' slope; with smoothness 0.1
    it took the tuning seeds' AbsRel from 0.087 / 0.045 / 0.045 to 0.057 / 0.042 / 0.036 for inverse /
    relative / metric inputs)."""
    damping: float = 1e-3
    """Weight pulling the field towards the global scale and shift (where nothing constrains it)."""
    shift_damping: float = 1e-3
    """The same for the shift field alone (a larger value leaves the warp to the scale field)."""
    inverse_shift_damping: float = 1.0
    """`shift_damping` for kind 'inverse': a disparity shift is a large depth change far away, where
    nothing anchors it, so there the shift stays near the global one."""
    robust_scale: float = 0.05
    """Scale of the Cauchy loss on the relative residuals (0.05 = 5 %)."""
    irls_iterations: int = 6
    ground_weight: float = 10.0
    """Total weight of the ground anchors relative to the people's."""
    ground_tolerance: tuple[float, ...] = (0.3, 0.12)
    """Per pass: the relative distance to the ground plane within which a pixel is taken as ground."""
    max_anchors: int = 40_000
    """Anchors per group kept for the solve (a random subset beyond that)."""
    inverse_field_in_depth: bool = True
    """Kind 'inverse': the global scale and shift are fitted in disparity (the input is affine-invariant
    there), then the global fit is turned into depth and the smooth field is fitted in depth, as for
    'metric' input (a disparity's field extrapolates badly where nothing anchors it). False: the field
    in disparity too (the previous release). On the tuning seeds inverse AbsRel 0.057 -> 0.051."""
    inverse_quadratic: bool = True
    """With that depth field, also one global term in depth^2: a small error e of the global disparity
    shift is a depth error of about -e * depth^2, which the floor's range of depths shows."""
    quadratic_taper: float = 1.0
    """The depth^2 term's relative correction grows with the depth only up to the farthest anchor
    (times this), then tapers smoothly to at most twice that (`_tapered`): a background far beyond
    the anchors (a sky at hundreds of metres) is not scaled by its own depth."""
    ground_tilt_weight: float | None = None
    """Opt-in, off: weight of the prior keeping the ground plane's tilt (about the people's feet) where the ground fit
    put it; the tilt (2 unknowns: the gradient of the plane's inverse depth across the image) is fitted
    with the field, so the floor's own depth can correct a plane tilted by the bodies' lean. None: the
    plane as given. It did not help: the smooth warp explains a tilt as well, and the tilt's freedom
    only took the tuning seeds' relative AbsRel from 0.0395 to 0.0584 / 0.0433 / 0.0398 / 0.0395 with
    weights 0 / 0.01 / 0.1 / 1 (the body's up, 0.6 degrees off, is still the better tilt)."""
    ground_tilt_sigma: float | None = 0.1
    """Kinds 'metric' and 'relative': uncertainty of the ground plane's tilt about the people's feet (the
    gradient of its inverse depth across the image, times the median depth; about 2.5 x the angle in
    radians for a camera 1.5 m high
    seeing 3.5 m away). A tilt error's relative depth error grows as depth x image distance from the
    feet, so each ground anchor's weight is divided by 1 + (that error / `robust_scale`)^2. None: all
    ground anchors alike (the previous release, and kind 'inverse', whose depth^2 term needs the far
    floor). Tuning seeds, AbsRel metric 0.0353 -> 0.0340, relative 0.0395 -> 0.0392 (0.01 / 0.03 / 0.3:
    0.0395 / 0.0394 / 0.0397); for 'inverse' 0.0422 -> 0.0438, so not there."""
    ground_alone_max_miss: float = 0.2
    """With no person anchor in the depth map, the ground plane alone scales it only when the result meets the
    plane on its own floor pixels within this median relative miss; otherwise refine_depth raises ValueError
    (a few floor pixels, or a narrow band of far ones, leave scale and shift unconstrained: tuning seeds
    100-107 gave misses of 0.03-0.12 with a whole floor, and 0.4-99 with depths up to 6e5 m from 4-1000
    pixels or an 'inverse' map)."""
    ground_conflict_scale: float | None = 0.2
    """How far the ground may disagree with the people before it is down-weighted (None: never, the
    previous release). The people's anchors are the primary metric evidence; the ground plane is only as
    good as its fitted tilt and offset (the bodies' up, or the scene's vanishing point). The disagreement
    is the people's median relative residual under the ground's own global fit (scale and shift from the
    floor pixels alone) beyond their residual under their own (`_ground_agreement`); the ground's weight,
    in the global fit and in the field, is divided by 1 + (that excess / this)^2, and the global search
    only takes a scale that also keeps the people's pixels on their anchors. Tuning seeds (AbsRel metric /
    relative / inverse): None 0.034 / 0.039 / 0.042, 0.1 0.037 / 0.039 / 0.043, 0.2 0.035 / 0.038 / 0.042;
    with the ground moved 25 cm the largest error at the person 9.5 / 6.1 / 4.7 % (None), 8.5 / 5.5 / 5.3 %
    (0.2), 3.9 / 2.3 / 3.7 % (0.1, but worse held out: README, metric scene)."""
    log_scale_kinds: tuple[str, ...] = DEPTH_KINDS
    """Kinds refined by the log-scale model instead of the affine field (`_fit_log_field`): refined =
    exp(h(x)) * (g(x) + delta) in the working domain (depth; disparity for kind 'inverse'), g the global
    fit, h a smooth field on the same grid, delta one global shift. It is the form of an affine-invariant
    depth (or disparity) with a smooth multiplicative error: one field instead of two, so the anchors on
    the person and the floor fix it better and it extrapolates as a scale only (the affine field's shift
    field, away from the anchors, is a free offset). () gives the previous release's affine field (the
    options above). Chosen on the tuning seeds 100-107 (AbsRel metric / relative / inverse 0.035 / 0.038 /
    0.042 -> 0.032 / 0.036 / 0.034 with `log_ground_tolerance`; largest error at the person 1.9 / 11.0 /
    0.5 % -> 1.7 / 2.2 / 1.0 %)."""
    log_smoothness: float = 0.01
    """`smoothness` of the log-scale field. Tuning seeds: with the affine field's 0.1 and first differences
    0.02 it was worse than the affine field (relative / inverse AbsRel 0.041 / 0.055; with the true floor
    as the ground anchor 0.039 / 0.043), with 0.01 / 0.005 0.036 / 0.040, with 0.003 / 0.001 0.046 / 0.053;
    for inverse input with 10 iterations 0.005 / 0.01 / 0.02: 0.038 / 0.039 / 0.041."""
    log_first_diff: float = 0.005
    """`first_diff` of the log-scale field (tuning seeds, inverse AbsRel: 0.002 / 0.005 0.0385 / 0.0386
    with 10 iterations; 0.005 / 0.01 0.040 / 0.042 with 6; relative with 6: 0 / 0.005 0.040 / 0.036)."""
    log_shift_damping: float = 1e-3
    """Weight pulling the log-scale model's global shift delta (in units of the median |g|) towards 0."""
    log_irls_iterations: int = 10
    """Gauss-Newton / IRLS iterations of the log-scale model (tuning seeds, inverse AbsRel 6 / 10 / 12:
    0.040 / 0.039 / 0.038)."""
    log_warm_iterations: int | None = 4
    """With a value: the log-scale model's later ground passes start from the previous pass's fit and run
    this many iterations (None: each pass from the global fit, `log_irls_iterations`). Tuning seeds: 4
    iterations, three passes: the same AbsRel as 10 from the global fit (within 0.0002), CPU 675 -> 365 ms."""
    log_ground_tolerance: tuple[float, ...] = (0.5, 0.3, 0.12)
    """`ground_tolerance` of the field's passes for the log-scale model (the global search keeps
    `ground_tolerance`). Where the global fit is more than 30 % off on the floor (an 'inverse' input's
    disparity shift, near the image's sides), the floor was never taken as ground and the field never
    corrected it: tuning seeds, inverse AbsRel (0.3, 0.12) 0.039, (0.3, 0.12, 0.12) 0.036, (0.3, 0.2, 0.12)
    0.035, (0.5, 0.3, 0.12) 0.034, (0.5, 0.3, 0.2, 0.12) 0.033 but slower (relative 0.035 / 0.034 / 0.035 /
    0.036 / 0.035, metric 0.032 throughout)."""
    inverse_smoothness: float = 0.03
    """`smoothness` of that depth field for kind 'inverse' (the global disparity fit's shift error leaves
    a depth error growing with the distance, which a stiffer field cannot follow; tuning seeds 0.051 ->
    0.048; for 'relative' input 0.03 was worse there, 0.042 -> 0.044)."""


@dataclass
class RefinedDepth:
    """The input depth mapped to metres (OpenCV camera frame, z along the optical axis)."""

    depth_m_hw: np.ndarray
    """float32 metres, NaN where the input had no (usable) depth."""
    global_scale: float
    """Scale of the global fit (in the working domain: depth, or disparity for kind 'inverse')."""
    global_shift: float
    """Shift of the global fit (same domain)."""
    scale_hw: np.ndarray
    """The per-pixel scale s(x) of the full refinement: refined = scale_hw * d + shift_hw in the working
    domain (depth; disparity for kind 'inverse'). With the affine field (`log_scale_kinds=()`) and kind
    'inverse': of the global fit's depth, 1 / (global_scale * d + global_shift), its depth^2 term included."""
    shift_hw: np.ndarray
    """The per-pixel shift b(x)."""
    kind: str
    """How the input was read: metric | relative | inverse."""
    n_person_anchors: int
    """Pixels used as anchors on the people."""
    n_ground_anchors: int
    """Pixels used as anchors on the ground (last pass)."""
    anchor_rel_err_global: float
    """Median |refined - anchor| / anchor over the people anchors with the global fit only."""
    anchor_rel_err: float
    """The same with the full refinement."""
    ground_agreement: float = 1.0
    """The factor on the ground anchors' weight (1: the ground agrees with the people's scale; near 0:
    it disagreed, the people's anchors decided; `RefineOptions.ground_conflict_scale`)."""
    notes: list[str] = field(default_factory=list)


def _robust_weights(r: np.ndarray, scale: float) -> np.ndarray:
    """IRLS weights of the Cauchy loss: residuals well beyond `scale` count little (mask errors, occluders,
    pixels wrongly taken as floor)."""
    return 1.0 / (1.0 + (r / scale) ** 2)


def _work_domain(depth_hw: np.ndarray, kind: str) -> np.ndarray:
    if kind not in DEPTH_KINDS:
        raise ValueError(f"unknown depth kind {kind!r}; expected one of {', '.join(DEPTH_KINDS)}")
    return np.asarray(depth_hw, dtype=np.float64)


def _to_depth(pred_hw: np.ndarray, kind: str) -> np.ndarray:
    if kind == "inverse":
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(pred_hw > 1e-6, 1.0 / pred_hw, np.nan)
    return np.where(pred_hw > 1e-6, pred_hw, np.nan)


def _target(z: np.ndarray, kind: str) -> np.ndarray:
    return 1.0 / z if kind == "inverse" else z


def fit_global(d_n: np.ndarray, t_n: np.ndarray, w_n: np.ndarray, robust_scale: float, iterations: int = 10
               ) -> tuple[float, float]:  # fmt: skip
    """Robust weighted fit of t = s d + b with relative residuals (s d + b - t) / t (IRLS, Cauchy loss)."""
    w = w_n.copy()
    s, b = 1.0, 0.0
    for _ in range(iterations):
        sw = np.sqrt(w) / t_n
        A = np.stack([d_n * sw, sw], axis=1)
        (s, b), *_ = np.linalg.lstsq(A, t_n * sw, rcond=None)
        r = (s * d_n + b - t_n) / t_n
        w = w_n * _robust_weights(r, robust_scale)
    return float(s), float(b)


def _tapered(x: np.ndarray, x1: float) -> np.ndarray:
    """x up to x1, then a smooth (C1) taper towards 2 x1 (bounded far beyond the anchors)."""
    over = np.maximum(x - x1, 0.0)
    return np.minimum(x, x1) + over / (1.0 + over / max(x1, 1e-9))


def _interp_matrix(n_nodes: int, n_px: int) -> np.ndarray:
    """(n_px, n_nodes) linear interpolation weights from nodes spanning the image edge to edge, at pixel centres."""
    pos = (np.arange(n_px) + 0.5) / n_px * (n_nodes - 1)
    i0 = np.clip(np.floor(pos).astype(int), 0, n_nodes - 2)
    f = pos - i0
    M = np.zeros((n_px, n_nodes))
    M[np.arange(n_px), i0] = 1 - f
    M[np.arange(n_px), i0 + 1] = f
    return M


def _second_diff(gh: int, gw: int) -> sp.csr_matrix:
    """Second differences along rows and columns of a gh x gw node grid (row-major)."""
    rows = []
    idx = np.arange(gh * gw).reshape(gh, gw)
    for a, b, c in ((idx[:, :-2], idx[:, 1:-1], idx[:, 2:]), (idx[:-2], idx[1:-1], idx[2:])):
        n = a.size
        if n == 0:
            continue
        r = np.repeat(np.arange(n), 3)
        cols = np.stack([a.ravel(), b.ravel(), c.ravel()], axis=1).ravel()
        vals = np.tile([1.0, -2.0, 1.0], n)
        rows.append(sp.csr_matrix((vals, (r, cols)), shape=(n, gh * gw)))
    return sp.vstack(rows).tocsr() if rows else sp.csr_matrix((0, gh * gw))


def _first_diff(gh: int, gw: int) -> sp.csr_matrix:
    """First differences along rows and columns of a gh x gw node grid (row-major)."""
    idx = np.arange(gh * gw).reshape(gh, gw)
    rows = []
    for a, b in ((idx[:, :-1], idx[:, 1:]), (idx[:-1], idx[1:])):
        n = a.size
        if n:
            r = np.repeat(np.arange(n), 2)
            cols = np.stack([a.ravel(), b.ravel()], axis=1).ravel()
            rows.append(sp.csr_matrix((np.tile([-1.0, 1.0], n), (r, cols)), shape=(n, gh * gw)))
    return sp.vstack(rows).tocsr()


def _subsample(ys: np.ndarray, xs: np.ndarray, limit: int, rng: np.random.Generator
               ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    if len(ys) <= limit:
        return ys, xs
    keep = rng.choice(len(ys), size=limit, replace=False)
    return ys[keep], xs[keep]


def refine_depth(
    depth_hw: np.ndarray,
    kind: str,
    person_anchor_m_hw: np.ndarray,
    *,
    valid_hw: np.ndarray | None = None,
    ground_depth_m_hw: np.ndarray | None = None,
    exclude_ground_hw: np.ndarray | None = None,
    options: RefineOptions | None = None,
    seed: int = 0,
) -> RefinedDepth:
    """Map `depth_hw` to metres with the people's anchors (`person_anchor_m_hw`, NaN where none) and,
    when given, the ground plane's depth per pixel (`ground_depth_m_hw`, NaN above the horizon).

    Pixels count as ground where the global fit puts them within `ground_tolerance` of the plane
    (and not in `exclude_ground_hw`, e.g. the people's masks). Raises ValueError without any anchor.
    """
    opt = options or RefineOptions()
    rng = np.random.default_rng(seed)
    d_hw = _work_domain(depth_hw, kind)
    h, w = d_hw.shape
    ok_hw = np.isfinite(d_hw) & (d_hw > 0)
    if valid_hw is not None:
        ok_hw &= valid_hw.astype(bool)
    anchor_hw = np.asarray(person_anchor_m_hw, dtype=np.float64)
    has_p = ok_hw & np.isfinite(anchor_hw) & (anchor_hw > 0)
    py, px = _subsample(*np.nonzero(has_p), opt.max_anchors, rng)
    notes: list[str] = []
    ground_ok = None
    if ground_depth_m_hw is not None:
        ground_ok = ok_hw & np.isfinite(ground_depth_m_hw) & (ground_depth_m_hw > 0)
        if exclude_ground_hw is not None:
            ground_ok &= ~exclude_ground_hw.astype(bool)
    if len(py) < 3 and (ground_ok is None or ground_ok.sum() < 3):
        raise ValueError("no metric anchor: neither a fitted person nor a ground plane inside the depth map")

    # 1. global scale + shift
    ground_n = None
    agree = 1.0  # the ground anchors' weight factor (their agreement with the people)
    if ground_ok is not None and ground_ok.sum() >= 3:
        gy, gx = _subsample(*np.nonzero(ground_ok), opt.max_anchors, rng)
        ground_n = (d_hw[gy, gx], _target(ground_depth_m_hw[gy, gx], kind))
    if len(py) >= 3:
        d_n, t_n = d_hw[py, px], _target(anchor_hw[py, px], kind)
        s0, b0 = float(np.median(t_n / d_n)), 0.0  # scale only: one person's depth range fixes no shift
        if ground_n is not None:
            s0, b0, agree = _search_with_ground(d_n, t_n, *ground_n, kind, opt, rng)
            if agree < 0.5:
                notes.append(f"the ground plane disagreed with the people's scale: the people's anchors decided "
                             f"(the ground counted {100 * agree:.0f} %)")  # fmt: skip
    elif ground_n is not None:
        s0, b0 = fit_global(*ground_n, np.ones(len(ground_n[0])), opt.robust_scale)
        notes.append("no person anchors: scaled by the ground plane alone")
    glob_pred_hw = s0 * d_hw + b0
    g_s, g_b, fk = s0, b0, kind  # fk: the domain of the field
    log_model = kind in opt.log_scale_kinds
    if kind == "inverse" and opt.inverse_field_in_depth and not log_model:
        # the field in depth: its input is the global fit turned into depth, scale 1, shift 0
        d_hw = _to_depth(glob_pred_hw, kind)
        ok_hw &= np.isfinite(d_hw)
        d_hw = np.where(ok_hw, d_hw, 1.0)
        glob_pred_hw, s0, b0, fk = d_hw, 1.0, 0.0, "metric"
        opt = replace(opt, smoothness=opt.inverse_smoothness)
    scale_m = float(np.median(np.abs(d_hw[ok_hw]))) if ok_hw.any() else 1.0
    depth_scale_m = scale_m if fk != "inverse" else float(np.nanmedian(_to_depth(glob_pred_hw[ok_hw], fk)))

    # 2. the smooth field: refined = glob + s0 * (alpha(x) d + beta(x) m), alpha, beta on a coarse grid
    gw = opt.grid_cells + 1 if w >= h else max(2, round(opt.grid_cells * w / h)) + 1
    gh = opt.grid_cells + 1 if h > w else max(2, round(opt.grid_cells * h / w)) + 1
    Wy, Wx = _interp_matrix(gh, h), _interp_matrix(gw, w)
    n_nodes = gh * gw
    D2 = _second_diff(gh, gw)
    n_ground = 0
    quad = kind == "inverse" and opt.inverse_field_in_depth and opt.inverse_quadratic and not log_model
    tilt_uv = None  # the ground's tilt: normalised pixel offsets from the pivot (the people's lowest pixels)
    # the tilt weighting: not for the affine field of kind 'inverse' (its depth^2 term needs the far floor)
    tilt_sigma = opt.ground_tilt_sigma if kind != "inverse" or log_model else None
    tilted = opt.ground_tilt_weight is not None or tilt_sigma is not None
    if ground_ok is not None and len(py) >= 3 and tilted and (fk != "inverse" or log_model):
        low = py >= np.percentile(py, 98)
        u0, v0, size = float(np.median(px[low])), float(np.median(py[low])), float(max(h, w))
        tilt_uv = ((np.arange(w) + 0.5 - u0) / size, (np.arange(h) + 0.5 - v0) / size)
    ground_cur_hw = ground_depth_m_hw
    fit = _Field(np.zeros(n_nodes), np.zeros(n_nodes), 0.0, 1.0, np.zeros(2))
    g_scale = float(np.median(np.abs(glob_pred_hw[ok_hw]))) if ok_hw.any() else 1.0
    log_h, log_delta = np.zeros(n_nodes), 0.0
    pred_hw = glob_pred_hw
    tolerances = opt.log_ground_tolerance if log_model else opt.ground_tolerance
    passes = tolerances if ground_ok is not None else (None,)
    for i_pass, tol in enumerate(passes):
        groups = []
        if len(py) >= 3:
            groups.append((py, px, anchor_hw[py, px], 1.0, False))
        if tol is not None:
            gy, gx = _ground_pixels(_to_depth(pred_hw, fk), ground_cur_hw, ground_ok, tol,
                                    opt.max_anchors, rng)  # fmt: skip
            n_ground = len(gy)
            if n_ground >= 3:
                g_w: float | np.ndarray = agree * opt.ground_weight if groups else 1.0
                if tilt_uv is not None and tilt_sigma is not None:
                    # the relative depth error of a tilt error about the pivot: depth x image offset
                    err_n = (tilt_sigma * ground_depth_m_hw[gy, gx] / depth_scale_m
                             * np.hypot(tilt_uv[0][gx], tilt_uv[1][gy]))  # fmt: skip
                    g_w = g_w / n_ground / (1.0 + (err_n / opt.robust_scale) ** 2)
                groups.append((gy, gx, ground_depth_m_hw[gy, gx], g_w, True))
        if not groups:  # no person anchors, and no ground pixel within this pass's tolerance: the fit so far
            continue
        if log_model:
            warm = (log_h, log_delta) if i_pass and opt.log_warm_iterations else None
            log_h, log_delta = _fit_log_field(groups, glob_pred_hw, g_scale, fk, Wy, Wx, gh, gw, D2, opt, warm,
                                              opt.log_warm_iterations if warm else None)  # fmt: skip
            pred_hw = np.exp(Wy @ log_h.reshape(gh, gw) @ Wx.T) * (glob_pred_hw + g_scale * log_delta)
            continue
        fit = _fit_field(groups, d_hw, s0, b0, scale_m, fk, Wy, Wx, gh, gw, D2, opt, quad, tilt_uv)
        pred_hw = glob_pred_hw + s0 * (fit.alpha_hw(Wy, Wx, gh, gw, d_hw, scale_m) * d_hw
                                       + (Wy @ fit.beta.reshape(gh, gw) @ Wx.T) * scale_m)  # fmt: skip
        if tilt_uv is not None:
            ground_cur_hw = _tilted(ground_depth_m_hw, tilt_uv, fit.tilt / scale_m)
    if log_model:  # refined = exp(h) * (s0 d + b0 + g_scale delta)
        e_hw = np.exp(Wy @ log_h.reshape(gh, gw) @ Wx.T)
        scale_hw, shift_hw = s0 * e_hw, e_hw * (b0 + g_scale * log_delta)
    else:
        alpha_hw = fit.alpha_hw(Wy, Wx, gh, gw, d_hw, scale_m)
        beta_hw = Wy @ fit.beta.reshape(gh, gw) @ Wx.T
        scale_hw = s0 * (1 + alpha_hw)
        shift_hw = b0 + s0 * scale_m * beta_hw
    pred_hw = scale_hw * d_hw + shift_hw
    depth_m = _to_depth(pred_hw, fk)
    depth_m = np.where(ok_hw, depth_m, np.nan).astype(np.float32)
    if len(py) < 3:  # the ground alone: a few floor pixels, or a narrow band of them, leave the fit unconstrained
        gy, gx = np.nonzero(ground_ok)
        off = float(np.nanmedian(np.abs(depth_m[gy, gx] - ground_depth_m_hw[gy, gx]) / ground_depth_m_hw[gy, gx]))
        if not off < opt.ground_alone_max_miss:
            raise ValueError("no person anchor inside the depth map, and the ground plane alone cannot put it in "
                             f"metres (the scaled depth misses the plane by {100 * off:.0f} % on the floor)")

    def rel_err(z_hw: np.ndarray) -> float:
        if len(py) == 0:
            return float("nan")
        z = z_hw[py, px]
        return float(np.nanmedian(np.abs(z - anchor_hw[py, px]) / anchor_hw[py, px]))

    return RefinedDepth(
        depth_m_hw=depth_m, global_scale=g_s, global_shift=g_b, scale_hw=scale_hw.astype(np.float32),
        shift_hw=shift_hw.astype(np.float32), kind=kind, n_person_anchors=int(len(py)),
        n_ground_anchors=int(n_ground), anchor_rel_err_global=rel_err(_to_depth(glob_pred_hw, fk)),
        anchor_rel_err=rel_err(depth_m), ground_agreement=agree, notes=notes,
    )  # fmt: skip


def _rel_residual(s: float, b: float, d_n: np.ndarray, t_n: np.ndarray) -> np.ndarray:
    return (s * d_n + b - t_n) / t_n


def _ground_agreement(d_p: np.ndarray, t_p: np.ndarray, d_g: np.ndarray, t_g: np.ndarray,
                      opt: RefineOptions) -> float:  # fmt: skip
    """The factor (0, 1] on the ground anchors' weight: how well the ground's own global fit (the floor
    pixels `d_g`, `t_g` alone, robust) keeps the people's pixels on their anchors, against the people's
    own global fit (their residual there is what a global scale and shift cannot explain in any case:
    the input's warp, mask errors). 1 when they agree or without `ground_conflict_scale`."""
    if opt.ground_conflict_scale is None or len(d_g) < 3 or len(d_p) < 3:
        return 1.0
    own = np.median(np.abs(_rel_residual(*fit_global(d_p, t_p, np.ones(len(d_p)), opt.robust_scale), d_p, t_p)))
    s_g, b_g = fit_global(d_g, t_g, np.ones(len(d_g)), opt.robust_scale)
    ground = np.median(np.abs(_rel_residual(s_g, b_g, d_p, t_p)))
    excess = max(float(ground - own), 0.0)
    return float(1.0 / (1.0 + (excess / opt.ground_conflict_scale) ** 2))


def _search_with_ground(d_p: np.ndarray, t_p: np.ndarray, d_g: np.ndarray, t_g: np.ndarray, kind: str,
                        opt: RefineOptions, rng: np.random.Generator) -> tuple[float, float, float]:  # fmt: skip
    """Global scale and shift from the people and the ground, and the ground's weight factor
    (`_ground_agreement`). The people fix one point of the line t = s d + b (their median); along it, the
    scale is searched that makes the most pixels below the horizon agree with the ground plane (the
    floor; things standing on it are nearer than the plane) (with `ground_conflict_scale`: times the
    share of the people's pixels it keeps within the same tolerance of their anchors), then scale and
    shift are refined on the people and those floor pixels together (robust; the floor's weight times
    the agreement factor)."""
    dm, tm = float(np.median(d_p)), float(np.median(t_p))
    if len(d_g) > 5000:
        keep = rng.choice(len(d_g), 5000, replace=False)
        d_s, t_s = d_g[keep], t_g[keep]
    else:
        d_s, t_s = d_g, t_g
    k_c = np.geomspace(0.02, 50.0, 400)
    s_c = k_c * tm / dm
    b_c = tm - s_c * dm
    pred_cn = s_c[:, None] * d_s[None, :] + b_c[:, None]
    tol = opt.ground_tolerance[-1]
    score_c = (np.abs(pred_cn - t_s[None, :]) <= tol * t_s[None, :]).sum(axis=1).astype(np.float64)
    if opt.ground_conflict_scale is not None:
        pk = np.unique(np.linspace(0, len(d_p) - 1, 2000).astype(int))  # a fixed stride
        pred_cp = s_c[:, None] * d_p[None, pk] + b_c[:, None]
        score_c *= (np.abs(pred_cp - t_p[None, pk]) <= tol * t_p[None, pk]).mean(axis=1)
    best = int(np.argmax(score_c))
    s0, b0 = float(s_c[best]), float(b_c[best])
    if score_c[best] < 3:
        return float(np.median(t_p / d_p)), 0.0, 1.0
    inl = np.abs(s0 * d_g + b0 - t_g) <= opt.ground_tolerance[0] * t_g
    agree = _ground_agreement(d_p, t_p, d_g[inl], t_g[inl], opt)
    d_all = np.concatenate([d_p, d_g[inl]])
    t_all = np.concatenate([t_p, t_g[inl]])
    w_all = np.concatenate([np.full(len(d_p), 1.0 / len(d_p)),
                            np.full(int(inl.sum()), agree * opt.ground_weight / max(int(inl.sum()), 1))])  # fmt: skip
    s1, b1 = fit_global(d_all, t_all, w_all, opt.robust_scale)
    return (s1, b1, agree) if s1 > 0 else (s0, b0, agree)


def _ground_pixels(z_hw: np.ndarray, ground_hw: np.ndarray, ground_ok: np.ndarray, tol: float, limit: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    with np.errstate(invalid="ignore"):
        near = ground_ok & (np.abs(z_hw - ground_hw) <= tol * ground_hw)
    return _subsample(*np.nonzero(near), limit, rng)


@dataclass
class _Field:
    """The field's unknowns: alpha, beta on the grid nodes, the depth^2 coefficient gamma (with the depth
    up to which it is linear, in units of scale_m), the ground's tilt (2,) (its inverse depth's gradient
    across the image, times scale_m)."""

    alpha: np.ndarray
    beta: np.ndarray
    gamma: float
    quad_x1: float
    tilt: np.ndarray

    def alpha_hw(self, Wy: np.ndarray, Wx: np.ndarray, gh: int, gw: int, d_hw: np.ndarray, scale_m: float
                 ) -> np.ndarray:  # fmt: skip
        a_hw = Wy @ self.alpha.reshape(gh, gw) @ Wx.T
        if self.gamma:
            a_hw = a_hw + self.gamma * _tapered(d_hw / scale_m, self.quad_x1)
        return a_hw


def _tilted(ground_hw: np.ndarray, tilt_uv: tuple[np.ndarray, np.ndarray], grad_2: np.ndarray) -> np.ndarray:
    """The ground plane's depth with its inverse depth changed by grad . (du, dv) (a plane through the
    pivot; NaN where it no longer lies ahead)."""
    du_w, dv_h = tilt_uv
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_hw = 1.0 / ground_hw + grad_2[0] * du_w[None, :] + grad_2[1] * dv_h[:, None]
        return np.where(np.isfinite(ground_hw) & (inv_hw > 0), 1.0 / inv_hw, np.nan)


def _fit_field(groups: list, d_hw: np.ndarray, s0: float, b0: float, scale_m: float, kind: str,
               Wy: np.ndarray, Wx: np.ndarray, gh: int, gw: int, D2: sp.csr_matrix, opt: RefineOptions,
               quad: bool = False, tilt_uv: tuple[np.ndarray, np.ndarray] | None = None) -> _Field:  # fmt: skip
    """IRLS for the grid values of alpha and beta (see refine_depth); with `quad`, also one global
    coefficient gamma of a term s0 * gamma * d * taper(d / scale_m) (else gamma = 0); with `tilt_uv`
    (depth domain only), also the ground anchors' tilt (2 unknowns, a weak prior towards 0)."""
    n_nodes = gh * gw
    if opt.ground_tilt_weight is None:
        tilt_uv = None  # the tilt as given (the pivot's offsets only weight the ground anchors)
    blocks_a, blocks_b, blocks_q, blocks_t, rhs, base_w = [], [], [], [], [], []
    d_max = max(float(d_hw[ys, xs].max()) for ys, xs, *_ in groups)
    x1 = opt.quadratic_taper * d_max / scale_m
    for ys, xs, z_n, total_w, is_ground in groups:
        t_n = _target(z_n, kind)
        d_n = d_hw[ys, xs]
        # bilinear weights of each anchor on the nodes: outer product of the row and column weights
        B = (Wy[ys][:, :, None] * Wx[xs][:, None, :]).reshape(len(ys), n_nodes)
        B = sp.csr_matrix(B)
        blocks_a.append(sp.diags(s0 * d_n / t_n) @ B)
        blocks_b.append(sp.diags(s0 * scale_m / t_n) @ B)
        blocks_q.append(s0 * d_n * _tapered(d_n / scale_m, x1) / t_n)
        if tilt_uv is not None:
            # (refined - t(tilt)) / t ~ (refined - t) / t + t * grad . (du, dv): a plane's inverse depth
            # is affine in the pixel; grad = tilt / scale_m
            du, dv = tilt_uv[0][xs], tilt_uv[1][ys]
            blocks_t.append(np.stack([z_n * du, z_n * dv], axis=1) / scale_m if is_ground
                            else np.zeros((len(ys), 2)))  # fmt: skip
        rhs.append((t_n - (s0 * d_n + b0)) / t_n)  # relative residual of the global fit, to be explained
        base_w.append(np.full(len(ys), total_w / len(ys)) if np.isscalar(total_w) else total_w)
    cols = [sp.vstack(blocks_a), sp.vstack(blocks_b)]
    if quad:
        cols.append(sp.csr_matrix(np.concatenate(blocks_q)[:, None]))
    if tilt_uv is not None:
        cols.append(sp.csr_matrix(np.concatenate(blocks_t)))
    A = sp.hstack(cols).tocsr()
    y = np.concatenate(rhs)
    w0 = np.concatenate(base_w)
    R = sp.block_diag([D2, D2]).tocsr()
    # 2 x (nodes) unknowns: the normal equations are small and dense; solved directly
    shift_damping = opt.inverse_shift_damping if kind == "inverse" else opt.shift_damping
    damp = np.concatenate([np.full(n_nodes, opt.damping), np.full(n_nodes, shift_damping)])
    reg_33 = opt.smoothness * (R.T @ R).toarray() + np.diag(damp)
    if opt.first_diff > 0:
        R1 = sp.block_diag([_first_diff(gh, gw)] * 2).tocsr()
        reg_33 += opt.first_diff * (R1.T @ R1).toarray()
    extra = [opt.damping] if quad else []
    if tilt_uv is not None:
        extra += [float(opt.ground_tilt_weight or 0.0)] * 2
    if extra:
        n0 = reg_33.shape[0]
        reg_33 = np.pad(reg_33, ((0, len(extra)), (0, len(extra))))
        reg_33[n0:, n0:] = np.diag(extra)
    w = w0.copy()
    x = np.zeros(A.shape[1])
    for _ in range(opt.irls_iterations):
        Aw = A.multiply(w[:, None]).tocsr()
        lhs = (A.T @ Aw).toarray() + reg_33
        x = np.linalg.solve(lhs, Aw.T @ y)
        r = A @ x - y
        w = w0 * _robust_weights(r, opt.robust_scale)
    gamma = float(x[2 * n_nodes]) if quad else 0.0
    tilt = x[-2:].copy() if tilt_uv is not None else np.zeros(2)
    return _Field(x[:n_nodes], x[n_nodes:2 * n_nodes], gamma, x1, tilt)


def _fit_log_field(groups: list, g_hw: np.ndarray, g_scale: float, kind: str, Wy: np.ndarray, Wx: np.ndarray,
                   gh: int, gw: int, D2: sp.csr_matrix, opt: RefineOptions,
                   start: tuple[np.ndarray, float] | None = None, iterations: int | None = None
                   ) -> tuple[np.ndarray, float]:  # fmt: skip
    """Gauss-Newton IRLS for the log-scale model pred = exp(h) * (g + g_scale * delta) in the working
    domain (`g_hw` the global fit there): h on the grid nodes (`log_smoothness` on its second differences,
    `log_first_diff` on its first, `damping` towards 0), delta one global shift (`log_shift_damping`);
    relative residuals pred / target - 1, Cauchy-robust. `start`: (h, delta) to start from (the previous
    pass; its robust weights too). Returns (h on the nodes, delta)."""
    n_nodes = gh * gw
    Bs, g_l, t_l, w_l = [], [], [], []
    for ys, xs, z_n, total_w, _ in groups:
        Bs.append(sp.csr_matrix((Wy[ys][:, :, None] * Wx[xs][:, None, :]).reshape(len(ys), n_nodes)))
        g_l.append(g_hw[ys, xs])
        t_l.append(_target(z_n, kind))
        w_l.append(np.full(len(ys), total_w / len(ys)) if np.isscalar(total_w) else total_w)
    B = sp.vstack(Bs).tocsr()
    g_n, t_n, w0 = np.concatenate(g_l), np.concatenate(t_l), np.concatenate(w_l)
    reg = opt.log_smoothness * (D2.T @ D2).toarray() + opt.damping * np.eye(n_nodes)
    if opt.log_first_diff > 0:
        R1 = _first_diff(gh, gw)
        reg += opt.log_first_diff * (R1.T @ R1).toarray()
    reg = np.pad(reg, ((0, 1), (0, 1)))
    reg[-1, -1] = opt.log_shift_damping
    x = np.zeros(n_nodes + 1)
    w = w0.copy()
    if start is not None:
        x = np.append(start[0], start[1])
        r = np.exp(B @ x[:n_nodes]) * (g_n + g_scale * x[-1]) / t_n - 1.0
        w = w0 * _robust_weights(r, opt.robust_scale)
    for _ in range(opt.log_irls_iterations if iterations is None else iterations):
        e_n = np.exp(B @ x[:n_nodes])
        base_n = g_n + g_scale * x[-1]
        r = e_n * base_n / t_n - 1.0
        J = sp.hstack([sp.diags(e_n * base_n / t_n) @ B, sp.csr_matrix((e_n * g_scale / t_n)[:, None])]).tocsr()
        Jw = J.multiply(w[:, None]).tocsr()
        x = x + np.linalg.solve((J.T @ Jw).toarray() + reg, -(Jw.T @ r) - reg @ x)
        r = np.exp(B @ x[:n_nodes]) * (g_n + g_scale * x[-1]) / t_n - 1.0
        w = w0 * _robust_weights(r, opt.robust_scale)
    return x[:n_nodes], float(x[-1])
