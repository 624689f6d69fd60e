"""The modules the hub backends and the image mode need import without mediapipe (the registry's lazy
loading is not undone at import time); the embedded backends then say what is missing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_WITHOUT_MEDIAPIPE = """
import importlib.abc, importlib.machinery, sys

class NoMediapipe(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "mediapipe" or name.startswith("mediapipe."):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, NoMediapipe())
import pipelines.modes.image, pipelines.segmentation.hub_sam2, pipelines.camera.hub_moge, pipelines.depth.hub_moge
from pipelines.registry import BackendUnavailable, availability, create
print("segmentation:", availability("segmentation")["embedded"])
print("keypoints:", availability("keypoints")["embedded"])
try:
    create("segmentation", "embedded")
except BackendUnavailable as err:
    print("create:", err)
print("mediapipe imported:", any(m.split(".")[0] == "mediapipe" for m in sys.modules))
"""


def test_hub_modules_import_without_mediapipe_and_the_embedded_ones_say_why() -> None:
    out = subprocess.run([sys.executable, "-c", _WITHOUT_MEDIAPIPE], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(": ", 1) for line in out.stdout.splitlines())
    for key in ("segmentation", "keypoints", "create"):
        assert "mediapipe" in lines[key] and "mediapipe==0.10.21" in lines[key], out.stdout
    assert lines["mediapipe imported"] == "False"


_EMBEDDED_MODULES = """
import sys
import pipelines.modes.image
from pipelines.segmentation.prompts import validate_prompts
from pipelines.camera.prior import focal_prior_px
print("\\n".join(sorted(m for m in sys.modules if m.startswith("pipelines.") and m.rsplit(".", 1)[-1] == "embedded")))
"""


def test_the_image_mode_imports_no_embedded_backend() -> None:
    """The image mode talks to stage protocols: importing it loads no embedded backend module (they load
    on first use, through the registry), so a hub-only setup never pays for, or fails on, them."""
    out = subprocess.run([sys.executable, "-c", _EMBEDDED_MODULES], cwd=REPO, capture_output=True, text=True,
                         timeout=120, check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []


def test_the_old_homes_of_the_prompt_and_prior_helpers_still_export_them() -> None:
    from pipelines.camera import embedded as camera_embedded
    from pipelines.camera import prior
    from pipelines.segmentation import embedded as seg_embedded
    from pipelines.segmentation import prompts

    assert camera_embedded.focal_prior_px is prior.focal_prior_px
    assert seg_embedded.validate_prompts is prompts.validate_prompts
    assert seg_embedded.select_person is prompts.select_person
