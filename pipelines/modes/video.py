"""Video mode: a stream of frames -> tracked, smoothed metric bodies over time.

Per frame: BlazePose landmarks tracked from the previous frame as MediaPipe's video mode does, the
person detector run every few frames for newcomers (pipelines.tracking.landmark_tracking; or, with
`VideoOptions.detector="image"`, the image pipeline's detection stage on every frame), optionally the
hand keypoints, then people tracked with stable ids (pipelines.tracking.tracker), optionally their
body keypoints smoothed with a 1-euro filter (pipelines.tracking.smoothing), the user's click prompts
applied (who is tracked, joint corrections carried over ~1 s: pipelines.tracking.prompts), and one
body fit per tracked person. Once every frame is done, `smooth_tracks` filters each whole track
offline (pipelines.tracking.track_smoothing: zero-phase, on the fit's bone rotations and root).

`VideoPipeline.run` overlaps the stages: the frames are decoded (pipelines.io.video_io) and detected
in their own threads, a bounded queue ahead of the fits (OpenCV and LiteRT release the GIL), so the
two cores are both busy and memory stays flat. Warm-started fits compute the full mesh only at
`mesh_hz` (for the viewer); the joints come from the few vertices they are regressed from.

Assumptions and what is held:
- A static camera: one camera (intrinsics, and the camera frame as the frame of every result) for
  the whole video. Its focal is the user's, else estimated with the people first fitted in its first
  frames (pipelines.camera.focal.FocalPool: every track's first fit, pooled), then held.
- One body shape per track: solved on the track's first fitted frame, then held; later frames
  fit pose and translation only, warm-started from the track's previous frame (a few LM iterations).
Units are metres, in the OpenCV camera frame (x right, y down, z forward); pixels are those of the
processed (possibly downscaled) frames, origin at the top-left corner.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pipelines.body.anny_points import OUTPUT_JOINT_NAMES, skeleton_joints
from pipelines.camera.focal import FocalEstimate, FocalPool
from pipelines.camera.prior import focal_prior_px
from pipelines.errors import UserFacingError
from pipelines.hmr.fit import FitOptions, FitReport, FitState, FitTargets
from pipelines.hmr.kinematics import forward
from pipelines.io.ahead import gil_switch_interval, run_ahead
from pipelines.io.video_io import VideoFrame
from pipelines.modes.image import MIN_KEYPOINTS_TO_FIT, ImagePipeline, PipelineConfig
from pipelines.registry import create
from pipelines.tracking.landmark_tracking import LandmarkTrackingDetector, LandmarkTrackingOptions
from pipelines.tracking.prompts import PromptSelector, VideoPrompts
from pipelines.tracking.smoothing import DetectionSmoother, SmoothingOptions
from pipelines.tracking.track_smoothing import TrackSmoothingOptions, savgol_track, smooth_rotations
from pipelines.tracking.tracker import PersonTracker
from pipelines.tracking.video_masks import VideoMaskOptions, VideoMasks
from pipelines.types import BackendUse, BodyFit, Camera, Keypoints3D, PersonDetection, PersonResult


@dataclass
class VideoOptions:
    """How a video is processed."""

    focal_px: float | None = None
    """Focal length in pixels of the processed frames; None = estimated on the first fitted frame."""
    smooth: bool = True
    """Temporal smoothing: each whole track once the video has run (`track_smoothing`), and the 1-euro
    filter on the keypoints before each fit with `online_smooth`. False: neither."""
    online_smooth: bool = False
    """With `smooth`: also the 1-euro filter on each track's keypoints before its fit (live: the skeleton
    streamed while the video runs is smoothed too). Off by default: measured on pose2sim_single cam01 it
    cost 1.1 mm of PA-MPJPE against the 4-view triangulation, the offline smoother none."""
    smoothing: SmoothingOptions = field(default_factory=SmoothingOptions)
    """Parameters of the 1-euro filter."""
    track_smoothing: TrackSmoothingOptions | None = field(default_factory=TrackSmoothingOptions)
    """With `smooth`: each whole track filtered once the video has run (VideoPipeline.smooth_tracks: a
    zero-phase Savitzky-Golay filter on the fitted bone rotations and root); None: not."""
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
    detector: str = "tracking"
    """Embedded segmentation: "tracking" = landmarks tracked between frames, the detector every
    `redetect_every` frames (MediaPipe's video mode); "image" = a full detection on every frame (the
    first slice's path, with masks; the bench's baseline). Other segmentation backends: every frame."""
    redetect_every: int = 10
    """"tracking": frames between two runs of the person detector (people who enter later)."""
    source_crops: bool = False
    """"tracking": crop the landmark model's regions from the decoded frame itself (faster, slightly less
    accurate; LandmarkTrackingOptions.source_crops). Off by default."""
    redetect_tiles: tuple[float, ...] = ()
    """"tracking": the person detector's tiles besides the whole frame (fractions of the short side, as
    TileSettings.tile_fracs): small people at the edges are found; () = the whole frame only."""
    max_people: int = 4
    """At most this many people per frame."""
    mesh_hz: float = 1.0
    """Full meshes per second per track on warm-started frames (for the viewer; <= 0: none, inf: every
    frame). The joints, bone rotations and exports do not depend on it."""
    threaded: bool = True
    """run(): decode and detect in their own threads, ahead of the fits."""
    queue_size: int = 3
    """run(): at most this many detected frames wait for their fits (memory stays flat)."""
    masks: VideoMaskOptions = field(default_factory=VideoMaskOptions)
    """Mask corrections (pipelines.tracking.video_masks): how often a corrected person's mask is made."""
    gil_switch_s: float = 0.0005
    """run(), threaded: Python's thread switch interval while the video runs (pipelines.io.ahead.
    gil_switch_interval; Python's default is 5 ms). Measured on cam01 (100 frames, load ~21, 3 runs of
    each interleaved): median 2.1 frames/s at 5 ms (2.1, 2.1, 2.1), 2.5 at 1 ms (2.5, 3.3, 2.4), 3.8 at
    0.5 ms (3.9, 2.5, 3.8)."""


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
    rest_joint_offs_p3: np.ndarray | None = None
    """The output joints' skinning pairs at rest for the held shape (PointModel.rest_offsets): posing
    the joints is then one small product per frame, not a skinning of the ~8,800 vertices they use."""


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
    backends: dict[str, BackendUse] = field(default_factory=dict)
    """Per stage run so far: the backend asked for and the one in use (they differ after a fallback)."""
    masks: dict[int, np.ndarray] = field(default_factory=dict)
    """Track id -> that person's corrected mask on this frame, float32 (H, W) in [0, 1], processed pixels
    (also their detection's `mask_hw`); only people with a mask correction, at its rate (VideoMasks)."""


def check_video_config(config: PipelineConfig) -> None:
    """Raise UserFacingError for a backend the video mode cannot run (it animates Anny with the embedded
    warm-started fit and holds one camera from the first frame; segmentation may be the hub one)."""
    unsupported = [(config.hmr != "embedded", f"--hmr {config.hmr}"), (config.body != "anny", f"--body {config.body}"),
                   (config.camera != "embedded", f"--camera {config.camera}"),
                   (config.depth != "none" or config.depth_file is not None, "--depth")]  # fmt: skip
    bad = [flag for is_bad, flag in unsupported if is_bad]
    if bad:
        raise UserFacingError(f"The video mode cannot use {', '.join(bad)} yet: it fits and animates the Anny body "
                              "with the embedded fit, warm-started from frame to frame (BVH, GLB); use the image "
                              "mode for those backends, or --segmentation hub for SAM2 masks in a video.")  # fmt: skip


class VideoPipeline:
    """Runs a frame stream through detection, tracking, smoothing and warm-started fits."""

    def __init__(self, image_pipeline: ImagePipeline | None = None, options: VideoOptions | None = None, *,
                 prompts: VideoPrompts | None = None) -> None:  # fmt: skip
        """`prompts`: the user's clicks (source-video pixels): who is tracked, joint corrections
        (pipelines.tracking.prompts); None: everyone found is tracked."""
        self.image = image_pipeline or ImagePipeline()
        check_video_config(self.image.config)
        self.options = options or VideoOptions()
        self.prompts = PromptSelector(prompts or VideoPrompts())
        self.masks = VideoMasks(self.options.masks)
        self.tracker = PersonTracker(max_age=self.options.max_age)
        self.tracks: dict[int, TrackHistory] = {}
        self.camera: Camera | None = None
        self._focal_pool: FocalPool | None = None
        """While the focal is still being estimated (no user focal), the people's estimates so far."""
        self.frames_done: list[int] = []
        self._detector: Any = None
        self._last_mesh_s: dict[int, float] = {}
        self._smoothed = False

    def run(self, frames: Iterable[VideoFrame]) -> Iterator[VideoFrameResult]:
        """The processed frames, in order. With `options.threaded`, detection runs in a thread ahead of
        the fits (at most `queue_size` frames ahead); closing the iterator stops it (a cancel)."""
        if not self.options.threaded:
            for frame in frames:
                yield self.process(frame)
            return
        ahead = run_ahead(frames, lambda frame: (frame, self.detect_frame(frame), self._regions()),
                          self.options.queue_size, "video-detect")  # fmt: skip
        try:
            with gil_switch_interval(self.options.gil_switch_s):
                for frame, detections, regions in ahead:
                    yield self.process(frame, detections, regions)
        finally:
            ahead.close()

    def close(self) -> None:
        """Release the detection stage this pipeline built (the image pipeline's shared stages stay)."""
        detector, self._detector = self._detector, None
        shared = detector is None or detector is self.image._backends.get("segmentation")
        if not shared and hasattr(detector, "close"):
            detector.close()

    def _segmenter(self) -> Any:
        """The detection stage: for the embedded segmentation, landmark tracking (see
        VideoOptions.detector) or a single-pass copy (see VideoOptions.tiled_detection); else the image
        pipeline's segmentation stage."""
        if self._detector is None:
            embedded = self.image.config.segmentation == "embedded" and not self.options.tiled_detection
            if embedded and self.options.detector == "tracking":
                self._detector = LandmarkTrackingDetector(LandmarkTrackingOptions(
                    max_people=self.options.max_people, redetect_every=self.options.redetect_every,
                    tile_fracs=self.options.redetect_tiles, source_crops=self.options.source_crops))  # fmt: skip
            elif embedded:
                self._detector = create("segmentation", "embedded", single_pass=True,
                                        max_people=self.options.max_people)  # fmt: skip
            elif self.image.config.segmentation == "hub" and self.options.detector == "tracking":
                from pipelines.segmentation.hub_sam2_video import TrackedSam2Masks

                tracker = LandmarkTrackingDetector(LandmarkTrackingOptions(
                    max_people=self.options.max_people, redetect_every=self.options.redetect_every))  # fmt: skip
                self._detector = TrackedSam2Masks(tracker, self.image._get("segmentation"))
            else:
                self._detector = self.image._get("segmentation")
        return self._detector

    @property
    def _masks(self) -> bool:
        """Whether the detections carry person masks (the fit's silhouette term uses them)."""
        seg = self._segmenter()
        return bool(getattr(seg, "has_masks", not isinstance(seg, LandmarkTrackingDetector)))

    def backend_uses(self) -> dict[str, BackendUse]:
        """Per stage: the backend asked for and the one in use (segmentation: asked = used until its hub
        model is first needed)."""
        uses = self.image.backend_uses()
        asked = self.image.config.segmentation
        uses.setdefault("segmentation", BackendUse(stage="segmentation", asked=asked, used=asked))
        return uses

    def detect(self, rgb_hw3: np.ndarray) -> list[PersonDetection]:
        """The detection stage of one frame (people, and their hands with `options.hands`); frames must
        come in order (landmarks are tracked from the previous one)."""
        detections = self._segmenter().detect(rgb_hw3)
        if self.options.hands:
            detections = self.image._get("keypoints").add_keypoints(rgb_hw3, detections)
        return detections

    @property
    def wants_source_frames(self) -> bool:
        """Whether frames should keep their decoded source frame (read_video's `keep_source`): the landmark
        tracker crops from it, and most frames are then never downscaled (see detect_frame)."""
        return isinstance(self._segmenter(), LandmarkTrackingDetector) and not self.options.hands

    def detect_frame(self, frame: VideoFrame) -> list[PersonDetection]:
        """`detect` on a decoded frame: the landmark tracker crops its regions from the source frame (the
        downscaled frame is made only when a stage needs its pixels: the person detector, the hands, the
        other segmentation backends)."""
        seg = self._segmenter()
        if isinstance(seg, LandmarkTrackingDetector) and not self.options.hands:
            return seg.detect_frame(frame)
        return self.detect(frame.rgb_hw3)

    def _regions(self) -> list[Any] | None:
        """The landmark tracker's regions of the people its last detect returned (their masks), else None."""
        seg = self._detector
        return list(seg.last_regions) if isinstance(seg, LandmarkTrackingDetector) else None

    def _camera(self, w: int, h: int) -> Camera:
        if self.camera is None or (self.camera.width, self.camera.height) != (w, h):
            self.camera = self.image._get("camera").initial(w, h, None, self.options.focal_px)
            self._focal_pool = FocalPool(*focal_prior_px(w, h)) if self.camera.source == "default" else None
        return self.camera

    def process(self, frame: VideoFrame, detections: list[PersonDetection] | None = None,
                regions: list[Any] | None = None) -> VideoFrameResult:  # fmt: skip
        """One frame: tracking, smoothing, mask corrections and fits (`detections`: the frame's detection
        stage, run here when None; `regions`: the landmark tracker's regions of them, for their masks)."""
        h, w = frame.shape_hw
        camera = self._camera(w, h)
        if detections is None:
            detections = self.detect_frame(frame)
            regions = self._regions()
        region_of = {} if regions is None else {id(d): r for d, r in zip(detections, regions, strict=False)}
        ids = self.tracker.update(detections)
        n_problems, n_notes = len(self.prompts.problems), len(self.prompts.notes)
        kept = self.prompts.select(frame.index, frame.scale, ids, detections)
        warnings: list[str] = []
        people: list[PersonResult] = []
        masks: dict[int, np.ndarray] = {}
        for track_id, det in sorted(kept, key=lambda p: p[0]):
            region = region_of.get(id(det))
            if track_id in self.prompts.mask_points:
                self.masks.add(track_id, frame.index, det, self.prompts.mask_points[track_id])
            if self.masks.active and self.masks.due(track_id, frame.time_s):
                base_hw = region.mask_hw((h, w)) if region is not None else det.mask_hw
                masks[track_id] = self.masks.corrected(track_id, frame.index, frame.time_s, frame.rgb_hw3, det,
                                                       base_hw)  # fmt: skip
                det = replace(det, mask_hw=masks[track_id])
            track = self.tracks.setdefault(track_id, TrackHistory(track_id))
            if self.options.smooth and self.options.online_smooth:
                if track.smoother is None:
                    track.smoother = DetectionSmoother(self.options.rate_hz, self.options.smoothing)
                det = track.smoother(det, frame.time_s)
            det = self.prompts.correct(frame.index, frame.time_s, track_id, det)
            person = PersonResult(id=track_id, detection=det)
            people.append(person)
            if int((det.keypoints2d.conf_k > 0.5).sum()) < MIN_KEYPOINTS_TO_FIT:
                warnings.append(f"frame {frame.index}: person {track_id} has too few visible keypoints to fit.")
                continue
            person.body = self._fit(track, camera, person, frame.time_s)
            if self.camera is not camera:  # the focal was just estimated
                camera = self.camera
            self._record(track, frame, person)
        if not detections:
            warnings.append(f"frame {frame.index}: nobody found.")
        warnings += self.prompts.problems[n_problems:] + self.prompts.notes[n_notes:]
        if self._focal_pool is not None and self._focal_pool.estimates:
            self._focal_pool.end_frame()
        self.frames_done.append(frame.index)
        return VideoFrameResult(frame, camera, people, warnings, self.backend_uses(), masks)

    def _fit(self, track: TrackHistory, camera: Camera, person: PersonResult, time_s: float) -> BodyFit:
        hmr = self.image.hmr
        det = person.detection
        if track.last_state is None:
            estimate = self._focal_pool is not None and self._focal_pool.open
            prior_f, _ = focal_prior_px(camera.width, camera.height)
            # Each person's focal evidence starts from the prior (as in the photo mode), not from the focal
            # pooled so far: the pool then counts every person's pull once.
            start = Camera.from_focal(prior_f, camera.width, camera.height, "default") if estimate else camera
            if self._masks:
                fit = hmr.fit(start, det, {}, estimate_focal=estimate, focal_prior_px=prior_f)
                report, body = fit.report, fit.body
            else:  # no person mask: the image fit without its silhouette term
                opts = FitOptions(**{**hmr.options.__dict__})
                opts.fit_focal, opts.focal_prior_px = estimate, prior_f if estimate else camera.focal_px
                targets = hmr.targets(det, {}, use_mask=False)
                report = hmr.fitter.fit(targets, start.K_33, opts, None)
                body = hmr.to_body_fit(report, targets)
            track.pheno_p = report.state.pheno_p.copy()
            track.height_m = body.height_m
            track.last_state = report.state
            self._last_mesh_s[track.id] = time_s
            if not estimate:
                return body
            pooled = self._focal_pool.add(FocalEstimate(report.state.focal_px, report.focal_log_var or math.inf))
            self._rescale_recorded(pooled.focal_px / camera.focal_px)
            self.camera = Camera.from_focal(pooled.focal_px, camera.width, camera.height, "estimated")
            if pooled.focal_px == report.state.focal_px:  # the first person: the pool is their own estimate
                return body
            # This person's body at the pooled focal: a warm refit from their own (the mesh included).
            del self._last_mesh_s[track.id]
            return self._fit(track, self.camera, person, time_s)
        opts = FitOptions(**{**hmr.options.__dict__})
        opts.pose_iters, opts.shape_iters = self.options.warm_pose_iters, 0
        opts.fit_shape, opts.fit_focal = False, False
        targets = hmr.targets(det, {}, use_mask=self._masks)
        warm = track.last_state.copy()
        warm.root_pos_3 = warm.root_pos_3 * (camera.focal_px / warm.focal_px)  # same size in the image
        warm.focal_px = camera.focal_px
        report = hmr.fitter.fit(targets, camera.K_33, opts, warm)
        track.last_state = report.state
        last = self._last_mesh_s.get(track.id, -np.inf)
        hz = self.options.mesh_hz
        if hz > 0 and (not np.isfinite(hz) or time_s - last >= 1.0 / hz - 1e-6):
            self._last_mesh_s[track.id] = time_s
            return hmr.to_body_fit(report, targets)
        return self._light_body_fit(report, targets, track)

    def _rescale_recorded(self, k: float) -> None:
        """The pooled focal changed by the factor `k`: every frame recorded so far (fitted at the old focal)
        moves along its root's ray by `k`, keeping its pose and size, as a warm start does (the bodies stay
        where they project and agree with the held camera)."""
        if k == 1.0:
            return
        for track in self.tracks.values():
            for f, root_3 in enumerate(track.root_pos_cam_f3):
                shift_3 = (k - 1.0) * root_3
                track.root_pos_cam_f3[f] = root_3 + shift_3
                track.joints_cam_fk3[f] = (track.joints_cam_fk3[f] + shift_3).astype(np.float32)

    def _light_body_fit(self, report: FitReport, targets: FitTargets, track: TrackHistory) -> BodyFit:
        """A BodyFit without the mesh (`verts_cam_v3` is (0, 3)): the joints posed by the fit's point model
        of them (output_joints_posed), the held height; what hmr.to_body_fit gives otherwise."""
        body = self.image.hmr.body
        joints_k3 = output_joints_posed(track, self.image.hmr, report.G_j33, report.o_j3)
        err = report.err_px_k
        used = np.isfinite(err)
        per_kp = {n: float(e) for n, e in zip(targets.names, err, strict=True) if np.isfinite(e)}
        st = report.state
        params = {"phenotype": st.pheno_p.copy(), "bone_rot_world_j33": report.G_j33.copy(),
                  "root_pos_cam_3": st.root_pos_3.copy(), "focal_px": np.array(st.focal_px)}  # fmt: skip
        return BodyFit(
            model="anny",
            params=params,
            verts_cam_v3=np.zeros((0, 3)),
            faces_f3=body.faces_f3,
            joints3d_cam=Keypoints3D(list(OUTPUT_JOINT_NAMES), joints_k3, frame="cam"),
            joints3d_skeleton_cam=Keypoints3D(*skeleton_joints(body, report.o_j3), frame="cam"),
            height_m=float(track.height_m or np.nan),
            reprojection_px_mean=float(err[used].mean()) if used.any() else float("nan"),
            reprojection_px_max=float(err[used].max()) if used.any() else float("nan"),
            per_keypoint_px=per_kp,
        )

    def smooth_tracks(self) -> bool:
        """Offline, once every frame is processed: each track's motion filtered over the whole video
        (`options.track_smoothing`; see smooth_track). Runs once; later calls do nothing. Whether it
        smoothed now."""
        o = self.options.track_smoothing
        if not self.options.smooth or o is None or self._smoothed:
            return False
        self._smoothed = True
        for track in self.tracks.values():
            smooth_track(track, self.image.hmr, o)
        return True

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



def smooth_track(track: TrackHistory, hmr: Any, options: TrackSmoothingOptions) -> None:
    """A track's bone rotations and root filtered over the whole video (pipelines.tracking.track_smoothing),
    in place, and its output joints posed again from them (posed_joints; `hmr`: the embedded HMR stage),
    so joints and exports stay one motion. Tracks of fewer than 3 fitted frames are left as fitted."""
    if len(track.frames) < 3 or track.pheno_p is None:
        return
    t = np.asarray(track.times_s)
    G_fj33 = smooth_rotations(np.stack(track.bone_rot_cam_fj33), t, options)
    root_f3 = savgol_track(np.stack(track.root_pos_cam_f3), t, options)
    track.joints_cam_fk3 = list(posed_joints(track, hmr, G_fj33, root_f3).astype(np.float32))
    track.bone_rot_cam_fj33 = list(G_fj33.astype(np.float32))
    track.root_pos_cam_f3 = list(root_f3)


def output_joints_posed(track: TrackHistory, hmr: Any, G_j33: np.ndarray, o_j3: np.ndarray) -> np.ndarray:
    """The track's output joints (K, 3) for bone rotations G and posed heads o (camera frame, metres), by
    the fit's own point model of them (the same as regressing them from the skinned mesh; `hmr`: the
    embedded HMR stage, whose fitter caches the model). The held shape's rest offsets are kept on the track."""
    pm = hmr.fitter.point_model(tuple(f"anny:{n}" for n in OUTPUT_JOINT_NAMES))
    if track.rest_joint_offs_p3 is None:  # the shape is held
        rest = hmr.body.rest_heads(track.pheno_p)
        track.rest_joint_offs_p3 = pm.rest_offsets(rest.coeffs_n, rest.heads_j3)
    return pm.evaluate(track.rest_joint_offs_p3, G_j33, o_j3)[0]


def posed_joints(track: TrackHistory, hmr: Any, G_fj33: np.ndarray, root_f3: np.ndarray) -> np.ndarray:
    """The output joints (F, K, 3) of the track's held shape for bone rotations G (F, J, 3, 3) and root
    heads (F, 3), camera frame, metres (forward kinematics, then output_joints_posed)."""
    skel = hmr.fitter.skel
    par = skel.parents
    heads_j3 = hmr.body.rest_heads(track.pheno_p).heads_j3
    G_fj33 = np.asarray(G_fj33, dtype=np.float64)
    local_fj33 = G_fj33.copy()
    local_fj33[:, 1:] = np.swapaxes(G_fj33[:, par[1:]], -1, -2) @ G_fj33[:, 1:]
    joints = []
    for G_j33, local_j33, root_3 in zip(G_fj33, local_fj33, root_f3, strict=True):
        _, o_j3 = forward(skel, heads_j3, local_j33, root_3)
        joints.append(output_joints_posed(track, hmr, G_j33, o_j3))
    return np.stack(joints)
