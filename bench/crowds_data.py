"""The labelled crowd frames of shared/data/crowds (MPII, PoseTrack18) and how a found person is matched.

Ground truth is read into one shape: per image, people with named joints in pixels (origin top-left)
and a box. Names follow the project's vocabulary (COCO / BlazePose: 'left_knee', ...); joints the
datasets have and the body model lacks (MPII's pelvis, thorax, neck, head top; PoseTrack's head
points) are dropped. MPII labels one person per photo, PoseTrack all people of a few frames.

Split (fixed before any tuning; constants were tuned on TUNING only and on the unlabelled COCO photos):
TUNING = 2 MPII photos + 1 PoseTrack frame (3 people), HELD_OUT = 3 MPII photos + 1 PoseTrack
frame (5 people).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_MPII_NAMES = [
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", None, None, None, None,
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
]  # fmt: skip
_POSETRACK_NAMES = [
    "nose", None, None, "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle",
]  # fmt: skip

TUNING = ("mpii/004645041.jpg", "mpii/051423444.jpg", "posetrack18/003418_mpii_test.jpg")
HELD_OUT = ("mpii/005808361.jpg", "mpii/052475643.jpg", "mpii/060754485.jpg", "posetrack18/009473_mpii_test.jpg")


@dataclass
class GtPerson:
    """One annotated person."""

    joints: dict[str, np.ndarray]
    """Visible annotated joints: name -> (x, y) in pixels."""
    box_xyxy: np.ndarray
    """The dataset's box (PoseTrack), else the box around all annotated joints (MPII, head top included)."""

    @property
    def size_px(self) -> float:
        """Box size for PCK thresholds: the long side of the box."""
        return float(max(self.box_xyxy[2] - self.box_xyxy[0], self.box_xyxy[3] - self.box_xyxy[1]))


@dataclass
class GtImage:
    rel_path: str
    """Path relative to shared/data/crowds, e.g. 'mpii/004645041.jpg'."""
    people: list[GtPerson]


def load_labelled(crowds_dir: Path) -> list[GtImage]:
    """Every labelled image of crowds/ (MPII and PoseTrack18), in a fixed order."""
    images: dict[str, list[GtPerson]] = {}
    for ann in json.loads((crowds_dir / "mpii" / "test_mpii.json").read_text()):
        xy = np.asarray(ann["joints"], dtype=np.float64)
        vis = np.asarray(ann["joints_vis"]) > 0
        joints = {n: xy[i] for i, n in enumerate(_MPII_NAMES) if n and vis[i] and np.all(xy[i] > 0)}
        labelled = xy[vis & np.all(xy > 0, axis=1)]
        box = np.concatenate([labelled.min(0), labelled.max(0)])
        images.setdefault(f"mpii/{ann['image']}", []).append(GtPerson(joints, box))
    track = json.loads((crowds_dir / "posetrack18" / "annotations.json").read_text())
    names = {im["id"]: im["file_name"] for im in track["images"]}
    for ann in track["annotations"]:
        kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(-1, 3)
        joints = {n: kp[i, :2] for i, n in enumerate(_POSETRACK_NAMES) if n and kp[i, 2] > 0}
        x, y, bw, bh = ann["bbox"]
        images.setdefault(f"posetrack18/{names[ann['image_id']]}", []).append(
            GtPerson(joints, np.array([x, y, x + bw, y + bh], dtype=np.float64))
        )
    return [GtImage(k, v) for k, v in sorted(images.items())]


def pck(pred: dict[str, np.ndarray], gt: GtPerson, frac: float) -> float:
    """Share of the person's annotated joints predicted within `frac` x box size (a missing one misses)."""
    if not gt.joints:
        return 0.0
    hits = [n in pred and float(np.linalg.norm(pred[n] - xy)) <= frac * gt.size_px for n, xy in gt.joints.items()]
    return float(np.mean(hits))


def match(preds: list[dict[str, np.ndarray]], gts: list[GtPerson], frac: float = 0.2, min_share: float = 0.5
          ) -> dict[int, int]:  # fmt: skip
    """One-to-one matching, best pairs first: gt index -> pred index, for pairs where at least
    `min_share` of the annotated joints lie within `frac` x box size."""
    pairs = sorted(
        ((pck(p, g, frac), gi, pi) for gi, g in enumerate(gts) for pi, p in enumerate(preds)), reverse=True
    )
    out: dict[int, int] = {}
    used: set[int] = set()
    for share, gi, pi in pairs:
        if share >= min_share and gi not in out and pi not in used:
            out[gi] = pi
            used.add(pi)
    return out
