"""Person detection + segmentation stage: finds every person, with a mask and body keypoints."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pipelines.types import PersonDetection, Prompts


class PersonSegmenter(Protocol):
    def detect(self, image_rgb_hw3: np.ndarray) -> list[PersonDetection]:
        """All people in the image, sorted by score (best first); [] when there is nobody."""
        ...

    def apply_prompts(
        self, image_rgb_hw3: np.ndarray, people: list[PersonDetection], prompts: Prompts
    ) -> list[PersonDetection]:
        """Select and refine people with click prompts (points and box).

        Positive points / the box select the person they fall on (others are kept unchanged) and
        refine that person's mask; negative points carve regions out of it. A box or a positive click
        on someone not in `people` finds that person in the prompted region and appends them (with
        landmarks, so they get a body); existing people keep their index. Returns a new list.
        """
        ...
