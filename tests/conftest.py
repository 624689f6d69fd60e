"""Shared fixtures: the real data in ../shared/data and one warm pipeline per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("ANNY_CACHE_DIR", str(Path.home() / ".cache" / "anny"))


def pytest_configure(config: pytest.Config) -> None:
    if not DATA.is_dir():
        raise pytest.UsageError(f"the real test data is missing: expected {DATA}")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA


@pytest.fixture(scope="session")
def lunge_path() -> Path:
    return DATA / "images" / "lunge.jpg"


@pytest.fixture(scope="module")
def offline_hf_cache(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 - Iterator[Path]
    """An empty Hugging Face cache for one test module, with HF_HUB_OFFLINE=1: the hub tests save their
    random-weight models into it in the real checkpoint layout."""
    with pytest.MonkeyPatch.context() as mp:
        cache = tmp_path_factory.mktemp("hf") / "hub"
        mp.setenv("HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        yield cache


@pytest.fixture(scope="module")
def segmenter():  # noqa: ANN201 - pipelines.segmentation.embedded.EmbeddedSegmenter
    """The embedded segmentation backend, one per test module (its MediaPipe graphs are freed after)."""
    from pipelines.registry import create

    seg = create("segmentation", "embedded")
    yield seg
    seg.close()


@pytest.fixture(scope="session")
def pipeline():  # noqa: ANN201 - pipelines.modes.image.ImagePipeline
    from pipelines.modes.image import ImagePipeline

    pipe = ImagePipeline()
    pipe.warmup()
    return pipe


@pytest.fixture(scope="module")
def engine(pipeline):  # noqa: ANN001, ANN201 - app.ui.handlers.Engine around the warm ImagePipeline
    """The playground's worker pool around the session's warm pipeline (the UI handler tests)."""
    from app.ui.handlers import Engine

    return Engine(pipeline)


@pytest.fixture(scope="session")
def single_dir() -> Path:
    """The one-person 4-camera capture (videos and Calib.qca.txt)."""
    return DATA / "multiview" / "pose2sim_single"


@pytest.fixture(scope="session")
def cams(single_dir: Path):  # noqa: ANN201 - list[pipelines.multiview.calibration.CalibratedCamera]
    """The capture's given calibration (Qualisys)."""
    from pipelines.multiview.calibration import load_qualisys_calibration

    return load_qualisys_calibration(single_dir / "Calib.qca.txt")
