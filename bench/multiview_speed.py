"""One end-to-end multi-view run as the CLI does it (keypoints, fusion, bodies, every output file), timed per
stage; prints one JSON line. Run by bench.bench_multiview in a fresh process per run, also on another
checkout's code (the baseline: `cd OTHER && PYTHONPATH=OTHER python THIS_FILE ...`), so it uses only the
API both have (run_multiview, write_outputs) and times the stages by wrapping their functions.

    python -m bench.multiview_speed --capture pose2sim_multi [--frames 100] [--no-body] [--profile FILE]

Stages (wall seconds): keypoints (decoding and the per-view landmark tracking, the views two at a time),
association, left/right swaps, time offsets, bundle adjustment, triangulation (every robust triangulation
of the people: the plain one, the ones the bundle adjustment starts from, the final one), bodies, exports
(tracks, report, calibration, TRC, BVH, GLB, NPZ) and result.rrd; where the code writes the outputs that need only
the fusion while the bodies are fitted (viz.multiview_outputs.OutputStaging, run_multiview's on_fused), those are
"outputs beside bodies" (within the bodies' time) and exports / rrd are the rest, after the bodies.
`--profile FILE`: also a cProfile of the main thread (the per-view tracking runs in worker threads and is not
in it). Each stage is also timed in
CPU seconds of the whole process (every thread, and the body fit's forked processes): on a shared machine
the wall time is mostly waiting for a core, the CPU time is the work.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: as app/cli.py and app/main.py do

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

STAGES = {
    "association": ("pipelines.multiview.fuse", "associate"),
    "left/right": ("pipelines.multiview.fuse", "fix_left_right"),
    "time offsets": ("pipelines.multiview.fuse", "estimate_offsets"),
    "bundle adjustment": ("pipelines.multiview.fuse", "bundle_adjust"),
    "triangulation": ("pipelines.multiview.fuse", "_triangulate_people"),
    "rrd": ("viz.multiview_log", "save_multiview_rrd"),
}
"""Stage name -> (module, function) whose calls are timed (where the caller looks the name up)."""


def cpu_time() -> float:
    """CPU seconds of this process (every thread) and of its children that have ended (the body fit's forked
    processes, pipelines.multiview.body_fit: waited for inside the stage that started them)."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


def _timed(seconds: dict[str, float], cpu: dict[str, float], stage: str, fn):  # noqa: ANN001, ANN202
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        start, start_cpu = time.perf_counter(), cpu_time()
        try:
            return fn(*args, **kwargs)
        finally:
            seconds[stage] = seconds.get(stage, 0.0) + time.perf_counter() - start
            cpu[stage] = cpu.get(stage, 0.0) + cpu_time() - start_cpu

    return wrapper


def run_once(capture: str, frames: int, body: bool) -> dict:
    """Process the capture as `app.cli multiview` does and write every output into a temporary folder."""
    import importlib

    from bench.bench_multiview import _hip_jumps
    from bench.common import DATA_DIR
    from pipelines.modes.multiview import MultiviewOptions, run_multiview
    from pipelines.multiview.body_fit import BodyOptions

    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    for stage, (module, name) in {**STAGES, "keypoints": ("pipelines.modes.multiview", "track_views"),
                                  "bodies": ("pipelines.modes.multiview", "fit_bodies"),
                                  "outputs": ("viz.multiview_outputs", "write_outputs")}.items():  # fmt: skip
        mod = importlib.import_module(module)
        setattr(mod, name, _timed(seconds, cpu, stage, getattr(mod, name)))
    import viz.multiview_outputs as outputs

    staging = getattr(outputs, "OutputStaging", None)  # as the CLI does (a checkout without it: all at the end)
    if staging is not None:  # the outputs written beside the body fit (within its time), then the rest
        from viz.multiview_log import MultiviewRecording

        staging.fused = _timed(seconds, cpu, "outputs beside bodies", staging.fused)
        for name in ("log_bodies", "close"):
            setattr(MultiviewRecording, name, _timed(seconds, cpu, "rrd", getattr(MultiviewRecording, name)))
    try:  # as the CLI does (a checkout without it: nothing ahead)
        from app.cli_multiview import prepare_outputs_in_background
    except ImportError:
        prepare_outputs_in_background = None
    folder = DATA_DIR / "multiview" / capture
    videos = sorted(folder.glob("cam0*.mp4"))
    load0 = os.getloadavg()[0]
    start, start_cpu = time.perf_counter(), cpu_time()
    preparing = None if prepare_outputs_in_background is None else prepare_outputs_in_background(rrd=True)
    options = MultiviewOptions(n_frames=frames, body=BodyOptions(fit=body))
    with tempfile.TemporaryDirectory() as tmp:
        if staging is None:
            result = run_multiview(videos, folder / "Calib.qca.txt", options)
            if preparing is not None:
                preparing.join()
            outputs.write_outputs(result, Path(tmp) / "out")
        else:
            staged = staging(Path(tmp) / "out")

            def write_fused(fused) -> None:  # noqa: ANN001
                preparing.join()
                staged.fused(fused)

            result = run_multiview(videos, folder / "Calib.qca.txt", options, on_fused=write_fused)
            outputs.write_outputs(result, Path(tmp) / "out", staged=staged)
    wall, wall_cpu = time.perf_counter() - start, cpu_time() - start_cpu
    for d in (seconds, cpu):  # the outputs without the recording: the exports
        d["exports"] = d.pop("outputs", 0.0) - d.get("rrd", 0.0)
        d.setdefault("bodies", 0.0)
        d.setdefault("outputs beside bodies", 0.0)
    f = result.fusion
    jumps = [_hip_jumps(p.joints_fk3) for p in f.people]
    return {"capture": capture, "frames": f.n_frames, "body": body, "wall_s": wall, "seconds": seconds,
            "cpu_s": wall_cpu, "cpu_seconds": cpu,
            "fused_fps": f.n_frames / wall, "load": [load0, os.getloadavg()[0]],
            "median_reproj_px": f.median_reproj_px, "people_frames": [int(p.frames_ok.sum()) for p in f.people],
            "hip_jumps": jumps, "body_median_reproj_px": [b.median_reproj_px for b in result.bodies]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--capture", default="pose2sim_multi")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--no-body", action="store_true")
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile (main thread) here")
    args = parser.parse_args()
    if args.profile is None:
        out = run_once(args.capture, args.frames, not args.no_body)
    else:
        import cProfile

        with cProfile.Profile() as prof:
            out = run_once(args.capture, args.frames, not args.no_body)
        prof.dump_stats(str(args.profile))
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
