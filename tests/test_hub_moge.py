"""MoGe-2 camera and depth hub backends, end to end on CPU and offline: a randomly initialised MoGe-2
with the ViT-S encoder (narrow heads) saved as the real repo's model.pt in a local Hugging Face cache,
loaded by the app's own download path, run at a small number of tokens. Random weights predict an
arbitrary scene: the tests check what holds whatever the weights (shapes, metres, the camera's
priority, points consistent with the intrinsics in the OpenCV frame, one model copy and one run)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.hub_models import moge2_config, save_random_moge2
from pipelines import moge_model
from pipelines.camera.hub_moge import HubMoGeCamera
from pipelines.depth.hub_moge import HubMoGeDepth
from pipelines.io.image_io import LoadedImage, load_image
from pipelines.registry import create
from pipelines.types import Camera

REPO = "Ruicheng/moge-2-vits-normal"
OPTIONS = {"repo_id": REPO, "device": "cpu", "num_tokens": 64}
"""MoGe-2's base ViT tokens for the tests (its default is 1200 to 3600)."""


@pytest.fixture(scope="module")
def hf_cache(offline_hf_cache: Path) -> Iterator[Path]:
    cache = offline_hf_cache
    save_random_moge2(REPO, moge2_config("dinov2_vits14", widths=(64, 32, 16, 16, 8)))
    moge_model.shared.cache_clear()
    yield cache
    moge_model.shared.cache_clear()


@pytest.fixture(scope="module")
def small_lunge(lunge_path: Path) -> LoadedImage:
    image = load_image(lunge_path)
    rgb = cv2.resize(image.rgb_hw3, (160, 240), interpolation=cv2.INTER_AREA)
    return LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])


def _count_runs(model: moge_model.MoGeModel) -> list[int]:
    runs: list[int] = []
    model.model().encoder.register_forward_hook(lambda *_: runs.append(1))
    return runs


def test_camera_from_the_image_when_neither_user_nor_exif_gives_it(hf_cache: Path, small_lunge: LoadedImage) -> None:
    camera = create("camera", "hub", **OPTIONS)
    assert isinstance(camera, HubMoGeCamera)
    rgb = small_lunge.rgb_hw3
    h, w = rgb.shape[:2]
    cam = camera.initial(w, h, None, None, image_rgb_hw3=rgb)
    K_33 = camera.moge.infer(rgb).K_33
    if cam.source == "model":  # MoGe-2's focal (the same in x and y), principal point at the image centre
        assert cam.focal_px == pytest.approx(K_33[0, 0], rel=1e-3) == pytest.approx(K_33[1, 1], rel=1e-3)
        assert tuple(cam.K_33[:2, 2]) == (w / 2, h / 2)
    else:  # a field of view no lens has falls back to the prior (the body fit estimates the focal)
        assert cam.source == "default"
    assert camera.initial(w, h, 300.0, 250.0, image_rgb_hw3=rgb).source == "user"
    assert camera.initial(w, h, 300.0, None, image_rgb_hw3=rgb).focal_px == 300.0
    assert camera.initial(w, h, None, None).source == "default"  # no image: the embedded prior


def test_depth_is_metric_and_consistent_with_the_intrinsics(hf_cache: Path, small_lunge: LoadedImage) -> None:
    depth = create("depth", "hub", **OPTIONS)
    assert isinstance(depth, HubMoGeDepth)
    rgb = small_lunge.rgb_hw3
    h, w = rgb.shape[:2]
    result = depth.estimate(rgb, Camera.from_focal(200.0, w, h, "user"))
    assert result.depth_hw.shape == (h, w) and result.valid_hw.shape == (h, w) and result.valid_hw.dtype == bool
    assert result.points_hw3 is not None and result.points_hw3.shape == (h, w, 3)
    assert result.confidence_hw is not None and result.confidence_hw.shape == (h, w)
    assert result.confidence_hw.min() >= 0.0 and result.confidence_hw.max() <= 1.0
    valid = result.valid_hw
    assert np.all(np.isnan(result.depth_hw[~valid])) and np.all(result.depth_hw[valid] > 0)
    # The user's focal was given to MoGe-2: the intrinsics, and the point map in metres, follow it.
    assert result.K_33 is not None and result.K_33[0, 0] == pytest.approx(200.0, rel=1e-3)
    if valid.any():
        pts = result.points_hw3[valid]
        np.testing.assert_allclose(pts[:, 2], result.depth_hw[valid], rtol=1e-4)
        ys, xs = np.nonzero(valid)
        u = pts[:, 0] / pts[:, 2] * result.K_33[0, 0] + result.K_33[0, 2]
        v = pts[:, 1] / pts[:, 2] * result.K_33[1, 1] + result.K_33[1, 2]
        np.testing.assert_allclose(u, xs + 0.5, atol=0.05)  # pixel centres at +0.5, x right
        np.testing.assert_allclose(v, ys + 0.5, atol=0.05)  # y down


def test_camera_and_depth_share_one_model_and_one_run(hf_cache: Path, small_lunge: LoadedImage) -> None:
    from pipelines.modes.image import ImagePipeline, PipelineConfig

    options = {k: v for k, v in OPTIONS.items() if k != "device"}
    config = PipelineConfig(camera="hub", depth="hub", device="cpu", hub_options={"camera": options, "depth": options})
    pipe = ImagePipeline(config)
    camera, depth = pipe._get("camera"), pipe._get("depth")
    assert camera.moge is depth.moge
    rgb = np.ascontiguousarray(small_lunge.rgb_hw3[::-1])  # an image no other test ran MoGe-2 on
    runs = _count_runs(camera.moge)
    h, w = rgb.shape[:2]
    cam = camera.initial(w, h, None, None, image_rgb_hw3=rgb)
    if cam.source == "model":
        result = depth.estimate(rgb, cam)
        assert len(runs) == 1 and result.depth_hw.shape == (h, w)


def test_cli_offline_no_fallback_names_the_repo_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], small_lunge: LoadedImage
) -> None:
    from app.cli import main

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    moge_model.shared.cache_clear()
    photo = tmp_path / "small.png"
    cv2.imwrite(str(photo), small_lunge.rgb_hw3[..., ::-1])
    try:
        code = main(["image", str(photo), "--out", str(tmp_path / "out"), "--camera", "hub", "--device", "cpu",
                     "--no-fallback", "--quiet", "--no-rrd"])  # fmt: skip
    finally:
        moge_model.shared.cache_clear()
    assert code == 2 and not (tmp_path / "out").exists()
    err = capsys.readouterr().err
    assert err.startswith("error: The MoGe-2 backend") and moge_model.DEFAULT_REPO in err
    assert "HF_HUB_OFFLINE=1" in err and "embedded backend" in err
