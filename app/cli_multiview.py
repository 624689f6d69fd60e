"""The `multiview` subcommand of app.cli: argument parsing and printing only (the work is in
pipelines.modes.multiview and viz.multiview_outputs)."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

MULTIVIEW_HELP = """exit codes:
  0  the views were fused and the outputs written
  1  internal error (rerun with --debug for the traceback)
  2  bad input or usage: nothing was written (unreadable video, calibration that does not match, < 2 usable views)
  3  written, but some views were left out or had problems (see the error lines)
  130  interrupted (Ctrl-C): nothing written, unless pressed once while the outputs were written (they still are)"""


def add_multiview_parser(sub: argparse._SubParsersAction) -> None:
    mv = sub.add_parser(
        "multiview",
        help="fuse synchronised, calibrated videos of the same people into metric 3D tracks",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Detect and track the people in every video, associate them across views, estimate each camera's\n"
            "time offset from their motion, refine the cameras by bundle adjustment, triangulate robustly, fit\n"
            "one Anny body per person to all views, and write into --out: tracks.json, report.json,\n"
            "calibration.json (the refined cameras), per person track_<id>.trc (OpenSim), track_<id>.bvh,\n"
            "track_<id>.glb (animated body) and track_<id>.npz (body parameters), and result.rrd\n"
            "(open with `rerun result.rrd`).\n"
            "3D results are in metres in the calibration's world frame. Calibrations: the project's .json,\n"
            "Qualisys .qca.txt, Pose2Sim Calib.toml, EasyMocap/OpenCV intri.yml + extri.yml. Videos are matched\n"
            "to cameras by name (cam01.mp4 -> camera cam01), else by order."
        ),
        epilog=MULTIVIEW_HELP,
    )
    mv.add_argument("--videos", type=Path, nargs="+", required=True, metavar="VIDEO", help="one video per camera")
    mv.add_argument("--calib", type=Path, metavar="FILE",
                    help="the rig's calibration (default: Calib.qca.txt / Calib.toml / calibration.json / intri.yml "
                         "beside the first video; none: the cameras are estimated from the people)")  # fmt: skip
    mv.add_argument("--self-calibrate", action="store_true",
                    help="estimate the cameras from the people even when a calibration file is there (without one, "
                         "this is what happens)")  # fmt: skip
    mv.add_argument("--person-height", type=float, default=None, metavar="M",
                    help="self-calibration: the tallest person's height in metres, which sets the scale (default 1.70)")
    mv.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder, written atomically")
    mv.add_argument("--frames", type=int, default=None, metavar="N", help="only the first N frames of each video")
    mv.add_argument("--max-side", type=int, default=1280, metavar="PX",
                    help="downscale frames for the detector to this longer side (default 1280; 0 = never)")
    mv.add_argument("--skip-motion", type=float, default=0.1, metavar="F",
                    help="the landmark model on every 2nd frame only, the frames between interpolated where no "
                         "keypoint moved more than this fraction of the person's size (default 0.1; 0 = every frame)")
    mv.add_argument("--no-sync", action="store_true", help="do not estimate time offsets (videos are in sync)")
    mv.add_argument("--no-refine", action="store_true", help="keep the cameras as calibrated (no bundle adjustment)")
    mv.add_argument("--smooth-s", type=float, default=0.0, metavar="S",
                    help="temporal smoothing window over the 3D joints in seconds (default 0: none)")
    mv.add_argument("--no-body", action="store_true", help="no Anny body fit (keypoint tracks only, no GLB)")
    mv.add_argument("--body-every", type=int, default=2, metavar="N",
                    help="fit the bodies every N-th frame and interpolate the others (default 2)")
    mv.add_argument("--mesh-hz", type=float, default=5.0, metavar="HZ",
                    help="body meshes per second in result.rrd (default 5; 0 = none)")
    mv.add_argument("--no-rrd", action="store_true", help="do not write result.rrd")
    mv.add_argument("--quiet", action="store_true", help="no progress bar")
    mv.add_argument("--verbose", action="store_true", help="let MediaPipe print its own log lines")
    mv.add_argument("--debug", action="store_true", help="show the traceback of internal errors")


def _default_calib(first_video: Path) -> Path | None:
    """A calibration beside the first video, else None (the cameras are estimated from the people)."""
    for name in ("Calib.qca.txt", "Calib.toml", "calibration.json", "intri.yml"):
        if (first_video.parent / name).is_file():
            return first_video.parent / name
    return None


def prepare_outputs_in_background(rrd: bool = True) -> threading.Thread:
    """Read the body model's tables and import the output stage's writers (pygltflib; rerun) in a thread,
    started before the keypoint stage (app.lazy_modules.import_writers_ahead): the views' models and
    decoders release the GIL, so on two cores this leaves the single-core stages after the keypoints
    (README, multi-view speed)."""
    from app.lazy_modules import import_writers_ahead

    return import_writers_ahead(("pygltflib",), ("viz.multiview_log",), rrd)


def _or_none(value: float | None, unit: str) -> str:
    """A report's figure for the summary lines: 'n/a' where it is None (nobody fused), else with its unit."""
    return "n/a" if value is None else f"{value} {unit}"


def run_multiview_cli(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pipelines.errors import UserFacingError
    from pipelines.modes.multiview import MultiviewOptions, run_multiview
    from pipelines.multiview.body_fit import BodyOptions
    from pipelines.multiview.fuse import FuseOptions
    from viz.multiview_outputs import OutputStaging, report_dict, write_outputs

    if args.frames is not None and args.frames < 1:
        raise UserFacingError(f"--frames must be at least 1; got {args.frames}.")
    if args.max_side is not None and args.max_side < 0:
        raise UserFacingError(f"--max-side must be a number of pixels (0 = full size); got {args.max_side}.")
    if args.body_every < 1:
        raise UserFacingError(f"--body-every must be at least 1; got {args.body_every}.")
    if args.skip_motion < 0:
        raise UserFacingError(f"--skip-motion must be a fraction of the person's size (0: off); got "
                              f"{args.skip_motion}.")
    if args.mesh_hz < 0:
        raise UserFacingError(f"--mesh-hz must be 0 (no meshes) or more; got {args.mesh_hz}.")
    if args.person_height is not None and not 0.5 < args.person_height < 2.5:
        raise UserFacingError(f"--person-height must be in metres (0.5 to 2.5); got {args.person_height}.")
    from viz.outputs import check_out_dir

    check_out_dir(args.out)  # a bad --out is told now, not after the whole run
    calib = None if args.self_calibrate else args.calib or _default_calib(args.videos[0])
    if calib is None:
        print(f"note: no calibration file: the cameras are estimated from the people (the tallest taken to be "
              f"{args.person_height or 1.70:.2f} m tall).", file=sys.stderr)  # fmt: skip
    options = MultiviewOptions(n_frames=args.frames, max_side=args.max_side or None,
                               skip_motion=args.skip_motion or None,
                               fuse=FuseOptions(sync=not args.no_sync, refine=not args.no_refine,
                                                smooth_s=args.smooth_s),
                               body=BodyOptions(fit=not args.no_body, fit_every=args.body_every),
                               person_height_m=args.person_height)  # fmt: skip
    preparing = prepare_outputs_in_background(rrd=not args.no_rrd)
    # The files that need only the fusion are written while the bodies are fitted in forked processes
    # (run_multiview's on_fused); the rest, and the move into place, after them.
    staged = OutputStaging(args.out, rrd=not args.no_rrd, mesh_hz=args.mesh_hz)

    def write_fused(fused: object) -> None:
        preparing.join()  # done long before in a normal run; the writers never race with the imports
        staged.fused(fused)

    try:
        with tqdm(disable=args.quiet, unit="frame", file=sys.stderr, leave=False, dynamic_ncols=True) as bar:
            result = run_multiview(args.videos, calib, options, progress=bar.set_description,
                                   on_frame=lambda: bar.update(1), on_fused=write_fused)  # fmt: skip
        preparing.join()
        from app.ctrl_c import ctrl_c_deferred

        with ctrl_c_deferred("note: Ctrl-C: the fused views are being written first; press Ctrl-C again to stop "
                             "now and write nothing.") as pressed:  # fmt: skip
            written = write_outputs(result, args.out, rrd=not args.no_rrd, mesh_hz=args.mesh_hz, staged=staged)
    finally:
        staged.discard()  # nothing left once written; a run that stopped leaves no staging folder
    report = report_dict(result)
    print(f"{result.fusion.n_frames} frame(s) of {len(result.infos)} view(s) fused, {len(result.fusion.people)} "
          f"person(s); median reprojection {_or_none(report['median_reproj_px'], 'px')} (plain triangulation "
          f"{_or_none(report['plain_median_reproj_px'], 'px')}); {report['fused_fps']} fused frames/s; wrote "
          f"{len(written)} file(s) to {args.out}")  # fmt: skip
    for v in report["views"]:
        if v["median_reproj_px"] is None:  # nobody fused in this view (its error line says why)
            print(f"  {v['name']}: no fused person seen")
            continue
        print(f"  {v['name']}: time offset {_or_none(v['time_offset_frames'], 'frames')}, median reprojection "
              f"{v['median_reproj_px']} px, camera moved {v['rotation_change_deg']} deg / "
              f"{v['translation_change_m']} m")
    for p in result.fusion.people:
        print(f"  person {p.id}: {int(p.frames_ok.sum())} frame(s), height {p.height_m:.2f} m, views "
              f"{', '.join(result.fusion.cams[v].name for v in sorted(p.members))}")  # fmt: skip
    for b in result.bodies:
        print(f"  person {b.id}: Anny body in {len(b.frames)} frame(s), height {b.height_m:.2f} m, median "
              f"reprojection {b.median_reproj_px:.1f} px")  # fmt: skip
    for w in result.warnings:
        print(f"error: {w}", file=sys.stderr)
    if pressed:  # the outputs are written, but the user stopped the run: not a success for a script
        return 130
    return 3 if result.warnings else 0
