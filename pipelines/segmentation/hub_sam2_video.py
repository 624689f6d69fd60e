"""SAM2 masks for the video mode: people tracked by their landmarks, each frame's mask drawn by SAM2
from the tracked person's box on that frame.

Why not sam2's video predictor (`build_sam2_video_predictor` / `SAM2VideoPredictor`)? It imports no
torchvision, but its `init_state` loads the whole clip up front (an .mp4 through `decord`, or a folder
of JPEG files named <index>.jpg), resized to SAM2's input on the device, before the first mask: every
frame in memory at once (12 MB a frame at 1024 px, float32) and no mask before the last frame is read.
The video mode streams frames (decoded in a thread, a bounded queue, memory flat, cancellable) and
finds people as they enter; so each frame gets SAM2 image prediction (pipelines.segmentation.hub_sam2,
one image embedding a frame) prompted with the box of the person the landmark tracker follows
(pipelines.tracking.landmark_tracking). The box comes from the landmarks, so the mask follows the
tracked person, not another one SAM2's memory could drift to.
Pixels of the processed frame, origin at the top-left corner; masks float32 (H, W) in [0, 1].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipelines.types import PersonDetection

BOX_GROW_FRAC = 0.1
"""The landmark box is grown by this fraction of its size on each side before prompting SAM2 (the
landmarks are joints: the head's top, the hands' and feet's outline lie outside their box)."""


class TrackedSam2Masks:
    """The video mode's detection stage with `--segmentation hub`: `people` (a landmark tracker) finds and
    follows the people, `segmentation` (the image pipeline's hub segmentation stage, possibly wrapped in
    its fallback) draws their masks."""

    def __init__(self, people: Any, segmentation: Any, box_grow_frac: float = BOX_GROW_FRAC) -> None:
        self.people = people
        self.segmentation = segmentation
        self.box_grow_frac = box_grow_frac

    @property
    def has_masks(self) -> bool:
        """Whether the detections carry SAM2 masks (False once the stage fell back to the embedded one)."""
        return not getattr(self.segmentation, "fell_back", False)

    def detect(self, image_rgb_hw3: np.ndarray) -> list[PersonDetection]:
        """The tracked people of this frame (frames in order), each with SAM2's mask from their box."""
        people = self.people.detect(image_rgb_hw3)
        if not people or not self.has_masks:
            return people
        try:
            return self.segmentation.masks_for(image_rgb_hw3, people, box_grow_frac=self.box_grow_frac)
        except AttributeError:  # SAM2 could not be had: the stage fell back (and said so) on this call
            if self.has_masks:
                raise
            return people

    def close(self) -> None:
        close = getattr(self.people, "close", None)
        if close is not None:
            close()
