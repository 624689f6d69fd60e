"""Focal length and root distance from one photo: the body fit's focal (the default) against the BLADE-style
joint solve of focal and distances (pipelines.camera.blade), on the same detections and fits.

    python -m bench.bench_focal_solve [--cache /tmp/focal_solve.pkl]

Per image the image pipeline runs without a focal (embedded backends: the focal is estimated with the
bodies, the default path); the solve then starts from those fits. Errors: focal (%) against the
calibration; root (mid-hip) distance (%) against the reference: pose2sim, the BlazePose hips
triangulated from the 4 calibrated views (people matched across views by bench.accuracy_lab3d.match_people);
H36M, the ground-truth pelvis (a joint centre: the mid-hip of surface keypoints is a few cm off it).
Sets: pose2sim_single frames 0, 20, .., 80 (tuning: the solve's choices were made here), pose2sim_multi
frames 0, 20, .., 80 and the 4 H36M frames of lab3d (held out for the solve).
"""

from __future__ import annotations

import argparse
import json
import pickle
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from bench.common import DATA_DIR, machine_description, markdown_table
from pipelines.camera.blade import RENDER_SIDE_PX, BladePerson, blade_people, solve_focal_distance
from pipelines.keypoints.names import BLAZEPOSE_NAMES

SETS = [("pose2sim_single", "tuning"), ("pose2sim_multi", "held out"), ("h36m", "held out")]
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


def _small_masks(people: list[BladePerson], width: int, height: int) -> list[BladePerson]:
    s = RENDER_SIDE_PX / max(width, height)
    size = (max(1, round(width * s)), max(1, round(height * s)))
    return [replace(p, mask_hw=None if p.mask_hw is None else
                    cv2.resize(np.asarray(p.mask_hw, np.float32), size, interpolation=cv2.INTER_AREA))
            for p in people]  # fmt: skip


def _shot(name: str, result, true_focal_px: float, refs: list[float | None]) -> Shot:  # noqa: ANN001
    h, w = result.image_rgb_hw3.shape[:2]
    fitted = [p for p in result.people if p.body is not None]
    people = {g: _small_masks(blade_people(fitted, g), w, h) for g in ("fit", "landmarks")}
    return Shot(name, w, h, np.asarray(result.camera.K_33, dtype=np.float64), true_focal_px, people, refs)


def collect_multiview(folder: Path, pipeline) -> list[Shot]:  # noqa: ANN001 - ImagePipeline
    from bench.accuracy_lab3d import match_people
    from pipelines.io.image_io import LoadedImage
    from pipelines.multiview.calibration import load_qualisys_calibration
    from pipelines.multiview.video import read_frames

    cams = load_qualisys_calibration(folder / "Calib.qca.txt")
    runs = {c.name: dict(read_frames(folder / f"{c.name}.mp4", FRAMES)) for c in cams}
    results = {}
    for c in cams:
        for index, rgb in runs[c.name].items():
            image = LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])
            results[c.name, index] = pipeline.run(image)
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
                               refs[v]))  # fmt: skip
    return shots


def collect_h36m(folder: Path, pipeline) -> list[Shot]:  # noqa: ANN001 - ImagePipeline
    from pipelines.io.image_io import load_image

    gt = json.loads((folder / "gt.json").read_text())
    shots = []
    for frame in gt["frames"]:
        result = pipeline.run(load_image(folder / frame["image"]))
        fitted = [p for p in result.people if p.body is not None]
        if not fitted:
            continue
        person = max(fitted, key=lambda p: float(np.prod(p.detection.bbox_xyxy[2:] - p.detection.bbox_xyxy[:2])))
        result.people = [person]
        pelvis = np.asarray(frame["joints3d_cam"]["pelvis"], dtype=np.float64)
        shots.append(_shot(f"h36m {frame['image']}", result, float(np.mean(frame["focal_px"])),
                           [float(np.linalg.norm(pelvis))]))  # fmt: skip
    return shots


def _root_dist(p: BladePerson, shift_3: np.ndarray | None) -> float:
    return float(np.linalg.norm(p.root_cam_3 + (0 if shift_3 is None else shift_3)))


def evaluate(shots: list[Shot], method: str) -> tuple[list[float], list[float], float]:
    """Focal errors (%), root distance errors (%) and the mean solve time (s) of one method."""
    import time

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


METHODS = {"default": "body fit's focal (default, baseline)", "fit+0": "solve: fitted joints, keypoints only",
           "fit+1": "solve: fitted joints + silhouette", "landmarks+0": "solve: world landmarks, keypoints only",
           "landmarks+1": "solve: world landmarks + silhouette"}  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the fitted people (read if present)")
    args = parser.parse_args(argv)
    cached = pickle.loads(args.cache.read_bytes()) if args.cache and args.cache.is_file() else {}
    pipeline = None
    rows = []
    for name, role in SETS:
        if name not in cached:
            from pipelines.modes.image import ImagePipeline

            pipeline = pipeline or ImagePipeline()
            folder = DATA_DIR / ("lab3d/h36m" if name == "h36m" else f"multiview/{name}")
            cached[name] = collect_h36m(folder, pipeline) if name == "h36m" else collect_multiview(folder, pipeline)
            if args.cache:
                args.cache.write_bytes(pickle.dumps(cached))
        shots = cached[name]
        for method, label in METHODS.items():
            fe, de, secs = evaluate(shots, method)

            def med(v: list[float], signed: bool = False) -> str:
                return "–" if not v else f"{np.median(v if signed else np.abs(v)):+.1f}" if signed else \
                    f"{np.median(np.abs(v)):.1f}"  # fmt: skip

            rows.append([f"{name} ({role})", label, str(len(fe)), med(fe), med(fe, True), str(len(de)), med(de),
                         med(de, True), f"{1e3 * secs:.0f}" if secs else "–"])  # fmt: skip
    print(f"\nMachine: {machine_description()}; medians over images (focal) and people (distance).\n")
    print(markdown_table(["set", "focal from", "images", "focal err (%)", "signed (%)", "people", "root dist. err (%)",
                          "signed (%)", "solve ms"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
