"""The video mode's ground (a static camera, the feet of every frame) against the pose2sim calibrations.

    python -m bench.bench_ground_video [--stride 2] [--cache /tmp/ground_video.pkl]

Per view of pose2sim_single and pose2sim_multi, the video pipeline (embedded backends, the calibrated
focal given, so only the ground is measured) tracks and fits the people; from the same tracks' joints the
ground is fitted two ways: "previous video ground" (bench.ground_video_previous, the video mode's own
fitter before the merge: the bodies' mean up as the normal, the densest layer of heel and toe points
as the height) and "one ground" (pipelines.tracking.feet.tracks_ground -> pipelines.scene.ground: the
fitter the photo uses, over every frame), then with the normal from the sampled frames' lines: their vertical
vanishing point (main before the Manhattan frame), and their Manhattan frame first, else the vertical
vanishing point (the video mode's default since wip21). Errors against the calibration (world z up): camera height
(above the lowest triangulated foot point on pose2sim_single's treadmill, as bench.bench_ground_multiview;
above z = 0 on pose2sim_multi), pitch and roll. pose2sim_single was the tuning data of
pipelines.scene.ground; pose2sim_multi is held out.
"""

from __future__ import annotations

import argparse
import os
import pickle
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from bench.common import DATA_DIR, machine_description, markdown_table

SUPPORT_Z_SINGLE = 0.03
"""pose2sim_single: the lowest triangulated foot point's z (the treadmill's belt; bench_ground_multiview)."""
SETS = [("pose2sim_single", "tuning"), ("pose2sim_multi", "held out")]


def track_joints(video: Path, focal_px: float, stride: int) -> tuple[list[np.ndarray], list[list[int]], float]:
    """Every track's joints (F, K, 3) and frame indices, from the video pipeline; and the seconds it took."""
    from pipelines.io.video_io import DecodeReport, probe, read_video
    from pipelines.modes.image import ImagePipeline
    from pipelines.modes.video import VideoOptions, VideoPipeline

    info = probe(video)
    t0 = time.perf_counter()
    vp = VideoPipeline(ImagePipeline(), VideoOptions(focal_px=focal_px, rate_hz=info.fps / stride))
    for _ in vp.run(read_video(info, stride=stride, report=DecodeReport())):
        pass
    tracks = [t for t in vp.tracks.values() if t.frames]
    return [np.stack(t.joints_cam_fk3) for t in tracks], [list(t.frames) for t in tracks], time.perf_counter() - t0


VP_FRAMES = list(range(0, 100, 10))
"""The frames whose line segments feed the vanishing point (the video mode samples 1 a second, at most 10)."""


def view_segments(video: Path, cam, joints: list[np.ndarray], frames: list[list[int]]) -> tuple[list, tuple]:  # noqa: ANN001
    """Line segments of VP_FRAMES (full resolution, the tracks' projected joints' boxes masked out) and the
    image size."""
    from pipelines.multiview.video import read_frames
    from pipelines.scene.vanishing import boxes_mask, line_segments, segments_off_mask

    K = cam.camera.K_33
    segs, size = [], (0, 0)
    for index, rgb_hw3 in read_frames(video, VP_FRAMES):
        h, w = rgb_hw3.shape[:2]
        size = (w, h)
        boxes = []
        for j_fk3, fr in zip(joints, frames, strict=True):
            near = [i for i, f in enumerate(fr) if abs(f - index) <= 2]
            if near:
                j = j_fk3[near[0]]
                j = j[np.isfinite(j).all(axis=1) & (j[:, 2] > 0.1)]
                if len(j):
                    uv = (j[:, :2] / j[:, 2:]) @ K[:2, :2].T + K[:2, 2]
                    boxes.append([*uv.min(axis=0), *uv.max(axis=0)])
        segs.append(segments_off_mask(line_segments(rgb_hw3), boxes_mask(np.array(boxes), w, h, 0.15)))
    return segs, size


def plane_errors(normal_cam_3: np.ndarray, height_m: float, cam, support_z: float) -> tuple[float, float, float]:  # noqa: ANN001
    """(height cm, pitch deg, roll deg) errors of a fitted ground against the calibrated camera."""
    from pipelines.scene.ground import pitch_deg, roll_deg

    up_cam = cam.cam_T_world_44[:3, :3] @ np.array([0.0, 0.0, 1.0])
    true_h = float(cam.centre_world_3[2]) - support_z
    return (100 * (height_m - true_h), pitch_deg(normal_cam_3) - pitch_deg(up_cam),
            roll_deg(normal_cam_3) - roll_deg(up_cam))  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    from bench import ground_video_previous
    from pipelines.multiview.calibration import load_qualisys_calibration
    from pipelines.tracking.feet import tracks_ground

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the tracks (read if present)")
    args = parser.parse_args(argv)
    cached = pickle.loads(args.cache.read_bytes()) if args.cache and args.cache.is_file() else {}
    rows = []
    for name, role in SETS:
        data = DATA_DIR / "multiview" / name
        cams = [c for c in load_qualisys_calibration(data / "Calib.qca.txt") if (data / f"{c.name}.mp4").is_file()]
        support_z = SUPPORT_Z_SINGLE if name == "pose2sim_single" else 0.0
        base = "previous video ground (baseline)"
        vp_label = "one ground, vertical vanishing point where supported"
        mf_label = "one ground, Manhattan frame, else vertical vanishing point (the video mode's default)"
        errs: dict[str, list[tuple[float, float, float]]] = {base: [], "one ground": [], vp_label: [], mf_label: []}
        took = took_mf = 0
        secs: dict[str, float] = {k: 0.0 for k in errs}
        n_frames = 0
        for cam in cams:
            key = f"{name}/{cam.name}:{args.stride}"
            if key not in cached:
                cached[key] = track_joints(data / f"{cam.name}.mp4", cam.camera.focal_px, args.stride)
                if args.cache:
                    args.cache.write_bytes(pickle.dumps(cached))
            joints, frames, _ = cached[key]
            n_frames = max(n_frames, len({f for fr in frames for f in fr}))
            t = time.perf_counter()
            old = ground_video_previous.fit_ground(joints)
            secs[base] += time.perf_counter() - t
            t = time.perf_counter()
            new = tracks_ground(joints, frames)
            secs["one ground"] += time.perf_counter() - t
            if old is not None:
                errs[base].append(plane_errors(old.normal_cam_3, old.offset_m, cam, support_z))
            if new is not None:
                errs["one ground"].append(plane_errors(new.normal_cam, new.offset_m, cam, support_z))
            if f"segments:{key}" not in cached:
                cached[f"segments:{key}"] = view_segments(data / f"{cam.name}.mp4", cam, joints, frames)
                if args.cache:
                    args.cache.write_bytes(pickle.dumps(cached))
            segs, size = cached[f"segments:{key}"]
            t = time.perf_counter()
            vp = tracks_ground(joints, frames, segs, cam.camera.K_33, size, manhattan=False)
            secs[vp_label] += time.perf_counter() - t
            if vp is not None:
                errs[vp_label].append(plane_errors(vp.normal_cam, vp.offset_m, cam, support_z))
                took += vp.up_source == "vanishing_point"
            t = time.perf_counter()
            mf = tracks_ground(joints, frames, segs, cam.camera.K_33, size, manhattan=True)
            secs[mf_label] += time.perf_counter() - t
            if mf is not None:
                errs[mf_label].append(plane_errors(mf.normal_cam, mf.offset_m, cam, support_z))
                took_mf += mf.up_source != "bodies"
        for method, e in errs.items():
            a = np.abs(np.array(e)).reshape(-1, 3)
            per_view = " / ".join(f"{h:+.0f}" for h, _, _ in e)
            what = f"{method} ({took} of {len(e)} took it)" if method == vp_label else method
            what = f"{method} ({took_mf} of {len(e)} took the lines)" if method == mf_label else what
            rows.append([f"{name} ({role}), {len(cams)} views, {n_frames} frames", what, str(len(e)),
                         f"{np.median(a[:, 0]):.1f}", per_view, f"{np.median(a[:, 1]):.1f}",
                         f"{np.median(a[:, 2]):.1f}",
                         f"{1e3 * secs[method] / max(len(cams), 1):.0f}"])  # fmt: skip
    print(f"\nMachine: {machine_description()}; calibrated focal; stride {args.stride}; medians over the views.\n")
    print(markdown_table(["set", "ground", "views", "height err (cm)", "signed per view (cm)", "pitch err (deg)",
                          "roll err (deg)", "fit ms per view"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
