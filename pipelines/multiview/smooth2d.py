"""The video mode's 1-euro filter on a track's 2D body keypoints only (the multi-view mode's per-view input).

pipelines.tracking.smoothing.DetectionSmoother filters the 2D keypoints and the detector's hip-centred 3D
landmarks; the multi-view mode triangulates the 2D ones and never reads the 3D ones, so this filters the
former alone: the same filters, parameters and timestamps (the 2D output is the same), 40 % of the calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from OneEuroFilter import OneEuroFilter

from pipelines.tracking.smoothing import SmoothingOptions


@dataclass
class KeypointSmoother2D:
    """One 1-euro filter per 2D body keypoint coordinate of one track."""

    rate_hz: float
    """Rate of the processed frames (fps / stride)."""
    options: SmoothingOptions = field(default_factory=SmoothingOptions)
    """Filter parameters (the video mode's)."""
    n_body: int = 33
    """Body keypoints filtered (BlazePose); further points pass through unchanged."""
    _filters: list[OneEuroFilter] = field(default_factory=list)

    def __call__(self, xy_k2: np.ndarray, time_s: float) -> np.ndarray:
        """A filtered copy of the keypoints (K, 2) in pixels at `time_s`; NaN coordinates are skipped."""
        o = self.options
        n = min(self.n_body, len(xy_k2))
        if not self._filters:
            self._filters = [OneEuroFilter(self.rate_hz, o.min_cutoff_hz, o.beta_px, o.d_cutoff_hz)
                             for _ in range(2 * n)]  # fmt: skip
        out_k2 = np.array(xy_k2, dtype=np.float64, copy=True)
        flat = out_k2[:n].reshape(-1)
        t = time_s + 1.0  # as DetectionSmoother: the library ignores a previous timestamp of exactly 0
        for i in np.flatnonzero(np.isfinite(flat)):
            flat[i] = self._filters[i](float(flat[i]), t)
        out_k2[:n] = flat.reshape(n, 2)
        return out_k2
