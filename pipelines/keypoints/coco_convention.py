"""The COCO joint convention: BlazePose-convention joints moved to where COCO / MPII annotators put them.

BlazePose (and the body fit, whose 2D targets are BlazePose's landmarks) places the hips low and close
together, near the hip joints' centres seen through the pelvis; COCO and MPII annotators click the
outside of the hips, higher, and the shoulders a little higher than BlazePose's. On the tuning crowd
photos (bench/crowds_data.TUNING) BlazePose's hips sat 4-8 % of the person's box below and inside the
labelled ones. This module is the one named mapping between the two: a hip or shoulder moves along the
person's own torso axes,

    coco_hip      = hip      + hip_lateral      * (hip - mid_hip)           + hip_up      * (mid_shoulder - mid_hip)
    coco_shoulder = shoulder + shoulder_lateral * (shoulder - mid_shoulder) + shoulder_up * (mid_shoulder - mid_hip)

(every other joint is unchanged). The terms are linear in the joints, so the same coefficients apply
to 2D keypoints in pixels and to 3D joints in metres (an affine view of the moved 3D joints is the moved
2D joints). The coefficients are the medians of the per-joint solutions on the tuning crowd photos'
BlazePose keypoints with box prompts (6 hips, 6 shoulders); held-out photos were not used.

Use it for anything scored against, or written for, COCO-style labels (bench/bench_crowds.py's PCK);
the body fit and the rest of the pipeline stay in BlazePose's convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.keypoints.names import COCO17_NAMES

TORSO_NAMES = ("left_hip", "right_hip", "left_shoulder", "right_shoulder")


@dataclass(frozen=True)
class JointConvention:
    """How far hips and shoulders move, in the person's own torso units (see the module's formula)."""

    hip_lateral: float = 0.73
    """Outwards, per unit of the hip's distance from the mid-hip (0.73: the hips 1.73x as far apart)."""
    hip_up: float = 0.13
    """Up the torso, per torso length (mid-hip to mid-shoulder)."""
    shoulder_lateral: float = -0.09
    """Outwards, per unit of the shoulder's distance from the mid-shoulder (negative: inwards)."""
    shoulder_up: float = 0.06
    """Up the torso, per torso length."""


COCO_CONVENTION = JointConvention()
"""Chosen on the tuning crowd photos (MPII + PoseTrack labels; COCO's hip and shoulder definitions)."""


def to_coco_convention(xy_kd: np.ndarray, names: list[str], convention: JointConvention = COCO_CONVENTION
                       ) -> np.ndarray:  # fmt: skip
    """The joints (K, D), D = 2 (pixels) or 3 (metres), named `names`, with hips and shoulders moved to
    the COCO convention; a copy. Unchanged when one of the four torso joints is missing or not finite."""
    out = np.array(xy_kd, dtype=np.float64, copy=True)
    if not all(n in names for n in TORSO_NAMES):
        return out
    idx = {n: names.index(n) for n in TORSO_NAMES}
    torso = out[[idx[n] for n in TORSO_NAMES]]
    if not np.isfinite(torso).all():
        return out
    mid_hip, mid_shoulder = torso[:2].mean(axis=0), torso[2:].mean(axis=0)
    up = mid_shoulder - mid_hip
    for side in ("left", "right"):
        hip, shoulder = idx[f"{side}_hip"], idx[f"{side}_shoulder"]
        out[hip] += convention.hip_lateral * (out[hip] - mid_hip) + convention.hip_up * up
        out[shoulder] += convention.shoulder_lateral * (out[shoulder] - mid_shoulder) + convention.shoulder_up * up
    return out


def coco17_from(xy_kd: np.ndarray, names: list[str], convention: JointConvention = COCO_CONVENTION
                ) -> dict[str, np.ndarray]:  # fmt: skip
    """The 17 COCO joints in the COCO convention, name -> (D,), from joints in BlazePose's convention
    (those of the 17 that `names` lacks are absent)."""
    moved = to_coco_convention(xy_kd, names, convention)
    return {n: moved[names.index(n)] for n in COCO17_NAMES if n in names}
