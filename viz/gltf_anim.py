"""Write a track as an animated, skinned binary glTF (GLB) with pygltflib: the mesh, its skeleton, its motion.

What the file holds (glTF 2.0, played by Blender and three.js):
- one mesh: the track's body in its rest pose (its held shape), one material of the track's colour,
  normals, and skin attributes JOINTS_0 / WEIGHTS_0: each vertex's 4 largest
  of Anny's (up to 9) skinning weights, renormalised (three.js reads one set of 4);
- one skin: a node per Anny bone (same labels and hierarchy as the BVH export), each placed at its
  rest head relative to its parent with no rest rotation; inverse bind matrices undo the rest heads;
- one animation: per bone a rotation channel (its rotation relative to its parent) and, for the root,
  a translation channel, with one keyframe per processed frame (times in seconds from the track's
  first frame, LINEAR interpolation).

Axes: glTF's y up. By default the camera looking down -z: the OpenCV camera frame turned 180 degrees
about x (as viz.export's static GLB and viz.bvh); with `out_T_cam_44`, any rigid frame with y up (the
video mode passes the ground's world frame: y = the ground's normal, the floor at y = 0). Anny's z-up
rest is turned to y-up. Units: metres. The root's translation is the fitted root position in that
frame, so the body moves as in the video.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.io.atomic import atomic_path
from pipelines.tracking.track_smoothing import continuous_quaternions
from viz.bvh import BVH_T_CAM_33, BVH_T_REST_33, bvh_joint_names, out_frame
from viz.export import vertex_normals

GLTF_T_CAM_33 = BVH_T_CAM_33
"""OpenCV camera axes -> glTF axes (y up, camera looking down -z)."""
GLTF_T_REST_33 = BVH_T_REST_33
"""Anny's rest axes (z up) -> glTF axes (y up)."""
MAX_INFLUENCES = 4
"""Skinning weights kept per vertex (one JOINTS_0 / WEIGHTS_0 set)."""


def top_influences(idx_vn: np.ndarray, w_vn: np.ndarray, k: int = MAX_INFLUENCES) -> tuple[np.ndarray, np.ndarray]:
    """Each vertex's k largest weights and their bones, renormalised to sum to 1: ((V, k) uint16, (V, k) float32)."""
    order = np.argsort(-w_vn, axis=1)[:, :k]
    w = np.take_along_axis(w_vn, order, axis=1).astype(np.float64)
    idx = np.take_along_axis(idx_vn, order, axis=1)
    w = np.clip(w, 0.0, None)
    total = w.sum(axis=1, keepdims=True)
    w = np.where(total > 0, w / np.maximum(total, 1e-12), np.eye(k)[0])
    idx = np.where(w > 0, idx, 0)
    return idx.astype(np.uint16), w.astype(np.float32)


def local_rotations_quat(bone_rot_cam_fj33: np.ndarray, parents_j: np.ndarray,
                         gltf_R_cam_33: np.ndarray = GLTF_T_CAM_33) -> np.ndarray:  # fmt: skip
    """Each bone's rotation relative to its parent in glTF axes (`gltf_R_cam_33`: camera -> file axes),
    as unit quaternions (F, J, 4) x, y, z, w, signs chosen so that consecutive frames interpolate the
    short way."""
    G = np.asarray(bone_rot_cam_fj33, dtype=np.float64)
    parents = np.asarray(parents_j, dtype=int)
    W_fj33 = gltf_R_cam_33 @ G @ GLTF_T_REST_33.T  # world rotation of each joint, glTF axes
    local = W_fj33.copy()
    has = parents >= 0
    local[:, has] = np.swapaxes(W_fj33[:, parents[has]], -1, -2) @ W_fj33[:, has]
    return continuous_quaternions(local)


def write_animated_glb(path: str | Path, *, rest_verts_v3: np.ndarray, faces_f3: np.ndarray,
                       skin_idx_vn: np.ndarray, skin_w_vn: np.ndarray, bone_labels: Sequence[str],
                       parents_j: np.ndarray, rest_heads_j3: np.ndarray, bone_rot_cam_fj33: np.ndarray,
                       root_pos_cam_f3: np.ndarray, times_s: np.ndarray,
                       color_rgb: Sequence[int] = (200, 200, 200), name: str = "track",
                       out_T_cam_44: np.ndarray | None = None) -> Path:  # fmt: skip
    """Write F frames of a skinned body (see the module docstring). Rest data in Anny's axes (metres);
    `bone_rot_cam_fj33` the bones' world rotations relative to rest (the fit's G, camera frame),
    `root_pos_cam_f3` the root bone's head (camera frame), `times_s` the frames' video times;
    `out_T_cam_44` the rigid camera -> file transform (y up; default GLTF_T_CAM_33, the camera's up).
    Written atomically (temporary file + rename)."""
    R_oc_33, t_o_3 = out_frame(out_T_cam_44)
    import pygltflib as g

    path = Path(path)
    parents = np.asarray(parents_j, dtype=int)
    n_j = len(parents)
    verts = (np.asarray(rest_verts_v3, dtype=np.float64) @ GLTF_T_REST_33.T).astype(np.float32)
    faces = np.asarray(faces_f3, dtype=np.uint32)
    normals = vertex_normals(verts.astype(np.float64), faces).astype(np.float32)  # without trimesh (~0.4 s CPU)
    heads = np.asarray(rest_heads_j3, dtype=np.float64) @ GLTF_T_REST_33.T
    joints_v4, weights_v4 = top_influences(np.asarray(skin_idx_vn), np.asarray(skin_w_vn))
    ibm_j44 = np.tile(np.eye(4), (n_j, 1, 1))
    ibm_j44[:, :3, 3] = -heads
    t = np.asarray(times_s, dtype=np.float64)
    t_f = t.astype(np.float32)  # video time: the tracks of one video stay in sync with it and each other
    quat_fj4 = local_rotations_quat(bone_rot_cam_fj33, parents, R_oc_33).astype(np.float32)
    root_f3 = (np.asarray(root_pos_cam_f3, dtype=np.float64) @ R_oc_33.T + t_o_3).astype(np.float32)

    blob = bytearray()
    views: list[g.BufferView] = []
    accessors: list[g.Accessor] = []

    def add(array: np.ndarray, component: int, kind: str, target: int | None = None, minmax: bool = False) -> int:
        data = np.ascontiguousarray(array).tobytes()
        while len(blob) % 4:
            blob.append(0)
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data)
        count = int(array.shape[0])
        acc = g.Accessor(bufferView=len(views) - 1, componentType=component, count=count, type=kind)
        if minmax:
            flat = array.reshape(count, -1)
            acc.min, acc.max = flat.min(axis=0).tolist(), flat.max(axis=0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    a_pos = add(verts, g.FLOAT, g.VEC3, g.ARRAY_BUFFER, minmax=True)
    a_nrm = add(normals, g.FLOAT, g.VEC3, g.ARRAY_BUFFER)
    a_jnt = add(joints_v4, g.UNSIGNED_SHORT, g.VEC4, g.ARRAY_BUFFER)
    a_wgt = add(weights_v4, g.FLOAT, g.VEC4, g.ARRAY_BUFFER)
    a_idx = add(faces.reshape(-1), g.UNSIGNED_INT, g.SCALAR, g.ELEMENT_ARRAY_BUFFER, minmax=True)
    # glTF matrices are column-major: the transpose's bytes.
    a_ibm = add(np.transpose(ibm_j44, (0, 2, 1)).astype(np.float32), g.FLOAT, g.MAT4)
    a_time = add(t_f, g.FLOAT, g.SCALAR, minmax=True)
    a_root = add(root_f3, g.FLOAT, g.VEC3)
    a_rot = [add(quat_fj4[:, j], g.FLOAT, g.VEC4) for j in range(n_j)]

    names = bvh_joint_names(bone_labels)
    children: list[list[int]] = [[] for _ in range(n_j)]
    for j in range(n_j):
        if parents[j] >= 0:
            children[parents[j]].append(j)
    # Node 0: the skinned mesh (no transform); nodes 1..J: the bones, in bone order.
    nodes = [g.Node(name=name, mesh=0, skin=0)]
    for j in range(n_j):
        offset = heads[j] - (heads[parents[j]] if parents[j] >= 0 else 0.0)
        nodes.append(g.Node(name=names[j], translation=offset.tolist(), rotation=[0.0, 0.0, 0.0, 1.0],
                            children=[c + 1 for c in children[j]] or None))  # fmt: skip
    root = int(np.flatnonzero(parents < 0)[0])
    samplers = [g.AnimationSampler(input=a_time, output=a_root, interpolation="LINEAR")]
    channels = [g.AnimationChannel(sampler=0, target=g.AnimationChannelTarget(node=root + 1, path="translation"))]
    for j in range(n_j):
        samplers.append(g.AnimationSampler(input=a_time, output=a_rot[j], interpolation="LINEAR"))
        channels.append(g.AnimationChannel(sampler=len(samplers) - 1,
                                           target=g.AnimationChannelTarget(node=j + 1, path="rotation")))  # fmt: skip
    rgba = [c / 255.0 for c in color_rgb[:3]] + [1.0]
    pbr = g.PbrMetallicRoughness(baseColorFactor=rgba, metallicFactor=0.0, roughnessFactor=0.8)
    gltf = g.GLTF2(
        asset=g.Asset(version="2.0", generator="hmr-playground video mode"),
        scene=0,
        scenes=[g.Scene(nodes=[0, root + 1])],
        nodes=nodes,
        meshes=[g.Mesh(name=name, primitives=[g.Primitive(
            attributes=g.Attributes(POSITION=a_pos, NORMAL=a_nrm, JOINTS_0=a_jnt, WEIGHTS_0=a_wgt),
            indices=a_idx, material=0)])],  # fmt: skip
        materials=[g.Material(pbrMetallicRoughness=pbr, doubleSided=True)],
        skins=[g.Skin(name=f"{name}_skeleton", joints=[j + 1 for j in range(n_j)], skeleton=root + 1,
                      inverseBindMatrices=a_ibm)],  # fmt: skip
        animations=[g.Animation(name=f"{name}_motion", samplers=samplers, channels=channels)],
        accessors=accessors,
        bufferViews=views,
        buffers=[g.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(bytes(blob))
    with atomic_path(path) as tmp:
        gltf.save_binary(str(tmp))
    return path
