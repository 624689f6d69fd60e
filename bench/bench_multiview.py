"""Multi-view fusion on the 4-camera captures: reprojection before / after, offsets, camera changes, speed.

    python -m bench.bench_multiview                       # both captures, 100 frames each
    python -m bench.bench_multiview --frames 30 --cache /tmp/mv   # reuse the per-view keypoints

Per capture, end to end (decoding, keypoints, fusion, bodies; timed): the first slice's configuration
(a full detection on every frame, the views one after the other, no body) as the baseline, and this
slice's (landmark tracking, two views at a time, the Anny body fitted every 2nd frame). Then, on the
latter's keypoints, the fusion with
every option (the method), and baselines in the same run: plain triangulation (the given
calibration, no time offsets, no refinement), and the method without time offsets / without camera
refinement. Reprojection: median over the inlier keypoints (confidence >= 0.5) of every view,
person and frame (undistorted source pixels), with the share of confident keypoints that are
inliers and the median over all of them. The constants were chosen on pose2sim_single;
pose2sim_multi is held out.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from bench.common import DATA_DIR, machine_description, markdown_table, save_json
from pipelines.modes.multiview import MultiviewOptions, run_multiview
from pipelines.multiview.body_fit import BodyOptions
from pipelines.multiview.fuse import FUSED_JOINT_NAMES, FuseOptions
from pipelines.multiview.views2d import ViewTracks, make_view_detector

THROUGHPUT = [
    ("first slice: image detector on every frame, views in turn, no body (baseline)", "image",
     MultiviewOptions(max_side=1280, body=BodyOptions(fit=False))),
    ("landmark tracking, 2 views at a time, Anny body every 2nd frame", None, MultiviewOptions()),
]
"""End-to-end configurations: label, shared detector kind (None: one per view, the default), options."""
CAPTURES = {"pose2sim_single": "tuning", "pose2sim_multi": "held out"}
METHODS = {
    "plain triangulation (baseline)": FuseOptions(sync=False, refine=False, fix_left_right=False),
    "no time offsets": FuseOptions(sync=False),
    "no camera refinement": FuseOptions(refine=False),
    "fused (offsets + refinement)": FuseOptions(),
}


def _hip_jumps(joints_fk3: np.ndarray, max_m: float = 0.3) -> int:
    """Frames where the mid-hip moves more than `max_m` since the previous frame (identity-switch proxy)."""
    i, j = FUSED_JOINT_NAMES.index("left_hip"), FUSED_JOINT_NAMES.index("right_hip")
    hip = (joints_fk3[:, i] + joints_fk3[:, j]) / 2
    step = np.linalg.norm(np.diff(hip, axis=0), axis=-1)
    return int(np.sum(step[np.isfinite(step)] > max_m))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=None, help="folder for the per-view keypoints (reused)")
    parser.add_argument("--json", type=Path, default=None, help="also save all numbers to this JSON file")
    parser.add_argument("--no-throughput", action="store_true", help="skip the end-to-end runs (baseline + this slice)")
    args = parser.parse_args()
    print(machine_description(), f"; load average {os.getloadavg()[0]:.1f}")
    rows, report, speed_rows = [], {}, []
    for capture, use in CAPTURES.items():
        folder = DATA_DIR / "multiview" / capture
        videos = sorted(folder.glob("cam0*.mp4"))
        views = None
        keypoint_s: float | None = None  # unknown when the keypoints come from the cache
        cache = None if args.cache is None else args.cache / f"{capture}_{args.frames}"
        if cache is not None and cache.is_dir():
            views = [ViewTracks.load(cache / f"{v.stem}.npz") for v in videos]
        if not args.no_throughput:
            for label, detector, opts in THROUGHPUT:
                load0 = os.getloadavg()[0]
                start = time.perf_counter()
                shared = None if detector is None else make_view_detector(detector)
                try:
                    result = run_multiview(videos, folder / "Calib.qca.txt",
                                           dataclasses.replace(opts, n_frames=args.frames), detector=shared)
                finally:
                    if shared is not None:
                        shared.close()
                elapsed = time.perf_counter() - start
                sec = result.seconds
                body_px = [b.median_reproj_px for b in result.bodies]
                speed_rows.append([capture, label, f"{load0:.1f} / {os.getloadavg()[0]:.1f}", sec["keypoints"],
                                   sec["fusion"], sec["bodies"], f"{elapsed:.1f}", result.fusion.n_frames / elapsed,
                                   result.fusion.median_reproj_px,
                                   " / ".join(f"{e:.1f}" for e in body_px) or "–"])  # fmt: skip
                report[f"{capture}/throughput/{label}"] = {"seconds": sec, "wall_s": elapsed,
                                                           "median_reproj_px": result.fusion.median_reproj_px,
                                                           "body_median_reproj_px": body_px}  # fmt: skip
                if detector is None and views is None:  # this slice's keypoints: reused by the methods below
                    views, keypoint_s = result.views, sec["keypoints"]
                    if cache is not None:
                        cache.mkdir(parents=True, exist_ok=True)
                        for v in views:
                            v.save(cache / f"{v.name}.npz")
        for name, fuse in METHODS.items():
            start = time.perf_counter()
            result = run_multiview(videos, folder / "Calib.qca.txt", MultiviewOptions(
                n_frames=args.frames, fuse=fuse, body=BodyOptions(fit=False)), views=views)  # fmt: skip
            elapsed = time.perf_counter() - start
            if views is None:  # first method: the keypoints were computed (and timed) here
                views = result.views
                keypoint_s = result.seconds["keypoints"]
                if cache is not None:
                    cache.mkdir(parents=True, exist_ok=True)
                    for v in views:
                        v.save(cache / f"{v.name}.npz")
            f = result.fusion
            ref = f.refine
            fps = None if keypoint_s is None else f.n_frames / (keypoint_s + result.seconds["fusion"])
            people = "; ".join(f"{p.height_m:.2f} m, {int(p.frames_ok.sum())} fr, {_hip_jumps(p.joints_fk3)} jumps"
                               for p in f.people)  # fmt: skip
            rows.append([capture, use, name, f.median_reproj_px, f"{100 * f.inlier_share:.0f} %",
                         f.median_reproj_all_px,
                         " / ".join(f"{o:+.1f}" for o in f.offsets_v),
                         "–" if ref is None else " / ".join(f"{d:.1f}" for d in ref.rotation_change_deg_v),
                         "–" if ref is None else " / ".join(f"{100 * t:.0f}" for t in ref.translation_change_m_v),
                         people, f"{result.seconds['fusion']:.1f}", fps])  # fmt: skip
            report[f"{capture}/{name}"] = {"median_reproj_px": f.median_reproj_px, "inlier_share": f.inlier_share,
                                           "median_reproj_all_px": f.median_reproj_all_px,
                                           "offsets": f.offsets_v.tolist(), "seconds": result.seconds,
                                           "wall_s": elapsed, "keypoint_s": keypoint_s}  # fmt: skip
    headers = ["capture", "use", "method", "median reproj px (inliers)", "inliers", "median reproj px (all)",
               "time offsets (frames, cam01-04)", "rotation change (deg)", "centre moved (cm)",
               "people: height, frames, hip jumps > 0.3 m", "fusion s", "fused frames/s end to end"]  # fmt: skip
    print(markdown_table(headers, rows))
    if speed_rows:
        print("\nEnd to end (decoding, keypoints, fusion, bodies), the first slice's configuration as the baseline:")
        print(markdown_table(["capture", "configuration", "load average (start / end)", "keypoints s", "fusion s",
                              "bodies s", "total s", "fused frames/s", "median reproj px (triangulation)",
                              "body median reproj px"], speed_rows))  # fmt: skip
    if args.json is not None:
        save_json(args.json, report)


if __name__ == "__main__":
    main()
