"""The offline track smoother (pipelines.tracking.track_smoothing): less jitter, no lag on a step, no
smoothing across a gap in the track, rotations stay rotations. Synthetic signals: no video, fast."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from pipelines.tracking.track_smoothing import (
    TrackSmoothingOptions,
    savgol_track,
    smooth_rotations,
    window_frames,
)

FPS = 60.0


def test_a_step_is_not_delayed() -> None:
    """A root that jumps 0.5 m at t = 0.5 s (a fast move), with 1 cm of jitter: the smoothed track
    crosses half the step within one frame of where it happened and is within 10 % of the new level
    half a window later; the jitter (frame-to-frame acceleration) on the flat parts drops by 3x."""
    o = TrackSmoothingOptions()
    t = np.arange(60) / FPS
    clean = np.where(t >= 0.5, 0.5, 0.0)
    rng = np.random.default_rng(0)
    noisy = clean + rng.normal(0.0, 0.01, len(t))
    out = savgol_track(noisy[:, None], t, o)[:, 0]
    step = int(np.argmax(t >= 0.5))
    crossing = int(np.argmax(out >= 0.25))
    assert abs(crossing - step) <= 1, (crossing, step)
    half = window_frames(o.window_s, 1 / FPS, o.polyorder) // 2
    assert np.all(np.abs(out[step + half :] - 0.5) < 0.05)
    assert np.all(np.abs(out[: step - half]) < 0.05)
    flat = np.r_[0 : step - half - 1, step + half + 1 : len(t) - 2]  # second differences away from the step
    jitter = lambda x: np.abs(np.diff(x, 2))[flat].mean()  # noqa: E731
    assert jitter(out) < jitter(noisy) / 3, (jitter(out), jitter(noisy))


def test_a_gap_in_the_track_is_not_smoothed_across() -> None:
    """A person unseen for 0.5 s who comes back elsewhere: the frames on each side keep their own level."""
    t = np.r_[np.arange(30), np.arange(60, 90)] / FPS
    x = np.where(t < 0.75, 0.0, 1.0)[:, None]
    out = savgol_track(x, t, TrackSmoothingOptions())
    assert np.allclose(out, x, atol=1e-9)


def test_rotations_are_smoothed_and_stay_rotations() -> None:
    """A bone turning at a steady 2 rad/s, through half-turns (quaternion sign flips), with 2 degrees of
    jitter: the result is closer to the true motion and every matrix is a rotation."""
    t = np.arange(90) / FPS
    true = Rotation.from_rotvec(np.c_[np.zeros_like(t), 2.0 * t + 2.5, np.zeros_like(t)])
    rng = np.random.default_rng(1)
    noise = Rotation.from_rotvec(rng.normal(0.0, np.radians(2.0), (len(t), 3)))
    noisy = (noise * true).as_matrix()[:, None]  # (F, 1, 3, 3): one bone
    out = smooth_rotations(noisy, t, TrackSmoothingOptions())
    assert out.shape == noisy.shape
    assert np.allclose(out @ np.swapaxes(out, -1, -2), np.eye(3), atol=1e-6)
    assert np.allclose(np.linalg.det(out), 1.0, atol=1e-6)

    def err_deg(R: np.ndarray) -> float:
        return float(np.degrees((Rotation.from_matrix(R[:, 0]) * true.inv()).magnitude()).mean())

    assert err_deg(out) < 0.6 * err_deg(noisy), (err_deg(out), err_deg(noisy))
