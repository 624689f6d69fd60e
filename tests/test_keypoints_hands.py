"""Embedded hand keypoint stage: MediaPipe hands on crops around BlazePose hands, assigned by wrist."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipelines.keypoints.embedded import EmbeddedHandKeypoints, HandCandidate, HandSlot, assign_hands
from pipelines.keypoints.names import BLAZEPOSE_NAMES, hand_names
from pipelines.registry import create
from pipelines.segmentation.embedded import EmbeddedSegmenter
from pipelines.types import Keypoints2D, Keypoints3D, PersonDetection


@pytest.fixture(scope="module")
def lunge_rgb(lunge_path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(lunge_path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def hands() -> Iterator[EmbeddedHandKeypoints]:
    detector = create("keypoints", "embedded")
    yield detector
    detector.close()


@pytest.fixture(scope="module")
def lunge_people(lunge_rgb: np.ndarray) -> list[PersonDetection]:
    segmenter: EmbeddedSegmenter = create("segmentation", "embedded")
    people = segmenter.detect(lunge_rgb)
    segmenter.close()
    assert len(people) == 1
    return people


@pytest.fixture(scope="module")
def with_hands(
    hands: EmbeddedHandKeypoints, lunge_rgb: np.ndarray, lunge_people: list[PersonDetection]
) -> list[PersonDetection]:
    return hands.add_keypoints(lunge_rgb, lunge_people)


def _named(kp: Keypoints2D) -> dict[str, np.ndarray]:
    return dict(zip(kp.names, kp.xy_k2, strict=True))


def test_both_hands_found_on_lunge_with_names_and_body_first(
    lunge_people: list[PersonDetection], with_hands: list[PersonDetection]
) -> None:
    assert len(with_hands) == 1
    before, after = lunge_people[0].keypoints2d, with_hands[0].keypoints2d
    assert after.names == BLAZEPOSE_NAMES + hand_names("left") + hand_names("right")
    assert after.xy_k2.shape == (33 + 42, 2) and after.conf_k.shape == (33 + 42,)
    np.testing.assert_array_equal(after.xy_k2[:33], before.xy_k2)  # body keypoints unchanged
    np.testing.assert_array_equal(after.conf_k[:33], before.conf_k)
    assert np.all((after.conf_k[33:] > 0.5) & (after.conf_k[33:] <= 1.0))
    assert with_hands[0].keypoints3d_hip is lunge_people[0].keypoints3d_hip
    assert lunge_people[0].keypoints2d.names == BLAZEPOSE_NAMES  # the input is not modified


def test_hands_lie_at_the_blazepose_hands_of_their_side(
    lunge_rgb: np.ndarray, with_hands: list[PersonDetection]
) -> None:
    h, w = lunge_rgb.shape[:2]
    xy = _named(with_hands[0].keypoints2d)
    for side in ("left", "right"):
        hand_k2 = np.array([xy[n] for n in hand_names(side)])
        assert np.all((hand_k2 >= 0) & (hand_k2 <= [w, h]))
        assert np.linalg.norm(xy[f"{side}_hand_wrist"] - xy[f"{side}_wrist"]) < 40
        # The knuckles are around BlazePose's index / pinky points, and the hand has a plausible size.
        knuckles = np.array([xy[f"{side}_hand_index_finger_mcp"], xy[f"{side}_hand_pinky_mcp"]])
        assert np.linalg.norm(knuckles.mean(0) - (xy[f"{side}_index"] + xy[f"{side}_pinky"]) / 2) < 40
        assert 10 < np.ptp(hand_k2, axis=0).max() < 120
    # Left and right are the person's: far apart here (hands at both ends of the bar).
    assert np.linalg.norm(xy["left_hand_wrist"] - xy["right_hand_wrist"]) > 150


def test_crops_on_two_lanes_give_the_hands_of_one_lane(
    lunge_rgb: np.ndarray, lunge_people: list[PersonDetection], with_hands: list[PersonDetection]
) -> None:
    """Lunge's two hand crops run on two HandLandmarker graphs at once (from a stage's second call on):
    the same hands, names and confidences as one graph taking the crops one by one."""
    one = EmbeddedHandKeypoints(lanes=1)
    serial = one.add_keypoints(lunge_rgb, lunge_people)
    one.close()
    two = EmbeddedHandKeypoints(lanes=2)
    for _ in range(2):  # the first call runs on one lane, the second on both
        both = two.add_keypoints(lunge_rgb, lunge_people)
    assert two._tasks[1]._task is not None  # the second graph was made and used
    two.close()
    assert both[0].keypoints2d.names == serial[0].keypoints2d.names
    np.testing.assert_array_equal(both[0].keypoints2d.xy_k2, serial[0].keypoints2d.xy_k2)
    assert len(serial[0].keypoints2d.names) == len(BLAZEPOSE_NAMES) + 42  # both hands
    assert serial[0].keypoints2d.names == with_hands[0].keypoints2d.names
    np.testing.assert_array_equal(serial[0].keypoints2d.xy_k2, with_hands[0].keypoints2d.xy_k2)
    np.testing.assert_array_equal(serial[0].keypoints2d.conf_k, with_hands[0].keypoints2d.conf_k)


def test_running_twice_replaces_the_hands(
    hands: EmbeddedHandKeypoints, lunge_rgb: np.ndarray, with_hands: list[PersonDetection]
) -> None:
    again = hands.add_keypoints(lunge_rgb, with_hands)
    assert again[0].keypoints2d.names == with_hands[0].keypoints2d.names
    np.testing.assert_allclose(again[0].keypoints2d.xy_k2, with_hands[0].keypoints2d.xy_k2, atol=1e-6)


def test_people_without_landmarks_and_empty_lists(
    hands: EmbeddedHandKeypoints, lunge_rgb: np.ndarray
) -> None:
    h, w = lunge_rgb.shape[:2]
    k = len(BLAZEPOSE_NAMES)
    prompt_only = PersonDetection(
        bbox_xyxy=np.array([0.0, 0.0, 100.0, 100.0]),
        score=1.0,
        mask_hw=np.zeros((h, w), np.float32),
        keypoints2d=Keypoints2D(list(BLAZEPOSE_NAMES), np.zeros((k, 2)), np.zeros(k)),
        keypoints3d_hip=Keypoints3D(list(BLAZEPOSE_NAMES), np.zeros((k, 3)), "hip"),
    )
    out = hands.add_keypoints(lunge_rgb, [prompt_only])
    assert out[0].keypoints2d.names == BLAZEPOSE_NAMES  # no zeros appended for hands not found
    assert hands.add_keypoints(lunge_rgb, []) == []


def test_no_hand_in_a_blank_image(hands: EmbeddedHandKeypoints, lunge_people: list[PersonDetection]) -> None:
    blank = np.full((1200, 801, 3), 128, np.uint8)
    out = hands.add_keypoints(blank, lunge_people)
    assert out[0].keypoints2d.names == BLAZEPOSE_NAMES


def _cand(x: float, y: float, score: float = 0.9) -> HandCandidate:
    xy_h2 = np.array([[x, y]]) + np.random.default_rng(0).normal(0, 5, (21, 2))
    xy_h2[0] = (x, y)
    return HandCandidate(xy_h2=xy_h2, score=score, conf_h=np.full(21, score))


def _slot(person: int, side: str, x: float, y: float) -> HandSlot:
    return HandSlot(person, side, np.array([x, y]), (0, 0, 10, 10), max_dist_px=50.0)


def test_assignment_is_geometric_one_to_one_and_gated() -> None:
    slots = [_slot(0, "left", 100, 100), _slot(0, "right", 300, 100), _slot(1, "left", 120, 110)]
    # One hand at (105, 100): nearest to person 0's left wrist, also within reach of person 1's.
    near = _cand(105, 100)
    far = _cand(600, 600)
    right = _cand(310, 95)
    out = assign_hands([far, near, right], slots)
    assert out == {0: near, 1: right}  # each hand used once, the far one nowhere
    # A second hand near person 1's wrist goes there, even if also near person 0's left wrist.
    second = _cand(122, 112)
    out = assign_hands([near, second], slots)
    assert out[0] is near and out[2] is second


def test_a_hand_that_disagrees_with_the_body_is_rejected() -> None:
    """A hand whose index knuckle is far (in hand lengths) from BlazePose's index point is not used."""
    from pipelines.keypoints.embedded import agrees_with_body
    from pipelines.keypoints.names import BLAZEPOSE_NAMES
    from pipelines.types import Keypoints2D

    xy_h2 = np.zeros((21, 2))
    xy_h2[0] = (100, 100)  # wrist
    xy_h2[9] = (100, 140)  # middle knuckle: hand length 40 px
    xy_h2[5] = (90, 138)  # index knuckle
    body_xy = np.zeros((len(BLAZEPOSE_NAMES), 2))
    conf = np.ones(len(BLAZEPOSE_NAMES))
    body_xy[BLAZEPOSE_NAMES.index("left_index")] = (92, 140)
    body = Keypoints2D(list(BLAZEPOSE_NAMES), body_xy, conf)
    assert agrees_with_body(xy_h2, body, "left")
    body_xy[BLAZEPOSE_NAMES.index("left_index")] = (92, 190)  # 52 px away: 1.3 hand lengths (> 0.9)
    assert not agrees_with_body(xy_h2, Keypoints2D(list(BLAZEPOSE_NAMES), body_xy, conf), "left")
