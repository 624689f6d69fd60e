"""Ground plane from one view's fitted bodies against a calibrated 4-camera rig (pose2sim).

    python -m bench.bench_ground_multiview                        # the three sets below
    python -m bench.bench_ground_multiview --cache /tmp/ground.pkl  # keep the fitted bodies for reruns

Per view and frame, the image pipeline (embedded backends) fits the people twice: with the calibrated
focal given ("cal") and without a focal (the pipeline's own estimate, the default path: "own"). The
ground is put under their feet: "first slice" (the baseline, bench.ground_first_slice: one person
upright, several people a least-squares plane through their soles), "per photo"
(pipelines.scene.ground.fit_ground: heel and toe contacts of all people, the bodies' up as the normal's
prior, one distance error per person) and "over time" (fit_ground_over_time on all the set's frames of
that view, a static camera); and, as a diagnostic, the same with every body moved along its ray to the
triangulated distance of its person (the bodies' distance errors removed).
Against the calibration (Qualisys, world z up, read by pipelines.multiview.calibration): the camera's
pitch and roll (the world's up in the camera frame) and its height. pose2sim_single: the man is on a
treadmill, whose belt is above z = 0: the height is taken above the lowest triangulated foot point
(heels and toes of the 4-view BlazePose triangulation of bench.accuracy_multiview, median over the
frames). pose2sim_multi: the people stand on the floor, z = 0. Root distance errors: every fitted body
matched to a person triangulated from the 4 views (bench.accuracy_lab3d.match_people), mid-hips. The
second table gives per view the focal error (own), the distance errors and the signed height and pitch
errors (the issue's real-data row).

Sets: the constants of pipelines.scene.ground were chosen on pose2sim_single frames 0, 20, .., 80
("tuning"); pose2sim_single frames 10, 30, .., 90 and pose2sim_multi frames 0, 20, .., 80 are held out.
"""

from __future__ import annotations

import argparse
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.accuracy_lab3d import matched_hip_distances
from bench.accuracy_multiview import CachedSegmenter, Method, observe
from bench.common import machine_description, markdown_table
from bench.ground_first_slice import first_slice_ground
from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.multiview.calibration import CalibratedCamera, load_qualisys_calibration
from pipelines.multiview.triangulate import triangulate_points
from pipelines.scene.frame_scene import footed_bodies
from pipelines.scene.ground import FootedBody, GroundPlane, fit_ground, fit_ground_over_time
from pipelines.scene.vanishing import (
    VanishingGates,
    boxes_mask,
    fit_ground_with_vanishing,
    line_segments,
    segments_off_mask,  # fmt: skip
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "multiview"
FOOT_NAMES = ["left_heel", "right_heel", "left_foot_index", "right_foot_index"]
SETS = [("pose2sim_single", "tuning", list(range(0, 100, 20))),
        ("pose2sim_single", "held out", list(range(10, 100, 20))),
        ("pose2sim_multi", "held out", list(range(0, 100, 20)))]  # fmt: skip


@dataclass
class ViewFrames:
    """One view's fitted bodies over a set's frames: with the calibrated focal, and with the pipeline's own."""

    cam: CalibratedCamera
    bodies: list[list[FootedBody]]
    """Per frame the bodies fitted with the calibrated focal (camera frame, metres; feet-only meshes)."""
    ref_hip_cam: list[np.ndarray | None]
    """Per frame the triangulated mid-hip of the first person in this camera's frame; None if unknown."""
    ref_dist_m: list[list[float | None]] = field(default_factory=list)
    """Per frame, per body of `bodies`: its person's triangulated mid-hip distance (people matched across
    the views), None if unmatched."""
    bodies_est: list[list[FootedBody]] = field(default_factory=list)
    """Per frame the bodies fitted without a focal (the pipeline's own estimate, the default path)."""
    ref_dist_est_m: list[list[float | None]] = field(default_factory=list)
    focal_est_px: list[float] = field(default_factory=list)
    """Per frame the pipeline's own focal (pixels)."""


def _fitted(people: list) -> list:  # noqa: ANN001 - PersonResult
    """The people that footed_bodies keeps, in its order."""
    return [p for p in people if p.body is not None and footed_bodies([p])]


def collect(data: Path, frames: list[int]) -> tuple[list[ViewFrames], float]:
    """Run the image pipeline on every (view, frame), with the calibrated focal and without one; also the
    lowest triangulated foot point's z."""
    from pipelines.modes.image import ImagePipeline
    from pipelines.scene.ground import feet_only

    cams = [c for c in load_qualisys_calibration(data / "Calib.qca.txt") if (data / f"{c.name}.mp4").is_file()]
    pipeline = ImagePipeline()
    runs: list[tuple[list, list, float]] = []  # per (view, frame): people (true focal), people (own), own focal

    def predict(rgb_hw3: np.ndarray, camera) -> dict | None:  # noqa: ANN001
        result = pipeline.run_array(rgb_hw3, focal_px=camera.focal_px)
        own = pipeline.run_array(rgb_hw3)
        runs.append((_fitted(result.people), _fitted(own.people), float(own.camera.K_33[0][0])))
        first = footed_bodies(runs[-1][0])
        return first[0].joints if first else None

    obs = observe(cams, frames, data, CachedSegmenter(), [Method("hmr", predict, absolute=True)])
    refs = [triangulate_points(obs.xy_fvn2[i], obs.conf_fvn[i], cams, min_conf=0.1, outlier_px=50.0)
            for i in range(len(frames))]  # fmt: skip
    foot_ids = [BLAZEPOSE_NAMES.index(n) for n in FOOT_NAMES]
    hip_ids = [BLAZEPOSE_NAMES.index(n) for n in ("left_hip", "right_hip")]
    support_z = float(np.nanmedian([np.nanmin(r.xyz_n3[foot_ids, 2]) for r in refs]))
    n = len(frames)
    dist_true = [matched_hip_distances([runs[v * n + i][0] for v in range(len(cams))], cams) for i in range(n)]
    dist_est = [matched_hip_distances([runs[v * n + i][1] for v in range(len(cams))], cams) for i in range(n)]
    views = []
    for v, cam in enumerate(cams):
        hips = []
        for r in refs:
            hip_c = cam.to_cam(r.xyz_n3[hip_ids].mean(axis=0))
            hips.append(hip_c if np.isfinite(hip_c).all() else None)
        mine = runs[v * n:(v + 1) * n]
        views.append(ViewFrames(
            cam=cam, bodies=[[feet_only(b) for b in footed_bodies(t)] for t, _, _ in mine], ref_hip_cam=hips,
            ref_dist_m=[dist_true[i][v] for i in range(n)],
            bodies_est=[[feet_only(b) for b in footed_bodies(o)] for _, o, _ in mine],
            ref_dist_est_m=[dist_est[i][v] for i in range(n)], focal_est_px=[f for _, _, f in mine]))  # fmt: skip
    return views, support_z


def _truth(vf: ViewFrames, truth_z: float) -> GroundPlane:
    R = vf.cam.cam_T_world_44[:3, :3]
    return GroundPlane(normal_cam=R @ np.array([0.0, 0.0, 1.0]), contacts_cam_n3=np.zeros((0, 3)),
                       offset_m=float(vf.cam.centre_world_3[2]) - truth_z, source="calibration")  # fmt: skip


def _hip_dist(b: FootedBody) -> float:
    return float(np.linalg.norm((b.joints["left_hip"] + b.joints["right_hip"]) / 2))


def at_reference_distance(bodies: list[FootedBody], refs: list[float | None]) -> list[FootedBody]:
    """The bodies scaled about the camera so that their mid-hip is at the triangulated distance (the
    bodies' distance error removed; a diagnostic); unmatched bodies are left out."""
    out = []
    for b, ref in zip(bodies, refs, strict=True):
        if ref is not None:
            k = ref / _hip_dist(b)
            out.append(FootedBody(verts_v3=b.verts_v3 * k, joints={n: v * k for n, v in b.joints.items()}))
    return out


@dataclass
class Variant:
    """One way to get the ground of a view: which bodies, which fit, per photo or over time."""

    label: str
    bodies: Callable[[ViewFrames], list[list[FootedBody]]]
    fit: Callable[[list[FootedBody]], GroundPlane | None]
    over_time: bool = False
    fit_over_time: Callable = fit_ground_over_time


def view_errors(vf: ViewFrames, truth_z: float, variant: Variant) -> np.ndarray:
    """(n, 3) height (cm), pitch and roll (deg) errors of every frame's ground (one row over time)."""
    truth = _truth(vf, truth_z)
    frames = variant.bodies(vf)
    grounds = [variant.fit_over_time(frames)] if variant.over_time else [variant.fit(b) for b in frames]
    rows = [(100 * (g.camera_height_m - truth.camera_height_m), g.pitch_deg - truth.pitch_deg,
             g.roll_deg - truth.roll_deg) for g in grounds if g is not None]  # fmt: skip
    return np.array(rows).reshape(-1, 3)


def distance_errors(vf: ViewFrames, own_focal: bool) -> list[float]:
    """Signed mid-hip distance errors (%) of every matched body against the triangulated people."""
    bodies, refs = (vf.bodies_est, vf.ref_dist_est_m) if own_focal else (vf.bodies, vf.ref_dist_m)
    return [100 * (_hip_dist(b) / ref - 1) for fr, rf in zip(bodies, refs, strict=True)
            for b, ref in zip(fr, rf, strict=True) if ref is not None]  # fmt: skip


def _variants() -> list[Variant]:
    def calibrated(vf: ViewFrames) -> list[list[FootedBody]]:
        return vf.bodies

    def own(vf: ViewFrames) -> list[list[FootedBody]]:
        return vf.bodies_est

    def at_ref(vf: ViewFrames) -> list[list[FootedBody]]:
        return [at_reference_distance(b, r) for b, r in zip(vf.bodies, vf.ref_dist_m, strict=True)]

    return [
        Variant("first slice (baseline), calibrated focal", calibrated, first_slice_ground),
        Variant("per photo, calibrated focal", calibrated, fit_ground),
        Variant("over time, calibrated focal", calibrated, fit_ground, over_time=True),
        Variant("per photo, own focal (default path)", own, fit_ground),
        Variant("over time, own focal", own, fit_ground, over_time=True),
        Variant("per photo, bodies at the triangulated distance (diagnostic)", at_ref, fit_ground),
        Variant("over time, bodies at the triangulated distance (diagnostic)", at_ref, fit_ground, over_time=True),
    ]


def view_segments(data: Path, views: list[ViewFrames], frames: list[int]) -> list[list[np.ndarray]]:
    """Per view, per frame: the image's line segments (n, 4) off the fitted people (their projected joints'
    boxes, grown by 15 %), and the image size (width, height) as the last item of each view's list."""
    from bench.accuracy_multiview import read_frames

    out = []
    for vf in views:
        segs, size = [], (0, 0)
        for i, (_, rgb_hw3) in enumerate(read_frames(data / f"{vf.cam.name}.mp4", frames)):
            h, w = rgb_hw3.shape[:2]
            size = (w, h)
            K = vf.cam.camera.K_33
            boxes = []
            for b in vf.bodies[i]:
                j = np.stack(list(b.joints.values()))
                j = j[j[:, 2] > 0.1]
                uv = (j[:, :2] / j[:, 2:]) @ K[:2, :2].T + K[:2, 2]
                boxes.append([*uv.min(axis=0), *uv.max(axis=0)])
            segs.append(segments_off_mask(line_segments(rgb_hw3), boxes_mask(np.array(boxes), w, h, 0.15)))
        out.append([*segs, np.array(size)])
    return out


def vp_errors(vf: ViewFrames, segs: list[np.ndarray], truth_z: float, own_focal: bool, over_time: bool,
              gates: VanishingGates) -> tuple[np.ndarray, int]:  # fmt: skip
    """(n, 3) height (cm), pitch, roll (deg) errors of the ground with the vanishing point's normal where it
    is supported; and how many estimates took it."""
    truth = _truth(vf, truth_z)
    w, h = (int(v) for v in segs[-1])
    frames_segs = segs[:-1]
    if own_focal:
        bodies = vf.bodies_est
        Ks = [np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1.0]]) for f in vf.focal_est_px]
    else:
        bodies, Ks = vf.bodies, [vf.cam.camera.K_33] * len(frames_segs)
    if over_time:  # one focal for the camera: the median of the frames' (own), the calibrated one (cal)
        K = Ks[0] if not own_focal else np.array([[np.median(vf.focal_est_px), 0, w / 2],
                                                  [0, np.median(vf.focal_est_px), h / 2], [0, 0, 1.0]])
        grounds = [fit_ground_with_vanishing(bodies, frames_segs, K, w, h, gates=gates)]
    else:
        grounds = [fit_ground_with_vanishing([b], [sg], K, w, h, gates=gates)
                   for b, sg, K in zip(bodies, frames_segs, Ks, strict=True)]  # fmt: skip
    rows = [(100 * (g.camera_height_m - truth.camera_height_m), g.pitch_deg - truth.pitch_deg,
             g.roll_deg - truth.roll_deg) for g in grounds if g is not None]  # fmt: skip
    return np.array(rows).reshape(-1, 3), sum(1 for g in grounds if g is not None and g.up_source != "bodies")


def _med(values: np.ndarray | list[float], signed: bool = False) -> str:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if not v.size:
        return "–"
    return f"{np.median(v):+.1f}" if signed else f"{np.median(np.abs(v)):.1f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--cache", type=Path, default=None, help="pickle of the fitted bodies (read if present)")
    args = parser.parse_args(argv)
    cached = pickle.loads(args.cache.read_bytes()) if args.cache and args.cache.is_file() else {}
    rows, view_rows, vp_rows = [], [], []
    variants = _variants()
    gates = VanishingGates()
    for name, role, frames in SETS:
        key = f"{name}:{frames}"
        if key not in cached:
            cached[key] = collect(args.data / name, frames)
            if args.cache:
                args.cache.write_bytes(pickle.dumps(cached))
        views, support_z = cached[key]
        if f"segments:{key}" not in cached:
            cached[f"segments:{key}"] = view_segments(args.data / name, views, frames)
            if args.cache:
                args.cache.write_bytes(pickle.dumps(cached))
        segs = cached[f"segments:{key}"]
        truth_z = support_z if name == "pose2sim_single" else 0.0
        label = f"{name} {frames[0]}, {frames[1]}, .., {frames[-1]} ({role})"
        people = np.mean([len(b) for vf in views for b in vf.bodies])
        per_view = {v.label: [view_errors(vf, truth_z, v) for vf in views] for v in variants}
        for v in variants:
            e = np.concatenate(per_view[v.label])
            own = "own focal" in v.label
            dist = [d for vf in views for d in distance_errors(vf, own)]
            rows.append([label, f"{people:.1f}", v.label, str(len(e)), _med(e[:, 0]), _med(e[:, 1]), _med(e[:, 2]),
                         _med(dist)])  # fmt: skip
        for own, over_time in ((False, False), (False, True), (True, False), (True, True)):
            res = [vp_errors(vf, sg, truth_z, own, over_time, gates) for vf, sg in zip(views, segs, strict=True)]
            e = np.concatenate([r[0] for r in res])
            took = sum(r[1] for r in res)
            what = ("over time" if over_time else "per photo") + (", own focal" if own else ", calibrated focal")
            rows.append([label, f"{people:.1f}", f"{what}, vanishing point ({took} of {len(e)} took it)", str(len(e)),
                         _med(e[:, 0]), _med(e[:, 1]), _med(e[:, 2]), "–"])  # fmt: skip
            if not own:
                for vf, r in zip(views, res, strict=True):
                    vp_rows.append([label, vf.cam.name, what, str(r[1]), _med(r[0][:, 0], True), _med(r[0][:, 1], True),
                                    _med(r[0][:, 2], True)])  # fmt: skip
        for i, vf in enumerate(views):
            focal = [100 * (f / vf.cam.camera.focal_px - 1) for f in vf.focal_est_px]
            cells = [label, vf.cam.name, _med(focal, True), _med(distance_errors(vf, True), True),
                     _med(distance_errors(vf, False), True)]
            for k in (3, 1, 4, 2):  # own focal, calibrated; per photo, over time
                e = per_view[variants[k].label][i]
                cells += [_med(e[:, 0], True), _med(e[:, 1], True)]
            view_rows.append(cells)
    print(f"\nMachine: {machine_description()}; medians of absolute errors over views x frames ('over time': "
          "over the 4 views); root distance: every body matched to a triangulated person.\n")  # fmt: skip
    print(markdown_table(["set (frames)", "fitted people per photo", "ground", "estimates", "height err (cm)",
                          "pitch err (deg)", "roll err (deg)", "root dist. err (%)"], rows))  # fmt: skip
    print("\nPer view (signed medians over the frames; own = the pipeline's focal, the default path; cal = the "
          "calibrated focal given):\n")  # fmt: skip
    print(markdown_table(["set (frames)", "view", "focal err (%)", "root dist. err own (%)",
                          "root dist. err cal (%)", "height err own, per photo (cm)", "pitch err own, per photo (deg)",
                          "height err cal, per photo (cm)", "pitch err cal, per photo (deg)",
                          "height err own, over time (cm)", "pitch err own, over time (deg)",
                          "height err cal, over time (cm)", "pitch err cal, over time (deg)"], view_rows))  # fmt: skip
    print("\nPer view, the vanishing point's ground (calibrated focal; signed medians):\n")
    print(markdown_table(["set (frames)", "view", "ground", "took the vanishing point", "height err (cm)",
                          "pitch err (deg)", "roll err (deg)"], vp_rows))  # fmt: skip


if __name__ == "__main__":
    main()
