"""Speed and fit quality of the single-image pipeline on real photos (embedded backends, CPU).

    python -m bench.bench_image [--repeats 7] [--frames 0,50,99] [--native]

Prints two Markdown tables:
1. Speed: cold start (process start to models loaded, Anny's cached build) and, warm, the median
   end-to-end time per stage (decoded photo -> written results; every stage of the result's timings_s,
   the scene's ground with the photo's vanishing point included, and the time in none) on a full-body photo at 1080p,
   against a baseline in the same run (the fit from a rest-pose start instead of the analytic one,
   and the fit without body shape).
2. Fit quality: mean / max 2D reprojection error of the visible keypoints (confidence > 0.5) on
   lunge.jpg and on frames of the calibrated 4-camera set, with the camera's true focal length.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

T_PROCESS = time.perf_counter()

import numpy as np  # noqa: E402

from bench.common import DATA_DIR, machine_description, markdown_table  # noqa: E402

DATA = DATA_DIR
LUNGE = DATA / "images" / "lunge.jpg"
MULTIVIEW = DATA / "multiview" / "pose2sim_single"


def to_1080p(rgb_hw3: np.ndarray) -> np.ndarray:
    """Resize so the long side is 1920 px (a 1080p frame's long side), keeping the aspect ratio."""
    import cv2

    h, w = rgb_hw3.shape[:2]
    s = 1920 / max(h, w)
    return cv2.resize(rgb_hw3, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)


def visible_errors(result, conf_min: float = 0.5) -> np.ndarray:  # noqa: ANN001
    person = result.people[0]
    kp = person.detection.keypoints2d
    conf = dict(zip(kp.names, kp.conf_k, strict=True))
    return np.array([e for n, e in person.body.per_keypoint_px.items() if conf.get(n, 0) > conf_min])


def speed_table(repeats: int, t_import: float, native: bool = False) -> list[list[str]]:
    from pipelines.hmr.fit import FitOptions
    from pipelines.io.image_io import LoadedImage, load_image
    from pipelines.modes.image import ImagePipeline
    from viz.outputs import write_outputs

    t0 = time.perf_counter()
    pipe = ImagePipeline()
    pipe.warmup()
    t_models = time.perf_counter() - t0
    rgb = load_image(LUNGE).rgb_hw3 if native else to_1080p(load_image(LUNGE).rgb_hw3)
    image = LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])
    t0 = time.perf_counter()
    pipe.run(image)
    t_first = time.perf_counter() - t0
    rows = []
    stage_times: dict[str, list[float]] = {}
    totals, errs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):
            t0 = time.perf_counter()
            res = pipe.run(image)
            t1 = time.perf_counter()
            write_outputs(Path(tmp) / f"out{i}", res, write_rrd=True)
            t2 = time.perf_counter()
            totals.append(t2 - t0)
            for k, v in res.timings_s.items():
                stage_times.setdefault(k, []).append(v)
            stage_times.setdefault("write", []).append(t2 - t1)
            errs.append(visible_errors(res).mean())
    med = {k: statistics.median(v) for k, v in stage_times.items()}
    rows.append(["end-to-end (decoded photo -> written results)", f"{statistics.median(totals) * 1000:.0f} ms",
                 f"{np.mean(errs):.2f} px"])  # fmt: skip
    # Every timed stage (the scene: the ground with the photo's vanishing point), so that they sum to the whole
    stages = [k for k in ("camera", "detect", "keypoints", "prompts", "fit", "depth", "scene", "write") if k in med]
    stages += [k for k in med if k not in stages]
    for k in stages:
        rows.append([f"  stage: {k}", f"{med[k] * 1000:.0f} ms", ""])
    rest = statistics.median(t - sum(stage_times[k][i] for k in stages) for i, t in enumerate(totals))
    rows.append(["  not in a stage", f"{rest * 1000:.0f} ms", ""])
    # Fit alone (pose + shape + focal), and baselines in the same run
    person = res.people[0].detection
    hmr = pipe.hmr
    variants = {
        "fit alone: pose + shape + focal (analytic init)": {},
        "baseline: fit without body shape": {"fit_shape": False, "shape_iters": 0},
        "baseline: fit, 10 more pose iterations": {"pose_iters": 16},
    }
    for label, over in variants.items():
        times, e = [], []
        for _ in range(repeats):
            saved = hmr.options
            hmr.options = FitOptions(**{**saved.__dict__, **over})
            t0 = time.perf_counter()
            fit = hmr.fit(res.camera, person, {}, estimate_focal=True, focal_prior_px=res.camera.focal_px)
            times.append(time.perf_counter() - t0)
            hmr.options = saved
            e.append(fit.body.reprojection_px_mean)
        rows.append([label, f"{statistics.median(times) * 1000:.0f} ms", f"{np.mean(e):.2f} px"])
    rows.append(["cold: process start -> models loaded (Anny cache built)", f"{t_import + t_models:.2f} s", ""])
    rows.append(["cold: first photo after loading", f"{t_first:.2f} s", ""])
    return rows


def quality_table(frames: list[int]) -> list[list[str]]:
    from pipelines.io.image_io import load_image
    from pipelines.modes.image import ImagePipeline
    from pipelines.multiview.calibration import load_qualisys_calibration
    from pipelines.multiview.video import read_frames

    pipe = ImagePipeline()
    rows = []
    cases = [("lunge.jpg (801x1200, focal estimated)", load_image(LUNGE).rgb_hw3, None)]
    cams = load_qualisys_calibration(MULTIVIEW / "Calib.qca.txt")
    for cam in cams:
        video = MULTIVIEW / f"{cam.name}.mp4"
        for idx, rgb in read_frames(video, frames):
            cases.append((f"{cam.name} frame {idx} (true focal)", rgb, cam.camera.focal_px))
    all_mean = []
    for label, rgb, focal in cases:
        res = pipe.run_array(rgb, focal_px=focal)
        if not res.people or res.people[0].body is None:
            rows.append([label, "no person", "", "", ""])
            continue
        e = visible_errors(res)
        b = res.people[0].body
        worst = max(((n, v) for n, v in b.per_keypoint_px.items()), key=lambda kv: kv[1])
        all_mean.append(e.mean())
        rows.append([label, f"{e.mean():.2f}", f"{e.max():.1f}", f"{worst[0]} {worst[1]:.1f}", f"{b.height_m:.2f}"])
    rows.append(["**median of the means**", f"{np.median(all_mean):.2f}", "", "", ""])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--frames", default="0,50,99", help="frames of the 4-camera set for the quality table")
    parser.add_argument("--native", action="store_true",
                        help="the speed table on lunge.jpg as it is (801x1200, the issue's photo) instead of at 1080p")
    args = parser.parse_args()
    t_import = time.perf_counter() - T_PROCESS
    print(f"Machine: {machine_description()}\n")
    size = "at its own 801x1200" if args.native else "resized to 1280x1920"
    print(f"## Speed (lunge.jpg {size}, one person, models warm; medians)\n")
    print(markdown_table(["what", "time", "mean 2D error"], speed_table(args.repeats, t_import, args.native)))
    print("\n## Fit quality (visible keypoints, confidence > 0.5)\n")
    frames = [int(f) for f in args.frames.split(",")]
    print(markdown_table(["image", "mean px", "max px", "worst keypoint (px)", "height m"], quality_table(frames)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
