"""Everything the fit and the exports read from Anny, as plain numpy arrays cached in one .npz.

Anny's torch model takes ~1.7 s to import (torch) and ~2-4 s to build on this CPU, but the fit only
needs linear maps: the rest vertices and bone heads are linear in the blendshape coefficients, the
rest bone orientations are the nearest rotations of matrices linear in them (Anny's 'cached' bone
orientation), and the phenotype -> coefficient map is piecewise linear. `load_or_build` stores these
once (built with torch + Anny) in `kinematics_<key>.npz` beside Anny's own cache
($ANNY_CACHE_DIR, default ~/.cache/anny; $HMR_BODY_CACHE_DIR overrides it) and later processes load
the file without importing torch or anny. The key covers anny's version, FORMAT and the build
parameters, so a new anny or a new layout rebuilds the file. HMR_BODY_CACHE=off skips the file
(every process builds the tables from Anny again, as before the cache existed).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
"""Bump when the arrays stored (or the way they are computed) change: stale files are rebuilt."""

BUILD_PARAMS: dict[str, str] = {"skinning_method": "lbs", "coco_regressor": "data/keypoints/coco.pth"}
"""The Anny constructor arguments and data files the tables come from (part of the key)."""


@dataclass
class AnnyTables:
    """Anny's rig, mesh and linear maps (float64 unless stated; Anny's frame: Z up, metres)."""

    key: str
    """Version key the tables were built for (see `version_key`)."""
    bone_labels: list[str]
    bone_parents: np.ndarray
    """(J,) parent index per bone, -1 for the root."""
    phenotype_labels: list[str]
    faces_f3: np.ndarray
    """(F, 3) int32 triangles of the exported mesh."""
    template_v3: np.ndarray
    """(V, 3) rest vertices at blendshape coefficients 0."""
    blendshapes_nv3: np.ndarray
    """(N, V, 3) vertex offset per blendshape coefficient."""
    heads0_j3: np.ndarray
    """(J, 3) rest bone heads at coefficients 0."""
    dheads_nj3: np.ndarray
    """(N, J, 3) bone head offset per coefficient."""
    orient0_j33: np.ndarray
    """(J, 3, 3) matrices whose nearest rotation is the rest bone orientation (coefficients 0)."""
    dorient_nj33: np.ndarray
    """(N, J, 3, 3) their derivative per coefficient."""
    reference_rot_j33: np.ndarray
    """(J, 3, 3) Anny's reference bone orientations (for its 'local-ref' pose parameters)."""
    root_identity: bool
    """The root's rest orientation is the identity."""
    skin_idx_v9: np.ndarray
    """(V, 9) int64 bone indices of each vertex's skinning weights."""
    skin_w_v9: np.ndarray
    """(V, 9) skinning weights."""
    pheno_feature_pos: np.ndarray
    """(F,) int64 first slot of each phenotype feature in Anny's stacked phenotype weights."""
    pheno_feature_idx: np.ndarray
    """(F,) int64 index of the feature in phenotype_labels, -1 for a feature held at 0.5."""
    pheno_anchor_start: np.ndarray
    """(F + 1,) int64 offsets of each feature's anchors in pheno_anchors."""
    pheno_anchors: np.ndarray
    """Interpolation anchors of every feature, concatenated."""
    pheno_mask: np.ndarray
    """(M, W) bool: which stacked phenotype weights multiply into each blendshape weight."""
    pheno_projection: np.ndarray
    """(M, N) projection of the blendshape weights to coefficients; (0, 0) when Anny has none."""
    coco_labels: list[str]
    coco_weights_kv: np.ndarray
    """(K, V) Anny's COCO keypoint regressor over the mesh vertices."""

    @property
    def n_coeffs(self) -> int:
        return self.blendshapes_nv3.shape[0]


_LIST_FIELDS = ("bone_labels", "phenotype_labels", "coco_labels")


def anny_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("anny")
    except PackageNotFoundError:
        return "not-installed"


def version_key() -> str:
    """anny's version, FORMAT and BUILD_PARAMS: a change to any of them rebuilds the file."""
    return f"anny-{anny_version()}_f{FORMAT}_" + hashlib.sha1(
        json.dumps(BUILD_PARAMS, sort_keys=True).encode()
    ).hexdigest()[:10]


def cache_dir() -> Path:
    """$HMR_BODY_CACHE_DIR, else Anny's cache folder ($ANNY_CACHE_DIR, default ~/.cache/anny)."""
    root = os.environ.get("HMR_BODY_CACHE_DIR") or os.environ.get("ANNY_CACHE_DIR")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "anny"


def cache_path(key: str | None = None) -> Path:
    return cache_dir() / f"kinematics_{key or version_key()}.npz"


def cache_enabled() -> bool:
    return os.environ.get("HMR_BODY_CACHE", "on").strip().lower() not in ("off", "0", "no", "false")


def save(tables: AnnyTables, path: Path) -> None:
    """Write atomically (a temporary file renamed over), so parallel processes never read half a file."""
    arrays: dict[str, np.ndarray] = {}
    for f in fields(tables):
        value = getattr(tables, f.name)
        arrays[f.name] = np.array(value) if f.name in _LIST_FIELDS or f.name == "key" else np.asarray(value)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # uncompressed: loads in tens of milliseconds
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: Path, key: str) -> AnnyTables | None:
    """The tables in `path`, or None when the file is missing, unreadable or built for another key."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            values: dict[str, Any] = {}
            for f in fields(AnnyTables):
                arr = data[f.name]
                if f.name == "key":
                    values[f.name] = str(arr)
                elif f.name in _LIST_FIELDS:
                    values[f.name] = [str(s) for s in arr]
                elif f.name == "root_identity":
                    values[f.name] = bool(arr)
                else:
                    values[f.name] = arr
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return AnnyTables(**values)


_LOADED: dict[tuple[Path, int, int, int], AnnyTables] = {}
"""Tables already read in this process, by file and its (inode, size, mtime): one copy however many
AnnyBody objects ask, and a file replaced on disk is read again."""
_LOADED_LOCK = threading.Lock()


def _file_id(path: Path) -> tuple[Path, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return path, st.st_ino, st.st_size, st.st_mtime_ns


def load_cached() -> AnnyTables | None:
    """The cached tables of the current key if the file is there (read once per process), else None;
    never builds. Safe to call from a background thread to have the file read ahead of the first fit."""
    if not cache_enabled():
        return None
    key = version_key()
    path = cache_path(key)
    with _LOADED_LOCK:
        file_id = _file_id(path)
        if file_id is None:
            return None
        if file_id not in _LOADED:
            tables = load(path, key)
            if tables is None:
                return None
            _LOADED.clear()  # keep one version in memory
            _LOADED[file_id] = tables
        return _LOADED[file_id]


def load_or_build(build_model: Callable[[], Any]) -> AnnyTables:
    """The cached tables; on a miss (or with HMR_BODY_CACHE=off) build them from Anny's torch model
    (`build_model()`), and save them unless the cache is off."""
    tables = load_cached()
    if tables is not None:
        return tables
    key = version_key()
    path = cache_path(key)
    if cache_enabled():
        print(f"Caching the body model tables in {path} (once per anny version: a few seconds)...",
              file=sys.stderr, flush=True)  # fmt: skip
    tables = build(build_model(), key)
    if cache_enabled():
        try:
            save(tables, path)
        except OSError as err:  # a read-only cache only costs the next process the build again
            print(f"note: could not save the body model tables to {path} ({err.strerror or err})",
                  file=sys.stderr)  # fmt: skip
    return tables


def _phenotype_features(model: Any) -> tuple[list[int], list[int], list[np.ndarray]]:
    """Anny's phenotype -> blendshape weight interpolation: per feature its slot, label, anchors."""
    from anny.models.model_data import PHENOTYPE_VARIATIONS

    labels = list(model.phenotype_labels)
    pos_list, idx_list, anchors_list = [], [], []
    pos = 0
    for feature, variations in PHENOTYPE_VARIATIONS.items():
        if feature != "race":
            start = -1 / 3 if feature == "age" else 0.0
            pos_list.append(pos)
            idx_list.append(labels.index(feature) if feature in labels else -1)
            anchors_list.append(np.linspace(start, 1.0, len(variations)))
        pos += len(variations)
    return pos_list, idx_list, anchors_list


def build(model: Any, key: str) -> AnnyTables:
    """Read the tables out of Anny's torch model (needs torch and anny)."""
    import torch
    from anny.paths import get_anny_root_dir

    if getattr(model, "bone_orientation", None) != "cached" or getattr(model, "rest_orientation_refiner", None):
        raise RuntimeError("this anny version's rest bone orientations are not the 'cached' kind the body "
                           "model tables support (install anny==0.6.2)")  # fmt: skip

    def arr(t: Any) -> np.ndarray:
        return t.detach().cpu().numpy()

    pos, idx, anchors = _phenotype_features(model)
    proj = model.phenotype_blendshape_projection
    coco = torch.load(get_anny_root_dir() / BUILD_PARAMS["coco_regressor"], weights_only=True)
    base_idx = arr(model.base_mesh_vertex_indices)
    coco_labels = list(coco)
    return AnnyTables(
        key=key,
        bone_labels=list(model.bone_labels),
        bone_parents=np.asarray(model.bone_parents, dtype=np.int64),
        phenotype_labels=list(model.phenotype_labels),
        faces_f3=arr(model.get_triangular_faces()).astype(np.int32),
        template_v3=arr(model.template_vertices),
        blendshapes_nv3=arr(model.blendshapes),
        heads0_j3=arr(model.template_bone_heads),
        dheads_nj3=arr(model.bone_heads_blendshapes),
        orient0_j33=arr(model.bone_template_orientation_matrices),
        dorient_nj33=arr(model.bone_orientation_blendshapes),
        reference_rot_j33=arr(model.reference_bone_orientations),
        root_identity=bool(model.root_identity_orientation),
        skin_idx_v9=arr(model.vertex_bone_indices).astype(np.int64),
        skin_w_v9=arr(model.vertex_bone_weights),
        pheno_feature_pos=np.array(pos, dtype=np.int64),
        pheno_feature_idx=np.array(idx, dtype=np.int64),
        pheno_anchor_start=np.cumsum([0] + [len(a) for a in anchors]).astype(np.int64),
        pheno_anchors=np.concatenate(anchors),
        pheno_mask=arr(model.stacked_phenotype_blend_shapes_mask).astype(bool),
        pheno_projection=np.zeros((0, 0)) if proj is None else arr(proj),
        coco_labels=coco_labels,
        coco_weights_kv=np.stack([arr(coco[k])[base_idx].astype(np.float64) for k in coco_labels]),
    )
