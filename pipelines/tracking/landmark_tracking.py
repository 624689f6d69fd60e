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
all-zero view of the frame's size; the landmark model's own mask of each tracked region is kept in
`last_regions` (pipelines.tracking.video_masks pastes it into the frame when a mask prompt asks).
Pixels of the given frame, origin at the top-left corner.

`detect_frame` takes a decoded VideoFrame: each tracked region's crop is cut from the processed frame's
pixels under that region only, made from the source frame (VideoFrame.window_rgb: the same pixel-area
downscale, the same values), so the whole downscaled frame is made only on the frames the person
detector runs (1 in `redetect_every`; the 1080p -> 720p area downscale of a whole frame was ~10 ms of
CPU). The crops, hence the landmarks, are those of the whole downscaled frame, to the last bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipelines.io.video_io import VideoFrame
from pipelines.segmentation.embedded import EmbeddedSegmenter, _same, as_rgb_uint8, detection_from_landmarks
from pipelines.segmentation.pose_detector import TileSettings
from pipelines.segmentation.pose_landmarks import INPUT_SIDE, PoseLandmarkModel, RegionLandmarks
from pipelines.segmentation.roi import RotatedRect, crop_region
from pipelines.segmentation.tflite_runner import POSE_DETECTOR, POSE_LANDMARKS_FULL, TfliteModel
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
    source_crops: bool = False
    """detect_frame: cut each region's crop from the source frame itself (crop_region with even_halving:
    power-of-two area halvings of the region, no downscale to the processed size at all) instead of from the processed
    frame's pixels under it. Opt-in: measured on pose2sim_single (100 frames, load 15-21, main in the same
    run) ~15 % less CPU a frame, but the landmarks move by ~1 px and PA-MPJPE against the 4-view
    triangulation is 0.1-1.2 mm worse on every view (cam01 tuning, cam02-04 held out)."""
    landmark_threads: int | None = None
    """Threads of the landmark model's and the person detector's interpreters (None: the default, 2 here).
    One costs ~20 % less CPU a model run (12.6 against 15.9 ms, load ~13) but makes the detection thread
    the slowest stage of a single video: measured interleaved with the default at load 2-6 on
    pose2sim_single cam01 (100 frames), 14.5 frames/s mean of 5 runs against 17.6. The multi-view mode,
    which runs views side by side on every core, uses 1 (pipelines.multiview.views2d.track_views)."""
    even_halving: bool = False
    """detect: cut the tracked regions' crops with crop_region's even_halving (OpenCV's exact 2:1 pixel-area
    path: ~0.8 against ~3 ms CPU for a 550 px region). The default halving of an odd-sized window resamples
    it by slightly more than 2 (e.g. 557 -> 278 px) while the crop's geometry assumes exactly 2, which
    pulls the landmarks towards the window's top-left corner by up to ~1 processed pixel; even_halving does
    not. On by default in the multi-view mode (README, multi-view speed); the video mode keeps the former
    crops."""
    skip_motion: float | None = None
    """detect_span (up to skip_span - 1 frames skipped, pipelines.multiview.views2d.track_view): a person
    tracked on both sides of the skipped frames gets their landmarks interpolated there when no confident
    landmark moved more than this fraction of the person's region size between the two sides; else the model
    runs on them. None: every frame."""
    skip_span: int = 2
    """With skip_motion: the landmark model on every `skip_span`-th frame at most (detect_span), the frames
    between interpolated linearly; 2: every 2nd frame (detect_pair)."""


@dataclass
class LandmarkTrackingDetector:
    """A segmentation-stage `detect(image)` for consecutive video frames (see the module docstring)."""

    options: LandmarkTrackingOptions = field(default_factory=LandmarkTrackingOptions)
    """Tracking and detection settings."""
    frames_seen: int = 0
    """Frames processed so far."""
    detector_runs: int = 0
    """Frames on which the person detector ran."""
    last_regions: list[RegionLandmarks] = field(default_factory=list)
    """The regions of the people the last `detect` returned, in their order (their landmark model's mask
    crops: pipelines.tracking.video_masks)."""
    interpolated: int = 0
    """People of skipped frames given the mean of their two neighbours' landmarks (detect_pair)."""
    _tracked: list[RegionLandmarks] = field(default_factory=list)
    _last_sources: list[int | None] = field(default_factory=list)
    _models: EmbeddedSegmenter | None = None

    def _segmenter(self) -> EmbeddedSegmenter:
        if self._models is None:
            # The photo mode's lower detector threshold and presence check are not measured on video: the
            # former settings here.
            tiles = TileSettings(tile_fracs=self.options.tile_fracs, min_score=0.5)
            self._models = EmbeddedSegmenter(max_people=self.options.max_people, tiles=tiles,
                                             mirror_average_all=False, min_found_presence=0.5)  # fmt: skip
            if self.options.landmark_threads is not None:
                threads = self.options.landmark_threads
                self._models.landmarks = PoseLandmarkModel(TfliteModel(POSE_LANDMARKS_FULL, threads))
                self._models.detector.model = TfliteModel(POSE_DETECTOR, threads)
        return self._models

    def reset(self) -> None:
        """Forget the tracked people (a cut, a seek)."""
        self._tracked, self._last_sources = [], []

    def restart(self) -> None:
        """Start over for another video, as a new detector with these options would (tracked people, frame
        count hence the person detector's schedule, counters), keeping the loaded models: their interpreters
        cost ~0.1 CPU s to make (pipelines.multiview.views2d.track_views: one detector per worker thread)."""
        self.reset()
        self.frames_seen = self.detector_runs = self.interpolated = 0
        self.last_regions = []

    def detect(self, image_rgb_hw3: np.ndarray) -> list[PersonDetection]:
        """The people in this frame (tracked ones first, in their order), [] when there is nobody."""
        image = as_rgb_uint8(image_rgb_hw3)
        return self._detect(image.shape[:2], lambda rect: self._landmarks_in(image, rect), lambda: image)

    def _landmarks_in(self, image: np.ndarray, rect: RotatedRect) -> RegionLandmarks | None:
        """The landmark model in one region of `image` (None: nobody there), the crop as the options say."""
        return self._segmenter()._landmarks_in(image, rect, self.options.min_presence,
                                               even_halving=self.options.even_halving)  # fmt: skip

    def can_skip(self, pending: int = 0) -> bool:
        """Whether the next frame may be left to detect_span (LandmarkTrackingOptions.skip_motion), after
        `pending` frames already left to it: the option is on, someone is tracked, fewer than skip_span - 1
        frames are pending and the person detector is not due on this one."""
        due = (self.frames_seen + pending) % max(1, self.options.redetect_every) == 0
        return (self.options.skip_motion is not None and bool(self._tracked) and not due
                and pending < max(1, self.options.skip_span) - 1)  # fmt: skip

    def detect_pair(self, skipped: np.ndarray | VideoFrame, following: np.ndarray | VideoFrame
                    ) -> tuple[list[PersonDetection], list[PersonDetection]]:  # fmt: skip
        """detect_span of one skipped frame: the people of the skipped frame and of the next one."""
        (first,), second = self.detect_span([skipped], following)
        return first, second

    def detect_span(self, skipped: Sequence[np.ndarray | VideoFrame], following: np.ndarray | VideoFrame
                    ) -> tuple[list[list[PersonDetection]], list[PersonDetection]]:  # fmt: skip
        """The people of consecutive frames, the landmark model run on the last only where it can be (after
        can_skip): the last frame is tracked from the frame before the first; on the skipped ones, each
        person tracked on both sides gets the two sides' landmarks and confidences interpolated linearly
        (one skipped frame: their mean), unless they moved more than `skip_motion` of their region's size
        (a confident landmark's displacement, the largest) or were lost on the last frame: then the model
        runs on the skipped frames too, one after the other, in the regions it would have had. Each skipped
        frame's list: the tracked people, in their order. Frames may be RGB images (`detect`'s) or decoded
        VideoFrames (`detect_frame`'s: an interpolated frame's pixels are then never made)."""
        before = list(self._tracked)
        n = len(skipped)
        self.frames_seen += n  # the skipped frames count for redetect_every
        after = self.detect_frame(following) if isinstance(following, VideoFrame) else self.detect(following)
        landmarks_in: list[Callable[[RotatedRect], RegionLandmarks | None] | None] = [None] * n
        seg = self._segmenter()
        empty_hw = [np.broadcast_to(np.float32(0.0), f.shape_hw if isinstance(f, VideoFrame) else np.shape(f)[:2])
                    for f in skipped]  # fmt: skip
        limit = float(self.options.skip_motion or 0.0)
        people: list[list[PersonDetection]] = [[] for _ in range(n)]
        for i, prev in enumerate(before):
            j = self._last_sources.index(i) if i in self._last_sources else None
            conf_a_k = np.clip(prev.visibility_k * prev.presence_k, 0.0, 1.0)
            if j is not None:
                nxt = self.last_regions[j]
                conf_b_k = np.clip(nxt.visibility_k * nxt.presence_k, 0.0, 1.0)
                sure = (conf_a_k >= 0.5) & (conf_b_k >= 0.5)
                step_k = np.linalg.norm(nxt.xy_k2 - prev.xy_k2, axis=1)[sure]
                if step_k.size and float(step_k.max()) <= limit * prev.rect.size_px:
                    self.interpolated += n
                    for k in range(n):
                        w = (k + 1) / (n + 1)
                        people[k].append(detection_from_landmarks(
                            (1 - w) * prev.xy_k2 + w * nxt.xy_k2, (1 - w) * conf_a_k + w * conf_b_k,
                            (1 - w) * prev.world_k3 + w * nxt.world_k3, empty_hw[k]))  # fmt: skip
                    continue
            rect = prev.next_rect()
            for k in range(n):
                if landmarks_in[k] is None:
                    landmarks_in[k] = self._region_landmarks(skipped[k])
                lm = landmarks_in[k](rect)  # type: ignore[misc]
                if lm is None:
                    break  # lost: not on the later skipped frames either
                conf_k = np.clip(lm.visibility_k * lm.presence_k, 0.0, 1.0)
                people[k].append(detection_from_landmarks(lm.xy_k2, conf_k, lm.world_k3, empty_hw[k]))
                rect = lm.next_rect()
        return [[p for p in ps if p.score >= seg.min_person_score] for ps in people], after

    def detect_frame(self, frame: VideoFrame) -> list[PersonDetection]:
        """`detect` on a decoded frame: the tracked regions cropped from its source frame (see the module
        docstring); the same people, in pixels of the processed frame."""
        if frame.source_bgr_hw3 is None or frame.scale == 1.0:
            return self.detect(frame.rgb_hw3)
        return self._detect(frame.shape_hw, self._region_landmarks(frame), lambda: frame.rgb_hw3)

    def _region_landmarks(self, image: np.ndarray | VideoFrame) -> Callable[[RotatedRect], RegionLandmarks | None]:
        """The landmark model in a region of an RGB image, or of a decoded frame (cropped from its source
        frame where it has one, as detect_frame)."""
        if isinstance(image, VideoFrame):
            if image.source_bgr_hw3 is not None and image.scale != 1.0:
                return lambda rect: self._landmarks_from_source(image, rect)
            image = image.rgb_hw3
        rgb = as_rgb_uint8(image)
        return lambda rect: self._landmarks_in(rgb, rect)

    def _landmarks_from_source(self, frame: VideoFrame, rect: RotatedRect) -> RegionLandmarks | None:
        """The landmark model in one region of the processed frame, its crop taken from the source frame
        (as EmbeddedSegmenter._landmarks_in, which crops the image it is given)."""
        if rect.size_px < 8:
            return None
        if self.options.source_crops:
            assert frame.source_bgr_hw3 is not None
            s = frame.scale
            rect_src = RotatedRect((rect.center_xy[0] / s, rect.center_xy[1] / s), rect.size_px / s,
                                   rect.rotation_rad)  # fmt: skip
            crop_rgb = crop_region(frame.source_bgr_hw3, rect_src, INPUT_SIDE, even_halving=True)[..., ::-1]
            lm = self._segmenter().landmarks._decode(crop_rgb, rect, mirrored=False)
            return lm if lm.presence >= self.options.min_presence else None
        # The processed frame's pixels under the region (crop_region's window of it, 2 px beyond the
        # region's bounds), made from the source frame: the same crop as from the whole processed frame.
        x0, y0, x1, y1 = rect.bounds_xyxy()
        window_rgb, ox, oy = frame.window_rgb(np.floor(x0) - 2, np.floor(y0) - 2, np.ceil(x1) + 2, np.ceil(y1) + 2)
        rect_w = RotatedRect((rect.center_xy[0] - ox, rect.center_xy[1] - oy), rect.size_px, rect.rotation_rad)
        crop_rgb = crop_region(window_rgb, rect_w, INPUT_SIDE, even_halving=self.options.even_halving)
        # Decoded with the processed frame's rect: into its pixels.
        lm = self._segmenter().landmarks._decode(crop_rgb, rect, mirrored=False)
        return lm if lm.presence >= self.options.min_presence else None

    def _detect(self, shape_hw: tuple[int, int], landmarks_in, image) -> list[PersonDetection]:  # noqa: ANN001
        """detect's body: `landmarks_in(rect)` runs the landmark model in a region, `image()` gives the
        processed frame (the person detector's input)."""
        seg = self._segmenter()
        kept: list[RegionLandmarks] = []
        sources: list[int | None] = []  # the index in the previous frame's tracked people, None: new
        for i, prev in enumerate(self._tracked):
            lm = landmarks_in(prev.next_rect())
            if lm is not None and not any(_same(lm, q) for q in kept):
                kept.append(lm)
                sources.append(i)
        due = self.frames_seen % max(1, self.options.redetect_every) == 0
        if (due or not kept) and len(kept) < self.options.max_people:
            self.detector_runs += 1
            seg.add_detected(image(), kept, self.options.max_people)
        sources += [None] * (len(kept) - len(sources))
        self.frames_seen += 1
        h, w = shape_hw
        empty_hw = np.broadcast_to(np.float32(0.0), (h, w))
        people = []
        for lm in kept:
            conf_k = np.clip(lm.visibility_k * lm.presence_k, 0.0, 1.0)
            people.append(detection_from_landmarks(lm.xy_k2, conf_k, lm.world_k3, empty_hw))
        keep = [i for i, p in enumerate(people) if p.score >= seg.min_person_score]
        self._tracked = [kept[i] for i in keep]
        self._last_sources = [sources[i] for i in keep]
        self.last_regions = list(self._tracked)
        return [people[i] for i in keep]

    def close(self) -> None:
        """Free the models (a later call loads them again)."""
        if self._models is not None:
            self._models.close()
