"""Self-calibration from the people against the given calibration, on the 4-camera captures.

    python -m bench.bench_selfcalib                       # both captures, 100 frames each
    python -m bench.bench_selfcalib --cache /tmp/mv       # reuse (or save) bench_multiview's per-view keypoints

Per capture: the multi-view mode without its calibration file (pipelines.multiview.selfcalib: essential
matrices and PnP from the people's keypoints, then the bundle adjustment with the focal lengths free,
the scale from the tallest person taken to be 1.70 m), against the given calibration (Calib.qca.txt):
- rotation error: per camera, the angle between its estimated and given rotation relative to the
  reference camera (cam01), degrees (free of the world frame);
- centre error: camera centres after the best rigid alignment onto the given ones (the scale as
  estimated), and after the best similarity (the scale corrected), in % of the given centres' mean
  distance to their centroid; the scale error is the similarity's scale - 1;
- focal error in %, and the fused median reprojection (inliers, source pixels) it reaches, with the given
  calibration's (refined) as the baseline in the same run.
The self-calibration's choices (threshold, focal-only intrinsics) were made on pose2sim_single; pose2sim_multi
is held out.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from bench.common import DATA_DIR, machine_description, markdown_table, save_json
from pipelines.errors import UserFacingError
from pipelines.metrics import procrustes
from pipelines.modes.multiview import MultiviewOptions, run_multiview
from pipelines.multiview.body_fit import BodyOptions
from pipelines.multiview.calibration import load_qualisys_calibration
from pipelines.multiview.views2d import ViewTracks

CAPTURES = {"pose2sim_single": "tuning", "pose2sim_multi": "held out"}


def compare(est: list, given: dict) -> dict:  # noqa: ANN001 - CalibratedCamera lists
    """Errors of the estimated cameras against the given ones (see the module docstring)."""
    names = [c.name for c in est]
    R_e = [c.cam_T_world_44[:3, :3] for c in est]
    R_g = [given[n].cam_T_world_44[:3, :3] for n in names]
    rot = [float(np.degrees(Rotation.from_matrix(R_e[i] @ R_e[0].T @ (R_g[i] @ R_g[0].T).T).magnitude()))
           for i in range(1, len(est))]  # fmt: skip
    C_e = np.stack([c.centre_world_3 for c in est])
    C_g = np.stack([given[n].centre_world_3 for n in names])
    spread = float(np.linalg.norm(C_g - C_g.mean(0), axis=1).mean())
    rigid = procrustes(C_e, C_g, with_scale=False)
    sim = procrustes(C_e, C_g, with_scale=True)
    focal = [100 * (c.camera.K_33[0, 0] / given[c.name].camera.K_33[0, 0] - 1) for c in est]
    return {"views": names, "rotation_deg": rot,
            "centre_rigid_pct": (100 * np.linalg.norm(rigid.apply(C_e) - C_g, axis=1) / spread).tolist(),
            "centre_similarity_pct": (100 * np.linalg.norm(sim.apply(C_e) - C_g, axis=1) / spread).tolist(),
            "scale_error_pct": 100 * (1 / sim.scale - 1), "focal_error_pct": focal}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=None,
                        help="bench_multiview's --cache folder (reused; filled when empty)")
    parser.add_argument("--json", type=Path, default=None, help="also save all numbers to this JSON file")
    args = parser.parse_args()
    print(machine_description(), f"; load average {os.getloadavg()[0]:.1f}")
    rows, report = [], {}
    for capture, use in CAPTURES.items():
        folder = DATA_DIR / "multiview" / capture
        videos = sorted(folder.glob("cam0*.mp4"))
        cache = None if args.cache is None else args.cache / f"{capture}_{args.frames}"
        views = None
        if cache is not None and cache.is_dir():
            views = [ViewTracks.load(cache / f"{v.stem}.npz") for v in videos]
        opts = MultiviewOptions(n_frames=args.frames, body=BodyOptions(fit=False))
        t0 = time.perf_counter()
        calibrated = run_multiview(videos, folder / "Calib.qca.txt", opts, views=views)
        t1 = time.perf_counter()
        views = calibrated.views
        if cache is not None and not cache.is_dir():  # for the next run
            cache.mkdir(parents=True)
            for v in views:
                v.save(cache / f"{v.name}.npz")
        given = {c.name: c for c in load_qualisys_calibration(folder / "Calib.qca.txt")}
        try:
            est = run_multiview(videos, None, opts, views=views)
        except UserFacingError as err:
            rows.append([capture, use, f"failed: {err}"] + [None] * 7)
            continue
        t2 = time.perf_counter()
        cmp = compare(est.fusion.cams, given)
        rows.append([capture, use, " / ".join(f"{r:.1f}" for r in cmp["rotation_deg"]),
                     " / ".join(f"{e:.0f}" for e in cmp["centre_rigid_pct"]),
                     " / ".join(f"{e:.0f}" for e in cmp["centre_similarity_pct"]), f"{cmp['scale_error_pct']:+.0f}",
                     " / ".join(f"{e:+.0f}" for e in cmp["focal_error_pct"]), est.fusion.median_reproj_px,
                     calibrated.fusion.median_reproj_px, f"{t2 - t1:.0f} ({t1 - t0:.0f})"])  # fmt: skip
        report[capture] = {**cmp, "median_reproj_px": est.fusion.median_reproj_px,
                           "given_median_reproj_px": calibrated.fusion.median_reproj_px,
                           "views_left_out": est.warnings, "seconds": t2 - t1, "given_seconds": t1 - t0}  # fmt: skip
    print(markdown_table(["capture", "use", "rotation error (deg, cam02-04 vs cam01)", "centre error, rigid (%)",
                          "centre error, similarity (%)", "scale error (%)", "focal error (%)",
                          "median reproj px (self-calibrated)", "median reproj px (given calibration, refined)",
                          "fusion s (given)"], rows))  # fmt: skip
    if args.json is not None:
        save_json(args.json, report)


if __name__ == "__main__":
    main()
