"""Finding everyone: the tiled detector's decoding, the regions, and people found on real crowd frames;
a box or a click on a person the automatic pass missed gives that person a body."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.crowds_data import GtImage, GtPerson, load_labelled, match, pck
from pipelines.io.image_io import LoadedImage
from pipelines.keypoints.names import COCO17_NAMES
from pipelines.modes.image import ImageSession, image_key
from pipelines.segmentation.embedded import EmbeddedSegmenter, face_gap, same_person, select_person
from pipelines.segmentation.pose_detector import (
    INPUT_SIDE,
    NUM_ANCHORS,
    TiledPoseDetector,
    TileSettings,
    decode_detections,
    ssd_anchors_a2,
    tile_views,
    weighted_nms,
)
from pipelines.segmentation.pose_landmarks import PoseLandmarkModel, RegionLandmarks
from pipelines.segmentation.roi import RotatedRect, crop_region, paste_region
from pipelines.segmentation.tflite_runner import POSE_DETECTOR, TfliteModel
from pipelines.types import Keypoints2D, PersonDetection, Prompts


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _keypoints(person: PersonDetection) -> dict[str, np.ndarray]:
    kp = person.keypoints2d
    return {n: xy for n, xy, c in zip(kp.names, kp.xy_k2, kp.conf_k, strict=True) if c > 0.3}


def _prompt_box(gt: GtPerson, width: int, height: int) -> np.ndarray:
    """The box a user would draw: the annotated joints' box with a 10 % margin (hands reach past wrists)."""
    b = gt.box_xyxy
    m = 0.1 * (b[2:] - b[:2])
    return np.clip(np.concatenate([b[:2] - m, b[2:] + m]), 0, [width, height, width, height])


@pytest.fixture(scope="module")
def labelled(data_dir: Path) -> list[tuple[GtImage, np.ndarray]]:
    crowds = data_dir / "crowds"
    return [(g, _read_rgb(crowds / g.rel_path)) for g in load_labelled(crowds)]


# --- decoding, on synthetic inputs whose answer is known ---


def test_anchors_follow_mediapipes_grids() -> None:
    anchors = ssd_anchors_a2()
    assert anchors.shape == (NUM_ANCHORS, 2)
    np.testing.assert_allclose(anchors[0], [0.5 / 28, 0.5 / 28])  # stride 8: 28x28 cells, 2 per cell
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], [1.5 / 28, 0.5 / 28])  # x runs fastest
    np.testing.assert_allclose(anchors[2 * 28 * 28], [0.5 / 14, 0.5 / 14])  # stride 16
    np.testing.assert_allclose(anchors[2 * 28 * 28 + 2 * 14 * 14], [0.5 / 7, 0.5 / 7])  # stride 32, 6 per cell
    np.testing.assert_allclose(anchors[-1], [6.5 / 7, 6.5 / 7])


def test_decode_is_relative_to_the_anchor_in_input_pixels() -> None:
    raw_boxes = np.zeros((NUM_ANCHORS, 12))
    raw_scores = np.full(NUM_ANCHORS, -10.0)
    k = 2 * 28 * 28 + 5  # a stride-16 anchor
    raw_scores[k] = 3.0
    raw_boxes[k] = [11.2, -22.4, 44.8, 67.2, 0, 112, 0, -56, 5.6, 11.2, -5.6, 0]
    boxes, kps, scores = decode_detections(raw_boxes, raw_scores, min_score=0.5)
    assert len(boxes) == 1
    ax, ay = ssd_anchors_a2()[k]
    cx, cy = ax + 11.2 / INPUT_SIDE, ay - 22.4 / INPUT_SIDE
    np.testing.assert_allclose(boxes[0], [cx - 0.1, cy - 0.15, cx + 0.1, cy + 0.15])
    np.testing.assert_allclose(kps[0], [[ax, ay + 0.5], [ax, ay - 0.25], [ax + 0.025, ay + 0.05], [ax - 0.025, ay]])
    np.testing.assert_allclose(scores, [1 / (1 + np.exp(-3.0))])


def test_weighted_nms_merges_one_head_and_keeps_two() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [2, 2, 6, 6]], dtype=float)
    kps = np.stack([np.full((4, 2), v) for v in (0.0, 2.0, 50.0, 9.0)])
    scores = np.array([0.9, 0.6, 0.8, 0.7])
    out = weighted_nms(boxes, kps, scores)
    assert len(out) == 2 and out[0].score == pytest.approx(0.9)
    np.testing.assert_allclose(out[0].keypoints_42, 0.6 * 2 / 1.5)  # weighted by score with its twin
    assert len(out[0].alternates) == 1  # the small box inside it: the same head at another scale
    np.testing.assert_allclose(out[1].face_xyxy, boxes[2])


@pytest.mark.parametrize("size_wh", [(1920, 1080), (640, 480), (359, 640)])
def test_tiles_cover_the_whole_image_at_every_scale(size_wh: tuple[int, int]) -> None:
    w, h = size_wh
    views = tile_views(w, h, TileSettings())
    assert views[0].side_px == max(w, h)  # the whole image first
    for side in {v.side_px for v in views[1:]}:
        covered = np.zeros((h, w), dtype=bool)
        for v in (v for v in views if v.side_px == side):
            covered[max(0, int(v.y0)) : int(np.ceil(v.y0 + side)), max(0, int(v.x0)) : int(np.ceil(v.x0 + side))] = True
        assert covered.all()


def test_a_turned_region_maps_back_to_the_same_pixels() -> None:
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    dot = np.array([250.5, 120.5])
    image[120, 250] = 255  # the pixel whose centre is `dot`
    rect = RotatedRect((230.0, 150.0), 96.0, 0.7)
    crop = crop_region(image, rect, 256)[..., 0].astype(float)
    ys, xs = np.nonzero(crop > 0)
    weights = crop[ys, xs]
    centre_crop = np.array([[np.average(xs, weights=weights) + 0.5, np.average(ys, weights=weights) + 0.5]])
    found = rect.to_image(centre_crop, 256)
    np.testing.assert_allclose(found[0], dot, atol=0.3)
    back = paste_region(np.ones((256, 256), dtype=np.float32), rect, (300, 400))
    corners = rect.to_image(np.array([[0.0, 0.0], [256.0, 256.0]]), 256)
    assert back[int(rect.center_xy[1]), int(rect.center_xy[0])] == pytest.approx(1.0)
    assert back[5, 5] == 0.0 and 0.45 * 96**2 < back.sum() < 1.05 * 96**2
    assert np.linalg.norm(corners[1] - corners[0]) == pytest.approx(96 * np.sqrt(2))


# --- real photos ---


def test_map_lanes_runs_items_at_once_and_keeps_their_order() -> None:
    """Two lanes: two items run at the same time (a barrier of 2 only opens so), each on its own
    interpreter's runner; the results come back in the items' order; an error reaches the caller."""
    import threading

    model = TfliteModel(POSE_DETECTOR, lanes=2)
    assert model.num_threads == 1  # one XNNPACK thread per lane: the lanes are the parallelism
    both = threading.Barrier(2, timeout=10)
    runners: dict[int, object] = {}

    def work(i: int, run: object) -> int:
        if i < 2:
            both.wait()  # raises BrokenBarrierError after 10 s unless another lane runs item 0 or 1 at once
        runners[i] = run
        return 10 * i

    assert model.map_lanes(work, list(range(7))) == [0, 10, 20, 30, 40, 50, 60]
    assert runners[0] is not runners[1]

    def fail(i: int, run: object) -> int:
        if i == 3:
            raise ValueError("item 3")
        return i

    with pytest.raises(ValueError, match="item 3"):
        model.map_lanes(fail, list(range(6)))


def test_detector_on_two_lanes_finds_what_one_finds_on_a_crowd_photo(labelled) -> None:  # noqa: ANN001
    """The tiles of a crowd photo shared over two interpreters give the same candidates, in the same
    order, as one interpreter taking them one by one (the landmark regions follow from them)."""
    g, rgb = next((g, rgb) for g, rgb in labelled if g.rel_path.startswith("posetrack18/0034"))
    serial = TiledPoseDetector(model=TfliteModel(POSE_DETECTOR, num_threads=2, lanes=1))
    threaded = TiledPoseDetector(model=TfliteModel(POSE_DETECTOR, lanes=2))  # two lanes also on a 1-core machine
    assert threaded.model.lanes == 2 and TiledPoseDetector().model.lanes == min(2, os.cpu_count() or 1)
    a, b = serial.detect(rgb), threaded.detect(rgb)
    assert len(a) == len(b) >= len(g.people)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.face_xyxy, y.face_xyxy)
        np.testing.assert_array_equal(x.keypoints_42, y.keypoints_42)
        assert x.score == y.score and x.views == y.views and len(x.alternates) == len(y.alternates)
    serial.close()
    threaded.close()


def test_a_small_view_cut_from_a_resized_part_finds_what_the_whole_image_gives(labelled) -> None:  # noqa: ANN001
    """A view in a small part of the image (a look behind a face, a prompt's square) is cut from that part
    resized, not from the whole image resized: the same best head, within a few pixels; and the view on
    the part itself, its candidates shifted back, gives what the view on the image gives."""
    from pipelines.segmentation.pose_detector import SUB_IMAGE_MAX_SHARE, View, views_box

    g, rgb = next((g, rgb) for g, rgb in labelled if g.rel_path.startswith("posetrack18/0034"))
    h, w = rgb.shape[:2]
    detector = TiledPoseDetector()
    box = np.array([656.0, 270.0, 897.0, 537.0])  # the girl in the stands, an unlabelled person found there
    side = 1.3 * float(max(box[2] - box[0], box[3] - box[1]))
    cx, cy = (box[:2] + box[2:]) / 2
    view = View(cx - side / 2, cy - side / 2, side)
    x0, y0, x1, y1 = views_box([view], w, h, 2.0 * side / INPUT_SIDE)
    assert (x1 - x0) * (y1 - y0) < SUB_IMAGE_MAX_SHARE * w * h  # the part's path is the one tested
    boxes, _, scores = detector.detect_view(rgb, view)  # the whole image resized
    part = detector.detect(rgb, [view])
    best = int(np.argmax(scores))
    assert part and part[0].score == pytest.approx(float(scores[best]), abs=0.05)
    assert np.abs(part[0].face_xyxy - boxes[best]).max() < 0.02 * side
    on_part = detector.detect(rgb[y0:y1, x0:x1], [View(view.x0 - x0, view.y0 - y0, side)])
    assert len(on_part) == len(part)
    for a, b in zip(on_part, part, strict=True):
        np.testing.assert_allclose(a.shifted(x0, y0).face_xyxy, b.face_xyxy, atol=1e-6)
        np.testing.assert_allclose(a.shifted(x0, y0).keypoints_42, b.keypoints_42, atol=1e-6)
    detector.close()


def test_tiled_path_agrees_with_mediapipes_own_on_one_person(segmenter: EmbeddedSegmenter, lunge_path: Path) -> None:
    image = _read_rgb(lunge_path)
    ours = segmenter.detect(image)
    single = EmbeddedSegmenter(single_pass=True, max_people=4)
    theirs = single.detect(image)
    single.close()
    assert len(ours) == len(theirs) == 1
    confident = (ours[0].keypoints2d.conf_k > 0.5) & (theirs[0].keypoints2d.conf_k > 0.5)
    assert confident.sum() >= 25
    err = np.linalg.norm(ours[0].keypoints2d.xy_k2 - theirs[0].keypoints2d.xy_k2, axis=1)[confident]
    assert np.median(err) < 0.02 * image.shape[0]  # a few pixels on a 1200 px photo
    world = np.abs(ours[0].keypoints3d_hip.xyz_k3 - theirs[0].keypoints3d_hip.xyz_k3).max(axis=1)[confident]
    assert np.median(world) < 0.05  # metres
    a, b = ours[0].mask_hw > 0.5, theirs[0].mask_hw > 0.5
    assert (a & b).sum() / (a | b).sum() > 0.9


def test_annotated_people_in_crowd_frames_are_found(
    segmenter: EmbeddedSegmenter, labelled: list[tuple[GtImage, np.ndarray]]
) -> None:
    found = total = 0
    for gt, image in labelled:
        people = segmenter.detect(image)
        assert len(people) <= segmenter.max_people
        found += len(match([_keypoints(p) for p in people], gt.people))
        total += len(gt.people)
    assert total == 8
    assert found == total  # the two entangled dancers of a PoseTrack frame included


def test_entangled_dancers_are_two_people_with_their_own_faces(
    segmenter: EmbeddedSegmenter, labelled: list[tuple[GtImage, np.ndarray]]
) -> None:
    """Their bodies overlap and each mask covers both: only the faces tell them apart."""
    gt, image = next((g, im) for g, im in labelled if g.rel_path == "posetrack18/009473_mpii_test.jpg")
    people = segmenter.detect(image)
    matched = match([_keypoints(p) for p in people], gt.people)
    assert len(matched) == 2
    a, b = (people[matched[i]].keypoints2d for i in (0, 1))
    assert face_gap(a.xy_k2, a.conf_k, b.xy_k2, b.conf_k) > 1.0
    for i, person in enumerate(gt.people):  # each one's nose on their own head
        nose = people[matched[i]].keypoints2d.xy_k2[0]
        assert np.linalg.norm(nose - person.joints["nose"]) < 0.05 * person.size_px


def test_small_people_are_found_where_one_pass_sees_few(segmenter: EmbeddedSegmenter, data_dir: Path) -> None:
    """A baseball photo (COCO, unlabelled): batter, catcher, umpire and spectators; one pass sees one."""
    image = _read_rgb(data_dir / "crowds" / "coco_val2014" / "COCO_val2014_000000000488.jpg")
    single = EmbeddedSegmenter(single_pass=True, max_people=4)
    baseline = len(single.detect(image))
    single.close()
    people = segmenter.detect(image)
    assert len(people) >= baseline + 2
    boxes = np.array([p.bbox_xyxy for p in people])
    heights = boxes[:, 3] - boxes[:, 1]
    assert (heights < 0.35 * image.shape[0]).sum() >= 2  # small in the frame


def test_max_people_is_respected(labelled: list[tuple[GtImage, np.ndarray]]) -> None:
    seg = EmbeddedSegmenter(max_people=1)
    for _, image in labelled[:3]:
        assert len(seg.detect(image)) <= 1
    seg.close()


def test_box_on_a_missed_person_gives_landmarks_inside_it(
    segmenter: EmbeddedSegmenter, labelled: list[tuple[GtImage, np.ndarray]]
) -> None:
    for gt, image in labelled[:5]:  # the MPII photos: one labelled person each
        h, w = image.shape[:2]
        box = _prompt_box(gt.people[0], w, h)
        out = segmenter.apply_prompts(image, [], Prompts(box_xyxy=box))  # as if the automatic pass missed them
        assert len(out) == 1
        person = out[select_person(out, np.zeros((0, 2)), np.zeros((0, 2)), box)]
        confident = person.keypoints2d.conf_k > 0.5
        assert confident.sum() >= 15, gt.rel_path
        xy = person.keypoints2d.xy_k2[confident]
        inside = (xy[:, 0] >= box[0]) & (xy[:, 0] <= box[2]) & (xy[:, 1] >= box[1]) & (xy[:, 1] <= box[3])
        assert inside.mean() >= 0.85, gt.rel_path
        assert pck(_keypoints(person), gt.people[0], 0.2) >= 0.7, gt.rel_path
        assert (person.mask_hw[~_inside_mask(box, h, w)] == 0).all()


def _inside_mask(box: np.ndarray, h: int, w: int) -> np.ndarray:
    keep = np.zeros((h, w), dtype=bool)
    keep[max(0, int(box[1])) : int(np.ceil(box[3])), max(0, int(box[0])) : int(np.ceil(box[2]))] = True
    return keep


def test_click_on_a_missed_person_gives_landmarks_and_ids_stay(
    segmenter: EmbeddedSegmenter, labelled: list[tuple[GtImage, np.ndarray]]
) -> None:
    gt, image = next((g, im) for g, im in labelled if g.rel_path == "mpii/052475643.jpg")  # two signers
    people = segmenter.detect(image)
    target = gt.people[0]
    matched = match([_keypoints(p) for p in people], [target])
    others = [p for i, p in enumerate(people) if i != matched.get(0)]  # the automatic pass "missed" them
    torso = np.mean([target.joints[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")], axis=0)
    out = segmenter.apply_prompts(image, others, Prompts(points_n3=np.array([[*torso, 1]])))
    assert len(out) == len(others) + 1
    assert all(a is b for a, b in zip(out, others, strict=False))  # existing people keep their index
    new = out[-1]
    assert (new.keypoints2d.conf_k > 0.5).sum() >= 15
    assert pck(_keypoints(new), target, 0.2) >= 0.8


@pytest.mark.parametrize("rel_path", ["posetrack18/009473_mpii_test.jpg", "posetrack18/003418_mpii_test.jpg"])
def test_box_on_each_person_of_a_crowd_frame_gives_landmarks_inside_it(
    segmenter: EmbeddedSegmenter, labelled: list[tuple[GtImage, np.ndarray]], rel_path: str
) -> None:
    """Crowd frames (entangled dancers; a man lying on the floor, legs of another over him), the
    automatic pass 'missed' everyone: each box gives a person with landmarks, mostly in the box."""
    gt, image = next((g, im) for g, im in labelled if g.rel_path == rel_path)
    h, w = image.shape[:2]
    for person in gt.people:
        box = _prompt_box(person, w, h)
        out = segmenter.apply_prompts(image, [], Prompts(box_xyxy=box))
        assert len(out) == 1
        kp = out[0].keypoints2d
        confident = kp.conf_k[:33] > 0.5
        assert confident.sum() >= 12
        xy = kp.xy_k2[:33][confident]
        inside = (xy[:, 0] >= box[0]) & (xy[:, 0] <= box[2]) & (xy[:, 1] >= box[1]) & (xy[:, 1] <= box[3])
        assert inside.mean() >= 0.8
        assert pck(_keypoints(out[0]), person, 0.2) >= 0.5  # on this person, not their neighbour


def test_faces_decide_who_is_one_person() -> None:
    """Synthetic landmark sets: overlapping bodies with faces apart are two people; one face with two
    different bodies below it (a child and the cake in front of him) is one."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(100, 500, size=(33, 2))
    xy[:11] = [300, 120] + rng.uniform(-15, 15, size=(11, 2))  # a face 30 px wide on a 400 px body
    conf = np.ones(33)
    other = xy + rng.normal(0, 5, size=xy.shape)  # the same body...
    other[:11] += [120, 10]  # ...but another face, 4 face widths away (40 px floor: a tenth of the body)
    assert face_gap(xy, conf, other, conf) > 1.0
    assert not same_person(xy, conf, other, conf)
    twin = rng.uniform(100, 500, size=(33, 2))  # another body...
    twin[:11] = xy[:11] + rng.normal(0, 2, size=(11, 2))  # ...around the same face
    assert same_person(xy, conf, twin, conf)
    faceless = conf.copy()
    faceless[:11] = 0  # seen from behind: the bodies decide
    assert face_gap(xy, faceless, other, conf) is None
    assert same_person(xy, faceless, other, conf)


def _boxed_person(pipeline, labelled, rel_path: str, index: int = 0, session: ImageSession | None = None):  # noqa: ANN001, ANN202
    """Labelled person `index` of `rel_path` given as a box prompt, by default as if the automatic pass
    found nobody (else with `session`'s detections): (their label, the box, the prompted person's fitted
    body's 17 COCO joints projected into the photo (17, 2) pixels)."""
    gt, image = next((g, im) for g, im in labelled if g.rel_path == rel_path)
    h, w = image.shape[:2]
    nobody = session is None
    if nobody:
        session = ImageSession(image_key=image_key(image), detections=[])  # the automatic pass found nobody
    box = _prompt_box(gt.people[index], w, h)
    loaded = LoadedImage(rgb_hw3=image, path=None, exif_focal_px=None, exif_note=None, warnings=[])
    frame = pipeline.run(loaded, prompts=Prompts(box_xyxy=box), session=session)
    chosen = select_person([p.detection for p in frame.people], np.zeros((0, 2)), np.zeros((0, 2)), box)
    assert chosen is not None and frame.people[chosen].body is not None
    assert not nobody or len(frame.people) == 1
    body = frame.people[chosen].body
    coco = [body.joints3d_cam.names.index(n) for n in COCO17_NAMES]
    return gt.people[index], box, frame.camera.project(body.joints3d_cam.xyz_k3[coco])


def _share_in_box(xy_k2: np.ndarray, box: np.ndarray) -> float:
    return float(((xy_k2[:, 0] >= box[0]) & (xy_k2[:, 0] <= box[2]) & (xy_k2[:, 1] >= box[1])
                  & (xy_k2[:, 1] <= box[3])).mean())  # fmt: skip


def test_pipeline_fits_a_body_to_a_boxed_person_the_detector_missed(pipeline, labelled) -> None:  # noqa: ANN001
    person, box, xy = _boxed_person(pipeline, labelled, "mpii/060754485.jpg")
    assert _share_in_box(xy, box) > 0.9
    assert pck(dict(zip(COCO17_NAMES, xy, strict=True)), person, 0.1) >= 0.8


def test_pipeline_fits_a_body_to_a_boxed_person_in_a_crowd_frame(pipeline, labelled) -> None:  # noqa: ANN001
    """The man lying on the floor under another's legs (PoseTrack), as if the automatic pass found nobody:
    the box gives him a body whose projected joints lie in the box and on him."""
    person, box, xy = _boxed_person(pipeline, labelled, "posetrack18/003418_mpii_test.jpg")
    assert _share_in_box(xy, box) >= 0.8
    assert pck(dict(zip(COCO17_NAMES, xy, strict=True)), person, 0.2) >= 0.7


def test_a_box_on_either_entangled_dancer_gives_that_dancer_a_body(pipeline, labelled) -> None:  # noqa: ANN001
    """The two dancers of a PoseTrack frame, both found by the automatic pass: their boxes, masks and
    landmark boxes are nearly the same, and the landmark model in the woman's box sees her partner.
    A box on each gives a body in that box, on that dancer (nearer their own labels than the other's),
    and the two bodies differ."""
    rel_path = "posetrack18/009473_mpii_test.jpg"
    session = ImageSession()
    bodies = [_boxed_person(pipeline, labelled, rel_path, i, session) for i in (0, 1)]
    assert session.detections is not None and len(session.detections) >= 2  # the automatic pass found both
    for (person, box, xy), (other, _, _) in zip(bodies, bodies[::-1], strict=True):
        assert _share_in_box(xy, box) >= 0.8
        joints = dict(zip(COCO17_NAMES, xy, strict=True))
        assert pck(joints, person, 0.1) >= 0.5
        assert pck(joints, person, 0.1) > pck(joints, other, 0.1) + 0.2
    (a, _, xy_a), (_, _, xy_b) = bodies
    assert float(np.median(np.linalg.norm(xy_a - xy_b, axis=1))) > 0.05 * a.size_px


def _synthetic_person(bbox: list[float], face_xy: tuple[float, float], face_half_px: float) -> PersonDetection:
    """33 confident BlazePose landmarks: the 11 face points around `face_xy`, the rest spread in the box."""
    x0, y0, x1, y1 = bbox
    rng = np.random.default_rng(0)
    body_k2 = np.c_[rng.uniform(x0 + 5, x1 - 5, 22), rng.uniform((y0 + y1) / 2, y1 - 5, 22)]
    face_k2 = np.asarray(face_xy) + rng.uniform(-face_half_px, face_half_px, (11, 2))
    xy_k2 = np.r_[face_k2, body_k2]
    keypoints = Keypoints2D([f"p{i}" for i in range(33)], xy_k2, np.ones(33))
    return PersonDetection(bbox_xyxy=np.asarray(bbox, float), score=0.9, keypoints2d=keypoints)


def test_a_face_behind_the_entangled_pair_does_not_steer_the_box() -> None:
    """Two entangled people in one box, the box drawn around the first one's face; a small face far
    behind them (a bystander whose box hardly overlaps the prompt) sits nearer the box's centre line.
    The box still means the first person, not the one whose box happens to fit it best."""
    box = np.array([100.0, 100.0, 300.0, 500.0])
    first = _synthetic_person([110, 100, 310, 500], (207, 150), 10)  # her face is the centred one
    partner = _synthetic_person([100, 100, 300, 500], (262, 150), 10)  # his box fits the prompt best
    bystander = _synthetic_person([196, 112, 206, 128], (201, 120), 2)
    people = [partner, first, bystander]
    assert select_person(people, np.zeros((0, 2)), np.zeros((0, 2)), box) == 1
    assert select_person(people[:2], np.zeros((0, 2)), np.zeros((0, 2)), box) == 1  # the same without him


def test_painting_over_a_close_partner_face_leaves_the_box_own_face(monkeypatch) -> None:  # noqa: ANN001
    """Where the found landmarks have the partner's face, the partner's face is painted over before a
    second look; faces only 1.2 face widths apart: the grey disc must not reach the box's own face."""
    box = np.array([100.0, 100.0, 300.0, 500.0])
    own = _synthetic_person([100, 100, 300, 500], (200, 150), 10)  # the centred face (width ~20 px)
    partner_k2 = own.keypoints2d.xy_k2 + np.array([24.0, 0.0])  # his face 1.2 widths to the right
    found = RegionLandmarks(rect=RotatedRect((200.0, 300.0), 400.0), presence=0.9, xy_k2=partner_k2,
                            visibility_k=np.ones(33), presence_k=np.ones(33), world_k3=np.zeros((33, 3)),
                            aux_xy_62=np.zeros((6, 2)), mask_crop_hw=np.zeros((256, 256)))  # fmt: skip
    seen = []
    monkeypatch.setattr(EmbeddedSegmenter, "_best_region", lambda self, image, b, p: (seen.append(image), (None, 0)))
    image = np.full((600, 400, 3), 255, np.uint8)
    EmbeddedSegmenter()._unentangled(image, box, found, [own])
    (painted,) = seen
    face_k2 = np.rint(own.keypoints2d.xy_k2[:11]).astype(int)
    assert (painted[face_k2[:, 1], face_k2[:, 0]] == 255).all()  # every own face point still unpainted
    assert (painted[150, 224] == 127).all()  # the partner's face centre is painted


def test_max_people_is_a_pipeline_setting() -> None:
    from pipelines.modes.image import ImagePipeline, PipelineConfig

    assert ImagePipeline()._get("segmentation").max_people >= 20  # the default looks for a crowd
    assert ImagePipeline(PipelineConfig(max_people=3))._get("segmentation").max_people == 3


def test_everyone_in_a_photo_is_fitted_with_its_one_focal(pipeline, labelled) -> None:  # noqa: ANN001
    """Two signers and bystanders, focal unknown: the photo gets one estimated focal, and every fitted
    body (the batch of people, each first fitted with its own focal estimate) is refitted with it."""
    gt, image = next((g, im) for g, im in labelled if g.rel_path == "mpii/052475643.jpg")
    loaded = LoadedImage(rgb_hw3=image, path=None, exif_focal_px=None, exif_note=None, warnings=[])
    frame = pipeline.run(loaded, session=ImageSession())
    bodies = [p.body for p in frame.people if p.body is not None]
    assert len(bodies) >= 2
    assert frame.camera.source == "estimated"
    for body in bodies:
        assert float(body.params["focal_px"]) == pytest.approx(frame.camera.focal_px, rel=1e-9)
        assert body.reprojection_px_mean < 0.03 * max(image.shape[:2])  # and fits its person with it


def test_the_mirrored_look_is_skipped_only_where_it_could_not_change_a_find(
    segmenter: EmbeddedSegmenter, labelled: list[tuple[GtImage, np.ndarray]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A region whose first landmark run is below the presence threshold is rejected without running the
    mirrored crop (its average's presence could only be lower): fewer model runs, the same people."""

    gt, image = next((g, im) for g, im in labelled if g.rel_path == "mpii/004645041.jpg")  # a tuning photo
    runs = {"n": 0}
    model_run = segmenter.landmarks.model.run

    def counted(x):  # noqa: ANN001, ANN202
        runs["n"] += 1
        return model_run(x)

    monkeypatch.setattr(segmenter.landmarks.model, "run", counted)
    fast = segmenter.detect(image)
    fast_runs, runs["n"] = runs["n"], 0
    every_run = PoseLandmarkModel.run
    def every_mirror(self, im, rect, mirror_average=False, skip_mirror_below=None, even_halving=False):  # noqa: ANN001, ANN202
        return every_run(self, im, rect, mirror_average, even_halving=even_halving)  # never skips the mirrored look

    monkeypatch.setattr(PoseLandmarkModel, "run", every_mirror)
    full = segmenter.detect(image)
    assert fast_runs < runs["n"]
    assert len(fast) == len(full) >= 1
    for a, b in zip(fast, full, strict=True):
        np.testing.assert_array_equal(a.keypoints2d.xy_k2, b.keypoints2d.xy_k2)
        np.testing.assert_array_equal(a.mask_hw, b.mask_hw)


def test_a_warm_start_holds_only_for_the_keypoints_it_was_fitted_on() -> None:
    """A prompt edit warm-starts a person's fit from their last one, but a box may give the same index new
    landmarks (or an appended person the index of an earlier prompt's): then the fit starts afresh."""
    rng = np.random.default_rng(1)
    names = [f"k{i}" for i in range(5)]

    def detection(xy_k2: np.ndarray) -> PersonDetection:
        kp = Keypoints2D(names, xy_k2, np.ones(5))
        return PersonDetection(bbox_xyxy=np.array([0.0, 0.0, 10.0, 10.0]), score=1.0, keypoints2d=kp)

    xy = rng.uniform(0, 100, size=(5, 2))
    fitted, state = detection(xy), object()
    session = ImageSession()
    session.remember(0, fitted, state)
    assert session.warm_start(0, fitted) is state
    assert session.warm_start(0, detection(xy.copy())) is state  # the same keypoints in another object (a click edit)
    moved = xy.copy()
    moved[3] += 0.5
    assert session.warm_start(0, detection(moved)) is None  # new landmarks under the same index
    assert session.warm_start(1, fitted) is None  # nobody fitted under that index yet


def test_a_box_that_gives_a_found_dancer_new_landmarks_fits_the_body_to_them(pipeline, labelled) -> None:  # noqa: ANN001
    """After the automatic pass (whose fit of the man followed his partner's landmarks), a box on the man
    replaces his landmarks; his body must follow the new ones: every confident 2D keypoint of the legs and feet
    within 3 % of the box of the body's projection (a warm start from the old fit with the prompt edit's few
    iterations left his right foot 12 % of the box away, his right ankle 2.5 %; now 0.6 and 0.7 %)."""
    rel_path = "posetrack18/009473_mpii_test.jpg"
    gt, image = next((g, im) for g, im in labelled if g.rel_path == rel_path)
    h, w = image.shape[:2]
    loaded = LoadedImage(rgb_hw3=image, path=None, exif_focal_px=None, exif_note=None, warnings=[])
    session = ImageSession()
    pipeline.run(loaded, session=session)  # the automatic pass: a fit per person to warm-start from
    box = _prompt_box(gt.people[0], w, h)
    frame = pipeline.run(loaded, prompts=Prompts(box_xyxy=box), session=session)
    chosen = select_person([p.detection for p in frame.people], np.zeros((0, 2)), np.zeros((0, 2)), box)
    assert chosen is not None and frame.people[chosen].body is not None
    kp, body = frame.people[chosen].detection.keypoints2d, frame.people[chosen].body
    legs = [f"{side}_{j}" for side in ("left", "right") for j in ("hip", "knee", "ankle", "heel", "foot_index")]
    pairs = [(n, n.replace("foot_index", "big_toe")) for n in legs if kp.conf_k[kp.names.index(n)] > 0.5]
    assert len(pairs) >= 8
    xy_body = frame.camera.project(body.joints3d_cam.xyz_k3[[body.joints3d_cam.names.index(m) for _, m in pairs]])
    xy_2d = kp.xy_k2[[kp.names.index(n) for n, _ in pairs]]
    gap = np.linalg.norm(xy_body - xy_2d, axis=1) / gt.people[0].size_px
    assert gap.max() < 0.03, dict(zip([n for n, _ in pairs], np.round(100 * gap, 1), strict=True))


def test_a_boxed_person_s_occluded_leg_follows_its_keypoints(pipeline, labelled) -> None:  # noqa: ANN001
    """The man lying on the floor (PoseTrack, a tuning photo), boxed: his far leg and arm are occluded (BlazePose
    confidence 0.05-0.2, in the frame). The fit weighs such keypoints by their confidence instead of dropping
    them: each fitted joint of confidence 0.05-0.2 lands within 3 % of the box of its keypoint (dropped under
    0.2, the fit left his left wrist, knee and ankle 3.8, 6.0 and 6.7 % away, the 3D landmarks' guess)."""
    rel_path = "posetrack18/003418_mpii_test.jpg"
    gt, image = next((g, im) for g, im in labelled if g.rel_path == rel_path)
    h, w = image.shape[:2]
    box = _prompt_box(gt.people[0], w, h)
    session = ImageSession(image_key=image_key(image), detections=[])
    loaded = LoadedImage(rgb_hw3=image, path=None, exif_focal_px=None, exif_note=None, warnings=[])
    frame = pipeline.run(loaded, prompts=Prompts(box_xyxy=box), session=session)
    chosen = select_person([p.detection for p in frame.people], np.zeros((0, 2)), np.zeros((0, 2)), box)
    assert chosen is not None and frame.people[chosen].body is not None
    kp, body = frame.people[chosen].detection.keypoints2d, frame.people[chosen].body
    low = [n for n in COCO17_NAMES if 0.05 <= kp.conf_k[kp.names.index(n)] < 0.2]
    assert {"left_knee", "left_ankle"} <= set(low), low
    xy_body = frame.camera.project(body.joints3d_cam.xyz_k3[[body.joints3d_cam.names.index(n) for n in low]])
    gap = np.linalg.norm(xy_body - kp.xy_k2[[kp.names.index(n) for n in low]], axis=1) / gt.people[0].size_px
    assert gap.max() < 0.03, dict(zip(low, np.round(100 * gap, 1), strict=True))
