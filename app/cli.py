"""Command line: one photo in, metric 3D people out.

    python -m app.cli image PHOTO --out DIR [--point x,y[,1|0]]... [--box x0,y0,x1,y1]
                                  [--keypoint NAME=x,y]... [--focal-px F]

Coordinates are pixels of the upright photo (EXIF rotation applied), origin at the top-left corner.
3D outputs are in metres in the OpenCV camera frame (x right, y down, z forward).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from pipelines.errors import BadPromptError, UserFacingError
from pipelines.types import Prompts

EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 1


def _floats(text: str, n: tuple[int, ...], what: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in n or not all(np.isfinite(values)):
        expected = " or ".join(map(str, n))
        raise argparse.ArgumentTypeError(f"{what} {text!r}: expected {expected} comma-separated numbers")
    return values


def parse_point(text: str) -> list[float]:
    v = _floats(text, (2, 3), "point")
    label = v[2] if len(v) == 3 else 1.0
    if label not in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"point {text!r}: the label must be 1 (person) or 0 (not the person)")
    return [v[0], v[1], label]


def parse_box(text: str) -> list[float]:
    return _floats(text, (4,), "box")


def parse_keypoint(text: str) -> tuple[str, tuple[float, float]]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"keypoint {text!r}: expected NAME=x,y, e.g. left_wrist=412,630")
    name, xy = text.split("=", 1)
    x, y = _floats(xy, (2,), f"keypoint {name}")
    return name.strip(), (x, y)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m app.cli",
        description="hmr-playground: turn a photo of people into metric 3D bodies (embedded CPU backends).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    img = sub.add_parser(
        "image",
        help="process one photo",
        description=(
            "Detect every person in PHOTO, fit a metric Anny body to each, and write result.json, "
            "result.rrd (open with `rerun result.rrd`), person_<id>.glb/.obj/.npz and overlay.png into --out. "
            "Pixel coordinates refer to the upright photo, origin at its top-left corner. 3D results are in "
            "metres in the OpenCV camera frame (x right, y down, z forward)."
        ),
    )
    img.add_argument("photo", type=Path, help="the photo (JPEG, PNG, WebP, TIFF, ...; EXIF rotation is applied)")
    img.add_argument("--out", type=Path, required=True,
                     help="output folder; written atomically (an existing folder is replaced only on success)")
    img.add_argument("--point", type=parse_point, action="append", default=[], metavar="X,Y[,1|0]",
                     help="click prompt: 1 (default) = this is the person, 0 = this is not; selects and refines the "
                          "person's mask; repeatable")  # fmt: skip
    img.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1",
                     help="box prompt around the person to select (and refine)")
    img.add_argument("--keypoint", type=parse_keypoint, action="append", default=[], metavar="NAME=X,Y",
                     help="keypoint prompt: joint NAME is really at X,Y (strong constraint on the fit); names are "
                          "BlazePose names (left_wrist, right_knee, nose, ...) or hand names "
                          "(left_hand_index_finger_tip)")  # fmt: skip
    img.add_argument("--focal-px", type=float, metavar="F",
                     help="focal length in pixels; default: from EXIF, else estimated with the body")
    _add_backend_flags(img)
    img.add_argument("--no-rrd", action="store_true", help="do not write result.rrd")
    img.add_argument("--quiet", action="store_true", help="no progress bar")
    img.add_argument("--debug", action="store_true", help="show the traceback of internal errors")
    return parser


# ------------------------------------------------------------- backends and device (hub backends)


def _add_backend_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("backends", "embedded (default: CPU, offline) or hub (Hugging Face models, "
                                      "downloaded on first use; HF_TOKEN and HF_HUB_OFFLINE are honoured)")  # fmt: skip
    group.add_argument("--segmentation", choices=["embedded", "hub"], default="embedded",
                       help="hub: SAM2.1 masks (from each person's box and the prompts) for MediaPipe's people")
    group.add_argument("--camera", choices=["embedded", "hub"], default="embedded",
                       help="hub: field of view from the photo with MoGe-2 when neither --focal-px nor EXIF gives it")
    group.add_argument("--depth", choices=["none", "hub"], default="none",
                       help="hub: MoGe-2 metric depth of the scene, logged into result.rrd (world/camera/depth)")
    group.add_argument("--device", default=None, metavar="auto|cpu|cuda[:N]",
                       help="torch device of the hub models (default auto: CUDA when available)")  # fmt: skip


def _config(args: argparse.Namespace):  # noqa: ANN202 - pipelines.modes.image.PipelineConfig
    from pipelines.modes.image import PipelineConfig

    device = None if args.device in (None, "auto") else args.device
    return PipelineConfig(segmentation=args.segmentation, camera=args.camera, depth=args.depth, device=device)


_PIPELINES: dict[str, object] = {}
"""The last pipeline, by repr of its PipelineConfig (created on first use, reused by later calls)."""


def _pipeline(config=None):  # noqa: ANN001, ANN202 - PipelineConfig | None -> ImagePipeline
    from pipelines.modes.image import ImagePipeline, PipelineConfig

    config = config or PipelineConfig()
    key = repr(config)
    if key not in _PIPELINES:
        _PIPELINES.clear()
        _PIPELINES[key] = ImagePipeline(config)
    return _PIPELINES[key]


# ----------------------------------------------------------------------------------------------


def run_image(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipelines.io.image_io import load_image
    from viz.outputs import write_outputs

    prompts = Prompts(
        points_n3=np.asarray(args.point, dtype=np.float64).reshape(-1, 3),
        box_xyxy=np.asarray(args.box, dtype=np.float64) if args.box else None,
        keypoints=dict(args.keypoint),
    )
    if len(prompts.keypoints) != len(args.keypoint):
        raise BadPromptError("the same joint was given twice with --keypoint")
    t0 = time.perf_counter()
    image = load_image(args.photo)  # bad files fail here, before any progress bar
    t_load = time.perf_counter() - t0
    bar = tqdm(total=100, disable=args.quiet, bar_format="{l_bar}{bar}| {elapsed}", file=sys.stderr, leave=False)

    def progress(frac: float, msg: str) -> None:
        bar.set_description(msg)
        bar.update(int(frac * 90) - bar.n)

    try:
        progress(0.0, "loading models")
        pipeline = _pipeline(_config(args))
        result = pipeline.run(image, prompts=prompts, focal_px=args.focal_px, progress=progress)
        result.timings_s["load"] = t_load
        progress(0.92, "writing outputs")
        t = time.perf_counter()
        for person in result.people:
            if person.body is not None:
                pipeline.hmr.add_native_pose(person.body)
        write_outputs(args.out, result, image_path=args.photo, write_rrd=not args.no_rrd)
        result.timings_s["write"] = time.perf_counter() - t
        bar.update(100 - bar.n)
    finally:
        bar.close()
    fitted = [p for p in result.people if p.body is not None]
    print(f"{len(result.people)} person(s) found, {len(fitted)} fitted; camera focal {result.camera.focal_px:.0f} px "
          f"({result.camera.source}); wrote {args.out}")  # fmt: skip
    for p in fitted:
        b = p.body
        dist = np.linalg.norm(b.joints3d_cam.xyz_k3.mean(0))
        print(f"  person {p.id}: height {b.height_m:.2f} m, distance {dist:.2f} m, "
              f"reprojection {b.reprojection_px_mean:.1f} px mean / {b.reprojection_px_max:.1f} px max")  # fmt: skip
    for w in result.warnings:
        print(f"  note: {w}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if args.command == "image":
            return run_image(args)
    except UserFacingError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("error: interrupted; nothing was written", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the CLI never shows a traceback unless asked
        if args.debug:
            raise
        print(f"error: internal error ({type(err).__name__}: {err}); rerun with --debug for details", file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
