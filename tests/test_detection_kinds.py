"""A detection may be mask-only (SAM2) or box-only (a box detector): no landmarks needed. Such people
are reported and written (result.json, result.rrd) without a body, with a plain note."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipelines.types import Camera, FrameResult, PersonDetection, PersonResult
from viz.outputs import write_outputs
from viz.rrd_read import entity_paths


def test_box_only_and_mask_only_people_are_written(tmp_path: Path) -> None:
    h, w = 120, 160
    mask_hw = np.zeros((h, w), np.float32)
    mask_hw[20:100, 60:100] = 1.0
    box_only = PersonDetection(bbox_xyxy=np.array([10.0, 10.0, 50.0, 110.0]), score=0.8)
    mask_only = PersonDetection(bbox_xyxy=np.array([60.0, 20.0, 100.0, 100.0]), score=0.9, mask_hw=mask_hw)
    assert not box_only.has_landmarks and not mask_only.has_landmarks
    assert box_only.keypoints2d.xy_k2.shape == (0, 2) and box_only.keypoints3d_hip.xyz_k3.shape == (0, 3)
    frame = FrameResult(image_rgb_hw3=np.full((h, w, 3), 90, np.uint8), camera=Camera.from_focal(150.0, w, h, "user"),
                        people=[PersonResult(0, box_only), PersonResult(1, mask_only)])  # fmt: skip
    write_outputs(tmp_path / "out", frame, image_path=None, write_rrd=True)
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert [p["bbox_xyxy"] for p in result["people"]] == [[10.0, 10.0, 50.0, 110.0], [60.0, 20.0, 100.0, 100.0]]
    assert all(p["keypoints2d"] == {} for p in result["people"])
    paths = {p.lstrip("/") for p in entity_paths(tmp_path / "out" / "result.rrd")}
    mask_paths = {p for p in paths if p.endswith("/mask")}
    assert len(mask_paths) == 1 and "1/mask" in next(iter(mask_paths))  # only the mask-only person has a mask
