"""Multi-view mode: N synchronised videos + a calibration -> fused metric 3D people and bodies over time.

Per view: people detected, tracked and their keypoints smoothed as in the video mode
(pipelines.multiview.views2d). Then pipelines.multiview.fuse: association across views, time
offsets, camera refinement by bundle adjustment, robust triangulation; then one Anny body per person
and frame fitted to all views (pipelines.multiview.body_fit). Without a calibration the cameras are
estimated from the people first (pipelines.multiview.selfcalib). Inputs are checked first:
a calibration that does not match the videos (count, names, image size), videos of other frame
rates; a view that cannot be used is left out with a message, and the others are still fused when
at least two remain. World frame and units: the calibration's (metres).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from pipelines.errors import UserFacingError
from pipelines.io.limits import check_view_count
from pipelines.io.video_io import VideoInfo, probe
from pipelines.multiview.body_fit import BodyOptions, PersonBody, fit_bodies
from pipelines.multiview.calibration import CalibratedCamera, make_camera
from pipelines.multiview.formats import load_calibration
from pipelines.multiview.fuse import FuseOptions, FusionResult, fuse_views
from pipelines.multiview.selfcalib import SelfCalibReport, guess_camera, self_calibrate
from pipelines.multiview.views2d import ViewTracks, track_views


@dataclass
class MultiviewOptions:
    """How a multi-view capture is processed."""

    n_frames: int | None = None
    """Process only the first N frames of each video (None = all)."""
    max_side: int | None = 1280
    """Downscale frames for the "image" detector so that the longer side is at most this (keypoints are
    returned in source pixels)."""
    tracking_max_side: int | None = 960
    """The same for the "tracking" detector (None: full frames). It crops each person from the frame and
    resamples the crop to 256 px, so a person taller than ~512 px loses nothing at 960 px; a 1088x1920
    frame halved once while decoding saves the crops' own area reductions (~8 ms each under load)."""
    detector: str = "tracking"
    """Per view: "tracking" = landmarks tracked between frames, the person detector every 10 frames (the
    video mode's); "image" = a full detection on every frame (the first slice's; slower)."""
    skip_motion: float | None = 0.1
    """"tracking" detector: the landmark model on every `skip_span`-th frame only, the frames between given
    their neighbours' landmarks interpolated where nobody moved more than this fraction of their region's size
    between them (LandmarkTrackingOptions.skip_motion; None: the model on every frame). 0.1 chosen on
    pose2sim_single (README, multi-view speed: ~20 % less CPU, the same fused reprojection)."""
    skip_span: int = 4
    """With skip_motion: the landmark model on every `skip_span`-th frame at most, the frames between
    interpolated linearly where nobody moved more than skip_motion between the two model runs
    (LandmarkTrackingOptions.skip_span). 4 chosen on pose2sim_single (README, multi-view keypoints: 27 % fewer
    landmark runs than 2, the fused reprojection within 0.02 px); 6 runs the model more (more people move
    more than skip_motion over 6 frames)."""
    threads: int = 2
    """Views processed at the same time (each with its own detector) when no shared detector is given."""
    person_height_m: float | None = None
    """Without a calibration file: the tallest person's height, which sets the metric scale (None: 1.70 m)."""
    fuse: FuseOptions = field(default_factory=FuseOptions)
    """Fusion options (sync, refinement, smoothing)."""
    body: BodyOptions = field(default_factory=BodyOptions)
    """How the fused people's Anny bodies are fitted (pipelines.multiview.body_fit)."""


@dataclass
class MultiviewResult:
    """A processed capture."""

    infos: list[VideoInfo]
    """The videos that were used, in the order of `fusion.cams`."""
    cams_given: list[CalibratedCamera]
    """Their cameras as given (before refinement)."""
    views: list[ViewTracks]
    """Per view: the tracked 2D people."""
    fusion: FusionResult
    """The fused people, offsets, refined cameras and errors."""
    fps: float
    """Frame rate of the frame grid (the first used video's)."""
    seconds: dict[str, float]
    """Wall time per stage (keypoints, fusion, bodies)."""
    warnings: list[str] = field(default_factory=list)
    """Views left out and why, and other notes."""
    bodies: list[PersonBody] = field(default_factory=list)
    """Per fused person with enough joints: its Anny body over time, world frame (empty with body.fit off)."""
    selfcalib: SelfCalibReport | None = None
    """Without a calibration file: how the cameras were estimated from the people."""


def match_cameras(videos: list[Path], cams: list[CalibratedCamera], calib_name: str) -> list[CalibratedCamera]:
    """The camera of each video: by name (the camera's name in the video's file name), else by order."""
    by_name = []
    for video in videos:
        hits = [c for c in cams if c.name.lower() in video.stem.lower()]
        by_name.append(max(hits, key=lambda c: len(c.name)) if hits else None)
    if all(c is not None for c in by_name) and len({c.name for c in by_name}) == len(videos):
        return by_name  # type: ignore[return-value]
    named = [c.name if c is not None else None for c in by_name]
    twice = [n for i, n in enumerate(named) if n is not None and n in named[:i]]
    if twice:  # also with as many cameras as videos: the calibration's order would silently pair them otherwise
        both = [v.name for v, c in zip(videos, by_name, strict=True) if c is not None and c.name == twice[0]]
        raise UserFacingError(f"The videos {' and '.join(both)} both name camera {twice[0]} of the calibration "
                              f"{calib_name}: give one video per camera.")  # fmt: skip
    if len(cams) != len(videos):
        names = [c.name for c in cams]
        unmatched = [v.name for v, c in zip(videos, by_name, strict=True) if c is None]
        if len(unmatched) < len(videos):  # some videos name a camera, these do not
            raise UserFacingError(
                f"The calibration {calib_name} has no camera for {', '.join(unmatched)} (its {len(cams)} camera(s): "
                f"{', '.join(names)}; {len(videos)} video(s) were given): give the calibration of every camera, or "
                "only the videos of its cameras.")
        raise UserFacingError(
            f"The calibration {calib_name} describes {len(cams)} camera(s) ({', '.join(c.name for c in cams)}) but "
            f"{len(videos)} video(s) were given, and the video names do not name its cameras: give one video per "
            "camera in the calibration's order, or name each video after its camera (e.g. cam01.mp4).")
    return list(cams)


def fit_camera_to_video(cam: CalibratedCamera, info: VideoInfo) -> tuple[CalibratedCamera | None, str | None]:
    """The camera for the video's decoded size: as given when the sizes agree within 1 %, scaled when the
    video is a uniformly resized copy, else None and the reason."""
    if not cam.size_known:
        cx, cy = cam.camera.K_33[0, 2], cam.camera.K_33[1, 2]
        if abs(cx - info.width / 2) > info.width / 4 or abs(cy - info.height / 2) > info.height / 4:
            return None, (f"{info.path.name} is {info.width}x{info.height} but camera {cam.name} of the calibration "
                          f"has its principal point at ({cx:.0f}, {cy:.0f}), far from the image centre: not the "
                          "same camera setting (or another image size); the view is left out.")  # fmt: skip
        return make_camera(cam.name, cam.camera.K_33, cam.dist_k, cam.cam_T_world_44, info.width, info.height), None
    cw, ch = cam.camera.width, cam.camera.height
    sx, sy = info.width / cw, info.height / ch
    if abs(sx - 1) <= 0.01 and abs(sy - 1) <= 0.01:
        return cam, None
    if abs(sx - sy) <= 0.01:
        K = cam.camera.K_33.copy()
        K[:2] *= sx
        new = make_camera(cam.name, K, cam.dist_k, cam.cam_T_world_44, info.width, info.height)
        return new, (f"{info.path.name}: {info.width}x{info.height} is the calibration's {cw}x{ch} scaled by "
                     f"{sx:.3f}; its intrinsics are scaled.")  # fmt: skip
    return None, (f"{info.path.name} is {info.width}x{info.height} but camera {cam.name} of the calibration is "
                  f"{cw}x{ch}: not the same camera setting; the view is left out.")  # fmt: skip


def check_inputs(videos: list[Path], calib_path: Path | None
                 ) -> tuple[list[VideoInfo], list[CalibratedCamera], list[str]]:  # fmt: skip
    """The usable views (video info + matching camera) and a message per view left out. Without a calibration
    the cameras are placeholders (focal prior, named after the videos) for pipelines.multiview.selfcalib."""
    if len(videos) < 2:
        raise UserFacingError(f"Multi-view needs at least two videos; got {len(videos)}.")
    check_view_count(len(videos))
    infos = [probe(v) for v in videos]  # an unreadable video fails here, naming the file
    if calib_path is None:
        cams = [guess_camera(i.path.stem, i.width, i.height) for i in infos]
    else:
        cams = match_cameras([i.path for i in infos], load_calibration(calib_path), calib_path.name)
    notes: list[str] = []
    fps_ref = float(np.median([i.fps for i in infos]))
    keep_i, keep_c = [], []
    for info, cam in zip(infos, cams, strict=True):
        if abs(info.fps - fps_ref) > 0.01 * fps_ref:
            notes.append(f"{info.path.name} runs at {info.fps:.2f} frames/s, the others at {fps_ref:.2f}: "
                         "the view is left out (resample it to the same rate).")  # fmt: skip
            continue
        fitted, note = fit_camera_to_video(cam, info)
        if note:
            notes.append(note)
        if fitted is not None:
            keep_i.append(info)
            keep_c.append(fitted)
    counts = sorted({i.frame_count for i in keep_i})
    if len(counts) > 1:
        lengths = ", ".join(f"{i.path.name}: {i.frame_count}" for i in keep_i)
        notes.append(f"the videos have different lengths ({lengths} frames): frames are matched from the start, "
                     "and each view is fused where it has frames.")
    if len(keep_i) < 2:
        raise UserFacingError("Fewer than two views can be used: " + " ".join(notes))
    return keep_i, keep_c, notes


def run_multiview(videos: list[Path], calib_path: Path | None, options: MultiviewOptions | None = None, *,
                  detector=None, progress: Callable[[str], None] | None = None,  # noqa: ANN001
                  on_frame: Callable[[], None] | None = None,
                  views: list[ViewTracks] | None = None, hmr=None,  # noqa: ANN001
                  on_fused: Callable[[MultiviewResult], None] | None = None) -> MultiviewResult:  # fmt: skip
    """Process a capture (see the module docstring). `detector`: one shared detection stage for every view,
    one view after the other (default: one per view, see MultiviewOptions.detector / threads). `views`
    (the per-view tracks of the same videos) skips the keypoint stage (tests and benches cache them);
    `hmr`: the embedded HMR stage for the body fit (created when None). `on_fused`: called once with the
    result before its bodies (`bodies` empty, `seconds` without "bodies"), while the bodies are fitted in
    forked processes (fit_bodies' `meanwhile`: e.g. the outputs that need only the fusion,
    viz.multiview_outputs.OutputStaging)."""
    options = options or MultiviewOptions()
    say = progress or (lambda _msg: None)
    infos, cams, notes = check_inputs([Path(v) for v in videos], None if calib_path is None else Path(calib_path))
    t0 = time.perf_counter()
    if views is None:
        views = track_views(infos, [c.name for c in cams], detector=detector, kind=options.detector,
                            threads=options.threads, progress=say, n_frames=options.n_frames,
                            skip_motion=options.skip_motion if options.detector == "tracking" else None,
                            skip_span=options.skip_span,
                            max_side=options.tracking_max_side if options.detector == "tracking" and detector is None
                            else options.max_side, on_frame=on_frame)  # fmt: skip
    else:
        by_name = {v.name: v for v in views}
        views = [by_name[c.name] for c in cams]
        if options.n_frames is not None:
            n = options.n_frames
            views = [dataclasses.replace(v, frames=v.frames[:n], xy_tfk2=v.xy_tfk2[:, :n], conf_tfk=v.conf_tfk[:, :n])
                     for v in views]  # fmt: skip
    for v in views:
        notes += v.problems
    t1 = time.perf_counter()
    report = None
    if calib_path is None:
        say("estimating the cameras from the people")
        keep, cams, fusion, report = self_calibrate(views, cams, options.fuse, infos[0].fps,
                                                    options.person_height_m, progress=say)  # fmt: skip
        infos, views = [infos[i] for i in keep], [views[i] for i in keep]
        notes += report.notes
    else:
        fusion = fuse_views(views, cams, options.fuse, fps=infos[0].fps, progress=say)
    t2 = time.perf_counter()
    fused = MultiviewResult(infos, cams, views, fusion, infos[0].fps, {"keypoints": t1 - t0, "fusion": t2 - t1},
                            notes + fusion.warnings, [], report)  # fmt: skip
    meanwhile = None if on_fused is None else partial(on_fused, fused)
    bodies = fit_bodies(fusion, options.body, hmr=hmr, progress=say, fps=infos[0].fps, meanwhile=meanwhile)
    fused.seconds["bodies"] = time.perf_counter() - t2
    return dataclasses.replace(fused, bodies=bodies)
