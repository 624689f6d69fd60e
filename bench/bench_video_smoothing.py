"""Video smoothing: jitter against accuracy, the online 1-euro filter and the offline track smoother.

    .venv/bin/python -m bench.bench_video_smoothing [--frames 100] [--tune cam01] [--held-out cam02 cam03 cam04]

On pose2sim_single (one dancer, 4 calibrated 60 fps views): each view's clip through the video mode
with the online 1-euro filter on and off, every offline variant applied to the same fitted tracks
(pipelines.tracking.track_smoothing: a Savitzky-Golay filter on the fit's bone rotations and root,
the joints posed again), then per variant the mean joint acceleration (m/s^2, 23 output joints,
camera frame) and the accuracy against BlazePose keypoints triangulated from the 4 views on every
`--every`-th frame (bench.bench_video.accuracy: PA-MPJPE and root-relative MPJPE of 12 body joints,
mm). The grid of window / order is scored on `--tune` only; `--held-out` views and pose2sim_multi
(jitter only: two dancers, no per-person reference) report the video mode's setting
(TrackSmoothingOptions, chosen from this grid on cam01). The triangulated
reference is cached in the temporary folder (it costs ~1 s a view a frame).
"""

from __future__ import annotations

import argparse
import copy
import os
import pickle
import tempfile
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from bench.common import DATA_DIR, machine_description, markdown_table

GRID = [(w, p) for p in (2, 3) for w in (0.1, 0.15, 0.2, 0.3)]
"""(window seconds, polynomial order) scored on the tuning view."""


def _tracks(video: Path, frames: int, smooth: bool, image) -> list:  # noqa: ANN001 - ImagePipeline
    from bench.bench_video import run_clip

    r = run_clip(video, 1, 1280, frames, True, image, {"track_smoothing": None, "online_smooth": smooth})
    return [t for t in r["vp"].tracks.values() if len(t.frames) >= 10]


def _smoothed(track, hmr, window_s: float | None, polyorder: int):  # noqa: ANN001, ANN202
    from pipelines.modes.video import smooth_track
    from pipelines.tracking.track_smoothing import TrackSmoothingOptions

    if window_s is None:
        return track
    out = copy.deepcopy(track)
    smooth_track(out, hmr, TrackSmoothingOptions(window_s=window_s, polyorder=polyorder))
    return out


def _accuracy(track, data: Path, view: str, every: int, cache: Path) -> dict:  # noqa: ANN001
    import bench.bench_video as bv

    if cache.exists() and not bv._REFERENCES:
        bv._REFERENCES.update(pickle.loads(cache.read_bytes()))
    n_before = len(bv._REFERENCES)
    a = bv.accuracy(track, data, view, every)
    if len(bv._REFERENCES) != n_before:
        cache.write_bytes(pickle.dumps(bv._REFERENCES))
    return a


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--every", type=int, default=4, help="reference frames: every N-th")
    parser.add_argument("--tune", default="cam01")
    parser.add_argument("--held-out", nargs="*", default=["cam02", "cam03", "cam04"])
    parser.add_argument("--window-s", type=float, default=None,
                        help="report this window (default: the video mode's, TrackSmoothingOptions)")
    parser.add_argument("--polyorder", type=int, default=None)
    parser.add_argument("--skip-multi", action="store_true")
    args = parser.parse_args()

    from app.lazy_modules import import_mediapipe_lazily
    from pipelines.modes.image import ImagePipeline
    from pipelines.modes.video import mean_joint_acceleration

    import_mediapipe_lazily()
    image = ImagePipeline()
    image.warmup()
    hmr = image.hmr
    data = DATA_DIR / "multiview" / "pose2sim_single"
    cache = Path(tempfile.gettempdir()) / f"bench_video_smoothing_ref_{args.frames}_{args.every}.pkl"
    load0 = os.getloadavg()[0]

    def score(track, view: str) -> tuple[float, float, float]:  # noqa: ANN001
        acc = mean_joint_acceleration(np.stack(track.joints_cam_fk3), np.asarray(track.times_s))
        a = _accuracy(track, data, view, args.every, cache)
        return acc, a["pa_mpjpe12_mm"], a["mpjpe_rr12_mm"]

    def fmt(s: tuple[float, float, float]) -> str:
        return f"{s[0]:.1f} / {s[1]:.1f} / {s[2]:.1f}"

    # Tuning view: the grid, on raw and 1-euro inputs.
    raw = {v: max(_tracks(data / f"{v}.mp4", args.frames, False, image), key=lambda t: len(t.frames))
           for v in [args.tune, *args.held_out]}  # fmt: skip
    euro = {v: max(_tracks(data / f"{v}.mp4", args.frames, True, image), key=lambda t: len(t.frames))
            for v in [args.tune, *args.held_out]}  # fmt: skip
    # Re-posing the unfiltered motion gives the fitted joints back (one motion): a check of the re-posing.
    from pipelines.modes.video import posed_joints

    t0 = raw[args.tune]
    check = posed_joints(t0, hmr, np.stack(t0.bone_rot_cam_fj33), np.stack(t0.root_pos_cam_f3))
    repose_mm = 1e3 * float(np.abs(check - np.stack(t0.joints_cam_fk3)).max())
    rows, tuned = [], {}
    base = {name: score(src[args.tune], args.tune) for name, src in (("none", raw), ("1-euro", euro))}
    rows.append(["none (per-frame fits)", "–", fmt(base["none"])])
    rows.append(["1-euro online (previous release; --online-smooth)", "–", fmt(base["1-euro"])])
    for inputs, src in (("none", raw), ("1-euro", euro)):
        for w, p in GRID:
            s = score(_smoothed(src[args.tune], hmr, w, p), args.tune)
            tuned[(inputs, w, p)] = s
            rows.append([f"{inputs} + offline SG", f"{w:.2f} s / {p}", fmt(s)])
    # The pick: the lowest jitter whose PA-MPJPE and root-relative MPJPE are no worse than the fits'.
    ok = {k: s for k, s in tuned.items() if s[1] <= base["none"][1] and s[2] <= base["none"][2]}
    best = min(ok or tuned, key=lambda k: (ok or tuned)[k][0])
    from pipelines.tracking.track_smoothing import TrackSmoothingOptions

    default = TrackSmoothingOptions()
    pick = ("none", args.window_s or default.window_s, args.polyorder or default.polyorder)
    load1 = os.getloadavg()[0]
    print(f"Machine: {machine_description()}; load average {load0:.1f} before, {load1:.1f} after\n")
    print(f"Re-posing check: the unfiltered motion re-posed differs from the fitted joints by {repose_mm:.3f} mm\n")
    print(f"Tuning: pose2sim_single/{args.tune}.mp4, {args.frames} frames (60 fps), accuracy on every "
          f"{args.every}th frame\n")  # fmt: skip
    print(markdown_table(["smoothing", "window / order", "accel. m/s^2 / PA-MPJPE 12 mm / root-rel. MPJPE 12 mm"],
                         rows))  # fmt: skip
    print(f"\nLowest jitter with accuracy no worse than the fits': {best[0]} inputs + SG {best[1]:.2f} s / order "
          f"{best[2]}; reported on the held-out data: {pick[0]} inputs + SG {pick[1]:.2f} s / order {pick[2]}\n")
    hrows = []
    for v in args.held_out:
        chosen = _smoothed((raw if pick[0] == "none" else euro)[v], hmr, pick[1], pick[2])
        hrows.append([v, fmt(score(raw[v], v)), fmt(score(euro[v], v)), fmt(score(chosen, v))])
    print(markdown_table(["held-out view", "none", "1-euro online", f"chosen ({pick[0]} + SG {pick[1]:.2f} s / "
                          f"{pick[2]})"], hrows))  # fmt: skip
    if args.skip_multi:
        return
    multi = DATA_DIR / "multiview" / "pose2sim_multi" / "cam01.mp4"
    mrows = []
    for name, smooth, offline in (("none", False, False), ("1-euro online", True, False),
                                  ("chosen", pick[0] == "1-euro", True)):  # fmt: skip
        tracks = _tracks(multi, args.frames, smooth, image)
        accs = []
        for t in sorted(tracks, key=lambda t: t.id):
            t = _smoothed(t, hmr, pick[1], pick[2]) if offline else t
            accs.append(mean_joint_acceleration(np.stack(t.joints_cam_fk3), np.asarray(t.times_s)))
        mrows.append([name, " ; ".join(f"{a:.1f}" for a in accs)])
    print()
    print(markdown_table(["pose2sim_multi cam01 (held out)", "accel. m/s^2 per track"], mrows))


if __name__ == "__main__":
    main()
