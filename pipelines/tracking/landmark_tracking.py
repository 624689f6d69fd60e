"""People over a video with BlazePose's own video mode: landmark tracking, re-detection every K frames.

MediaPipe's pose landmarker, in its VIDEO running mode, runs the person detector only when it tracks
fewer people than it may find; otherwise it runs only the landmark model, in the region the previous
frame's landmarks give (landmarks_to_roi). With more than one allowed person that means a detector
run on every frame (measured on pose2sim_single/cam01: 36 ms a frame for up to 4 people, 23 ms for
exactly 1). This class does the same tracking with the project's own BlazePose models
(pipelines.segmentation.pose_landmarks / pose_detector, MediaPipe's model files) and looks for
newcomers with the detector every `redetect_every` frames only (and on every frame while nobody is
tracked), so one person costs one landmark run (~18 ms) a frame, whatever the number allowed.

Per-person masks are not computed (the video fit does not use them): `mask_hw` is a read-only
all-zero view of the frame's size. Pixels of the given frame, origin at the top-left corner.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.segmentation.embedded import EmbeddedSegmenter, _same, as_rgb_uint8, detection_from_landmarks
from pipelines.segmentation.pose_detector import TileSettings
from pipelines.segmentation.pose_landmarks import RegionLandmarks
from pipelines.types import PersonDetection


@dataclass
class LandmarkTrackingOptions:
    """How people are tracked and looked for."""

    max_people: int = 4
    """At most this many people tracked at once."""
    redetect_every: int = 10
    """Run the person detector every this many frames (newcomers), besides frames with nobody tracked."""
    min_presence: float = 0.5
    """A tracked region whose landmark model's pose presence falls below this has lost its person."""
    tile_fracs: tuple[float, ...] = ()
    """Detector tiles besides the whole frame (fractions of the short side); () = the whole frame only,
    one detector run (large people, as MediaPipe's single pass)."""


@dataclass
class LandmarkTrackingDetector:
    """A segmentation-stage `detect(image)` for consecutive video frames (see the module docstring)."""

    options: LandmarkTrackingOptions = field(default_factory=LandmarkTrackingOptions)
    """Tracking and detection settings."""
    frames_seen: int = 0
    """Frames processed so far."""
    detector_runs: int = 0
    """Frames on which the person detector ran."""
    _tracked: list[RegionLandmarks] = field(default_factory=list)
    _models: EmbeddedSegmenter | None = None

    def _segmenter(self) -> EmbeddedSegmenter:
        if self._models is None:
            # The photo mode's lower detector threshold and presence check are not measured on video: the
            # former settings here.
            tiles = TileSettings(tile_fracs=self.options.tile_fracs, min_score=0.5)
            self._models = EmbeddedSegmenter(max_people=self.options.max_people, tiles=tiles,
                                             mirror_average_all=False, min_found_presence=0.5)  # fmt: skip
        return self._models

    def reset(self) -> None:
        """Forget the tracked people (a cut, a seek)."""
        self._tracked = []

    def detect(self, image_rgb_hw3: np.ndarray) -> list[PersonDetection]:
        """The people in this frame (tracked ones first, in their order), [] when there is nobody."""
        seg = self._segmenter()
        image = as_rgb_uint8(image_rgb_hw3)
        kept: list[RegionLandmarks] = []
        for prev in self._tracked:
            lm = seg._landmarks_in(image, prev.next_rect(), self.options.min_presence)
            if lm is not None and not any(_same(lm, q) for q in kept):
                kept.append(lm)
        due = self.frames_seen % max(1, self.options.redetect_every) == 0
        if (due or not kept) and len(kept) < self.options.max_people:
            self.detector_runs += 1
            seg.add_detected(image, kept, self.options.max_people)
        self.frames_seen += 1
        h, w = image.shape[:2]
        empty_hw = np.broadcast_to(np.float32(0.0), (h, w))
        people = []
        for lm in kept:
            conf_k = np.clip(lm.visibility_k * lm.presence_k, 0.0, 1.0)
            people.append(detection_from_landmarks(lm.xy_k2, conf_k, lm.world_k3, empty_hw))
        keep = [i for i, p in enumerate(people) if p.score >= seg.min_person_score]
        self._tracked = [kept[i] for i in keep]
        return [people[i] for i in keep]

    def close(self) -> None:
        """Free the models (a later call loads them again)."""
        if self._models is not None:
            self._models.close()

