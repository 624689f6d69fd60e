"""Fit-option variants on the 3D-truth sets, re-fitted on cached detections (fast iteration).

    python -m bench.fit3d_variants --cache /tmp/lab3d_det.pkl                  # detect once, then fit
    python -m bench.fit3d_variants --cache /tmp/lab3d_det.pkl --variant sigma_dir=0.1 --variant pose_iters=8

Detections (MediaPipe, masks, hands) of the H36M frames and every --every-th frame of both 4-camera
captures are computed once and pickled to --cache; people are matched across views and triangulated as in
bench.accuracy_lab3d (same functions). Each variant (FitOption overrides, `name=value`, `;`-separated) then
re-fits every sample with the true focal and prints PA-MPJPE per set (tuning vs held out, as in
accuracy_lab3d.TUNED_ON) against MediaPipe's world landmarks. `--held-out` includes the held-out sets; by
default only the tuning sets are fitted (choose on those, confirm on the others once).
"""

from __future__ import annotations

import argparse
import ast
import json
import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.accuracy_lab3d import REFERENCE_CONVENTION, TUNED_ON, _score, matched_body_refs
from bench.common import BODY12_NAMES, DATA_DIR, markdown_table
from pipelines.hmr.embedded import EmbeddedHMR
from pipelines.hmr.fit import FitOptions
from pipelines.io.image_io import LoadedImage, load_image
from pipelines.modes.image import ImagePipeline, ImageSession
from pipelines.multiview.calibration import load_qualisys_calibration
from pipelines.multiview.video import read_frames
from pipelines.types import Camera, PersonDetection, PersonResult


@dataclass
class CachedSample:
    set: str
    image: str
    width: int
    height: int
    focal_px: float
    detection: PersonDetection
    ref_cam_k3: np.ndarray
    held_out: bool


def _detect(pipeline: ImagePipeline, rgb: np.ndarray) -> list[PersonDetection]:
    session = ImageSession()
    image = LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])
    pipeline.run(image, focal_px=1000.0, session=session)
    return list(session.detections or [])


def build_cache(every: int) -> list[CachedSample]:
    pipeline = ImagePipeline()
    pipeline.warmup()
    out: list[CachedSample] = []
    folder = DATA_DIR / "lab3d" / "h36m"
    gt = json.loads((folder / "gt.json").read_text())
    for frame in gt["frames"]:
        rgb = load_image(folder / frame["image"]).rgb_hw3
        dets = _detect(pipeline, rgb)
        if not dets:
            continue
        det = max(dets, key=lambda d: float(np.prod(d.bbox_xyxy[2:] - d.bbox_xyxy[:2])))
        ref = np.array([frame["joints3d_cam"][n] for n in BODY12_NAMES])
        out.append(CachedSample("h36m " + frame["subject"], frame["image"].split(".")[0], rgb.shape[1], rgb.shape[0],
                                float(np.mean(frame["focal_px"])), det, ref, frame["subject"] not in TUNED_ON))
    for name in ("pose2sim_single", "pose2sim_multi"):
        mv = DATA_DIR / "multiview" / name
        cams = load_qualisys_calibration(mv / "Calib.qca.txt")
        frames = list(range(0, 100, every))
        per: dict[int, list[list[PersonResult]]] = {i: [] for i in frames}
        sizes: dict[str, tuple[int, int]] = {}
        for cam in cams:
            got = dict(read_frames(mv / f"{cam.name}.mp4", frames))
            for index in frames:
                rgb = got[index]
                sizes[cam.name] = (rgb.shape[1], rgb.shape[0])
                per[index].append([PersonResult(i, d) for i, d in enumerate(_detect(pipeline, rgb))])
        for index in frames:
            for _, v, c, ref in matched_body_refs(per[index], cams):
                w, h = sizes[cams[v].name]
                out.append(CachedSample(name, f"{cams[v].name} frame {index}", w, h, cams[v].camera.focal_px,
                                        per[index][v][c].detection, ref, name not in TUNED_ON))
        print(f"{name}: {sum(s.set == name for s in out)} samples", flush=True)
    return out


def parse_variant(text: str) -> dict:
    out = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, value = part.split("=", 1)
        out[key.strip()] = ast.literal_eval(value.strip())
    return out


def run_variant(hmr: EmbeddedHMR, samples: list[CachedSample], overrides: dict, convention: str = "reference"
                ) -> list[tuple[CachedSample, float, float]]:  # fmt: skip
    """(sample, MediaPipe, fit) PA-MPJPE (mm) per sample; the fit's joints in `convention` ('coco', 'h36m',
    or 'reference': each set's, accuracy_lab3d.REFERENCE_CONVENTION)."""
    hmr.options = FitOptions(**overrides)
    out = []
    for s in samples:
        fit = hmr.fit(Camera.from_focal(s.focal_px, s.width, s.height, "user"), s.detection)
        conv = REFERENCE_CONVENTION[s.set.split()[0]] if convention == "reference" else convention
        if convention == "h36m" and not s.set.startswith("h36m"):
            conv = "coco"  # the 4-camera references are BlazePose keypoints: surface, not joint centres
        scores = _score(PersonResult(0, s.detection, fit.body), s.ref_cam_k3, conv)
        if scores is not None:
            out.append((s, *scores))
    return out


def summary(rows: list[tuple[CachedSample, float, float]]) -> list[list[object]]:
    table = []
    for name in dict.fromkeys(s.set for s, _, _ in rows):
        sub = [(m, f) for s, m, f in rows if s.set == name]
        mp, fit = np.array([m for m, _ in sub]), np.array([f for _, f in sub])
        held = next(s.held_out for s, _, _ in rows if s.set == name)
        table.append([name, "held out" if held else "tuning", len(sub), float(mp.mean()), float(fit.mean()),
                      f"{100 * (fit.mean() / mp.mean() - 1):+.1f} %", float((fit / mp).max())])
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, required=True)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--variant", action="append", default=None, help="FitOptions overrides, e.g. 'sigma_dir=0.1'")
    parser.add_argument("--held-out", action="store_true", help="also fit the held-out samples")
    parser.add_argument("--per-sample", action="store_true", help="print every H36M frame")
    parser.add_argument("--joints", default="reference", choices=["reference", "coco", "h36m"],
                        help="the fit's joints: each set's (accuracy_lab3d.REFERENCE_CONVENTION), coco, or h36m "
                             "(skeleton joints on the H36M frames, coco on the 4-camera sets)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.cache.is_file():
        try:
            samples = pickle.loads(args.cache.read_bytes())
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
            msg = f"{args.cache} is not a detection cache of this bench ({err}); delete it to rebuild."
            raise SystemExit(msg) from None
    else:
        samples = build_cache(args.every)
        args.cache.write_bytes(pickle.dumps(samples))
    if not args.held_out:
        samples = [s for s in samples if not s.held_out]
    hmr = EmbeddedHMR()
    hmr.warmup()
    for text in args.variant or [""]:
        t = time.perf_counter()
        rows = run_variant(hmr, samples, parse_variant(text), args.joints)
        dt = (time.perf_counter() - t) / max(len(rows), 1)
        print(f"\nvariant: {text or 'default'}  ({dt:.2f} s / fit)")
        print(markdown_table(["set", "use", "samples", "mediapipe", "fit", "fit vs mp", "worst ratio"], summary(rows)))
        if args.per_sample:
            for s, m, f in rows:
                if s.set.startswith("h36m"):
                    print(f"  {s.image}: mp {m:.1f} fit {f:.1f}")


if __name__ == "__main__":
    # Through the imported module, so that the pickled CachedSample is the class a later run unpickles.
    from bench.fit3d_variants import main as _main

    _main()
