"""Single-image mode: one photo -> people with metric bodies in the OpenCV camera frame.

Stages: detection + segmentation (with click prompts) -> hand keypoints -> camera (field of view)
-> body fit (keypoint prompts, focal estimated with the body when unknown). An `ImageSession`
caches what a prompt edit does not change, so a new click re-runs only the stages it affects and
warm-starts the fit. `on_stage` receives the partial result after each stage (for streaming).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from pipelines.camera.focal import FocalEstimate, combine_focal_estimates
from pipelines.camera.prior import focal_prior_px
from pipelines.hmr.base import NoBodyFound
from pipelines.io.image_io import LoadedImage
from pipelines.registry import create, hmr_backend
from pipelines.scene.frame_scene import build_scene, hub_depth_input, read_depth_input
from pipelines.scene.vanishing import photo_line_segments
from pipelines.segmentation.prompts import select_person, validate_prompts
from pipelines.types import BackendUse, Camera, FrameResult, PersonDetection, PersonResult, Prompts

if TYPE_CHECKING:
    from pipelines.hmr.embedded import PersonFit
    from pipelines.hmr.fit import FitState

StageCallback = Callable[[str, FrameResult], None]
ProgressCallback = Callable[[float, str], None]

MIN_KEYPOINTS_TO_FIT = 6


@dataclass
class PipelineConfig:
    """Backend name per stage (see pipelines.registry), and how many people to look for."""

    segmentation: str = "embedded"
    keypoints: str = "embedded"
    camera: str = "embedded"
    hmr: str = "embedded"
    body: str = "anny"
    max_people: int = 20
    """At most this many people per photo (the detection keeps the best scores)."""
    depth: str = "none"
    """'none' skips the depth stage; 'hub': MoGe-2 metric depth into FrameResult.depth."""
    device: str | None = None
    """Torch device of the hub backends ('cpu', 'cuda', 'cuda:N'; None: CUDA when available)."""
    depth_file: str | None = None
    """A depth map of the photo (.npy, 16-bit .png, .exr) to refine into metres by the people (one photo)."""
    depth_kind: str = "relative"
    """What `depth_file` holds: metric (metres) | relative (depth up to scale and shift) | inverse (disparity)."""
    scene: bool = True
    """Ground plane from the people and, with a depth source, the metric scene (FrameResult.scene)."""
    focal_solve: str = "fit"
    """When the focal is estimated: 'fit' (the bodies' fits, the default) or 'blade' (then focal and distances
    solved together from the bodies' perspective, pipelines.camera.blade; not better on held-out data)."""
    fallback: bool = True
    """When a hub model cannot be had (offline, gated repo, missing package, no GPU), run that stage with its
    embedded backend and say so in the result (False: raise the HubUnavailable error instead)."""
    body_options: dict[str, Any] = field(default_factory=dict)
    """Arguments of the body model, e.g. {"model_dir": DIR, "gender": "neutral"} for SMPL-X (your own files)."""
    checkpoints: dict[str, str] = field(default_factory=dict)
    """Per stage, the checkpoint of its hub backend: a Hugging Face repo id, e.g. {"segmentation":
    "facebook/sam2.1-hiera-tiny"} (the same as hub_options[stage]["repo_id"]; this one wins)."""
    hub_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per stage, extra arguments of its hub backend, e.g. {"segmentation": {"repo_id": "facebook/sam2.1-hiera-tiny"}}
    (the checkpoint's repo; see the backend's constructor)."""


@dataclass
class ImageSession:
    """What one image's runs share: detections (prompt-independent) and the last fits (warm start)."""

    image_key: str = ""
    detections: list[PersonDetection] | None = None
    fits: dict[int, tuple[PersonDetection, FitState | Any]] = field(default_factory=dict)
    """Per person, the detection the last fit explained and that fit's state (the hmr backend's own type), to
    warm-start the next fit: a warm start holds only while the detection is the same (see warm_start)."""
    focal_px: float | None = None
    """The focal found for this image when it was estimated (reused by prompt edits)."""
    line_segments: Future | None = None
    """The image's line segments for the scene's vanishing point (prompt-independent: the detections' boxes
    filled; a Future of vanishing.photo_line_segments, detected in a worker thread: prompt edits wait for no
    new detection)."""

    def warm_start(self, person_id: int, detection: PersonDetection) -> FitState | Any | None:
        """The last fit of this person to start from, or None when it explained other keypoints: a box prompt
        may replace a person's landmarks (the same index, new landmarks: an entangled neighbour's before) or
        append a new person at an index that an earlier prompt's person had. Warm-started fits run fewer
        iterations (prompt edits), which do not bring a pose fitted to someone else's landmarks back:
        such a fit starts afresh from its own landmarks, as the first run did."""
        done = self.fits.get(person_id)
        if done is None or not same_keypoints(done[0], detection):
            return None
        return done[1]

    def remember(self, person_id: int, detection: PersonDetection, state: FitState | Any) -> None:
        """Keep a person's fit and the detection it explained (for warm_start)."""
        self.fits[person_id] = (detection, state)


def same_keypoints(a: PersonDetection, b: PersonDetection) -> bool:
    """Whether two detections carry the same 2D keypoints (names, positions and confidences)."""
    ka, kb = a.keypoints2d, b.keypoints2d
    return (a is b or ka is kb or (list(ka.names) == list(kb.names) and np.array_equal(ka.xy_k2, kb.xy_k2)
                                   and np.array_equal(ka.conf_k, kb.conf_k)))  # fmt: skip


def image_key(rgb_hw3: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(rgb_hw3[::7, ::7]).tobytes()).hexdigest() + str(rgb_hw3.shape)


def assign_keypoint_prompts(people: list[PersonDetection], prompts: Prompts, selected: int | None
                            ) -> dict[int, dict[str, tuple[float, float]]]:  # fmt: skip
    """Keypoint prompts per person index: the selected person if any, else the one whose box holds the
    prompt (nearest box centre otherwise)."""
    out: dict[int, dict[str, tuple[float, float]]] = {}
    for name, (x, y) in prompts.keypoints.items():
        if not people:
            break
        if selected is not None:
            i = selected
        else:
            d = []
            for p in people:
                x0, y0, x1, y1 = p.bbox_xyxy
                inside = x0 <= x <= x1 and y0 <= y <= y1
                d.append((0 if inside else 1, np.hypot(x - (x0 + x1) / 2, y - (y0 + y1) / 2)))
            i = int(min(range(len(people)), key=lambda k: d[k]))
        out.setdefault(i, {})[name] = (float(x), float(y))
    return out


class ImagePipeline:
    """The single-image pipeline; backends are created on first use and reused."""

    def __init__(self, config: PipelineConfig | None = None, models: dict[tuple[str, ...], object] | None = None
                 ) -> None:  # fmt: skip
        """`models`: a model cache shared by several pipelines (the UI's backend combinations), keyed by
        stage, backend, device and options: pipelines that differ in one stage share the others' models."""
        self.config = config or PipelineConfig()
        self._backends: dict[str, object] = {}
        self._models: dict[tuple[str, ...], object] = {} if models is None else models

    @property
    def models(self) -> dict[tuple[str, ...], object]:
        """The backend instances by model_key (possibly shared with other pipelines)."""
        return self._models

    def model_key(self, stage: str) -> tuple[str, ...]:
        """What identifies a stage's backend instance: stage, backend, its arguments (device, checkpoint...)
        and whether it may fall back."""
        name = getattr(self.config, stage)
        kwargs = sorted(self._stage_kwargs(stage, name).items())
        return (stage, name, repr(kwargs), str(self.config.fallback))

    def _get(self, stage: str):  # noqa: ANN202 - one of the stage protocols
        if stage not in self._backends:
            key = self.model_key(stage)
            if key not in self._models:
                self._models[key] = self._create(stage)
            self._backends[stage] = self._models[key]
        return self._backends[stage]

    def _stage_kwargs(self, stage: str, name: str) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if stage == "hmr":
            kwargs = {"body": self.config.body, **self.config.body_options}
        if name == "hub":
            kwargs.update({"device": self.config.device, **self.config.hub_options.get(stage, {})})
            if stage in self.config.checkpoints:
                kwargs["repo_id"] = self.config.checkpoints[stage]
        if stage == "segmentation":
            kwargs["max_people"] = self.config.max_people
        return kwargs

    def _create(self, stage: str):  # noqa: ANN202 - one of the stage protocols
        """The stage's backend; a hub one is wrapped so that it falls back to the embedded backend when its
        model cannot be had (unless config.fallback is False)."""
        from pipelines.fallback import EMBEDDED_BACKEND, FallbackBackend, NoDepth

        name = getattr(self.config, stage)
        embedded = EMBEDDED_BACKEND[stage]

        def make(backend: str):  # noqa: ANN202
            if stage == "depth" and backend == "none":
                return NoDepth()
            if stage == "hmr":  # the fit of the configured body model (e.g. embedded + smplx: the SMPL-X fit)
                return create(stage, hmr_backend(backend, self.config.body), **self._stage_kwargs(stage, backend))
            return create(stage, backend, **self._stage_kwargs(stage, backend))

        if name == embedded or not self.config.fallback:
            return make(name)
        return FallbackBackend(stage, name, lambda: make(name), lambda: make(embedded))

    def backend_uses(self) -> dict[str, BackendUse]:
        """Per stage created so far: the backend asked for and the one in use (they differ after a fallback)."""
        from pipelines.fallback import backend_use

        return {stage: backend_use(b, stage, getattr(self.config, stage)) for stage, b in self._backends.items()}

    @property
    def hmr(self):  # noqa: ANN201
        return self._get("hmr")

    def warmup(self) -> None:
        """Load every model once (MediaPipe graphs, Anny) and run them on a blank image."""
        blank = np.full((256, 256, 3), 127, dtype=np.uint8)
        self._get("segmentation").detect(blank)
        self._get("keypoints").add_keypoints(blank, [])
        self.hmr.warmup()

    def run_array(self, rgb_hw3: np.ndarray, focal_px: float | None = None, prompts: Prompts | None = None
                  ) -> FrameResult:  # fmt: skip
        return self.run(LoadedImage(rgb_hw3=rgb_hw3, path=None, exif_focal_px=None, exif_note=None, warnings=[]),
                        prompts=prompts, focal_px=focal_px)  # fmt: skip

    def run(self, image: LoadedImage, prompts: Prompts | None = None, focal_px: float | None = None,
            session: ImageSession | None = None, on_stage: StageCallback | None = None,
            progress: ProgressCallback | None = None) -> FrameResult:  # fmt: skip
        """Run every stage on one decoded image (EXIF-upright RGB). Raises UserFacingError subclasses
        for bad prompts; 'nobody found' is a result with zero people and a warning."""
        prompts = prompts or Prompts()
        rgb = image.rgb_hw3
        h, w = rgb.shape[:2]
        validate_prompts(prompts, w, h)
        depth_in = read_depth_input(self.config.depth_file, self.config.depth_kind, w, h)  # bad files fail first
        timings: dict[str, float] = {}
        warnings = list(image.warnings)

        def report(frac: float, msg: str) -> None:
            if progress is not None:
                progress(frac, msg)

        # Camera before the bodies: user > EXIF > prior
        t = time.perf_counter()
        camera: Camera = self._get("camera").initial(w, h, image.exif_focal_px, focal_px, image_rgb_hw3=rgb)
        key = image_key(rgb)
        if session is not None and session.image_key != key:
            session.image_key, session.detections, session.fits, session.focal_px = key, None, {}, None
            session.line_segments = None
        # The scene's line segments depend on the photo and its detections only: detected once the people are
        # found (their boxes filled first), in a worker thread beside the keypoints and the fits (OpenCV's LSD
        # releases the GIL), once per image of a session.
        lines: Future | None = session.line_segments if session is not None and self.config.scene else None
        if lines is not None and lines.done() and lines.exception() is not None:
            lines = None  # a failed detection is tried again, not repeated on every prompt edit
        if camera.source == "default" and session is not None and session.focal_px is not None:
            camera = Camera.from_focal(session.focal_px, w, h, "estimated")
        timings["camera"] = time.perf_counter() - t
        frame = FrameResult(image_rgb_hw3=rgb, camera=camera, people=[], timings_s=timings, warnings=warnings,
                            prompts=prompts)  # fmt: skip
        if on_stage:
            on_stage("image", frame)

        # Detection + segmentation + hand keypoints (cached per image)
        report(0.05, "finding people")
        if session is not None and session.detections is not None:
            detections = session.detections
        else:
            t = time.perf_counter()
            detections = self._get("segmentation").detect(rgb)
            timings["detect"] = time.perf_counter() - t
            lines = self._lines_started(lines, rgb, detections, session)
            t = time.perf_counter()
            detections = self._get("keypoints").add_keypoints(rgb, detections)
            timings["keypoints"] = time.perf_counter() - t
            if session is not None:
                session.detections = detections
        lines = self._lines_started(lines, rgb, detections, session)
        t = time.perf_counter()
        people = self._get("segmentation").apply_prompts(rgb, detections, prompts)
        people = self._add_hands_to_prompted(rgb, detections, people)
        timings["prompts"] = time.perf_counter() - t
        selected = self._selected(people, prompts)
        frame.people = [PersonResult(id=i, detection=p) for i, p in enumerate(people)]
        if not people:
            warnings.append("No person was found in the image.")
        if on_stage:
            on_stage("detections", frame)

        # Body fits (one core); the scene's line segments are still being detected meanwhile
        report(0.5, "fitting bodies")
        t = time.perf_counter()
        kp_prompts = assign_keypoint_prompts(people, prompts, selected)
        estimate = camera.source == "default"
        prior_f, prior_sigma = focal_prior_px(w, h)
        estimated: list[tuple[PersonResult, PersonFit]] = []
        to_fit: list[PersonResult] = []
        for person in frame.people:
            n_ok = int((person.detection.keypoints2d.conf_k > 0.5).sum()) + len(kp_prompts.get(person.id, {}))
            if n_ok < MIN_KEYPOINTS_TO_FIT and getattr(self.hmr, "needs_keypoints", True):
                warnings.append(f"Person {person.id}: too few visible keypoints to fit a body.")
                continue
            to_fit.append(person)
        warms = [session.warm_start(p.id, p.detection) if session is not None else None for p in to_fit]
        fits = self._fit_people(camera, to_fit, kp_prompts, warms, warnings, rgb, estimate_focal=estimate,
                                focal_prior_px=prior_f, fast=True)  # fmt: skip
        for person, fit in zip(to_fit, fits, strict=True):
            if fit is None:
                continue
            if estimate:
                estimated.append((person, fit))  # every person estimates the focal from the prior
            else:
                person.body = fit.body
            if session is not None:
                session.remember(person.id, person.detection, fit.state)
        if estimated:
            # One camera: the focal from every person's evidence, then each body refitted with it.
            shared = combine_focal_estimates([FocalEstimate(f.state.focal_px, f.report.focal_log_var or math.inf)
                                              for _, f in estimated], prior_f, prior_sigma)  # fmt: skip
            focal = shared.focal_px if len(estimated) > 1 else estimated[0][1].state.focal_px
            camera = frame.camera = Camera.from_focal(focal, w, h, "estimated")
            if session is not None:
                session.focal_px = focal
            to_refit = estimated if len(estimated) > 1 else []  # one person: its fit already has this focal
            if not to_refit:
                estimated[0][0].body = estimated[0][1].body
            warms = []
            for _, fit in to_refit:
                warm = fit.state.copy()
                warm.root_pos_3 = warm.root_pos_3 * (focal / warm.focal_px)  # same size in the image
                warms.append(warm)
            refits = self._fit_people(camera, [p for p, _ in to_refit], kp_prompts, warms, None, rgb, fast=True)
            for (person, _), fit in zip(to_refit, refits, strict=True):
                person.body = fit.body
                if session is not None:
                    session.remember(person.id, person.detection, fit.state)
            if self.config.focal_solve == "blade":
                from pipelines.camera.blade import solve_camera_with_bodies

                camera = frame.camera = solve_camera_with_bodies(frame.people, camera)
        timings["fit"] = time.perf_counter() - t
        if self.config.depth != "none":
            t = time.perf_counter()
            frame.depth = self._get("depth").estimate(rgb, frame.camera, frame.people)
            timings["depth"] = time.perf_counter() - t
        if self.config.scene:
            t = time.perf_counter()
            frame.scene = build_scene(rgb, frame.camera.K_33, frame.people, depth_in or hub_depth_input(frame.depth),
                                      all_segments_n4=self._segments(lines, frame.people))  # fmt: skip
            timings["scene"] = time.perf_counter() - t
        frame.backends = self.backend_uses()
        warnings += [u.sentence() for u in frame.backends.values() if u.reason is not None]
        report(1.0, "done")
        if on_stage:
            on_stage("bodies", frame)
        return frame

    @staticmethod
    def _segments(lines: Future | None, people: list[PersonResult]) -> np.ndarray | None:
        """The line segments for build_scene: waited for only when a body can use them (photo_ground). When the
        worker's detection failed, None: the scene stage detects them itself (and reports what fails there)."""
        if lines is None or not any(p.body is not None for p in people):
            return None
        try:
            return lines.result()
        except Exception as err:  # noqa: BLE001 - any failure in the worker: detected again in the scene stage
            logging.getLogger(__name__).warning("line segments failed in the worker: %r", err)
            return None

    def _lines_started(self, lines: Future | None, rgb_hw3: np.ndarray, detections: list[PersonDetection],
                       session: ImageSession | None) -> Future | None:  # fmt: skip
        """`lines`, or (scene on, none yet for this image) the photo's line segments started now with the
        detections' boxes (kept in the session). None when nobody was detected: no body to use them (a box
        prompt's person has the scene stage detect them itself, photo_segments)."""
        if lines is not None or not self.config.scene or not detections:
            return lines
        boxes_n4 = np.array([d.bbox_xyxy for d in detections], dtype=np.float64).reshape(-1, 4)
        lines = self._line_segments_soon(rgb_hw3, boxes_n4)
        if session is not None:
            session.line_segments = lines
        return lines

    def _line_segments_soon(self, rgb_hw3: np.ndarray, boxes_n4: np.ndarray | None = None) -> Future:
        """The photo's line segments for the scene's vanishing point (vanishing.photo_line_segments, OpenCV's
        LSD, which releases the GIL; `boxes_n4` the people's, filled first), detected in a daemon thread of this
        photo's while the people's keypoints and bodies are fitted (no pool left behind: a process may end
        without waiting for it, and an abandoned run does not delay the next photo's)."""
        future: Future = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(photo_line_segments(rgb_hw3, boxes_n4))
            except BaseException as err:  # read by the scene stage's result()
                future.set_exception(err)

        threading.Thread(target=work, name="line-segments", daemon=True).start()
        return future

    def _fit_people(self, camera: Camera, people: list[PersonResult], kp_prompts: dict[int, dict],
                    warms: list[Any], warnings: list[str] | None, rgb: np.ndarray, estimate_focal: bool = False,
                    focal_prior_px: float | None = None, fast: bool = False) -> list[Any]:  # fmt: skip
        """One fit per person (None where the backend found no body, with a warning): all together when the
        backend fits several people at once (the embedded fit's fit_many), else (or if that raises) one by one.
        `fast`: warm-started people run the shorter fit."""
        if len(people) > 1 and hasattr(self.hmr, "fit_many"):
            prompts = [kp_prompts.get(p.id, {}) for p in people]
            try:
                return self.hmr.fit_many(camera, [p.detection for p in people], prompts, warms,
                                         estimate_focal=estimate_focal, focal_prior_px=focal_prior_px, fast=fast)
            except (NoBodyFound, np.linalg.LinAlgError) as err:
                # One person's failure must not cost the others their bodies: one by one below, where it is that
                # person's own NoBodyFound. Any other error is a bug and raises.
                logging.getLogger(__name__).warning("batched fit failed (%s); fitting one by one", err)
        out = []
        for person, warm in zip(people, warms, strict=True):
            try:
                out.append(self.hmr.fit(camera, person.detection, kp_prompts.get(person.id, {}), warm=warm,
                                        estimate_focal=estimate_focal, focal_prior_px=focal_prior_px,
                                        fast=fast and warm is not None, image_rgb_hw3=rgb))  # fmt: skip
            except NoBodyFound as err:  # this person only; the others are still fitted
                if warnings is None:
                    raise
                warnings.append(f"Person {person.id}: {err}")
                out.append(None)
        return out

    def _add_hands_to_prompted(self, rgb: np.ndarray, detections: list[PersonDetection],
                               people: list[PersonDetection]) -> list[PersonDetection]:  # fmt: skip
        """People that a prompt found (landmarks, no hands yet) get the keypoint stage's hands too."""
        known = {id(p) for p in detections}
        fresh = [i for i, p in enumerate(people)
                 if id(p) not in known and len(p.keypoints2d.names) == 33 and p.keypoints2d.conf_k.any()]  # fmt: skip
        if not fresh:
            return people
        with_hands = self._get("keypoints").add_keypoints(rgb, [people[i] for i in fresh])
        out = list(people)
        for i, person in zip(fresh, with_hands, strict=True):
            out[i] = person
        return out

    @staticmethod
    def _selected(people: list[PersonDetection], prompts: Prompts) -> int | None:
        pts = np.asarray(prompts.points_n3, dtype=np.float64).reshape(-1, 3)
        if not len(pts) and prompts.box_xyxy is None:
            return None
        return select_person(people, pts[pts[:, 2] == 1, :2], pts[pts[:, 2] == 0, :2], prompts.box_xyxy)
