"""One focal length from several people seen by the same camera.

Each person's fit solves the focal with its body under the same log-normal prior; its result is a
Gaussian in log(focal) (the fit's Laplace approximation, prior included). Dividing the prior out
leaves each person's own evidence; the shared focal multiplies the prior once with every person's
evidence. People whose fit says nothing about the focal (variance at or above the prior's) add nothing.
A video pools the people of its first frames the same way (FocalPool).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class FocalEstimate:
    """A focal length with its uncertainty, in log space."""

    focal_px: float
    log_var: float
    """Variance of log(focal_px)."""


def combine_focal_estimates(estimates: list[FocalEstimate], prior_px: float, prior_sigma_log: float
                            ) -> FocalEstimate:  # fmt: skip
    """The posterior of one focal shared by every estimate, each of which already includes the same prior."""
    prior_info = 1.0 / prior_sigma_log**2
    info = prior_info
    weighted = prior_info * math.log(prior_px)
    for est in estimates:
        if not (math.isfinite(est.log_var) and est.log_var > 0 and est.focal_px > 0):
            continue
        own_info = 1.0 / est.log_var - prior_info
        if own_info <= 0:
            continue
        # The person's evidence alone: its posterior with the prior divided out.
        own_mean = (math.log(est.focal_px) / est.log_var - prior_info * math.log(prior_px)) / own_info
        info += own_info
        weighted += own_info * own_mean
    return FocalEstimate(math.exp(weighted / info), 1.0 / info)


POOL_FRAMES = 5
"""A video's focal is pooled over the people first seen in its first this many processed frames."""


@dataclass
class FocalPool:
    """One camera's focal from the people of several frames (a video: every track's first fit during its first
    `frames` frames), each person's evidence counted once and the prior once (combine_focal_estimates)."""

    prior_px: float
    prior_sigma_log: float
    frames: int = POOL_FRAMES
    estimates: list[FocalEstimate] = field(default_factory=list)
    frames_seen: int = 0

    @property
    def open(self) -> bool:
        """Whether new people still add to the focal (after `frames` frames it is held)."""
        return self.frames_seen < self.frames

    def add(self, estimate: FocalEstimate) -> FocalEstimate:
        """Add one person's estimate (its fit's posterior, the prior included); returns the pooled focal."""
        self.estimates.append(estimate)
        return self.pooled()

    def pooled(self) -> FocalEstimate:
        """The focal shared by every estimate so far (one estimate: its own; none: the prior)."""
        if len(self.estimates) == 1:
            return self.estimates[0]
        return combine_focal_estimates(self.estimates, self.prior_px, self.prior_sigma_log)

    def end_frame(self) -> None:
        self.frames_seen += 1
