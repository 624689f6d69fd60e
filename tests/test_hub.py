"""Hub plumbing: the device choice, and a clear sentence (repo or package + the fix) for every way a
model cannot be had: offline and not cached, a gated repo without access, an unknown repo, a
missing or broken package, CUDA asked for without a GPU."""

from __future__ import annotations

import sys
from pathlib import Path

import huggingface_hub
import pytest
import torch
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from pipelines import hub
from pipelines.errors import UserFacingError
from pipelines.registry import BackendUnavailable, availability, create


@pytest.fixture(autouse=True)
def offline_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def _hub_error(cls: type[Exception], text: str) -> Exception:
    err = cls.__new__(cls)  # the real class, without an HTTP response behind it
    Exception.__init__(err, text)
    return err


def test_offline_and_not_cached_names_the_file_repo_and_fix(offline_cache: Path) -> None:
    with pytest.raises(hub.HubUnavailable) as info:
        hub.download("facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt", "The SAM2 segmentation backend")
    msg = str(info.value)
    assert "facebook/sam2.1-hiera-tiny" in msg and "sam2.1_hiera_tiny.pt" in msg
    assert "HF_HUB_OFFLINE=1" in msg and str(offline_cache) in msg and "embedded backend" in msg
    assert isinstance(info.value, UserFacingError) and isinstance(info.value, BackendUnavailable)


def test_a_cached_file_is_found_offline(tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(b"\x00" * 16)
    cached = hub.add_to_cache("someone/model", "weights.bin", src)
    assert hub.download("someone/model", "weights.bin", "A test") == cached
    assert cached.read_bytes() == src.read_bytes()


def test_gated_repo_without_access_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def gated(**_kwargs: object) -> str:
        raise _hub_error(GatedRepoError, "403 Client Error: access to this model is restricted")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    with pytest.raises(hub.HubUnavailable) as info:
        hub.download("facebook/sam-3d-body-dinov3", "model.ckpt", "SAM 3D Body")
    msg = str(info.value)
    assert "gated" in msg and "https://huggingface.co/facebook/sam-3d-body-dinov3" in msg
    assert "HF_TOKEN" in msg and "hf auth login" in msg


def test_unknown_repo_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def not_found(**_kwargs: object) -> str:
        raise _hub_error(RepositoryNotFoundError, "404 Client Error: Repository Not Found")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_found)
    with pytest.raises(hub.HubUnavailable, match=r"repo Ruicheng/moge-2-nope was not found.*HF_TOKEN"):
        hub.download("Ruicheng/moge-2-nope", "model.pt", "The MoGe-2 backend")


def test_token_from_the_environment_is_passed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    def fake(**kwargs: object) -> str:
        seen.update(kwargs)
        return str(tmp_path)

    monkeypatch.setenv("HF_TOKEN", "hf_test")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake)
    hub.download("a/b", "c.pt", "A test")
    assert seen["token"] == "hf_test" and seen["local_files_only"] is True


def test_missing_package_names_it_and_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    create("segmentation", "embedded")  # the registry knows both segmentation backends
    availability("segmentation")
    monkeypatch.setitem(sys.modules, "sam2", None)
    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)
    with pytest.raises(hub.HubUnavailable, match=r"needs the Python package 'sam2'.*pip install sam2"):
        create("segmentation", "hub", device="cpu")
    reason = availability("segmentation")["hub"]
    assert reason is not None and "sam2" in reason
    assert availability("segmentation")["embedded"] is None


def test_broken_package_is_a_sentence_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_tv.py").write_text("raise RuntimeError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(hub.HubUnavailable, match=r"'torchvision' is installed but cannot be imported.*nms"):
        hub.require_package("broken_tv", "torchvision", "A test")


def test_device_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hub.choose_device(None) == "cpu" and hub.choose_device("auto") == "cpu"
    assert hub.choose_device("cpu") == "cpu"
    with pytest.raises(hub.HubUnavailable, match=r"--device cuda .*no CUDA GPU.*--device cpu"):
        hub.choose_device("cuda")
    with pytest.raises(hub.HubUnavailable, match="unknown device 'tpu'"):
        hub.choose_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hub.choose_device(None) == "cuda"


def test_the_ui_offers_installed_hub_backends_and_explains_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.ui.handlers import backend_choices, unavailable_note

    names, missing = backend_choices()["segmentation"]
    assert names[0] == "embedded" and "hub" in names  # sam2 is installed here: selectable, embedded stays default
    assert "hub" in backend_choices()["camera"][0]
    monkeypatch.setitem(sys.modules, "moge", None)  # as if dlr-moge were not installed
    choices = backend_choices()
    assert "hub" not in choices["camera"][0]
    assert "dlr-moge" in choices["camera"][1]["hub"] and "dlr-moge" in unavailable_note(choices)
