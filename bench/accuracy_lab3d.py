"""3D accuracy of the fitted bodies against 3D truth, and the focal length estimated with the body.

    python -m bench.accuracy_lab3d                        # all sets, every 10th multi-view frame
    python -m bench.accuracy_lab3d --sets h36m --json out.json

Sets (../shared/data, see its README):
- h36m: 4 Human3.6M frames with motion-capture joints in the camera frame and the intrinsics.
- pose2sim_single, pose2sim_multi: every view's people against the BlazePose keypoints triangulated
  from all four calibrated views; people are matched across views by triangulating every choice of
  one detection per view and keeping the most consistent ones (at least 3 views, median
  reprojection error under --match-px).
Methods, from the same detection: `mediapipe_world` (MediaPipe's metric world landmarks, hip-centred;
the baseline) and `fit` (our image pipeline's body, given the true focal length). Metric: PA-MPJPE
(Procrustes with scale) on the 12 body joints, shoulders to ankles, matched by name.
Focal: the image pipeline run without a focal length on each multi-view image (the focal is then
estimated with the bodies), against the calibration; beside it the error of the prior the estimate starts
from (pipelines/camera/prior.py). With --focal-profile, each fitted person is also fitted at fixed focals
(the true one times --profile-scales) and the focal of the lowest fit cost is reported: what the body's
own evidence prefers, without the prior.

Held-out data: the fit's constants were chosen on pose2sim_single and the H36M frames S1 and S5;
pose2sim_multi and the H36M frames S7 and S8 were not used to choose anything.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.common import BODY12_NAMES, DATA_DIR, machine_description, markdown_table, pa_mpjpe, save_json, stack_joints
from pipelines.camera.prior import default_focal_px
from pipelines.io.image_io import LoadedImage, load_image
from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.modes.image import ImagePipeline, ImageSession
from pipelines.multiview.calibration import CalibratedCamera, load_qualisys_calibration
from pipelines.multiview.triangulate import triangulate_points
from pipelines.multiview.video import read_frames
from pipelines.types import Camera, FrameResult, Joints3DConvention, PersonResult

TUNED_ON = {"pose2sim_single", "S1", "S5"}
"""Data the fit's constants were chosen on; everything else is held out."""
REFERENCE_CONVENTION: dict[str, Joints3DConvention] = {"h36m": "coco", "pose2sim_single": "coco",
                                                    "pose2sim_multi": "coco"}  # fmt: skip
"""The fit's joints compared with each reference (BodyFit.joints); MediaPipe's world landmarks are compared
as they are. The 4-camera sets' references are triangulated BlazePose keypoints: surface keypoints, the fit's
COCO joints. Human3.6M's are motion-capture joint centres, whose principled match is the fit's skeleton
joints ('h36m'); that figure is printed beside (Sample.fit_h36m_mm) but is not the headline: on the tuning
frames it changed < 1 mm, and held-out S8 got 8 mm worse (README, 3D accuracy)."""
MULTIVIEW_SETS = ("pose2sim_single", "pose2sim_multi")


@dataclass
class Sample:
    """One person in one image: PA-MPJPE of each method (mm)."""

    set: str
    image: str
    person: int
    mediapipe_mm: float
    fit_mm: float
    """The fit's joints in the set's convention (REFERENCE_CONVENTION)."""
    held_out: bool
    fit_h36m_mm: float | None = None
    """On the H36M frames: the fit's skeleton joints ('h36m' convention, joint centres), the other way."""


@dataclass
class FocalSample:
    """The focal estimated on one image against the calibrated one."""

    set: str
    view: str
    frame: int
    focal_px: float
    true_px: float
    n_people: int
    prior_px: float
    """The prior's focal for this image size: where the estimate starts."""

    @property
    def error_pct(self) -> float:
        return 100.0 * (self.focal_px / self.true_px - 1.0)

    @property
    def prior_error_pct(self) -> float:
        return 100.0 * (self.prior_px / self.true_px - 1.0)


@dataclass
class FocalProfile:
    """One person fitted at several fixed focals: the focal (x the true one) of the lowest fit cost."""

    set: str
    image: str
    person: int
    best_scale: float
    """The scale of the lowest cost among the profile's scales."""
    costs: list[float]
    """The fit's final cost (sum of squared residuals) at each scale."""


def _joints(names: list[str], xyz_k3: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(names, xyz_k3, strict=True))


def _score(person: PersonResult, ref_k3: np.ndarray, convention: Joints3DConvention = "coco"
           ) -> tuple[float, float] | None:  # fmt: skip
    """(MediaPipe, fit) PA-MPJPE in mm on the 12 body joints, the fit's joints in `convention`
    (BodyFit.joints), or None when a joint is missing."""
    if person.body is None:
        return None
    kp3d = person.detection.keypoints3d_hip
    mp = stack_joints(_joints(kp3d.names, kp3d.xyz_k3), BODY12_NAMES)
    joints = person.body.joints(convention)
    fit = stack_joints(_joints(joints.names, joints.xyz_k3), BODY12_NAMES)
    if mp is None or fit is None:
        return None
    return 1000 * pa_mpjpe(mp, ref_k3), 1000 * pa_mpjpe(fit, ref_k3)


def run_h36m(pipeline: ImagePipeline, folder: Path) -> list[Sample]:
    """Every frame of `folder` (images and gt.json), fitted with its true focal length."""
    gt = json.loads((folder / "gt.json").read_text())
    out = []
    for frame in gt["frames"]:
        image = load_image(folder / frame["image"])
        # gt.json gives fx and fy (they differ by 0.1 %); the pipeline takes one focal.
        result = pipeline.run(image, focal_px=float(np.mean(frame["focal_px"])))
        if not result.people:
            continue
        ref_k3 = np.array([frame["joints3d_cam"][n] for n in BODY12_NAMES])
        # The annotated subject is the largest person found.
        person = max(result.people, key=lambda p: float(np.prod(p.detection.bbox_xyxy[2:] - p.detection.bbox_xyxy[:2])))
        scores = _score(person, ref_k3, REFERENCE_CONVENTION["h36m"])
        centres = _score(person, ref_k3, "h36m")
        if scores is not None and centres is not None:
            out.append(Sample("h36m", frame["image"], person.id, *scores, held_out=frame["subject"] not in TUNED_ON,
                              fit_h36m_mm=centres[1]))  # fmt: skip
    return out


def _body_xy(person: PersonResult) -> tuple[np.ndarray, np.ndarray]:
    kp = person.detection.keypoints2d
    idx = [kp.names.index(n) for n in BLAZEPOSE_NAMES]
    return kp.xy_k2[idx].astype(np.float64), kp.conf_k[idx].astype(np.float64)


def matched_hip_distances(views: list[list[PersonResult]], cams: list[CalibratedCamera], max_px: float = 40.0
                          ) -> list[list[float | None]]:  # fmt: skip
    """Per view, per person: the distance (metres) from that camera to the person's mid-hip triangulated
    from their match across the views (match_people); None for a person matched in no other view."""
    hips = [BLAZEPOSE_NAMES.index(n) for n in ("left_hip", "right_hip")]
    refs: list[list[float | None]] = [[None] * len(v) for v in views]
    for choice, xyz_world in match_people(views, cams, max_px):
        hip_w = xyz_world[hips].mean(axis=0)
        for v, i in enumerate(choice):
            if i is not None and np.isfinite(hip_w).all():
                refs[v][i] = float(np.linalg.norm(cams[v].to_cam(hip_w)))
    return refs


def matched_body_refs(views: list[list], cams: list[CalibratedCamera], max_px: float = 40.0
                      ) -> list[tuple[int, int, int, np.ndarray]]:  # fmt: skip
    """Every (match index, view, detection index, the match's 12 body joints (BODY12_NAMES) triangulated
    from all views and put in that view's camera frame (12, 3), metres) for the people of one frame
    matched across the views (match_people) whose 12 joints all triangulate."""
    body_ids = [BLAZEPOSE_NAMES.index(n) for n in BODY12_NAMES]
    out = []
    for m, (choice, xyz_world) in enumerate(match_people(views, cams, max_px)):
        ref_world = xyz_world[body_ids]
        if np.isfinite(ref_world).all():
            out += [(m, v, c, cams[v].to_cam(ref_world)) for v, c in enumerate(choice) if c is not None]
    return out


def match_people(views: list[list[PersonResult]], cams: list[CalibratedCamera], max_px: float
                 ) -> list[tuple[list[int | None], np.ndarray]]:  # fmt: skip
    """People matched across views: (detection index per view or None, triangulated BlazePose points
    (33, 3) in the world frame). Greedy: the most consistent choice of one detection per view first."""
    body_ids = [BLAZEPOSE_NAMES.index(n) for n in BODY12_NAMES]
    obs = [[_body_xy(p) for p in people] for people in views]
    free = [set(range(len(people))) for people in views]
    matches = []
    while True:
        best = None
        for choice in itertools.product(*[[None, *sorted(f)] for f in free]):
            if sum(c is not None for c in choice) < 3:
                continue
            xy = np.full((len(cams), len(body_ids), 2), np.nan)
            conf = np.zeros((len(cams), len(body_ids)))
            for v, c in enumerate(choice):
                if c is not None:
                    xy[v], conf[v] = obs[v][c][0][body_ids], obs[v][c][1][body_ids]
            tri = triangulate_points(xy, conf, cams, outlier_px=np.inf, refine=False)
            err = tri.reproj_px_vn[[v for v, c in enumerate(choice) if c is not None]]
            score = float(np.nanmedian(err)) if np.isfinite(err).any() else np.inf
            # More views first, then the lower error.
            key = (-sum(c is not None for c in choice), score)
            if score < max_px and (best is None or key < best[0]):
                best = (key, choice)
        if best is None:
            return matches
        choice = list(best[1])
        xy = np.full((len(cams), len(BLAZEPOSE_NAMES), 2), np.nan)
        conf = np.zeros((len(cams), len(BLAZEPOSE_NAMES)))
        for v, c in enumerate(choice):
            if c is not None:
                xy[v], conf[v] = obs[v][c]
                free[v].discard(c)
        matches.append((choice, triangulate_points(xy, conf, cams).xyz_n3))


def focal_profile(pipeline: ImagePipeline, result: FrameResult, set_name: str, image_name: str, true_px: float,
                  scales: list[float]) -> list[FocalProfile]:  # fmt: skip
    """Every fitted person of `result` fitted again (from scratch) at each focal true_px * scale."""
    out = []
    h, w = result.image_rgb_hw3.shape[:2]
    for person in result.people:
        if person.body is None:
            continue
        costs = [pipeline.hmr.fit(Camera.from_focal(true_px * k, w, h, "user"), person.detection).report.cost
                 for k in scales]  # fmt: skip
        out.append(FocalProfile(set_name, image_name, person.id, scales[int(np.argmin(costs))], costs))
    return out


def run_multiview(pipeline: ImagePipeline, folder: Path, frames: list[int], match_px: float = 40.0,
                  estimate_focal: bool = True, profile_scales: list[float] | None = None
                  ) -> tuple[list[Sample], list[FocalSample], list[FocalProfile]]:  # fmt: skip
    """The frames of one capture (camNN.mp4, Calib.qca.txt): PA-MPJPE of every matched person in every view
    (true focal), with `estimate_focal` the focal found when none is given, and with `profile_scales` each
    person's focal profile (see focal_profile)."""
    name = folder.name
    cams = load_qualisys_calibration(folder / "Calib.qca.txt")
    true_runs: dict[str, dict[int, FrameResult]] = {}
    focal: list[FocalSample] = []
    profiles: list[FocalProfile] = []
    for cam in cams:
        true_runs[cam.name] = {}
        for index, rgb in read_frames(folder / f"{cam.name}.mp4", frames):
            image = LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])
            session = None
            if estimate_focal:
                estimated_session = ImageSession()
                estimated = pipeline.run(image, session=estimated_session)
                n_fitted = sum(p.body is not None for p in estimated.people)
                if n_fitted:
                    found = estimated.camera.focal_px
                    prior = default_focal_px(rgb.shape[1], rgb.shape[0])
                    focal.append(FocalSample(name, cam.name, index, found, cam.camera.focal_px, n_fitted, prior))
                # The same detections, fitted again with the calibrated focal (no warm start: nothing leaks).
                session = ImageSession(image_key=estimated_session.image_key, detections=estimated_session.detections)
            true_runs[cam.name][index] = pipeline.run(image, focal_px=cam.camera.focal_px, session=session)
            if profile_scales:
                profiles += focal_profile(pipeline, true_runs[cam.name][index], name, f"{cam.name} frame {index}",
                                          cam.camera.focal_px, profile_scales)  # fmt: skip
    samples = []
    held_out = name not in TUNED_ON
    for index in frames:
        views = [true_runs[c.name][index].people for c in cams]
        for m, v, c, ref_cam in matched_body_refs(views, cams, match_px):
            scores = _score(views[v][c], ref_cam, REFERENCE_CONVENTION[name])
            if scores is not None:
                samples.append(Sample(name, f"{cams[v].name} frame {index}", m, *scores, held_out=held_out))
    return samples, focal, profiles


def _summary_rows(samples: list[Sample]) -> list[list[object]]:
    rows = []
    for name in dict.fromkeys(s.set for s in samples):
        for held in (False, True):
            sub = [s for s in samples if s.set == name and s.held_out == held]
            if not sub:
                continue
            mp, fit = np.array([s.mediapipe_mm for s in sub]), np.array([s.fit_mm for s in sub])
            use = "held out" if held else "tuned on"
            rows.append([f"{name} ({use})", len(sub), float(mp.mean()), float(fit.mean()),
                         f"{100 * (fit.mean() / mp.mean() - 1):+.0f} %", float(np.median(fit / mp)),
                         float((fit / mp).max()), int((fit > 1.5 * mp).sum())])  # fmt: skip
    return rows


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", default="h36m," + ",".join(MULTIVIEW_SETS), help="comma-separated sets")
    parser.add_argument("--every", type=int, default=10, help="every N-th multi-view frame (default 10)")
    parser.add_argument("--match-px", type=float, default=40.0, help="cross-view matching threshold (px)")
    parser.add_argument("--json", type=Path, default=None, help="also save all numbers to this JSON file")
    parser.add_argument("--focal-profile", action="store_true",
                        help="also fit each person at fixed focals (slow: one fit per scale and person)")  # fmt: skip
    parser.add_argument("--profile-scales", default="0.7,0.85,1.0,1.15,1.3",
                        help="the fixed focals of --focal-profile, as multiples of the true focal")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = _parse_args(argv)
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    pipeline = ImagePipeline()
    pipeline.warmup()
    start = time.perf_counter()
    samples: list[Sample] = []
    focal: list[FocalSample] = []
    profiles: list[FocalProfile] = []
    scales = [float(x) for x in args.profile_scales.split(",")] if args.focal_profile else None
    if "h36m" in sets:
        samples += run_h36m(pipeline, DATA_DIR / "lab3d" / "h36m")
    for name in MULTIVIEW_SETS:
        if name in sets:
            frames = list(range(0, 100, args.every))
            s, f, p = run_multiview(pipeline, DATA_DIR / "multiview" / name, frames, args.match_px,
                                    profile_scales=scales)  # fmt: skip
            samples += s
            focal += f
            profiles += p
    print(f"\nMachine: {machine_description()}; {time.perf_counter() - start:.0f} s\n")
    h36m = [s for s in samples if s.set == "h36m"]
    if h36m:
        print("PA-MPJPE (mm) on Human3.6M frames, 12 body joints, true focal given; the fit's COCO joints, and")
        print("beside them its skeleton joints (joint centres, the 'h36m' convention):\n")
        rows = [[s.image.split(".")[0], "held out" if s.held_out else "tuned on", s.mediapipe_mm, s.fit_mm,
                 f"{100 * (s.fit_mm / s.mediapipe_mm - 1):+.0f} %", s.fit_h36m_mm,
                 f"{100 * (s.fit_h36m_mm / s.mediapipe_mm - 1):+.0f} %"] for s in h36m]  # fmt: skip
        print(markdown_table(["frame", "use", "mediapipe_world", "fit (coco)", "fit vs mediapipe", "fit (h36m)",
                              "h36m vs mediapipe"], rows))  # fmt: skip
    if samples:
        print("\nPA-MPJPE (mm), means over samples (person x view x frame; H36M: frames):\n")
        print(markdown_table(["set", "samples", "mediapipe_world", "fit", "fit vs mediapipe (mean)",
                              "median fit / mediapipe", "worst fit / mediapipe", "fit > 1.5x mediapipe"],
                             _summary_rows(samples)))  # fmt: skip
    if focal:
        print("\nFocal length estimated with the bodies (no focal given) against the calibration, |error| in %;")
        print("the prior's error: where the estimate starts (a 60 degree diagonal field of view):\n")
        rows = []
        for name in dict.fromkeys(f.set for f in focal):
            sub = [f for f in focal if f.set == name]
            for view in [*dict.fromkeys(f.view for f in sub), None]:
                part = [f for f in sub if view is None or f.view == view]
                e = np.array([f.error_pct for f in part])
                rows.append([f"**{name}**" if view is None else name, view or "all", len(e),
                             float(np.median(np.abs(e))), float(np.median(e)),
                             float(np.median([f.prior_error_pct for f in part]))])  # fmt: skip
        print(markdown_table(["set", "view", "images", "median abs error %", "median signed error %",
                              "prior's error %"], rows))  # fmt: skip
    if profiles:
        print("\nFocal profile (true focal given, each person fitted at fixed focals): the focal of the lowest")
        print(f"fit cost, as a multiple of the true focal (scales {args.profile_scales}):\n")
        rows = []
        for name in dict.fromkeys(p.set for p in profiles):
            best = np.array([p.best_scale for p in profiles if p.set == name])
            rows.append([name, len(best), f"{np.median(best):.2f}", f"{100 * np.mean(best < 1):.0f} %",
                         f"{100 * np.mean(best > 1):.0f} %"])  # fmt: skip
        print(markdown_table(["set", "people", "median best scale", "best below 1", "best above 1"], rows))
    print("\nTuned on: pose2sim_single and the H36M frames of S1 and S5; held out: pose2sim_multi, S7, S8.")
    report = {"machine": machine_description(), "samples": [dataclasses.asdict(s) for s in samples],
              "focal": [{**dataclasses.asdict(f), "error_pct": f.error_pct, "prior_error_pct": f.prior_error_pct}
                        for f in focal],
              "focal_profile": [dataclasses.asdict(p) for p in profiles]}  # fmt: skip
    if args.json:
        save_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
