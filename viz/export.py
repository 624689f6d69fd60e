"""Files for other tools: meshes (GLB, OBJ), body parameters (NPZ), JSON, and a 2D overlay.

Meshes arrive in the OpenCV camera frame (x right, y down, z forward; metres). glTF and most
mesh viewers expect y up and the camera looking down -z, so both GLB and OBJ exports rotate the
mesh 180 degrees about the camera's x axis: (x, y, z) -> (x, -y, -z). It is a proper rotation
(winding and handedness are kept), the units stay metres, and the origin stays at the camera
centre, so the person stands upright in front of a viewer's default camera at -z.
"""

from __future__ import annotations

import json
import math
import struct
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from pipelines.io.atomic import atomic_path, write_bytes_atomic, write_text_atomic
from pipelines.types import Camera, PersonResult

GLTF_T_CAM_33 = np.diag([1.0, -1.0, -1.0])
"""Rotation from the OpenCV camera frame to glTF's axes (y up, looking down -z)."""

_PALETTE_RGB: list[tuple[int, int, int]] = [
    (66, 135, 245), (245, 130, 48), (60, 180, 75), (230, 25, 75), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40),
]  # fmt: skip


def person_color(person_id: int) -> tuple[int, int, int]:
    """A stable RGB colour (0..255) per person id, shared by the overlay and the Rerun logging."""
    return _PALETTE_RGB[person_id % len(_PALETTE_RGB)]


# ----------------------------------------------------------------------------------------- meshes


def _gltf_arrays(verts_v3: np.ndarray, faces_f3: np.ndarray, color_rgb: Sequence[int]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Vertices in glTF axes (float64), faces (int64) and one RGBA colour per vertex (uint8)."""
    verts_gltf_v3 = np.asarray(verts_v3, dtype=np.float64) @ GLTF_T_CAM_33.T
    faces = np.asarray(faces_f3, dtype=np.int64)
    rgba = np.array([*[int(c) for c in color_rgb[:3]], 255], dtype=np.uint8)
    return verts_gltf_v3, faces, np.broadcast_to(rgba, (len(verts_gltf_v3), 4)).copy()


def _pad4(data: bytes, fill: bytes = b"\0") -> bytes:
    return data + fill * (-len(data) % 4)


def glb_bytes(verts_gltf_v3: np.ndarray, faces_f3: np.ndarray, colors_v4: np.ndarray) -> bytes:
    """A binary glTF 2.0 of one triangle mesh with vertex colours, no normals, laid out as trimesh 5 exports
    a `Trimesh(..., process=False)` (the same JSON but the generator, the same binary chunk: a test checks
    it), without importing trimesh (~1.9 s of CPU with its scipy and networkx imports, on a cold run).
    Accessors: 0 indices (uint32), 1 POSITION (float32), 2 COLOR_0 (normalised uint8 RGBA)."""
    arrays = [(np.ascontiguousarray(faces_f3, dtype=np.uint32).ravel(), {"componentType": 5125, "type": "SCALAR"}),
              (np.ascontiguousarray(verts_gltf_v3, dtype=np.float32),
               {"componentType": 5126, "type": "VEC3", "byteOffset": 0}),
              (np.ascontiguousarray(colors_v4, dtype=np.uint8),
               {"componentType": 5121, "normalized": True, "type": "VEC4", "byteOffset": 0})]  # fmt: skip
    accessors, views, chunks, offset = [], [], [], 0
    for i, (data, accessor) in enumerate(arrays):
        chunk = _pad4(data.tobytes())
        flat = data.reshape(len(data), -1)
        accessors.append({**accessor, "bufferView": i, "count": len(flat),
                          "max": flat.max(axis=0).tolist(), "min": flat.min(axis=0).tolist()})  # fmt: skip
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(chunk)})
        chunks.append(chunk)
        offset += len(chunk)
    tree = {
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "asset": {"version": "2.0", "generator": "hmr-playground"},
        "accessors": accessors,
        "meshes": [{"name": "geometry_0", "extras": {},
                    "primitives": [{"attributes": {"POSITION": 1, "COLOR_0": 2}, "indices": 0, "mode": 4}]}],
        "nodes": [{"name": "geometry_0", "mesh": 0}],
        "buffers": [{"byteLength": offset}],
        "bufferViews": views,
    }  # fmt: skip
    content = json.dumps(tree, separators=(",", ":"))
    content = (content + " " * (-(len(content) + 20) % 4)).encode("utf-8")  # the binary chunk starts 4-aligned
    binary = b"".join(chunks)
    header = struct.pack("<III", 0x46546C67, 2, 28 + len(content) + len(binary))  # b"glTF", version 2
    return b"".join([header, struct.pack("<II", len(content), 0x4E4F534A), content,  # b"JSON"
                     struct.pack("<II", len(binary), 0x004E4942), binary])  # b"BIN\0"  # fmt: skip


def export_mesh_glb(
    path: str | Path, verts_v3: np.ndarray, faces_f3: np.ndarray, color_rgb: Sequence[int] = (200, 200, 200)
) -> Path:
    """Write a binary glTF of a camera-frame mesh, converted to glTF axes (see the module docstring)."""
    path = Path(path)
    write_bytes_atomic(path, glb_bytes(*_gltf_arrays(verts_v3, faces_f3, color_rgb)))
    return path


def export_mesh_obj(
    path: str | Path, verts_v3: np.ndarray, faces_f3: np.ndarray, color_rgb: Sequence[int] = (200, 200, 200)
) -> Path:
    """Write a Wavefront OBJ (vertex colours, no normals) in the same y-up axes as the GLB export."""
    path = Path(path)
    v, faces, _ = _gltf_arrays(verts_v3, faces_f3, color_rgb)
    r, g, b = (float(c) / 255.0 for c in np.asarray(color_rgb, dtype=np.float64)[:3])
    # One %-format call per block: ~10x faster than trimesh's exporter for a 13k-vertex body; Python
    # numbers (tolist) format faster than numpy scalars, same text; the colour (one per mesh) is formatted
    # once into the vertex line, and the face lines of a mesh topology are formatted once per process (the
    # same text). No normals: loaders compute smooth ones from the shared vertices.
    vertex_line = f"v %.6f %.6f %.6f {r:.4f} {g:.4f} {b:.4f}\n"  # "{:.4f}" formats as "%.4f" does
    parts = [
        "# hmr-playground mesh: metres; axes x right, y up, z towards the viewer (camera at origin)\n",
        (vertex_line * len(v)) % tuple(v.ravel().tolist()),
        _obj_face_lines(faces),
    ]
    write_text_atomic(path, "".join(parts))
    return path


_FACE_LINES_LOCK = threading.Lock()
_FACE_LINES: dict[bytes, str] = {}
"""OBJ face lines by the faces' bytes (a body model has one topology; a few are kept)."""


def _obj_face_lines(faces_f3: np.ndarray) -> str:
    """The OBJ 'f' lines (1-based indices) of int64 faces (F, 3)."""
    key = np.ascontiguousarray(faces_f3, dtype=np.int64).tobytes()
    text = _FACE_LINES.get(key)
    if text is None:
        text = ("f %d %d %d\n" * len(faces_f3)) % tuple((faces_f3 + 1).ravel().tolist())
        with _FACE_LINES_LOCK:  # sessions of the playground write from several threads
            while len(_FACE_LINES) >= 4:
                _FACE_LINES.pop(next(iter(_FACE_LINES)))
            _FACE_LINES[key] = text
    return text


# ------------------------------------------------------------------------------------ data files


def save_params_npz(path: str | Path, params: dict[str, np.ndarray], meta: dict[str, Any]) -> Path:
    """Save body parameters as arrays plus `meta` as a JSON string under the key 'meta_json'.

    Read back with: d = np.load(path); params = {k: d[k] for k in d.files if k != 'meta_json'};
    meta = json.loads(str(d['meta_json'])).
    """
    path = Path(path)
    if "meta_json" in params:
        raise ValueError("'meta_json' is reserved for the metadata")
    arrays = {k: np.asarray(v) for k, v in params.items()}
    arrays["meta_json"] = np.array(json.dumps(to_jsonable(meta)))
    with atomic_path(path) as tmp, tmp.open("wb") as fh:  # a file handle: numpy appends no '.npz' to the name
        np.savez_compressed(fh, **arrays)  # type: ignore[arg-type]
    return path


def to_jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays, paths, tuples and sets to JSON types; NaN and inf become null."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: str | Path, obj: Any) -> Path:
    """Write strict JSON (numpy-safe, NaN -> null) via a temporary file and an atomic rename."""
    path = Path(path)
    return write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2, allow_nan=False) + "\n")


# --------------------------------------------------------------------------------------- overlay


def vertex_normals(verts_v3: np.ndarray, faces_f3: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (V, 3), unit length as glTF's NORMAL must be: a vertex of no face, or only of
    degenerate ones, gets +z."""
    tri = verts_v3[faces_f3]
    face_n_f3 = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 x area
    normals_v3 = np.zeros_like(verts_v3, dtype=np.float64)
    flat = faces_f3.reshape(-1)
    for axis in range(3):
        normals_v3[:, axis] = np.bincount(flat, np.repeat(face_n_f3[:, axis], 3), minlength=len(verts_v3))
    length_v1 = np.linalg.norm(normals_v3, axis=1, keepdims=True)
    return np.where(length_v1 > 1e-12, normals_v3 / np.maximum(length_v1, 1e-12), np.array([0.0, 0.0, 1.0]))


def _face_normals(tri_f33: np.ndarray) -> np.ndarray:
    n_f3 = np.cross(tri_f33[:, 1] - tri_f33[:, 0], tri_f33[:, 2] - tri_f33[:, 0])
    return n_f3 / np.maximum(np.linalg.norm(n_f3, axis=1, keepdims=True), 1e-12)


def _outward_sign(verts_v3: np.ndarray, faces_f3: np.ndarray) -> float:
    """+1 or -1 to make face normals point outwards for a closed mesh; 0 for an open one (no culling)."""
    centred_v3 = verts_v3 - verts_v3.mean(axis=0)
    tri = centred_v3[faces_f3]
    volume = float(np.einsum("fi,fi->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))) / 6.0
    extent = np.ptp(verts_v3, axis=0)
    box_volume = float(np.prod(np.maximum(extent, 1e-9)))
    if abs(volume) < 0.02 * box_volume:  # a surface, not a solid: draw both sides
        return 0.0
    return 1.0 if volume > 0 else -1.0


def face_index_in_box(pts_f32: np.ndarray, order: np.ndarray, width: int, height: int
                      ) -> tuple[np.ndarray, tuple[int, int]]:  # fmt: skip
    """The painter's face-index buffer (-1: no face) of triangles `pts_f32` (F, 3, 2: int32 pixels with 4
    fractional bits, centres at integers) drawn in `order` into a width x height image, over the triangles'
    box only (2 px of margin, within the image): (index of the box, its top-left (x0, y0)). The same indices
    as a whole-image buffer (the corners shift by whole pixels; the image's edges clip as before), less
    memory to fill and scan."""
    if not len(pts_f32):
        return np.zeros((0, 0), dtype=np.int32), (0, 0)
    flat_n2 = pts_f32.reshape(-1, 2)
    x0, y0 = np.maximum(flat_n2.min(axis=0) // 16 - 2, 0).tolist()
    x1, y1 = np.minimum(flat_n2.max(axis=0) // 16 + 3, [width, height]).tolist()
    if x1 <= x0 or y1 <= y0:  # all outside the image
        return np.zeros((0, 0), dtype=np.int32), (0, 0)
    shifted_f32 = pts_f32 - np.array([x0, y0], dtype=np.int32) * 16
    index_hw = np.full((y1 - y0, x1 - x0), -1, dtype=np.int32)
    for f, tri_32 in zip(order.tolist(), shifted_f32[order], strict=True):
        cv2.fillConvexPoly(index_hw, tri_32, f, cv2.LINE_8, 4)
    return index_hw, (x0, y0)


def render_overlay(
    image_rgb_hw3: np.ndarray,
    camera: Camera,
    people: Sequence[PersonResult],
    *,
    alpha: float = 0.6,
    min_keypoint_conf: float = 0.3,
) -> np.ndarray:
    """The photo with each person's mesh (Lambert-shaded, person colour, `alpha` blend) and 2D keypoints.

    Rasterisation is a painter's algorithm at full resolution: faces of all people, sorted far to
    near by mean depth, are drawn one by one with cv2.fillConvexPoly into a face-index buffer (the
    index is the 'colour'), then shaded in one vectorised lookup. Back faces of closed meshes are
    culled. Exact for meshes whose triangles do not intersect; ~30 ms for 27k faces at 1080p.
    """
    out_hw3 = np.ascontiguousarray(image_rgb_hw3, dtype=np.uint8).copy()
    h, w = out_hw3.shape[:2]
    tris: list[np.ndarray] = []
    rgb: list[np.ndarray] = []
    for person in people:
        if person.body is None or len(person.body.faces_f3) == 0:
            continue
        verts_v3 = np.asarray(person.body.verts_cam_v3, dtype=np.float64)
        faces_f3 = np.asarray(person.body.faces_f3, dtype=np.int64)
        tri_f33 = verts_v3[faces_f3]
        keep = np.all(tri_f33[:, :, 2] > 1e-3, axis=1)  # drop faces touching or behind the camera
        normal_f3 = _face_normals(tri_f33)
        ray_f3 = tri_f33.mean(axis=1)
        ray_f3 /= np.maximum(np.linalg.norm(ray_f3, axis=1, keepdims=True), 1e-12)
        cos_f = np.einsum("fi,fi->f", normal_f3, ray_f3)
        sign = _outward_sign(verts_v3, faces_f3)
        if sign != 0.0:
            keep &= sign * cos_f < 0  # outward normal must point back towards the camera
        shade_f = 0.25 + 0.75 * np.abs(cos_f)
        color = np.array(person_color(person.id), dtype=np.float32)
        tris.append(tri_f33[keep])
        rgb.append(shade_f[keep, None].astype(np.float32) * color)
    if tris:
        tri_f33 = np.concatenate(tris)
        face_rgb_f3 = np.concatenate(rgb)
        order = np.argsort(-tri_f33[:, :, 2].mean(axis=1), kind="stable")  # far to near
        uv_f32 = camera.project(tri_f33.reshape(-1, 3)).reshape(-1, 3, 2) - 0.5  # cv2: centres at integers
        limit = 8.0 * max(w, h)
        uv_f32 = np.clip(uv_f32, -limit, limit)
        pts_f32 = np.rint(uv_f32 * 16.0).astype(np.int32)  # 4 fractional bits (shift=4)
        index_hw, (x0, y0) = face_index_in_box(pts_f32, order, w, h)
        if index_hw.size:
            covered = index_hw >= 0
            box_hw3 = out_hw3[y0 : y0 + index_hw.shape[0], x0 : x0 + index_hw.shape[1]]
            mesh_rgb_n3 = face_rgb_f3[index_hw[covered]]
            blended = box_hw3[covered].astype(np.float32) * (1.0 - alpha) + mesh_rgb_n3 * alpha
            box_hw3[covered] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    radius = max(2, round(max(h, w) / 400))
    for person in people:
        kp = person.detection.keypoints2d
        color = person_color(person.id)
        for (x, y), conf in zip(np.asarray(kp.xy_k2), np.asarray(kp.conf_k), strict=True):
            if conf < min_keypoint_conf or not (np.isfinite(x) and np.isfinite(y)):
                continue
            centre = (int(round((x - 0.5) * 16)), int(round((y - 0.5) * 16)))
            cv2.circle(out_hw3, centre, radius * 16 + 16, (0, 0, 0), -1, cv2.LINE_AA, 4)
            cv2.circle(out_hw3, centre, radius * 16, color, -1, cv2.LINE_AA, 4)
    return out_hw3
