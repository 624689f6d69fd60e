"""Multi-view fusion on the 4-camera captures: reprojection before / after, offsets, camera changes, speed.

    python -m bench.bench_multiview                       # both captures, 100 frames each
    python -m bench.bench_multiview --frames 30 --cache /tmp/mv   # reuse the per-view keypoints
    python -m bench.bench_multiview --baseline-code ../main --repeats 2   # speed against another checkout

Per capture, end to end as `app.cli multiview` runs (decoding, keypoints, fusion, bodies, every output
file and result.rrd; bench.multiview_speed, a fresh process per run, wall and CPU time per stage), with and
without the bodies; with `--baseline-code DIR` the same run (with bodies) on that checkout's code (e.g.
main's), alternated with this code's so that both see the same load. Then, on this code's keypoints, the fusion
with every option (the method), and baselines in the same run: plain triangulation (the given
calibration, no time offsets, no refinement), and the method without time offsets / without camera
refinement. Reprojection: median over the inlier keypoints (confidence >= 0.5) of every view,
person and frame (undistorted source pixels), with the share of confident keypoints that are
inliers and the median over all of them. The constants were chosen on pose2sim_single;
pose2sim_multi is held out.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: as app/cli.py and app/main.py do

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from bench.common import DATA_DIR, machine_description, markdown_table, save_json  # noqa: E402
from pipelines.modes.multiview import MultiviewOptions, run_multiview  # noqa: E402
from pipelines.multiview.body_fit import BodyOptions  # noqa: E402
from pipelines.multiview.fuse import FUSED_JOINT_NAMES, FuseOptions  # noqa: E402
from pipelines.multiview.views2d import ViewTracks  # noqa: E402

SPEED_SCRIPT = Path(__file__).resolve().parent / "multiview_speed.py"
"""The end-to-end run, started in a fresh process (also on the baseline checkout's code)."""
SPEED_STAGES = ["keypoints", "association", "left/right", "time offsets", "bundle adjustment", "triangulation",
                "bodies", "outputs beside bodies", "exports", "rrd"]  # fmt: skip
"""Per stage; "outputs beside bodies" (the outputs that need only the fusion, written while the bodies are
fitted in forked processes) lies within "bodies"."""
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


def _speed_run(code: Path, capture: str, frames: int, body: bool) -> dict:
    """One end-to-end run (bench.multiview_speed) in a fresh process on the code of checkout `code`."""
    cmd = [sys.executable, str(SPEED_SCRIPT), "--capture", capture, "--frames", str(frames)]
    env = {**os.environ, "PYTHONPATH": str(code)}
    out = subprocess.run(cmd + ([] if body else ["--no-body"]), cwd=code, env=env, capture_output=True, text=True)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise RuntimeError(f"the end-to-end run on {code} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def _throughput(args: argparse.Namespace) -> tuple[list[list], list[dict]]:
    """The end-to-end rows: per capture, this code and the baseline's, with and without bodies, alternated."""
    here = Path(__file__).resolve().parents[1]
    codes = [("this branch", here)] + ([] if args.baseline_code is None else
                                       [("baseline", args.baseline_code.resolve())])  # fmt: skip
    rows, runs = [], []
    for capture in CAPTURES:
        for _ in range(max(1, args.repeats)):
            for body in (True, False):
                for label, code in codes[::-1] if body else codes[:1]:  # without bodies: this code only
                    r = _speed_run(code, capture, args.frames, body)
                    r["code"] = f"{label} ({code.name})"
                    runs.append(r)
                    sec, cpu = r["seconds"], r["cpu_seconds"]
                    rows.append([capture, r["code"], "yes" if body else "no (--no-body)",
                                 f"{r['load'][0]:.1f} / {r['load'][1]:.1f}",
                                 *[f"{sec.get(s, 0.0):.1f} / {cpu.get(s, 0.0):.1f}" for s in SPEED_STAGES],
                                 f"{r['wall_s']:.1f} / {r['cpu_s']:.1f}", r["fused_fps"], r["median_reproj_px"],
                                 "; ".join(f"{n} fr, {j} jumps" for n, j in zip(r["people_frames"], r["hip_jumps"],
                                                                                strict=True)),
                                 " / ".join(f"{e:.1f}" for e in r["body_median_reproj_px"]) or "–"])  # fmt: skip
                    print(" | ".join(str(x) for x in rows[-1]), flush=True)
    return rows, runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--cache", type=Path, default=None, help="folder for the per-view keypoints (reused)")
    parser.add_argument("--json", type=Path, default=None, help="also save all numbers to this JSON file")
    parser.add_argument("--no-throughput", action="store_true", help="skip the end-to-end runs")
    parser.add_argument("--no-methods", action="store_true", help="only the end-to-end runs")
    parser.add_argument("--baseline-code", type=Path, default=None, metavar="DIR",
                        help="also time the end-to-end runs on this checkout's code (e.g. ../main)")
    parser.add_argument("--repeats", type=int, default=1, help="end-to-end runs per configuration (alternated)")
    args = parser.parse_args()
    print(machine_description(), f"; load average {os.getloadavg()[0]:.1f}")
    rows, report, speed_rows = [], {}, []
    if not args.no_throughput:
        speed_rows, report["throughput"] = _throughput(args)
    for capture, use in CAPTURES.items():
        folder = DATA_DIR / "multiview" / capture
        videos = sorted(folder.glob("cam0*.mp4"))
        views = None
        keypoint_s: float | None = None  # unknown when the keypoints come from the cache
        cache = None if args.cache is None else args.cache / f"{capture}_{args.frames}"
        if cache is not None and cache.is_dir():
            views = [ViewTracks.load(cache / f"{v.stem}.npz") for v in videos]
        for name, fuse in ({} if args.no_methods else METHODS).items():
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
    if rows:
        print(markdown_table(headers, rows))
    if speed_rows:
        print("\nEnd to end as `app.cli multiview` runs (per stage: wall s / CPU s of all threads; fused frames/s ="
              " frames / total wall s):")
        print(markdown_table(["capture", "code", "bodies", "load average (start / end)", *SPEED_STAGES,
                              "total", "fused frames/s", "median reproj px", "people: frames, hip jumps",
                              "body median reproj px"], speed_rows))  # fmt: skip
    if args.json is not None:
        save_json(args.json, report)


if __name__ == "__main__":
    main()
