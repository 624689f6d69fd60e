"""Visible-surface depth of triangle meshes (a z-buffer), vectorised in numpy (no GPU, no OpenGL).

Conventions: OpenCV camera frame (x right, y down, z forward), metres; pixel centres at +0.5 (the
pixel (col, row) samples the point (col + 0.5, row + 0.5)). Depth is z along the optical axis.
"""

from __future__ import annotations

import numpy as np

_MAX_BATCH_CELLS = 4_000_000
"""At most this many (face, candidate pixel) pairs are tested at once (memory ~ 100 MB)."""


def render_depth(verts_v3: np.ndarray, faces_f3: np.ndarray, K_33: np.ndarray, width: int, height: int,
                 depth_hw: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Nearest surface depth (metres) per pixel of the mesh seen by the pinhole `K_33`; +inf where empty.

    Faces touching or behind the camera (z <= 1 mm) are skipped. Pass `depth_hw` (float64, (H, W)) to
    draw several meshes into one buffer (it is updated in place and returned).
    """
    if depth_hw is None:
        depth_hw = np.full((height, width), np.inf)
    verts_v3 = np.asarray(verts_v3, dtype=np.float64)
    tri_f33 = verts_v3[np.asarray(faces_f3, dtype=np.int64)]
    tri_f33 = tri_f33[np.all(tri_f33[:, :, 2] > 1e-3, axis=1)]
    if not len(tri_f33):
        return depth_hw
    z_f3 = tri_f33[:, :, 2]
    uv_f32 = tri_f33[:, :, :2] / z_f3[:, :, None] @ K_33[:2, :2].T + K_33[:2, 2]
    # candidate pixels: those whose centre (c + 0.5) lies in the face's box
    lo_f2 = np.ceil(uv_f32.min(axis=1) - 0.5).astype(np.int64)
    hi_f2 = np.floor(uv_f32.max(axis=1) - 0.5).astype(np.int64)
    lo_f2 = np.maximum(lo_f2, 0)
    hi_f2 = np.minimum(hi_f2, [width - 1, height - 1])
    size_f2 = hi_f2 - lo_f2 + 1
    keep = np.all(size_f2 > 0, axis=1)
    tri_uv, z_f3, lo_f2, size_f2 = uv_f32[keep], z_f3[keep], lo_f2[keep], size_f2[keep]
    side_f = size_f2.max(axis=1)
    # faces grouped by box side (1, 2, 4, 8, ...) so each group tests a dense side x side block
    bucket_f = np.ceil(np.log2(np.maximum(side_f, 1))).astype(np.int64)
    flat = depth_hw.reshape(-1)
    for b in np.unique(bucket_f):
        ids = np.flatnonzero(bucket_f == b)
        side = int(2**b)
        step = max(1, _MAX_BATCH_CELLS // (side * side))
        for start in range(0, len(ids), step):
            _draw(flat, tri_uv[ids[start:start + step]], z_f3[ids[start:start + step]],
                  lo_f2[ids[start:start + step]], side, width, height)  # fmt: skip
    return depth_hw


def _draw(flat_depth: np.ndarray, uv_f32: np.ndarray, z_f3: np.ndarray, lo_f2: np.ndarray, side: int,
          width: int, height: int) -> None:  # fmt: skip
    offs = np.arange(side)
    px_fs = lo_f2[:, :1] + offs[None, :]  # columns
    py_fs = lo_f2[:, 1:] + offs[None, :]  # rows
    x_fn = np.tile(px_fs, (1, side)) + 0.5  # (F, side*side) pixel centres, row-major over (y, x)
    y_fn = np.repeat(py_fs, side, axis=1) + 0.5
    a, b, c = uv_f32[:, 0], uv_f32[:, 1], uv_f32[:, 2]
    det_f = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    ok_f = np.abs(det_f) > 1e-12
    det_f = np.where(ok_f, det_f, 1.0)
    dx, dy = x_fn - a[:, :1], y_fn - a[:, 1:]
    w1 = (dx * (c[:, 1:] - a[:, 1:]) - dy * (c[:, :1] - a[:, :1])) / det_f[:, None]
    w2 = (dy * (b[:, :1] - a[:, :1]) - dx * (b[:, 1:] - a[:, 1:])) / det_f[:, None]
    w0 = 1.0 - w1 - w2
    eps = -1e-9
    inside = (w0 >= eps) & (w1 >= eps) & (w2 >= eps) & ok_f[:, None]
    inside &= (x_fn < width) & (y_fn < height)
    # perspective-correct depth: 1/z is affine in screen space
    inv_z = w0 / z_f3[:, :1] + w1 / z_f3[:, 1:2] + w2 / z_f3[:, 2:]
    idx = (y_fn.astype(np.int64) * width + x_fn.astype(np.int64))[inside]
    np.minimum.at(flat_depth, idx, 1.0 / inv_z[inside])
