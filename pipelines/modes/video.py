"""Video mode: a stream of frames -> tracked, smoothed metric bodies over time.

Per frame: the image pipeline's detection stage (MediaPipe, through the segmentation interface, in
its image running mode), optionally its hand keypoints, then people tracked with stable ids
(pipelines.tracking.tracker), their body keypoints smoothed with a 1-euro filter
(pipelines.tracking.smoothing), and one body fit per tracked person.

Assumptions and what is held:
- A static camera: one camera (intrinsics, and the camera frame as the frame of every result) for
  the whole video. Its focal is the user's, else estimated with the first fitted body, then held.
- One body shape per track: solved on the track's first fitted frame, then held; later frames
  fit pose and translation only, warm-started from the track's previous frame (a few LM iterations).
Units are metres, in the OpenCV camera frame (x right, y down, z forward); pixels are those of the
processed (possibly downscaled) frames, origin at the top-left corner.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pipelines.camera.embedded import focal_prior_px
from pipelines.hmr.fit import FitOptions, FitState
from pipelines.io.video_io import VideoFrame
from pipelines.modes.image import MIN_KEYPOINTS_TO_FIT, ImagePipeline
from pipelines.registry import create
from pipelines.scene.frame_scene import footed_bodies
from pipelines.scene.ground import FootedBody, GroundPlane, feet_only, fit_ground_over_time
from pipelines.tracking.smoothing import DetectionSmoother, SmoothingOptions
from pipelines.tracking.tracker import PersonTracker
from pipelines.types import Camera, PersonResult


@dataclass
class VideoOptions:
    """How a video is processed."""

    focal_px: float | None = None
    """Focal length in pixels of the processed frames; None = estimated on the first fitted frame."""
    smooth: bool = True
    """1-euro smoothing of each track's keypoints before its fit."""
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    """Parameters of that filter."""
    hands: bool = False
    """Run the hand landmarker per frame (fingers in the fit; ~30 ms a frame more)."""
    warm_pose_iters: int = 3
    """LM iterations of a warm-started fit (pose and translation only)."""
    max_age: int = 15
    """Processed frames a track survives unseen (short occlusions)."""
    rate_hz: float = 30.0
    """Rate of the processed frames (fps / stride), for the filters."""
    tiled_detection: bool = False
    """Embedded segmentation only: look for small people over image tiles on every frame, as the image
    mode does. Off by default: measured on cam01.mp4 it cut throughput from ~8 to ~2 frames/s and added
    tracks of false positives; a single MediaPipe pass over each frame finds the few large people."""


@dataclass
class TrackHistory:
    """One tracked person over the video: its identity, held shape and per-frame motion.

    Per-frame arrays are kept small (joints and bone rotations, float32); meshes are not kept.
    """

    id: int
    """The track's id (stable over the video; also its colour, see viz.export.person_color)."""
    pheno_p: np.ndarray | None = None
    """Anny phenotype, solved on the first fitted frame and held."""
    height_m: float | None = None
    """Standing height of that body in metres."""
    frames: list[int] = field(default_factory=list)
    """Indices (in the video) of the frames with a fitted body."""
    times_s: list[float] = field(default_factory=list)
    """Their video times in seconds."""
    joints_cam_fk3: list[np.ndarray] = field(default_factory=list)
    """Per frame: the body's output joints (K, 3), metres, OpenCV camera frame."""
    bone_rot_cam_fj33: list[np.ndarray] = field(default_factory=list)
    """Per frame: each bone's world rotation relative to rest (J, 3, 3), camera frame (the fit's G)."""
    root_pos_cam_f3: list[np.ndarray] = field(default_factory=list)
    """Per frame: the root bone's head (3,), metres, camera frame."""
    reprojection_px_f: list[float] = field(default_factory=list)
    """Per frame: mean 2D reprojection error of the fit, pixels."""
    last_state: FitState | None = None
    """The previous frame's fit (the next frame's warm start)."""
    smoother: DetectionSmoother | None = None
    """The track's keypoint filter."""


@dataclass
class VideoFrameResult:
    """One processed frame."""

    frame: VideoFrame
    """The decoded frame (index, time, pixels, scale)."""
    camera: Camera
    """The video's camera, in pixels of the processed frame."""
    people: list[PersonResult]
    """People in this frame; `id` is the track id; detections are the smoothed ones."""
    warnings: list[str] = field(default_factory=list)
    """Plain-language notes for this frame."""


class VideoPipeline:
    """Runs a frame stream through detection, tracking, smoothing and warm-started fits."""

    def __init__(self, image_pipeline: ImagePipeline | None = None, options: VideoOptions | None = None) -> None:
        self.image = image_pipeline or ImagePipeline()
        self.options = options or VideoOptions()
        self.tracker = PersonTracker(max_age=self.options.max_age)
        self.tracks: dict[int, TrackHistory] = {}
        self.camera: Camera | None = None
        self.frames_done: list[int] = []
        self.feet_history: list[list[FootedBody]] = []
        """Per processed frame the fitted bodies' feet (camera frame), for the ground over time."""
        self._detector: Any = None

    def run(self, frames: Iterable[VideoFrame]) -> Iterator[VideoFrameResult]:
        for frame in frames:
            yield self.process(frame)

    def ground(self) -> GroundPlane | None:
        """The ground under the feet of all frames so far (static camera); None without any fitted body."""
        return fit_ground_over_time(self.feet_history)

    def _segmenter(self) -> Any:
        """The image pipeline's segmentation stage; for the embedded one without tiles, a single-pass copy
        (see VideoOptions.tiled_detection)."""
        if self._detector is None:
            if self.image.config.segmentation == "embedded" and not self.options.tiled_detection:
                self._detector = create("segmentation", "embedded", single_pass=True, max_people=4)
            else:
                self._detector = self.image._get("segmentation")
        return self._detector

    def _camera(self, w: int, h: int) -> Camera:
        if self.camera is None or (self.camera.width, self.camera.height) != (w, h):
            self.camera = self.image._get("camera").initial(w, h, None, self.options.focal_px)
        return self.camera

    def process(self, frame: VideoFrame) -> VideoFrameResult:
        rgb = frame.rgb_hw3
        h, w = rgb.shape[:2]
        camera = self._camera(w, h)
        detections = self._segmenter().detect(rgb)
        if self.options.hands:
            detections = self.image._get("keypoints").add_keypoints(rgb, detections)
        ids = self.tracker.update(detections)
        warnings: list[str] = []
        people: list[PersonResult] = []
        for track_id, det in sorted(zip(ids, detections, strict=True), key=lambda p: p[0]):
            track = self.tracks.setdefault(track_id, TrackHistory(track_id))
            if self.options.smooth:
                if track.smoother is None:
                    track.smoother = DetectionSmoother(self.options.rate_hz, self.options.smoothing)
                det = track.smoother(det, frame.time_s)
            person = PersonResult(id=track_id, detection=det)
            people.append(person)
            if int((det.keypoints2d.conf_k > 0.5).sum()) < MIN_KEYPOINTS_TO_FIT:
                warnings.append(f"frame {frame.index}: person {track_id} has too few visible keypoints to fit.")
                continue
            person.body = self._fit(track, camera, person)
            if self.camera is not camera:  # the focal was just estimated
                camera = self.camera
            self._record(track, frame, person)
        if not detections:
            warnings.append(f"frame {frame.index}: nobody found.")
        self.frames_done.append(frame.index)
        self.feet_history.append([feet_only(b) for b in footed_bodies(people)])
        return VideoFrameResult(frame, camera, people, warnings)

    def _fit(self, track: TrackHistory, camera: Camera, person: PersonResult):  # noqa: ANN202 - BodyFit
        hmr = self.image.hmr
        det = person.detection
        if track.last_state is None:
            estimate = camera.source == "default"
            prior_f, _ = focal_prior_px(camera.width, camera.height)
            fit = hmr.fit(camera, det, {}, estimate_focal=estimate, focal_prior_px=prior_f)
            if estimate:
                self.camera = Camera.from_focal(fit.state.focal_px, camera.width, camera.height, "estimated")
            track.pheno_p = fit.state.pheno_p.copy()
            track.height_m = fit.body.height_m
            track.last_state = fit.state
            return fit.body
        opts = FitOptions(**{**hmr.options.__dict__})
        opts.pose_iters, opts.shape_iters = self.options.warm_pose_iters, 0
        opts.fit_shape, opts.fit_focal = False, False
        targets = hmr.targets(det, {})
        warm = track.last_state.copy()
        warm.focal_px = camera.focal_px
        report = hmr.fitter.fit(targets, camera.K_33, opts, warm)
        track.last_state = report.state
        return hmr.to_body_fit(report, targets)

    @staticmethod
    def _record(track: TrackHistory, frame: VideoFrame, person: PersonResult) -> None:
        body = person.body
        assert body is not None
        track.frames.append(frame.index)
        track.times_s.append(frame.time_s)
        track.joints_cam_fk3.append(np.asarray(body.joints3d_cam.xyz_k3, dtype=np.float32))
        track.bone_rot_cam_fj33.append(np.asarray(body.params["bone_rot_world_j33"], dtype=np.float32))
        track.root_pos_cam_f3.append(np.asarray(body.params["root_pos_cam_3"], dtype=np.float64))
        track.reprojection_px_f.append(float(body.reprojection_px_mean))


def mean_joint_acceleration(joints_fk3: np.ndarray, times_s: np.ndarray) -> float:
    """Mean norm of the joints' second time derivative (m/s^2), over frames and joints; frames must be
    consecutive processed frames (gaps count as one step)."""
    x = np.asarray(joints_fk3, dtype=np.float64)
    t = np.asarray(times_s, dtype=np.float64)
    if len(x) < 3:
        return float("nan")
    dt1, dt2 = t[1:-1] - t[:-2], t[2:] - t[1:-1]
    v1 = (x[1:-1] - x[:-2]) / dt1[:, None, None]
    v2 = (x[2:] - x[1:-1]) / dt2[:, None, None]
    acc = (v2 - v1) / ((dt1 + dt2) / 2)[:, None, None]
    return float(np.linalg.norm(acc, axis=-1).mean())
