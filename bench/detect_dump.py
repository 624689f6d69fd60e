"""Dump what the detect and hands stages find, to compare two checkouts (same people, same keypoints).

    python -m bench.detect_dump dump OUT.npz      # run from the checkout to measure
    python -m bench.detect_dump compare A.npz B.npz

Images: lunge.jpg (801x1200 and 1280x1920), frames 0 and 50 of the 4 cameras of pose2sim_single, every
crowd photo (MPII, PoseTrack, COCO) and `bench_crowds.ten_person_collage`. Per image: each person's 33
landmarks (pixels), confidences, world landmarks, score, box, mask area, and the hand keypoints; plus the
answer to a box prompt around each labelled person (`find_in_region`). Also the CPU time of each stage.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from bench.common import DATA_DIR

CROWDS = DATA_DIR / "crowds"


def _images() -> list[tuple[str, np.ndarray]]:
    from bench.bench_crowds import ten_person_collage
    from bench.bench_image import LUNGE, MULTIVIEW, to_1080p
    from pipelines.io.image_io import load_image
    from pipelines.multiview.video import read_frames

    lunge = load_image(LUNGE).rgb_hw3
    out = [("lunge", lunge), ("lunge_1080p", to_1080p(lunge))]
    for cam in sorted(MULTIVIEW.glob("cam*.mp4")):
        out += [(f"{cam.stem}_{i}", rgb) for i, rgb in read_frames(cam, [0, 50])]
    for path in sorted(CROWDS.glob("*/*.jpg")):
        out.append((f"{path.parent.name}/{path.stem}", load_image(path).rgb_hw3))
    out.append(("collage", ten_person_collage()))
    return out


def _boxes() -> dict[str, list[np.ndarray]]:
    from bench.crowds_data import load_labelled

    return {f"{g.rel_path.split('/')[0]}/{g.rel_path.split('/')[1][:-4]}": [p.box_xyxy for p in g.people]
            for g in load_labelled(CROWDS)}  # fmt: skip


def dump(out_path: str) -> None:
    from pipelines.keypoints.embedded import EmbeddedHandKeypoints
    from pipelines.segmentation.embedded import EmbeddedSegmenter

    seg, hands = EmbeddedSegmenter(), EmbeddedHandKeypoints()
    images, boxes = _images(), _boxes()
    seg.detect(images[0][1])  # warm
    arrays: dict[str, np.ndarray] = {}
    cpu = {"detect": 0.0, "hands": 0.0, "box": 0.0}
    wall = dict(cpu)
    for name, rgb in images:
        t, w = time.process_time(), time.perf_counter()
        people = seg.detect(rgb)
        cpu["detect"] += time.process_time() - t
        wall["detect"] += time.perf_counter() - w
        t, w = time.process_time(), time.perf_counter()
        with_hands = hands.add_keypoints(rgb, people)
        cpu["hands"] += time.process_time() - t
        wall["hands"] += time.perf_counter() - w
        arrays[f"{name}|n"] = np.array(len(people))
        for i, (p, q) in enumerate(zip(people, with_hands, strict=True)):
            k = f"{name}|{i}"
            arrays[k + "|xy"] = p.keypoints2d.xy_k2
            arrays[k + "|conf"] = p.keypoints2d.conf_k
            arrays[k + "|world"] = p.keypoints3d_hip.xyz_k3
            arrays[k + "|score_box_mask"] = np.array([p.score, *p.bbox_xyxy, float(p.mask_hw.sum())])
            arrays[k + "|hands_xy"] = q.keypoints2d.xy_k2
            arrays[k + "|hands_names"] = np.array(q.keypoints2d.names)
        t, w = time.process_time(), time.perf_counter()
        for j, box in enumerate(boxes.get(name, [])):
            found = seg.find_in_region(rgb, box, None, people)
            arrays[f"{name}|box{j}|xy"] = np.zeros((0, 2)) if found is None else found.keypoints2d.xy_k2
        cpu["box"] += time.process_time() - t
        wall["box"] += time.perf_counter() - w
        print(name, len(people), [len(q.keypoints2d.names) for q in with_hands], flush=True)
    print("CPU s:", {k: round(v, 3) for k, v in cpu.items()}, "wall s:", {k: round(v, 3) for k, v in wall.items()})
    np.savez(out_path, **arrays)


def compare(a_path: str, b_path: str, atol_px: float = 1e-3) -> int:
    a, b = np.load(a_path), np.load(b_path)
    bad = sorted(set(a.files) ^ set(b.files))
    for k in bad:
        print("only in one:", k)
    worst = 0.0
    for k in sorted(set(a.files) & set(b.files)):
        x, y = a[k], b[k]
        if x.dtype.kind in "US":
            if not np.array_equal(x, y):
                print("differs:", k)
                bad.append(k)
            continue
        if x.shape != y.shape:
            print("shape differs:", k, x.shape, y.shape)
            bad.append(k)
            continue
        d = float(np.max(np.abs(x - y))) if x.size else 0.0
        worst = max(worst, d if not k.endswith("score_box_mask") else 0.0)
        tol = atol_px if not k.endswith("score_box_mask") else 1e-2 * max(1.0, float(np.abs(x).max()))
        if d > tol:
            print(f"differs: {k} max |d| = {d:.3g}")
            bad.append(k)
    print(f"{len(a.files)} arrays, {len(bad)} different, largest difference of the rest {worst:.3g}")
    return 1 if bad else 0


if __name__ == "__main__":
    if sys.argv[1] == "dump":
        dump(sys.argv[2])
    else:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
