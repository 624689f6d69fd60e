"""Peak memory of the video mode against the video's length: one fresh process per run.

`python -m bench.bench_video_memory [--frames 100 1000]` runs pose2sim_single/cam01.mp4 (720x1280, looped
to the requested number of frames) through the video pipeline and its outputs, with and without the
`.rrd` recording, each in its own process (peaks measured in one process add up across runs), and prints
the resident memory at start (models warm), the peak while the frames stream, and the peak while the
outputs (tracks.json, npz, GLB, BVH, rrd) are written.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.common import DATA_DIR, machine_description, markdown_table

VIDEO = DATA_DIR / "multiview" / "pose2sim_single" / "cam01.mp4"


def one_run(n_frames: int, rrd: bool) -> dict:
    from bench.bench_video import PeakRss, looped, rss_mb
    from pipelines.io.video_io import DecodeReport, probe, read_video
    from pipelines.modes.image import ImagePipeline
    from pipelines.modes.video import VideoOptions, VideoPipeline
    from viz.video_outputs import VideoOutputs

    info = probe(VIDEO)
    image = ImagePipeline()
    image.warmup()
    video = VideoPipeline(image, VideoOptions(rate_hz=info.fps))
    outputs = VideoOutputs(Path(tempfile.mkdtemp(prefix="bench_mem_")) / "out", info, write_rrd=rrd)
    start = rss_mb()
    with PeakRss() as streaming:
        for result in video.run(looped(lambda: read_video(info, max_side=1280, report=DecodeReport(),
                                                          keep_source=video.wants_source_frames),
                                       n_frames, info.fps)):  # fmt: skip
            outputs.add(result)
    with PeakRss() as writing:
        outputs.finish(video, [], {})
    return {"frames": len(video.frames_done), "rrd": rrd, "start_mb": start, "stream_peak_mb": streaming.peak_mb,
            "write_peak_mb": writing.peak_mb}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--one", nargs=2, metavar=("FRAMES", "RRD"), help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one_run(int(args.one[0]), args.one[1] == "1")))
        return
    rows = []
    for rrd in (True, False):
        for n in args.frames:
            child = subprocess.run([sys.executable, "-m", "bench.bench_video_memory", "--one", str(n), str(int(rrd))],
                                   capture_output=True, text=True, check=True,
                                   env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})  # fmt: skip
            r = json.loads(child.stdout.strip().splitlines()[-1])
            rows.append(["with .rrd" if rrd else "without .rrd", r["frames"], f"{r['start_mb']:.0f}",
                         f"{r['stream_peak_mb']:.0f}", f"{r['write_peak_mb']:.0f}"])  # fmt: skip
    print(machine_description())
    print()
    print(markdown_table(["run", "frames (cam01 looped)", "RSS at start, models warm (MB)", "peak while streaming (MB)",
                          "peak while writing the outputs (MB)"], rows))  # fmt: skip


if __name__ == "__main__":
    main()
