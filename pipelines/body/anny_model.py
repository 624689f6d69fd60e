"""The Anny body model (Apache-2.0 code, CC0 data): 13,718 vertices, 104 bones incl. fingers, metres.

Anny's own frame is Z-up with the body facing -Y and +X on the person's left. Posed results are given
in whatever frame the caller's root rotation maps to (the fitting maps straight into the OpenCV
camera frame). The first build of the model writes ~790 MB into ANNY_CACHE_DIR (default
~/.cache/anny) and takes about a minute. What the fit and the exports need is then cached as numpy
arrays (pipelines/body/anny_tables.py): later processes import neither torch nor anny.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from pipelines.body import anny_pose, anny_tables
from pipelines.body.anny_tables import AnnyTables
from pipelines.registry import BackendUnavailable, register

# Phenotypes the fit may change (Anny's defaults, all in [0, 1], 0.5 = average adult); age stays fixed.
FIT_PHENOTYPES: list[str] = ["gender", "muscle", "weight", "height", "proportions"]


@dataclass
class RestState:
    """The body at rest for one phenotype, in Anny's frame (metres)."""

    pheno_p: np.ndarray
    """Phenotype values, in the order of AnnyBody.phenotype_labels."""
    coeffs_n: np.ndarray
    """Blendshape coefficients."""
    heads_j3: np.ndarray
    """Rest bone head positions (J, 3)."""
    rot_j33: np.ndarray
    """Rest bone orientations (J, 3, 3): columns are the bone's axes (y along the bone)."""


@dataclass
class PointSet:
    """Points attached to the skin (keypoints, surface samples) as linear maps of the rest state.

    A point is a weighted sum of vertices; skinning makes it a sum over (point, bone) pairs of
    bone_transform @ (weighted rest position), and the rest positions are linear in the
    blendshape coefficients, so everything the fit needs is precomputed here once.
    """

    names: list[str]
    pair_point: np.ndarray
    """(P,) point index of each (point, bone) pair."""
    pair_bone: np.ndarray
    """(P,) bone index of each pair."""
    pair_w: np.ndarray
    """(P,) total skinning weight of the pair (sums to 1 per point)."""
    pair_a0_p3: np.ndarray
    """(P, 3) weighted rest position at blendshape coefficients 0 (the template)."""
    pair_da_np3: np.ndarray
    """(N, P, 3) derivative of the weighted rest position per blendshape coefficient."""

    def rest_positions(self, coeffs_n: np.ndarray) -> np.ndarray:
        return self.pair_a0_p3 + np.einsum("n,npc->pc", coeffs_n, self.pair_da_np3)


_LOAD_LOCK = threading.RLock()  # tables -> model: re-entered by the same thread


@register("body", "anny")
class AnnyBody:
    """Anny wrapper: rest states, point sets for fitting and posed meshes (numpy, float64)."""

    name = "anny"

    def __init__(self) -> None:
        self._model = None
        self._tables: AnnyTables | None = None

    @property
    def model(self):  # noqa: ANN201 - anny.Anny
        """The torch model, built on first use (thread-safe)."""
        if self._model is None:
            with _LOAD_LOCK:
                if self._model is None:
                    try:
                        import anny
                    except ImportError as err:
                        raise BackendUnavailable(f"the Anny body model needs the 'anny' package: {err}") from err
                    from anny.paths import get_anny_cache_path

                    cache = get_anny_cache_path()
                    if not cache.is_dir() or not any(cache.iterdir()):
                        print(f"Building the Anny body model cache in {cache} (first run only: about a minute "
                              "and 790 MB; set ANNY_CACHE_DIR to put it elsewhere)...", file=sys.stderr, flush=True)
                    self._model = anny.Anny(skinning_method="lbs")
        return self._model

    @property
    def tables(self) -> AnnyTables:
        """Rig, mesh and linear maps as numpy arrays: from the cached .npz when present (no torch, no
        Anny build), else read out of the model once and cached (see pipelines.body.anny_tables)."""
        if self._tables is None:
            with _LOAD_LOCK:
                if self._tables is None:
                    self._tables = anny_tables.load_or_build(lambda: self.model)
        return self._tables

    @cached_property
    def bone_labels(self) -> list[str]:
        return list(self.tables.bone_labels)

    @cached_property
    def bone_parents(self) -> np.ndarray:
        return np.asarray(self.tables.bone_parents, dtype=np.int64)

    @cached_property
    def phenotype_labels(self) -> list[str]:
        return list(self.tables.phenotype_labels)

    @cached_property
    def faces_f3(self) -> np.ndarray:
        return self.tables.faces_f3

    @cached_property
    def template_v3(self) -> np.ndarray:
        return self.tables.template_v3

    @cached_property
    def _blendshapes_nv3(self) -> np.ndarray:
        return self.tables.blendshapes_nv3

    @cached_property
    def _skin_weights_vj(self) -> sp.csr_matrix:
        w_v9 = self.tables.skin_w_v9
        idx_v9 = self.tables.skin_idx_v9
        n_v = w_v9.shape[0]
        rows = np.repeat(np.arange(n_v), w_v9.shape[1])
        mat = sp.csr_matrix((w_v9.ravel(), (rows, idx_v9.ravel())), shape=(n_v, len(self.bone_labels)))
        mat.sum_duplicates()
        mat.eliminate_zeros()
        return mat

    def default_pheno(self) -> np.ndarray:
        return np.full(len(self.phenotype_labels), 0.5)

    @cached_property
    def _coeff_tables(self) -> tuple[list[tuple[int, np.ndarray, int]], np.ndarray, np.ndarray | None]:
        """What Anny's phenotype -> blendshape-coefficient map needs, as numpy arrays."""
        t = self.tables
        starts = t.pheno_anchor_start
        pairs = zip(t.pheno_feature_pos, t.pheno_feature_idx, strict=True)
        features = [(int(p), t.pheno_anchors[starts[i] : starts[i + 1]], int(k)) for i, (p, k) in enumerate(pairs)]
        proj = t.pheno_projection if t.pheno_projection.size else None
        return features, t.pheno_mask, proj

    def coeffs(self, pheno_p: np.ndarray) -> np.ndarray:
        """Blendshape coefficients for phenotype values: Anny's piecewise-linear map, in numpy
        (the same numbers as Anny's torch code, ~100x faster for one body); coeffs_batch of one."""
        return self.coeffs_batch(np.asarray(pheno_p, dtype=np.float64)[None])[0]

    def coeffs_batch(self, pheno_bp: np.ndarray) -> np.ndarray:
        """coeffs for B phenotype vectors at once: (B, P) -> (B, N) (the same map, vectorised)."""
        features, mask, proj = self._coeff_tables
        pheno_bp = np.asarray(pheno_bp, dtype=np.float64)
        n_b = len(pheno_bp)
        rows = np.arange(n_b)
        phens = np.empty((n_b, mask.shape[1]))
        phens[:, :3] = 1.0 / 3.0
        for pos, anchors, idx in features:
            value = np.clip(pheno_bp[:, idx], anchors[0], anchors[-1]) if idx >= 0 else np.full(n_b, 0.5)
            i = np.clip(np.searchsorted(anchors, value, side="left"), 1, len(anchors) - 1)
            alpha = (value - anchors[i - 1]) / (anchors[i] - anchors[i - 1])
            phens[:, pos : pos + len(anchors)] = 0.0
            phens[rows, pos + i - 1] = 1.0 - alpha
            phens[rows, pos + i] = alpha
        cols_mk = self._coeff_factor_columns
        wi = np.prod(np.concatenate([phens, np.ones((n_b, 1))], axis=1)[:, cols_mk], axis=2)
        return wi @ proj if proj is not None else wi

    @cached_property
    def _coeff_factor_columns(self) -> np.ndarray:
        """(M, k) the phenotype-feature columns whose product is each mask row's weight (padded with the
        index of a constant 1)."""
        _, mask, _ = self._coeff_tables
        k = max(1, int(mask.sum(axis=1).max()))
        cols = np.full((mask.shape[0], k), mask.shape[1], dtype=np.int64)
        for m, row in enumerate(mask):
            nz = np.flatnonzero(row)
            cols[m, : len(nz)] = nz
        return cols

    def coeffs_jacobian(self, pheno_p: np.ndarray, eps: float = 1e-4, indices: list[int] | None = None) -> np.ndarray:
        """(N, P) derivative of the blendshape coefficients per phenotype value (central differences;
        the map is piecewise linear, so this is exact away from the interpolation anchors). `indices`: only
        those phenotypes' columns (N, len(indices)), e.g. the fit's FIT_PHENOTYPES."""
        pheno = np.asarray(pheno_p, dtype=np.float64)[None]
        return self.coeffs_jacobian_batch(pheno, eps, indices)[0]

    def coeffs_jacobian_batch(self, pheno_bp: np.ndarray, eps: float = 1e-4,
                              indices: list[int] | None = None) -> np.ndarray:  # fmt: skip
        """(B, N, S): coeffs_jacobian of each of B phenotype vectors (B, P), in one vectorised call."""
        pheno_bp = np.asarray(pheno_bp, dtype=np.float64)
        n_b, n_p = pheno_bp.shape
        cols = list(range(n_p)) if indices is None else list(indices)
        n_s = len(cols)
        steps = np.zeros((n_s, n_p))
        steps[np.arange(n_s), cols] = eps
        rows = np.concatenate([pheno_bp[:, None] + steps, pheno_bp[:, None] - steps], axis=1)  # (B, 2S, P)
        c = self.coeffs_batch(rows.reshape(-1, n_p)).reshape(n_b, 2 * n_s, -1)
        return ((c[:, :n_s] - c[:, n_s:]) / (2 * eps)).transpose(0, 2, 1)

    def rest_heads(self, pheno_p: np.ndarray) -> RestState:
        """A RestState without bone orientations (all the fit needs; rot_j33 is left empty)."""
        coeffs_n = self.coeffs(pheno_p)
        heads0, dheads = self.heads_basis
        heads = heads0 + np.einsum("n,njc->jc", coeffs_n, dheads)
        return RestState(np.asarray(pheno_p, dtype=np.float64), coeffs_n, heads, np.empty((0, 3, 3)))

    def rest_vertices(self, coeffs_n: np.ndarray) -> np.ndarray:
        """Rest-pose vertices (V, 3) in Anny's frame (Z up)."""
        return self.template_v3 + np.einsum("n,nvc->vc", coeffs_n, self._blendshapes_nv3)

    def rest_state(self, pheno_p: np.ndarray) -> RestState:
        """Rest bone heads and orientations for a phenotype (numpy; Anny's 'cached' orientations)."""
        coeffs_n = self.coeffs(pheno_p)
        heads0, dheads = self.heads_basis
        return RestState(
            pheno_p=np.asarray(pheno_p, dtype=np.float64),
            coeffs_n=coeffs_n,
            heads_j3=heads0 + np.einsum("n,njc->jc", coeffs_n, dheads),
            rot_j33=anny_pose.rest_orientations(self.tables, coeffs_n),
        )

    @cached_property
    def heads_basis(self) -> tuple[np.ndarray, np.ndarray]:
        """Rest bone heads as (template (J, 3), per-coefficient derivative (N, J, 3))."""
        return self.tables.heads0_j3, self.tables.dheads_nj3

    def point_set(self, names: list[str], vertex_weights: sp.csr_matrix) -> PointSet:
        """Precompute a PointSet for points given as (K, V) weights over the vertices."""
        pair = vertex_weights.tocoo()
        # (K*J) rows: weight of vertex v in pair (k, b) = w_vb * r_kv, for every skinning weight w_vb of
        # every vertex v in point k's weights r_k (all at once, no loop over the points).
        n_k, n_j = vertex_weights.shape[0], len(self.bone_labels)
        skin = self._skin_weights_vj
        counts = np.diff(skin.indptr)[pair.col]
        first = np.repeat(skin.indptr[pair.col] - np.cumsum(counts) + counts, counts)
        pos = first + np.arange(int(counts.sum()))
        vals = skin.data[pos] * np.repeat(pair.data, counts)
        rows = np.repeat(pair.row, counts) * n_j + skin.indices[pos]
        cols = np.repeat(pair.col, counts)
        mat = sp.csr_matrix((vals, (rows, cols)), shape=(n_k * n_j, self.template_v3.shape[0]))
        mat.sum_duplicates()
        used = np.flatnonzero(np.diff(mat.indptr) > 0)
        mat = mat[used]
        pair_w = np.asarray(mat.sum(axis=1)).ravel()
        a0 = mat @ self.template_v3
        # One (P, V) x (V, 3) product per blendshape: the same sums, in the same order, as one product with
        # the blendshapes laid out as (V, N * 3), without copying 45 MB into that layout.
        da = np.stack([mat @ bs_v3 for bs_v3 in self._blendshapes_nv3])
        return PointSet(
            names=list(names),
            pair_point=used // n_j,
            pair_bone=used % n_j,
            pair_w=pair_w,
            pair_a0_p3=a0,
            pair_da_np3=da,
        )

    def skin(self, coeffs_n: np.ndarray, heads_j3: np.ndarray, G_j33: np.ndarray, o_j3: np.ndarray,
             vertex_idx: np.ndarray | None = None, rest_v3: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """Linear blend skinning in numpy: vertices (V, 3) for bone rotations G and posed heads o
        (the same result as Anny's forward in 'world-orient', without torch). `vertex_idx`: only
        those vertices, in that order (len(vertex_idx), 3); `rest_v3`: their rest positions when
        already known (rest_vertices(coeffs_n)[vertex_idx]: the shape is often held)."""
        W_vj = self._skin_weights_vj if vertex_idx is None else self._skin_weights_vj[vertex_idx]
        if rest_v3 is None:
            rest_v3 = self.rest_vertices(coeffs_n)
            rest_v3 = rest_v3 if vertex_idx is None else rest_v3[vertex_idx]
        t_j3 = o_j3 - np.einsum("jab,jb->ja", G_j33, heads_j3)
        # The blend as sparse products (V, J) x (J, 9) and (J, 3): ~8x less work than gathering each vertex's
        # 9 bones' (3, 3) matrices first; the same sums (a vertex's few bones) up to their order.
        A_v33 = (W_vj @ G_j33.reshape(len(G_j33), 9)).reshape(-1, 3, 3)
        t_v3 = W_vj @ t_j3
        return np.einsum("vab,vb->va", A_v33, rest_v3) + t_v3

    def _forward_world_orient(self, rest: RestState, G_j33: np.ndarray, root_pos_3: np.ndarray):  # noqa: ANN202
        """Anny's own forward pass for bone world rotations G (relative to rest) and the root head's
        position ('world-orient' deltas: D = G R_rest); returns (output dict, model)."""
        import torch

        m = self.model
        D = np.einsum("jab,jbc->jac", G_j33, rest.rot_j33)
        delta = np.tile(np.eye(4), (len(D), 1, 1))
        delta[:, :3, :3] = D
        delta[0, :3, 3] = root_pos_3
        with torch.no_grad():
            out = m(
                torch.as_tensor(delta[None], dtype=m.dtype),
                torch.as_tensor(rest.pheno_p[None], dtype=m.dtype),
                pose_parameterization="world-orient",
            )
        return out, m

    def posed_vertices(self, rest: RestState, G_j33: np.ndarray, root_pos_3: np.ndarray) -> np.ndarray:
        """Skinned vertices (V, 3) by Anny itself (torch), in the frame G and root_pos are expressed in."""
        out, _ = self._forward_world_orient(rest, G_j33, root_pos_3)
        return out["vertices"][0].cpu().numpy()

    def native_pose(self, rest: RestState, G_j33: np.ndarray, root_pos_3: np.ndarray) -> np.ndarray:
        """The same pose in Anny's default 'local-ref' parameterization, (J, 4, 4), for saving (numpy;
        `rest` must hold the orientations, see rest_state)."""
        return anny_pose.local_ref_pose(self.tables, self.skel_levels, rest.heads_j3, rest.rot_j33, G_j33,
                                        root_pos_3)  # fmt: skip

    def keypoint_names(self) -> set[str]:
        """The detector / prompt names Anny has a point for (pipelines.body.base.BodyModel)."""
        from pipelines.body.anny_points import known_point_names

        return known_point_names(self)

    def posed(self, params: Mapping[str, np.ndarray]) -> tuple[np.ndarray, list[str], np.ndarray]:
        """(vertices, joint names, joints) in metres for AnnyParams, by Anny itself (torch; BodyModel)."""
        from pipelines.body.anny_points import output_joints

        rest = self.rest_state(np.asarray(params["phenotype"], dtype=np.float64))
        verts_v3 = self.posed_vertices(rest, params["bone_rot_world_j33"], params["root_pos_cam_3"])
        names, joints_j3 = output_joints(self, verts_v3)
        return verts_v3, names, joints_j3

    @cached_property
    def skel_levels(self) -> list[np.ndarray]:
        """Bone indices per depth in the hierarchy, root first."""
        return anny_pose.depth_levels(self.bone_parents)

    def anny_native_pose(self, rest: RestState, G_j33: np.ndarray, root_pos_3: np.ndarray) -> np.ndarray:
        """native_pose computed by Anny itself (torch; the reference the tests compare with)."""
        import torch

        out, m = self._forward_world_orient(rest, G_j33, root_pos_3)
        with torch.no_grad():
            return m.get_pose_parameterization(out, "local-ref")[0].cpu().numpy()
