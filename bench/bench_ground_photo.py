"""The photo mode's ground against a calibrated 4-camera rig (pose2sim), per view, with its error decomposed.

    python -m bench.bench_ground_photo --cache /tmp/ground_photo.pkl   # fits kept for reruns

Every (view, frame) is one photo through the image pipeline (embedded backends), with the calibrated focal
given (the issue's real-data row) and without one (the pipeline's own focal, the default path); its people
(detection boxes, keypoints, fitted meshes) and the photo's line segments (vanishing.photo_line_segments
with the detection boxes, as the image mode detects them) are cached. The ground is then fitted on those fits
by each method of `methods()` (main's photo ground, as `frame_scene.photo_ground` had it, and this branch's),
against the calibration (world z up): the camera's height above the floor (pose2sim_single: above the lowest
triangulated foot point, the treadmill's belt), pitch and roll.

The decomposition of each photo's height error (metres, signed, the method's own contacts):
- "normal": the height with the method's normal minus the height with the true normal (the same bodies,
  contacts re-picked along it);
- "distance": the height with the true normal minus the same with every body moved along its ray to the
  4-view triangulated distance of its person (mid-hips; unmatched bodies left out);
- "feet": what is left, the true normal and the triangulated distances: which mesh points touch the floor.
The three add up to the height error (the bodies left out for want of a match aside).

Sets: pose2sim_single frames 0, 20, .., 80 is the tuning set (the constants were chosen there, calibrated
focal); pose2sim_single frames 10, 30, .., 90 (the same cameras) and pose2sim_multi frames 0, 20, .., 80 are
held out.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.accuracy_lab3d import match_people
from bench.bench_ground_multiview import _med
from bench.common import machine_description, markdown_table
from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.multiview.calibration import CalibratedCamera, load_qualisys_calibration
from pipelines.scene.frame_scene import footed_bodies
from pipelines.scene.ground import FootedBody, GroundPlane, fit_ground_over_time, unit_rows
from pipelines.types import BodyFit, Keypoints2D, Keypoints3D, PersonDetection, PersonResult

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "multiview"
SETS = [("pose2sim_single", "tuning", list(range(0, 100, 20))),
        ("pose2sim_single", "held-out frames", list(range(10, 100, 20))),
        ("pose2sim_multi", "held out", list(range(0, 100, 20)))]  # fmt: skip
FOOT_NAMES = ["left_heel", "right_heel", "left_foot_index", "right_foot_index"]


@dataclass
class Photo:
    """One view's frame through the image pipeline (calibrated focal), slimmed for the cache."""

    cam: str
    frame: int
    K_33: np.ndarray
    """The pipeline's intrinsics (the calibrated focal, the principal point at the image centre)."""
    width: int
    height: int
    people: list[PersonResult]
    """The people (detection box, 2D keypoints, the fitted mesh and joints; no masks, no faces)."""
    segments_n4: np.ndarray
    """The photo's line segments (vanishing.photo_line_segments with the detection boxes filled)."""
    ground: GroundPlane | None
    """The photo mode's own ground (frame.scene.ground) as the pipeline gave it."""
    masks_hw: list[np.ndarray] = field(default_factory=list)
    """Per person the detection mask (bool, packed with np.packbits on the flat image)."""
    fit_cpu_s: float = 0.0


@dataclass
class Capture:
    """A capture's photos and the 4-view references."""

    name: str
    role: str
    frames: list[int]
    own_focal: bool
    """True: the photos were fitted without a focal (the pipeline's own estimate, the default path)."""
    cams: list[CalibratedCamera]
    photos: dict[tuple[str, int], Photo]
    support_z: float
    """The floor's height (world z) under the heights: 0, or the treadmill's belt for pose2sim_single."""
    refs: dict[tuple[str, int], list[np.ndarray | None]] = field(default_factory=dict)
    """Per photo, per person: the matched person's triangulated BlazePose points (33, 3) in the world frame;
    None for a person matched in no other view."""


def _slim(p: PersonResult) -> PersonResult:
    d = p.detection
    det = PersonDetection(bbox_xyxy=np.asarray(d.bbox_xyxy), score=float(d.score), mask_hw=None,
                          keypoints2d=Keypoints2D(list(d.keypoints2d.names), np.asarray(d.keypoints2d.xy_k2),
                                                  np.asarray(d.keypoints2d.conf_k)))  # fmt: skip
    body = None
    if p.body is not None:
        b = p.body
        j = b.joints3d_cam
        body = BodyFit(model=b.model, params={}, verts_cam_v3=np.asarray(b.verts_cam_v3, dtype=np.float32),
                       faces_f3=np.zeros((0, 3), dtype=np.int32),
                       joints3d_cam=Keypoints3D(list(j.names), np.asarray(j.xyz_k3), frame=j.frame),
                       height_m=float(b.height_m), reprojection_px_mean=float(b.reprojection_px_mean),
                       reprojection_px_max=float(b.reprojection_px_max))  # fmt: skip
    return PersonResult(id=p.id, detection=det, body=body)


def collect(data: Path, name: str, role: str, frames: list[int], own_focal: bool = False) -> Capture:
    """Every (view, frame) through the image pipeline with the calibrated focal (`own_focal`: without one);
    the people matched across the views and triangulated."""
    from pipelines.modes.image import ImagePipeline
    from pipelines.multiview.video import read_frames
    from pipelines.scene.vanishing import photo_line_segments

    cams = [c for c in load_qualisys_calibration(data / "Calib.qca.txt") if (data / f"{c.name}.mp4").is_file()]
    pipeline = ImagePipeline()
    photos = {}
    for cam in cams:
        for index, rgb_hw3 in read_frames(data / f"{cam.name}.mp4", frames):
            cpu = time.process_time()
            res = pipeline.run_array(rgb_hw3, focal_px=None if own_focal else cam.camera.focal_px)
            cpu = time.process_time() - cpu
            boxes = np.array([p.detection.bbox_xyxy for p in res.people], dtype=np.float64).reshape(-1, 4)
            h, w = rgb_hw3.shape[:2]
            photos[(cam.name, index)] = Photo(
                cam=cam.name, frame=index, K_33=np.asarray(res.camera.K_33, dtype=np.float64), width=w, height=h,
                people=[_slim(p) for p in res.people], segments_n4=photo_line_segments(rgb_hw3, boxes),
                ground=None if res.scene is None else res.scene.ground,
                masks_hw=[np.packbits(np.asarray(p.detection.mask_hw) >= 0.5) if p.detection.mask_hw is not None
                          else None for p in res.people], fit_cpu_s=cpu)  # fmt: skip
            print(f"{name} {cam.name} frame {index}: {len(res.people)} people, {cpu:.1f} s CPU", flush=True)
    cap = Capture(name=name, role=role, frames=frames, own_focal=own_focal, cams=cams, photos=photos, support_z=0.0)
    foot_ids = [BLAZEPOSE_NAMES.index(n) for n in FOOT_NAMES]
    lows = []
    for f in frames:
        views = [photos[(c.name, f)].people for c in cams]
        refs: list[list[np.ndarray | None]] = [[None] * len(v) for v in views]
        for choice, xyz_world in match_people(views, cams, 40.0):
            for v, i in enumerate(choice):
                if i is not None:
                    refs[v][i] = xyz_world
            if np.isfinite(xyz_world[foot_ids, 2]).any():
                lows.append(float(np.nanmin(xyz_world[foot_ids, 2])))
        for v, c in enumerate(cams):
            cap.refs[(c.name, f)] = refs[v]
    if name == "pose2sim_single":  # the man walks on a treadmill: its belt is above the floor
        cap.support_z = float(np.median(lows))
    return cap


def load_captures(data: Path, cache: Path | None, own_focal: bool = True) -> list[Capture]:
    """The sets of SETS with the calibrated focal, and (`own_focal`) without one; read from / kept in `cache`."""
    cached = pickle.loads(cache.read_bytes()) if cache and cache.is_file() else {}
    out = []
    for own in (False, True) if own_focal else (False,):
        for name, role, frames in SETS:
            key = f"{name}:{frames}" + (":own focal" if own else "")
            if key not in cached:
                cached[key] = collect(data / name, name, role, frames, own)
                if cache:
                    cache.write_bytes(pickle.dumps(cached))
            out.append(cached[key])
    return out


@dataclass
class Method:
    """One way to put the photo's ground under its fitted people."""

    label: str
    fit: Callable[[Photo, list[FootedBody]], GroundPlane | None]


def methods() -> list[Method]:
    from pipelines.scene.frame_scene import photo_ground

    def ground(manhattan: bool) -> Callable[[Photo, list[FootedBody]], GroundPlane | None]:
        def fit(ph: Photo, bodies: list[FootedBody]) -> GroundPlane | None:
            rgb_hw3 = np.zeros((ph.height, ph.width, 3), dtype=np.uint8)  # only its size is read
            return photo_ground(rgb_hw3, ph.K_33, ph.people, bodies, all_segments_n4=ph.segments_n4,
                                manhattan=manhattan)  # fmt: skip
        return fit

    return [Method("main: vertical vanishing point, else the bodies (baseline)", ground(False)),
            Method("Manhattan frame, else vertical vanishing point, else the bodies", ground(True))]  # fmt: skip


@dataclass
class PhotoError:
    cam: str
    frame: int
    height_cm: float
    pitch_deg: float
    roll_deg: float
    up_source: str
    normal_cm: float
    """Height with the method's normal minus the height with the true normal (same bodies)."""
    distance_cm: float
    """Height with the true normal minus the same with the bodies at the triangulated distances (nan: none
    matched)."""
    feet_cm: float
    """Height with the true normal and the triangulated distances minus the truth."""
    cpu_ms: float


def _scaled(bodies: list[FootedBody], refs: list[np.ndarray | None], cam: CalibratedCamera) -> list[FootedBody]:
    """The bodies with a triangulated person, scaled about the camera to put their mid-hips at its distance."""
    hips = [BLAZEPOSE_NAMES.index(n) for n in ("left_hip", "right_hip")]
    out = []
    for b, ref in zip(bodies, refs, strict=True):
        if ref is None or not np.isfinite(ref[hips]).all():
            continue
        k = np.linalg.norm(cam.to_cam(ref[hips].mean(axis=0))) / np.linalg.norm(
            (b.joints["left_hip"] + b.joints["right_hip"]) / 2)
        out.append(FootedBody(verts_v3=b.verts_v3 * k, joints={n: v * k for n, v in b.joints.items()}))
    return out


def photo_errors(cap: Capture, method: Method) -> list[PhotoError]:
    from pipelines.scene.ground import pitch_deg, roll_deg

    cams = {c.name: c for c in cap.cams}
    out = []
    for (name, f), ph in sorted(cap.photos.items()):
        cam = cams[name]
        up_t = unit_rows(cam.cam_T_world_44[:3, :3] @ np.array([0.0, 0.0, 1.0]))
        h_t = float(cam.centre_world_3[2]) - cap.support_z
        kept = [p for p in ph.people if p.body is not None and footed_bodies([p])]
        bodies = footed_bodies(kept)
        refs = [cap.refs[(name, f)][ph.people.index(p)] for p in kept]
        cpu = time.process_time()
        g = method.fit(ph, bodies)
        cpu = time.process_time() - cpu
        if g is None:
            continue
        g_true_up = fit_ground_over_time([bodies], up_cam_3=up_t)
        scaled = _scaled(bodies, refs, cam)
        g_ref = fit_ground_over_time([scaled], up_cam_3=up_t) if scaled else None
        h_ref = np.nan if g_ref is None else g_ref.offset_m
        out.append(PhotoError(
            cam=name, frame=f, height_cm=100 * (g.offset_m - h_t), pitch_deg=g.pitch_deg - pitch_deg(up_t),
            roll_deg=g.roll_deg - roll_deg(up_t), up_source=g.up_source,
            normal_cm=100 * (g.offset_m - g_true_up.offset_m), distance_cm=100 * (g_true_up.offset_m - h_ref),
            feet_cm=100 * (h_ref - h_t), cpu_ms=1000 * cpu))  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the fitted photos (read if present)")
    parser.add_argument("--calibrated-only", action="store_true", help="leave out the photos fitted without a focal")
    args = parser.parse_args(argv)
    caps = load_captures(args.data, args.cache, own_focal=not args.calibrated_only)
    set_rows, view_rows = [], []
    for cap in caps:
        label = (f"{cap.name} {cap.frames[0]}, {cap.frames[1]}, .., {cap.frames[-1]} ({cap.role}), "
                 + ("own focal" if cap.own_focal else "calibrated focal"))
        for m in methods():
            errs = photo_errors(cap, m)
            sources = {s: sum(e.up_source == s for e in errs) for s in ("manhattan_frame", "vanishing_point", "bodies")}
            took = ", ".join(f"{s} {n}" for s, n in sources.items() if n)
            set_rows.append([label, m.label, str(len(errs)), _med([e.height_cm for e in errs]),
                             _med([e.pitch_deg for e in errs]), _med([e.roll_deg for e in errs]), took,
                             _med([e.normal_cm for e in errs]), _med([e.distance_cm for e in errs]),
                             _med([e.feet_cm for e in errs]),
                             f"{np.median([e.cpu_ms for e in errs]):.0f}"])  # fmt: skip
            for cam in cap.cams:
                ce = [e for e in errs if e.cam == cam.name]
                per = " / ".join(f"{e.height_cm:+.0f}" for e in ce)
                view_rows.append([label, cam.name, m.label, _med([e.height_cm for e in ce], True), per,
                                  _med([e.pitch_deg for e in ce], True), _med([e.roll_deg for e in ce], True),
                                  _med([e.normal_cm for e in ce], True), _med([e.distance_cm for e in ce], True),
                                  _med([e.feet_cm for e in ce], True),
                                  str(sum(e.up_source != "bodies" for e in ce))])  # fmt: skip
    print(f"\nMachine: {machine_description()}; load average {' / '.join(f'{v:.1f}' for v in os.getloadavg())}; "
          f"process CPU {resource.getrusage(resource.RUSAGE_SELF).ru_utime:.0f} s. Medians of absolute errors over "
          "the photos; the decomposition's parts as medians of their absolute values (cm).\n")  # fmt: skip
    print(markdown_table(["set (frames)", "ground", "photos", "height err (cm)", "pitch err (deg)", "roll err (deg)",
                          "up from", "normal part (cm)", "distance part (cm)", "feet part (cm)",
                          "ground fit CPU ms"], set_rows))  # fmt: skip
    print("\nPer view (signed medians over the 5 photos; heights per frame; the parts signed):\n")
    print(markdown_table(["set (frames)", "view", "ground", "height err (cm)", "per frame (cm)", "pitch err (deg)",
                          "roll err (deg)", "normal part", "distance part", "feet part", "up from the lines"],
                         view_rows))  # fmt: skip


if __name__ == "__main__":
    main()
