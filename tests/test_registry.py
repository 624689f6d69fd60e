"""Backends are chosen by name; unknown or unavailable ones say why in plain words."""

from __future__ import annotations

import pytest

from pipelines.registry import BackendUnavailable, availability, create


def test_embedded_backends_are_available_and_created_by_name() -> None:
    for stage in ("segmentation", "keypoints", "camera", "hmr"):
        assert availability(stage)["embedded"] is None
    assert availability("body")["anny"] is None
    camera = create("camera", "embedded").initial(800, 600, None, 700.0)
    assert camera.focal_px == 700.0 and camera.source == "user"


def test_unavailable_backends_explain_themselves() -> None:
    reason = availability("hmr")["hub"]
    assert reason and "SAM 3D Body" in reason
    with pytest.raises(BackendUnavailable, match="SAM 3D Body"):
        create("hmr", "hub")
    with pytest.raises(BackendUnavailable, match="no hmr backend named 'magic'"):
        create("hmr", "magic")
