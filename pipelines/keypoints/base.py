"""Keypoint stage: adds detail keypoints (hands) to the people found by the segmentation stage."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pipelines.types import PersonDetection


class KeypointDetector(Protocol):
    def add_keypoints(self, image_rgb_hw3: np.ndarray, people: list[PersonDetection]) -> list[PersonDetection]:
        """Return the people with 21 keypoints per visible hand appended to keypoints2d
        (names 'left_hand_wrist', 'left_hand_thumb_cmc', ... see pipelines.keypoints.names)."""
        ...
