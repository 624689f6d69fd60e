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


# A non-default value of every FitOptions field that changes the residuals (or which terms are there).
NON_DEFAULT_OPTIONS: dict[str, dict] = {
    "loss_2d": {"loss_2d": "cauchy"},
    "huber_k": {"huber_k": 1.0},
    "min_conf_2d": {"min_conf_2d": 0.2},  # the low-confidence wrist dropped
    "sigma_px": {"sigma_px": 2.0},
    "sigma_prompt_px": {"sigma_prompt_px": 2.0},
    "sigma_3d_m": {"sigma_3d_m": 0.12},
    "min_weight_3d": {"min_weight_3d": 0.8},
    "sigma_dir": {"sigma_dir": 0.0},
    "sigma_dir_depth": {"sigma_dir_depth": 0.08},
    "sigma_shape": {"sigma_shape": 0.1},
    "fit_shape": {"fit_shape": False},
    "fit_focal": {"fit_focal": True, "focal_prior_px": 1300.0},
    "focal_sigma_log": {"fit_focal": True, "focal_prior_px": 1300.0, "focal_sigma_log": 0.1},
    "sigma_mask_px": {"sigma_mask_px": 3.0},
    "mask_samples": {"mask_samples": 150},
    "sigma_length": {"sigma_length": 0.08},  # fit_many runs these one by one
}
NOT_RESIDUALS = {"pose_iters", "shape_iters", "focal_prior_px"}  # iteration counts; the prior is under fit_focal


@pytest.fixture(scope="module")
def three_people(fitter: BodyFitter) -> tuple[list[FitTargets], np.ndarray]:
    """Three people of a 1920x1080 photo: one with a mask, one with a prompt and no 3D, one low-confidence wrist."""
    K = np.array([[1500.0, 0, 960], [0, 1500.0, 540], [0, 0, 1]])
    targets = []
    for seed, root in ((0, [-1.2, 0.1, 5.0]), (1, [0.0, 0.2, 4.0]), (2, [1.3, 0.0, 6.0])):
        uv, hip3d, mask = _person(fitter, seed, root, NAMES, K)
        targets.append(FitTargets(list(NAMES), uv, np.ones(len(NAMES)), hip3d, {}, mask if seed == 0 else None))
    targets[1].hip3d_k3 = None
    targets[1].prompts = {"right_wrist": tuple(targets[1].xy_k2[NAMES.index("right_wrist")] + 2.0)}
    targets[2].conf_k[NAMES.index("left_wrist")] = 0.1
    return targets, K


@pytest.mark.parametrize("variant", [*NON_DEFAULT_OPTIONS, "no mask"])
def test_batched_fit_equals_the_one_by_one_fits_for_every_option(fitter: BodyFitter, three_people,
                                                                 variant: str) -> None:  # fmt: skip
    """Each option that changes the residuals, at a non-default value (and the mask term off): fit_many gives
    each person's own fit() (2D error within 0.1 px, joints within 0.1 mm)."""
    import dataclasses

    covered = set(NON_DEFAULT_OPTIONS) | NOT_RESIDUALS
    assert {f.name for f in dataclasses.fields(FitOptions)} == covered, "a new FitOptions field: add a variant"
    targets, K = three_people
    if variant == "no mask":
        targets, opts = [dataclasses.replace(t, mask_hw=None) for t in targets], FitOptions()
    else:
        opts = FitOptions(**NON_DEFAULT_OPTIONS[variant])
    opts.pose_iters, opts.shape_iters = 4, 3  # short: the equality does not need a converged fit
    seq = [fitter.fit(tg, K, opts) for tg in targets]
    bat = fitter.fit_many(targets, K, opts, [None] * len(targets))
    for s, b in zip(seq, bat, strict=True):
        assert np.nanmean(s.err_px_k) < 8.0  # the fits themselves work (1.5 px noise)
        assert np.nanmax(np.abs(b.err_px_k - s.err_px_k)) < 0.1
        assert np.abs(b.o_j3 - s.o_j3).max() < 1e-4  # metres
        assert b.state.focal_px == pytest.approx(s.state.focal_px, rel=1e-6)


def test_unknown_2d_loss_is_refused() -> None:
    with pytest.raises(ValueError, match="loss_2d"):
        FitOptions(loss_2d="cauchi")


def test_a_failing_batch_is_refitted_one_by_one(fitter: BodyFitter, three_people, monkeypatch) -> None:
    """A batch that raises (numpy's stacked solvers fail for everyone on one person's matrix) is refitted one
    person at a time: each person still gets its own fit."""
    import pipelines.hmr.batch_fit as batch_fit

    targets, K = three_people
    opts = FitOptions(pose_iters=3, shape_iters=2)

    def failing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise np.linalg.LinAlgError("SVD did not converge")

    monkeypatch.setattr(batch_fit, "fit_batch", failing)
    reps = fitter.fit_many(targets, K, opts, [None] * len(targets))
    for tg, rep in zip(targets, reps, strict=True):
        assert np.abs(rep.o_j3 - fitter.fit(tg, K, opts).o_j3).max() < 1e-9


def test_a_person_with_broken_keypoints_does_not_cost_the_others_their_bodies(three_people) -> None:
    """The image mode: a person whose keypoints are not finite makes the batched fit raise; the others are
    still fitted (one by one) and that person gets a warning and no body."""
    from pipelines.modes.image import ImagePipeline
    from pipelines.types import Camera, Keypoints2D, Keypoints3D, PersonDetection, PersonResult

    targets, K = three_people
    people = []
    for i, tg in enumerate(targets):
        xy = tg.xy_k2.copy()
        if i == 1:
            xy[NAMES.index("nose")] = np.nan
        hip3d = tg.hip3d_k3 if tg.hip3d_k3 is not None else np.zeros((len(NAMES), 3))
        det = PersonDetection(np.array([0.0, 0, 10, 10]), 1.0, None, Keypoints2D(list(NAMES), xy, tg.conf_k),
                              Keypoints3D(list(NAMES), hip3d, frame="hip"))  # fmt: skip
        people.append(PersonResult(i, det))
    pipe = ImagePipeline()
    pipe.hmr.options = FitOptions(pose_iters=3, shape_iters=2)
    warnings: list[str] = []
    fits = pipe._fit_people(Camera(K, 1920, 1080), people, {}, [None] * 3, warnings, np.zeros((1080, 1920, 3)))
    assert fits[1] is None
    assert len(warnings) == 1 and warnings[0].startswith("Person 1:")
    for i in (0, 2):
        assert fits[i].body.reprojection_px_mean < 8.0


def test_rejected_steps_tried_at_once_give_the_one_by_one_fits(fitter: BodyFitter, three_people,
                                                               monkeypatch) -> None:  # fmt: skip
    """lm_batch gives the people whose first step fails all their further tries (damping x6 each) in one call.
    On fits that reject steps (and stop when 5 fail), each person's result is still its own fit's, in the
    same iterations: the speculative tries take, per person, the first improving step, as tried in turn."""
    import pipelines.hmr.batch_fit as batch_fit

    targets, K = three_people
    opts = FitOptions(fit_focal=True, focal_prior_px=1300.0, pose_iters=8, shape_iters=6)
    sizes: list[tuple[int, int]] = []
    take = batch_fit.BatchProblem.take

    def spy(self, sel):  # noqa: ANN001, ANN202
        sizes.append((len(sel), len(np.unique(sel))))
        return take(self, sel)

    monkeypatch.setattr(batch_fit.BatchProblem, "take", spy)
    bat = fitter.fit_many(targets, K, opts, [None] * len(targets))
    assert any(n > u for n, u in sizes), "no speculative tries ran: the test does not test them"
    monkeypatch.undo()
    for tg, b in zip(targets, bat, strict=True):
        s = fitter.fit(tg, K, opts)
        assert b.iterations == s.iterations
        assert np.abs(b.o_j3 - s.o_j3).max() < 1e-9  # metres
        assert b.state.focal_px == pytest.approx(s.state.focal_px, rel=1e-9)
        assert b.cost == pytest.approx(s.cost, rel=1e-9)
