"""Stable person ids across frames: detections matched to tracks by an optimal assignment.

The cost between a track and a detection mixes box overlap (1 - IoU) and the mean distance of the
keypoints both see confidently, in units of the track's box diagonal; pairs above `max_cost` are
never matched. scipy's linear_sum_assignment solves the matching. A track missed for more than
`max_age` processed frames is dropped; an unmatched detection starts a new track with a new id
(ids are never reused). Pixel coordinates of the processed frames.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipelines.types import PersonDetection


def box_iou_matrix(a_n4: np.ndarray, b_m4: np.ndarray) -> np.ndarray:
    """IoU (N, M) between two sets of xyxy boxes."""
    a = np.asarray(a_n4, dtype=np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(b_m4, dtype=np.float64).reshape(-1, 4)[None]
    iw = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    ih = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return inter / np.maximum(area_a + area_b - inter, 1e-9)


@dataclass
class TrackState:
    """What the tracker remembers of one person."""

    id: int
    """The person's id (0, 1, ... in order of appearance; never reused)."""
    bbox_xyxy: np.ndarray
    """Box at the last match (pixels)."""
    xy_k2: np.ndarray
    """Body keypoints at the last match (pixels, BlazePose order)."""
    conf_k: np.ndarray
    """Their confidences."""
    missed: int = 0
    """Processed frames since the last match."""
    hits: int = 1
    """Frames matched so far."""


@dataclass
class PersonTracker:
    """Assigns each frame's detections to tracks (see the module docstring)."""

    max_age: int = 15
    """Processed frames a track survives without a match (short occlusions)."""
    max_cost: float = 0.8
    """Largest accepted matching cost."""
    keypoint_weight: float = 1.0
    """Weight of the keypoint distance against 1 - IoU."""
    tracks: list[TrackState] = field(default_factory=list)
    """The live tracks."""
    next_id: int = 0
    """The id the next new track gets."""

    def _cost(self, track: TrackState, det: PersonDetection) -> float:
        iou = float(box_iou_matrix(track.bbox_xyxy, det.bbox_xyxy)[0, 0])
        n = min(len(track.xy_k2), len(det.keypoints2d.xy_k2), 33)
        ok = (track.conf_k[:n] > 0.5) & (det.keypoints2d.conf_k[:n] > 0.5)
        x0, y0, x1, y1 = track.bbox_xyxy
        diag = max(float(np.hypot(x1 - x0, y1 - y0)), 1.0)
        if ok.sum() >= 3:
            d = float(np.linalg.norm(track.xy_k2[:n][ok] - det.keypoints2d.xy_k2[:n][ok], axis=1).mean()) / diag
        else:
            d = 1.0 - iou
        return (1.0 - iou) + self.keypoint_weight * d

    def update(self, detections: list[PersonDetection]) -> list[int]:
        """The track id of each detection (same order); ages and drops unmatched tracks."""
        ids = [-1] * len(detections)
        if self.tracks and detections:
            cost = np.array([[self._cost(t, d) for d in detections] for t in self.tracks])
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] <= self.max_cost:
                    ids[c] = self.tracks[r].id
                    self._refresh(self.tracks[r], detections[c])
        matched = set(ids)
        for track in self.tracks:
            if track.id not in matched:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_age]
        for c, det in enumerate(detections):
            if ids[c] < 0:
                kp = det.keypoints2d
                track = TrackState(self.next_id, np.asarray(det.bbox_xyxy, dtype=np.float64).copy(),
                                   np.asarray(kp.xy_k2[:33], dtype=np.float64).copy(),
                                   np.asarray(kp.conf_k[:33], dtype=np.float64).copy())  # fmt: skip
                self.tracks.append(track)
                ids[c] = track.id
                self.next_id += 1
        return ids

    @staticmethod
    def _refresh(track: TrackState, det: PersonDetection) -> None:
        kp = det.keypoints2d
        track.bbox_xyxy = np.asarray(det.bbox_xyxy, dtype=np.float64).copy()
        track.xy_k2 = np.asarray(kp.xy_k2[:33], dtype=np.float64).copy()
        track.conf_k = np.asarray(kp.conf_k[:33], dtype=np.float64).copy()
        track.missed = 0
        track.hits += 1
