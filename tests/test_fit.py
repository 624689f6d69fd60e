"""Body model and fitting: exactness of the fast kinematics, recovery of a known pose, real photos."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.body.anny_model import AnnyBody
from pipelines.body.anny_points import SKELETON_JOINT_NAMES, output_joints, skeleton_joints
from pipelines.camera.focal import FocalEstimate, combine_focal_estimates
from pipelines.hmr.bone_lengths import LENGTH_NAMES, LengthTerms
from pipelines.hmr.fit import FitOptions, FitTargets
from pipelines.hmr.init import ANNY_TO_CAM_FACING_33
from pipelines.hmr.kinematics import forward, rotation_between, rotvec_to_matrix
from pipelines.hmr.solver import BodyFitter
from pipelines.io.image_io import load_image
from pipelines.keypoints.names import BLAZEPOSE_NAMES, COCO17_NAMES
from pipelines.types import Prompts

FIT_NAMES = [n for n in BLAZEPOSE_NAMES if not any(s in n for s in ("mouth", "inner", "outer"))]


@pytest.fixture(scope="module")
def fitter() -> BodyFitter:
    return BodyFitter(AnnyBody())


def _pose(body: AnnyBody, rotations: dict[str, list[float]], root_turn: float) -> np.ndarray:
    local = np.tile(np.eye(3), (len(body.bone_labels), 1, 1))
    for name, r in rotations.items():
        local[body.bone_labels.index(name)] = rotvec_to_matrix(np.array([r]))[0]
    local[0] = rotvec_to_matrix(np.array([[0.0, root_turn, 0.0]]))[0] @ ANNY_TO_CAM_FACING_33
    return local


def test_fast_skinning_and_points_match_anny(fitter: BodyFitter) -> None:
    """Our numpy kinematics give Anny's own vertices, and the skin points equal regressed vertices."""
    body = fitter.body
    rng = np.random.default_rng(0)
    local = rotvec_to_matrix(rng.normal(0, 0.3, (len(body.bone_labels), 3)))
    pheno = np.array([0.2, 0.5, 0.7, 0.4, 0.8, 0.3])
    rest = body.rest_state(pheno)
    root = np.array([0.1, -0.2, 2.5])
    G, o = forward(fitter.skel, rest.heads_j3, local, root)
    verts_anny = body.posed_vertices(rest, G, root)
    verts_np = body.skin(rest.coeffs_n, rest.heads_j3, G, o)
    assert verts_np.shape == (13718, 3)
    assert np.abs(verts_anny - verts_np).max() < 1e-6
    some = np.array([5, 0, 13000])  # a subset of the vertices, in that order
    assert np.abs(body.skin(rest.coeffs_n, rest.heads_j3, G, o, vertex_idx=some) - verts_np[some]).max() < 1e-12
    pm = fitter.point_model(("left_wrist", "right_knee", "left_hand_index_finger_tip"))
    x, _ = pm.evaluate(pm.rest_offsets(rest.coeffs_n, rest.heads_j3), G, o)
    names, joints = output_joints(body, verts_np)
    assert np.abs(x[0] - joints[names.index("left_wrist")]).max() < 1e-9
    assert np.abs(x[1] - joints[names.index("right_knee")]).max() < 1e-9


def test_rotation_jacobian_matches_finite_differences(fitter: BodyFitter) -> None:
    body = fitter.body
    rest = body.rest_heads(body.default_pheno())
    local = rotvec_to_matrix(np.random.default_rng(1).normal(0, 0.2, (len(body.bone_labels), 3)))
    root = np.array([0.0, 0.0, 3.0])
    pm = fitter.point_model(tuple(FIT_NAMES))
    offs = pm.rest_offsets(rest.coeffs_n, rest.heads_j3)
    G, o = forward(fitter.skel, rest.heads_j3, local, root)
    x, contrib = pm.evaluate(offs, G, o)
    active = np.array([0, body.bone_labels.index("upperarm01.L"), body.bone_labels.index("lowerleg01.R")])
    J = pm.rotation_jacobian(contrib, o, fitter.skel.subtree_matrix(active), active)
    eps = 1e-6
    for a, bone in enumerate(active):
        for c in range(3):
            step = np.zeros((1, 3))
            step[0, c] = eps
            moved = local.copy()
            if bone == 0:
                moved[0] = rotvec_to_matrix(step)[0] @ local[0]
            else:
                Gp = G[fitter.skel.parents[bone]]
                moved[bone] = Gp.T @ rotvec_to_matrix(step)[0] @ Gp @ local[bone]
            G2, o2 = forward(fitter.skel, rest.heads_j3, moved, root)
            x2, _ = pm.evaluate(offs, G2, o2)
            assert np.abs((x2 - x) / eps - J[:, :, a, c]).max() < 1e-4


def test_fit_recovers_a_known_pose_shape_and_distance(fitter: BodyFitter) -> None:
    """Keypoints rendered from a known body (1080x1920, f = 1400 px) are fitted back to mm accuracy."""
    body = fitter.body
    local_true = _pose(body, {
        "upperarm01.L": [0.3, 0.2, -0.6], "upperarm01.R": [0.2, -0.3, 0.7], "lowerarm01.L": [-0.9, 0, 0],
        "lowerarm01.R": [-0.6, 0, 0], "upperleg01.L": [-0.5, 0.1, 0.0], "lowerleg01.L": [0.8, 0, 0],
        "spine03": [0.1, 0.05, 0.1], "neck01": [0.1, 0, 0.2]}, root_turn=0.4)  # fmt: skip
    pheno_true = np.array([0.3, 0.5, 0.6, 0.45, 0.7, 0.5])
    rest = body.rest_heads(pheno_true)
    root_true = np.array([0.1, 0.2, 3.5])
    uv, x_hip, K, (G, o) = _render(fitter, local_true, pheno_true, root_true, 1400.0)
    targets = FitTargets(FIT_NAMES, uv, np.ones(len(FIT_NAMES)), x_hip)
    report = fitter.fit(targets, K, FitOptions())
    assert np.nanmean(report.err_px_k) < 0.5
    assert np.nanmax(report.err_px_k) < 2.0
    v_true = body.skin(rest.coeffs_n, rest.heads_j3, G, o)
    v_fit = body.skin(report.rest.coeffs_n, report.rest.heads_j3, report.G_j33, report.o_j3)
    _, j_true = output_joints(body, v_true)
    _, j_fit = output_joints(body, v_fit)
    assert np.linalg.norm(j_true - j_fit, axis=1).mean() < 0.015  # metres
    assert np.linalg.norm(report.state.root_pos_3 - root_true) < 0.03
    height_true = np.ptp(body.rest_vertices(rest.coeffs_n)[:, 2])
    assert abs(np.ptp(body.rest_vertices(report.rest.coeffs_n)[:, 2]) - height_true) < 0.03


def test_lunge_photo_gives_a_plausible_metric_body(pipeline, lunge_path) -> None:  # noqa: ANN001
    result = pipeline.run(load_image(lunge_path))
    assert len(result.people) == 1
    assert result.camera.source == "estimated"
    body = result.people[0].body
    assert body is not None
    assert body.verts_cam_v3.shape == (13718, 3)
    assert 1.4 <= body.height_m <= 2.1
    assert body.reprojection_px_mean <= 3.5
    assert body.reprojection_px_max <= 25.0
    joints = dict(zip(body.joints3d_cam.names, body.joints3d_cam.xyz_k3, strict=True))
    assert set(COCO17_NAMES) <= set(joints)
    assert 1.5 < joints["left_hip"][2] < 6.0  # metres in front of the camera
    # OpenCV frame: y down, so the ankles are below (larger y than) the hips, the head above them.
    assert joints["left_ankle"][1] > joints["left_hip"][1] > joints["nose"][1]
    # The mesh projects onto the person: most projected vertices fall inside the person's mask.
    K = result.camera.K_33
    uv = body.verts_cam_v3[:, :2] / body.verts_cam_v3[:, 2:] * K[0, 0] + K[:2, 2]
    mask = result.people[0].detection.mask_hw
    rows = np.clip(uv[:, 1].astype(int), 0, mask.shape[0] - 1)
    cols = np.clip(uv[:, 0].astype(int), 0, mask.shape[1] - 1)
    inside = mask[rows, cols]
    assert (inside > 0.5).mean() > 0.8


def test_keypoint_prompt_pins_the_joint(pipeline, lunge_path) -> None:  # noqa: ANN001
    image = load_image(lunge_path)
    first = pipeline.run(image)
    kp = first.people[0].detection.keypoints2d
    wrist = kp.xy_k2[kp.names.index("left_knee")]
    target = (float(wrist[0] + 30), float(wrist[1] - 20))
    result = pipeline.run(image, prompts=Prompts(keypoints={"left_knee": target}))
    body = result.people[0].body
    assert body.per_keypoint_px["left_knee"] < 3.0
    # ... and the knee moved toward the prompt in 3D as well, not only the error bookkeeping.
    j = dict(zip(body.joints3d_cam.names, body.joints3d_cam.xyz_k3, strict=True))["left_knee"]
    K = result.camera.K_33
    uv = j[:2] / j[2] * K[0, 0] + K[:2, 2]
    assert np.hypot(uv[0] - target[0], uv[1] - target[1]) < 15.0


def test_focal_length_sources(pipeline, lunge_path) -> None:  # noqa: ANN001
    image = load_image(lunge_path)
    near = pipeline.run(image, focal_px=800.0)
    far = pipeline.run(image, focal_px=1600.0)
    assert near.camera.source == "user" and near.camera.focal_px == 800.0
    z_near = near.people[0].body.joints3d_cam.xyz_k3[:, 2].mean()
    z_far = far.people[0].body.joints3d_cam.xyz_k3[:, 2].mean()
    # Same image, twice the focal length: the same-sized person must stand about twice as far.
    assert 1.6 < z_far / z_near < 2.4


def test_prompt_edit_reuses_detections_and_warm_starts(pipeline, lunge_path) -> None:  # noqa: ANN001
    from pipelines.modes.image import ImageSession

    image = load_image(lunge_path)
    session = ImageSession()
    first = pipeline.run(image, session=session)
    assert "detect" in first.timings_s
    kp = first.people[0].detection.keypoints2d
    knee = kp.xy_k2[kp.names.index("right_knee")]
    second = pipeline.run(image, prompts=Prompts(keypoints={"right_knee": (float(knee[0]) + 10, float(knee[1]))}),
                          session=session)  # fmt: skip
    assert "detect" not in second.timings_s
    assert second.camera.focal_px == pytest.approx(first.camera.focal_px)
    assert second.people[0].body.per_keypoint_px["right_knee"] < 3.0


def test_no_person_gives_zero_people_and_a_warning(pipeline) -> None:  # noqa: ANN001
    rng = np.random.default_rng(0)
    noise = (rng.random((480, 640, 3)) * 40 + 100).astype(np.uint8)
    result = pipeline.run_array(noise)
    assert result.people == []
    assert any("No person" in w for w in result.warnings)


def test_two_people_each_get_a_body(pipeline, lunge_path, data_dir) -> None:  # noqa: ANN001
    import cv2

    from pipelines.multiview.video import read_frames

    a = load_image(lunge_path).rgb_hw3
    _, b = next(read_frames(data_dir / "multiview" / "pose2sim_single" / "cam04.mp4", [0]))
    b = cv2.resize(b, (round(b.shape[1] * a.shape[0] / b.shape[0]), a.shape[0]))
    both = np.ascontiguousarray(np.hstack([a, b]))
    result = pipeline.run_array(both)
    fitted = [p for p in result.people if p.body is not None]
    assert len(fitted) >= 2
    centres = sorted(float(p.detection.bbox_xyxy[[0, 2]].mean()) for p in fitted)
    assert centres[0] < a.shape[1] < centres[-1]
    for p in fitted:
        assert 1.4 <= p.body.height_m <= 2.1


def _aim(fitter: BodyFitter, rest, local: np.ndarray, bone: str, child: str, dir_cam_3: list[float]) -> None:  # noqa: ANN001
    """Turn `bone` (with its subtree) so that it points along dir_cam_3 in the camera frame."""
    body, skel = fitter.body, fitter.skel
    G, o = forward(skel, rest.heads_j3, local, np.zeros(3))
    j, c = body.bone_labels.index(bone), body.bone_labels.index(child)
    delta = rotation_between(o[c] - o[j], np.asarray(dir_cam_3, dtype=np.float64))
    Gp = G[skel.parents[j]]
    local[j] = Gp.T @ rotvec_to_matrix(delta[None])[0] @ Gp @ local[j]


def _render(fitter: BodyFitter, local: np.ndarray, pheno: np.ndarray, root_3: np.ndarray, focal: float,
            heads_j3: np.ndarray | None = None):  # noqa: ANN202
    """Exact keypoints of a known body: pixels (1080x1920 camera) and hip-centred 3D points (camera axes),
    K, and the posed bones (G, o); `heads_j3` replaces the phenotype's bone heads (other proportions)."""
    rest = fitter.body.rest_heads(pheno)
    G, o = forward(fitter.skel, rest.heads_j3 if heads_j3 is None else heads_j3, local, root_3)
    pm = fitter.point_model(tuple(FIT_NAMES))
    x, _ = pm.evaluate(pm.rest_offsets(rest.coeffs_n, rest.heads_j3), G, o)
    K = np.array([[focal, 0, 540], [0, focal, 960], [0, 0, 1]])
    hips = [FIT_NAMES.index("left_hip"), FIT_NAMES.index("right_hip")]
    return x[:, :2] / x[:, 2:] * focal + K[:2, 2], x - x[hips].mean(0), K, (G, o)


def _reaching_pose(fitter: BodyFitter, pheno: np.ndarray) -> np.ndarray:
    """Facing the camera, right upper arm down, right forearm reaching toward the camera (elbow at 90 deg)."""
    local = np.tile(np.eye(3), (len(fitter.body.bone_labels), 1, 1))
    local[0] = ANNY_TO_CAM_FACING_33
    rest = fitter.body.rest_heads(pheno)
    _aim(fitter, rest, local, "upperarm01.R", "lowerarm01.R", [-0.15, 1.0, 0.0])
    _aim(fitter, rest, local, "lowerarm01.R", "wrist.R", [0.1, 0.25, -1.0])
    _aim(fitter, rest, local, "upperarm01.L", "lowerarm01.L", [0.3, 1.0, 0.1])
    return local


def test_fit_keeps_the_depth_of_a_limb_pointing_at_the_camera(fitter: BodyFitter) -> None:
    """2D cannot tell a forearm's depth; 3D landmarks that say 'toward the camera' but flatten the depth
    to 40 % (as MediaPipe's tend to) must not flatten the fitted forearm: its bone length decides."""
    pheno = np.array([0.3, 0.5, 0.6, 0.45, 0.7, 0.5])
    uv, rel_k3, K, _ = _render(fitter, _reaching_pose(fitter, pheno), pheno, np.array([0.1, 0.2, 3.5]), 1400.0)
    flat_k3 = rel_k3 * np.array([1.0, 1.0, 0.4])
    report = fitter.fit(FitTargets(FIT_NAMES, uv, np.ones(len(FIT_NAMES)), flat_k3), K, FitOptions())
    pm = fitter.point_model(tuple(FIT_NAMES))
    x, _ = pm.evaluate(pm.rest_offsets(report.rest.coeffs_n, report.rest.heads_j3), report.G_j33, report.o_j3)
    e, w = FIT_NAMES.index("right_elbow"), FIT_NAMES.index("right_wrist")
    true_dz, input_dz, fit_dz = rel_k3[w, 2] - rel_k3[e, 2], flat_k3[w, 2] - flat_k3[e, 2], x[w, 2] - x[e, 2]
    assert true_dz < -0.2  # metres toward the camera
    assert input_dz > 0.5 * true_dz
    assert fit_dz < 0.8 * true_dz  # at least 80 % of the true depth
    assert np.nanmean(report.err_px_k) < 1.5


def test_free_bone_lengths_recover_long_forearms_and_their_depth(fitter: BodyFitter) -> None:
    """A person whose forearms are 15 % longer than Anny's proportions give, right forearm reaching toward
    the camera, exact 2D and 3D: with the bone lengths free (FitOptions.sigma_length) the fitted forearm
    comes closer to its true length and depth than with Anny's fixed proportions. Off by default."""
    body = fitter.body
    pheno = np.array([0.3, 0.5, 0.6, 0.45, 0.7, 0.5])
    lengths = LengthTerms.build(fitter.skel, body.bone_labels)
    scale_l = np.zeros(lengths.n_lengths)
    scale_l[LENGTH_NAMES.index("forearm")] = 0.15
    rest = body.rest_heads(pheno)
    uv, x_hip, K, (G, o) = _render(fitter, _reaching_pose(fitter, pheno), pheno, np.array([0.1, 0.2, 3.5]), 1400.0,
                                   heads_j3=lengths.shifted_heads(rest.heads_j3, scale_l))  # fmt: skip
    targets = FitTargets(FIT_NAMES, uv, np.ones(len(FIT_NAMES)), x_hip)

    def forearm(report) -> tuple[float, float]:  # noqa: ANN001
        v_fit = body.skin(report.rest.coeffs_n, report.rest.heads_j3, report.G_j33, report.o_j3)
        names, joints = output_joints(body, v_fit)
        d = joints[names.index("right_wrist")] - joints[names.index("right_elbow")]
        return float(np.linalg.norm(d)), float(d[2])

    v_true = body.skin(rest.coeffs_n, rest.heads_j3, G, o)
    names, joints = output_joints(body, v_true)
    true_d = joints[names.index("right_wrist")] - joints[names.index("right_elbow")]
    fixed = fitter.fit(targets, K, FitOptions())
    free = fitter.fit(targets, K, FitOptions(sigma_length=0.1))
    assert len(fixed.state.length_scale_l) == 0  # the default keeps Anny's proportions
    assert free.state.length_scale_l[LENGTH_NAMES.index("forearm")] > 0.07  # of the true 0.15, under the prior
    len_fixed, dz_fixed = forearm(fixed)
    len_free, dz_free = forearm(free)
    true_len = float(np.linalg.norm(true_d))
    assert abs(len_free - true_len) < 0.75 * abs(len_fixed - true_len)
    assert true_d[2] < -0.2  # metres toward the camera
    assert abs(dz_free - true_d[2]) < 0.7 * abs(dz_fixed - true_d[2])
    assert np.nanmean(free.err_px_k) < np.nanmean(fixed.err_px_k)


def test_focal_from_synthetic_bodies_moves_toward_the_truth(fitter: BodyFitter) -> None:
    """Exact keypoints of bodies seen by a 1400 px camera, the focal prior 25-30 % off either way: each
    body's estimate moves toward the truth (if at all: the perspective of one body is weak evidence), and
    three people together are surer, closer than the average of their own estimates and than the prior."""
    pheno = np.array([0.3, 0.5, 0.6, 0.45, 0.7, 0.5])
    local = _reaching_pose(fitter, pheno)
    for prior_scale in (0.75, 1.3):
        prior = 1400.0 * prior_scale
        estimates = []
        for root in ([-1.2, 0.2, 4.0], [0.1, 0.2, 3.0], [1.0, 0.3, 5.0]):
            uv, rel_k3, K, _ = _render(fitter, local, pheno, np.array(root), 1400.0)
            K[0, 0] = K[1, 1] = prior
            opts = FitOptions(fit_focal=True, focal_prior_px=prior)
            report = fitter.fit(FitTargets(FIT_NAMES, uv, np.ones(len(FIT_NAMES)), rel_k3), K, opts)
            # The perspective of one body says little about the focal: never away from the truth.
            assert abs(np.log(report.state.focal_px / 1400.0)) <= abs(np.log(prior_scale)) + 0.01
            estimates.append(FocalEstimate(report.state.focal_px, report.focal_log_var))
        shared = combine_focal_estimates(estimates, prior, opts.focal_sigma_log)
        errors = [abs(np.log(e.focal_px / 1400.0)) for e in estimates]
        assert abs(np.log(shared.focal_px / 1400.0)) <= np.mean(errors) + 0.01
        assert abs(np.log(shared.focal_px / 1400.0)) < 0.75 * abs(np.log(prior_scale))
        assert shared.log_var < min(e.log_var for e in estimates)


def test_fit_3d_against_human36m_truth(pipeline, data_dir) -> None:  # noqa: ANN001
    """Four Human3.6M frames with motion-capture joints, true focal: no frame's PA-MPJPE much worse than
    MediaPipe's own metric landmarks (from the same detection), none absurd."""
    from bench.accuracy_lab3d import run_h36m

    samples = run_h36m(pipeline, data_dir / "lab3d" / "h36m")
    assert len(samples) == 4
    for s in samples:
        assert s.fit_mm < 1.25 * s.mediapipe_mm, s
        assert s.fit_mm < 160.0, s
    assert np.mean([s.fit_mm for s in samples]) < 1.1 * np.mean([s.mediapipe_mm for s in samples])


def test_fit_3d_beats_mediapipe_against_four_calibrated_cameras(pipeline, data_dir) -> None:  # noqa: ANN001
    """pose2sim_single, 2 frames x 4 views, against the keypoints triangulated from all four views:
    the fitted joints are at least 10 % closer (PA-MPJPE) than MediaPipe's metric landmarks."""
    from bench.accuracy_lab3d import run_multiview

    folder = data_dir / "multiview" / "pose2sim_single"
    samples, _, _ = run_multiview(pipeline, folder, [0, 60], estimate_focal=False)
    assert len(samples) >= 6
    fit, mp = np.array([s.fit_mm for s in samples]), np.array([s.mediapipe_mm for s in samples])
    assert fit.mean() < 0.9 * mp.mean()
    assert (fit < 1.5 * mp).all()


def test_fit_gives_the_blas_threads_back(fitter: BodyFitter) -> None:
    """The fit solves its small systems on one BLAS thread, then restores the caller's thread count (other
    numpy work in the process keeps its threads) and still fits exact keypoints to sub-pixel error."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    pheno = np.array([0.3, 0.5, 0.6, 0.45, 0.7, 0.5])
    uv, rel_k3, K, _ = _render(fitter, _reaching_pose(fitter, pheno), pheno, np.array([0.1, 0.2, 3.5]), 1400.0)
    report = fitter.fit(FitTargets(FIT_NAMES, uv, np.ones(len(FIT_NAMES)), rel_k3), K, FitOptions())
    assert blas_threads() == before
    assert np.nanmean(report.err_px_k) < 1.0


def _width(names: list[str], xyz_k3: np.ndarray, joint: str) -> float:
    return float(np.linalg.norm(xyz_k3[names.index(f"left_{joint}")] - xyz_k3[names.index(f"right_{joint}")]))


def test_skeleton_joints_are_joint_centres_with_wider_hips(fitter: BodyFitter) -> None:
    """The 'h36m' convention on Anny's rest pose, facing the camera 3 m away: 13 joints (pelvis first, the
    mid-point of the hip joints), hip-joint centres 2-4 cm wider apart than the COCO regressor's hips (the
    gap to Human3.6M's 24-29 cm), the other limb joints within 3 cm of the COCO ones."""
    body = fitter.body
    rest = body.rest_heads(body.default_pheno())
    local = np.tile(np.eye(3), (len(body.bone_labels), 1, 1))
    local[0] = ANNY_TO_CAM_FACING_33
    G, o = forward(fitter.skel, rest.heads_j3, local, np.array([0.0, 0.0, 3.0]))
    names, joints_k3 = skeleton_joints(body, o)
    assert names == SKELETON_JOINT_NAMES and joints_k3.shape == (13, 3) and names[0] == "pelvis"
    np.testing.assert_allclose(joints_k3[0], joints_k3[[names.index("left_hip"), names.index("right_hip")]].mean(0))
    coco_names, coco_k3 = output_joints(body, body.skin(rest.coeffs_n, rest.heads_j3, G, o))
    hips, coco_hips = _width(names, joints_k3, "hip"), _width(coco_names, coco_k3, "hip")
    assert 0.2 < hips < 0.26 and 0.02 < hips - coco_hips < 0.04
    assert joints_k3[names.index("left_hip"), 0] > joints_k3[names.index("right_hip"), 0]  # the person's left: +x
    for name in names[1:]:
        if "hip" not in name:
            assert np.linalg.norm(joints_k3[names.index(name)] - coco_k3[coco_names.index(name)]) < 0.03, name


def test_body_fit_gives_joints_in_either_convention(fitter: BodyFitter, pipeline) -> None:  # noqa: ANN001
    """A fitted body (embedded backend) answers joints('coco') with its COCO joints and joints('h36m') with
    the posed skeleton joints, named as the COCO ones; an unknown convention is an error."""
    body = fitter.body
    local = _pose(body, {"upperarm01.L": [0.3, 0.2, -0.6], "lowerleg01.L": [0.8, 0, 0]}, root_turn=0.4)
    uv, x_hip, K, _ = _render(fitter, local, body.default_pheno(), np.array([0.1, 0.2, 3.5]), 1400.0)
    targets = FitTargets(FIT_NAMES, uv, np.ones(len(FIT_NAMES)), x_hip)
    report = pipeline.hmr.fitter.fit(targets, K, FitOptions())
    fit = pipeline.hmr.to_body_fit(report, targets)
    assert fit.joints("coco") is fit.joints3d_cam
    h36m = fit.joints("h36m")
    assert h36m.frame == "cam" and h36m.names == SKELETON_JOINT_NAMES
    np.testing.assert_allclose(h36m.xyz_k3, skeleton_joints(body, report.o_j3)[1])
    assert set(h36m.names[1:]) <= set(fit.joints3d_cam.names)
    coco = fit.joints3d_cam
    assert _width(h36m.names, h36m.xyz_k3, "hip") > _width(coco.names, coco.xyz_k3, "hip") + 0.015
    knee = h36m.names.index("left_knee")
    assert np.linalg.norm(h36m.xyz_k3[knee] - coco.xyz_k3[coco.names.index("left_knee")]) < 0.03
    with pytest.raises(ValueError, match="unknown joint convention"):
        fit.joints("mpii")  # type: ignore[arg-type]
