"""Joint conventions: BlazePose-convention joints moved to where a dataset's annotators put hips and shoulders.

BlazePose (and the body fit, whose 2D targets are BlazePose's landmarks) places the hips low and close
together; MPII's annotators click the outside of the hips, higher, and the shoulders a little higher.
On the MPII tuning photos (bench/crowds_data.TUNING) BlazePose's hips sat 4-8 % of the person's box
below and inside the labelled ones. A convention moves a hip or shoulder along the person's own torso:

    hip'      = hip      + hip_lateral      * (hip - mid_hip)           + hip_up      * (mid_shoulder - mid_hip)
    shoulder' = shoulder + shoulder_lateral * (shoulder - mid_shoulder) + shoulder_up * (mid_shoulder - mid_hip)

(every other joint is unchanged). The terms are linear in the joints, so the same coefficients apply to
2D keypoints in pixels and to 3D joints in metres (an affine view of the moved 3D joints is the moved 2D
joints).

- `MPII_CONVENTION`: the medians of the per-joint solutions on the 2 MPII tuning photos' BlazePose
  keypoints with box prompts (4 hips, 4 shoulders); held-out photos were not used. Mean hip error
  there 5.8 -> 2.6 % of the box.
- `COCO_CONVENTION` (COCO's keypoint definition, which PoseTrack's labels follow): BlazePose's own. The
  MPII offsets moved the hips of the PoseTrack tuning person away from the labels (mean 7.5 -> 9.0 % of the
  box), and one labelled COCO-style tuning person is too few to fit offsets of COCO's own.

Use a convention for anything scored against, or written for, a dataset's labels (bench/bench_crowds.py's
PCK); the body fit and the rest of the pipeline stay in BlazePose's convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.keypoints.names import COCO17_NAMES

TORSO_NAMES = ("left_hip", "right_hip", "left_shoulder", "right_shoulder")


@dataclass(frozen=True)
class JointConvention:
    """How far hips and shoulders move, in the person's own torso units (see the module's formula)."""

    name: str
    hip_lateral: float = 0.0
    """Outwards, per unit of the hip's distance from the mid-hip (0.73: the hips 1.73x as far apart)."""
    hip_up: float = 0.0
    """Up the torso, per torso length (mid-hip to mid-shoulder)."""
    shoulder_lateral: float = 0.0
    """Outwards, per unit of the shoulder's distance from the mid-shoulder (negative: inwards)."""
    shoulder_up: float = 0.0
    """Up the torso, per torso length."""


BLAZEPOSE_CONVENTION = JointConvention("blazepose")
"""The joints as detected and fitted (nothing moves)."""
MPII_CONVENTION = JointConvention("mpii", hip_lateral=0.73, hip_up=0.11, shoulder_lateral=-0.095, shoulder_up=0.06)
"""Chosen on the MPII tuning photos (see the module's docstring)."""
COCO_CONVENTION = JointConvention("coco")
"""COCO's (and PoseTrack's) keypoint definition: BlazePose's own, until COCO-labelled tuning data says otherwise."""
DATASET_CONVENTIONS: dict[str, JointConvention] = {"mpii": MPII_CONVENTION, "posetrack18": COCO_CONVENTION,
                                                   "coco": COCO_CONVENTION}  # fmt: skip


def to_convention(xy_kd: np.ndarray, names: list[str], convention: JointConvention) -> np.ndarray:
    """The joints (K, D), D = 2 (pixels) or 3 (metres), named `names`, with hips and shoulders moved to
    `convention`; a copy. Unchanged when one of the four torso joints is missing or not finite."""
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
    """The 17 COCO joints, name -> (D,), from joints in BlazePose's convention, moved to `convention`
    (those of the 17 that `names` lacks are absent)."""
    moved = to_convention(xy_kd, names, convention)
    return {n: moved[names.index(n)] for n in COCO17_NAMES if n in names}
