"""Fit stage CPU on a crowded photo and on one person, warm, fresh session each run (detection included).

    python -m bench.bench_fit_speed [--repeats 3] [--tag NAME]

The collage of bench.bench_crowds (13 people) and lunge.jpg at 1280x1920. Each run is timed twice: once
with the wall clock, once with the pipeline's stage timer read on the main thread's CPU clock (the fit runs
on the main thread only), which a loaded machine does not inflate. To compare two trees, run this module
with PYTHONPATH set to each in turn, alternated (README, Finding everyone: the batched fit).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import types
from collections.abc import Callable
from typing import Any


def main(argv: list[str] | None = None) -> None:
    import cv2

    from bench.bench_crowds import ten_person_collage
    from bench.common import DATA_DIR
    from pipelines.io.image_io import LoadedImage, load_image
    from pipelines.modes.image import ImagePipeline

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tag", default="this tree")
    args = parser.parse_args(argv)
    lunge = cv2.resize(load_image(DATA_DIR / "images" / "lunge.jpg").rgb_hw3, (1280, 1920))
    pipe = ImagePipeline()
    pipe.warmup()
    for name, rgb in (("collage", ten_person_collage()), ("lunge 1280x1920", lunge)):
        image = LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])
        rows, frame = timed_runs(pipe, image, args.repeats, time.thread_time)
        rows = [{"wall_s": r["wall"], "cpu_s": r["cpu"], "fit_wall_s": r["fit_wall"], "fit_cpu_s": r["fit_cpu"]}
                for r in rows]  # fmt: skip
        med = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
        med |= {"bodies": sum(p.body is not None for p in frame.people), "load": round(os.getloadavg()[0], 1)}
        print(args.tag, name, json.dumps(med), flush=True)


def timed_runs(pipe: Any, image: Any, repeats: int, cpu_clock: Callable[[], float]) -> tuple[list[dict], Any]:
    """After one warm-up run, `repeats` pairs of runs of `image`, each in a fresh session: one on the wall clock
    (its whole wall and process CPU, and each stage's wall: "<stage>_wall"), one with the pipeline's stage timer
    read on `cpu_clock` ("<stage>_cpu"; time.thread_time: the main thread's, time.process_time: all threads').
    Seconds; the rows and the last run's frame."""
    import pipelines.modes.image as image_mode
    from pipelines.modes.image import ImageSession

    pipe.run(image, session=ImageSession())
    stage_clock = types.SimpleNamespace(perf_counter=cpu_clock)
    rows = []
    try:
        for _ in range(repeats):
            image_mode.time = time
            c, t = time.process_time(), time.perf_counter()
            frame = pipe.run(image, session=ImageSession())
            row = {"wall": time.perf_counter() - t, "cpu": time.process_time() - c}
            row |= {f"{k}_wall": v for k, v in frame.timings_s.items()}
            image_mode.time = stage_clock
            frame = pipe.run(image, session=ImageSession())
            rows.append(row | {f"{k}_cpu": v for k, v in frame.timings_s.items()})
    finally:
        image_mode.time = time
    return rows, frame

if __name__ == "__main__":
    main()
