"""Finding everyone: crowd recall, box-prompt recall and PCK, and time per photo (embedded, CPU).

    python -m bench.bench_crowds

On ../shared/data/crowds. Labelled: 5 MPII photos (one person labelled each) and 2 PoseTrack18
frames (3 people); split fixed in bench/crowds_data.py: TUNING (3 people, the only labelled images
constants were tuned on) and HELD_OUT (5 people). COCO photos (20, unlabelled): time and count only.

For each method (the tiled detector, `embedded`; the former single pass, `single pass` = MediaPipe's
Tasks PoseLandmarker once per photo, up to 4 people), the whole pipeline runs (detection, hands,
body fits; no file writing):
- crowd recall: share of the annotated people matched by a fitted body without prompts (the
  projected COCO joints of the body within 0.2 x box size of at least half the annotated joints,
  one-to-one);
- box recall: the same with one box prompt per annotated person (its joints' box + 10 %, as a user
  draws it), the person the prompt selects;
- PCK@0.05: share of annotated joints within 0.05 x box size (box long side) of the projected fitted
  joints of the prompted person (a person without a body scores 0), in BlazePose's joint convention and
  in the dataset's (pipelines.keypoints.joint_convention: MPII's hips and shoulders for the MPII photos,
  COCO's for PoseTrack's), with a per-joint table;
- time: median seconds per photo, warm (the prompts re-use the photo's cached detections).
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bench.common import DATA_DIR, machine_description, markdown_table
from bench.crowds_data import HELD_OUT, TUNING, GtImage, load_labelled, match, pck

CROWDS = DATA_DIR / "crowds"


@dataclass
class Scores:
    """Per-person results of one method on a set of images."""

    auto_hits: list[bool] = field(default_factory=list)
    box_hits: list[bool] = field(default_factory=list)
    box_pck: list[float] = field(default_factory=list)
    box_pck_2d: list[float] = field(default_factory=list)
    """The same for the prompted person's 2D keypoints (the detector's, before the fit)."""
    box_pck_conv: list[float] = field(default_factory=list)
    """box_pck with the fitted joints in the dataset's joint convention (pipelines.keypoints.joint_convention:
    MPII's for the MPII photos, COCO's for PoseTrack's)."""
    box_pck_2d_conv: list[float] = field(default_factory=list)
    """box_pck_2d with the 2D keypoints in the dataset's joint convention."""
    box_pck_mpii_all: list[float] = field(default_factory=list)
    """box_pck with MPII's convention for every person, PoseTrack's too (the alternative not taken)."""
    joint_hits: dict[tuple[str, str], list[bool]] = field(default_factory=dict)
    """(variant, joint name) -> per annotated joint of the box-prompted people, within 0.05 x box size.
    Variants: VARIANTS."""
    seconds: list[float] = field(default_factory=list)
    """Per photo: the automatic run."""
    people: list[int] = field(default_factory=list)
    """Per photo: bodies fitted without prompts."""


def _read(path: Path):  # noqa: ANN202 - pipelines.io.image_io.LoadedImage
    from pipelines.io.image_io import load_image

    return load_image(path)


def _body_joints(frame, person, convention=None) -> dict[str, np.ndarray]:  # noqa: ANN001
    """The fitted body's 17 COCO joints projected into the photo (BlazePose's convention, or `convention`)."""
    from pipelines.keypoints.joint_convention import coco17_from
    from pipelines.keypoints.names import COCO17_NAMES

    body = person.body
    idx = [body.joints3d_cam.names.index(n) for n in COCO17_NAMES]
    xy = frame.camera.project(body.joints3d_cam.xyz_k3[idx])
    if convention is not None:
        return coco17_from(xy, list(COCO17_NAMES), convention)
    return dict(zip(COCO17_NAMES, xy, strict=True))


def _keypoints(kp, convention=None) -> dict[str, np.ndarray]:  # noqa: ANN001
    """A detection's 2D keypoints with confidence > 0 (BlazePose's convention, or `convention`)."""
    from pipelines.keypoints.joint_convention import to_convention

    xy = to_convention(kp.xy_k2, list(kp.names), convention) if convention is not None else kp.xy_k2
    return {n: p for n, p, c in zip(kp.names, xy, kp.conf_k, strict=True) if c > 0}


VARIANTS = ("2D", "2D, dataset's convention", "body", "body, dataset's convention")


def _score_joints(scores: Scores, variant: str, pred: dict[str, np.ndarray] | None, gt) -> None:  # noqa: ANN001
    for name, xy in gt.joints.items():
        hit = pred is not None and name in pred and float(np.linalg.norm(pred[name] - xy)) <= 0.05 * gt.size_px
        scores.joint_hits.setdefault((variant, name), []).append(hit)


def _prompt_box(box_xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    m = 0.1 * (box_xyxy[2:] - box_xyxy[:2])
    return np.clip(np.concatenate([box_xyxy[:2] - m, box_xyxy[2:] + m]), 0, [width, height, width, height])


def run_labelled(pipe, gt: GtImage, scores: Scores) -> None:  # noqa: ANN001
    from pipelines.keypoints.joint_convention import DATASET_CONVENTIONS, MPII_CONVENTION
    from pipelines.modes.image import ImageSession
    from pipelines.segmentation.embedded import select_person
    from pipelines.types import Prompts

    convention = DATASET_CONVENTIONS[gt.rel_path.split("/")[0]]
    image = _read(CROWDS / gt.rel_path)
    h, w = image.rgb_hw3.shape[:2]
    session = ImageSession()
    pipe.run(image, session=ImageSession())  # warm for this size
    t = time.perf_counter()
    frame = pipe.run(image, session=session)
    scores.seconds.append(time.perf_counter() - t)
    bodies = [p for p in frame.people if p.body is not None]
    scores.people.append(len(bodies))
    matched = match([_body_joints(frame, p) for p in bodies], gt.people)
    scores.auto_hits += [i in matched for i in range(len(gt.people))]
    for person in gt.people:
        box = _prompt_box(person.box_xyxy, w, h)
        frame = pipe.run(image, prompts=Prompts(box_xyxy=box), session=session)
        dets = [p.detection for p in frame.people]
        chosen = select_person(dets, np.zeros((0, 2)), np.zeros((0, 2)), box)
        if chosen is None or frame.people[chosen].body is None:
            scores.box_hits.append(False)
            for pcks in (scores.box_pck, scores.box_pck_2d, scores.box_pck_conv, scores.box_pck_2d_conv,
                         scores.box_pck_mpii_all):
                pcks.append(0.0)
            for variant in VARIANTS:
                _score_joints(scores, variant, None, person)
            continue
        kp = frame.people[chosen].detection.keypoints2d
        joints = _body_joints(frame, frame.people[chosen])
        preds = {"2D": _keypoints(kp), "2D, dataset's convention": _keypoints(kp, convention), "body": joints,
                 "body, dataset's convention": _body_joints(frame, frame.people[chosen], convention)}  # fmt: skip
        scores.box_pck_2d.append(pck(preds["2D"], person, 0.05))
        scores.box_pck_2d_conv.append(pck(preds["2D, dataset's convention"], person, 0.05))
        scores.box_pck_mpii_all.append(pck(_body_joints(frame, frame.people[chosen], MPII_CONVENTION), person, 0.05))
        scores.box_hits.append(bool(match([joints], [person])))
        scores.box_pck.append(pck(joints, person, 0.05))
        scores.box_pck_conv.append(pck(preds["body, dataset's convention"], person, 0.05))
        for variant, pred in preds.items():
            _score_joints(scores, variant, pred, person)


def run_unlabelled(pipe, paths: list[Path], scores: Scores) -> None:  # noqa: ANN001
    from pipelines.modes.image import ImageSession

    for path in paths:
        image = _read(path)
        pipe.run(image, session=ImageSession())
        t = time.perf_counter()
        frame = pipe.run(image, session=ImageSession())
        scores.seconds.append(time.perf_counter() - t)
        scores.people.append(sum(p.body is not None for p in frame.people))


def ten_person_collage() -> np.ndarray:
    """A 1920x1080 photo of real people: 10 crops (the 8 labelled people's boxes grown 15 %, the second
    signer and the curling man), each at most 540 px high, 2 rows of 5. 13 people in all: both dancer
    crops hold the same couple, the floor crop a second man's legs."""
    import cv2

    labelled = load_labelled(CROWDS)
    boxes = [(CROWDS / g.rel_path, p.box_xyxy) for g in labelled for p in g.people]
    boxes += [(CROWDS / "mpii/052475643.jpg", np.array([460.0, 120.0, 600.0, 400.0])),
              (CROWDS / "mpii/005808361.jpg", np.array([110.0, 30.0, 560.0, 700.0]))]  # fmt: skip
    canvas = np.full((1080, 1920, 3), 90, dtype=np.uint8)
    for k, (path, box) in enumerate(boxes[:10]):
        image = _read(path).rgb_hw3
        h, w = image.shape[:2]
        m = 0.15 * (box[2:] - box[:2])
        x0, y0 = np.maximum(0, box[:2] - m).astype(int)
        x1, y1 = np.minimum([w, h], box[2:] + m).astype(int)
        crop = image[y0:y1, x0:x1]
        s = min(540 / crop.shape[0], 384 / crop.shape[1])
        crop = cv2.resize(crop, (max(1, int(crop.shape[1] * s)), max(1, int(crop.shape[0] * s))))
        r, c = divmod(k, 5)
        oy, ox = r * 540 + (540 - crop.shape[0]), c * 384 + (384 - crop.shape[1]) // 2
        canvas[oy : oy + crop.shape[0], ox : ox + crop.shape[1]] = crop
    return canvas


def _pct(hits: list[bool]) -> str:
    return f"{100 * np.mean(hits):.0f} % ({sum(hits)}/{len(hits)})" if hits else "-"


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only-embedded", action="store_true", help="skip the two baseline detections")
    parser.add_argument("--skip-coco", action="store_true", help="skip the 20 unlabelled COCO photos")
    parser.add_argument("--skip-timing", action="store_true", help="skip the collage and one-person tables")
    args = parser.parse_args(argv)
    from pipelines.modes.image import ImagePipeline
    from pipelines.segmentation.embedded import EmbeddedSegmenter, SinglePassSegmenter
    from pipelines.segmentation.pose_detector import TileSettings

    tiled = ImagePipeline()
    tiled.warmup()
    methods = {"embedded (tiled)": tiled}
    if not args.only_embedded:
        previous = ImagePipeline()  # the tiled detection as the previous release set it up, same other stages
        previous._backends["segmentation"] = EmbeddedSegmenter(
            tiles=TileSettings(min_score=0.5), min_found_presence=0.5, look_behind=False, min_box_presence=0.2
        )
        previous.warmup()
        single = ImagePipeline()
        single._backends["segmentation"] = SinglePassSegmenter()  # the former detection, same other stages
        single.warmup()
        methods |= {"tiled, previous settings (baseline)": previous, "single pass (baseline)": single}

    load_at_start = os.getloadavg()[0]
    labelled = {g.rel_path: g for g in load_labelled(CROWDS)}
    coco = sorted((CROWDS / "coco_val2014").glob("*.jpg"))
    results: dict[tuple[str, str], Scores] = {}
    for name, pipe in methods.items():
        for split, rels in (("held-out", HELD_OUT), ("tuning", TUNING)):
            scores = Scores()
            for rel in rels:
                run_labelled(pipe, labelled[rel], scores)
            results[(name, split)] = scores
        if not args.skip_coco:
            scores = Scores()
            run_unlabelled(pipe, coco, scores)
            results[(name, "coco")] = scores

    print(f"Machine: {machine_description()}; load average {os.getloadavg()[0]:.1f} when the tables were done, "
          f"{load_at_start:.1f} at the start "
          f"(other processes share the 2 cores: wall times are inflated by it)\n")  # fmt: skip
    print("Data: ../shared/data/crowds. Held-out: " + ", ".join(HELD_OUT) + f" ({_count(labelled, HELD_OUT)} "
          "people). Tuning: " + ", ".join(TUNING) + f" ({_count(labelled, TUNING)} people). "
          "COCO: 20 unlabelled photos (time and bodies found only).\n")  # fmt: skip
    rows = []
    for name in methods:
        for split in ("held-out", "tuning", "all"):
            if split == "all":
                parts = [results[(name, "held-out")], results[(name, "tuning")]]
                s = Scores(**{f: sum((getattr(p, f) for p in parts), []) for f in (
                    "auto_hits", "box_hits", "box_pck", "box_pck_2d", "box_pck_conv", "box_pck_2d_conv",
                    "box_pck_mpii_all", "seconds", "people")})  # fmt: skip
            else:
                s = results[(name, split)]
            rows.append([
                name, f"labelled, {split}", _pct(s.auto_hits), _pct(s.box_hits),
                f"{100 * np.mean(s.box_pck_conv):.1f}", f"{100 * np.mean(s.box_pck_2d_conv):.1f}",
                f"{100 * np.mean(s.box_pck):.1f}", f"{100 * np.mean(s.box_pck_2d):.1f}",
                f"{100 * np.mean(s.box_pck_mpii_all):.1f}",
                f"{statistics.median(s.seconds):.2f} s", str(sum(s.people)),
            ])  # fmt: skip
        if (name, "coco") in results:
            c = results[(name, "coco")]
            timing = f"{statistics.median(c.seconds):.2f} s (max {max(c.seconds):.2f})"
            rows.append([name, "COCO (unlabelled)", "-", "-", "-", "-", "-", "-", "-", timing, str(sum(c.people))])
    header = ["method", "images", "crowd recall (no prompt)", "recall with a box per person",
              "PCK@0.05 (box prompts, dataset's convention)", "PCK@0.05 of the 2D keypoints (dataset's convention)",
              "PCK@0.05 (box, BlazePose's convention)", "PCK@0.05 of the 2D keypoints (BlazePose's convention)",
              "PCK@0.05 (box, MPII's convention for all)",
              "time per photo (median, warm)", "bodies fitted (no prompt)"]  # fmt: skip
    print(markdown_table(header, rows))
    print("\nPer joint, PCK@0.05 of the box-prompted people (embedded):\n")
    print(per_joint_table(results, next(iter(methods))))

    if args.skip_timing:
        return
    from pipelines.io.image_io import LoadedImage
    from pipelines.modes.image import ImageSession

    collage = LoadedImage(rgb_hw3=ten_person_collage(), path=None, exif_focal_px=None, exif_note=None, warnings=[])
    rows = []
    for name, pipe in methods.items():
        pipe.run(collage, session=ImageSession())
        times, cpus, frame = [], [], None
        for _ in range(3):
            t, c = time.perf_counter(), time.process_time()
            frame = pipe.run(collage, session=ImageSession())
            times.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        stages = ", ".join(f"{k} {v:.2f}" for k, v in frame.timings_s.items() if v >= 0.005)
        bodies = sum(p.body is not None for p in frame.people)
        rows.append([name, f"{statistics.median(times):.2f} s", f"{statistics.median(cpus):.2f} s", f"{bodies} of 13",
                     stages])  # fmt: skip
    print("\nA crowded photo: 1920x1080 collage of 10 crops from the crowd photos (13 people), warm, median of 3:\n")
    print(markdown_table(["method", "time (no file writing)", "CPU (both cores)", "bodies fitted",
                          "last run's stages (s)"], rows))  # fmt: skip
    print("\n" + one_person_table(methods))


def per_joint_table(results: dict[tuple[str, str], Scores], method: str) -> str:
    """Rows: joints; columns: each variant (2D / body, BlazePose's / the dataset's convention) on held-out and
    tuning."""
    names = sorted({n for split in ("held-out", "tuning") for (_, n) in results[(method, split)].joint_hits})
    rows = []
    for n in [*names, "all"]:
        row = [n]
        for split in ("held-out", "tuning"):
            hits = results[(method, split)].joint_hits
            for variant in VARIANTS:
                h = sum((v for (var, j), v in hits.items() if var == variant and n in (j, "all")), [])
                row.append(f"{100 * np.mean(h):.0f} ({len(h)})" if h else "-")
        rows.append(row)
    header = ["joint"] + [f"{v}, {split}" for split in ("held-out", "tuning") for v in VARIANTS]
    return markdown_table(header, rows)


def one_person_table(methods: dict) -> str:
    """lunge.jpg at 1280x1920 (bench_image's 1080p case), end to end: decoded photo -> written results."""
    import tempfile

    import cv2

    from pipelines.io.image_io import LoadedImage
    from pipelines.modes.image import ImageSession
    from viz.outputs import write_outputs

    rgb = _read(DATA_DIR / "images" / "lunge.jpg").rgb_hw3
    rgb = cv2.resize(rgb, (1280, 1920), interpolation=cv2.INTER_CUBIC)
    photo = LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, pipe in methods.items():
            walls, cpus, detects = [], [], []
            for i in range(6):
                w0, c0 = time.perf_counter(), time.process_time()
                frame = pipe.run(photo, session=ImageSession())
                write_outputs(Path(tmp) / f"{i}", frame, write_rrd=True)
                if i:  # the first run warms this size up
                    walls.append(time.perf_counter() - w0)
                    cpus.append(time.process_time() - c0)
                    detects.append(frame.timings_s["detect"])
            rows.append([name, f"{statistics.median(walls):.2f} s", f"{statistics.median(cpus):.2f} s",
                         f"{1000 * statistics.median(detects):.0f} ms", str(len(frame.people))])  # fmt: skip
    head = "One person: lunge.jpg at 1280x1920, decoded photo -> written results, warm, median of 5:\n\n"
    return head + markdown_table(["method", "wall", "CPU (both cores)", "stage: detect", "people"], rows)


def _count(labelled: dict[str, GtImage], rels: tuple[str, ...]) -> int:
    return sum(len(labelled[r].people) for r in rels)


if __name__ == "__main__":
    main()
