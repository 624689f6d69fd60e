"""Embedded hand keypoints: MediaPipe HandLandmarker on crops around each person's BlazePose hands.

Why crops: in a full-body photo a hand is a few dozen pixels wide, too small for the palm detector,
which sees the whole image at 192 x 192 (on lunge.jpg it finds no hand on the whole image, and both
hands on crops). Each crop is a square centred on the BlazePose wrist, index, pinky and thumb
landmarks of one side, sized from the forearm and the shoulders. A found hand goes to the person and
side whose BlazePose wrist is nearest to the hand's wrist (one hand per person and side, nearest pairs
first); MediaPipe's handedness label is not used for this (it assumes a mirrored selfie and flips for
people seen from the back). Hands not found are absent: nothing is appended for them.

Confidence of a hand keypoint: the handedness classifier's score of the hand (MediaPipe fills no
per-landmark visibility or presence for hands; a hand is only returned when its presence score passed
`min_presence_confidence`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipelines.keypoints.names import ALL_HAND_NAMES, BLAZEPOSE_NAMES, hand_names
from pipelines.mediapipe_models import (
    LazyTask,
    as_rgb_uint8,
    check_model_files,
    create_hand_landmarker,
    map_on_lanes,
    to_mp_image,
)
from pipelines.registry import register
from pipelines.types import Keypoints2D, PersonDetection

_SIDES = ("left", "right")
_HAND_PARTS = ("wrist", "index", "pinky", "thumb")


@dataclass
class HandCandidate:
    """One hand found by MediaPipe in one crop, in full-image pixels."""

    xy_h2: np.ndarray
    """The 21 hand keypoints (H = 21, 2) in pixels."""
    score: float
    """Handedness score of the hand, in [0, 1]."""
    conf_h: np.ndarray
    """Confidence per keypoint (21,)."""


@dataclass
class HandSlot:
    """Where one person's hand is expected, from their BlazePose landmarks."""

    person: int
    side: str
    wrist_2: np.ndarray
    """BlazePose wrist of that side, in pixels."""
    crop_xyxy: tuple[int, int, int, int]
    """Square crop around the hand, clipped to the image, in integer pixels."""
    max_dist_px: float
    """A hand whose wrist is farther than this from the BlazePose wrist is not this one."""


def _slots(person_idx: int, person: PersonDetection, width: int, height: int) -> list[HandSlot]:
    kp = person.keypoints2d
    index = {n: i for i, n in enumerate(kp.names)}
    if not all(n in index for n in BLAZEPOSE_NAMES) or not np.any(kp.conf_k > 0):
        return []  # no BlazePose landmarks (e.g. a person made from prompts only)
    xy = {n: kp.xy_k2[index[n]] for n in BLAZEPOSE_NAMES}
    shoulder_w = float(np.linalg.norm(xy["left_shoulder"] - xy["right_shoulder"]))
    slots = []
    for side in _SIDES:
        hand_k2 = np.array([xy[f"{side}_{part}"] for part in _HAND_PARTS])
        wrist = hand_k2[0]
        margin = 0.05 * max(width, height)
        if not (-margin <= wrist[0] <= width + margin and -margin <= wrist[1] <= height + margin):
            continue  # the hand is out of the picture
        forearm = float(np.linalg.norm(wrist - xy[f"{side}_elbow"]))
        hand_extent = float(np.ptp(hand_k2, axis=0).max())
        half = max(1.2 * forearm, 0.8 * shoulder_w, 3.0 * hand_extent, 24.0)
        cx, cy = hand_k2.mean(axis=0)
        x0 = int(np.clip(np.floor(cx - half), 0, width - 1))
        y0 = int(np.clip(np.floor(cy - half), 0, height - 1))
        x1 = int(np.clip(np.ceil(cx + half), x0 + 1, width))
        y1 = int(np.clip(np.ceil(cy + half), y0 + 1, height))
        slots.append(HandSlot(person_idx, side, wrist, (x0, y0, x1, y1), max_dist_px=0.6 * half))
    return slots


def _dedupe(candidates: list[HandCandidate]) -> list[HandCandidate]:
    """The same hand found in two crops (hands close together) is kept once, the best scored."""
    kept: list[HandCandidate] = []
    for cand in sorted(candidates, key=lambda c: -c.score):
        size = float(np.ptp(cand.xy_h2, axis=0).max()) + 1.0
        if all(np.linalg.norm(cand.xy_h2 - k.xy_h2, axis=1).mean() > 0.2 * size for k in kept):
            kept.append(cand)
    return kept


def agrees_with_body(xy_h2: np.ndarray, body_kp: Keypoints2D, side: str, max_ratio: float = 0.9) -> bool:
    """Whether a found hand agrees with the body's own coarse hand point: its index knuckle must lie
    within `max_ratio` hand lengths (wrist to middle knuckle) of BlazePose's index point, when that
    point is confident. Blurred hands can give a hand-shaped but misplaced set of landmarks (on the
    4-camera set, agreeing hands sit at 0.15-0.8 hand lengths, a misplaced one at 1.06)."""
    name = f"{side}_index"
    if name not in body_kp.names or body_kp.conf_k[body_kp.names.index(name)] < 0.5:
        return True
    hand_len = float(np.linalg.norm(xy_h2[9] - xy_h2[0]))  # wrist -> middle_finger_mcp
    gap = float(np.linalg.norm(xy_h2[5] - body_kp.xy_k2[body_kp.names.index(name)]))  # index_finger_mcp
    return gap <= max_ratio * max(hand_len, 1.0)


def assign_hands(candidates: list[HandCandidate], slots: list[HandSlot]) -> dict[int, HandCandidate]:
    """Slot index -> hand: nearest (BlazePose wrist, hand wrist) pairs first, each used once."""
    pairs = []
    for ci, cand in enumerate(candidates):
        for si, slot in enumerate(slots):
            dist = float(np.linalg.norm(cand.xy_h2[0] - slot.wrist_2))
            if dist <= slot.max_dist_px:
                pairs.append((dist, ci, si))
    used_c: set[int] = set()
    out: dict[int, HandCandidate] = {}
    for _, ci, si in sorted(pairs):
        if ci not in used_c and si not in out:
            used_c.add(ci)
            out[si] = candidates[ci]
    return out


@register("keypoints", "embedded")
class EmbeddedHandKeypoints:
    """21 keypoints per visible hand, with MediaPipe's HandLandmarker (full model), offline."""

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why this backend cannot run here (mediapipe missing), without importing it."""
        from pipelines.mediapipe_models import unavailable_reason

        return unavailable_reason()

    def __init__(self, min_detection_confidence: float = 0.3, min_presence_confidence: float = 0.5,
                 lanes: int | None = None) -> None:
        """`lanes`: HandLandmarker graphs that share a photo's crops, one thread each (default: one per
        core, at most 2), from the second call with crops on; each graph is created on its first crop."""
        check_model_files()
        self.min_detection_confidence = min_detection_confidence
        self.min_presence_confidence = min_presence_confidence
        self.lanes = max(1, lanes if lanes is not None else min(2, os.cpu_count() or 1))
        self._tasks = [LazyTask(self._create) for _ in range(self.lanes)]
        self._task = self._tasks[0]
        self._calls_with_crops = 0

    def _create(self) -> Any:
        return create_hand_landmarker(
            num_hands=2,
            min_detection_confidence=self.min_detection_confidence,
            min_presence_confidence=self.min_presence_confidence,
        )

    def close(self) -> None:
        """Free the MediaPipe graphs (a later call creates them again)."""
        for task in self._tasks:
            task.close()

    def _detect_in_crops(self, image: np.ndarray, crops: list[tuple[int, int, int, int]]) -> list[list[HandCandidate]]:
        """The hands in each crop, in the crops' order; the crops shared out over the lanes (MediaPipe
        releases the GIL while a graph runs; a crop's result does not depend on the lane). The first call
        with crops uses one lane: a one-photo process does not make a second graph (~0.05 s of CPU)."""
        n_threads = min(self.lanes, len(crops)) if self._calls_with_crops else 1
        self._calls_with_crops += bool(crops)
        return map_on_lanes(lambda i, lane: self._detect_in_crop(image, crops[i], lane), len(crops), n_threads,
                            "hand-lane")  # fmt: skip

    def _detect_in_crop(self, image: np.ndarray, crop_xyxy: tuple[int, int, int, int], lane: int = 0
                        ) -> list[HandCandidate]:  # fmt: skip
        x0, y0, x1, y1 = crop_xyxy
        crop_w, crop_h = x1 - x0, y1 - y0
        task = self._tasks[lane]
        with task.lock:
            result = task.get().detect(to_mp_image(image[y0:y1, x0:x1]))
        found = []
        for landmarks, handedness in zip(result.hand_landmarks, result.handedness, strict=True):
            uv_h2 = np.array([[lm.x, lm.y] for lm in landmarks], dtype=np.float64)
            xy_h2 = uv_h2 * [crop_w, crop_h] + [x0, y0]
            score = float(max((c.score for c in handedness), default=0.0))
            presence_h = np.array([lm.presence or 0.0 for lm in landmarks], dtype=np.float64)
            if not presence_h.any():  # not filled by the hand model: the hand passed the presence gate
                presence_h = np.ones(len(landmarks))
            found.append(HandCandidate(xy_h2, score, np.clip(score * presence_h, 0.0, 1.0)))
        return found

    def add_keypoints(
        self, image_rgb_hw3: np.ndarray, people: list[PersonDetection]
    ) -> list[PersonDetection]:
        """The people with 21 keypoints per found hand appended (left hand first, then right).

        The body keypoints stay first and unchanged; hand keypoints from an earlier call are replaced.
        """
        image = as_rgb_uint8(image_rgb_hw3)
        h, w = image.shape[:2]
        slots = [s for i, p in enumerate(people) for s in _slots(i, p, w, h)]
        found = self._detect_in_crops(image, [s.crop_xyxy for s in slots])
        candidates = _dedupe([c for per_crop in found for c in per_crop])
        hand_by_slot = assign_hands(candidates, slots)
        hands = {(slots[si].person, slots[si].side): hand for si, hand in hand_by_slot.items()}

        out = []
        for pi, person in enumerate(people):
            kp = person.keypoints2d
            keep_k = np.array([n not in ALL_HAND_NAMES for n in kp.names], dtype=bool)
            names = [n for n, k in zip(kp.names, keep_k, strict=True) if k]
            xy_parts, conf_parts = [kp.xy_k2[keep_k]], [kp.conf_k[keep_k]]
            for side in _SIDES:
                hand = hands.get((pi, side))
                if hand is not None and agrees_with_body(hand.xy_h2, kp, side):
                    names += hand_names(side)
                    xy_parts.append(hand.xy_h2)
                    conf_parts.append(hand.conf_h)
            kp2d = Keypoints2D(names=names, xy_k2=np.concatenate(xy_parts), conf_k=np.concatenate(conf_parts))
            out.append(replace(person, keypoints2d=kp2d))
        return out
