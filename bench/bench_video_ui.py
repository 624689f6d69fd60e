"""The playground's Video tab against the CLI's `video` command: frames/s on the same clip, same models.

    .venv/bin/python -m bench.bench_video_ui [--clip PATH] [--stride N] [--max-side PX] [--repeats R]

Both run in this process on one warm ImagePipeline (models loaded once), after one short warm-up of
each, alternating CLI / UI so that the machine's load hits both alike; each row is the median of the
repeats. Wall time from the call to the outputs written (tracks.json, per-track files, result.rrd):

- CLI: `app.cli.main(["video", CLIP, "--out", DIR, "--quiet", ...])` (writes the .rrd file only).
- UI: `app.ui.video_handlers.on_video_run` as the page calls it: the same run, plus the recording
  streamed as rrd chunks to the viewer (one every STREAM_PERIOD_S), progress callbacks and status
  lines. The browser's own work (decoding chunks, rendering) is not counted: it runs elsewhere.
- UI, a chunk per frame (stream period 0): what streaming every frame would cost.

Default clip: ../shared/data/multiview/pose2sim_single/cam01.mp4 (1080x1920, 60 fps, 100 frames, one
person). No constant is tuned on it: this only times.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI and app.main set it

from bench.common import DATA_DIR, machine_description, markdown_table  # noqa: E402


def run_cli(clip: Path, stride: int, max_side: int, end_s: float | None) -> tuple[float, int]:
    from app.cli import main

    out = Path(tempfile.mkdtemp(prefix="bench_vui_")) / "out"
    extra = [] if end_s is None else ["--end", str(end_s)]
    t0 = time.perf_counter()
    code = main(["video", str(clip), "--out", str(out), "--quiet", "--stride", str(stride), "--max-side",
                 str(max_side), *extra])  # fmt: skip
    wall = time.perf_counter() - t0
    import json

    n = len(json.loads((out / "tracks.json").read_text())["frames"])
    shutil.rmtree(out.parent, ignore_errors=True)
    assert code == 0, f"the CLI exited with {code}"
    return wall, n


def run_ui(clip: Path, stride: int, max_side: int, end_s: float | None, engine, period_s: float  # noqa: ANN001
           ) -> tuple[float, int, int, int]:  # fmt: skip
    from app.ui import video_handlers as VH
    from app.ui.video_state import VideoSession

    state = VideoSession()
    chunks = sent = 0
    t0 = time.perf_counter()
    try:
        for u in VH.on_video_run(state, clip, stride=stride, end_s=end_s, max_side=max_side, engine=engine,
                                 progress=lambda *a, **k: None, stream_period_s=period_s):  # fmt: skip
            if u.chunk is not None:
                chunks += 1
                sent += len(u.chunk)
        wall = time.perf_counter() - t0
        assert state.last is not None
        return wall, state.last.frames_done, chunks, sent
    finally:
        state.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=DATA_DIR / "multiview" / "pose2sim_single" / "cam01.mp4")
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--max-side", type=int, default=1280)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from app import cli
    from app.ui import video_handlers as VH
    from app.ui.handlers import Engine

    image = cli._pipeline()  # the CLI's own (cached) pipeline; the UI's engine gets the same one
    image.warmup()
    engine = Engine(image)
    run_cli(args.clip, args.stride, args.max_side, 0.2)  # warm-up: first fits, Rerun's first use
    run_ui(args.clip, args.stride, args.max_side, 0.2, engine, VH.STREAM_PERIOD_S)
    load_before = os.getloadavg()[0]
    cli_runs, ui_runs, every_runs = [], [], []
    for _ in range(args.repeats):
        cli_runs.append(run_cli(args.clip, args.stride, args.max_side, None))
        ui_runs.append(run_ui(args.clip, args.stride, args.max_side, None, engine, VH.STREAM_PERIOD_S))
        every_runs.append(run_ui(args.clip, args.stride, args.max_side, None, engine, 0.0))
    load_after = os.getloadavg()[0]

    def fps(runs: list) -> float:
        return statistics.median(r[1] / r[0] for r in runs)

    def spread(runs: list) -> str:
        rates = [r[1] / r[0] for r in runs]
        return f"{statistics.median(rates):.1f} ({min(rates):.1f}-{max(rates):.1f})"

    base = fps(cli_runs)
    rows = [
        ["CLI `video` (writes result.rrd)", cli_runs[0][1], spread(cli_runs), "1.00", "–"],
        [f"Video tab handler (a chunk every {VH.STREAM_PERIOD_S:g} s)", ui_runs[0][1], spread(ui_runs),
         f"{fps(ui_runs) / base:.2f}", f"{ui_runs[0][2]} / {ui_runs[0][3] / 1e6:.1f} MB"],
        ["Video tab handler (a chunk every frame)", every_runs[0][1], spread(every_runs),
         f"{fps(every_runs) / base:.2f}", f"{every_runs[0][2]} / {every_runs[0][3] / 1e6:.1f} MB"],
    ]  # fmt: skip
    print(f"Machine: {machine_description()}; load average {load_before:.1f} before, {load_after:.1f} after")
    print(f"Clip: {args.clip.name}, stride {args.stride}, max side {args.max_side}; medians of {args.repeats} "
          "runs, interleaved\n")  # fmt: skip
    headers = ["run", "frames", "frames/s end to end, median (min-max)", "vs CLI (medians)",
               "chunks / bytes to the viewer"]  # fmt: skip
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
