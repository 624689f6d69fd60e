"""Multi-view: Qualisys calibration, video frames, robust triangulation, and the 3D metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipelines.errors import UserFacingError
from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.metrics import mpjpe, pa_mpjpe, procrustes, root_distance_error, root_relative_mpjpe
from pipelines.multiview.calibration import (
    CalibratedCamera,
    distort_points,
    load_qualisys_calibration,
    make_camera,
    undistort_points,
)
from pipelines.multiview.triangulate import triangulate_points
from pipelines.multiview.video import read_frames


def _synthetic_points(n: int, seed: int = 0) -> np.ndarray:
    """Points in the volume where the person stands (world metres, z up)."""
    rng = np.random.default_rng(seed)
    return rng.uniform([-0.5, -0.5, 0.0], [0.5, 0.5, 1.8], size=(n, 3))


def _observe(cams: list[CalibratedCamera], xyz_n3: np.ndarray) -> np.ndarray:
    """Raw (distorted) pixels (views, N, 2) of world points in every camera."""
    return np.stack([distort_points(cam.project_world(xyz_n3), cam) for cam in cams])


# ---------------------------------------------------------------------------------------- calibration


def test_calibration_loads_four_plausible_cameras(cams: list[CalibratedCamera]) -> None:
    assert [c.name for c in cams] == ["cam01", "cam02", "cam03", "cam04"]
    for cam in cams:
        K_33 = cam.camera.K_33
        # The README quotes f ~ 1675-1682 px; cam02 is 1673.7 px (107118.7 / 64), hence the margin.
        assert 1670 < K_33[0, 0] < 1685 and 1670 < K_33[1, 1] < 1685
        assert 510 < K_33[0, 2] < 545 and 945 < K_33[1, 2] < 967
        assert (cam.camera.width, cam.camera.height) == (1088, 1920)
        assert cam.camera.source == "user" and cam.camera.name == cam.name
        R_33 = cam.cam_T_world_44[:3, :3]
        np.testing.assert_allclose(R_33 @ R_33.T, np.eye(3), atol=1e-6)
        assert np.linalg.det(R_33) == pytest.approx(1.0, abs=1e-6)
        np.testing.assert_allclose(cam.camera.world_T_cam @ cam.cam_T_world_44, np.eye(4), atol=1e-9)
        assert 2.5 < np.linalg.norm(cam.centre_world_3) < 6.0
        assert cam.centre_world_3[2] > 1.0  # cameras on tripods, world z up
        # Every camera looks at the origin: in front of it and inside the image.
        origin_cam = cam.cam_T_world_44 @ np.array([0.0, 0.0, 0.0, 1.0])
        assert origin_cam[2] > 2.0
        u, v = cam.project_world(np.zeros((1, 3)))[0]
        assert 0 < u < cam.camera.width and 0 < v < cam.camera.height
        assert cam.dist_k.shape == (5,) and cam.dist_k[0] < 0 < cam.dist_k[1]  # k1, k2 first (OpenCV)


def test_undistort_inverts_distort(cams: list[CalibratedCamera]) -> None:
    rng = np.random.default_rng(3)
    xy_n2 = rng.uniform([50, 50], [1030, 1870], size=(20, 2))
    for cam in cams:
        distorted_n2 = distort_points(xy_n2, cam)
        assert np.abs(distorted_n2 - xy_n2).max() > 1.0  # the lens does something near the borders
        np.testing.assert_allclose(undistort_points(distorted_n2, cam), xy_n2, atol=1e-3)


def _write_calibration(tmp_path: Path, calib: Path, replace: tuple[str, str] | None = None) -> Path:
    text = calib.read_text()
    if replace is not None:
        assert replace[0] in text
        text = text.replace(replace[0], replace[1], 1)
    path = tmp_path / "bad.qca.txt"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        (("r11=", "q11="), r"has no 'r11' for camera cam01"),
        (('r11="0.5536380477336265"', 'r11="1.5"'), r"rotation matrix for camera cam01 that is not orth"),
        (('focalLengthU="107599.671875"', 'focalLengthU="-107599.6"'), r"focal length that is not positive"),
        (('x="1460.2323709212087"', 'x="far"'), r"non-numeric 'x'"),
        (("<intrinsic ", "<intrinsics "), r"has no <intrinsic> element for camera cam01"),
    ],
)
def test_bad_calibration_fields_are_user_facing(
    tmp_path: Path, single_dir: Path, replace: tuple[str, str], message: str
) -> None:
    with pytest.raises(UserFacingError, match=message) as info:
        load_qualisys_calibration(_write_calibration(tmp_path, single_dir / "Calib.qca.txt", replace))
    assert str(info.value).startswith("The calibration file bad.qca.txt ")


def test_bad_calibration_files_are_user_facing(tmp_path: Path) -> None:
    with pytest.raises(UserFacingError, match="does not exist"):
        load_qualisys_calibration(tmp_path / "missing.qca.txt")
    not_xml = tmp_path / "notes.txt"
    not_xml.write_text("cam01 f=1680 cx=540 cy=960\n")
    with pytest.raises(UserFacingError, match="is not a valid Qualisys XML file"):
        load_qualisys_calibration(not_xml)
    empty = tmp_path / "empty.qca.txt"
    empty.write_text("<calibration><cameras/></calibration>")
    with pytest.raises(UserFacingError, match="describes no camera"):
        load_qualisys_calibration(empty)


# -------------------------------------------------------------------------------------- triangulation


def test_triangulation_recovers_synthetic_points(cams: list[CalibratedCamera]) -> None:
    xyz_n3 = _synthetic_points(30)
    conf_vn = np.random.default_rng(1).uniform(0.5, 1.0, size=(len(cams), len(xyz_n3)))
    result = triangulate_points(_observe(cams, xyz_n3), conf_vn, cams)
    assert np.abs(result.xyz_n3 - xyz_n3).max() < 1e-6
    assert result.used_vn.all()
    assert np.nanmax(result.reproj_px_vn) < 1e-3
    # Without the non-linear refinement the DLT alone is exact on noise-free data too.
    linear = triangulate_points(_observe(cams, xyz_n3), conf_vn, cams, refine=False)
    assert np.abs(linear.xyz_n3 - xyz_n3).max() < 1e-6


def test_triangulation_ignores_one_corrupted_view(cams: list[CalibratedCamera]) -> None:
    xyz_n3 = _synthetic_points(40, seed=2)
    xy_vn2 = _observe(cams, xyz_n3)
    rng = np.random.default_rng(4)
    bad_view_n = rng.integers(0, len(cams), size=len(xyz_n3))  # a different view is wrong per point
    xy_vn2[bad_view_n, np.arange(len(xyz_n3))] += rng.uniform(150, 400, size=(len(xyz_n3), 2))
    conf_vn = np.ones((len(cams), len(xyz_n3)))
    result = triangulate_points(xy_vn2, conf_vn, cams)
    assert np.abs(result.xyz_n3 - xyz_n3).max() < 1e-6
    assert not result.used_vn[bad_view_n, np.arange(len(xyz_n3))].any()
    assert result.used_vn.sum() == 3 * len(xyz_n3)
    assert (result.reproj_px_vn[bad_view_n, np.arange(len(xyz_n3))] > 100).all()
    # The plain least-squares solution is pulled away by the corrupted views.
    naive = triangulate_points(xy_vn2, conf_vn, cams, outlier_px=np.inf)
    assert np.abs(naive.xyz_n3 - xyz_n3).max() > 0.01


def test_triangulation_minimises_the_weighted_reprojection_error(cams: list[CalibratedCamera]) -> None:
    """On noisy views every point is the confidence-weighted least-squares optimum: moving it 0.1 mm along
    any axis raises the cost, which the linear (DLT) solution alone does not achieve."""
    xyz_n3 = _synthetic_points(200, seed=7)
    rng = np.random.default_rng(8)
    xy_vn2 = np.stack([cam.project_world(xyz_n3) for cam in cams]) + rng.normal(0.0, 3.0, (len(cams), 200, 2))
    conf_vn = rng.uniform(0.3, 1.0, size=(len(cams), 200))

    def cost_n(p_n3: np.ndarray) -> np.ndarray:
        proj_vn2 = np.stack([cam.project_world(p_n3) for cam in cams])
        return (conf_vn * ((proj_vn2 - xy_vn2) ** 2).sum(-1)).sum(0)

    def optimal_n(p_n3: np.ndarray) -> np.ndarray:
        steps = np.concatenate([np.eye(3), -np.eye(3)]) * 1e-4
        return np.all([cost_n(p_n3 + d) >= cost_n(p_n3) - 1e-9 for d in steps], axis=0)

    refined = triangulate_points(xy_vn2, conf_vn, cams, distorted=False, outlier_px=np.inf)
    linear = triangulate_points(xy_vn2, conf_vn, cams, distorted=False, outlier_px=np.inf, refine=False)
    assert optimal_n(refined.xyz_n3).all()
    assert not optimal_n(linear.xyz_n3).all()
    assert np.abs(refined.xyz_n3 - xyz_n3).max() < 0.05  # 3 px of noise, cameras ~3.5 m away


def test_triangulation_needs_two_views(cams: list[CalibratedCamera]) -> None:
    xyz_n3 = _synthetic_points(3, seed=5)
    xy_vn2 = _observe(cams, xyz_n3)
    conf_vn = np.ones((len(cams), 3))
    xy_vn2[:3, 0] = np.nan  # point 0: seen by one view only
    conf_vn[1:, 1] = 0.0  # point 1: confident in one view only
    result = triangulate_points(xy_vn2, conf_vn, cams)
    assert result.valid_n.tolist() == [False, False, True]
    assert np.isnan(result.xyz_n3[:2]).all() and not result.used_vn[:, :2].any()
    with pytest.raises(ValueError, match="shapes disagree"):
        triangulate_points(xy_vn2[:2], conf_vn, cams)


@pytest.fixture(scope="module")
def first_frame_people(cams: list[CalibratedCamera], single_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """BlazePose 2D keypoints (views, 33, 2) and confidences (views, 33) on frame 0 of every video."""
    from pipelines.registry import BackendUnavailable, create

    try:
        segmenter = create("segmentation", "embedded")
    except BackendUnavailable as err:
        pytest.skip(f"segmentation backend unavailable: {err}")
    xy_vn2 = np.full((len(cams), len(BLAZEPOSE_NAMES), 2), np.nan)
    conf_vn = np.zeros((len(cams), len(BLAZEPOSE_NAMES)))
    for v, cam in enumerate(cams):
        [(_, rgb_hw3)] = list(read_frames(single_dir / f"{cam.name}.mp4", [0]))
        people = segmenter.detect(rgb_hw3)
        assert people, f"nobody found in {cam.name}"
        kp2d = people[0].keypoints2d
        index = [kp2d.names.index(n) for n in BLAZEPOSE_NAMES]
        xy_vn2[v], conf_vn[v] = kp2d.xy_k2[index], kp2d.conf_k[index]
    return xy_vn2, conf_vn


def test_real_person_triangulates_plausibly(
    cams: list[CalibratedCamera], first_frame_people: tuple[np.ndarray, np.ndarray]
) -> None:
    xy_vn2, conf_vn = first_frame_people
    result = triangulate_points(xy_vn2, conf_vn, cams)
    assert result.median_reproj_px() < 25.0
    joint = {n: result.xyz_n3[i] for i, n in enumerate(BLAZEPOSE_NAMES)}
    body = ["left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_knee", "right_knee"]
    assert all(np.isfinite(joint[n]).all() for n in body)
    mid_hip_3 = (joint["left_hip"] + joint["right_hip"]) / 2
    for cam in cams:
        assert 2.5 < np.linalg.norm(mid_hip_3 - cam.centre_world_3) < 4.5, cam.name
        xyz_cam_n3 = result.xyz_n3[result.valid_n] @ cam.cam_T_world_44[:3, :3].T + cam.cam_T_world_44[:3, 3]
        assert (xyz_cam_n3[:, 2] > 2.0).all(), cam.name  # in front of every camera
    assert 0.25 < np.linalg.norm(joint["left_shoulder"] - joint["right_shoulder"]) < 0.55
    assert joint["nose"][2] > joint["left_knee"][2] > joint["left_ankle"][2]  # world z is up


# -------------------------------------------------------------------------------------------- video


def test_read_frames_decodes_only_wanted_frames(single_dir: Path) -> None:
    frames = list(read_frames(single_dir / "cam03.mp4", [2, 0]))
    assert [i for i, _ in frames] == [0, 2]
    rgb_hw3 = frames[0][1]
    assert rgb_hw3.dtype == np.uint8 and rgb_hw3.shape == (1920, 1088, 3)
    assert not np.array_equal(frames[0][1], frames[1][1])


def test_read_frames_rejects_bad_videos(tmp_path: Path) -> None:
    with pytest.raises(UserFacingError, match="does not exist"):
        next(read_frames(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(UserFacingError, match="junk.mp4"):
        next(read_frames(junk))


# ------------------------------------------------------------------------------------------ metrics


def test_pa_mpjpe_ignores_similarity_transforms() -> None:
    ref_k3 = np.random.default_rng(0).normal(size=(12, 3)) * 0.3
    R_33 = Rotation.from_euler("xyz", [30, -50, 100], degrees=True).as_matrix()
    pred_k3 = 1.7 * ref_k3 @ R_33.T + np.array([0.5, -1.0, 3.0])
    assert pa_mpjpe(pred_k3, ref_k3) < 1e-9
    similarity = procrustes(pred_k3, ref_k3)
    assert similarity.scale == pytest.approx(1 / 1.7)
    np.testing.assert_allclose(similarity.apply(pred_k3), ref_k3, atol=1e-9)
    # Without scale, a scaled copy keeps an error; a mirror image is not a rotation.
    assert pa_mpjpe(pred_k3, ref_k3, with_scale=False) > 0.05
    assert pa_mpjpe(ref_k3 * np.array([-1.0, 1.0, 1.0]), ref_k3) > 0.01


def test_mpjpe_and_root_metrics() -> None:
    ref_k3 = np.random.default_rng(1).normal(size=(12, 3))
    offset_3 = np.array([0.03, -0.04, 0.0])  # 50 mm
    assert mpjpe(ref_k3 + offset_3, ref_k3) == pytest.approx(0.05)
    assert root_relative_mpjpe(ref_k3 + offset_3, ref_k3, [6, 7]) == pytest.approx(0.0, abs=1e-12)
    root_3 = np.array([0.0, 0.3, 4.0])
    assert root_distance_error(root_3 * 1.1, root_3) == pytest.approx(0.1)
    assert root_distance_error(root_3 * 0.8, root_3) == pytest.approx(-0.2)


# ------------------------------------------------------------------------------ bundle adjustment, DLT


def test_dlt_is_the_homogeneous_least_squares_solution(cams: list[CalibratedCamera]) -> None:
    from pipelines.multiview.triangulate import _dlt, _normalised

    rng = np.random.default_rng(3)
    xyz_n3 = _synthetic_points(400, seed=3)
    xy_vn2 = np.stack([cam.project_world(xyz_n3) for cam in cams]) + rng.normal(0, 3.0, (len(cams), 400, 2))
    w_vn = rng.uniform(0.3, 1.0, (len(cams), 400))
    w_vn[2:, :100] = 0.0  # two views only
    Rt_v34 = np.stack([cam.cam_T_world_44[:3] for cam in cams])
    xn_vn2 = _normalised(xy_vn2, cams)
    # the definition: the unit vector minimising |A h| (A's right singular vector of the smallest singular value)
    rows_x = xn_vn2[..., 0:1] * Rt_v34[:, None, 2] - Rt_v34[:, None, 0]
    rows_y = xn_vn2[..., 1:2] * Rt_v34[:, None, 2] - Rt_v34[:, None, 1]
    A_nr4 = (np.stack([rows_x, rows_y], 2) * w_vn[..., None, None]).transpose(1, 0, 2, 3).reshape(400, -1, 4)
    h_n4 = np.linalg.svd(A_nr4)[2][:, -1]
    np.testing.assert_allclose(_dlt(xn_vn2, w_vn, Rt_v34), h_n4[:, :3] / h_n4[:, 3:], atol=1e-6)


def _moved(cam: CalibratedCamera, deg: float, metres: float) -> CalibratedCamera:
    T = cam.cam_T_world_44.copy()
    T[:3, :3] = Rotation.from_rotvec(np.radians(deg) * np.array([0.6, 0.8, 0.0])).as_matrix() @ T[:3, :3]
    T[:3, 3] += np.array([0.0, metres, 0.0])
    return make_camera(cam.name, cam.camera.K_33, cam.dist_k, T, cam.camera.width, cam.camera.height)


def test_bundle_adjustment_moves_a_perturbed_camera_back(cams: list[CalibratedCamera]) -> None:
    from pipelines.multiview.refine import bundle_adjust

    rng = np.random.default_rng(5)
    xyz_n3 = _synthetic_points(200, seed=5)
    n_v, n_p = len(cams), len(xyz_n3)
    view_m, point_m = np.repeat(np.arange(n_v), n_p), np.tile(np.arange(n_p), n_v)
    xy_m2 = np.concatenate([cam.project_world(xyz_n3) for cam in cams]) + rng.normal(0, 1.0, (n_v * n_p, 2))
    xy_m2[::25] += 40.0  # gross outliers: the robust loss keeps them from pulling
    wrong = list(cams)
    wrong[1] = _moved(cams[1], 2.0, 0.04)
    start_n3 = triangulate_points(xy_m2.reshape(n_v, n_p, 2), np.ones((n_v, n_p)), wrong, distorted=False).xyz_n3
    outs = {solver: bundle_adjust(start_n3, view_m, point_m, xy_m2, np.ones(n_v * n_p), wrong, solver=solver)
            for solver in ("schur", "scipy")}  # fmt: skip
    for out in outs.values():
        assert out.median_px_before > 5.0 and out.median_px_after < 1.5  # the 1 px noise
        assert int(np.argmax(out.rotation_change_deg_v)) == 1 and out.rotation_change_deg_v[1] > 1.0
        for v in (0, 2, 3):  # the rig's relative rotations as they were (the gauge: the world may turn as a whole)
            rel_true = cams[1].cam_T_world_44[:3, :3] @ cams[v].cam_T_world_44[:3, :3].T
            rel = out.cams[1].cam_T_world_44[:3, :3] @ out.cams[v].cam_T_world_44[:3, :3].T
            assert np.degrees(Rotation.from_matrix(rel @ rel_true.T).magnitude()) < 0.25  # of the 2 degrees
        d = [np.linalg.norm(c[0].centre_world_3 - c[2].centre_world_3) for c in (cams, out.cams)]
        assert abs(d[1] / d[0] - 1) < 0.01  # the metric scale kept
    # the Schur-complement solver reaches scipy's least_squares' optimum (the same robust cost)
    schur, ref = outs["schur"], outs["scipy"]
    np.testing.assert_allclose(schur.rotation_change_deg_v, ref.rotation_change_deg_v, atol=0.01)
    np.testing.assert_allclose(schur.translation_change_m_v, ref.translation_change_m_v, atol=1e-3)
    assert abs(schur.median_px_after - ref.median_px_after) < 0.01


def test_bundle_adjustment_falls_back_to_scipy_on_a_singular_system(cams: list[CalibratedCamera], monkeypatch) -> None:  # noqa: ANN001
    """A singular reduced camera system in the Schur solver still gives the refined cameras (scipy's)."""
    from pipelines.multiview import refine

    def singular(*args: object, **kwargs: object) -> np.ndarray:
        raise np.linalg.LinAlgError("Singular matrix")

    xyz_n3 = _synthetic_points(100, seed=6)
    n_v, n_p = len(cams), len(xyz_n3)
    view_m, point_m = np.repeat(np.arange(n_v), n_p), np.tile(np.arange(n_p), n_v)
    xy_m2 = np.concatenate([cam.project_world(xyz_n3) for cam in cams])
    wrong = list(cams)
    wrong[2] = _moved(cams[2], 1.5, 0.03)
    start_n3 = triangulate_points(xy_m2.reshape(n_v, n_p, 2), np.ones((n_v, n_p)), wrong, distorted=False).xyz_n3
    monkeypatch.setattr(refine, "schur_lm", singular)
    out = refine.bundle_adjust(start_n3, view_m, point_m, xy_m2, np.ones(n_v * n_p), wrong, solver="schur")
    assert out.median_px_before > 3.0 and out.median_px_after < 0.5
    assert int(np.argmax(out.rotation_change_deg_v)) == 2 and out.rotation_change_deg_v[2] > 1.0


# ---------------------------------------------------------------------------------------- time offsets


def _moving_person(cams: list[CalibratedCamera], n_f: int, n_k: int, offsets_v: list[int], seed: int):  # noqa: ANN202
    """One person's keypoints (views, F, K, 2) in undistorted pixels and confidences (views, F, K): joints
    swaying smoothly, view v late by offsets_v[v] frames (sync.py's convention), 0.5 px noise, 5% unseen."""
    rng = np.random.default_rng(seed)
    t_f11 = np.arange(n_f + 20)[:, None, None] / 30.0
    base = rng.uniform([-0.4, -0.4, 0.1], [0.4, 0.4, 1.7], (1, n_k, 3))
    amp, freq, phase = (rng.uniform(lo, hi, (1, n_k, 3)) for lo, hi in ((0.05, 0.3), (0.3, 2.0), (0.0, 6.0)))
    xyz_fk3 = base + amp * np.sin(2 * np.pi * freq * t_f11 + phase)
    xy_vfk2 = np.stack([cam.project_world(xyz_fk3.reshape(-1, 3)).reshape(n_f + 20, n_k, 2)[10 - o : 10 - o + n_f]
                        for cam, o in zip(cams, offsets_v, strict=True)])  # fmt: skip
    xy_vfk2 += rng.normal(0, 0.5, xy_vfk2.shape)
    xy_vfk2[rng.random(xy_vfk2.shape[:-1]) < 0.05] = np.nan
    return xy_vfk2, rng.uniform(0.3, 1.0, xy_vfk2.shape[:-1])


def _offset_costs_all_at_once(xy_pvfk2, conf_pvfk, cams, offsets_v, view, candidates):  # noqa: ANN001, ANN202
    """The former offset_costs (every candidate over every frame at once), the reference for its results."""
    from pipelines.multiview.associate import MIN_CONF, fundamental_33
    from pipelines.multiview.sync import shift_frames

    F = {u: fundamental_33(cams[view], cams[u]) for u in range(len(cams)) if u != view}
    out = np.full(len(candidates), np.inf)
    dist_c: list[list[np.ndarray]] = [[] for _ in candidates]
    for xy_vfk2, conf_vfk in zip(xy_pvfk2, conf_pvfk, strict=True):
        xa = np.stack([shift_frames(xy_vfk2[view], d, np.nan) for d in candidates])
        ok_a = np.stack([shift_frames(conf_vfk[view], d, 0.0) for d in candidates]) > MIN_CONF
        ok_a &= np.isfinite(xa).all(-1)
        ha = np.concatenate([np.nan_to_num(xa), np.ones((*xa.shape[:-1], 1))], axis=-1)
        for u in F:
            xb = shift_frames(xy_vfk2[u], float(offsets_v[u]), np.nan)
            ok = ok_a & ((shift_frames(conf_vfk[u], float(offsets_v[u]), 0.0) > MIN_CONF) & np.isfinite(xb).all(-1))
            hb = np.concatenate([np.nan_to_num(xb), np.ones((*xb.shape[:-1], 1))], axis=-1)
            lb, la = ha @ F[u].T, hb @ F[u]
            num = np.abs(np.sum(hb * lb, axis=-1))
            with np.errstate(divide="ignore", invalid="ignore"):
                d_cfk = 0.5 * (num / np.hypot(lb[..., 0], lb[..., 1]) + num / np.hypot(la[..., 0], la[..., 1]))
            for c in range(len(candidates)):
                dist_c[c].append(d_cfk[c][ok[c]])
    for c, dists in enumerate(dist_c):
        all_d = np.concatenate(dists)
        if len(all_d) >= 20:
            out[c] = float(np.median(all_d))
    return out


def test_offset_costs_equal_the_all_at_once_costs(cams: list[CalibratedCamera]) -> None:
    """Candidate groups and frame blocks (sync.CANDIDATE_FRAMES) give the very same costs, also with
    fractional offsets of the other views and captures longer than a block."""
    from pipelines.multiview import sync

    people = [_moving_person(cams, n_f, 13, [0, 2, -1, 3], seed) for seed, n_f in ((1, 700), (2, 700))]
    xy_p, conf_p = [p[0] for p in people], [p[1] for p in people]
    assert sync.CANDIDATE_FRAMES < 700 * 13
    for offsets_v in (np.zeros(4), np.array([0.0, 2.3, -1.0, 2.6])):
        for view in range(4):
            costs = sync.offset_costs(xy_p, conf_p, cams, offsets_v, view, range(-6, 7))
            np.testing.assert_array_equal(costs, _offset_costs_all_at_once(xy_p, conf_p, cams, offsets_v, view,
                                                                           range(-6, 7)))  # fmt: skip


def test_offset_costs_memory_stays_bounded_on_a_long_capture(cams: list[CalibratedCamera]) -> None:
    """20k frames (11 min at 30 fps): the temporaries stay under the keypoints' own size (the all-at-once
    version peaked at ~28 times it, 0.6 GB here, 1.2 GB with 33 joints)."""
    import tracemalloc

    from pipelines.multiview.sync import offset_costs

    xy_vfk2, conf_vfk = _moving_person(cams, 20_000, 17, [0, 2, -1, 3], seed=3)
    tracemalloc.start()
    try:
        costs = offset_costs([xy_vfk2], [conf_vfk], cams, np.array([0.0, 2.0, -1.0, 3.0]), 1, range(-6, 7))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < xy_vfk2.nbytes, f"peak {peak / 1e6:.0f} MB for {xy_vfk2.nbytes / 1e6:.0f} MB of keypoints"
    assert int(np.argmin(costs)) == 8  # the true offset, 2


def test_bundle_adjustment_holds_a_camera_that_sees_nearly_one_point(cams: list[CalibratedCamera]) -> None:
    """One camera whose 40 observations all see one spot (a 5 mm cluster) cannot be pinned: it is held as
    calibrated and named in the warnings, and the rig still comes back (before, it drifted and took the
    gauge with it: every camera turned by ~1-13 degrees and moved by up to a metre)."""
    from pipelines.multiview.refine import bundle_adjust

    rng = np.random.default_rng(7)
    xyz_n3 = _synthetic_points(200, seed=7)
    xyz_n3[:40] = xyz_n3[0] + rng.normal(0, 0.005, (40, 3))
    seen_v = [np.arange(200)] * 3 + [np.arange(40)]  # cam04 sees only the cluster
    view_m = np.concatenate([np.full(len(p), v) for v, p in enumerate(seen_v)])
    point_m = np.concatenate(seen_v)
    xy_m2 = np.concatenate([cam.project_world(xyz_n3[p]) for cam, p in zip(cams, seen_v, strict=True)])
    xy_m2 += rng.normal(0, 1.0, xy_m2.shape)
    w_vn = np.zeros((4, 200))
    w_vn[view_m, point_m] = 1.0
    xy_vn2 = np.zeros((4, 200, 2))
    xy_vn2[view_m, point_m] = xy_m2
    wrong = list(cams)
    wrong[1] = _moved(cams[1], 2.0, 0.04)
    start_n3 = triangulate_points(xy_vn2, w_vn, wrong, distorted=False).xyz_n3
    for solver in ("schur", "scipy"):
        out = bundle_adjust(start_n3, view_m, point_m, xy_m2, np.ones(len(view_m)), wrong, solver=solver)
        np.testing.assert_array_equal(out.cams[3].cam_T_world_44, cams[3].cam_T_world_44)
        assert out.median_px_after < 1.5 and out.rotation_change_deg_v[1] > 1.0
        for v in (0, 2):  # the refined cameras' relative rotations as they were
            rel_true = cams[1].cam_T_world_44[:3, :3] @ cams[v].cam_T_world_44[:3, :3].T
            rel = out.cams[1].cam_T_world_44[:3, :3] @ out.cams[v].cam_T_world_44[:3, :3].T
            assert np.degrees(Rotation.from_matrix(rel @ rel_true.T).magnitude()) < 0.25
        assert max(out.rotation_change_deg_v[[0, 2]]) < 1.0 and max(out.translation_change_m_v[:3]) < 0.1
        assert out.held_v is not None and out.held_v.tolist() == [False, False, False, True]
        assert len(out.warnings) == 1 and "cam04" in out.warnings[0]


# ---------------------------------------------------------------------------------------- skeleton check


def test_bone_check_leaves_out_the_wrong_joint_only(cams: list[CalibratedCamera]) -> None:
    """A wrong elbow goes without the right wrist beyond it (before, the wrist's only bone, implausible
    through the elbow, took it too); a wrong wrist goes alone; a wrong elbow with a wrist off its own track,
    a wrong knee with a wrong ankle: both go."""
    from pipelines.multiview.fuse import FUSED_JOINT_NAMES, consistent_bones
    from pipelines.multiview.triangulate import TriangulationResult

    joint_xz = {"shoulder": (0.2, 1.4), "elbow": (0.22, 1.1), "wrist": (0.24, 0.85), "hip": (0.12, 0.95),
                "knee": (0.12, 0.5), "ankle": (0.12, 0.08)}  # fmt: skip
    n_f, n_k, n_v = 12, len(FUSED_JOINT_NAMES), len(cams)
    xyz_k3 = np.zeros((n_k, 3))
    for k, name in enumerate(FUSED_JOINT_NAMES):
        side, _, part = name.partition("_")
        x, z = joint_xz.get(part, (0.0, 1.6))
        xyz_k3[k] = (-x if side == "right" else x, 0.0, z)
    xyz_fk3 = xyz_k3 + np.linspace(0, 0.5, n_f)[:, None, None] * np.array([0.0, 1.0, 0.0])  # walking along y
    j = {name: FUSED_JOINT_NAMES.index(name) for name in FUSED_JOINT_NAMES}
    xyz_fk3[3, j["left_elbow"], 0] += 0.4
    xyz_fk3[6, j["right_wrist"], 0] -= 0.4
    xyz_fk3[7, j["left_elbow"], 0] += 0.4
    xyz_fk3[7, j["left_wrist"], 0] += 0.15  # within the arm's reach of the shoulder, off its track
    xyz_fk3[9, j["left_knee"], 0] += 0.5
    xyz_fk3[9, j["left_ankle"], 0] += 1.5
    res = TriangulationResult(xyz_fk3.reshape(-1, 3), np.zeros((n_v, n_f * n_k)), np.ones((n_v, n_f * n_k), bool))
    no_views = np.zeros((n_v, n_f, n_k))  # nothing to triangulate again from: only the leaving out acts
    out, check = consistent_bones(res, np.zeros((n_v, n_f, n_k, 2)), no_views, cams, 10.0, 0.3, 0.05)
    gone_fk = np.isnan(out.xyz_n3.reshape(n_f, n_k, 3)).any(-1)
    assert {(int(f), FUSED_JOINT_NAMES[k]) for f, k in zip(*np.nonzero(gone_fk), strict=True)} == {
        (3, "left_elbow"), (6, "right_wrist"), (7, "left_elbow"), (7, "left_wrist"), (9, "left_knee"),
        (9, "left_ankle")}  # fmt: skip
    assert check.dropped == 6 and not out.used_vn.reshape(n_v, n_f, n_k)[:, gone_fk].any()


# ---------------------------------------------------------------------------------------- keypoint scheduling


@pytest.mark.parametrize("span", [2, 3, 4])
def test_frame_detections_runs_the_model_once_a_span_also_at_the_end(span: int) -> None:
    """Every frame comes out once, in order, with its people; the frames a skipping detector may skip go to
    one detect_span call with the frame after them, and the last frames of the clip to one call too (their
    last as the following frame), so the model runs on ceil(n / span) frames."""
    from types import SimpleNamespace

    from pipelines.multiview.views2d import _frame_detections

    class Skipping:
        def __init__(self) -> None:
            self.model_frames: list[int] = []

        def can_skip(self, pending: int = 0) -> bool:
            return pending < span - 1

        def detect(self, rgb: int) -> list[int]:
            self.model_frames.append(rgb)
            return [rgb]

        def detect_span(self, skipped: list[int], following: int) -> tuple[list[list[int]], list[int]]:
            return [[s] for s in skipped], self.detect(following)

    for n in range(1, 3 * span + 2):
        detector = Skipping()
        out = [(f.rgb_hw3, people) for f, people in _frame_detections([SimpleNamespace(rgb_hw3=i) for i in range(n)],
                                                                         detector)]  # fmt: skip
        assert out == [(i, [i]) for i in range(n)]
        assert detector.model_frames == sorted({min(i + span - 1, n - 1) for i in range(0, n, span)})


# ---------------------------------------------------------------------------------------- forked body fits


def _fake_people(monkeypatch, fit):  # noqa: ANN001, ANN202
    """fit_bodies over three fake people with `fit` as fit_person (no body model): its arguments."""
    from types import SimpleNamespace

    import pipelines.multiview.body_fit as body_fit

    monkeypatch.setattr(body_fit, "fit_person", fit)
    people = [SimpleNamespace(id=i, frames_ok=np.ones(10 + i, bool)) for i in range(3)]
    return SimpleNamespace(people=people, cams=[]), SimpleNamespace(fitter=None, options=None)


needs_fork = pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                                reason="no fork here")  # fmt: skip


@needs_fork
def test_forked_body_fit_that_cannot_start_leaves_its_people_to_this_process(monkeypatch) -> None:  # noqa: ANN001
    """A fork that fails (no memory for it, too many processes) is no error: its people are fitted here."""
    import multiprocessing.context

    import pipelines.multiview.body_fit as body_fit

    fusion, hmr = _fake_people(monkeypatch, lambda fitter, person, *a: ("body", person.id, __import__("os").getpid()))

    def no_fork(self) -> None:  # noqa: ANN001
        raise OSError(12, "Cannot allocate memory")

    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start", no_fork)
    out = body_fit.fit_bodies(fusion, body_fit.BodyOptions(processes=3), hmr=hmr)
    assert [b[:2] for b in out] == [("body", 0), ("body", 1), ("body", 2)]


@needs_fork
def test_forked_body_fit_that_dies_mid_message_leaves_its_people_to_this_process(monkeypatch) -> None:  # noqa: ANN001
    """A child killed while it sends (the OOM killer, say) leaves a truncated message: its people are fitted
    here, no error."""
    import os
    import struct

    import pipelines.multiview.body_fit as body_fit

    fusion, hmr = _fake_people(monkeypatch, lambda fitter, person, *a: ("body", person.id))

    def truncated(conn, indices, work) -> None:  # noqa: ANN001
        os.write(conn.fileno(), struct.pack("!i", 1000) + b"abc")
        os._exit(1)

    monkeypatch.setattr(body_fit, "_forked_fit", truncated)
    out = body_fit.fit_bodies(fusion, body_fit.BodyOptions(processes=2), hmr=hmr)
    assert out == [("body", 0), ("body", 1), ("body", 2)]


@needs_fork
def test_forked_body_fit_ignores_ctrl_c_which_this_process_handles(monkeypatch) -> None:  # noqa: ANN001
    """Ctrl-C reaches the whole process group: a child neither dies of it with a traceback of its own nor
    leaves its people to be fitted again (this process, which kills its children on any exception, handles it)."""
    import os
    import signal

    import pipelines.multiview.body_fit as body_fit

    parent = os.getpid()

    def fit(fitter, person, *a):  # noqa: ANN001, ANN202
        if os.getpid() != parent:
            os.kill(os.getpid(), signal.SIGINT)
        return ("body", person.id, os.getpid() == parent)

    fusion, hmr = _fake_people(monkeypatch, fit)
    out = body_fit.fit_bodies(fusion, body_fit.BodyOptions(processes=2), hmr=hmr)
    assert [b[:2] for b in out] == [("body", 0), ("body", 1), ("body", 2)]
    assert [b[2] for b in out] == [False, False, True]  # the child's people (the two smaller) from the child


def test_people_are_fitted_one_after_the_other_where_the_platform_is_not_linux(monkeypatch) -> None:  # noqa: ANN001
    """macOS offers fork too, but forking after its system frameworks (Accelerate, the Objective-C runtime)
    are loaded may crash or hang the child: only Linux forks (BodyOptions.processes)."""
    import pipelines.multiview.body_fit as body_fit

    fusion, hmr = _fake_people(monkeypatch, lambda fitter, person, *a: ("body", person.id))
    monkeypatch.setattr(body_fit, "_fit_people_forked", lambda *a: pytest.fail("forked"))
    monkeypatch.setattr(body_fit.sys, "platform", "darwin")
    out = body_fit.fit_bodies(fusion, body_fit.BodyOptions(processes=2), hmr=hmr)
    assert out == [("body", 0), ("body", 1), ("body", 2)]


def test_bone_check_keeps_a_joint_its_track_vouches_for_beside_a_bone_never_seen(cams: list[CalibratedCamera]
                                                                                ) -> None:  # fmt: skip
    """A wrong hip goes; the knee below it, its other bone never seen (the ankles out of the picture the whole
    clip), stays where its own track vouches for it, as it does with the ankle seen."""
    from pipelines.multiview.fuse import FUSED_JOINT_NAMES, consistent_bones
    from pipelines.multiview.triangulate import TriangulationResult

    joint_xz = {"shoulder": (0.2, 1.4), "elbow": (0.22, 1.1), "wrist": (0.24, 0.85), "hip": (0.12, 0.95),
                "knee": (0.12, 0.5), "ankle": (0.12, 0.08)}  # fmt: skip
    n_f, n_k, n_v = 12, len(FUSED_JOINT_NAMES), len(cams)
    xyz_k3 = np.zeros((n_k, 3))
    for k, name in enumerate(FUSED_JOINT_NAMES):
        side, _, part = name.partition("_")
        x, z = joint_xz.get(part, (0.0, 1.6))
        xyz_k3[k] = (-x if side == "right" else x, 0.0, z)
    j = {name: FUSED_JOINT_NAMES.index(name) for name in FUSED_JOINT_NAMES}
    for ankle_seen in (True, False):
        xyz_fk3 = xyz_k3 + np.linspace(0, 0.5, n_f)[:, None, None] * np.array([0.0, 1.0, 0.0])
        xyz_fk3[5, j["left_hip"], 0] += 0.5
        if not ankle_seen:
            xyz_fk3[:, j["left_ankle"]] = np.nan
        res = TriangulationResult(xyz_fk3.reshape(-1, 3), np.zeros((n_v, n_f * n_k)),
                                  np.ones((n_v, n_f * n_k), bool))  # fmt: skip
        out, _ = consistent_bones(res, np.zeros((n_v, n_f, n_k, 2)), np.zeros((n_v, n_f, n_k)), cams, 10.0, 0.3, 0.05)
        gone_fk = np.isnan(out.xyz_n3.reshape(n_f, n_k, 3)).any(-1)
        if not ankle_seen:
            gone_fk[:, j["left_ankle"]] = False
        assert {(int(f), FUSED_JOINT_NAMES[k]) for f, k in zip(*np.nonzero(gone_fk), strict=True)} == {
            (5, "left_hip")}, ankle_seen


@needs_fork
def test_forked_body_fit_fits_its_own_people_while_another_run_forks_too(monkeypatch) -> None:  # noqa: ANN001
    """Two runs at once (the app's two heavy jobs are threads of one process): what a child fits is what its own
    run gave it, whatever the other run set up meanwhile (before, a module global read after the fork)."""
    import multiprocessing.context
    from types import SimpleNamespace

    import pipelines.multiview.body_fit as body_fit

    fusion, hmr = _fake_people(monkeypatch, lambda fitter, person, *a: ("body", person.id))
    others = [SimpleNamespace(id=100 + i, frames_ok=np.ones(10, bool)) for i in range(3)]
    real_start = multiprocessing.context.ForkProcess.start

    def start_as_another_run_sets_up(self) -> None:  # noqa: ANN001
        monkeypatch.setattr(body_fit, "_FORKED", (None, others, [], None, None, None), raising=False)
        real_start(self)

    monkeypatch.setattr(multiprocessing.context.ForkProcess, "start", start_as_another_run_sets_up)
    out = body_fit.fit_bodies(fusion, body_fit.BodyOptions(processes=2), hmr=hmr)
    assert out == [("body", 0), ("body", 1), ("body", 2)]


def _fit_three_fake_people() -> list:
    import pipelines.multiview.body_fit as body_fit

    fusion, hmr = _fake_people(pytest.MonkeyPatch(), lambda fitter, person, *a: ("body", person.id))
    return body_fit.fit_bodies(fusion, body_fit.BodyOptions(processes=2), hmr=hmr)


@needs_fork
def test_body_fit_in_a_daemonic_process_fits_its_people_itself() -> None:
    """A daemonic process (a multiprocessing.Pool's worker) may not have children: no fork there, no error."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(1) as pool:
        assert pool.apply(_fit_three_fake_people) == [("body", 0), ("body", 1), ("body", 2)]
