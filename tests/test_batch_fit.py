"""Several people fitted together (pipelines.hmr.batch_fit) give each person's one-by-one fit."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.body.anny_model import AnnyBody
from pipelines.body.anny_points import _HAND_BONES
from pipelines.hmr.batch_fit import fit_batch
from pipelines.hmr.fit import FitOptions, FitTargets
from pipelines.hmr.init import ANNY_TO_CAM_FACING_33
from pipelines.hmr.kinematics import forward, rotvec_to_matrix
from pipelines.hmr.solver import BodyFitter
from pipelines.keypoints.names import BLAZEPOSE_NAMES

NAMES = [n for n in BLAZEPOSE_NAMES if not any(s in n for s in ("mouth", "inner", "outer"))]


@pytest.fixture(scope="module")
def fitter() -> BodyFitter:
    return BodyFitter(AnnyBody())


def _person(fitter: BodyFitter, seed: int, root_3: list[float], names: list[str], K_33: np.ndarray):
    """Noisy keypoints (pixels, hip-centred 3D) of a random pose and shape; and a rough mask (convex hull)."""
    import cv2

    rng = np.random.default_rng(seed)
    body = fitter.body
    local = np.tile(np.eye(3), (len(body.bone_labels), 1, 1))
    for bone in ("upperarm01.L", "upperarm01.R", "upperleg01.L", "upperleg01.R", "spine03", "neck01"):
        local[body.bone_labels.index(bone)] = rotvec_to_matrix(rng.normal(0, 0.3, (1, 3)))[0]
    local[0] = rotvec_to_matrix(np.array([[0.0, rng.uniform(-0.6, 0.6), 0.0]]))[0] @ ANNY_TO_CAM_FACING_33
    pheno = np.clip(0.5 + rng.normal(0, 0.15, 6), 0, 1)
    rest = body.rest_heads(pheno)
    G, o = forward(fitter.skel, rest.heads_j3, local, np.array(root_3))
    pm = fitter.point_model(tuple(names))
    x, _ = pm.evaluate(pm.rest_offsets(rest.coeffs_n, rest.heads_j3), G, o)
    uv = x[:, :2] / x[:, 2:] * K_33[0, 0] + K_33[:2, 2] + rng.normal(0, 1.5, (len(names), 2))
    hips = [names.index("left_hip"), names.index("right_hip")]
    hip3d = x - x[hips].mean(0) + rng.normal(0, 0.03, x.shape)
    mask = np.zeros((1080, 1920), np.float32)
    cv2.fillConvexPoly(mask, cv2.convexHull(uv.astype(np.int32)), 1.0)
    return uv, hip3d, mask


def test_batched_fit_equals_the_one_by_one_fits(fitter: BodyFitter) -> None:
    """Four people of one 1920x1080 photo, unlike each other: one with a mask, one with a hand's keypoints
    (its finger bones fitted, not the others') and without 3D landmarks, one
    missing its left leg's keypoints altogether (other names: padded in the batch), one with low-confidence
    keypoints and a prompt. With the focal free too, each person's batched fit is its own fit: the same 2D
    error (within 0.1 px; in practice rounding), joints, iterations and focal."""
    K = np.array([[1500.0, 0, 960], [0, 1500.0, 540], [0, 0, 1]])
    no_left_leg = [n for n in NAMES if not n.startswith(("left_knee", "left_ankle", "left_heel", "left_foot"))]
    with_hand = NAMES + [f"left_hand_{n}" for n in _HAND_BONES]  # finger bones active: masked for the others
    targets = []
    for seed, root, names in ((0, [-1.2, 0.1, 5.0], NAMES), (1, [0.0, 0.2, 4.0], with_hand),
                              (2, [1.3, 0.0, 6.0], no_left_leg), (3, [0.5, 0.3, 3.5], NAMES)):  # fmt: skip
        uv, hip3d, mask = _person(fitter, seed, root, names, K)
        conf = np.ones(len(names))
        targets.append(FitTargets(list(names), uv, conf, hip3d))
    targets[0].mask_hw = _person(fitter, 0, [-1.2, 0.1, 5.0], NAMES, K)[2]
    targets[1].hip3d_k3 = None
    assert len(fitter._active(with_hand)[0]) > len(fitter._active(NAMES)[0])
    targets[3].conf_k[[NAMES.index("left_wrist"), NAMES.index("right_ankle")]] = 0.1
    targets[3].prompts = {"right_wrist": tuple(targets[3].xy_k2[NAMES.index("right_wrist")] + 2.0)}
    opts = FitOptions(fit_focal=True, focal_prior_px=1300.0)
    seq = [fitter.fit(tg, K, opts) for tg in targets]
    bat = fit_batch(fitter, targets, K, opts, [None] * len(targets))
    assert len(bat[2].err_px_k) == len(no_left_leg)
    for s, b in zip(seq, bat, strict=True):
        assert np.nanmean(s.err_px_k) < 6.0  # the fits themselves work (1.5 px noise)
        assert abs(np.nanmean(b.err_px_k) - np.nanmean(s.err_px_k)) < 0.1
        assert np.nanmax(np.abs(b.err_px_k - s.err_px_k)) < 0.1
        assert np.abs(b.o_j3 - s.o_j3).max() < 1e-4  # metres
        assert b.iterations == s.iterations
        assert b.state.focal_px == pytest.approx(s.state.focal_px, rel=1e-6)
        assert b.focal_log_var == pytest.approx(s.focal_log_var, rel=1e-4)
        assert b.cost == pytest.approx(s.cost, rel=1e-6)
    # Warm-started (the image mode's refit with the shared focal): the same again, focal fixed.
    warms = [r.state for r in seq]
    opts2 = FitOptions(pose_iters=4, shape_iters=2)
    seq2 = [fitter.fit(tg, K, opts2, w) for tg, w in zip(targets, warms, strict=True)]
    bat2 = fitter.fit_many(targets, K, opts2, warms)
    for s, b in zip(seq2, bat2, strict=True):
        assert abs(np.nanmean(b.err_px_k) - np.nanmean(s.err_px_k)) < 0.1
        assert np.abs(b.o_j3 - s.o_j3).max() < 1e-4
