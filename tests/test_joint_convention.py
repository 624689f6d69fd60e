"""Joint conventions (pipelines.keypoints.joint_convention): hips and shoulders where MPII's annotators put
them, from BlazePose-convention joints; on synthetic joints and on an MPII tuning crowd photo."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.crowds_data import TUNING, load_labelled
from pipelines.keypoints.joint_convention import (
    COCO_CONVENTION,
    DATASET_CONVENTIONS,
    MPII_CONVENTION,
    coco17_from,
    to_convention,
)
from pipelines.keypoints.names import BLAZEPOSE_NAMES, COCO17_NAMES
from pipelines.segmentation.embedded import select_person
from pipelines.types import Prompts

NAMES = list(BLAZEPOSE_NAMES)


def _standing_2d() -> np.ndarray:
    """A person facing the camera, pixels (y down): hips 40 px apart at y = 300, shoulders at y = 150."""
    xy = np.zeros((len(NAMES), 2))
    for name, p in {"left_hip": (220, 300), "right_hip": (180, 300), "left_shoulder": (240, 150),
                    "right_shoulder": (160, 150), "left_knee": (222, 400), "nose": (200, 100)}.items():  # fmt: skip
        xy[NAMES.index(name)] = p
    return xy


def test_hips_move_out_and_up_the_torso_and_other_joints_stay() -> None:
    xy = _standing_2d()
    out = to_convention(xy, NAMES, MPII_CONVENTION)
    lh, rh = out[NAMES.index("left_hip")], out[NAMES.index("right_hip")]
    assert lh[1] < 300 and rh[1] < 300  # higher (y down)
    assert lh[0] - rh[0] > 40  # wider apart
    assert lh[1] == pytest.approx(300 - MPII_CONVENTION.hip_up * 150)
    assert lh[0] - rh[0] == pytest.approx(40 * (1 + MPII_CONVENTION.hip_lateral))
    assert out[NAMES.index("left_shoulder"), 1] < 150  # shoulders a little higher too
    for name in ("left_knee", "nose"):
        np.testing.assert_array_equal(out[NAMES.index(name)], xy[NAMES.index(name)])
    np.testing.assert_array_equal(xy, _standing_2d())  # the input is not changed


def test_the_same_convention_holds_for_3d_joints_seen_from_any_side() -> None:
    """Linear in the joints: moving 3D joints then projecting them (orthographic view, any turn of the
    body) gives the 2D joints moved, so one convention serves the fitted body and the keypoints."""
    rng = np.random.default_rng(3)
    xyz = rng.normal(0, 0.3, size=(len(NAMES), 3))
    for _ in range(5):
        q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        P_23 = 800 * q[:2]  # a turned orthographic camera, 800 px per metre
        moved_then_seen = to_convention(xyz, NAMES, MPII_CONVENTION) @ P_23.T
        seen_then_moved = to_convention(xyz @ P_23.T, NAMES, MPII_CONVENTION)
        np.testing.assert_allclose(moved_then_seen, seen_then_moved, atol=1e-9)


def test_joints_without_a_torso_are_left_alone() -> None:
    xy = _standing_2d()
    names = [n if n != "right_hip" else "something_else" for n in NAMES]
    np.testing.assert_array_equal(to_convention(xy, names, MPII_CONVENTION), xy)
    xy[NAMES.index("left_shoulder")] = np.nan
    out = to_convention(xy, NAMES, MPII_CONVENTION)
    np.testing.assert_array_equal(out[NAMES.index("left_hip")], xy[NAMES.index("left_hip")])
    assert set(coco17_from(_standing_2d(), NAMES)) == set(COCO17_NAMES)


@pytest.fixture(scope="module")
def tuning_photo(data_dir: Path):  # noqa: ANN201 - (GtImage, RGB image)
    crowds = data_dir / "crowds"
    gt = next(g for g in load_labelled(crowds) if g.rel_path == TUNING[1])  # an MPII photo of the tuning split
    bgr = cv2.imread(str(crowds / gt.rel_path), cv2.IMREAD_COLOR)
    return gt, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def test_box_prompted_persons_mpii_hips_fall_near_the_labelled_hips(segmenter, tuning_photo) -> None:  # noqa: ANN001
    """A box on the labelled person of an MPII tuning photo: in MPII's convention both hips lie within 5 % of
    the box (the PCK@0.05 tolerance) of the labelled hips; BlazePose's own hips miss it."""
    gt, image = tuning_photo
    person = gt.people[0]
    h, w = image.shape[:2]
    m = 0.1 * (person.box_xyxy[2:] - person.box_xyxy[:2])
    box = np.clip(np.concatenate([person.box_xyxy[:2] - m, person.box_xyxy[2:] + m]), 0, [w, h, w, h])
    out = segmenter.apply_prompts(image, [], Prompts(box_xyxy=box))
    kp = out[select_person(out, np.zeros((0, 2)), np.zeros((0, 2)), box)].keypoints2d
    moved = coco17_from(kp.xy_k2, list(kp.names), DATASET_CONVENTIONS["mpii"])
    raw = dict(zip(kp.names, kp.xy_k2, strict=True))
    for side in ("left", "right"):
        label = person.joints[f"{side}_hip"]
        assert np.linalg.norm(moved[f"{side}_hip"] - label) <= 0.05 * person.size_px, side
    worst_raw = max(np.linalg.norm(raw[f"{s}_hip"] - person.joints[f"{s}_hip"]) for s in ("left", "right"))
    assert worst_raw > 0.05 * person.size_px  # the convention is what brings them in


def test_cocos_convention_is_blazeposes_own() -> None:
    """The MPII offsets moved the PoseTrack (COCO keypoints) tuning person's hips away from the labels."""
    xy = _standing_2d()
    np.testing.assert_array_equal(to_convention(xy, NAMES, COCO_CONVENTION), xy)
    assert DATASET_CONVENTIONS["posetrack18"] is COCO_CONVENTION
