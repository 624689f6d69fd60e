"""Video mode: throughput, smoothness, recording size, and tracking on real clips.

    .venv/bin/python -m bench.bench_video [--stride N] [--max-side PX] [--frames N]

- Throughput: decoded frame -> fitted, logged to the .rrd, outputs written (models warm), on
  pose2sim_single/cam01.mp4 (1080x1920, 60 fps, one person), frames/s end to end.
- Smoothness: mean joint acceleration (m/s^2, 23 output joints, camera frame) with and without the
  1-euro smoothing, on the same frames.
- The .rrd's size per minute of video, with the video asset itself (the source file) counted apart.
- Tracking on pose2sim_multi/cam01.mp4 (two people close together, one occluding the other): tracks
  created, and a proxy for identity switches (there is no ground-truth id): frames where a track's
  box centre jumps by more than half its box diagonal from its previous frame.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from bench.common import DATA_DIR, machine_description, markdown_table

BASELINE = {"detector": "image", "threaded": False, "mesh_hz": float("inf")}
"""The first slice's path: a full MediaPipe detection (with masks) per frame, one stage after the other
(only decoding in a thread), the full mesh on every frame."""


def rss_mb() -> float:
    """The process's resident memory now (MB; Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


class PeakRss:
    """The process's peak resident memory (MB) while the block runs, sampled every 20 ms."""

    def __enter__(self) -> PeakRss:
        import threading

        self.peak_mb, self._stop = 0.0, threading.Event()
        self.start_mb = rss_mb()

        def sample() -> None:
            while not self._stop.wait(0.02):
                self.peak_mb = max(self.peak_mb, rss_mb())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def looped(frames_factory, n_frames: int, fps: float):  # noqa: ANN001, ANN201
    """The clip played again and again up to n_frames frames (indices and times keep increasing)."""
    from dataclasses import replace

    done = 0
    while done < n_frames:
        offset = done
        for f in frames_factory():
            if done >= n_frames:
                return
            yield replace(f, index=offset + f.index, time_s=(offset + f.index) / fps)
            done += 1


def run_clip(video: Path, stride: int, max_side: int, n_frames: int | None, smooth: bool, pipeline_image,  # noqa: ANN001, ANN201
             options: dict | None = None, loop_to: int | None = None):  # fmt: skip
    from pipelines.io.video_io import DecodeReport, probe, read_video
    from pipelines.modes.video import VideoOptions, VideoPipeline
    from viz.video_outputs import VideoOutputs

    info = probe(video)
    end_s = None if n_frames is None else n_frames / info.fps
    out_dir = Path(tempfile.mkdtemp(prefix="bench_video_")) / "out"
    vp = VideoPipeline(pipeline_image, VideoOptions(smooth=smooth, rate_hz=info.fps / stride, **(options or {})))
    report = DecodeReport()
    t0 = time.perf_counter()
    outputs = VideoOutputs(out_dir, info, write_rrd=True)
    boxes: dict[int, list[tuple[int, np.ndarray]]] = {}

    def clip():  # noqa: ANN202
        return read_video(info, stride=stride, end_s=end_s, max_side=max_side, report=report)

    frames = clip() if loop_to is None else looped(clip, loop_to, info.fps)
    with PeakRss() as mem:
        for result in vp.run(frames):
            outputs.add(result)
            for p in result.people:
                boxes.setdefault(p.id, []).append((result.frame.index, np.asarray(p.detection.bbox_xyxy, dtype=float)))
        outputs.finish(vp, report.problems, {})
    wall = time.perf_counter() - t0
    n = len(vp.frames_done)
    rrd_bytes = (out_dir / "result.rrd").stat().st_size
    duration_s = (vp.frames_done[-1] - vp.frames_done[0] + stride) / info.fps if n else float("nan")
    shutil.rmtree(out_dir.parent, ignore_errors=True)
    return {"info": info, "vp": vp, "wall": wall, "n": n, "rrd_bytes": rrd_bytes, "duration_s": duration_s,
            "boxes": boxes, "peak_mb": mem.peak_mb, "start_mb": mem.start_mb}  # fmt: skip


def lag_ms(raw_fk3: np.ndarray, smooth_fk3: np.ndarray, dt_s: float, max_shift: int = 8) -> float:
    """The delay of the smoothed joints behind the raw ones: the shift (frames) that best aligns them,
    by least squares over every joint coordinate, in milliseconds."""
    errs = [float(np.mean((raw_fk3[: len(raw_fk3) - k] - smooth_fk3[k:]) ** 2)) for k in range(max_shift + 1)]
    return float(np.argmin(errs)) * dt_s * 1e3


def accuracy(track, data: Path, view: str = "cam01", every: int = 5) -> dict[str, float]:  # noqa: ANN001 - TrackHistory
    """The track's joints against BlazePose keypoints triangulated from all 4 calibrated views (as in
    bench.accuracy_multiview), on every `every`-th frame the track has: PA-MPJPE and root-relative
    MPJPE on the 12 body joints (mm), root distance error (% of the true distance)."""
    from bench.accuracy_multiview import CachedSegmenter, evaluate, observe
    from pipelines.body.anny_points import OUTPUT_JOINT_NAMES
    from pipelines.multiview.calibration import load_qualisys_calibration
    from pipelines.multiview.triangulate import triangulate_points

    cams = load_qualisys_calibration(data / "Calib.qca.txt")
    frames = [f for f in track.frames if f % every == 0]
    v = [c.name for c in cams].index(view)

    class FromTrack:  # a bench.accuracy_multiview Method whose predictions are the track's joints
        name, note, absolute, seconds = "video", "", True, []

    obs = observe(cams, frames, data, CachedSegmenter(), [])
    obs.preds["video"] = {
        (f, v): dict(zip(OUTPUT_JOINT_NAMES, track.joints_cam_fk3[track.frames.index(f)].astype(float), strict=True))
        for f in frames
    }  # fmt: skip
    refs = [triangulate_points(obs.xy_fvn2[i], obs.conf_fvn[i], cams, min_conf=0.1, outlier_px=50.0)
            for i in range(len(frames))]  # fmt: skip
    result = evaluate(FromTrack(), obs, refs, cams, frames)  # type: ignore[arg-type]
    return {k: result[k] for k in ("n_samples", "pa_mpjpe12_mm", "mpjpe_rr12_mm", "root_dist_abs_err_pct")}


def jumps(track_boxes: list[tuple[int, np.ndarray]]) -> int:
    count = 0
    for (_, a), (_, b) in zip(track_boxes[:-1], track_boxes[1:], strict=True):
        diag = float(np.hypot(a[2] - a[0], a[3] - a[1]))
        ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
        count += float(np.linalg.norm(ca - cb)) > 0.5 * diag
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--max-side", type=int, default=1280)
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames of each clip")
    parser.add_argument("--skip-multi", action="store_true")
    args = parser.parse_args()

    from app.lazy_modules import import_mediapipe_lazily
    from pipelines.modes.image import ImagePipeline
    from pipelines.modes.video import mean_joint_acceleration

    import_mediapipe_lazily()
    image = ImagePipeline()
    image.warmup()
    single = DATA_DIR / "multiview" / "pose2sim_single" / "cam01.mp4"
    run_clip(single, args.stride, args.max_side, 10, True, image)  # warm-up: first fits, Rerun's first use
    runs = {s: run_clip(single, args.stride, args.max_side, args.frames, s, image) for s in (False, True)}
    info = runs[True]["info"]
    scale = min(1.0, args.max_side / max(info.width, info.height))
    res = f"{round(info.width * scale)}x{round(info.height * scale)}"
    rows = []
    joints = {}
    for smooth, r in runs.items():
        tracks = [t for t in r["vp"].tracks.values() if t.frames]
        t0 = max(tracks, key=lambda t: len(t.frames))
        acc = mean_joint_acceleration(np.stack(t0.joints_cam_fk3), np.array(t0.times_s))
        joints[smooth] = np.stack(t0.joints_cam_fk3).astype(np.float64)
        per_min = r["rrd_bytes"] / r["duration_s"] * 60 / 1e6
        asset_per_min = single.stat().st_size / (info.frame_count / info.fps) * 60 / 1e6
        acc3d = accuracy(t0, single.parent)
        rows.append([f"cam01.mp4 {res}, stride {args.stride}, smoothing {'on' if smooth else 'off'}", r["n"],
                     f"{r['n'] / r['wall']:.1f}", f"{acc:.1f}", f"{np.mean(t0.reprojection_px_f):.2f}",
                     f"{acc3d['pa_mpjpe12_mm']:.1f} / {acc3d['mpjpe_rr12_mm']:.1f} / "
                     f"{acc3d['root_dist_abs_err_pct']:.1f} ({acc3d['n_samples']} frames)",
                     len(tracks), f"{per_min:.1f} ({asset_per_min:.1f} of it the video asset)"])  # fmt: skip
    print(f"Machine: {machine_description()}\n")
    print(markdown_table(["clip", "frames", "frames/s end to end", "mean joint accel. (m/s^2)",
                          "mean 2D error (px)", "vs 4-view triangulation: PA-MPJPE 12 / root-rel. MPJPE 12 (mm) / "
                          "root dist. err (%)", "tracks", ".rrd MB per minute of video"], rows))  # fmt: skip
    if len(joints[True]) == len(joints[False]):
        lag = lag_ms(joints[False], joints[True], args.stride / info.fps)
        print(f"\nLag of the smoothed joints behind the unsmoothed ones (best-aligning shift): {lag:.0f} ms")
    if args.skip_multi:
        return
    multi = DATA_DIR / "multiview" / "pose2sim_multi" / "cam01.mp4"
    r = run_clip(multi, args.stride, args.max_side, args.frames, True, image)
    long_tracks = [k for k, v in r["boxes"].items() if len(v) >= 10]
    n_jumps = sum(jumps(v) for v in r["boxes"].values())
    print()
    print(markdown_table(["clip", "frames", "frames/s end to end", "tracks created", "tracks >= 10 frames",
                          "box jumps (switch proxy)"],
                         [[f"pose2sim_multi cam01.mp4 {res}, stride {args.stride}", r["n"], f"{r['n'] / r['wall']:.1f}",
                           len(r["boxes"]), len(long_tracks), n_jumps]]))  # fmt: skip


if __name__ == "__main__":
    main()
