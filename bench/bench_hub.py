"""CPU timings of the hub models at their real size (random weights), next to the embedded backend of
the same stage, through the app's own code path (checkpoints in a temporary Hugging Face cache, read
with HF_HUB_OFFLINE=1).

    python -m bench.bench_hub [--runs 3] [--skip-large]

Random weights cost the same time as trained ones (same layers, same sizes). On lunge.jpg (801x1200).
- segmentation: MediaPipe people + masks (embedded) vs the same + SAM2.1's image encoder at 1024 and
  one box-prompt mask per person (hub); "per prompt" is one more mask on the embedded image.
- hmr / body: the embedded Anny fit vs the SMPL-X fit (a synthetic SMPLX_NEUTRAL.npz at the real mesh
  size, 10,475 vertices; its keypoint path does not depend on the mesh) for the first person, focal
  given; "per prompt" is a warm-started refit with one keypoint prompt. SAM 3D Body cannot run here
  (its code needs torchvision, which CPU torch cannot import): not timed.
- camera / depth: the embedded prior vs MoGe-2 at its default resolution (3600 base tokens), one
  inference shared by both stages. MoGe-2 ViT-S: the released checkpoint's neck widths are not known
  here, so the ViT-S encoder is timed with ViT-L's neck and heads (an upper bound).
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the CLI does, before numpy loads (the Anny fit's small solves)

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bench.common import DATA_DIR, machine_description, markdown_table
from bench.hub_models import moge2_config, save_random_moge2, save_random_sam2
from pipelines.io.image_io import load_image
from pipelines.registry import create
from pipelines.types import Prompts


def _median_s(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _progress(row: list[object]) -> None:
    print("done:", " | ".join(map(str, row)), file=sys.stderr, flush=True)


def _params_m(module: object) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6  # type: ignore[attr-defined]


def _hmr_rows(rgb: np.ndarray, segmenter: object, tmp: Path, runs: int) -> list[list[object]]:
    """The first person's fit with Anny (embedded) and SMPL-X (synthetic model file, real mesh size)."""
    from bench.smplx_synthetic import save_synthetic_smplx
    from pipelines.types import Camera

    h, w = rgb.shape[:2]
    person = create("keypoints", "embedded").add_keypoints(rgb, segmenter.detect(rgb)[:1])[0]  # type: ignore[attr-defined]
    camera = Camera.from_focal(1500.0, w, h, "user")
    wrist = person.keypoints2d.xy_k2[person.keypoints2d.names.index("left_wrist")]
    prompt = {"left_wrist": (float(wrist[0] + 10), float(wrist[1] - 6))}
    save_synthetic_smplx(tmp / "smplx")
    rows: list[list[object]] = []
    for label, body, kwargs in (("Anny fit (LM, numpy)", "anny", {}),
                                ("SMPL-X fit (L-BFGS, torch), synthetic model file", "smplx",
                                 {"model_dir": str(tmp / "smplx")})):  # fmt: skip
        hmr = create("hmr", "embedded" if body == "anny" else "embedded+smplx", body=body, **kwargs)
        t = time.perf_counter()
        hmr.warmup()
        load_s = time.perf_counter() - t
        first = hmr.fit(camera, person, {})
        t_fit = _median_s(lambda hmr=hmr: hmr.fit(camera, person, {}), runs)
        t_prompt = _median_s(lambda hmr=hmr, first=first: hmr.fit(camera, person, prompt, warm=first.state.copy(),
                                                                   fast=True), runs)  # fmt: skip
        rows.append([f"hmr + body ({body})", "embedded", label, "–", f"{w}x{h}", load_s, t_fit * 1e3, t_prompt * 1e3])
        _progress(rows[-1])
    rows.append(["hmr", "hub", "SAM 3D Body (DINOv3)", "–", f"{w}x{h}", None, "not timed: needs torchvision", None])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per row (after one warm-up)")
    parser.add_argument("--skip-large", action="store_true", help="only the small hub models")
    parser.add_argument("--stages", default="segmentation,hmr,camera",
                        help="comma-separated: segmentation, hmr, camera (camera + depth)")
    args = parser.parse_args()
    import torch

    rgb = load_image(DATA_DIR / "images" / "lunge.jpg").rgb_hw3
    h, w = rgb.shape[:2]
    size = f"{w}x{h}"
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HF_HUB_CACHE"] = str(Path(tmp) / "hub")
        os.environ["HF_HUB_OFFLINE"] = "1"

        stages = set(args.stages.split(","))
        embedded_seg = create("segmentation", "embedded")
        t_seg = _median_s(lambda: embedded_seg.detect(rgb), args.runs)
        rows.append(["segmentation", "embedded", "MediaPipe PoseLandmarker full", "–", size, None, t_seg * 1e3, None])
        if "hmr" in stages:
            rows += _hmr_rows(rgb, embedded_seg, Path(tmp), args.runs)
        sam2_repos = ["facebook/sam2.1-hiera-tiny"] + ([] if args.skip_large else ["facebook/sam2.1-hiera-large"])
        if "segmentation" not in stages:
            sam2_repos = []
        for repo in sam2_repos:
            save_random_sam2(repo)
            seg = create("segmentation", "hub", repo_id=repo, device="cpu", people=embedded_seg)
            t = time.perf_counter()
            seg.sam2.model()
            load_s = time.perf_counter() - t
            people = seg.detect(rgb)

            def detect(seg=seg) -> object:  # a new image each time: the embedding is not reused
                seg.sam2._embedding = None
                return seg.detect(rgb)

            t_detect = _median_s(detect, args.runs)
            box = Prompts(box_xyxy=people[0].bbox_xyxy.copy()) if people else Prompts(box_xyxy=np.array([0, 0, w, h]))
            t_prompt = _median_s(lambda seg=seg, box=box, people=people: seg.apply_prompts(rgb, people, box), args.runs)
            label = f"SAM2.1 {repo.split('-')[-1]} (1024 px) + MediaPipe"
            rows.append(["segmentation", "hub", label, f"{_params_m(seg.sam2._model):.0f}", size, load_s,
                         t_detect * 1e3, t_prompt * 1e3])  # fmt: skip
            _progress(rows[-1])
            del seg
        embedded_cam = create("camera", "embedded")
        t_cam = _median_s(lambda: embedded_cam.initial(w, h, None, None), args.runs)
        rows.append(["camera", "embedded", "field-of-view prior", "–", size, None, t_cam * 1e3, None])
        moge_models = [("Ruicheng/moge-2-vits-normal", "dinov2_vits14", "ViT-S")]
        if not args.skip_large:
            moge_models.append(("Ruicheng/moge-2-vitl-normal", "dinov2_vitl14", "ViT-L"))
        if "camera" not in stages:
            moge_models = []
        for repo, backbone, label in moge_models:
            save_random_moge2(repo, moge2_config(backbone))
            camera = create("camera", "hub", repo_id=repo, device="cpu")
            depth = create("depth", "hub", repo_id=repo, device="cpu")
            t = time.perf_counter()
            camera.moge.model()
            load_s = time.perf_counter() - t

            def both(camera=camera, depth=depth) -> object:
                camera.moge._last = None  # time a fresh inference
                cam = camera.initial(w, h, None, None, image_rgb_hw3=rgb)
                return depth.estimate(rgb, cam)

            t_both = _median_s(both, args.runs)
            rows.append(["camera + depth", "hub", f"MoGe-2 {label} (3600 tokens, fp32)",
                         f"{_params_m(camera.moge._model):.0f}", size, load_s, t_both * 1e3, None])  # fmt: skip
            _progress(rows[-1])
            del camera, depth
    print(f"Machine: {machine_description()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"medians of {args.runs} runs after one warm-up, random weights.\n")  # fmt: skip
    headers = ["stage", "backend", "model", "params (M)", "image", "load s", "per image ms", "per prompt ms"]
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
