"""Ground plane from one view's fitted body against a calibrated 4-camera rig (pose2sim_single).

    python -m bench.bench_ground_multiview                 # every 20th frame, true focal
    python -m bench.bench_ground_multiview --every 10 --estimated-focal

Per view and frame, the image pipeline (embedded backends) fits the person and the scene stage puts the
ground under the feet (pipelines.scene.ground: one person, body upright). Against the calibration
(Qualisys, world z up, read by pipelines.multiview.calibration): the camera's pitch and roll (from the
world's up in the camera frame) and its height, above the calibration's z = 0 and above the lowest
triangulated foot point (heels and toes of the 4-view BlazePose triangulation, the loading and
triangulation of bench.accuracy_multiview; the man is on a treadmill, whose belt is above z = 0).
Also the fitted root's distance error against the triangulated mid-hip. Per view: medians over the frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.accuracy_multiview import DEFAULT_DATA, CachedSegmenter, Method, observe
from bench.common import machine_description, markdown_table
from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.multiview.calibration import load_qualisys_calibration
from pipelines.multiview.triangulate import triangulate_points
from pipelines.multiview.video import frame_count
from pipelines.scene.ground import GroundPlane

FOOT_NAMES = ["left_heel", "right_heel", "left_foot_index", "right_foot_index"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--estimated-focal", action="store_true", help="do not give the pipeline the true focal")
    args = parser.parse_args(argv)
    from pipelines.modes.image import ImagePipeline

    cams = load_qualisys_calibration(args.data / "Calib.qca.txt")
    cams = [c for c in cams if (args.data / f"{c.name}.mp4").is_file()]
    n = min(frame_count(args.data / f"{c.name}.mp4") for c in cams)
    frames = list(range(0, n, args.every))
    pipeline = ImagePipeline()
    grounds: list[tuple[GroundPlane | None, np.ndarray | None]] = []

    def predict(rgb_hw3: np.ndarray, camera) -> dict | None:  # noqa: ANN001
        result = pipeline.run_array(rgb_hw3, focal_px=None if args.estimated_focal else camera.focal_px)
        body = result.people[0].body if result.people else None
        g = result.scene.ground if result.scene is not None else None
        if body is None:
            grounds.append((None, None))
            return None
        j = body.joints3d_cam
        hip = np.mean([j.xyz_k3[j.names.index(n)] for n in ("left_hip", "right_hip")], axis=0)
        grounds.append((g, hip))
        return {n: j.xyz_k3[i] for i, n in enumerate(j.names)}

    segmenter = CachedSegmenter()
    obs = observe(cams, frames, args.data, segmenter, [Method("hmr", predict, absolute=True)])
    refs = [triangulate_points(obs.xy_fvn2[i], obs.conf_fvn[i], cams, min_conf=0.1, outlier_px=50.0)
            for i in range(len(frames))]  # fmt: skip
    foot_ids = [BLAZEPOSE_NAMES.index(n) for n in FOOT_NAMES]
    hip_ids = [BLAZEPOSE_NAMES.index(n) for n in ("left_hip", "right_hip")]
    support_z = float(np.nanmedian([np.nanmin(r.xyz_n3[foot_ids, 2]) for r in refs]))
    rows = []
    all_err: dict[str, list[float]] = {"h0": [], "hs": [], "pitch": [], "roll": [], "dist": []}
    k = 0
    for cam in cams:
        R = cam.cam_T_world_44[:3, :3]
        up_cam = R @ np.array([0.0, 0.0, 1.0])
        truth = GroundPlane(normal_cam=up_cam, offset_m=float(cam.centre_world_3[2]), contacts_cam_n3=np.zeros((0, 3)),
                            source="calibration")  # fmt: skip
        e: dict[str, list[float]] = {key: [] for key in all_err}
        for i, _ in enumerate(frames):
            g, hip = grounds[k]
            k += 1
            if g is None:
                continue
            e["h0"].append(100 * (g.camera_height_m - truth.camera_height_m))
            e["hs"].append(100 * (g.camera_height_m - (truth.camera_height_m - support_z)))
            e["pitch"].append(g.pitch_deg - truth.pitch_deg)
            e["roll"].append(g.roll_deg - truth.roll_deg)
            ref_hip_w = refs[i].xyz_n3[hip_ids].mean(axis=0)
            ref_hip_c = R @ ref_hip_w + cam.cam_T_world_44[:3, 3]
            if np.isfinite(ref_hip_c).all():
                e["dist"].append(100 * (np.linalg.norm(hip) / np.linalg.norm(ref_hip_c) - 1))
        for key in all_err:
            all_err[key] += e[key]

        def med(key: str) -> str:
            return f"{np.median(e[key]):+.1f}" if e[key] else "–"  # noqa: B023

        rows.append([cam.name, f"{len(e['h0'])}/{len(frames)}", f"{truth.camera_height_m:.2f}",
                     f"{truth.camera_height_m - support_z:.2f}", med("h0"), med("hs"), f"{truth.pitch_deg:.1f}",
                     med("pitch"), f"{truth.roll_deg:.1f}", med("roll"), med("dist")])  # fmt: skip
    def med_abs(key: str) -> str:
        return f"{np.median(np.abs(all_err[key])):.1f}" if all_err[key] else "–"

    rows.append(["all views (median of abs.)", str(len(all_err["h0"])), "", "", med_abs("h0"), med_abs("hs"), "",
                 med_abs("pitch"), "", med_abs("roll"), med_abs("dist")])  # fmt: skip
    print(f"\nMachine: {machine_description()}; pose2sim_single, frames {frames}, "
          f"{'estimated' if args.estimated_focal else 'true'} focal; lowest triangulated foot point at "
          f"z = {support_z:.2f} m (median over frames).\n")  # fmt: skip
    print(markdown_table(["view", "frames with a body", "true height above z=0 (m)", "true height above feet (m)",
                          "height err vs z=0 (cm)", "height err vs feet (cm)", "true pitch (deg)", "pitch err (deg)",
                          "true roll (deg)", "roll err (deg)", "root dist. err (%)"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
