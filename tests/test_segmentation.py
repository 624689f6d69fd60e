"""Embedded segmentation stage: MediaPipe people, masks and landmarks on real photos; GrabCut prompts."""

from __future__ import annotations

import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.errors import BadPromptError
from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.mediapipe_models import pose_bundle_path
from pipelines.segmentation.embedded import EmbeddedSegmenter, select_person
from pipelines.types import PersonDetection, Prompts


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _kp(person: PersonDetection, name: str) -> np.ndarray:
    return person.keypoints2d.xy_k2[person.keypoints2d.names.index(name)]


def _iou(a_hw: np.ndarray, b_hw: np.ndarray) -> float:
    a, b = a_hw > 0.5, b_hw > 0.5
    return float((a & b).sum() / max(1, (a | b).sum()))


@pytest.fixture(scope="module")
def lunge_rgb(lunge_path: Path) -> np.ndarray:
    return _read_rgb(lunge_path)


@pytest.fixture(scope="module")
def lunge_people(segmenter: EmbeddedSegmenter, lunge_rgb: np.ndarray) -> list[PersonDetection]:
    return segmenter.detect(lunge_rgb)


@pytest.fixture(scope="module")
def pair_rgb(lunge_rgb: np.ndarray, data_dir: Path) -> np.ndarray:
    """Two different people side by side: lunge.jpg (left) and the man of the video's first frame."""
    video = data_dir / "multiview" / "pose2sim_single" / "cam01.mp4"
    cap = cv2.VideoCapture(str(video))
    ok, frame_bgr = cap.read()
    cap.release()
    assert ok, f"{video} is not readable"
    man = cv2.cvtColor(frame_bgr[250:1250, 100:800], cv2.COLOR_BGR2RGB)  # 1080x1920 frame, man only
    man = cv2.resize(man, (840, 1200), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(np.concatenate([lunge_rgb, man], axis=1))


def test_bundle_is_built_atomically_in_the_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HMR_CACHE_DIR", str(tmp_path))
    path = pose_bundle_path()
    assert path.parent == tmp_path / "mediapipe" and path.suffix == ".task"
    with zipfile.ZipFile(path) as zf:
        assert sorted(zf.namelist()) == ["pose_detector.tflite", "pose_landmarks_detector.tflite"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind
    mtime = path.stat().st_mtime_ns
    assert pose_bundle_path() == path and path.stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_lunge_one_person_with_mask_and_named_landmarks(
    lunge_rgb: np.ndarray, lunge_people: list[PersonDetection]
) -> None:
    h, w = lunge_rgb.shape[:2]
    assert len(lunge_people) == 1
    person = lunge_people[0]
    assert 0.5 < person.score <= 1.0
    assert person.keypoints2d.names == BLAZEPOSE_NAMES
    assert person.keypoints2d.xy_k2.shape == (33, 2) and person.keypoints2d.conf_k.shape == (33,)
    assert np.all((person.keypoints2d.conf_k >= 0) & (person.keypoints2d.conf_k <= 1))
    assert person.mask_hw.shape == (h, w) and person.mask_hw.dtype == np.float32
    assert person.mask_hw.min() >= 0.0 and person.mask_hw.max() <= 1.0

    x0, y0, x1, y1 = person.bbox_xyxy
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
    assert (x1 - x0) > 0.3 * w and (y1 - y0) > 0.35 * h  # a full body, not a fragment
    fg_hw = person.mask_hw > 0.5
    box_fg = fg_hw[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))]
    assert box_fg.sum() >= 0.98 * fg_hw.sum()  # the box holds the mask
    assert box_fg.mean() > 0.25  # and the mask fills the box (a lunge with arms out: about 0.38)


def test_lunge_keypoints_inside_image_and_on_mask(
    lunge_rgb: np.ndarray, lunge_people: list[PersonDetection]
) -> None:
    h, w = lunge_rgb.shape[:2]
    person = lunge_people[0]
    confident = person.keypoints2d.conf_k > 0.5
    assert confident.sum() >= 25
    xy = person.keypoints2d.xy_k2[confident]
    assert np.all((xy[:, 0] >= 0) & (xy[:, 0] <= w) & (xy[:, 1] >= 0) & (xy[:, 1] <= h))
    near_mask_hw = cv2.dilate((person.mask_hw > 0.5).astype(np.uint8), np.ones((31, 31), np.uint8))
    on_mask = near_mask_hw[xy[:, 1].astype(int).clip(0, h - 1), xy[:, 0].astype(int).clip(0, w - 1)]
    assert on_mask.mean() > 0.9
    x0, y0, x1, y1 = person.bbox_xyxy
    assert np.all((xy[:, 0] >= x0 - 1) & (xy[:, 0] <= x1 + 1) & (xy[:, 1] >= y0 - 1) & (xy[:, 1] <= y1 + 1))


def test_lunge_anatomy_in_pixels_and_metres(lunge_people: list[PersonDetection]) -> None:
    person = lunge_people[0]
    for side in ("left", "right"):
        assert _kp(person, f"{side}_ankle")[1] > _kp(person, f"{side}_hip")[1] + 100
        assert _kp(person, f"{side}_shoulder")[1] < _kp(person, f"{side}_hip")[1]
    kp3 = person.keypoints3d_hip
    assert kp3.frame == "hip" and kp3.names == BLAZEPOSE_NAMES and kp3.xyz_k3.shape == (33, 3)
    xyz = dict(zip(kp3.names, kp3.xyz_k3, strict=True))
    assert 0.2 < np.linalg.norm(xyz["left_shoulder"] - xyz["right_shoulder"]) < 0.6
    assert np.linalg.norm((xyz["left_hip"] + xyz["right_hip"]) / 2) < 0.05  # hip-centred
    # OpenCV axes: y down (ankles below the hips), z away from the camera (he faces away from it,
    # so his nose is beyond his hips and his heels, on the floor behind him, nearer the camera).
    assert xyz["left_ankle"][1] > 0.25 and xyz["right_ankle"][1] > 0.25
    assert xyz["nose"][1] < -0.3
    assert xyz["nose"][2] > 0.1
    assert xyz["nose"][2] > xyz["left_heel"][2] and xyz["nose"][2] > xyz["right_heel"][2]


@pytest.mark.parametrize("kind", ["gradient", "noise", "background"])
def test_no_person_gives_empty_list(segmenter: EmbeddedSegmenter, lunge_rgb: np.ndarray, kind: str) -> None:
    if kind == "gradient":
        image = np.tile(np.linspace(0, 255, 640, dtype=np.uint8)[None, :, None], (480, 1, 3))
    elif kind == "noise":
        image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    else:
        image = lunge_rgb[:420, :420]  # houses and trees above the man
    assert segmenter.detect(image) == []


def test_large_image_is_downscaled_and_mapped_back(
    segmenter: EmbeddedSegmenter, lunge_rgb: np.ndarray
) -> None:
    h, w = lunge_rgb.shape[:2]
    big = cv2.resize(lunge_rgb, (w * 4, h * 4), interpolation=cv2.INTER_LINEAR)  # 3204 x 4800
    people = segmenter.detect(big)
    assert len(people) == 1
    small = segmenter.detect(lunge_rgb)[0]
    assert people[0].mask_hw.shape == (h * 4, w * 4)
    np.testing.assert_allclose(people[0].bbox_xyxy, small.bbox_xyxy * 4, atol=0.012 * 4800)  # 1.2 % of the side
    conf = small.keypoints2d.conf_k > 0.5
    err = np.linalg.norm(people[0].keypoints2d.xy_k2[conf] - small.keypoints2d.xy_k2[conf] * 4, axis=1)
    assert np.median(err) < 16


def test_two_people_found_and_box_selects_the_right_one(
    segmenter: EmbeddedSegmenter, pair_rgb: np.ndarray, lunge_rgb: np.ndarray
) -> None:
    people = segmenter.detect(pair_rgb)
    assert len(people) == 2
    assert people[0].score >= people[1].score
    split = lunge_rgb.shape[1]
    centres = [(p.bbox_xyxy[0] + p.bbox_xyxy[2]) / 2 for p in people]
    left = int(np.argmin(centres))
    assert centres[left] < split < centres[1 - left]
    for i, p in enumerate(people):  # one mask per person, not one for everyone
        other_side = p.mask_hw[:, split:] if i == left else p.mask_hw[:, :split]
        assert (other_side > 0.5).sum() < 0.01 * (p.mask_hw > 0.5).sum()

    for target in (left, 1 - left):
        box = people[target].bbox_xyxy + np.array([-20, -20, 20, 20])
        box = np.clip(box, 0, [pair_rgb.shape[1], pair_rgb.shape[0]] * 2)
        out = segmenter.apply_prompts(pair_rgb, people, Prompts(box_xyxy=box))
        assert len(out) == 2
        assert select_person(out, np.zeros((0, 2)), np.zeros((0, 2)), box) == target
        refined = out[target]  # refined in place: the order (person ids) is kept
        assert refined is not people[target] and _iou(refined.mask_hw, people[target].mask_hw) > 0.85
        assert out[1 - target] is people[1 - target]  # the other is unchanged
        outside = np.ones(pair_rgb.shape[:2], dtype=bool)
        outside[int(box[1]) : int(box[3]), int(box[0]) : int(box[2])] = False
        assert refined.mask_hw[outside].max() == 0.0  # nothing of the mask outside the box


def test_negative_click_removes_and_positive_click_adds(
    segmenter: EmbeddedSegmenter, lunge_rgb: np.ndarray, lunge_people: list[PersonDetection]
) -> None:
    person = lunge_people[0]
    ears = (_kp(person, "left_ear") + _kp(person, "right_ear")) / 2
    cap = ears + np.array([0.0, -25.0])  # on his cap
    assert person.mask_hw[int(cap[1]), int(cap[0])] > 0.5
    out = segmenter.apply_prompts(lunge_rgb, lunge_people, Prompts(points_n3=np.array([[*cap, 0]])))
    assert len(out) == 1
    mask = out[0].mask_hw
    assert mask[int(cap[1]), int(cap[0])] < 0.5
    removed = (person.mask_hw > 0.5) & (mask <= 0.5)
    assert removed.sum() > 500  # a region, not a single pixel
    assert _iou(mask, person.mask_hw) > 0.85  # the rest of him is kept
    ys, xs = np.nonzero(removed)
    assert np.hypot(xs - cap[0], ys - cap[1]).max() < 0.25 * (person.bbox_xyxy[3] - person.bbox_xyxy[1])

    # A background point inside his box (between his legs), at least 20 px from his mask.
    x0, y0, x1, y1 = person.bbox_xyxy.astype(int)
    free_hw = (person.mask_hw[y0:y1, x0:x1] <= 0.5).astype(np.uint8)
    clear_hw = cv2.distanceTransform(free_hw, cv2.DIST_L2, 5) >= 20
    clear_hw[:20], clear_hw[-20:], clear_hw[:, :20], clear_hw[:, -20:] = False, False, False, False
    ys, xs = np.nonzero(clear_hw)
    k = np.argmin(np.hypot(xs - (x1 - x0) / 2, ys - (y1 - y0) / 2))
    gap = np.array([xs[k] + x0 + 0.5, ys[k] + y0 + 0.5])
    out = segmenter.apply_prompts(lunge_rgb, lunge_people, Prompts(points_n3=np.array([[*gap, 1]])))
    assert len(out) == 1
    assert out[0].mask_hw[int(gap[1]), int(gap[0])] > 0.5
    assert _iou(out[0].mask_hw, person.mask_hw) > 0.9
    assert out[0].keypoints2d is person.keypoints2d


def test_positive_click_on_nobody_makes_a_new_person(
    segmenter: EmbeddedSegmenter, lunge_rgb: np.ndarray, lunge_people: list[PersonDetection]
) -> None:
    plate = np.array([130.0, 670.0])  # the barbell's left plate, far outside the man's box
    out = segmenter.apply_prompts(lunge_rgb, lunge_people, Prompts(points_n3=np.array([[*plate, 1]])))
    assert len(out) == 2 and out[0] is lunge_people[0]
    new = out[1]  # appended
    assert new.mask_hw[int(plate[1]), int(plate[0])] > 0.5
    assert new.keypoints2d.names == BLAZEPOSE_NAMES and not new.keypoints2d.conf_k.any()
    x0, y0, x1, y1 = new.bbox_xyxy
    assert x0 <= plate[0] <= x1 and y0 <= plate[1] <= y1


def test_empty_prompts_return_people_unchanged(
    segmenter: EmbeddedSegmenter, lunge_rgb: np.ndarray, lunge_people: list[PersonDetection]
) -> None:
    out = segmenter.apply_prompts(lunge_rgb, lunge_people, Prompts())
    assert out is not lunge_people
    assert len(out) == 1 and out[0] is lunge_people[0]


@pytest.mark.parametrize(
    ("prompts", "message"),
    [
        (Prompts(points_n3=np.array([[900.0, 10.0, 1]])), "the point at (900, 10) is outside the 801x1200 image"),
        (Prompts(points_n3=np.array([[10.0, -5.0, 0]])), "the point at (10, -5) is outside the 801x1200 image"),
        (Prompts(box_xyxy=np.array([100.0, 100.0, 900.0, 500.0])), "is outside the 801x1200 image"),
        (Prompts(box_xyxy=np.array([300.0, 100.0, 200.0, 500.0])), "is empty"),
        (Prompts(keypoints={"left_wrist": (2000.0, 5.0)}), "is outside the 801x1200 image"),
        (Prompts(keypoints={"left_tail": (20.0, 5.0)}), "unknown joint name"),
    ],
)
def test_bad_prompts_raise_plain_errors(
    segmenter: EmbeddedSegmenter,
    lunge_rgb: np.ndarray,
    lunge_people: list[PersonDetection],
    prompts: Prompts,
    message: str,
) -> None:
    with pytest.raises(BadPromptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        segmenter.apply_prompts(lunge_rgb, lunge_people, prompts)


def test_the_same_person_found_twice_is_reported_once(segmenter, lunge_rgb) -> None:  # noqa: ANN001
    """A padded landscape frame made MediaPipe return one man three times: duplicates are suppressed."""
    import cv2

    h = 1080
    small = cv2.resize(lunge_rgb, (round(lunge_rgb.shape[1] * h / lunge_rgb.shape[0]), h))
    frame = np.full((h, 1920, 3), 127, dtype=np.uint8)
    x0 = (1920 - small.shape[1]) // 2
    frame[:, x0 : x0 + small.shape[1]] = small
    people = segmenter.detect(frame)
    assert len(people) == 1


def test_a_person_s_box_scans_only_their_region_and_is_the_whole_mask_s(lunge_people: list[PersonDetection]) -> None:
    """The mask is 0 outside the landmark model's region, so the box scanned there is the whole mask's."""
    from pipelines.segmentation.embedded import detection_from_landmarks

    for p in lunge_people:
        kp = p.keypoints2d
        n = len(BLAZEPOSE_NAMES)
        whole = detection_from_landmarks(kp.xy_k2[:n], kp.conf_k[:n], p.keypoints3d_hip.xyz_k3, p.mask_hw)
        np.testing.assert_array_equal(whole.bbox_xyxy, p.bbox_xyxy)
