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

CANDIDATE_FRAMES = 2048
"""offset_costs' work per pass: candidates x frames (a short clip: every candidate at once; a long one: one
candidate at a time, over blocks of this many frames), which bounds its temporaries (a few MB) and the
distances it keeps for the medians, whatever the capture's length."""


def shift_frames(a_f: np.ndarray, offset: float, fill: float) -> np.ndarray:
    """out[f] = a[f + offset] along the first axis (frames outside are `fill`); a fractional offset
    interpolates linearly between the two nearest frames (for confidences, fill = 0: the smaller one)."""
    return _shifted_block(a_f, offset, fill, 0, len(a_f))


def _shifted_block(a_f: np.ndarray, offset: float, fill: float, f0: int, f1: int) -> np.ndarray:
    """shift_frames(a_f, offset, fill)[f0:f1], without shifting the whole array."""
    base = int(np.floor(offset))
    frac = float(offset - base)
    if frac > 1e-6:
        a0, a1 = _shifted_block(a_f, base, fill, f0, f1), _shifted_block(a_f, base + 1, fill, f0, f1)
        if fill == 0.0:
            return np.minimum(a0, a1)
        return (1.0 - frac) * a0 + frac * a1
    out = np.full((f1 - f0, *a_f.shape[1:]), fill, dtype=a_f.dtype)
    lo, hi = max(f0 + base, 0), min(f1 + base, len(a_f))  # source frames of the block
    if hi > lo:
        out[lo - f0 - base : hi - f0 - base] = a_f[lo:hi]
    return out


def _homogeneous(xy_fk2: np.ndarray) -> np.ndarray:
    return np.concatenate([np.nan_to_num(xy_fk2), np.ones((*xy_fk2.shape[:-1], 1))], axis=-1)


def offset_costs(xy_pvfk2: list[np.ndarray], conf_pvfk: list[np.ndarray], cams: list[CalibratedCamera],
                 offsets_v: np.ndarray, view: int, candidates: Sequence[float]) -> np.ndarray:  # fmt: skip
    """Median epipolar distance (px, associate.epipolar_px) of `view` against the others for each candidate
    offset (integers).

    Memory: the candidates in groups and the frames in blocks of CANDIDATE_FRAMES candidate-frames, so the
    temporaries stay a few MB and only one group's valid distances are kept for their medians, however long
    the capture (all the candidates over all the frames at once reached ~1 GB near 20k frames)."""
    n_views = len(cams)
    F = {u: fundamental_33(cams[view], cams[u]) for u in range(n_views) if u != view}
    out = np.full(len(candidates), np.inf)
    n_frames = max([xy.shape[1] for xy in xy_pvfk2], default=1)
    group = max(1, min(len(candidates), CANDIDATE_FRAMES // max(1, n_frames)))
    block = max(1, CANDIDATE_FRAMES // group)
    for g0 in range(0, len(candidates), group):
        group_c = list(candidates[g0 : g0 + group])
        dist_c: list[list[np.ndarray]] = [[] for _ in group_c]
        for xy_vfk2, conf_vfk in zip(xy_pvfk2, conf_pvfk, strict=True):
            for f0 in range(0, xy_vfk2.shape[1], block):
                f1 = min(f0 + block, xy_vfk2.shape[1])
                xa_cfk2 = np.stack([_shifted_block(xy_vfk2[view], d, np.nan, f0, f1) for d in group_c])
                ca_cfk = np.stack([_shifted_block(conf_vfk[view], d, 0.0, f0, f1) for d in group_c])
                ok_a = (ca_cfk > MIN_CONF) & np.isfinite(xa_cfk2).all(-1)
                if not ok_a.any():
                    continue
                ha = _homogeneous(xa_cfk2)
                for u, F_33 in F.items():
                    xb_fk2 = _shifted_block(xy_vfk2[u], float(offsets_v[u]), np.nan, f0, f1)
                    cb_fk = _shifted_block(conf_vfk[u], float(offsets_v[u]), 0.0, f0, f1)
                    ok = ok_a & ((cb_fk > MIN_CONF) & np.isfinite(xb_fk2).all(-1))[None]
                    if not ok.any():
                        continue
                    hb = _homogeneous(xb_fk2)
                    lb, la = ha @ F_33.T, hb @ F_33  # lines in b (C, F, K, 3), in a (F, K, 3)
                    num = np.abs(np.sum(hb * lb, axis=-1))
                    with np.errstate(divide="ignore", invalid="ignore"):
                        d_cfk = 0.5 * (num / np.hypot(lb[..., 0], lb[..., 1]) + num / np.hypot(la[..., 0], la[..., 1]))
                    for c, (d_fk, ok_fk) in enumerate(zip(d_cfk, ok, strict=True)):
                        dist_c[c].append(d_fk[ok_fk])
        for c, dists in enumerate(dist_c):
            all_d = np.concatenate(dists) if dists else np.zeros(0)
            if len(all_d) >= 20:
                out[g0 + c] = float(np.median(all_d))
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
