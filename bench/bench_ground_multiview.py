"""Ground plane from one view's fitted bodies against a calibrated 4-camera rig (pose2sim).

    python -m bench.bench_ground_multiview                        # the three sets below, true focal
    python -m bench.bench_ground_multiview --cache /tmp/ground.pkl  # keep the fitted bodies for reruns

Per view and frame, the image pipeline (embedded backends, true focal) fits the people; the ground is
put under their feet three ways: "first slice" (the baseline, bench.ground_first_slice: one person
upright, several people a least-squares plane through their soles), "per photo"
(pipelines.scene.ground.fit_ground: heel and toe contacts of all people, the bodies' up as the normal's
prior, one distance error per person) and "over time" (fit_ground_over_time on all the set's frames of
that view, a static camera).
Against the calibration (Qualisys, world z up, read by pipelines.multiview.calibration): the camera's
pitch and roll (the world's up in the camera frame) and its height. pose2sim_single: the man is on a
treadmill, whose belt is above z = 0: the height is taken above the lowest triangulated foot point
(heels and toes of the 4-view BlazePose triangulation of bench.accuracy_multiview, median over the
frames); also the fitted root's distance error against the triangulated mid-hip. pose2sim_multi: the
people stand on the floor, z = 0.

Sets: the constants of pipelines.scene.ground were chosen on pose2sim_single frames 0, 20, .., 80
("tuning"); pose2sim_single frames 10, 30, .., 90 and pose2sim_multi frames 0, 20, .., 80 are held out.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.accuracy_multiview import CachedSegmenter, Method, observe
from bench.common import machine_description, markdown_table
from bench.ground_first_slice import first_slice_ground
from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.multiview.calibration import CalibratedCamera, load_qualisys_calibration
from pipelines.multiview.triangulate import triangulate_points
from pipelines.scene.frame_scene import footed_bodies
from pipelines.scene.ground import FootedBody, GroundPlane, fit_ground, fit_ground_over_time

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "multiview"
FOOT_NAMES = ["left_heel", "right_heel", "left_foot_index", "right_foot_index"]
SETS = [("pose2sim_single", "tuning", list(range(0, 100, 20))),
        ("pose2sim_single", "held out", list(range(10, 100, 20))),
        ("pose2sim_multi", "held out", list(range(0, 100, 20)))]  # fmt: skip


@dataclass
class ViewFrames:
    """One view's fitted bodies over a set's frames."""

    cam: CalibratedCamera
    bodies: list[list[FootedBody]]
    """Per frame the fitted bodies (camera frame, metres)."""
    ref_hip_cam: list[np.ndarray | None]
    """Per frame the triangulated mid-hip of the (single) person in this camera's frame; None if unknown."""


def collect(data: Path, frames: list[int]) -> tuple[list[ViewFrames], float]:
    """Run the image pipeline on every (view, frame); also the lowest triangulated foot point's z."""
    from pipelines.modes.image import ImagePipeline

    cams = [c for c in load_qualisys_calibration(data / "Calib.qca.txt") if (data / f"{c.name}.mp4").is_file()]
    pipeline = ImagePipeline()
    fitted: list[list[FootedBody]] = []

    def predict(rgb_hw3: np.ndarray, camera) -> dict | None:  # noqa: ANN001
        result = pipeline.run_array(rgb_hw3, focal_px=camera.focal_px)
        fitted.append(footed_bodies(result.people))
        return fitted[-1][0].joints if fitted[-1] else None

    obs = observe(cams, frames, data, CachedSegmenter(), [Method("hmr", predict, absolute=True)])
    refs = [triangulate_points(obs.xy_fvn2[i], obs.conf_fvn[i], cams, min_conf=0.1, outlier_px=50.0)
            for i in range(len(frames))]  # fmt: skip
    foot_ids = [BLAZEPOSE_NAMES.index(n) for n in FOOT_NAMES]
    hip_ids = [BLAZEPOSE_NAMES.index(n) for n in ("left_hip", "right_hip")]
    support_z = float(np.nanmedian([np.nanmin(r.xyz_n3[foot_ids, 2]) for r in refs]))
    views = []
    for v, cam in enumerate(cams):
        hips = []
        for r in refs:
            hip_c = cam.cam_T_world_44[:3, :3] @ r.xyz_n3[hip_ids].mean(axis=0) + cam.cam_T_world_44[:3, 3]
            hips.append(hip_c if np.isfinite(hip_c).all() else None)
        views.append(ViewFrames(cam=cam, bodies=fitted[v * len(frames):(v + 1) * len(frames)], ref_hip_cam=hips))
    return views, support_z


def errors(views: list[ViewFrames], truth_z: float, fit: Callable, over_time: bool) -> dict[str, list[float]]:
    """Height (cm), pitch and roll (deg) errors of every (view, frame), or of every view over time."""
    e: dict[str, list[float]] = {"height": [], "pitch": [], "roll": []}
    for vf in views:
        R = vf.cam.cam_T_world_44[:3, :3]
        truth = GroundPlane(normal_cam=R @ np.array([0.0, 0.0, 1.0]), contacts_cam_n3=np.zeros((0, 3)),
                            offset_m=float(vf.cam.centre_world_3[2]) - truth_z, source="calibration")  # fmt: skip
        grounds = [fit_ground_over_time(vf.bodies)] if over_time else [fit(b) for b in vf.bodies]
        for g in grounds:
            if g is None:
                continue
            e["height"].append(100 * (g.camera_height_m - truth.camera_height_m))
            e["pitch"].append(g.pitch_deg - truth.pitch_deg)
            e["roll"].append(g.roll_deg - truth.roll_deg)
    return e


def distance_errors(views: list[ViewFrames]) -> list[float]:
    """The first body's mid-hip distance error (%) against the triangulated one."""
    out = []
    for vf in views:
        for bodies, ref in zip(vf.bodies, vf.ref_hip_cam, strict=True):
            if bodies and ref is not None:
                hip = (bodies[0].joints["left_hip"] + bodies[0].joints["right_hip"]) / 2
                out.append(100 * (np.linalg.norm(hip) / np.linalg.norm(ref) - 1))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the fitted bodies (read if present)")
    args = parser.parse_args(argv)
    cached = pickle.loads(args.cache.read_bytes()) if args.cache and args.cache.is_file() else {}
    rows = []
    for name, role, frames in SETS:
        key = f"{name}:{frames}"
        if key not in cached:
            cached[key] = collect(args.data / name, frames)
            if args.cache:
                args.cache.write_bytes(pickle.dumps(cached))
        views, support_z = cached[key]
        single = name == "pose2sim_single"
        truth_z = support_z if single else 0.0
        dist = distance_errors(views) if single else []
        people = np.mean([len(b) for vf in views for b in vf.bodies])
        for method, fit, over_time in (("first slice (baseline)", first_slice_ground, False),
                                       ("per photo", fit_ground, False), ("over time", None, True)):  # fmt: skip
            e = errors(views, truth_z, fit, over_time)

            def med(key: str) -> str:
                return f"{np.median(np.abs(e[key])):.1f}" if e[key] else "–"  # noqa: B023

            rows.append([f"{name} {frames[0]}, {frames[1]}, .., {frames[-1]} ({role})", f"{people:.1f}", method,
                         str(len(e["height"])), med("height"), med("pitch"), med("roll"),
                         f"{np.median(np.abs(dist)):.1f}" if dist else "–"])  # fmt: skip
    print(f"\nMachine: {machine_description()}; true focal; medians of absolute errors over views x frames "
          "('over time': over the 4 views).\n")  # fmt: skip
    print(markdown_table(["set (frames)", "fitted people per photo", "ground", "estimates", "height err (cm)",
                          "pitch err (deg)", "roll err (deg)", "root dist. err (%)"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
