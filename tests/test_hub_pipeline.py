"""The image pipeline with every hub backend of this release (SAM2 masks, MoGe-2 camera and depth),
offline, from random-weight checkpoints in a local Hugging Face cache: bodies in metres, the focal
from MoGe-2, the depth in the result and in the Rerun recording."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.hub_models import moge2_config, save_random_moge2, save_random_sam2
from pipelines import moge_model
from pipelines.io.image_io import LoadedImage, load_image
from pipelines.modes.image import ImagePipeline, PipelineConfig
from viz.outputs import write_outputs
from viz.rerun_log import DEPTH_PATH
from viz.rrd_read import entity_paths

SAM2_REPO = "facebook/sam2.1-hiera-tiny"
MOGE_REPO = "Ruicheng/moge-2-vits-normal"


@pytest.mark.slow  # about 35 s on 2 busy cores: two models built twice (saved, then loaded) and Anny loaded
def test_all_hub_backends_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lunge_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    save_random_sam2(SAM2_REPO)
    save_random_moge2(MOGE_REPO, moge2_config("dinov2_vits14", widths=(64, 32, 16, 16, 8)))
    moge_model.shared.cache_clear()
    moge = {"repo_id": MOGE_REPO, "num_tokens": 64}
    config = PipelineConfig(segmentation="hub", camera="hub", depth="hub", device="cpu", hub_options={
        "segmentation": {"repo_id": SAM2_REPO, "image_size": 128}, "camera": moge, "depth": moge})  # fmt: skip
    rgb = cv2.resize(load_image(lunge_path).rgb_hw3, (400, 600), interpolation=cv2.INTER_AREA)
    image = LoadedImage(rgb_hw3=rgb, path=None, exif_focal_px=None, exif_note=None, warnings=[])
    try:
        result = ImagePipeline(config).run(image)
    finally:
        moge_model.shared.cache_clear()

    assert result.camera.source in ("model", "estimated")  # MoGe-2's, or the fit's where it was implausible
    fitted = [p for p in result.people if p.body is not None]
    assert fitted, result.warnings
    for person in fitted:
        assert 1.2 < person.body.height_m < 2.3  # a human height in metres, whatever SAM2's random masks
        assert person.body.verts_cam_v3[:, 2].min() > 0  # in front of the camera (OpenCV z forward)
    assert result.depth is not None and result.depth.depth_hw.shape == rgb.shape[:2]
    assert {"camera", "detect", "fit", "depth"} <= set(result.timings_s), result.timings_s

    out = tmp_path / "out"
    write_outputs(out, result, image_path=None, write_rrd=True)
    paths = entity_paths(out / "result.rrd")
    assert f"/{DEPTH_PATH}" in paths or DEPTH_PATH in paths
    # MoGe-2's depth feeds the scene refinement by the people (random weights: mostly invalid depth, so the
    # refinement may find no anchor and say so; the metric depth is written exactly when it was made)
    assert result.scene is not None and result.scene.depth_source == "hub (MoGe-2)"
    assert (result.scene.depth is not None) == (out / "depth_metric.npy").exists()
    assert result.scene.depth is not None or any("could not be scaled" in n for n in result.scene.notes)
    assert np.isfinite(result.camera.K_33).all()
