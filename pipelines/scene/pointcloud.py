"""A coloured point cloud of the scene from a metric depth map (OpenCV camera frame, metres).

Pixels are back-projected through pixel centres (+0.5). Dropped: unknown depth, points behind or at
the camera, pixels of low confidence, pixels inside the people's masks (the people are meshes), and
flying pixels at depth edges (where the depth jumps between neighbours, the pixel is smeared between
the two surfaces). The cloud is downsampled on a regular pixel stride so its size stays bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipelines.io.atomic import atomic_path

EDGE_REL_JUMP = 0.04
"""A pixel whose depth differs from a 4-neighbour's by more than this fraction sits on a depth edge."""
MAX_POINTS = 200_000
"""The stride is chosen so that at most about this many pixels are back-projected."""


@dataclass
class PointCloud:
    """Scene points in the camera frame."""

    xyz_n3: np.ndarray
    """float32 metres, OpenCV camera frame (x right, y down, z forward); every z > 0."""
    rgb_n3: np.ndarray
    """uint8 colour of each point (from the photo)."""
    stride: int
    """Pixel stride used to downsample."""


def depth_edges(depth_hw: np.ndarray, rel_jump: float = EDGE_REL_JUMP) -> np.ndarray:
    """Boolean (H, W): pixels with a relative depth jump above `rel_jump` to a 4-neighbour (or unknown ones)."""
    z = np.where(np.isfinite(depth_hw), depth_hw, 0.0).astype(np.float64)
    edge = np.zeros(z.shape, dtype=bool)
    for axis in (0, 1):
        a = np.take(z, range(z.shape[axis] - 1), axis=axis)
        b = np.take(z, range(1, z.shape[axis]), axis=axis)
        with np.errstate(divide="ignore", invalid="ignore"):
            jump = np.abs(a - b) / np.maximum(np.minimum(a, b), 1e-9)
        jump = ~(jump <= rel_jump)  # NaN (both zero) counts as an edge
        pad_lo = [(0, 0), (0, 0)]
        pad_hi = [(0, 0), (0, 0)]
        pad_lo[axis] = (0, 1)
        pad_hi[axis] = (1, 0)
        edge |= np.pad(jump, pad_lo) | np.pad(jump, pad_hi)
    return edge


def backproject(
    depth_hw: np.ndarray,
    K_33: np.ndarray,
    rgb_hw3: np.ndarray,
    *,
    confidence_hw: np.ndarray | None = None,
    min_confidence: float = 0.5,
    exclude_hw: np.ndarray | None = None,
    max_points: int = MAX_POINTS,
) -> PointCloud:
    """The scene's points (see the module docstring); `exclude_hw` (bool, e.g. the people's masks)."""
    h, w = depth_hw.shape
    keep = np.isfinite(depth_hw) & (depth_hw > 1e-3)
    if confidence_hw is not None:
        keep &= np.asarray(confidence_hw) >= min_confidence
    if exclude_hw is not None:
        keep &= ~np.asarray(exclude_hw, dtype=bool)
    keep &= ~depth_edges(depth_hw)
    stride = max(1, int(np.ceil(np.sqrt(h * w / max(max_points, 1)))))
    sub = np.zeros_like(keep)
    sub[::stride, ::stride] = True
    ys, xs = np.nonzero(keep & sub)
    z = depth_hw[ys, xs].astype(np.float64)
    x = (xs + 0.5 - K_33[0, 2]) / K_33[0, 0] * z
    y = (ys + 0.5 - K_33[1, 2]) / K_33[1, 1] * z
    xyz = np.stack([x, y, z], axis=1).astype(np.float32)
    return PointCloud(xyz_n3=xyz, rgb_n3=np.asarray(rgb_hw3)[ys, xs].astype(np.uint8), stride=stride)


def write_ply(path: str | Path, cloud: PointCloud) -> Path:
    """Binary PLY with x, y, z (float32, metres, OpenCV camera frame) and red, green, blue (uint8), via trimesh."""
    import trimesh

    rgba = np.concatenate([cloud.rgb_n3, np.full((len(cloud.rgb_n3), 1), 255, np.uint8)], axis=1)
    pc = trimesh.PointCloud(vertices=cloud.xyz_n3.astype(np.float64), colors=rgba)
    path = Path(path)
    with atomic_path(path) as tmp:
        pc.export(tmp, file_type="ply")
    return path
