"""Smoothing of a whole track after the video has run (offline): a zero-phase Savitzky-Golay filter.

The online 1-euro filter (pipelines.tracking.smoothing) sees only the past, so it trades jitter for
lag; once a video has been processed, every frame's neighbours on both sides are known. This module
fits, around every frame, a low-order polynomial in time to the fitted motion of the frames within
`window_s` (scipy.signal.savgol_filter): noise is averaged out while a motion the polynomial can
follow (fast, but smooth over the window) passes without lag or loss of amplitude, and a step comes
out centred where it happened. The filter runs on the fit's own parameters, per track:

- each bone's world rotation (the fit's G, relative to rest) as a unit quaternion, its sign made
  continuous over time, filtered per component and renormalised;
- the root bone's head position (metres, camera frame);

and the output joints are then posed again from them (the same skinning as the fit's), so that the
joints of tracks.json, the bone rotations of the npz and the GLB/BVH motion stay one motion.
Frames are split at gaps (a step over 1.5x the median step: the person unseen); a stretch shorter
than the window gets a shorter one, and one of fewer than `polyorder + 2` frames is left as fitted.
Units are metres and seconds; the camera frame is OpenCV's (x right, y down, z forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import savgol_filter
from scipy.spatial.transform import Rotation


@dataclass
class TrackSmoothingOptions:
    """Savitzky-Golay parameters. Chosen on pose2sim_single/cam01 (60 fps, 100 frames) against the 4-view
    triangulation (bench.bench_video_smoothing); cam02-cam04 and pose2sim_multi held out. On cam01 every
    window from 0.1 to 0.3 s (order 2 or 3) kept PA-MPJPE within 0.1 mm of the unsmoothed fits' or
    better (69.5 mm; the 1-euro filter: 70.6); 0.2 s / 2 cut the mean joint acceleration 144 -> 18 m/s^2
    (0.3 s: 12) while a step still rises within +-6 frames of where it happens."""

    window_s: float = 0.2
    """Width of the window of frames each polynomial is fitted to, seconds (rounded to an odd number of
    frames at the track's rate, at least polyorder + 2)."""
    polyorder: int = 2
    """Degree of the polynomial: higher follows sharper motion, smooths less."""


def window_frames(window_s: float, step_s: float, polyorder: int) -> int:
    """The odd number of frames `window_s` covers at `step_s` per frame (at least polyorder + 2, odd)."""
    n = int(round(window_s / max(step_s, 1e-9)))
    n = max(n, polyorder + 2)
    return n if n % 2 else n + 1


def segments(times_s: np.ndarray) -> list[slice]:
    """Runs of consecutive frames: split where a step exceeds 1.5x the median step."""
    t = np.asarray(times_s, dtype=np.float64)
    if len(t) < 2:
        return [slice(0, len(t))]
    step = np.diff(t)
    cuts = np.flatnonzero(step > 1.5 * np.median(step)) + 1
    edges = [0, *cuts.tolist(), len(t)]
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def savgol_track(x_f: np.ndarray, times_s: np.ndarray, options: TrackSmoothingOptions) -> np.ndarray:
    """`x_f` (F, ...) filtered along its first axis, per run of consecutive frames (see the module
    docstring); a copy."""
    x = np.array(x_f, dtype=np.float64, copy=True)
    t = np.asarray(times_s, dtype=np.float64)
    step = float(np.median(np.diff(t))) if len(t) > 1 else 1.0
    n_want = window_frames(options.window_s, step, options.polyorder)
    for seg in segments(t):
        n = seg.stop - seg.start
        w = min(n_want, n if n % 2 else n - 1)
        if w < options.polyorder + 2:
            continue
        x[seg] = savgol_filter(x[seg], w, options.polyorder, axis=0, mode="interp")
    return x


def continuous_quaternions(R_fj33: np.ndarray) -> np.ndarray:
    """Rotations (F, J, 3, 3) -> unit quaternions (F, J, 4), each sign chosen nearest the previous
    frame's (q and -q are one rotation), so that they can be filtered per component."""
    R = np.asarray(R_fj33, dtype=np.float64)
    n_f, n_j = R.shape[:2]
    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat().reshape(n_f, n_j, 4)
    for f in range(1, n_f):
        q[f, np.sum(q[f] * q[f - 1], axis=1) < 0] *= -1
    return q


def smooth_rotations(R_fj33: np.ndarray, times_s: np.ndarray, options: TrackSmoothingOptions) -> np.ndarray:
    """Rotations (F, J, 3, 3) filtered over time (quaternions, renormalised)."""
    R = np.asarray(R_fj33, dtype=np.float64)
    if len(R) < 3:
        return R.copy()
    q = savgol_track(continuous_quaternions(R), times_s, options)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return Rotation.from_quat(q.reshape(-1, 4)).as_matrix().reshape(R.shape)
