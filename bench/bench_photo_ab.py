"""One photo end to end, this checkout's image mode and writers against another checkout's, in one process.

    python -m bench.bench_photo_ab --baseline-code ../wt-base [--rounds 6] [--photos 3] [--image FILE]

The baseline's `pipelines/modes/image.py`, `viz/export.py` and `viz/outputs.py` are loaded from
`--baseline-code` under other module names (everything else, the models included, is this checkout's and
shared), and the two run alternately (the order swapped every round), each `--photos` warm photos a round:
decoded photo -> written results (result.rrd included) as `bench.bench_image` times it. On a shared
machine the rounds see the same load, which separate processes do not. Prints the medians per stage
(wall ms), the process CPU per photo (ms, every thread) and the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from bench.bench_image import LUNGE, to_1080p
from bench.common import machine_description, markdown_table

STAGES = ("camera", "detect", "keypoints", "prompts", "fit", "scene", "write")


def load_as(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline-code", type=Path, required=True, help="another checkout (e.g. main's)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--photos", type=int, default=3, help="warm photos per code and round")
    parser.add_argument("--image", type=Path, default=LUNGE, help="resized to a 1920 px long side")
    args = parser.parse_args()

    from app.lazy_modules import pyarrow_without_pandas

    pyarrow_without_pandas()  # as the command line does
    import viz.rerun_log  # noqa: F401 - imported ahead, as the command line does
    from pipelines.io.image_io import LoadedImage, load_image
    from pipelines.modes import image as this_image
    from viz import outputs as this_outputs

    base = args.baseline_code.resolve()
    base_image = load_as("baseline_image_mode", base / "pipelines" / "modes" / "image.py")
    base_export = load_as("baseline_export", base / "viz" / "export.py")
    base_outputs = load_as("baseline_outputs", base / "viz" / "outputs.py")
    base_outputs.export = base_export  # the baseline's writers render with the baseline's overlay
    models: dict = {}
    codes = {"baseline": (base_image.ImagePipeline(models=models), base_outputs),
             "this checkout": (this_image.ImagePipeline(models=models), this_outputs)}  # fmt: skip
    rgb = to_1080p(load_image(args.image).rgb_hw3)
    image = LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])
    times: dict[str, dict[str, list[float]]] = {name: {} for name in codes}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (pipe, outputs) in enumerate(codes.values()):  # warm-up: models, first write
            pipe.warmup()
            outputs.write_outputs(Path(tmp) / f"warm-{k}", pipe.run(image))
        for r in range(args.rounds):
            for name in list(codes) if r % 2 == 0 else list(codes)[::-1]:
                pipe, outputs = codes[name]
                for i in range(args.photos):
                    c0, t0 = time.process_time(), time.perf_counter()
                    res = pipe.run(image)
                    t1 = time.perf_counter()
                    outputs.write_outputs(Path(tmp) / f"{r}-{i}-{list(codes).index(name)}", res, write_rrd=True)
                    t2, c2 = time.perf_counter(), time.process_time()
                    d = times[name]
                    for k, v in res.timings_s.items():
                        d.setdefault(k, []).append(v * 1000)
                    d.setdefault("write", []).append((t2 - t1) * 1000)
                    d.setdefault("total", []).append((t2 - t0) * 1000)
                    d.setdefault("cpu", []).append((c2 - c0) * 1000)
            loads.append(os.getloadavg()[0])
    print(f"Machine: {machine_description()}; load average {min(loads):.1f}-{max(loads):.1f} during the rounds\n")
    print(f"{args.image.name} at 1920 px, {args.rounds} rounds x {args.photos} photos per code, medians (ms)\n")
    header = ["code", "end to end", "min", "process CPU", *STAGES]
    rows = []
    for name, d in times.items():
        med = {k: statistics.median(v) for k, v in d.items()}
        rows.append([name, f"{med['total']:.0f}", f"{min(d['total']):.0f}", f"{med['cpu']:.0f}",
                     *[f"{med[k]:.0f}" if k in med else "-" for k in STAGES]])  # fmt: skip
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
