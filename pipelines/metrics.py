"""Similarity alignment (Procrustes) of 3D point sets, and accuracy metrics for 3D joints.

`procrustes` is the project's one Procrustes: the metrics below, the fit's torso initialisation and the
multi-view skeleton's bone rotations use it.

Joint arrays are (K, 3) in metres, in the same frame and joint order for prediction and reference;
the metrics return metres (multiply by 1000 for the usual millimetre tables).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Similarity:
    """A similarity transform y = scale * R_33 x + t_3."""

    scale: float
    R_33: np.ndarray
    t_3: np.ndarray

    def apply(self, x_k3: np.ndarray) -> np.ndarray:
        return self.scale * x_k3 @ self.R_33.T + self.t_3


def procrustes(pred_k3: np.ndarray, ref_k3: np.ndarray, with_scale: bool = True,
               with_translation: bool = True) -> Similarity:
    """The similarity (rotation, translation and, optionally, uniform scale) that best maps pred onto ref
    in the least-squares sense (Umeyama's closed form; reflections excluded). Without translation the
    rotation (and scale) is about the origin: the points are not centred and t_3 is zero."""
    pred_k3 = np.asarray(pred_k3, dtype=np.float64)
    ref_k3 = np.asarray(ref_k3, dtype=np.float64)
    if pred_k3.shape != ref_k3.shape or pred_k3.ndim != 2 or pred_k3.shape[1] != 3:
        raise ValueError(f"procrustes needs two (K, 3) arrays of one shape: {pred_k3.shape}, {ref_k3.shape}")
    if with_translation:
        mu_pred_3, mu_ref_3 = pred_k3.mean(axis=0), ref_k3.mean(axis=0)
    else:
        mu_pred_3 = mu_ref_3 = np.zeros(3)
    p_k3, r_k3 = pred_k3 - mu_pred_3, ref_k3 - mu_ref_3
    cov_33 = r_k3.T @ p_k3 / len(p_k3)
    U_33, S_3, Vt_33 = np.linalg.svd(cov_33)
    D_3 = np.ones(3)
    if np.linalg.det(U_33) * np.linalg.det(Vt_33) < 0:
        D_3[2] = -1.0
    R_33 = U_33 @ np.diag(D_3) @ Vt_33
    var_pred = (p_k3**2).sum() / len(p_k3)
    scale = float((S_3 * D_3).sum() / var_pred) if with_scale and var_pred > 0 else 1.0
    t_3 = mu_ref_3 - scale * R_33 @ mu_pred_3
    return Similarity(scale=scale, R_33=R_33, t_3=t_3)


def mpjpe(pred_k3: np.ndarray, ref_k3: np.ndarray) -> float:
    """Mean per-joint position error (metres): mean Euclidean distance between matching joints."""
    return float(np.linalg.norm(np.asarray(pred_k3) - np.asarray(ref_k3), axis=-1).mean())


def pa_mpjpe(pred_k3: np.ndarray, ref_k3: np.ndarray, with_scale: bool = True) -> float:
    """MPJPE after Procrustes alignment of the prediction onto the reference (metres)."""
    return mpjpe(procrustes(pred_k3, ref_k3, with_scale).apply(pred_k3), ref_k3)


def root_relative_mpjpe(pred_k3: np.ndarray, ref_k3: np.ndarray, root_ids: list[int]) -> float:
    """MPJPE after moving each skeleton's root (mean of the joints `root_ids`, e.g. both hips) to 0."""
    pred_k3, ref_k3 = np.asarray(pred_k3), np.asarray(ref_k3)
    return mpjpe(pred_k3 - pred_k3[root_ids].mean(axis=0), ref_k3 - ref_k3[root_ids].mean(axis=0))


def root_distance_error(pred_root_3: np.ndarray, ref_root_3: np.ndarray) -> float:
    """Signed relative error of the root's distance from the camera: (|pred| - |ref|) / |ref|.

    Both points in the camera frame; positive when the prediction is too far away."""
    ref_dist = float(np.linalg.norm(ref_root_3))
    return (float(np.linalg.norm(pred_root_3)) - ref_dist) / ref_dist
