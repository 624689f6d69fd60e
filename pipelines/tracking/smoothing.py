"""Temporal smoothing of a track's detections with the 1-euro filter (OneEuroFilter, BSD-3, by its authors).

The 1-euro filter is a low-pass filter whose cutoff rises with the signal's speed: slow, jittery
motion is smoothed hard, fast motion passes with little lag. It is applied to the fit's inputs
(2D body keypoints in pixels, the detector's hip-centred 3D landmarks in metres), so the body, the
skeleton and every export stay consistent with each other. Timestamps are the frames' video times.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from OneEuroFilter import OneEuroFilter

from pipelines.types import Keypoints2D, Keypoints3D, PersonDetection


@dataclass
class SmoothingOptions:
    """1-euro parameters (Casiez et al. 2012); cutoffs in Hz, beta per unit of speed.

    Chosen on pose2sim_single/cam01 (60 fps, 720x1280, fast dancing): mean joint acceleration 188 ->
    87 m/s^2, no lag at one-frame resolution, accuracy against the 4-view triangulation unchanged
    (PA-MPJPE 67.9 mm both). (1.5 Hz, 0.02, 2.0) smoothed more (62 m/s^2) but lagged one frame and lost
    2.7 mm of root-relative MPJPE.
    """

    min_cutoff_hz: float = 3.0
    """Cutoff at rest: lower removes more jitter."""
    beta_px: float = 0.05
    """Speed coefficient for pixels (per px/s): higher follows fast motion with less lag."""
    beta_m: float = 5.0
    """Speed coefficient for the metric 3D landmarks (per m/s)."""
    d_cutoff_hz: float = 1.0
    """Cutoff of the speed estimate."""


@dataclass
class CoordinateFilters:
    """One 1-euro filter per coordinate of the first `n_body` points of a (K, D) array, made on first use."""

    rate_hz: float
    """Rate of the processed frames (fps / stride); the filters then follow the frames' timestamps."""
    options: SmoothingOptions
    beta: float
    """Speed coefficient in the points' unit (options.beta_px or options.beta_m)."""
    n_body: int = 33
    """Points filtered (BlazePose's body); further points pass through unchanged."""
    _filters: list[OneEuroFilter] = field(default_factory=list)

    def __call__(self, pts_kd: np.ndarray, time_s: float) -> np.ndarray:
        """A filtered copy of the points at `time_s` (seconds of video); NaN coordinates are skipped."""
        out_kd = np.array(pts_kd, dtype=np.float64, copy=True)
        n = min(self.n_body, len(out_kd))
        if not self._filters:
            o = self.options
            self._filters = [OneEuroFilter(self.rate_hz, o.min_cutoff_hz, self.beta, o.d_cutoff_hz)
                             for _ in range(n * out_kd.shape[1])]  # fmt: skip
        flat = out_kd[:n].reshape(-1)
        t = time_s + 1.0  # the library ignores a previous timestamp of exactly 0
        for i in np.flatnonzero(np.isfinite(flat)):
            flat[i] = self._filters[i](float(flat[i]), t)
        out_kd[:n] = flat.reshape(n, -1)
        return out_kd


def keypoint_smoother_2d(rate_hz: float, options: SmoothingOptions | None = None) -> CoordinateFilters:
    """The 1-euro filters of one track's 2D body keypoints (pixels) alone: what the multi-view mode
    triangulates (it never reads the 3D landmarks); the same filters as DetectionSmoother's 2D ones."""
    options = options or SmoothingOptions()
    return CoordinateFilters(rate_hz, options, options.beta_px)


@dataclass
class DetectionSmoother:
    """One 1-euro filter per body keypoint coordinate of one track."""

    rate_hz: float
    """Rate of the processed frames (fps / stride); the filters then follow the frames' timestamps."""
    options: SmoothingOptions = field(default_factory=SmoothingOptions)
    """Filter parameters."""
    n_body: int = 33
    """Body keypoints filtered (BlazePose); hand points pass through unchanged."""

    def __post_init__(self) -> None:
        self._f2d = CoordinateFilters(self.rate_hz, self.options, self.options.beta_px, self.n_body)
        self._f3d = CoordinateFilters(self.rate_hz, self.options, self.options.beta_m, self.n_body)

    def __call__(self, det: PersonDetection, time_s: float) -> PersonDetection:
        """A copy of `det` with its body keypoints (2D and 3D) filtered up to `time_s`."""
        kp, k3 = det.keypoints2d, det.keypoints3d_hip
        xy_k2 = self._f2d(kp.xy_k2, time_s)
        xyz_k3 = self._f3d(k3.xyz_k3, time_s)
        return PersonDetection(
            bbox_xyxy=det.bbox_xyxy,
            score=det.score,
            mask_hw=det.mask_hw,
            keypoints2d=Keypoints2D(list(kp.names), xy_k2, np.asarray(kp.conf_k).copy()),
            keypoints3d_hip=Keypoints3D(list(k3.names), xyz_k3, k3.frame),
        )
