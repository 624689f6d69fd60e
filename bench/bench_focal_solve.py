"""Focal length and root distance from one photo: the body fit's focal (the default) against the BLADE-style
joint solve of focal and distances (pipelines.camera.blade), on the same detections and fits.

    python -m bench.bench_focal_solve [--cache /tmp/focal_solve.pkl] [--methods default,pooled,fit+0]

Per image the image pipeline runs without a focal (embedded backends: the focal is estimated with the
bodies, the default path), once under each focal prior (the current centre, pipelines.camera.prior, and the
last release's 60 degrees: the baseline, same code in the same run); the solve then starts from those fits.
"pooled" is the video mode's focal (pipelines.camera.focal.FocalPool): one focal per camera from every
person's fit over the set's frames of that camera, the prior counted once; its distances are each fit's,
moved along its ray to that focal (the same size in the image). Errors: focal (%) against the
calibration; root (mid-hip) distance (%) against the reference: pose2sim, the BlazePose hips
triangulated from the 4 calibrated views (people matched across views by bench.accuracy_lab3d.match_people);
H36M, the ground-truth pelvis (a joint centre: the mid-hip of surface keypoints is a few cm off it).
Sets: pose2sim_single frames 0, 20, .., 80 (tuning: the solve's choices were made here), pose2sim_multi
frames 0, 20, .., 80 and the 4 H36M frames of lab3d (held out for the solve).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

import pipelines.camera.prior as focal_prior
from bench.common import DATA_DIR, machine_description, markdown_table
from pipelines.camera.blade import RENDER_SIDE_PX, BladePerson, blade_people, solve_focal_distance
from pipelines.camera.focal import FocalEstimate, FocalPool
from pipelines.keypoints.names import BLAZEPOSE_NAMES

SETS = [("pose2sim_single", "tuning"), ("pose2sim_multi", "held out"), ("h36m", "S1, S5 tuning; S7, S8 held out")]
FRAMES = list(range(0, 100, 20))


@dataclass
class Shot:
    """One image's fitted people and what they are compared against."""

    name: str
    width: int
    height: int
    K_est_33: np.ndarray
    """The default path's camera (focal estimated with the bodies)."""
    true_focal_px: float
    people: dict[str, list[BladePerson]]
    """Per geometry ('fit', 'landmarks') the solve's inputs (masks already at the render size)."""
    ref_dist_m: list[float | None]
    """Per person (same order), the reference root distance, or None."""
    camera: str = ""
    """The physical camera (images of one camera share its focal: the pooled row)."""
    focal_estimates: list[FocalEstimate] = field(default_factory=list)
    """Every person's own focal estimate (its fit's posterior, the prior included)."""


@contextlib.contextmanager
def prior_centre(diagonal_fov_deg: float) -> Iterator[None]:
    """The focal prior's centre set to `diagonal_fov_deg` for the duration (the baseline's 60 degrees)."""
    old = focal_prior.PRIOR_DIAGONAL_FOV_DEG
    focal_prior.PRIOR_DIAGONAL_FOV_DEG = diagonal_fov_deg
    try:
        yield
    finally:
        focal_prior.PRIOR_DIAGONAL_FOV_DEG = old


class _FocalRecorder:
    """While entered, the pipeline's hmr.fit also keeps each person's own focal estimate (fits that estimate
    the focal); the method is restored on exit."""

    def __init__(self, pipeline) -> None:  # noqa: ANN001 - ImagePipeline
        self.hmr = pipeline.hmr
        self.estimates: list[FocalEstimate] = []

    def __enter__(self) -> _FocalRecorder:
        fit = self.hmr.fit

        def record(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            out = fit(*args, **kwargs)
            if kwargs.get("estimate_focal"):
                self.estimates.append(FocalEstimate(out.state.focal_px, out.report.focal_log_var or math.inf))
            return out

        self.hmr.fit = record
        return self

    def __exit__(self, *exc: object) -> None:
        del self.hmr.fit

    def take(self) -> list[FocalEstimate]:
        out, self.estimates = self.estimates, []
        return out


def _small_masks(people: list[BladePerson], width: int, height: int) -> list[BladePerson]:
    s = RENDER_SIDE_PX / max(width, height)
    size = (max(1, round(width * s)), max(1, round(height * s)))
    return [replace(p, mask_hw=None if p.mask_hw is None else
                    cv2.resize(np.asarray(p.mask_hw, np.float32), size, interpolation=cv2.INTER_AREA))
            for p in people]  # fmt: skip


def _shot(name: str, result, true_focal_px: float, refs: list[float | None], camera: str,  # noqa: ANN001
          estimates: list[FocalEstimate]) -> Shot:  # fmt: skip
    h, w = result.image_rgb_hw3.shape[:2]
    fitted = [p for p in result.people if p.body is not None]
    people = {g: _small_masks(blade_people(fitted, g), w, h) for g in ("fit", "landmarks")}
    return Shot(name, w, h, np.asarray(result.camera.K_33, dtype=np.float64), true_focal_px, people, refs, camera,
                estimates)  # fmt: skip


def collect_multiview(folder: Path, pipeline) -> list[Shot]:  # noqa: ANN001 - ImagePipeline
    from bench.accuracy_lab3d import match_people
    from pipelines.io.image_io import LoadedImage
    from pipelines.multiview.calibration import load_qualisys_calibration
    from pipelines.multiview.video import read_frames

    cams = load_qualisys_calibration(folder / "Calib.qca.txt")
    runs = {c.name: dict(read_frames(folder / f"{c.name}.mp4", FRAMES)) for c in cams}
    results, estimates = {}, {}
    with _FocalRecorder(pipeline) as recorder:
        for c in cams:
            for index, rgb in runs[c.name].items():
                image = LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])
                results[c.name, index] = pipeline.run(image)
                estimates[c.name, index] = recorder.take()
    hips = [BLAZEPOSE_NAMES.index(n) for n in ("left_hip", "right_hip")]
    shots = []
    for index in FRAMES:
        views = [[p for p in results[c.name, index].people if p.body is not None] for c in cams]
        refs: list[list[float | None]] = [[None] * len(v) for v in views]
        for choice, xyz_world in match_people(views, cams, 40.0):
            hip_w = xyz_world[hips].mean(axis=0)
            for v, i in enumerate(choice):
                if i is not None and np.isfinite(hip_w).all():
                    T = cams[v].cam_T_world_44
                    refs[v][i] = float(np.linalg.norm(T[:3, :3] @ hip_w + T[:3, 3]))
        for v, c in enumerate(cams):
            shots.append(_shot(f"{folder.name} {c.name} {index}", results[c.name, index], c.camera.focal_px,
                               refs[v], c.name, estimates[c.name, index]))  # fmt: skip
    return shots


def collect_h36m(folder: Path, pipeline) -> list[Shot]:  # noqa: ANN001 - ImagePipeline
    from pipelines.io.image_io import load_image

    gt = json.loads((folder / "gt.json").read_text())
    shots = []
    for frame in gt["frames"]:
        with _FocalRecorder(pipeline) as recorder:
            result = pipeline.run(load_image(folder / frame["image"]))
        estimates = recorder.take()
        fitted = [p for p in result.people if p.body is not None]
        if not fitted:
            continue
        person = max(fitted, key=lambda p: float(np.prod(p.detection.bbox_xyxy[2:] - p.detection.bbox_xyxy[:2])))
        result.people = [person]
        pelvis = np.asarray(frame["joints3d_cam"]["pelvis"], dtype=np.float64)
        shots.append(_shot(f"h36m {frame['image']}", result, float(np.mean(frame["focal_px"])),
                           [float(np.linalg.norm(pelvis))], frame["image"].split(".")[1].split("_")[0],
                           estimates))  # fmt: skip
    return shots


def _root_dist(p: BladePerson, shift_3: np.ndarray | None) -> float:
    return float(np.linalg.norm(p.root_cam_3 + (0 if shift_3 is None else shift_3)))


def evaluate(shots: list[Shot], method: str) -> tuple[list[float], list[float], float]:
    """Focal errors (%), root distance errors (%) and the mean solve time (s) of one method."""
    import time

    if method == "pooled":
        return _evaluate_pooled(shots)
    fe, de, secs = [], [], []
    for s in shots:
        geometry, _, sil = method.partition("+")
        people = s.people["fit" if geometry == "default" else geometry]
        if not people:
            continue
        if geometry == "default":
            f, shifts = float(s.K_est_33[0, 0]), [None] * len(people)
        else:
            t = time.perf_counter()
            try:
                r = solve_focal_distance(people, s.K_est_33, s.width, s.height, silhouette_w=float(sil or 0))
            except ValueError:
                continue
            secs.append(time.perf_counter() - t)
            f, shifts = r.focal_px, list(r.shift_cam_p3)
        fe.append(100 * (f / s.true_focal_px - 1))
        for p, sh, ref in zip(people, shifts, s.ref_dist_m, strict=False):
            if ref is not None:
                de.append(100 * (_root_dist(p, sh) / ref - 1))
    return fe, de, float(np.mean(secs)) if secs else 0.0


def pooled_focals(shots: list[Shot]) -> dict[str, float]:
    """Per camera, the one focal of every person's estimate over its images (FocalPool, the prior once)."""
    out = {}
    for cam in dict.fromkeys(s.camera for s in shots):
        mine = [s for s in shots if s.camera == cam]
        prior_px, sigma = focal_prior.focal_prior_px(mine[0].width, mine[0].height)
        pool = FocalPool(prior_px, sigma, frames=len(mine))
        for s in mine:
            for est in s.focal_estimates:
                pool.add(est)
            pool.end_frame()
        out[cam] = pool.pooled().focal_px if pool.estimates else prior_px
    return out


def _evaluate_pooled(shots: list[Shot]) -> tuple[list[float], list[float], float]:
    focal = pooled_focals(shots)
    fe, de = [], []
    for cam, f in focal.items():
        mine = [s for s in shots if s.camera == cam]
        fe.append(100 * (f / mine[0].true_focal_px - 1))
        for s in mine:
            for p, ref in zip(s.people["fit"], s.ref_dist_m, strict=False):
                if ref is not None:
                    de.append(100 * (_root_dist(p, None) * f / float(s.K_est_33[0, 0]) / ref - 1))
    return fe, de, 0.0


METHODS = {"default": "body fit's focal (default)", "pooled": "pooled per camera, one focal (its 5 images' people)",
           "fit+0": "solve: fitted joints, keypoints only",
           "fit+1": "solve: fitted joints + silhouette", "landmarks+0": "solve: world landmarks, keypoints only",
           "landmarks+1": "solve: world landmarks + silhouette"}  # fmt: skip


PRIORS = [(focal_prior.PREVIOUS_DIAGONAL_FOV_DEG, "baseline"), (focal_prior.PRIOR_DIAGONAL_FOV_DEG, "new")]


def med(v: list[float], signed: bool = False) -> str:
    """Median of |v| (or of v, signed), one decimal; an en dash when empty."""
    if not v:
        return "–"
    return f"{np.median(v):+.1f}" if signed else f"{np.median(np.abs(v)):.1f}"


def per_camera_rows(name: str, role: str, prior_label: str, shots: list[Shot]) -> list[list[str]]:
    """Per camera: the median signed focal error of its images (default) and the pooled focal's error."""
    rows = []
    for cam, f in pooled_focals(shots).items():
        mine = [s for s in shots if s.camera == cam]
        per_image = [100 * (float(s.K_est_33[0, 0]) / s.true_focal_px - 1) for s in mine if s.people["fit"]]
        _, dist, _ = evaluate(mine, "default")
        rows.append([f"{name} ({role})", cam, prior_label, str(len(per_image)), med(per_image, True),
                     f"{100 * (f / mine[0].true_focal_px - 1):+.1f}", str(len(dist)), med(dist),
                     med(dist, True)])  # fmt: skip
    return rows


def video_rows(name: str, role: str, n_frames: int) -> list[list[str]]:
    """The video mode's focal (pipelines.modes.video: the tracks' first fits of its first frames, pooled) on
    each camera's first `n_frames` frames (every 2nd: 30 frames/s), under each prior, in the same run."""
    from pipelines.io.video_io import VideoFrame
    from pipelines.modes.image import ImagePipeline
    from pipelines.modes.video import VideoOptions, VideoPipeline
    from pipelines.multiview.calibration import load_qualisys_calibration
    from pipelines.multiview.video import read_frames

    folder = DATA_DIR / f"multiview/{name}"
    image = ImagePipeline()
    rows = []
    for cam in load_qualisys_calibration(folder / "Calib.qca.txt"):
        frames = list(read_frames(folder / f"{cam.name}.mp4", list(range(0, 2 * n_frames, 2))))
        for fov, prior_label in PRIORS:
            with prior_centre(fov):
                video = VideoPipeline(image, VideoOptions(rate_hz=30.0))
                for index, rgb in frames:
                    video.process(VideoFrame(index, index / 60.0, rgb, 1.0))
            pool = video._focal_pool  # noqa: SLF001 - what the video pooled, for the table
            rows.append([f"{name} ({role})", cam.name, f"{prior_label}: {fov:g} deg", str(len(frames)),
                         str(len(pool.estimates)) if pool else "–",
                         f"{100 * (video.camera.focal_px / cam.camera.focal_px - 1):+.1f}"])  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the fitted people (read if present)")
    parser.add_argument("--methods", default="default,pooled,fit+0",
                        help=f"comma-separated, of {', '.join(METHODS)}")  # fmt: skip
    parser.add_argument("--video-frames", type=int, default=6,
                        help="also the video mode's focal on each camera's first N frames (0: not run)")  # fmt: skip
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {', '.join(unknown)}; expected some of {', '.join(METHODS)}")
    cached = pickle.loads(args.cache.read_bytes()) if args.cache and args.cache.is_file() else {}
    pipeline = None
    rows, cam_rows = [], []
    for name, role in SETS:
        for fov, prior_label in PRIORS:
            key = f"{name} {fov:g}"
            if key not in cached:
                from pipelines.modes.image import ImagePipeline

                pipeline = pipeline or ImagePipeline()
                folder = DATA_DIR / ("lab3d/h36m" if name == "h36m" else f"multiview/{name}")
                with prior_centre(fov):
                    cached[key] = (collect_h36m(folder, pipeline) if name == "h36m"
                                   else collect_multiview(folder, pipeline))  # fmt: skip
                if args.cache:
                    args.cache.write_bytes(pickle.dumps(cached))
            shots = cached[key]
            with prior_centre(fov):
                cam_rows += per_camera_rows(name, role, f"{prior_label}: {fov:g} deg", shots)
                for method in methods:
                    fe, de, secs = evaluate(shots, method)
                    label = f"{prior_label}: {fov:g} deg prior, {METHODS[method]}"
                    rows.append([f"{name} ({role})", label, str(len(fe)), med(fe), med(fe, True), str(len(de)),
                                 med(de), med(de, True), f"{1e3 * secs:.0f}" if secs else "–"])  # fmt: skip
    print(f"\nMachine: {machine_description()}; medians over images (focal; pooled: over cameras) and people "
          "(distance).\n")  # fmt: skip
    print(markdown_table(["set", "focal from", "images", "focal err (%)", "signed (%)", "people", "root dist. err (%)",
                          "signed (%)", "solve ms"], rows))  # fmt: skip
    print("\nPer camera: median signed focal error of its images (body fit's focal) and of its pooled focal; the "
          "root distance error of its people (body fit's focal).\n")  # fmt: skip
    print(markdown_table(["set", "camera", "prior", "images", "focal per image, signed (%)", "pooled, signed (%)",
                          "people", "root dist. err (%)", "signed (%)"], cam_rows))  # fmt: skip
    if args.video_frames > 0:
        video = [r for name, role in SETS if name != "h36m" for r in video_rows(name, role, args.video_frames)]
        print("\nVideo mode: the focal it holds after its first frames (signed error), per camera.\n")
        print(markdown_table(["set", "camera", "prior", "frames", "people pooled", "focal err, signed (%)"], video))


if __name__ == "__main__":
    main()
