"""Accuracy of single-view 3D bodies against keypoints triangulated from a calibrated camera rig.

    python -m bench.accuracy_multiview                      # every 10th frame of the 4-camera set
    python -m bench.accuracy_multiview --every 5 --views cam01,cam03 --json out.json
    python -m bench.accuracy_multiview --methods hmr_embedded --true-focal

1. 2D keypoints on every view (BlazePose through the segmentation stage, backend "embedded").
2. Reference: the keypoints triangulated from all views (undistorted first; robust to a bad view).
3. Every method predicts, from one image and its camera, COCO-17 joints in that camera's OpenCV
   frame (metres); a method is a function (rgb_hw3, camera) -> {joint name: xyz (3,)}.
4. Metrics against the reference moved into each view's camera frame: PA-MPJPE (Procrustes with
   scale) and root-relative MPJPE on the 12 body joints (root = mid-hip), PA-MPJPE on all 17
   joints, and for methods that place the body in space, the error of the root's distance from
   the camera in % of the reference distance.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bench.common import (
    BODY12_NAMES,
    COCO17_NAMES,
    DATA_DIR,
    ROOT_NAMES,
    machine_description,
    markdown_table,
    pa_mpjpe,
    root_distance_error,
    root_relative_mpjpe,
    save_json,
    stack_joints,
)
from pipelines.errors import UserFacingError
from pipelines.io.video_io import probe
from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.multiview.calibration import CalibratedCamera, load_qualisys_calibration
from pipelines.multiview.triangulate import TriangulationResult, triangulate_points
from pipelines.multiview.video import frame_count, read_frames
from pipelines.registry import BackendUnavailable, create
from pipelines.types import Camera, PersonDetection

DEFAULT_DATA = DATA_DIR / "multiview" / "pose2sim_single"

Joints = dict[str, np.ndarray]
"""Joint name -> xyz (3,) in metres, in the camera's OpenCV frame."""
PredictFn = Callable[[np.ndarray, Camera], Joints | None]
"""A single-view method: (RGB image (H, W, 3), its camera) -> joints, or None when nobody is found."""


@dataclass
class Method:
    """A single-view 3D method under evaluation."""

    name: str
    predict: PredictFn
    absolute: bool
    """True when the joints are placed in space (the root distance error is meaningful)."""
    note: str = ""
    """Why the method is unavailable, or an error that stopped it; empty when all went well."""
    seconds: list[float] = field(default_factory=list)
    """Time per predicted image."""


class CachedSegmenter:
    """The segmentation stage, remembering its last answer so that methods reuse the detection of
    the image the reference keypoints came from (the same array object) instead of running again."""

    def __init__(self) -> None:
        self._segmenter = create("segmentation", "embedded")
        self._last: tuple[np.ndarray, list[PersonDetection]] | None = None
        self.seconds: list[float] = []

    def detect(self, rgb_hw3: np.ndarray) -> list[PersonDetection]:
        if self._last is not None and self._last[0] is rgb_hw3:
            return self._last[1]
        start = time.perf_counter()
        people = self._segmenter.detect(rgb_hw3)
        self.seconds.append(time.perf_counter() - start)
        self._last = (rgb_hw3, people)
        return people


def mediapipe_world_method(segmenter: CachedSegmenter) -> Method:
    """Baseline: MediaPipe's world landmarks (metres, hip-centred, camera-aligned axes); no position."""

    def predict(rgb_hw3: np.ndarray, camera: Camera) -> Joints | None:
        people = segmenter.detect(rgb_hw3)
        if not people:
            return None
        kp3d = people[0].keypoints3d_hip
        return {n: kp3d.xyz_k3[i] for i, n in enumerate(kp3d.names) if n in COCO17_NAMES}

    return Method("mediapipe_world", predict, absolute=False)


def hmr_embedded_method(true_focal: bool) -> Method:
    """Our image pipeline's fitted body; with `true_focal` it gets the calibrated focal length."""
    name = "hmr_embedded" + (" (true focal)" if true_focal else "")
    try:
        from pipelines.modes.image import ImagePipeline
    except ImportError as err:
        return Method(name, lambda rgb, cam: None, absolute=True, note=f"not importable yet ({err})")
    pipeline = ImagePipeline()

    def predict(rgb_hw3: np.ndarray, camera: Camera) -> Joints | None:
        result = pipeline.run_array(rgb_hw3, focal_px=camera.focal_px if true_focal else None)
        if not result.people or result.people[0].body is None:
            return None
        joints = result.people[0].body.joints3d_cam
        return {n: joints.xyz_k3[i] for i, n in enumerate(joints.names)}

    return Method(name, predict, absolute=True)


@dataclass
class SampleScore:
    """The metrics of one method on one (frame, view)."""

    frame: int
    view: str
    pa_mpjpe12_mm: float
    mpjpe_rr12_mm: float
    pa_mpjpe17_mm: float | None
    root_dist_err_pct: float | None
    """Signed: (|root_pred| - |root_ref|) / |root_ref| in %; None for methods without a position."""


def _camera_for_image(cam: CalibratedCamera, rgb_hw3: np.ndarray) -> Camera:
    """The calibrated camera with the decoded image's size (K as calibrated, even when they differ)."""
    return dataclasses.replace(cam.camera, width=rgb_hw3.shape[1], height=rgb_hw3.shape[0])


def score_sample(pred: Joints, ref_cam: Joints, absolute: bool, frame: int, view: str) -> SampleScore | None:
    """Metrics of one prediction against the reference in the same camera frame; None if the 12 body
    joints are not all available in both."""
    pred12, ref12 = stack_joints(pred, BODY12_NAMES), stack_joints(ref_cam, BODY12_NAMES)
    if pred12 is None or ref12 is None:
        return None
    root_ids = [BODY12_NAMES.index(n) for n in ROOT_NAMES]
    pred17, ref17 = stack_joints(pred, COCO17_NAMES), stack_joints(ref_cam, COCO17_NAMES)
    pa17 = None if pred17 is None or ref17 is None else 1000 * pa_mpjpe(pred17, ref17)
    root_err = None
    if absolute:
        root_err = 100 * root_distance_error(pred12[root_ids].mean(axis=0), ref12[root_ids].mean(axis=0))
    return SampleScore(
        frame=frame,
        view=view,
        pa_mpjpe12_mm=1000 * pa_mpjpe(pred12, ref12),
        mpjpe_rr12_mm=1000 * root_relative_mpjpe(pred12, ref12, root_ids),
        pa_mpjpe17_mm=pa17,
        root_dist_err_pct=root_err,
    )


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _median(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.median(kept)) if kept else None


def summarise(scores: list[SampleScore]) -> dict[str, float | None]:
    root = [s.root_dist_err_pct for s in scores]
    return {
        "pa_mpjpe12_mm": _mean([s.pa_mpjpe12_mm for s in scores]),
        "pa_mpjpe12_mm_median": _median([s.pa_mpjpe12_mm for s in scores]),
        "pa_mpjpe17_mm": _mean([s.pa_mpjpe17_mm for s in scores]),
        "mpjpe_rr12_mm": _mean([s.mpjpe_rr12_mm for s in scores]),
        "root_dist_abs_err_pct": _mean([None if r is None else abs(r) for r in root]),
        "root_dist_signed_err_pct": _mean(root),
    }


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="folder with camNN.mp4 and the calibration"
    )
    parser.add_argument("--calib", type=Path, default=None, help="calibration (default: DATA/Calib.qca.txt)")
    parser.add_argument("--frames", default=None, help="comma-separated frame indices (overrides --every)")
    parser.add_argument("--every", type=int, default=10, help="use every N-th frame (default 10)")
    parser.add_argument("--views", default=None, help="comma-separated camera names (default: all)")
    parser.add_argument("--methods", default="mediapipe_world,hmr_embedded", help="comma-separated methods")
    parser.add_argument("--true-focal", action="store_true", help="give hmr_embedded the calibrated focal")
    parser.add_argument("--outlier-px", type=float, default=50.0, help="triangulation outlier threshold (px)")
    parser.add_argument("--json", type=Path, default=None, help="also save all numbers to this JSON file")
    parser.add_argument("--no-fused", action="store_true", help="skip the fused rows (bench.multiview_fused_rows)")
    parser.add_argument("--cache", type=Path, default=None, help="folder for the fused rows' per-view tracks (reused)")
    parser.add_argument("--use", default=None, help="label of the data in the fused table (e.g. 'held out')")
    return parser.parse_args(argv)


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _select_views(cams: list[CalibratedCamera], views: str | None, data: Path) -> list[CalibratedCamera]:
    if views:
        wanted = _split(views)
        known = [c.name for c in cams]
        unknown = [v for v in wanted if v not in known]
        if unknown:
            raise UserFacingError(
                f"Unknown view(s) {', '.join(unknown)}; the calibration has {', '.join(known)}."
            )
        cams = [c for c in cams if c.name in wanted]
    cams = [c for c in cams if (data / f"{c.name}.mp4").is_file()]
    if len(cams) < 2:
        raise UserFacingError("The benchmark needs at least two views with a video and a calibration.")
    return cams


def _build_methods(names: list[str], segmenter: CachedSegmenter, true_focal: bool) -> list[Method]:
    methods = []
    for name in names:
        if name == "mediapipe_world":
            methods.append(mediapipe_world_method(segmenter))
        elif name == "hmr_embedded":
            methods.append(hmr_embedded_method(true_focal))
        else:
            raise UserFacingError(f"Unknown method {name!r}; known: mediapipe_world, hmr_embedded.")
    return methods


def _run_method(method: Method, rgb_hw3: np.ndarray, camera: Camera) -> Joints | None:
    if method.note:
        return None
    start = time.perf_counter()
    try:
        joints = method.predict(rgb_hw3, camera)
    except UserFacingError:
        joints = None  # e.g. nobody found: a miss, not a crash
    except Exception as err:  # a broken method is reported and skipped; the others go on
        method.note = f"stopped after an error: {type(err).__name__}: {err}"
        tqdm.write(f"note: {method.name} {method.note}")
        return None
    method.seconds.append(time.perf_counter() - start)
    return joints


@dataclass
class Observations:
    """2D keypoints of every (frame, view) and the predictions of every method."""

    xy_fvn2: np.ndarray
    """BlazePose keypoints in (distorted) pixels, NaN where nobody was found."""
    conf_fvn: np.ndarray
    """Their confidences (0 where nobody was found)."""
    preds: dict[str, dict[tuple[int, int], Joints | None]]
    """Method name -> (frame index, view position) -> joints in that view's camera frame."""


def observe(
    cams: list[CalibratedCamera],
    frames: list[int],
    data: Path,
    segmenter: CachedSegmenter,
    methods: list[Method],
) -> Observations:
    """Decode each video once; detect 2D keypoints and run every method on every wanted frame."""
    n_points = len(BLAZEPOSE_NAMES)
    xy_fvn2 = np.full((len(frames), len(cams), n_points, 2), np.nan)
    conf_fvn = np.zeros((len(frames), len(cams), n_points))
    preds: dict[str, dict[tuple[int, int], Joints | None]] = {m.name: {} for m in methods}
    frame_pos = {f: i for i, f in enumerate(frames)}
    with tqdm(total=len(frames) * len(cams), desc="views x frames", unit="img") as progress:
        for v, cam in enumerate(cams):
            for index, rgb_hw3 in read_frames(data / f"{cam.name}.mp4", frames):
                people = segmenter.detect(rgb_hw3)
                if people:
                    kp2d = people[0].keypoints2d
                    for k, name in enumerate(BLAZEPOSE_NAMES):
                        if name in kp2d.names:
                            j = kp2d.names.index(name)
                            xy_fvn2[frame_pos[index], v, k] = kp2d.xy_k2[j]
                            conf_fvn[frame_pos[index], v, k] = kp2d.conf_k[j]
                camera = _camera_for_image(cam, rgb_hw3)
                for m in methods:
                    preds[m.name][(index, v)] = _run_method(m, rgb_hw3, camera)
                progress.update(1)
    return Observations(xy_fvn2=xy_fvn2, conf_fvn=conf_fvn, preds=preds)


def reference_stats(
    refs: list[TriangulationResult], obs: Observations, cams: list[CalibratedCamera], min_conf: float
) -> dict:
    """Reprojection errors of the triangulated reference: overall, body joints, per view; outliers."""
    body_ids = [BLAZEPOSE_NAMES.index(n) for n in BODY12_NAMES]
    used_err = np.concatenate([r.reproj_px_vn[r.used_vn] for r in refs])
    body_err = np.concatenate([r.reproj_px_vn[:, body_ids][r.used_vn[:, body_ids]] for r in refs])
    per_view_px: dict[str, float | None] = {}
    for v, cam in enumerate(cams):
        err = np.concatenate([r.reproj_px_vn[v][r.used_vn[v]] for r in refs])
        per_view_px[cam.name] = float(np.median(err)) if len(err) else None
    observed = np.isfinite(obs.xy_fvn2).all(-1) & (obs.conf_fvn >= min_conf)
    used = np.stack([r.used_vn for r in refs])
    return {
        "median_reproj_px": float(np.median(used_err)) if len(used_err) else float("nan"),
        "median_reproj_px_body12": float(np.median(body_err)) if len(body_err) else float("nan"),
        "median_reproj_px_per_view": per_view_px,
        "dropped_view_fraction": float(1 - used.sum() / max(observed.sum(), 1)),
        "points_triangulated_fraction": float(np.mean([r.valid_n.mean() for r in refs])),
    }


def evaluate(
    method: Method,
    obs: Observations,
    refs: list[TriangulationResult],
    cams: list[CalibratedCamera],
    frames: list[int],
) -> dict:
    """All metrics of one method, summarised and per sample."""
    coco_ids = [BLAZEPOSE_NAMES.index(n) for n in COCO17_NAMES]
    scores: list[SampleScore] = []
    n_missed = 0
    for i, frame in enumerate(frames):
        ref_coco_k3 = refs[i].xyz_n3[coco_ids]
        for v, cam in enumerate(cams):
            pred = obs.preds[method.name].get((frame, v))
            if pred is None:
                n_missed += int(not method.note)
                continue
            ref_cam_k3 = cam.to_cam(ref_coco_k3)
            ref_cam = dict(zip(COCO17_NAMES, ref_cam_k3, strict=True))
            score = score_sample(pred, ref_cam, method.absolute, frame, cam.name)
            if score is not None:
                scores.append(score)
    return {
        "available": not method.note,
        "note": method.note,
        "absolute": method.absolute,
        "n_samples": len(scores),
        "n_missed": n_missed,
        "s_per_image": float(np.mean(method.seconds)) if method.seconds else None,
        **summarise(scores),
        "samples": [dataclasses.asdict(s) for s in scores],
    }


TABLE_HEADERS = [
    "method",
    "samples (frame x view)",
    "PA-MPJPE 12 (mm)",
    "PA-MPJPE 17 (mm)",
    "root-rel. MPJPE 12 (mm)",
    "root dist. err (%)",
    "root dist. signed (%)",
    "s / image",
]


def print_report(report: dict) -> None:
    ref = report["reference"]
    per_view = ", ".join(
        f"{k} {v:.1f} px" for k, v in ref["median_reproj_px_per_view"].items() if v is not None
    )
    print(f"\nMachine: {report['machine']}")
    print(
        f"Reference: BlazePose 2D keypoints triangulated from {len(ref['views'])} views "
        f"({', '.join(ref['views'])}), {len(ref['frames'])} frames; median reprojection error "
        f"{ref['median_reproj_px']:.1f} px (12 body joints: {ref['median_reproj_px_body12']:.1f} px; "
        f"per view: {per_view}); {100 * ref['dropped_view_fraction']:.1f}% of the observations dropped as "
        f"outliers (> {report['config']['outlier_px']:.0f} px); triangulation "
        f"{ref['triangulation_s_per_frame']:.3f} s/frame, 2D detection "
        f"{ref['detection_s_per_image']:.2f} s/image.\n"
    )
    rows = []
    for name, r in report["methods"].items():
        if not r["available"] and r["n_samples"] == 0:
            rows.append([name, "skipped", None, None, None, None, None, None])
            continue
        # mediapipe_world only reads the shared detection: its cost is the detection's
        s_img = ref["detection_s_per_image"] if name == "mediapipe_world" else r["s_per_image"]
        rows.append(
            [
                name,
                f"{r['n_samples']} (missed {r['n_missed']})",
                r["pa_mpjpe12_mm"],
                r["pa_mpjpe17_mm"],
                r["mpjpe_rr12_mm"],
                r["root_dist_abs_err_pct"],
                r["root_dist_signed_err_pct"],
                None if s_img is None else f"{s_img:.2f}",
            ]
        )
    print(markdown_table(TABLE_HEADERS, rows))
    print(
        "\nMeans over samples. PA-MPJPE: Procrustes with scale. Root = mid-hip. Root distance error: "
        "| |root_pred| - |root_ref| | / |root_ref|\n(signed: positive = too far), only for methods that "
        "place the body in space."
    )
    for name, r in report["methods"].items():
        if r["note"]:
            print(f"note: {name}: {r['note']}")


FUSED_HEADERS = ["capture", "use", "method", "reference", "samples", "PA-MPJPE 12 (mm)", "PA-MPJPE 17 (mm)",
                 "root-rel. MPJPE 12 (mm)", "MPJPE 12, no alignment (mm)"]  # fmt: skip


def print_fused(rows: dict, capture: str, use: str | None) -> None:
    """The fused rows (bench.multiview_fused_rows) as a second table."""
    meta = rows["_meta"]
    table = [[capture, use or "–", r["method"], r["reference"], r["n"], r["pa12"], r["pa17"], r["rr12"], r["abs12"]]
             for name, r in rows.items() if name != "_meta"]  # fmt: skip
    print("\nFused rows (bench.multiview_fused_rows): the methods against a reference triangulated from other views.")
    print(markdown_table(FUSED_HEADERS, table))
    print(f"fusion + body fits {meta['fusion_and_body_s']:.1f} s; 4-view body fit {meta['body_fit_s_4_views']:.1f} s, "
          f"body reprojection {', '.join(f'{e:.1f}' for e in meta['body_median_reproj_px_4_views'])} px (fused "
          f"triangulation {meta['fused_median_reproj_px_4_views']:.1f} px)")  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    args = _parse_args(argv)
    cams = load_qualisys_calibration(args.calib or args.data / "Calib.qca.txt")
    cams = _select_views(cams, args.views, args.data)
    n_frames = min(frame_count(args.data / f"{c.name}.mp4") for c in cams)
    frames = (
        sorted({int(f) for f in _split(args.frames)}) if args.frames else list(range(0, n_frames, args.every))
    )
    try:
        segmenter = CachedSegmenter()
    except BackendUnavailable as err:
        raise UserFacingError(f"The 2D keypoints need the segmentation stage: {err}") from None
    methods = _build_methods(_split(args.methods), segmenter, args.true_focal)
    for m in methods:
        if m.note:
            print(f"note: {m.name} is skipped: {m.note}")

    obs = observe(cams, frames, args.data, segmenter, methods)
    start = time.perf_counter()
    min_conf = 0.1
    refs = [
        triangulate_points(
            obs.xy_fvn2[i], obs.conf_fvn[i], cams, min_conf=min_conf, outlier_px=args.outlier_px
        )
        for i in range(len(frames))
    ]
    triangulation_s = (time.perf_counter() - start) / max(len(frames), 1)
    reference = {
        "frames": frames,
        "views": [c.name for c in cams],
        **reference_stats(refs, obs, cams, min_conf),
        "triangulation_s_per_frame": triangulation_s,
        "detection_s_per_image": float(np.mean(segmenter.seconds)) if segmenter.seconds else float("nan"),
    }
    report = {
        "machine": machine_description(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "reference": reference,
        "methods": {m.name: evaluate(m, obs, refs, cams, frames) for m in methods},
    }
    print_report(report)
    if not args.no_fused:
        from bench.multiview_fused_rows import fused_rows

        fps = probe(args.data / f"{cams[0].name}.mp4").fps
        report["fused"] = fused_rows(args.data, cams, frames, obs.preds, args.cache, fps)
        print_fused(report["fused"], args.data.name, args.use)
    if args.json:
        save_json(args.json, report)
    return report


if __name__ == "__main__":
    try:
        main()
    except UserFacingError as err:
        raise SystemExit(f"error: {err}") from None
