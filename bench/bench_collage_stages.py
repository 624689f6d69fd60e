"""Per-stage CPU and wall of the 10-person photo (bench_crowds.ten_person_collage), warm, not written.

    python -m bench.bench_collage_stages [--repeats 3] [--tag NAME]

Each repeat runs the collage twice in a fresh session: once timed with the wall clock, once with the
pipeline's stage timer read on the process CPU clock (all threads: detect's landmark lanes, hands, the
scene's line-segment worker that runs beside the fit). Medians over the repeats, seconds. To compare two
trees, run it with PYTHONPATH (and the working directory) set to each in turn, alternated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time


def main(argv: list[str] | None = None) -> None:
    from bench.bench_crowds import ten_person_collage
    from bench.bench_fit_speed import timed_runs
    from pipelines.io.image_io import LoadedImage
    from pipelines.modes.image import ImagePipeline

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tag", default="this tree")
    args = parser.parse_args(argv)
    pipe = ImagePipeline()
    pipe.warmup()
    image = LoadedImage(rgb_hw3=ten_person_collage(), path=None, exif_focal_px=None, exif_note=None, warnings=[])
    rows, frame = timed_runs(pipe, image, args.repeats, time.process_time)
    med = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    med |= {"bodies": sum(p.body is not None for p in frame.people), "load": round(os.getloadavg()[0], 1)}
    print(args.tag, json.dumps(med), flush=True)


if __name__ == "__main__":
    main()
