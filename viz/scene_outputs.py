"""The scene's files and result.json entries (pipelines.scene.frame_scene.SceneResult).

    depth_metric.npy   float32 (H, W) metres, z along the optical axis, NaN where unknown (OpenCV camera frame)
    scene.ply          the scene's coloured point cloud (metres, OpenCV camera frame; people left out)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipelines.io.atomic import atomic_path
from pipelines.scene.pointcloud import write_ply
from pipelines.types import FrameResult

DEPTH_FILE = "depth_metric.npy"
CLOUD_FILE = "scene.ply"


def ground_entry(frame: FrameResult) -> dict[str, Any] | None:
    scene = frame.scene
    return None if scene is None or scene.ground is None else scene.ground.as_dict()


def scene_entry(frame: FrameResult) -> dict[str, Any] | None:
    """result.json's "scene": where the depth came from, its scaling, the files written, the notes."""
    scene = frame.scene
    if scene is None:
        return None
    entry: dict[str, Any] = {"depth_source": scene.depth_source, "notes": list(scene.notes),
                             "depth_file": None, "point_cloud": None}  # fmt: skip
    d = scene.depth
    if d is not None:
        entry.update(
            depth_file=DEPTH_FILE,
            depth_kind=d.kind,
            global_scale=d.global_scale,
            global_shift=d.global_shift,
            person_anchor_pixels=d.n_person_anchors,
            ground_anchor_pixels=d.n_ground_anchors,
            anchor_rel_err_global=d.anchor_rel_err_global,
            anchor_rel_err=d.anchor_rel_err,
        )
    if scene.points is not None:
        entry["point_cloud"] = {"file": CLOUD_FILE, "points": int(len(scene.points.xyz_n3)),
                                "pixel_stride": scene.points.stride}  # fmt: skip
    return entry


def write_scene_files(out_dir: Path, frame: FrameResult) -> list[str]:
    """depth_metric.npy and scene.ply when the scene has them; the names written."""
    scene = frame.scene
    names: list[str] = []
    if scene is None:
        return names
    if scene.depth is not None:
        with atomic_path(out_dir / DEPTH_FILE) as tmp, tmp.open("wb") as fh:
            np.save(fh, scene.depth.depth_m_hw.astype(np.float32))
        names.append(DEPTH_FILE)
    if scene.points is not None and len(scene.points.xyz_n3):
        write_ply(out_dir / CLOUD_FILE, scene.points)
        names.append(CLOUD_FILE)
    return names
