"""Command line: photos in, metric 3D people out.

    python -m app.cli image PHOTO --out DIR [--point x,y[,1|0]]... [--box x0,y0,x1,y1]
                                  [--keypoint NAME=x,y]... [--focal-px F]
    python -m app.cli image PHOTO_OR_FOLDER... --out DIR     # one folder per photo: DIR/<photo stem>/
    python -m app.cli video VIDEO --out DIR [--stride N] [--start S] [--end S] [--max-side PX] [--focal-px F]
                                  [--point F:x,y[,1|0]]... [--box F:x0,y0,x1,y1]... [--keypoint F:NAME=x,y]...

Coordinates are pixels of the upright photo (EXIF rotation applied), origin at the top-left corner.
3D outputs are in metres in the OpenCV camera frame (x right, y down, z forward).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import os
import sys
import threading
import time
from pathlib import Path

# Before numpy loads: the fit's linear algebra is small (~170 x 170 solves), and on two shared cores
# OpenBLAS's threads mostly wait for each other (measured under load: first fit 1.4 s with 2 threads,
# 0.37 s with 1).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

from app.batch import Job, plan_jobs
from app.cli_multiview import add_multiview_parser, run_multiview_cli
from app.native_logs import native_logs_hidden
from pipelines.errors import BadPromptError, UserFacingError
from pipelines.scene.summary import ground_summary, scene_summary
from pipelines.types import Prompts

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_SOME_FAILED = 3

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}  every photo was processed and its outputs written
  {EXIT_INTERNAL}  internal error (rerun with --debug for the traceback)
  {EXIT_BAD_INPUT}  bad input or usage: nothing was written (a single photo that failed, or every photo failed)
  {EXIT_SOME_FAILED}  several photos: some failed (one 'error: NAME: ...' line each), the others were written
  130  interrupted (Ctrl-C): the photo being processed is not written, those finished before it are"""


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
        description="hmr-playground: turn photos of people into metric 3D bodies (embedded CPU backends).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    img = sub.add_parser(
        "image",
        help="process one photo, or several photos and folders in one go",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Detect every person in PHOTO, fit a metric Anny body to each, and write result.json,\n"
            "result.rrd (open with `rerun result.rrd`), person_<id>.glb/.obj/.npz and overlay.png into --out.\n"
            "With several photos or a folder, each photo gets its own folder DIR/<photo stem>/ (models load\n"
            "once; a photo that fails is reported on one line and the others are still written).\n"
            "Pixel coordinates refer to the upright photo, origin at its top-left corner. 3D results are in\n"
            "metres in the OpenCV camera frame (x right, y down, z forward)."
        ),
        epilog=EXIT_CODES_HELP,
    )
    img.add_argument("photos", type=Path, nargs="+", metavar="PHOTO",
                     help="a photo (JPEG, PNG, WebP, TIFF, ...; EXIF rotation is applied), or a folder: its image "
                          "files, in name order (not its subfolders); several may be given")  # fmt: skip
    img.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="output folder (one photo), or the folder that receives one <photo stem>/ folder per "
                          "photo; each photo's folder is written atomically (an existing one is replaced only on "
                          "success)")  # fmt: skip
    img.add_argument("--point", type=parse_point, action="append", default=[], metavar="X,Y[,1|0]",
                     help="click prompt: 1 (default) = this is the person, 0 = this is not; selects and refines the "
                          "person's mask; repeatable (one photo only)")  # fmt: skip
    img.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1",
                     help="box prompt around the person to select (and refine) (one photo only)")
    img.add_argument("--keypoint", type=parse_keypoint, action="append", default=[], metavar="NAME=X,Y",
                     help="keypoint prompt: joint NAME is really at X,Y (strong constraint on the fit); names are "
                          "BlazePose names (left_wrist, right_knee, nose, ...) or hand names "
                          "(left_hand_index_finger_tip) (one photo only)")  # fmt: skip
    img.add_argument("--focal-px", type=float, metavar="F",
                     help="focal length in pixels (for every photo); default: from EXIF, else estimated with the body")
    _add_backend_flags(img)
    img.add_argument("--no-rrd", action="store_true", help="do not write result.rrd")
    img.add_argument("--quiet", action="store_true", help="no progress bar")
    img.add_argument("--verbose", action="store_true",
                     help="let MediaPipe / TFLite print their own log lines (hidden by default)")
    img.add_argument("--debug", action="store_true", help="show the traceback of internal errors")
    add_video_parser(sub)
    add_multiview_parser(sub)
    return parser


# ------------------------------------------------------------- backends and device (hub backends)


def _add_backend_flags(parser: argparse.ArgumentParser, video: bool = False) -> None:
    """The backend flags (`video`: not --camera, --depth, --depth-kind: one camera per video, no scene depth)."""
    group = parser.add_argument_group("backends", "embedded (default: CPU, offline) or hub (Hugging Face models, "
                                      "downloaded on first use; HF_TOKEN and HF_HUB_OFFLINE are honoured)")  # fmt: skip
    group.add_argument("--segmentation", choices=["embedded", "hub"], default="embedded",
                       help="hub: SAM2.1 masks (from each person's box and the prompts) for MediaPipe's people")
    photo_only = group.add_argument if not video else (lambda *_, **__: None)
    photo_only("--camera", choices=["embedded", "hub"], default="embedded",
                       help="hub: field of view from the photo with MoGe-2 when neither --focal-px nor EXIF gives it")
    photo_only("--depth", default="none", metavar="none|hub|FILE",
                       help="scene depth, scaled into metres by the fitted people and the ground under them, "
                            "written as depth_metric.npy and scene.ply: hub = MoGe-2; FILE = a depth map of the "
                            "photo (.npy, 16-bit .png, .exr; one photo only, see --depth-kind); none (default): the "
                            "scene is the ground plane and the people")  # fmt: skip
    photo_only("--focal-solve", choices=["fit", "blade"], default="fit",
               help="without a focal: fit (default) = estimated with the bodies' fits; blade = then focal and "
                    "distances solved together from the bodies' perspective (experimental, not more accurate)")
    photo_only("--depth-kind", choices=["metric", "relative", "inverse"], default="relative",
                       help="what --depth FILE holds: metric (metres; 16-bit PNG: millimetres), relative (depth up "
                            "to an unknown scale and shift), inverse (disparity up to a scale and shift); default "
                            "relative")  # fmt: skip
    group.add_argument("--device", default=None, metavar="auto|cpu|cuda[:N]",
                       help="torch device of the hub models (default auto: CUDA when available)")  # fmt: skip
    group.add_argument("--hmr", choices=["embedded", "hub"], default="embedded",
                       help="hub: SAM 3D Body (official code installed by you, gated checkpoint) from each person's "
                            "box and mask; keypoint prompts are then applied by the embedded fit")  # fmt: skip
    group.add_argument("--body", choices=["anny", "smplx"], default="anny",
                       help="body model of the fit: anny (default, shipped) or smplx (your own SMPL-X files, see "
                            "--smplx-model-dir)")  # fmt: skip
    group.add_argument("--smplx-model-dir", type=Path, metavar="DIR",
                       help="folder with SMPLX_NEUTRAL.npz (or .pkl) from smpl-x.is.tue.mpg.de (licence-gated, "
                            "not shipped)")  # fmt: skip
    group.add_argument("--smplx-gender", choices=["neutral", "male", "female"], default="neutral",
                       help="which SMPL-X file to use (default neutral)")
    group.add_argument("--no-fallback", action="store_true",
                       help="fail when a hub model cannot be had (default: warn and use that stage's embedded "
                            "backend; result.json records the backend used)")  # fmt: skip


def _config(args: argparse.Namespace):  # noqa: ANN202 - pipelines.modes.image.PipelineConfig
    from pipelines.modes.image import PipelineConfig

    device = None if args.device in (None, "auto") else args.device
    args = argparse.Namespace(**{"camera": "embedded", "depth": "none", "depth_kind": "relative", **vars(args)})
    depth, depth_file = (args.depth, None) if args.depth in ("none", "hub") else ("none", args.depth)
    body_options = {}
    if args.body == "smplx":
        from pipelines.body.smplx_model import check_model_dir

        check_model_dir(args.smplx_model_dir, args.smplx_gender)  # a wrong folder fails before any model loads
        body_options = {"model_dir": None if args.smplx_model_dir is None else str(args.smplx_model_dir),
                        "gender": args.smplx_gender}  # fmt: skip
    return PipelineConfig(segmentation=args.segmentation, camera=args.camera, depth=depth, device=device,
                          depth_file=depth_file, depth_kind=args.depth_kind, fallback=not args.no_fallback,
                          body=args.body, body_options=body_options, hmr=args.hmr,
                          focal_solve=getattr(args, "focal_solve", "fit"))  # fmt: skip


_WARNED: set[str] = set()
"""Fallback sentences already printed by this run (a batch warns once per stage)."""


def _warn_fallbacks(result) -> None:  # noqa: ANN001 - FrameResult
    """One 'warning: ...' line on stderr per stage that fell back to its embedded backend."""
    from tqdm import tqdm

    for use in result.backends.values():
        text = use.sentence()
        if text and text not in _WARNED:
            _WARNED.add(text)
            tqdm.write(f"warning: {text}", file=sys.stderr)


_PIPELINES: dict[str, object] = {}
"""The last pipeline, by repr of its PipelineConfig (created on first use, reused by later calls)."""


def _pipeline(config=None):  # noqa: ANN001, ANN202 - PipelineConfig | None -> ImagePipeline
    from app.lazy_modules import import_mediapipe_lazily
    from pipelines.modes.image import ImagePipeline, PipelineConfig

    import_mediapipe_lazily()  # without its drawing utilities and matplotlib (~0.5-1 s)
    config = config or PipelineConfig()
    key = repr(config)
    if key not in _PIPELINES:
        _PIPELINES.clear()
        _PIPELINES[key] = ImagePipeline(config)
    return _PIPELINES[key]


# ----------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _prefetch_writers(rrd: bool) -> None:
    """Read the body model tables and import the photo's output writers ahead, while the first photo runs
    (app.lazy_modules.import_writers_ahead)."""
    from app.lazy_modules import import_writers_ahead

    import_writers_ahead(("viz.outputs",), ("viz.rerun_log",), rrd)


def _prompts(args: argparse.Namespace) -> Prompts:
    prompts = Prompts(
        points_n3=np.asarray(args.point, dtype=np.float64).reshape(-1, 3),
        box_xyxy=np.asarray(args.box, dtype=np.float64) if args.box else None,
        keypoints=dict(args.keypoint),
    )
    if len(prompts.keypoints) != len(args.keypoint):
        raise BadPromptError("the same joint was given twice with --keypoint")
    return prompts


def load_photo(photo: Path):  # noqa: ANN201 - pipelines.io.image_io.LoadedImage
    """Decode a photo (EXIF-upright RGB); a bad file raises BadImageError naming it."""
    from pipelines.io.image_io import load_image

    return load_image(photo)


def process_photo(job: Job, args: argparse.Namespace, prompts: Prompts, image=None, progress=None):  # noqa: ANN001, ANN201
    """Load (unless `image` is given), run and write one photo; raises UserFacingError for a bad photo or
    prompt. Returns the FrameResult."""
    from viz.outputs import write_outputs

    t0 = time.perf_counter()
    image = image if image is not None else load_photo(job.photo)  # bad files fail here, before any model loads
    t_load = time.perf_counter() - t0
    report = progress or (lambda frac, msg: None)
    report(0.0, "loading models")
    pipeline = _pipeline(_config(args))
    _prefetch_writers(not args.no_rrd)
    result = pipeline.run(image, prompts=prompts, focal_px=args.focal_px, progress=progress)
    result.timings_s["load"] = t_load
    _warn_fallbacks(result)
    report(0.92, "writing outputs")
    t = time.perf_counter()
    for person in result.people:
        if person.body is not None:
            pipeline.hmr.add_native_pose(person.body)
    if not args.no_rrd:
        from app.lazy_modules import pyarrow_without_pandas

        pyarrow_without_pandas()  # a no-op where the writers' import thread got there first
    write_outputs(job.out_dir, result, image_path=job.photo, write_rrd=not args.no_rrd)
    result.timings_s["write"] = time.perf_counter() - t
    return result


def _summary(result, out_dir: Path) -> list[str]:  # noqa: ANN001 - FrameResult
    fitted = [p for p in result.people if p.body is not None]
    lines = [f"{len(result.people)} person(s) found, {len(fitted)} fitted; camera focal "
             f"{result.camera.focal_px:.0f} px ({result.camera.source}); wrote {out_dir}"]  # fmt: skip
    for p in fitted:
        b = p.body
        dist = np.linalg.norm(b.joints3d_cam.xyz_k3.mean(0))
        err = f"{b.reprojection_px_mean:.1f} px mean / {b.reprojection_px_max:.1f} px max"
        lines.append(f"  person {p.id}: height {b.height_m:.2f} m, distance {dist:.2f} m, reprojection {err}")
    lines += scene_summary(result.scene)
    fallbacks = {u.sentence() for u in result.backends.values()}  # printed as warnings already
    lines += [f"  note: {w}" for w in result.warnings if w not in fallbacks]
    return lines


def run_single(job: Job, args: argparse.Namespace, prompts: Prompts) -> int:
    from tqdm import tqdm

    t0 = time.perf_counter()
    image = load_photo(job.photo)  # a bad file fails here, before any progress bar
    t_load = time.perf_counter() - t0
    bar = tqdm(total=100, disable=args.quiet, bar_format="{l_bar}{bar}| {elapsed}", file=sys.stderr, leave=False)

    def progress(frac: float, msg: str) -> None:
        bar.set_description(msg)
        bar.update(int(frac * 90) - bar.n)

    try:
        result = process_photo(job, args, prompts, image=image, progress=progress)
        result.timings_s["load"] = t_load
        bar.update(100 - bar.n)
    finally:
        bar.close()
    print("\n".join(_summary(result, job.out_dir)))
    return EXIT_OK


def _error_line(photo: Path, err: BaseException) -> str:
    text = str(err)
    return f"error: {text}" if photo.name in text else f"error: {photo}: {text}"


def run_batch(jobs: list[Job], problems: list[str], args: argparse.Namespace, prompts: Prompts) -> int:
    """Every photo in one process, one progress bar; a failing photo is one line and the rest go on."""
    from tqdm import tqdm

    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    failed, written = len(problems), 0
    with tqdm(jobs, disable=args.quiet, unit="photo", file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
        for job in bar:
            bar.set_description(job.photo.name)
            try:
                result = process_photo(job, args, prompts)
            except UserFacingError as err:
                failed += 1
                bar.write(_error_line(job.photo, err), file=sys.stderr)
                continue
            except Exception as err:  # noqa: BLE001 - one photo's internal error does not stop the batch
                if args.debug:
                    raise
                failed += 1
                why = RuntimeError(f"internal error ({type(err).__name__}: {err}); rerun with --debug for details")
                bar.write(_error_line(job.photo, why), file=sys.stderr)
                continue
            written += 1
            fitted = sum(p.body is not None for p in result.people)
            bar.write(f"{job.photo}: {len(result.people)} person(s) found, {fitted} fitted -> {job.out_dir}",
                      file=sys.stdout)  # fmt: skip
    total = written + failed
    print(f"{written} of {total} photo(s) written under {args.out}" + (f"; {failed} failed" if failed else ""))
    if failed == 0:
        return EXIT_OK
    return EXIT_SOME_FAILED if written else EXIT_BAD_INPUT


def run_image(args: argparse.Namespace) -> int:
    prompts = _prompts(args)
    jobs, problems = plan_jobs(list(args.photos), args.out)
    batch = len(args.photos) > 1 or args.photos[0].is_dir()
    if batch and (prompts.keypoints or prompts.box_xyxy is not None or len(prompts.points_n3)):
        raise BadPromptError("--point, --box and --keypoint apply to one photo; give a single PHOTO with them")
    if batch and args.depth not in ("none", "hub"):
        raise UserFacingError("--depth FILE is the depth map of one photo; give a single PHOTO with it")
    if not batch:
        return run_single(jobs[0], args, prompts)
    if not jobs:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_batch(jobs, problems, args, prompts)


INTERRUPTED = {
    "image": "interrupted; the photo being processed was not written (the photos finished before it are).",
    "video": "interrupted before the first frame was processed (or while the outputs were written): nothing was "
             "written, and an existing output folder is left as it was.",
    "multiview": "interrupted: nothing was written (the views are fused only once every video is read), and an "
                 "existing output folder is left as it was.",
}
"""The message of a Ctrl-C that reaches main (the video's frame loop handles its own: the frames done are written)."""


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _WARNED.clear()  # each run warns once per stage that fell back
    with native_logs_hidden(not getattr(args, "verbose", False)):
        try:
            if args.command == "image":
                return run_image(args)
            if args.command == "video":
                return run_video(args)
            if args.command == "multiview":
                return run_multiview_cli(args)
        except UserFacingError as err:
            print(f"error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print(f"error: {INTERRUPTED[args.command]}", file=sys.stderr)
            return 130
        except Exception as err:  # noqa: BLE001 - the CLI never shows a traceback unless asked
            if args.debug:
                raise
            print(f"error: internal error ({type(err).__name__}: {err}); rerun with --debug for details",
                  file=sys.stderr)  # fmt: skip
            return EXIT_INTERNAL
    return EXIT_BAD_INPUT


# ------------------------------------------------------------------------------------------ video

VIDEO_EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}  every wanted frame was processed and the outputs written
  {EXIT_INTERNAL}  internal error (rerun with --debug for the traceback)
  {EXIT_BAD_INPUT}  bad input or usage: nothing was written (unreadable video, no frame decoded, bad option)
  {EXIT_SOME_FAILED}  the video ended early (truncated or damaged), or a prompt fell on nobody: the frames were
     processed and written (the prompt is named)
  130  interrupted (Ctrl-C): the frames done are written, unless it came before the first frame (nothing
     written) or was pressed twice while the outputs were written"""


def add_video_parser(sub: argparse._SubParsersAction) -> None:
    vid = sub.add_parser(
        "video",
        help="process a video: tracked, smoothed metric bodies over time",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Detect and track every person in VIDEO, fit a metric Anny body per person and frame (one body\n"
            "shape per person and one focal per video, solved on the first frame, then held; fits warm-started\n"
            "from the previous frame; each whole track smoothed once the video has run), and write into --out:\n"
            "tracks.json, track_<id>.npz, track_<id>.glb (animated, skinned), track_<id>.bvh and result.rrd\n"
            "(open with `rerun result.rrd`). A static camera is assumed; the ground is fitted to the feet and\n"
            "each track's root is given on it. 3D results are in metres in the OpenCV camera frame\n"
            "(x right, y down, z forward); the GLB and BVH files are in the ground's world frame (y up, the\n"
            "floor at y = 0), metres."
        ),
        epilog=VIDEO_EXIT_CODES_HELP,
    )
    vid.add_argument("video", type=Path, metavar="VIDEO",
                     help="a video file (mp4, mov, webm, avi, ...) or a folder of frames (jpg/png, sorted by name)")
    vid.add_argument("--fps", type=float, default=None, metavar="FPS",
                     help="frame rate of a folder of frames (default 30; a video file's own rate is used)")
    vid.add_argument("--max-frames", type=int, default=None, metavar="N",
                     help="refuse to process more than N frames (default 20000, ~11 min at 30 frames/s; 0 = no limit)")
    vid.add_argument("--out", type=Path, required=True, metavar="DIR",
                     help="output folder, written atomically (an existing one is replaced only at the end)")
    vid.add_argument("--stride", type=int, default=1, metavar="N", help="process every N-th frame (default 1)")
    vid.add_argument("--start", type=float, default=0.0, metavar="S", help="start time in seconds (default 0)")
    vid.add_argument("--end", type=float, default=None, metavar="S", help="end time in seconds (default: the end)")
    vid.add_argument("--max-side", type=int, default=1280, metavar="PX",
                     help="downscale frames so that the longer side is at most PX pixels (default 1280; 0 = never)")
    vid.add_argument("--focal-px", type=float, metavar="F",
                     help="focal length in pixels of the source video; default: estimated on the first frame")
    vid.add_argument("--no-smooth", action="store_true", help="no temporal smoothing at all")
    vid.add_argument("--online-smooth", action="store_true",
                     help="also smooth the keypoints before each fit (1-euro; the live skeleton is smoother, "
                          "the accuracy ~1 mm worse)")  # fmt: skip
    vid.add_argument("--hands", action="store_true", help="detect hands on every frame (slower)")
    vid.add_argument("--small-people", action="store_true",
                     help="when looking for newcomers (every 10 frames), also search image tiles: finds small "
                          "people far away or at the edges (slower)")  # fmt: skip
    vid.add_argument("--mesh-hz", type=float, default=1.0, metavar="HZ",
                     help="meshes per second in result.rrd (skeletons are on every frame; default 1)")
    _add_backend_flags(vid, video=True)
    vid.add_argument("--no-rrd", action="store_true", help="do not write result.rrd")
    from app.cli_video_prompts import add_prompt_arguments

    add_prompt_arguments(vid)
    vid.add_argument("--quiet", action="store_true", help="no progress bar")
    vid.add_argument("--verbose", action="store_true",
                     help="let MediaPipe / TFLite print their own log lines (hidden by default)")
    vid.add_argument("--debug", action="store_true", help="show the traceback of internal errors")


def run_video(args: argparse.Namespace) -> int:
    """Decode, process and write one video as a stream; see VIDEO_EXIT_CODES_HELP."""
    from tqdm import tqdm

    from pipelines.io.video_io import DecodeReport, probe, read_video

    if args.stride < 1:
        raise UserFacingError(f"--stride must be at least 1; got {args.stride}.")
    if args.max_side < 0 or (0 < args.max_side < 64):
        raise UserFacingError(f"--max-side must be 0 (no limit) or at least 64 pixels; got {args.max_side}.")
    from pipelines.io.video_io import MAX_FRAMES, check_length

    info = probe(args.video, fps=args.fps)  # an unreadable file fails here, before any model loads
    check_length(info, args.stride, args.start, args.end, MAX_FRAMES if args.max_frames is None else args.max_frames)
    from app.cli_video_prompts import prompts_from_args
    from pipelines.modes.video import VideoOptions, VideoPipeline
    from viz.video_outputs import VideoOutputs

    long_side = max(info.width, info.height)
    scale = args.max_side / long_side if args.max_side and long_side > args.max_side else 1.0
    options = VideoOptions(focal_px=None if args.focal_px is None else args.focal_px * scale,
                           smooth=not args.no_smooth, online_smooth=args.online_smooth, hands=args.hands,
                           rate_hz=info.fps / args.stride, redetect_tiles=(1.0, 0.5) if args.small_people else (),
                           mesh_hz=args.mesh_hz)  # fmt: skip
    report = DecodeReport()
    frames = read_video(info, stride=args.stride, start_s=args.start, end_s=args.end,
                        max_side=args.max_side or None, report=report)  # fmt: skip
    first = max(0, int(np.ceil(args.start * info.fps - 1e-9)))
    last = info.frame_count - 1
    if args.end is not None:
        last = min(last, int(np.floor(args.end * info.fps - 1e-9)))
    total = max(0, (last - first) // args.stride + 1) if info.frame_count else None
    prompts = prompts_from_args(args)
    prompts.validate(info.width, info.height, info.frame_count,
                     list(range(first, last + 1, args.stride)) if info.frame_count else None)  # fmt: skip
    pipeline = VideoPipeline(_pipeline(_config(args)), options, prompts=prompts)  # models load once (MediaPipe lazily)
    outputs = VideoOutputs(args.out, info, write_rrd=not args.no_rrd, mesh_hz=args.mesh_hz)
    warnings: list[str] = []
    empty, interrupted = 0, False
    try:
        with tqdm(total=total, disable=args.quiet, unit="frame", file=sys.stderr, leave=False,
                  dynamic_ncols=True) as bar:  # fmt: skip
            try:
                for result in pipeline.run(frames):
                    outputs.add(result)
                    empty += not result.people
                    warnings += result.warnings
                    _warn_fallbacks(result)
                    bar.update(1)
            except KeyboardInterrupt:  # the frames done so far are still written
                interrupted = True
                report.problems.append(f"{info.path.name}: interrupted after {len(pipeline.frames_done)} frame(s); "
                                       "the outputs hold those frames.")
        if not pipeline.frames_done:
            outputs.abort()
            why = report.problems[0] if report.problems else f"{info.path.name}: no frame in the requested range."
            raise UserFacingError(why)
        warnings = report.problems + report.notes + warnings
        from app.ctrl_c import ctrl_c_deferred

        with ctrl_c_deferred(f"note: Ctrl-C: the {len(pipeline.frames_done)} frame(s) done are being written first; "
                             "press Ctrl-C again to stop now and write nothing.") as pressed:  # fmt: skip
            written = outputs.finish(pipeline, warnings, {"stride": args.stride, "start_s": args.start,
                                                          "end_s": args.end, "max_side": args.max_side,
                                                          "smooth": not args.no_smooth,
                                                          "online_smooth": args.online_smooth, "hands": args.hands,
                                                          "prompts": prompts.as_dict()})  # fmt: skip
        interrupted = interrupted or bool(pressed)  # written, but the run was still stopped by the user
    except BaseException:
        outputs.abort()
        raise
    finally:
        pipeline.close()
    n_tracks = sum(1 for t in pipeline.tracks.values() if t.frames)
    cam = pipeline.camera
    focal = f"{cam.focal_px / scale:.0f} px ({cam.source})" if cam is not None else "unknown"
    print(f"{len(pipeline.frames_done)} frame(s) processed, {n_tracks} track(s); camera focal {focal}; "
          f"wrote {len(written)} file(s) to {args.out}")  # fmt: skip
    for track in sorted(pipeline.tracks.values(), key=lambda t: t.id):
        if track.frames:
            print(f"  track {track.id}: {len(track.frames)} frame(s), height {track.height_m:.2f} m, "
                  f"mean reprojection {np.mean(track.reprojection_px_f):.1f} px")  # fmt: skip
    if outputs.ground is not None:
        print(f"{ground_summary(outputs.ground)} (over {len(pipeline.frames_done)} frames)")
    if empty:
        print(f"  note: nobody found in {empty} frame(s)")
    for note in report.notes[:5]:
        print(f"  note: {note}")
    for problem in report.problems + pipeline.prompts.problems:
        print(f"error: {problem}", file=sys.stderr)
    if interrupted:
        return 130
    return EXIT_SOME_FAILED if report.problems or pipeline.prompts.problems else EXIT_OK


def can_exit_fast() -> bool:
    """Whether nothing is left that the interpreter's own exit would wait for: no other non-daemon thread
    and no child process alive."""
    mp = sys.modules.get("multiprocessing")
    others = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()]
    return not others and not (mp is not None and mp.active_children())


def exit_without_teardown(code: int) -> None:
    """End the process once its outputs are written, without the interpreter's teardown: with MediaPipe,
    rerun, OpenCV and scipy loaded, freeing their ~2,000 modules took ~0.4 s of CPU (over 1 s of wall
    time on a busy machine), a tenth of a cold photo run, for nothing. Every atexit handler still runs
    first, in its own order (rerun's sinks, logging, `weakref.finalize` callbacks such as a library's
    temporary folder), then stdout and stderr are flushed; while another non-daemon thread or a child
    process is alive (`can_exit_fast`), it is a normal exit."""
    if not can_exit_fast():
        sys.exit(code)
    atexit._run_exitfuncs()  # noqa: SLF001 - what a normal exit runs before the teardown
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed pipe: nothing more to say anyway
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_without_teardown(main())
