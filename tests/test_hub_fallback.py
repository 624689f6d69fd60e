"""When a hub model cannot be had (offline and not cached, a gated repo without access, a missing
package, CUDA without a GPU) the app keeps working with the stage's embedded backend and says so:
a warning line in the CLI, a sentence in the UI's status, `backends` in result.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import huggingface_hub
import numpy as np
import pytest
import torch
from huggingface_hub.errors import GatedRepoError

from app.ui import handlers as H
from app.ui.state import UISession
from pipelines import hub, moge_model
from pipelines.errors import BadPromptError
from pipelines.fallback import FallbackBackend
from pipelines.io.image_io import load_image
from pipelines.modes.image import ImagePipeline, PipelineConfig
from tests.cli_helpers import run_cli

SAM2_REPO = "facebook/sam2.1-hiera-large"  # the defaults: what a user gets with --segmentation hub
MOGE_REPO = "Ruicheng/moge-2-vitl-normal"


@pytest.fixture(autouse=True)
def empty_offline_cache(offline_hf_cache: Path) -> Path:
    moge_model.shared.cache_clear()  # no MoGe-2 copy from another test module
    yield offline_hf_cache
    moge_model.shared.cache_clear()


@pytest.fixture(scope="module")
def small_lunge(lunge_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rgb = load_image(lunge_path).rgb_hw3
    path = tmp_path_factory.mktemp("img") / "lunge_small.png"
    cv2.imwrite(str(path), cv2.cvtColor(cv2.resize(rgb, (400, 600), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2BGR))
    return path


class _Embedded:
    def detect(self, x: int) -> str:
        return f"embedded {x}"


class _Hub:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def detect(self, x: int) -> str:
        self.calls += 1
        raise self.error


def test_a_hub_failure_on_first_use_hands_the_same_call_to_the_embedded_backend() -> None:
    failing = _Hub(hub.HubUnavailable("x.pt of org/model is not in the Hugging Face cache; connect once"))
    stage = FallbackBackend("segmentation", "hub", lambda: failing, _Embedded)
    assert stage.detect(3) == "embedded 3" and stage.detect(4) == "embedded 4"
    assert failing.calls == 1  # it is not retried on every call
    assert stage.use.used == "embedded" and "org/model" in stage.use.reason
    assert stage.use.sentence().startswith("The hub segmentation backend could not be used, so the embedded")


def test_bad_input_is_not_hidden_by_a_fallback() -> None:
    stage = FallbackBackend("segmentation", "hub", lambda: _Hub(BadPromptError("point (9000, 1) is outside")),
                            _Embedded)  # fmt: skip
    with pytest.raises(BadPromptError, match="outside"):
        stage.detect(1)
    assert not stage.fell_back


def test_missing_package_falls_back_when_the_backend_is_created(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sam2", None)
    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)
    pipe = ImagePipeline(PipelineConfig(segmentation="hub", device="cpu"))
    pipe._get("segmentation")
    use = pipe.backend_uses()["segmentation"]
    assert (use.asked, use.used) == ("hub", "embedded")
    assert "'sam2'" in use.reason and "pip install sam2" in use.reason


def test_gated_repo_without_access_falls_back_to_the_prior(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def gated(**_kwargs: object) -> str:
        err = GatedRepoError.__new__(GatedRepoError)
        Exception.__init__(err, "403 Client Error: access to this model is restricted")
        raise err

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    pipe = ImagePipeline(PipelineConfig(camera="hub", device="cpu"))
    rgb = np.full((60, 80, 3), 100, np.uint8)
    camera = pipe._get("camera").initial(80, 60, None, None, image_rgb_hw3=rgb)
    assert camera.source == "default" and camera.width == 80  # the embedded prior: the body fit estimates it
    reason = pipe.backend_uses()["camera"].reason
    assert "gated" in reason and f"https://huggingface.co/{MOGE_REPO}" in reason and "HF_TOKEN" in reason


def test_cuda_without_a_gpu_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    pipe = ImagePipeline(PipelineConfig(camera="hub", device="cuda"))
    camera = pipe._get("camera").initial(80, 60, None, None, image_rgb_hw3=np.zeros((60, 80, 3), np.uint8))
    assert camera.source == "default"
    assert "--device cpu" in pipe.backend_uses()["camera"].reason


def test_cli_offline_warns_and_writes_what_ran(small_lunge: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                               ) -> None:  # fmt: skip
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["image", small_lunge, "--out", out, "--segmentation", "hub", "--camera", "hub",
                                    "--depth", "hub", "--device", "cpu", "--no-rrd", "--quiet"], capsys)  # fmt: skip
    assert code == 0, stderr
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3, stderr  # segmentation, camera, depth: one line each
    assert any(SAM2_REPO in w and "embedded segmentation backend ran instead" in w for w in warnings)
    assert any(MOGE_REPO in w and "HF_HUB_OFFLINE=1" in w for w in warnings)
    assert any("depth backend could not be used, so this stage was skipped" in w for w in warnings)
    assert "1 person(s) found, 1 fitted" in stdout and "note: The hub" not in stdout
    result = json.loads((out / "result.json").read_text())
    assert result["backends"]["segmentation"]["used"] == "embedded"
    assert result["backends"]["camera"] == {"asked": "hub", "used": "embedded",
                                            "fallback_reason": result["backends"]["camera"]["fallback_reason"]}
    assert MOGE_REPO in result["backends"]["camera"]["fallback_reason"]
    assert result["backends"]["depth"]["used"] == "none"
    assert result["backends"]["hmr"] == {"asked": "embedded", "used": "embedded", "fallback_reason": None}
    assert 1.3 < result["people"][0]["height_m"] < 2.2


def test_ui_status_says_which_backend_ran(pipeline: ImagePipeline, small_lunge: Path) -> None:
    engine = H.Engine(pipeline)  # the hub-camera pipeline shares the warm embedded models
    state = UISession()
    try:
        H.on_upload(state, str(small_lunge))
        updates = list(H.run_latest(state, backends={"camera": "hub"}, engine=engine))
    finally:
        state.cleanup()
    status = updates[-1].status
    assert "The hub camera backend could not be used, so the embedded camera backend ran instead" in status
    assert MOGE_REPO in status
    hub_pipe = engine.pipeline(PipelineConfig(camera="hub"))
    assert hub_pipe._get("segmentation") is pipeline._get("segmentation")  # one model copy for both
