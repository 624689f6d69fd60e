"""Where the detector's keypoints sit on the Anny body: BlazePose and hand names -> Anny points.

Body joints use Anny's own COCO regressor (weights over vertices); hand joints use finger bone heads
and fingertip vertices. The mapping is by name, so a prompt or a detection with any of these names
constrains the fit.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import scipy.sparse as sp

from pipelines.body.anny_model import AnnyBody, PointSet

# BlazePose name -> Anny COCO-regressor label
BLAZEPOSE_TO_ANNY_COCO: dict[str, str] = {
    "nose": "nose", "left_eye": "left_eye", "right_eye": "right_eye", "left_ear": "left_ear",
    "right_ear": "right_ear", "left_shoulder": "left_shoulder", "right_shoulder": "right_shoulder",
    "left_elbow": "left_elbow", "right_elbow": "right_elbow", "left_wrist": "left_wrist",
    "right_wrist": "right_wrist", "left_hip": "left_hip", "right_hip": "right_hip",
    "left_knee": "left_knee", "right_knee": "right_knee", "left_ankle": "left_ankle",
    "right_ankle": "right_ankle", "left_heel": "left_heel", "right_heel": "right_heel",
    "left_foot_index": "left_big_toe", "right_foot_index": "right_big_toe",
}  # fmt: skip

# MediaPipe's face landmarks are not where Anny's COCO points are: its ears sit ~2 cm more medial
# (its own metric landmarks agree: ear-to-ear 0.117-0.155 m against Anny's 0.149 m). Each BlazePose
# face point is Anny's point plus a rigid offset in the head's rest frame (metres; Anny axes: x = the
# person's left, y = back, z = up; x is mirrored for the right side). The offsets are the median
# image-plane gap between detected and fitted points over lunge.jpg and 12 frames of the 4-camera set,
# expressed in the head frame (two rounds of measure-and-apply; bench/bench_image.py shows the effect).
BLAZEPOSE_FACE_OFFSETS: dict[str, np.ndarray] = {
    "left_ear": np.array([-0.023, -0.008, 0.0]),
    "left_eye": np.array([-0.006, 0.0, -0.002]),
}


# BlazePose's wrist may lie farther down the forearm than Anny's COCO wrist: elbow-to-wrist of the fitted
# bodies is 0.82-0.93 of the triangulated BlazePose keypoints' (pose2sim) and of H36M's joints, and a too
# short forearm reaches a long 2D forearm only flat in depth. Metres along the forearm (lowerarm01 head ->
# wrist head) added to the fit's BlazePose wrist (not to the reported joints). 0.025 (bench/accuracy_lab3d.py):
# tuning data H36M S1+S5 +9 % -> +5 % of MediaPipe's PA-MPJPE, pose2sim_single -14.2 -> -14.7 %, 2D error
# 3.14 -> 3.07 px; held out within noise (pose2sim_multi -5.3 -> -5.6 %, S7 +1.3 mm, S8 +0.7 mm): off.
BLAZEPOSE_WRIST_OFFSET_M: float = 0.0


def _limb_offset(body: AnnyBody, name: str) -> tuple[int, np.ndarray] | None:
    """(bone index, rest-frame offset) of a point that rides on a limb bone, or None."""
    if name not in ("left_wrist", "right_wrist") or BLAZEPOSE_WRIST_OFFSET_M == 0.0:
        return None
    suffix = ".L" if name.startswith("left") else ".R"
    heads0, _ = body.heads_basis
    j, k = body.bone_labels.index("lowerarm01" + suffix), body.bone_labels.index("wrist" + suffix)
    axis = heads0[k] - heads0[j]
    return j, BLAZEPOSE_WRIST_OFFSET_M * axis / np.linalg.norm(axis)


def _face_offset(name: str) -> np.ndarray | None:
    side = "left" if name.startswith("left_") else "right" if name.startswith("right_") else None
    base = BLAZEPOSE_FACE_OFFSETS.get(f"left_{name[len(side) + 1:]}" if side else name)
    if base is None:
        return None
    return base * np.array([-1.0 if side == "right" else 1.0, 1.0, 1.0])


# BlazePose's coarse hand points -> Anny bone whose head they mark (side suffix added)
BLAZEPOSE_HAND_BONES: dict[str, str] = {"pinky": "finger5-1", "index": "finger2-1", "thumb": "finger1-2"}

# MediaPipe hand keypoint -> (Anny bone, 'head' | 'tip'); side suffix added
_HAND_BONES: dict[str, tuple[str, str]] = {
    "wrist": ("wrist", "head"), "thumb_cmc": ("finger1-1", "head"), "thumb_mcp": ("finger1-2", "head"),
    "thumb_ip": ("finger1-3", "head"), "thumb_tip": ("finger1-3", "tip"),
}  # fmt: skip
for _i, _finger in enumerate(["index_finger", "middle_finger", "ring_finger", "pinky"], start=2):
    _HAND_BONES[f"{_finger}_mcp"] = (f"finger{_i}-1", "head")
    _HAND_BONES[f"{_finger}_pip"] = (f"finger{_i}-2", "head")
    _HAND_BONES[f"{_finger}_dip"] = (f"finger{_i}-3", "head")
    _HAND_BONES[f"{_finger}_tip"] = (f"finger{_i}-3", "tip")

# The 17 COCO joints plus feet, reported as joints3d_cam (Anny regressor names)
OUTPUT_JOINT_NAMES: list[str] = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
    "right_knee", "left_ankle", "right_ankle", "left_big_toe", "right_big_toe", "left_small_toe",
    "right_small_toe", "left_heel", "right_heel",
]  # fmt: skip


# Anny's kinematic joint centres (heads of the bones that turn about them), named like the body joints they
# stand for: the convention of motion-capture skeletons such as Human3.6M's, whose hips are hip-joint centres
# (24-29 cm apart on its subjects) where Anny's COCO regressor, a surface keypoint like BlazePose's, puts them
# 17-19 cm apart. Which convention to compare against is a choice per reference (README, 3D accuracy); the fit
# itself always explains BlazePose's keypoints with the COCO regressor.
SKELETON_JOINT_BONES: dict[str, str] = {}
for _side, _sfx in (("left", ".L"), ("right", ".R")):
    SKELETON_JOINT_BONES.update({
        f"{_side}_shoulder": "upperarm01" + _sfx, f"{_side}_elbow": "lowerarm01" + _sfx,
        f"{_side}_wrist": "wrist" + _sfx, f"{_side}_hip": "upperleg01" + _sfx, f"{_side}_knee": "lowerleg01" + _sfx,
        f"{_side}_ankle": "foot" + _sfx,
    })  # fmt: skip
SKELETON_JOINT_NAMES: list[str] = ["pelvis", *SKELETON_JOINT_BONES]
"""The skeleton joints reported (pelvis: the mid-point of the hip-joint centres, as Human3.6M's root)."""


def skeleton_joints(body: AnnyBody, heads_posed_j3: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The skeleton joints (SKELETON_JOINT_NAMES, (K, 3)) from the posed bone heads (J, 3) of a fit (the
    report's o_j3: same frame, metres)."""
    idx = [body.bone_labels.index(b) for b in SKELETON_JOINT_BONES.values()]
    limbs_k3 = np.asarray(heads_posed_j3, dtype=np.float64)[idx]
    names = list(SKELETON_JOINT_BONES)
    pelvis_3 = limbs_k3[[names.index("left_hip"), names.index("right_hip")]].mean(axis=0)
    return list(SKELETON_JOINT_NAMES), np.vstack([pelvis_3, limbs_k3])


def _coco_regressor(body: AnnyBody) -> dict[str, np.ndarray]:
    t = body.tables
    return dict(zip(t.coco_labels, t.coco_weights_kv, strict=True))


def _tip_vertex(body: AnnyBody, bone: str) -> int:
    """The vertex mostly skinned to `bone` that lies farthest along the bone (a fingertip)."""
    j = body.bone_labels.index(bone)
    w_v = np.asarray(body._skin_weights_vj[:, j].todense()).ravel()
    cand = np.flatnonzero(w_v > 0.5)
    heads0, _ = body.heads_basis
    head = heads0[j]
    parent_head = heads0[body.bone_parents[j]]
    axis = head - parent_head
    axis /= np.linalg.norm(axis)
    return int(cand[np.argmax((body.template_v3[cand] - head) @ axis)])


@lru_cache(maxsize=4)
def _vertex_rows(body: AnnyBody) -> dict[str, np.ndarray]:
    """Name -> dense (V,) vertex weights for every vertex-based point."""
    coco = _coco_regressor(body)
    rows: dict[str, np.ndarray] = {}
    for name, label in BLAZEPOSE_TO_ANNY_COCO.items():
        rows[name] = coco[label]
    for label in OUTPUT_JOINT_NAMES:
        rows[f"anny:{label}"] = coco[label]
    n_v = body.template_v3.shape[0]
    for side, suffix in (("left", ".L"), ("right", ".R")):
        for hand_name, (bone, kind) in _HAND_BONES.items():
            if kind == "tip":
                row = np.zeros(n_v)
                row[_tip_vertex(body, bone + suffix)] = 1.0
                rows[f"{side}_hand_{hand_name}"] = row
    return rows


def _bone_heads(body: AnnyBody) -> dict[str, str]:
    """Name -> Anny bone label for every point that is a bone head."""
    heads: dict[str, str] = {}
    for side, suffix in (("left", ".L"), ("right", ".R")):
        for short, bone in BLAZEPOSE_HAND_BONES.items():
            heads[f"{side}_{short}"] = bone + suffix
        for hand_name, (bone, kind) in _HAND_BONES.items():
            if kind == "head":
                heads[f"{side}_hand_{hand_name}"] = bone + suffix
    return heads


def known_point_names(body: AnnyBody) -> set[str]:
    return set(_vertex_rows(body)) | set(_bone_heads(body))


def build_point_set(body: AnnyBody, names: list[str]) -> PointSet:
    """A PointSet with one point per name (names must be in known_point_names)."""
    rows = _vertex_rows(body)
    heads = _bone_heads(body)
    n_v = body.template_v3.shape[0]
    vertex_names = [n for n in names if n in rows]
    # Rigid offsets: a pair of weight 0 on a bone adds G_bone @ offset to the point.
    head_bone = body.bone_labels.index("head")
    offsets = [(n, head_bone, _face_offset(n)) for n in names if _face_offset(n) is not None]
    offsets += [(n, *_limb_offset(body, n)) for n in names if _limb_offset(body, n) is not None]
    mat = sp.csr_matrix(np.stack([rows[n] for n in vertex_names])) if vertex_names else sp.csr_matrix((0, n_v))
    vert_set = body.point_set(vertex_names, mat)
    # Bone heads ride on their bone's transform: one pair each, weight 1.
    head_names = [n for n in names if n in heads and n not in rows]
    heads0, dheads = body.heads_basis
    bones = np.array([body.bone_labels.index(heads[n]) for n in head_names], dtype=np.int64)
    order = {n: i for i, n in enumerate(names)}
    pair_point = np.concatenate([[order[vertex_names[k]] for k in vert_set.pair_point], [order[n] for n in head_names],
                                 [order[n] for n, _, _ in offsets]])  # fmt: skip
    n_off = len(offsets)
    offset_a_o3 = np.array([o for _, _, o in offsets]).reshape(-1, 3)
    offset_bones = np.array([b for _, b, _ in offsets], dtype=np.int64)
    return PointSet(
        names=list(names),
        pair_point=pair_point.astype(np.int64),
        pair_bone=np.concatenate([vert_set.pair_bone, bones, offset_bones]).astype(np.int64),
        pair_w=np.concatenate([vert_set.pair_w, np.ones(len(bones)), np.zeros(n_off)]),
        pair_a0_p3=np.concatenate([vert_set.pair_a0_p3, heads0[bones], offset_a_o3]),
        pair_da_np3=np.concatenate([vert_set.pair_da_np3, dheads[:, bones], np.zeros((dheads.shape[0], n_off, 3))],
                                   axis=1),
    )


@lru_cache(maxsize=4)
def output_joint_regressor(body: AnnyBody) -> tuple[np.ndarray, np.ndarray]:
    """The reported joints as weights over the few vertices they use: (vertex indices (S,), weights
    (K, S)); `weights @ skin(..., vertex_idx=indices)` equals output_joints without the whole mesh."""
    rows = _vertex_rows(body)
    mat = np.stack([rows[f"anny:{n}"] for n in OUTPUT_JOINT_NAMES])
    used = np.flatnonzero(np.any(mat != 0, axis=0))
    return used, mat[:, used]


def output_joints(body: AnnyBody, verts_v3: np.ndarray) -> tuple[list[str], np.ndarray]:
    """The reported joints (17 COCO names + feet) regressed from posed vertices (same frame, metres)."""
    rows = _vertex_rows(body)
    mat = np.stack([rows[f"anny:{n}"] for n in OUTPUT_JOINT_NAMES])
    return list(OUTPUT_JOINT_NAMES), mat @ verts_v3
