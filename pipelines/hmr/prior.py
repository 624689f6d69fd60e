"""Pose prior: how far each bone may turn from Anny's rest pose, relative to its parent.

Rotations are penalised per bone in its parent's rest-aligned axes, split into a twist about the
bone and a swing; knees and elbows are hinges (one free axis, no hyperextension). Values are
standard deviations in radians. Bones not listed follow their parent rigidly during the fit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.hmr.kinematics import matrix_to_rotvec, skew


@dataclass(frozen=True)
class BonePrior:
    swing: float
    twist: float
    hinge_forward: str | None = None
    """For a hinge: which way the child bends ('back' for knees, 'front' for elbows)."""


_SIDE_PRIORS: dict[str, BonePrior] = {
    "upperleg01": BonePrior(1.2, 0.5),
    "lowerleg01": BonePrior(0.08, 0.15, hinge_forward="back"),
    "foot": BonePrior(0.5, 0.3),
    "clavicle": BonePrior(0.15, 0.1),
    "shoulder01": BonePrior(0.25, 0.15),
    "upperarm01": BonePrior(1.5, 0.8),
    "lowerarm01": BonePrior(0.1, 0.6, hinge_forward="front"),
    "wrist": BonePrior(0.8, 0.6),
}
_CENTRE_PRIORS: dict[str, BonePrior] = {
    "spine05": BonePrior(0.25, 0.15), "spine04": BonePrior(0.25, 0.15), "spine03": BonePrior(0.25, 0.2),
    "spine02": BonePrior(0.25, 0.2), "spine01": BonePrior(0.25, 0.2), "neck01": BonePrior(0.35, 0.3),
    "neck02": BonePrior(0.25, 0.25), "head": BonePrior(0.4, 0.4),
}  # fmt: skip
_FINGER_PRIOR = BonePrior(0.8, 0.15)
_FINGER_BONES = [f"finger{i}-{j}" for i in range(1, 6) for j in range(1, 4)]


def body_bone_priors() -> dict[str, BonePrior]:
    out = dict(_CENTRE_PRIORS)
    for side in (".L", ".R"):
        out.update({name + side: p for name, p in _SIDE_PRIORS.items()})
    return out


def finger_bone_priors(side: str) -> dict[str, BonePrior]:
    """Finger joints of one side ('L' or 'R'); used when that hand's keypoints were detected."""
    return {f"{b}.{side}": _FINGER_PRIOR for b in _FINGER_BONES}


def left_jacobian_inverse(w_n3: np.ndarray) -> np.ndarray:
    """(N, 3, 3) inverse left Jacobian of SO(3): d log(exp(d) R) = Jl^-1 d."""
    theta = np.linalg.norm(w_n3, axis=-1)[..., None, None]
    K = skew(w_n3)
    safe = np.where(theta < 1e-6, 1.0, theta)
    coef = np.where(theta < 1e-6, 1 / 12, (1 / safe**2) - (1 + np.cos(safe)) / (2 * safe * np.sin(safe) + 1e-12))
    return np.eye(3) - 0.5 * K + coef * (K @ K)


@dataclass
class PriorTerms:
    """Precomputed axes for the prior of the active bones."""

    bones: np.ndarray
    """(A,) bone indices (root excluded)."""
    axis_a3: np.ndarray
    """Twist axis (along the bone) or hinge axis, in the parent's rest-aligned frame."""
    sigma_axis_a: np.ndarray
    sigma_perp_a: np.ndarray
    hinge_a: np.ndarray
    """True for hinge bones (no hyperextension)."""

    @staticmethod
    def build(priors: dict[str, BonePrior], bone_labels: list[str], heads_j3: np.ndarray,
              parents: np.ndarray, children_first: dict[int, int]) -> PriorTerms:
        bones, axes, s_ax, s_perp, hinge = [], [], [], [], []
        for name, p in priors.items():
            j = bone_labels.index(name)
            child = children_first.get(j)
            along = heads_j3[child] - heads_j3[j] if child is not None else heads_j3[j] - heads_j3[parents[j]]
            along = along / np.linalg.norm(along)
            if p.hinge_forward is None:
                axes.append(along)
                s_ax.append(p.twist)
                s_perp.append(p.swing)
                hinge.append(False)
            else:
                # Anny's rest frame: the body faces -y. Bend the child toward 'front' (-y) or 'back' (+y).
                bend = np.array([0.0, -1.0, 0.0]) if p.hinge_forward == "front" else np.array([0.0, 1.0, 0.0])
                axis = np.cross(along, bend)
                axes.append(axis / np.linalg.norm(axis))
                s_ax.append(2.5)
                s_perp.append(p.swing)
                hinge.append(True)
            bones.append(j)
        return PriorTerms(np.array(bones), np.array(axes), np.array(s_ax), np.array(s_perp), np.array(hinge))

    def residuals(self, local_j33: np.ndarray, G_j33: np.ndarray, parents: np.ndarray):
        """Residuals (A, 5) and their Jacobian (A, 5, 3) w.r.t. each bone's world-axis increment
        (prior_residuals_b of one)."""
        r, J = prior_residuals_b(local_j33[None], G_j33[None], parents, self.bones, self.axis_a3[None],
                                 self.sigma_axis_a, self.sigma_perp_a, self.hinge_a)  # fmt: skip
        return r[0], J[0]


def prior_residuals_b(local_bj33: np.ndarray, G_bj33: np.ndarray, parents: np.ndarray, bones_a: np.ndarray,
                      axis_ba3: np.ndarray, sigma_axis_a: np.ndarray, sigma_perp_a: np.ndarray,
                      hinge_a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The pose prior of B people (PriorTerms' bones and sigmas, each person its own axes (B, A, 3)): residuals
    (B, A, 5) (swing / sigma_perp (3), twist or hinge angle / sigma_axis, hyperextension / 0.05) and their
    Jacobian (B, A, 5, 3) w.r.t. each bone's world-axis increment."""
    w = matrix_to_rotvec(local_bj33[:, bones_a])  # (B, A, 3)
    a = axis_ba3
    along = np.einsum("bac,bac->ba", w, a)
    perp = w - along[..., None] * a
    hyper = np.where(hinge_a, np.minimum(along, 0.0), 0.0)
    r = np.concatenate([perp / sigma_perp_a[:, None], (along / sigma_axis_a)[..., None],
                        (hyper / 0.05)[..., None]], axis=-1)  # fmt: skip
    # d w / d delta = Jl^-1(w) G_p^T
    dw = left_jacobian_inverse(w) @ G_bj33[:, parents[bones_a]].transpose(0, 1, 3, 2)
    d_along = np.einsum("bac,bacd->bad", a, dw)
    d_perp = dw - a[..., None] * d_along[..., None, :]
    d_hyper = np.where((hinge_a & (along < 0))[..., None], d_along, 0.0)
    J = np.concatenate([d_perp / sigma_perp_a[:, None, None], (d_along / sigma_axis_a[:, None])[..., None, :],
                        (d_hyper / 0.05)[..., None, :]], axis=-2)  # fmt: skip
    return r, J
