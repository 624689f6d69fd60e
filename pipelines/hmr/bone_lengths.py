"""Per-bone length freedom for the fit: upper arms, forearms, thighs, shins and the hip width.

Anny's phenotype sets the proportions of the whole body at once; a person's forearm may still be
longer or shorter than that average makes it, and a fitted limb that is too short can reach its 2D
length only by lying flat in depth. Each length here is one relative change s (left and right
share it: people are close to symmetric), applied by moving the subtree of the bone at the far end
of the segment along the segment's rest vector, s times its length: descendants' heads and their
skin translate, the segment's own skin stretches through its blend weights. The pose fit solves
the s with the rest, under a zero-mean Gaussian prior (sigma relative, e.g. 0.08 = 8 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.hmr.kinematics import PointModel, Skeleton

# length name -> (bone whose subtree moves, the segment's start: a bone name or "hips" for their midpoint)
SEGMENTS: dict[str, list[tuple[str, str]]] = {
    "upper_arm": [("lowerarm01.L", "upperarm01.L"), ("lowerarm01.R", "upperarm01.R")],
    "forearm": [("wrist.L", "lowerarm01.L"), ("wrist.R", "lowerarm01.R")],
    "thigh": [("lowerleg01.L", "upperleg01.L"), ("lowerleg01.R", "upperleg01.R")],
    "shin": [("foot.L", "lowerleg01.L"), ("foot.R", "lowerleg01.R")],
    "hip_width": [("upperleg01.L", "hips"), ("upperleg01.R", "hips")],
}
LENGTH_NAMES: list[str] = list(SEGMENTS)


@dataclass
class LengthTerms:
    """The moved bones of each length, for one skeleton."""

    item_length: np.ndarray
    """(I,) which length each (moved bone, start) item belongs to."""
    item_bone: np.ndarray
    """(I,) the bone whose subtree moves."""
    item_parent: np.ndarray
    """(I,) that bone's parent (its world rotation turns the rest vector)."""
    item_start_i2: np.ndarray
    """(I, 2) bones whose heads' midpoint starts the segment (the same bone twice, or both hips)."""
    subtree_ij: np.ndarray
    """(I, J) 1.0 where bone j moves with item i."""
    n_lengths: int

    @staticmethod
    def build(skel: Skeleton, bone_labels: list[str]) -> LengthTerms:
        length, bone, parent, start = [], [], [], []
        hips = [bone_labels.index("upperleg01.L"), bone_labels.index("upperleg01.R")]
        for li, name in enumerate(LENGTH_NAMES):
            for moved, begin in SEGMENTS[name]:
                j = bone_labels.index(moved)
                length.append(li)
                bone.append(j)
                parent.append(int(skel.parents[j]))
                start.append(hips if begin == "hips" else [bone_labels.index(begin)] * 2)
        bone_i = np.array(bone)
        return LengthTerms(np.array(length), bone_i, np.array(parent), np.array(start), skel.subtree_matrix(bone_i),
                           len(LENGTH_NAMES))  # fmt: skip

    def rest_vectors(self, heads_j3: np.ndarray) -> np.ndarray:
        """(I, 3) each item's rest segment vector (start -> moved bone's head)."""
        return heads_j3[self.item_bone] - heads_j3[self.item_start_i2].mean(axis=1)

    def shifted_heads(self, heads_j3: np.ndarray, scale_l: np.ndarray) -> np.ndarray:
        """Rest heads with each length changed by its relative scale (J, 3)."""
        v_i3 = self.rest_vectors(heads_j3) * scale_l[self.item_length][:, None]
        return heads_j3 + self.subtree_ij.T @ v_i3

    def point_jacobian(self, pm: PointModel, heads_j3: np.ndarray, G_j33: np.ndarray) -> np.ndarray:
        """(K, 3, L): d point / d scale, pose fixed."""
        turned_i3 = np.einsum("iab,ib->ia", G_j33[self.item_parent], self.rest_vectors(heads_j3))
        W_ki = pm.w_kj @ self.subtree_ij.T
        out = np.zeros((W_ki.shape[0], 3, self.n_lengths))
        for i, li in enumerate(self.item_length):
            out[:, :, li] += W_ki[:, i, None] * turned_i3[i][None]
        return out
