"""SAM2 segmentation hub backend, end to end on CPU and offline: a randomly initialised SAM2.1
hiera-tiny saved as the real repo's checkpoint in a local Hugging Face cache, loaded by the app's own
download path, at a small image size. Random weights draw arbitrary masks: the tests check what holds
whatever the weights (shapes, ranges, masks within the prompt's box, people and landmarks kept)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.hub_models import save_random_sam2
from pipelines.io.image_io import load_image
from pipelines.registry import create
from pipelines.segmentation.hub_sam2 import HubSam2Segmenter
from pipelines.types import Prompts

REPO = "facebook/sam2.1-hiera-tiny"
IMAGE_SIZE = 128
"""SAM2's input side for the tests (the real models use 1024)."""


@pytest.fixture(scope="module")
def hf_cache(offline_hf_cache: Path) -> Iterator[Path]:
    cache = offline_hf_cache
    save_random_sam2(REPO)
    yield cache


@pytest.fixture(scope="module")
def segmenter(hf_cache: Path) -> HubSam2Segmenter:
    seg = create("segmentation", "hub", repo_id=REPO, image_size=IMAGE_SIZE, device="cpu")
    assert isinstance(seg, HubSam2Segmenter)
    return seg


@pytest.fixture(scope="module")
def small_lunge(lunge_path: Path) -> np.ndarray:
    rgb = load_image(lunge_path).rgb_hw3
    return cv2.resize(rgb, (400, 600), interpolation=cv2.INTER_AREA)


def _inside(mask_hw: np.ndarray, box_xyxy: np.ndarray, margin_frac: float = 0.05) -> bool:
    ys, xs = np.nonzero(mask_hw > 0)
    if not len(xs):
        return True
    x0, y0, x1, y1 = box_xyxy
    mx, my = margin_frac * (x1 - x0) + 1, margin_frac * (y1 - y0) + 1
    return bool(xs.min() >= x0 - mx and xs.max() < x1 + mx and ys.min() >= y0 - my and ys.max() < y1 + my)


def test_people_come_from_mediapipe_with_sam2_masks(segmenter: HubSam2Segmenter, small_lunge: np.ndarray) -> None:
    embedded = segmenter.people.detect(small_lunge)
    people = segmenter.detect(small_lunge)
    assert len(people) == len(embedded) >= 1
    for hub_person, mp_person in zip(people, embedded, strict=True):
        assert hub_person.mask_hw.shape == small_lunge.shape[:2] and hub_person.mask_hw.dtype == np.float32
        assert hub_person.mask_hw.min() >= 0.0 and hub_person.mask_hw.max() <= 1.0
        assert _inside(hub_person.mask_hw, mp_person.bbox_xyxy)  # SAM2 was prompted with the person's box
        # The landmarks the fit needs are MediaPipe's, untouched.
        np.testing.assert_array_equal(hub_person.keypoints2d.xy_k2, mp_person.keypoints2d.xy_k2)
        assert len(hub_person.keypoints3d_hip.names) == 33
    assert segmenter.sam2._model.image_size == IMAGE_SIZE  # the checkpoint loaded (strictly) into the small model


def test_prompts_redraw_one_mask_and_a_box_on_nobody_adds_a_person(
    segmenter: HubSam2Segmenter, small_lunge: np.ndarray
) -> None:
    people = segmenter.detect(small_lunge)
    x0, y0, x1, y1 = people[0].bbox_xyxy
    click = Prompts(points_n3=np.array([[(x0 + x1) / 2, (y0 + y1) / 2, 1.0]]))
    out = segmenter.apply_prompts(small_lunge, people, click)
    assert len(out) == len(people) and all(a is b for a, b in zip(out[1:], people[1:], strict=True))
    assert out[0].mask_hw.shape == small_lunge.shape[:2]
    np.testing.assert_array_equal(out[0].keypoints2d.xy_k2, people[0].keypoints2d.xy_k2)

    h, w = small_lunge.shape[:2]
    corner = np.array([0.0, 0.0, 0.2 * w, 0.1 * h])  # the lunge's top-left corner is background
    boxed = segmenter.apply_prompts(small_lunge, people, Prompts(box_xyxy=corner))
    assert len(boxed) in (len(people), len(people) + 1)  # a new person only where SAM2 found something
    for person in boxed[len(people):]:
        assert person.score == 1.0 and not person.keypoints2d.conf_k.any()
        assert _inside(person.mask_hw, corner)

    nobody = Prompts(points_n3=np.array([[2.0, 2.0, 0.0]]))
    assert segmenter.apply_prompts(small_lunge, people, nobody) == people


def test_the_image_is_embedded_once_for_all_prompts(segmenter: HubSam2Segmenter, small_lunge: np.ndarray) -> None:
    segmenter.sam2.embed(small_lunge)
    first = segmenter.sam2._embedding
    segmenter.sam2.mask(small_lunge, np.array([[10.0, 10.0, 1.0]]), None)
    assert segmenter.sam2._embedding is first
    assert first is not None and first.image_embed.shape[-2:] == (IMAGE_SIZE // 16, IMAGE_SIZE // 16)
