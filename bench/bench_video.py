"""Video mode: throughput, smoothness, recording size, and tracking on real clips.

    .venv/bin/python -m bench.bench_video [--stride N] [--max-side PX] [--frames N]

- Throughput: decoded frame -> fitted, logged to the .rrd, outputs written (models warm), on
  pose2sim_single/cam01.mp4 (1080x1920, 60 fps, one person), frames/s end to end.
- Smoothness: mean joint acceleration (m/s^2, 23 output joints, camera frame) with and without the
  1-euro smoothing, on the same frames.
- The .rrd's size per minute of video, with the video asset itself (the source file) counted apart.
- Tracking on pose2sim_multi/cam01.mp4 (two people close together, one occluding the other): tracks
  created, and proxies for identity switches (there is no ground-truth id): frames where a track's
  box centre jumps by more than half its box diagonal from its previous frame, or its fitted root by
  more than 0.3 m.
- Against the previous path measured in the same run (BASELINE: the first slice's per-frame detection,
  stages one after the other): the machine is shared, so only the ratio is comparable across runs.
- Memory: peak resident memory for 100 and for 1000 frames (the clip looped).
- Ground: the fitted ground's normal against the rig's calibrated floor, the camera height, and the
  foot slide while a foot touches the ground, before and after pinning (pipelines.tracking.feet).
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

BASELINE = {"detector": "image", "threaded": False, "mesh_hz": float("inf"), "online_smooth": True,
            "track_smoothing": None}
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
        return read_video(info, stride=stride, end_s=end_s, max_side=max_side, report=report,
                          keep_source=vp.wants_source_frames)

    frames = clip() if loop_to is None else looped(clip, loop_to, info.fps)
    with PeakRss() as mem:
        for result in vp.run(frames):
            outputs.add(result)
            for p in result.people:
                boxes.setdefault(p.id, []).append((result.frame.index, np.asarray(p.detection.bbox_xyxy, dtype=float)))
        outputs.finish(vp, report.problems, {})
    wall = time.perf_counter() - t0
    n = len(vp.frames_done)
    rrd_bytes = (out_dir / "result.rrd").stat().st_size if (out_dir / "result.rrd").exists() else 0
    duration_s = (vp.frames_done[-1] - vp.frames_done[0] + stride) / info.fps if n else float("nan")
    shutil.rmtree(out_dir.parent, ignore_errors=True)
    return {"info": info, "vp": vp, "wall": wall, "n": n, "rrd_bytes": rrd_bytes, "duration_s": duration_s,
            "boxes": boxes, "peak_mb": mem.peak_mb, "start_mb": mem.start_mb, "outputs": outputs}  # fmt: skip


def lag_ms(raw_fk3: np.ndarray, smooth_fk3: np.ndarray, dt_s: float, max_shift: int = 8) -> float:
    """The delay of the smoothed joints behind the raw ones: the shift (frames) that best aligns them,
    by least squares over every joint coordinate, in milliseconds."""
    errs = [float(np.mean((raw_fk3[: len(raw_fk3) - k] - smooth_fk3[k:]) ** 2)) for k in range(max_shift + 1)]
    return float(np.argmin(errs)) * dt_s * 1e3


def _largest_first_segmenter():  # noqa: ANN202 - a bench.accuracy_multiview CachedSegmenter
    from bench.accuracy_multiview import CachedSegmenter

    class LargestFirstSegmenter(CachedSegmenter):
        """The reference's detections with the largest person first. bench.accuracy_multiview
        triangulates each view's first person, the best-scored; the tiled detector also finds the
        bystander at the edge of these views, and scored him first on frames 70 and 90 of cam01 (and one
        frame of cam02 and cam03): the reference then mixed the two people (PA-MPJPE of the same track
        89.9 mm against it, 71.4 mm against a reference of the dancer alone)."""

        def detect(self, rgb_hw3):  # noqa: ANN001, ANN202
            people = super().detect(rgb_hw3)
            area = lambda p: float((p.bbox_xyxy[2] - p.bbox_xyxy[0]) * (p.bbox_xyxy[3] - p.bbox_xyxy[1]))  # noqa: E731
            return sorted(people, key=lambda p: -area(p))

    return LargestFirstSegmenter()


_REFERENCES: dict[tuple, tuple] = {}
"""The triangulated reference per (clip folder, frames): observed once per bench run."""


def accuracy(track, data: Path, view: str = "cam01", every: int = 5) -> dict[str, float]:  # noqa: ANN001 - TrackHistory
    """The track's joints against BlazePose keypoints triangulated from all 4 calibrated views (as in
    bench.accuracy_multiview), on every `every`-th frame the track has: PA-MPJPE and root-relative
    MPJPE on the 12 body joints (mm), root distance error (% of the true distance)."""
    from bench.accuracy_multiview import evaluate, observe
    from pipelines.body.anny_points import OUTPUT_JOINT_NAMES
    from pipelines.multiview.calibration import load_qualisys_calibration
    from pipelines.multiview.triangulate import triangulate_points

    cams = load_qualisys_calibration(data / "Calib.qca.txt")
    frames = [f for f in track.frames if f % every == 0]
    v = [c.name for c in cams].index(view)
    key = (str(data), tuple(frames))
    if key not in _REFERENCES:  # the same 4-view reference for every run of the bench (~1 s a view a frame)
        obs = observe(cams, frames, data, _largest_first_segmenter(), [])
        refs = [triangulate_points(obs.xy_fvn2[i], obs.conf_fvn[i], cams, min_conf=0.1, outlier_px=50.0)
                for i in range(len(frames))]  # fmt: skip
        _REFERENCES[key] = (obs, refs)
    obs, refs = _REFERENCES[key]

    class FromTrack:  # a bench.accuracy_multiview Method whose predictions are the track's joints
        name, note, absolute, seconds = "video", "", True, []

    obs.preds["video"] = {
        (f, v): dict(zip(OUTPUT_JOINT_NAMES, track.joints_cam_fk3[track.frames.index(f)].astype(float), strict=True))
        for f in frames
    }  # fmt: skip
    result = evaluate(FromTrack(), obs, refs, cams, frames)  # type: ignore[arg-type]
    return {k: result[k] for k in ("n_samples", "pa_mpjpe12_mm", "mpjpe_rr12_mm", "root_dist_abs_err_pct")}


def jumps(track_boxes: list[tuple[int, np.ndarray]]) -> int:
    count = 0
    for (_, a), (_, b) in zip(track_boxes[:-1], track_boxes[1:], strict=True):
        diag = float(np.hypot(a[2] - a[0], a[3] - a[1]))
        ca, cb = (a[:2] + a[2:]) / 2, (b[:2] + b[2:]) / 2
        count += float(np.linalg.norm(ca - cb)) > 0.5 * diag
    return count


def ground_vs_calibration(ground, data: Path) -> tuple[float, float, float]:  # noqa: ANN001 - GroundPlane
    """The fitted ground against the rig's calibrated floor (its world is z up, floor at z = 0): the
    angle between the normals (degrees), the fitted and the true camera height (metres)."""
    from pipelines.multiview.calibration import load_qualisys_calibration

    cam = load_qualisys_calibration(data / "Calib.qca.txt")[0]
    up_cam = cam.cam_T_world_44[:3, :3] @ np.array([0.0, 0.0, 1.0])
    angle = float(np.degrees(np.arccos(np.clip(up_cam @ ground.normal_cam, -1.0, 1.0))))
    return angle, ground.camera_height_m, float(cam.centre_world_3[2])


def root_jumps(track, max_step_m: float = 0.3) -> int:  # noqa: ANN001 - TrackHistory
    """Frames where a track's fitted root moves more than `max_step_m` from its previous frame (an
    identity switch moves it to the other person)."""
    r = np.stack(track.root_pos_cam_f3)
    return int((np.linalg.norm(np.diff(r, axis=0), axis=1) > max_step_m).sum()) if len(r) > 1 else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--max-side", type=int, default=1280)
    parser.add_argument("--frames", type=int, default=None, help="only the first N frames of each clip")
    parser.add_argument("--long", type=int, default=1000, help="frames of the memory run (the clip looped); 0 = none")
    parser.add_argument("--skip-multi", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()

    from app.lazy_modules import import_mediapipe_lazily
    from pipelines.modes.image import ImagePipeline
    from pipelines.modes.video import mean_joint_acceleration

    import_mediapipe_lazily()
    image = ImagePipeline()
    image.warmup()
    single = DATA_DIR / "multiview" / "pose2sim_single" / "cam01.mp4"
    run_clip(single, args.stride, args.max_side, 10, True, image)  # warm-up: first fits, Rerun's first use
    load0 = os.getloadavg()[0]
    variants = [("first-slice path (baseline)", BASELINE, True), ("this release", {}, True),
                ("this release, smoothing off", {}, False),
                ("this release, 1-euro online instead (previous)", {"online_smooth": True, "track_smoothing": None},
                 True)]  # fmt: skip
    runs = [(name, smooth, run_clip(single, args.stride, args.max_side, args.frames, smooth, image, opts))
            for name, opts, smooth in variants]  # fmt: skip
    info = runs[0][2]["info"]
    scale = min(1.0, args.max_side / max(info.width, info.height))
    res = f"{round(info.width * scale)}x{round(info.height * scale)}"
    base_fps = runs[0][2]["n"] / runs[0][2]["wall"]
    rows, joints = [], {}
    asset_per_min = single.stat().st_size / (info.frame_count / info.fps) * 60 / 1e6
    for name, _smooth, r in runs:
        tracks = [t for t in r["vp"].tracks.values() if t.frames]
        t0 = max(tracks, key=lambda t: len(t.frames))
        acc = mean_joint_acceleration(np.stack(t0.joints_cam_fk3), np.array(t0.times_s))
        joints[name] = np.stack(t0.joints_cam_fk3).astype(np.float64)
        fps = r["n"] / r["wall"]
        acc3d = "–" if args.skip_accuracy else (lambda a: f"{a['pa_mpjpe12_mm']:.1f} / {a['mpjpe_rr12_mm']:.1f} / "
                                                f"{a['root_dist_abs_err_pct']:.1f} ({a['n_samples']} frames)")(
                                                    accuracy(t0, single.parent))  # fmt: skip
        rows.append([name, r["n"], f"{fps:.1f}", f"x{fps / base_fps:.2f}", f"{acc:.1f}",
                     f"{np.mean(t0.reprojection_px_f):.2f}", acc3d, len(tracks),
                     f"{r['rrd_bytes'] / r['duration_s'] * 60 / 1e6:.1f}", f"{r['peak_mb']:.0f}"])  # fmt: skip
    load1 = os.getloadavg()[0]
    print(f"Machine: {machine_description()}; load average {load0:.1f} before, {load1:.1f} after\n")
    print(f"pose2sim_single/cam01.mp4 {res}, stride {args.stride}, one person (.rrd: the video asset itself is "
          f"{asset_per_min:.1f} MB per minute of it)\n")  # fmt: skip
    headers = ["path", "frames", "frames/s end to end", "vs baseline", "mean joint accel. (m/s^2)",
               "mean 2D error (px)", "vs 4-view triangulation: PA-MPJPE 12 / root-rel. MPJPE 12 (mm) / "
               "root dist. err (%)", "tracks", ".rrd MB per minute of video", "peak RSS (MB)"]  # fmt: skip
    print(markdown_table(headers, rows))
    a, b = joints["this release, smoothing off"], joints["this release"]
    if len(a) == len(b):
        print(f"\nLag of the smoothed joints behind the unsmoothed ones: {lag_ms(a, b, args.stride / info.fps):.0f} ms")
    new = runs[1][2]
    outputs = new["outputs"]
    if outputs.ground is not None:
        angle, h_fit, h_true = ground_vs_calibration(outputs.ground, single.parent)
        slide = next(iter(outputs.world.values()))["slide"]
        print(f"\nGround: {outputs.ground.source}, normal {angle:.1f} deg from the calibrated floor's, camera height "
              f"{h_fit:.2f} m (calibration {h_true:.2f} m); foot slide while touching: {slide['fitted']:.1f} cm/s "
              f"fitted, {slide['exported']:.1f} cm/s exported (feet pinned)")  # fmt: skip
    if args.long:
        mem_rows = []
        for n in (100, args.long):
            r = run_clip(single, args.stride, args.max_side, None, True, image, {}, loop_to=n)
            mem_rows.append([n, f"{r['n'] / r['wall']:.1f}", f"{r['start_mb']:.0f}", f"{r['peak_mb']:.0f}",
                             f"{r['peak_mb'] - r['start_mb']:.0f}"])  # fmt: skip
        print()
        print(markdown_table(["frames (cam01 looped)", "frames/s", "RSS before (MB)", "peak RSS (MB)",
                              "growth (MB)"], mem_rows))  # fmt: skip
    if args.skip_multi:
        return
    multi = DATA_DIR / "multiview" / "pose2sim_multi" / "cam01.mp4"
    mrows = []
    for name, opts in (("first-slice path (baseline)", BASELINE), ("this release", {})):
        r = run_clip(multi, args.stride, args.max_side, args.frames, True, image, opts)
        tracks = [t for t in r["vp"].tracks.values() if t.frames]
        long_tracks = [t for t in tracks if len(t.frames) >= 10]
        n_jumps = sum(jumps(v) for v in r["boxes"].values())
        row = [name, r["n"], f"{r['n'] / r['wall']:.1f}", len(tracks), len(long_tracks), n_jumps,
               sum(root_jumps(t) for t in tracks)]  # fmt: skip
        g = r["outputs"].ground
        if g is not None:
            angle, h_fit, h_true = ground_vs_calibration(g, multi.parent)
            slides = [w["slide"] for w in r["outputs"].world.values()]
            row += [f"{angle:.1f} / {h_fit:.2f} ({h_true:.2f})",
                    " ; ".join(f"{s['fitted']:.0f} -> {s['exported']:.0f}" for s in slides)]  # fmt: skip
        mrows.append(row)
    print()
    print(markdown_table(["pose2sim_multi cam01.mp4, " + res, "frames", "frames/s end to end", "tracks",
                          "tracks >= 10 frames", "box jumps", "root jumps > 0.3 m",
                          "ground: normal err (deg) / camera height m (calib.)", "foot slide cm/s per track "
                          "(fitted -> pinned)"], mrows))  # fmt: skip


if __name__ == "__main__":
    main()
