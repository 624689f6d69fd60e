"""Time offsets between cameras, found from the people's motion.

Convention: a view's offset o (integer frames) means that its frame f + o shows the instant of the
reference view's frame f (o > 0: the camera's video runs o frames behind the reference, i.e. the
camera is late). The first view is the reference (offset 0).

For each view and each candidate offset within +-max_offset, the view's keypoints are shifted and
compared with the other views (at their current offsets) by the median symmetric epipolar distance
(pixels, undistorted) of the confidently seen joints of every associated person; the offset with the
smallest distance wins. Two passes: the second one with the other views at their first-pass offsets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipelines.multiview.associate import MIN_CONF, fundamental_33
from pipelines.multiview.calibration import CalibratedCamera


def shift_frames(a_f: np.ndarray, offset: float, fill: float) -> np.ndarray:
    """out[f] = a[f + offset] along the first axis (frames outside are `fill`); a fractional offset
    interpolates linearly between the two nearest frames (for confidences, fill = 0: the smaller one)."""
    base = int(np.floor(offset))
    frac = float(offset - base)
    if frac > 1e-6:
        a0, a1 = shift_frames(a_f, base, fill), shift_frames(a_f, base + 1, fill)
        if fill == 0.0:
            return np.minimum(a0, a1)
        return (1.0 - frac) * a0 + frac * a1
    offset = base
    out = np.full_like(a_f, fill)
    n = len(a_f)
    if offset >= 0:
        out[: max(0, n - offset)] = a_f[offset:]
    else:
        out[-offset:] = a_f[: n + offset]
    return out


def offset_costs(xy_pvfk2: list[np.ndarray], conf_pvfk: list[np.ndarray], cams: list[CalibratedCamera],
                 offsets_v: np.ndarray, view: int, candidates: Sequence[float]) -> np.ndarray:  # fmt: skip
    """Median epipolar distance (px, associate.epipolar_px) of `view` against the others for each candidate
    offset (integers)."""
    n_views = len(cams)
    F = {u: fundamental_33(cams[view], cams[u]) for u in range(n_views) if u != view}
    out = np.full(len(candidates), np.inf)
    others = [[(u, shift_frames(xy_vfk2[u], float(offsets_v[u]), np.nan),
                shift_frames(conf_vfk[u], float(offsets_v[u]), 0.0)) for u in F]
              for xy_vfk2, conf_vfk in zip(xy_pvfk2, conf_pvfk, strict=True)]  # the same for every candidate
    # every candidate at once: the view's keypoints shifted by each (C, F, K, 2), against each other view's; per
    # candidate only its valid distances are kept (a long capture's (C, F x K) arrays per person and view add up)
    dist_c: list[list[np.ndarray]] = [[] for _ in candidates]
    for xy_vfk2, conf_vfk, shifted in zip(xy_pvfk2, conf_pvfk, others, strict=True):
        xa_cfk2 = np.stack([shift_frames(xy_vfk2[view], d, np.nan) for d in candidates])
        ca_cfk = np.stack([shift_frames(conf_vfk[view], d, 0.0) for d in candidates])
        ok_a = (ca_cfk > MIN_CONF) & np.isfinite(xa_cfk2).all(-1)
        ha = np.concatenate([np.nan_to_num(xa_cfk2), np.ones((*xa_cfk2.shape[:-1], 1))], axis=-1)
        for u, xb, cb in shifted:
            ok = ok_a & ((cb > MIN_CONF) & np.isfinite(xb).all(-1))[None]
            hb = np.concatenate([np.nan_to_num(xb), np.ones((*xb.shape[:-1], 1))], axis=-1)
            lb, la = ha @ F[u].T, hb @ F[u]  # lines in b (C, F, K, 3), in a (F, K, 3)
            num = np.abs(np.sum(hb * lb, axis=-1))
            with np.errstate(divide="ignore", invalid="ignore"):
                d_cfk = 0.5 * (num / np.hypot(lb[..., 0], lb[..., 1]) + num / np.hypot(la[..., 0], la[..., 1]))
            for c, (d_fk, ok_fk) in enumerate(zip(d_cfk, ok, strict=True)):
                dist_c[c].append(d_fk[ok_fk])
    for c, dists in enumerate(dist_c):
        all_d = np.concatenate(dists) if dists else np.zeros(0)
        if len(all_d) >= 20:
            out[c] = float(np.median(all_d))
    return out


def estimate_offsets(xy_pvfk2: list[np.ndarray], conf_pvfk: list[np.ndarray], cams: list[CalibratedCamera],
                     max_offset: int = 6, passes: int = 2) -> tuple[np.ndarray, list[np.ndarray]]:  # fmt: skip
    """Offsets (views,) in frames relative to view 0, and each view's cost curve over the integer offsets
    -max..max (pixels). The best integer offset is refined to a fraction of a frame by a parabola through
    the costs at it and its two neighbours (cameras that are not genlocked are off by fractions).

    xy_pvfk2: per person, keypoints (views, F, K, 2) in undistorted pixels on each view's own frame
    indices (NaN where unseen); conf_pvfk: per person (views, F, K)."""
    n_views = len(cams)
    offsets = np.zeros(n_views)
    candidates = range(-max_offset, max_offset + 1)
    curves: list[np.ndarray] = [np.full(len(candidates), np.inf)] * n_views
    for _ in range(passes):
        new = offsets.copy()
        for v in range(n_views):
            curve = offset_costs(xy_pvfk2, conf_pvfk, cams, offsets, v, candidates)
            curves[v] = curve
            if np.isfinite(curve).any():
                i = int(np.argmin(curve))
                new[v] = candidates[i]
                if 0 < i < len(curve) - 1 and np.isfinite(curve[i - 1 : i + 2]).all():
                    lo, mid, hi = curve[i - 1 : i + 2]
                    denom = lo - 2 * mid + hi
                    if denom > 1e-9:
                        new[v] += float(np.clip(0.5 * (lo - hi) / denom, -0.5, 0.5))
        new -= new[0]
        if np.allclose(new, offsets, atol=0.05):
            break
        offsets = new
    return offsets, curves
