"""One focal length from several people seen by the same camera.

Each person's fit solves the focal with its body under the same log-normal prior; its result is a
Gaussian in log(focal) (the fit's Laplace approximation, prior included). Dividing the prior out
leaves each person's own evidence; the shared focal multiplies the prior once with every person's
evidence. People whose fit says nothing about the focal (variance at or above the prior's) add nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


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
