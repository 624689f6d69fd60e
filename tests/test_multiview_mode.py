"""Multi-view mode: fusion of real views, time offsets and camera refinement, calibration formats,
bad input, and the CLI's outputs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pipelines.errors import UserFacingError
from pipelines.io.video_io import probe
from pipelines.modes.multiview import MultiviewOptions, run_multiview
from pipelines.multiview.body_fit import BodyOptions
from pipelines.multiview.calibration import CalibratedCamera, distort_points, make_camera
from pipelines.multiview.formats import (
    load_calibration,
    save_opencv_yml,
    save_pose2sim_toml,
    save_project_json,
    save_qualisys,
)
from pipelines.multiview.fuse import FUSED_JOINT_NAMES, FuseOptions, fuse_views
from pipelines.multiview.triangulate import triangulate_points
from pipelines.multiview.views2d import ViewTracks, track_view
from tests.cli_helpers import error_lines, run_cli

N_FRAMES = 16
QUICK = FuseOptions(sync=False, refine=False)
"""Fusion without offsets and refinement: the bad-input tests check which views are used, not the accuracy."""


@pytest.fixture(scope="module")
def videos(single_dir: Path) -> list[Path]:
    return [single_dir / f"cam0{i}.mp4" for i in range(1, 5)]


@pytest.fixture(scope="module")
def real_views(videos: list[Path]) -> list[ViewTracks]:
    """Tracked 2D people of the first frames of each view (detected once per module)."""
    from pipelines.registry import create

    detector = create("segmentation", "embedded", single_pass=True, max_people=4)
    try:
        return [track_view(probe(v), v.stem, detector, n_frames=N_FRAMES, max_side=960) for v in videos]
    finally:
        detector.close()


@pytest.fixture(scope="module")
def real_fusion(real_views: list[ViewTracks], cams: list[CalibratedCamera]):  # noqa: ANN201 - FusionResult
    return fuse_views(real_views, cams, FuseOptions(), fps=60.0)


# ------------------------------------------------------------------------------------ real fusion


def test_real_views_fuse_below_plain_triangulation(real_fusion) -> None:  # noqa: ANN001
    r = real_fusion
    assert len(r.people) == 1 and sorted(r.people[0].members) == [0, 1, 2, 3]
    assert r.people[0].frames_ok.sum() >= N_FRAMES - 2  # a view shifted in time lacks the first or last frame
    # the given calibration is a few degrees off: ~13 px; refined cameras and offsets bring it down
    assert r.plain_median_reproj_px > 9.0
    assert r.median_reproj_px < 6.5 and r.median_reproj_px < 0.6 * r.plain_median_reproj_px
    assert r.inlier_share > 0.8
    assert np.all(np.abs(r.offsets_v) <= 3)
    assert r.refine is not None and np.all(r.refine.rotation_change_deg_v < 5.0)


def test_real_person_height_and_world_frame(real_fusion, cams: list[CalibratedCamera]) -> None:  # noqa: ANN001
    person = real_fusion.people[0]
    assert 1.55 < person.height_m < 1.95  # the dancer is ~1.70-1.76 m
    j = {n: person.joints_fk3[person.frames_ok, i] for i, n in enumerate(FUSED_JOINT_NAMES)}
    assert np.all(j["nose"][:, 2] > j["left_knee"][:, 2])  # world z up
    assert np.all(j["left_knee"][:, 2] > j["left_ankle"][:, 2])
    for cam in cams:
        assert 2.5 < np.linalg.norm(j["left_hip"].mean(0) - cam.centre_world_3) < 4.5


def _forearm_m(joints_fk3: np.ndarray) -> np.ndarray:
    e, w = FUSED_JOINT_NAMES.index("left_elbow"), FUSED_JOINT_NAMES.index("left_wrist")
    return np.linalg.norm(joints_fk3[:, w] - joints_fk3[:, e], axis=-1)


def test_two_views_agreeing_on_an_impossible_wrist_are_rejected(real_views: list[ViewTracks],
                                                                 cams: list[CalibratedCamera]) -> None:  # fmt: skip
    """Two of the four views put the left wrist 0.3 m farther along the forearm on 4 of the 16 frames (they
    agree with each other, so the pair consensus keeps them when the others are not clearly better): the skeleton
    check finds the forearm 2x too long against the person's own median over the sequence, triangulates the wrist
    again from the views that give it a plausible length, and the perturbed views are no longer its inliers."""

    from pipelines.keypoints.names import BLAZEPOSE_NAMES

    ref = fuse_views(real_views, cams, QUICK, fps=60.0).people[0]
    e, w = FUSED_JOINT_NAMES.index("left_elbow"), FUSED_JOINT_NAMES.index("left_wrist")
    frames = [f for f in range(2, 15, 3) if np.isfinite(ref.joints_fk3[f, [e, w]]).all()][:4]
    views = [dataclasses.replace(v, xy_tfk2=v.xy_tfk2.copy()) for v in real_views]
    bad_views = (0, 1)
    for f in frames:
        elbow, wrist = ref.joints_fk3[f, e], ref.joints_fk3[f, w]
        far = wrist + 0.3 * (wrist - elbow) / np.linalg.norm(wrist - elbow)
        for v in bad_views:
            for row in ref.members[v]:
                views[v].xy_tfk2[row, f, BLAZEPOSE_NAMES.index("left_wrist")] = distort_points(
                    cams[v].project_world(far[None]), cams[v])[0]  # fmt: skip
    median_m = float(np.nanmedian(_forearm_m(ref.joints_fk3)))
    off = fuse_views(views, cams, dataclasses.replace(QUICK, bone_tolerance=0.0), fps=60.0).people[0]
    on = fuse_views(views, cams, QUICK, fps=60.0).people[0]
    gap_off = np.linalg.norm(off.joints_fk3[frames, w] - ref.joints_fk3[frames, w], axis=-1)
    assert np.median(gap_off) > 0.1, gap_off  # without the check the agreeing pair wins on some frames
    gap_on = np.linalg.norm(on.joints_fk3[frames, w] - ref.joints_fk3[frames, w], axis=-1)
    kept = np.isfinite(gap_on)
    assert kept.sum() >= len(frames) - 1 and np.all(gap_on[kept] < 0.05), gap_on  # metres
    forearm = _forearm_m(on.joints_fk3)[frames]
    assert np.all(np.abs(forearm[kept] / median_m - 1) < FuseOptions().bone_tolerance), (forearm, median_m)
    assert not on.inlier_vfk[list(bad_views)][:, frames, w].any()
    assert on.bone_check is not None and on.bone_check.retriangulated >= kept.sum()


@pytest.fixture(scope="module")
def real_body(real_fusion):  # noqa: ANN001, ANN201 - PersonBody
    from pipelines.multiview.body_fit import BodyOptions, fit_bodies

    [body] = fit_bodies(real_fusion, BodyOptions(fit_every=2), fps=60.0)
    return body


def _mean_acceleration(x_fk3: np.ndarray, fps: float) -> float:
    """Mean norm of the joints' second difference over time, m/s^2."""
    return float(np.nanmean(np.linalg.norm(np.diff(x_fk3, 2, axis=0), axis=-1)) * fps**2)


def test_fused_body_motion_is_smoothed_over_time(real_fusion, real_body) -> None:  # noqa: ANN001
    """The temporal smoothness of the body fit: the same fit without it jitters more, and lands no closer to the
    views' keypoints than a pixel better."""
    from pipelines.multiview.body_fit import BodyOptions, fit_bodies

    [raw] = fit_bodies(real_fusion, BodyOptions(fit_every=2, smooth_s=0.0), fps=60.0)
    assert np.array_equal(raw.frames, real_body.frames)
    assert _mean_acceleration(real_body.joints_world_fk3, 60.0) < 0.7 * _mean_acceleration(raw.joints_world_fk3, 60.0)
    assert real_body.median_reproj_px < raw.median_reproj_px + 1.0


def test_fused_body_recovers_from_a_wrong_start(real_fusion) -> None:  # noqa: ANN001
    """A frame warm-started from a body turned 180 degrees about the vertical (a wrong pose carried over from the
    previous frame) stays lost without the recovery; with it the body lands back on the views' keypoints."""
    from pipelines.multiview.body_fit import _PersonFitter
    from pipelines.registry import create

    hmr = create("hmr", "embedded")
    person = real_fusion.people[0]
    frames = np.flatnonzero(person.frames_ok)
    f0, f = int(frames[2]), int(frames[6])
    lost_px = {}
    for reinit in (0.0, BodyOptions().reinit_sigmas):
        pf = _PersonFitter(hmr.fitter, person, list(real_fusion.cams), BodyOptions(reinit_sigmas=reinit))
        right = pf.first(f0, hmr.options)
        wrong = right.copy()
        wrong.local_j33 = wrong.local_j33.copy()
        up_ref = pf.R_ref @ np.array([0.0, 0.0, 1.0])  # world z (up) in the fit's frame
        wrong.local_j33[0] = Rotation.from_rotvec(np.pi * up_ref).as_matrix() @ wrong.local_j33[0]
        px_per_sigma = float(np.median(pf.sigma_v))
        assert pf.lost_sigmas(wrong, f) * px_per_sigma > 60.0  # the wrong start is far off the person
        lost_px[reinit] = pf.lost_sigmas(pf.tracked_step(f, wrong, hmr.options), f) * px_per_sigma
        right_px = pf.lost_sigmas(pf.tracked_step(f, right, hmr.options), f) * px_per_sigma
    assert lost_px[0.0] > 40.0, lost_px  # the warm start alone does not find the person again
    assert lost_px[BodyOptions().reinit_sigmas] < min(15.0, right_px + 3.0), (lost_px, right_px)


def test_fused_body_reprojects_into_every_view(real_fusion, real_body) -> None:  # noqa: ANN001
    """One Anny body per frame fitted to all views: its keypoints land on each view's detections."""
    person, body = real_fusion.people[0], real_body
    assert body.id == person.id and set(body.frames) == set(np.flatnonzero(person.frames_ok))
    assert body.fitted_f.sum() < len(body.frames)  # every 2nd frame fitted, the others interpolated
    assert 1.55 < body.height_m < 1.95 and body.pheno_p.shape == (len(body.pheno_p),)  # one shape for the sequence
    n_k = len(FUSED_JOINT_NAMES)
    for v, cam in enumerate(real_fusion.cams):  # undistorted source pixels (1920 px tall views)
        proj = cam.project_world(body.keypoints_world_fk3.reshape(-1, 3)).reshape(len(body.frames), n_k, 2)
        err = np.linalg.norm(proj - person.obs_xy_vfk2[v, body.frames], axis=-1)[person.inlier_vfk[v, body.frames]]
        assert len(err) > 5 * len(body.frames) and np.median(err) < 12.0, (cam.name, np.median(err))
        fitted = body.frames[body.fitted_f]  # the interpolated frames are no worse than a few pixels more
        assert np.nanmedian(body.reproj_px_vf[v, body.frames]) < np.nanmedian(body.reproj_px_vf[v, fitted]) + 3
    assert body.median_reproj_px < 9.0
    # the body agrees with the triangulated joints in the world frame (metres, z up)
    gap = np.linalg.norm(body.keypoints_world_fk3 - person.joints_fk3[body.frames], axis=-1)
    assert np.nanmedian(gap) < 0.04
    head, ankle = body.joints_world_fk3[:, 0], body.joints_world_fk3[:, body.joint_names.index("left_ankle")]
    assert np.all(head[:, 2] - ankle[:, 2] > 1.2)


def test_fused_body_sits_at_the_keypoints_noise_floor(real_fusion, real_body) -> None:  # noqa: ANN001
    """Synthetic views of a known motion (the real body's keypoints) with 2D noise that makes the triangulation
    reproject as the real one does: the default fit lands closer to the truth in 3D than the
    triangulated points, and reprojects about as far from the noisy keypoints as the truth itself does (a body
    far below that would be fitting the noise; far above, missing the person)."""
    from bench.multiview_noise_floor import median_px, residuals_vfk2, synthetic_fusion
    from pipelines.multiview.body_fit import fit_bodies

    person, n_k = real_fusion.people[0], len(FUSED_JOINT_NAMES)
    truth = np.full((real_fusion.n_frames, n_k, 3), np.nan)
    truth[real_body.frames] = real_body.keypoints_world_fk3
    sigma_v = np.full(len(real_fusion.cams), 6.0)  # rms 2D noise, px: the triangulation then at ~3.9 px
    syn, obs, mask = synthetic_fusion(real_fusion, person, truth, sigma_v, rho=0.0)
    tri_px = median_px(residuals_vfk2(syn.people[0].joints_fk3, obs, real_fusion.cams), mask)
    truth_px = median_px(residuals_vfk2(truth, obs, real_fusion.cams), mask)
    assert 3.5 < tri_px < 0.85 * truth_px, (tri_px, truth_px)  # the triangulation's reprojection is below the noise
    [body] = fit_bodies(syn, BodyOptions(), fps=60.0)
    assert abs(body.median_reproj_px - truth_px) < 0.6, (body.median_reproj_px, truth_px)
    gap_mm = 1000 * np.linalg.norm(body.keypoints_world_fk3 - truth[body.frames], axis=-1)
    tri_mm = 1000 * np.linalg.norm(syn.people[0].joints_fk3[body.frames] - truth[body.frames], axis=-1)
    assert np.nanmedian(gap_mm) < 0.8 * np.nanmedian(tri_mm), (np.nanmedian(gap_mm), np.nanmedian(tri_mm))


@pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(), reason="no fork here")
def test_people_fitted_in_forked_processes_get_the_same_bodies(real_fusion, monkeypatch) -> None:  # noqa: ANN001
    """Two people (the real one and a copy of it under another id, its frames shortened): fitted in a forked
    process beside this one, each gets the body it gets one person after the other, in the fusion's order; a
    forked process that dies without answering, or hangs, leaves its person to this process, with the same body."""
    import pipelines.multiview.body_fit as body_fit

    person = real_fusion.people[0]
    joints = person.joints_fk3.copy()
    joints[len(joints) // 2 :] = np.nan  # no body on the second half
    other = dataclasses.replace(person, id=person.id + 7, joints_fk3=joints)
    two = dataclasses.replace(real_fusion, people=[person, other])
    alone = body_fit.fit_bodies(two, BodyOptions(processes=1), fps=60.0)
    forked = body_fit.fit_bodies(two, BodyOptions(processes=2), fps=60.0)
    # other work for this process (the outputs that need only the fusion) while the bodies are fitted: called
    # once, with the people forked (this process fits the lighter group after it), or before the fits without
    calls: list[int] = []
    meanwhile_bodies = [body_fit.fit_bodies(two, BodyOptions(processes=n), fps=60.0,
                                            meanwhile=lambda: calls.append(1)) for n in (2, 3, 1)]  # fmt: skip
    assert calls == [1, 1, 1]
    [one] = body_fit.fit_bodies(dataclasses.replace(real_fusion, people=[person]), BodyOptions(), fps=60.0,
                                meanwhile=lambda: calls.append(2))  # fmt: skip
    assert calls[-1] == 2 and np.array_equal(one.bone_rot_world_fj33, alone[0].bone_rot_world_fj33)
    assert body_fit.fit_bodies(two, BodyOptions(fit=False), meanwhile=lambda: calls.append(3)) == [] and calls[-1] == 3
    monkeypatch.setattr(body_fit, "_forked_fit", lambda *args: __import__("os")._exit(1))
    died = body_fit.fit_bodies(two, BodyOptions(processes=2), fps=60.0)
    # a forked process that hangs (a lock held at the fork, say) is killed after its time bound
    monkeypatch.setattr(body_fit, "_forked_fit", lambda *args: __import__("time").sleep(3600))
    monkeypatch.setattr(body_fit, "FORKED_WAIT_FACTOR", 0.0)
    monkeypatch.setattr(body_fit, "FORKED_WAIT_MIN_S", 0.5)
    stuck = body_fit.fit_bodies(two, BodyOptions(processes=2), fps=60.0)
    monkeypatch.setattr(body_fit, "FORKED_FRAME_S", 0.0)  # one person forked beside `meanwhile`: bound by its frames
    [stuck_one] = body_fit.fit_bodies(dataclasses.replace(real_fusion, people=[person]), BodyOptions(), fps=60.0,
                                      meanwhile=lambda: None)  # fmt: skip
    assert np.array_equal(stuck_one.bone_rot_world_fj33, alone[0].bone_rot_world_fj33)
    assert [b.id for b in alone] == [person.id, other.id] and len(alone[1].frames) < len(alone[0].frames)
    for bodies in (forked, died, stuck, *meanwhile_bodies):
        assert [b.id for b in bodies] == [b.id for b in alone]
        for a, b in zip(alone, bodies, strict=True):
            assert np.array_equal(a.bone_rot_world_fj33, b.bone_rot_world_fj33)
            assert np.array_equal(a.joints_world_fk3, b.joints_world_fk3) and a.median_reproj_px == b.median_reproj_px


def test_default_tracking_reads_reduced_frames_and_answers_in_source_pixels(videos: list[Path],
                                                                          single_dir: Path) -> None:  # fmt: skip
    """The default per-view stage (landmark tracking) decodes the 1088x1920 videos at 960 px for speed; its
    keypoints come back in the videos' own pixels, so the fused person reprojects onto them."""
    assert MultiviewOptions().tracking_max_side == 960
    result = run_multiview(videos, single_dir / "Calib.qca.txt",
                           MultiviewOptions(n_frames=N_FRAMES, body=BodyOptions(fit=False)))  # fmt: skip
    for view in result.views:
        xy = view.xy_tfk2[view.conf_tfk > 0.5]
        assert len(xy) > 10 * N_FRAMES
        assert xy[:, 1].max() > 1000  # the feet are in the lower half of the 1920 px tall frame, not at 960 px
        assert (xy[:, 0] > -50).all() and (xy[:, 0] < 1088 + 50).all()
    assert len(result.fusion.people) == 1
    assert result.fusion.median_reproj_px < 6.5


MULTI_FRAMES = 40
"""pose2sim_multi's frames: the cameras from its people need more than a few (16: 15-40 degrees off)."""


@pytest.fixture(scope="module")
def multi_result(data_dir: Path):  # noqa: ANN201 - MultiviewResult
    """pose2sim_multi's first frames tracked as the mode does (landmark tracker) and fused with its
    calibration (once per module; no bodies)."""
    folder = data_dir / "multiview" / "pose2sim_multi"
    videos = [folder / f"cam0{i}.mp4" for i in range(1, 5)]
    return run_multiview(videos, folder / "Calib.qca.txt",
                         MultiviewOptions(n_frames=MULTI_FRAMES, body=BodyOptions(fit=False)))  # fmt: skip


def test_two_people_are_told_apart_across_views(multi_result) -> None:  # noqa: ANN001
    """pose2sim_multi: two people close together on a treadmill, a bystander in some views."""
    fusion = multi_result.fusion
    assert len(fusion.people) == 2  # the bystander, seen by one view, is no one's
    for person in fusion.people:
        assert len(person.members) >= 2 and person.frames_ok.sum() >= MULTI_FRAMES - 2
        assert 1.3 < person.height_m < 2.0
    for v in range(4):  # no view gives the same track to both people
        rows = [r for p in fusion.people for r in p.members.get(v, [])]
        assert len(rows) == len(set(rows))
    i, j = FUSED_JOINT_NAMES.index("left_hip"), FUSED_JOINT_NAMES.index("right_hip")
    hips = [np.nanmean((p.joints_fk3[:, i] + p.joints_fk3[:, j]) / 2, axis=0) for p in fusion.people]
    assert np.linalg.norm(hips[0] - hips[1]) > 0.3
    assert fusion.median_reproj_px < 0.7 * fusion.plain_median_reproj_px


def test_cameras_from_two_people_side_by_side(multi_result) -> None:  # noqa: ANN001
    """Without the calibration file, pose2sim_multi's cameras come from its two people walking side by side:
    each person alone, or a person of one view paired with the other person of another, also fits an
    essential matrix, but a wrong one; the cameras found must be near the given calibration (itself a few
    degrees off for these videos)."""
    from pipelines.multiview.selfcalib import initial_cameras

    given = multi_result.cams_given
    sizes = [(c.camera.width, c.camera.height) for c in given]
    found, inliers, notes = initial_cameras(multi_result.views, sizes)
    assert not notes and all(c is not None for c in found)
    for v in range(1, len(given)):  # before the bundle adjustment, the focal lengths still the prior's
        assert _relative_rotation_deg(given[0], given[v], found[0], found[v]) < 12.0, given[v].name
        assert inliers[v] >= 100


# --------------------------------------------------------------- synthetic views from the real motion


def _synthetic_views(cams: list[CalibratedCamera], joints_fk3: np.ndarray, shift: dict[int, int] | None = None,
                     noise_px: float = 0.0) -> list[ViewTracks]:  # fmt: skip
    """The person's fused motion seen by the true cameras (with distortion): each view's ViewTracks.
    `shift` = {view: k}: that view starts k frames late (its frame f shows the instant f - k)."""
    from pipelines.keypoints.names import BLAZEPOSE_NAMES

    idx = [BLAZEPOSE_NAMES.index(n) for n in FUSED_JOINT_NAMES]
    rng = np.random.default_rng(0)
    n_f = len(joints_fk3)
    views = []
    for v, cam in enumerate(cams):
        k = (shift or {}).get(v, 0)
        xy = np.full((1, n_f, 33, 2), np.nan)
        conf = np.zeros((1, n_f, 33))
        for f in range(n_f):
            src = f - k
            if 0 <= src < n_f:
                pts = distort_points(cam.project_world(joints_fk3[src]), cam)
                xy[0, f, idx] = pts + rng.normal(0, noise_px, pts.shape) if noise_px else pts
                conf[0, f, idx] = 0.95
        views.append(ViewTracks(cam.name, np.arange(n_f), xy, conf, [0]))
    return views


@pytest.fixture(scope="module")
def motion_fk3(real_fusion) -> np.ndarray:  # noqa: ANN001
    """A real motion (the fused joints, gaps filled by the nearest frame), repeated to 48 frames."""
    j = real_fusion.people[0].joints_fk3.copy()
    for f in range(1, len(j)):
        j[f] = np.where(np.isfinite(j[f]), j[f], j[f - 1])
    return np.concatenate([j, j[::-1], j])


def _perturbed(cam: CalibratedCamera, deg: float, metres: float) -> CalibratedCamera:
    T = cam.cam_T_world_44.copy()
    R_extra = Rotation.from_rotvec(np.radians(deg) * np.array([0.3, 1.0, 0.2]) / np.linalg.norm([0.3, 1.0, 0.2]))
    T[:3, :3] = R_extra.as_matrix() @ T[:3, :3]
    T[:3, 3] += np.array([metres, 0.0, 0.0])
    return make_camera(cam.name, cam.camera.K_33, cam.dist_k, T, cam.camera.width, cam.camera.height)


def _relative_rotation_deg(a: CalibratedCamera, b: CalibratedCamera, a2: CalibratedCamera, b2: CalibratedCamera
                           ) -> float:  # fmt: skip
    """Angle between the relative rotations b <- a and b2 <- a2 (independent of the world's gauge)."""
    rel1 = b.cam_T_world_44[:3, :3] @ a.cam_T_world_44[:3, :3].T
    rel2 = b2.cam_T_world_44[:3, :3] @ a2.cam_T_world_44[:3, :3].T
    return float(np.degrees(Rotation.from_matrix(rel1 @ rel2.T).magnitude()))


def test_known_camera_perturbation_is_recovered(cams: list[CalibratedCamera], motion_fk3: np.ndarray) -> None:
    views = _synthetic_views(cams, motion_fk3, noise_px=1.0)
    wrong = list(cams)
    wrong[1] = _perturbed(cams[1], 3.0, -0.05)
    plain = fuse_views(views, wrong, FuseOptions(sync=False, refine=False), fps=60.0)
    fixed = fuse_views(views, wrong, FuseOptions(sync=False), fps=60.0)
    # as given, the moved camera disagrees with the others (the others' 1 px noise keeps the overall median low)
    assert plain.median_reproj_px_v[1] > 5.0 and fixed.median_reproj_px_v[1] < 1.5
    assert fixed.inlier_share > 0.98 and fixed.median_reproj_px_v[1] < 1.5  # the noise is 1 px
    assert fixed.refine.rotation_change_deg_v[1] > 1.5  # the moved camera is the one that moves back most
    assert int(np.argmax(fixed.refine.rotation_change_deg_v)) == 1
    for v in (0, 2, 3):
        assert _relative_rotation_deg(cams[v], cams[1], fixed.cams[v], fixed.cams[1]) < 0.15
    # metric scale kept: the distance between two cameras as given (within 1 %)
    d_true = np.linalg.norm(cams[0].centre_world_3 - cams[2].centre_world_3)
    d_fixed = np.linalg.norm(fixed.cams[0].centre_world_3 - fixed.cams[2].centre_world_3)
    assert abs(d_fixed / d_true - 1) < 0.01


def test_known_frame_offset_is_recovered(cams: list[CalibratedCamera], motion_fk3: np.ndarray) -> None:
    views = _synthetic_views(cams, motion_fk3, shift={2: 3, 3: -2}, noise_px=1.0)
    r = fuse_views(views, cams, FuseOptions(refine=False), fps=60.0)
    # view 2 is 3 frames late: its frame f + 3 shows the reference's instant f; view 3 is 2 frames early
    np.testing.assert_allclose(r.offsets_v, [0, 0, 3, -2], atol=0.3)
    assert r.median_reproj_px < 1.5


# ------------------------------------------------------------------------------ calibration formats


@pytest.mark.parametrize("fmt", ["json", "qualisys", "toml", "yml"])
def test_calibration_formats_round_trip(fmt: str, cams: list[CalibratedCamera], tmp_path: Path) -> None:
    if fmt == "json":
        path = save_project_json(cams, tmp_path / "calibration.json")
    elif fmt == "qualisys":
        path = save_qualisys(cams, tmp_path / "rig.qca.txt")
    elif fmt == "toml":
        cams4 = [dataclasses.replace(c, dist_k=np.r_[c.dist_k[:4], 0.0]) for c in cams]  # Pose2Sim: 4 coefficients
        cams, path = cams4, save_pose2sim_toml(cams4, tmp_path / "Calib.toml")
    else:
        path, _ = save_opencv_yml(cams, tmp_path)
    loaded = load_calibration(path)
    assert [c.name for c in loaded] == [c.name for c in cams]
    assert all(c.size_known for c in loaded) == (fmt != "yml")  # EasyMocap files have no image size
    xyz_n3 = np.random.default_rng(0).uniform([-0.5, -0.5, 0.0], [0.5, 0.5, 1.8], size=(25, 3))
    xy_vn2 = np.stack([distort_points(c.project_world(xyz_n3), c) for c in cams])  # raw pixels, original rig
    conf_vn = np.ones(xy_vn2.shape[:2])
    result = triangulate_points(xy_vn2, conf_vn, loaded)
    assert np.abs(result.xyz_n3 - xyz_n3).max() < 1e-5  # metres
    for c_old, c_new in zip(cams, loaded, strict=True):
        again = distort_points(c_new.project_world(result.xyz_n3), c_new)
        assert np.abs(again - distort_points(c_old.project_world(xyz_n3), c_old)).max() < 1e-3  # pixels


def test_bad_calibration_formats_are_user_facing(tmp_path: Path) -> None:
    bad_json = tmp_path / "calib.json"
    bad_json.write_text('{"cameras": []}')
    with pytest.raises(UserFacingError, match="is not a hmr-playground-calibration JSON"):
        load_calibration(bad_json)
    bad_toml = tmp_path / "Calib.toml"
    bad_toml.write_text("[cam01]\nname = 'cam01'\nmatrix = [[1, 0], [0, 1]]\n")
    with pytest.raises(UserFacingError, match="bad or missing matrix"):
        load_calibration(bad_toml)
    (tmp_path / "intri.yml").write_text("%YAML:1.0\nnames: [cam01]\n")
    with pytest.raises(UserFacingError, match="extri.yml is missing"):
        load_calibration(tmp_path / "intri.yml")
    unknown = tmp_path / "rig.bin"
    unknown.write_bytes(b"x")
    with pytest.raises(UserFacingError, match="unknown format"):
        load_calibration(unknown)


# ------------------------------------------------------------------------------------------- bad input


def test_calibration_that_does_not_match_the_videos(videos: list[Path], single_dir: Path, tmp_path: Path,
                                                     real_views: list[ViewTracks],
                                                     cams: list[CalibratedCamera]) -> None:  # fmt: skip
    # three videos whose names do not name the calibration's four cameras
    renamed = []
    for i, v in enumerate(videos[:3]):
        link = tmp_path / f"view_{'abc'[i]}.mp4"
        link.symlink_to(v)
        renamed.append(link)
    with pytest.raises(UserFacingError, match=r"describes 4 camera\(s\) .* but 3 video\(s\) were given"):
        run_multiview(renamed, single_dir / "Calib.qca.txt", views=real_views)
    # camera cam04 said to be 2000x1000: that view is left out, the three others are still fused
    wrong = list(cams)
    wrong[3] = make_camera("cam04", cams[3].camera.K_33, cams[3].dist_k, cams[3].cam_T_world_44, 2000, 1000)
    calib = save_project_json(wrong, tmp_path / "calibration.json")
    result = run_multiview(videos, calib, MultiviewOptions(n_frames=N_FRAMES, fuse=QUICK), views=real_views)
    assert any("cam04.mp4 is 1088x1920 but camera cam04 of the calibration is 2000x1000" in w for w in result.warnings)
    assert [c.name for c in result.fusion.cams] == ["cam01", "cam02", "cam03"]
    assert len(result.fusion.people) == 1 and result.fusion.people[0].frames_ok.sum() >= N_FRAMES - 1


def test_other_frame_rate_and_a_camera_that_sees_nobody(videos: list[Path], single_dir: Path, tmp_path: Path,
                                                         real_views: list[ViewTracks]) -> None:  # fmt: skip
    slow = tmp_path / "cam04.mp4"  # 30 frames/s instead of 60
    writer = cv2.VideoWriter(str(slow), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (1088, 1920))
    for _ in range(3):
        writer.write(np.zeros((1920, 1088, 3), np.uint8))
    writer.release()
    result = run_multiview([*videos[:3], slow], single_dir / "Calib.qca.txt",
                           MultiviewOptions(n_frames=N_FRAMES, fuse=QUICK), views=real_views)  # fmt: skip
    assert any("cam04.mp4 runs at 30.00 frames/s, the others at" in w for w in result.warnings)
    assert len(result.fusion.cams) == 3 and len(result.fusion.people) == 1
    # a view whose video shows nobody: named in a warning, the others fused
    empty = dataclasses.replace(real_views[1], xy_tfk2=real_views[1].xy_tfk2[:0], conf_tfk=real_views[1].conf_tfk[:0],
                                track_ids=[])  # fmt: skip
    views = [real_views[0], empty, real_views[2], real_views[3]]
    result = run_multiview(videos, single_dir / "Calib.qca.txt", MultiviewOptions(n_frames=N_FRAMES, fuse=QUICK),
                           views=views)
    assert any("view cam02: nobody was found in this video" in w for w in result.warnings)
    assert sorted(result.fusion.people[0].members) == [0, 2, 3]
    with pytest.raises(UserFacingError, match="at least two videos"):
        run_multiview(videos[:1], single_dir / "Calib.qca.txt")


# ------------------------------------------------------------------------------------------------- CLI


def test_cli_multiview_writes_every_output(videos: list[Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    out = tmp_path / "out"
    code, stdout, err = run_cli(["multiview", "--videos", *videos, "--out", out, "--frames", 5, "--max-side", 640,
                                 "--quiet"], capsys)  # fmt: skip
    assert code == 0, err
    assert "1 person(s)" in stdout
    names = {p.name for p in out.iterdir()}
    assert {"tracks.json", "report.json", "calibration.json", "track_0.trc", "track_0.bvh", "track_0.glb",
            "track_0.npz", "result.rrd"} <= names  # fmt: skip
    tracks = json.loads((out / "tracks.json").read_text())
    assert tracks["fps"] == 60.0 and tracks["joint_names"] == FUSED_JOINT_NAMES and tracks["frames"] == list(range(5))
    [track] = tracks["tracks"]
    assert 1.4 < track["height_m"] < 2.1
    assert np.asarray(track["joints3d_world"]).shape == (len(track["frames"]), len(FUSED_JOINT_NAMES), 3)
    report = json.loads((out / "report.json").read_text())
    assert [v["name"] for v in report["views"]] == ["cam01", "cam02", "cam03", "cam04"]
    assert report["median_reproj_px"] < report["plain_median_reproj_px"]
    assert set(report["views"][0]) >= {"time_offset_frames", "median_reproj_px", "rotation_change_deg",
                                       "translation_change_m"}  # fmt: skip
    refined = load_calibration(out / "calibration.json")
    assert len(refined) == 4
    trc = (out / "track_0.trc").read_text().splitlines()
    assert trc[0].startswith("PathFileType\t4") and len(trc) == 6 + 5
    import bvhio

    from pipelines.multiview.skeleton import BONE_NAMES

    root = bvhio.readAsHierarchy(str(out / "track_0.bvh"))
    assert len(root.layout()) == len(BONE_NAMES) and len(root.Keyframes) == 5
    root.loadPose(4)  # the BVH root is the mid-hip, world z up written as BVH y up
    j = np.asarray(track["joints3d_world"][-1])
    hip = (j[FUSED_JOINT_NAMES.index("left_hip")] + j[FUSED_JOINT_NAMES.index("right_hip")]) / 2
    assert np.allclose(np.array(root.PositionWorld), [hip[0], hip[2], -hip[1]], atol=1e-3)
    # The Anny body: per-frame joints in tracks.json, an animated GLB that re-reads (one keyframe per frame)
    body = track["body"]
    assert body["frames"] == track["frames"] and 1.5 < body["height_m"] < 1.95
    assert np.asarray(body["joints3d_world"]).shape == (len(body["frames"]), len(body["joint_names"]), 3)
    assert np.allclose(np.asarray(body["joints3d_world"])[:, :, 2].max(1), hip[2] + 0.75, atol=0.25)  # head above hips
    import pygltflib

    glb = pygltflib.GLTF2().load(str(out / "track_0.glb"))
    assert len(glb.skins) == 1 and len(glb.skins[0].joints) == len(glb.nodes) - 1 and len(glb.animations) == 1
    times = glb.accessors[glb.animations[0].samplers[0].input]
    assert times.count == len(body["frames"]) and abs(times.max[0] - body["frames"][-1] / 60.0) < 1e-4
    root_t = glb.accessors[glb.animations[0].samplers[0].output]
    assert root_t.count == len(body["frames"])
    from viz.rrd_read import entity_paths, timeline_values

    paths = entity_paths(out / "result.rrd")
    assert {"world/cams/cam01", "world/cams/cam01/image", "world/cams/cam04/image/fused/0",
            "world/people/0/skeleton", "world/people/0/mesh", "reproj/cam03", "reproj_body/cam03"} <= paths  # fmt: skip
    assert timeline_values(out / "result.rrd", "frame", "world/people/0/skeleton") == set(range(5))


def test_outputs_staged_beside_the_bodies_are_the_outputs_written_at_the_end(
        videos: list[Path], single_dir: Path, real_views: list[ViewTracks], tmp_path: Path) -> None:  # fmt: skip
    """The CLI writes the files that need only the fusion while the bodies are fitted (run_multiview's on_fused,
    OutputStaging), the rest after them: the same files as write_outputs at the end (result.rrd: the same
    entities and frames), and nothing beside `out_dir` once done; a staging that is dropped leaves nothing."""
    from viz.multiview_outputs import OutputStaging, write_outputs
    from viz.rrd_read import entity_paths, timeline_values

    staged = OutputStaging(tmp_path / "staged")
    seen: list[int] = []

    def on_fused(fused) -> None:  # noqa: ANN001 - MultiviewResult
        seen.append(len(fused.bodies))
        staged.fused(fused)

    result = run_multiview(videos, single_dir / "Calib.qca.txt", MultiviewOptions(n_frames=N_FRAMES),
                           views=real_views, on_fused=on_fused)  # fmt: skip
    assert seen == [0] and len(result.bodies) == 1 and staged.tmp is not None
    written = write_outputs(result, tmp_path / "staged", staged=staged)
    plain = write_outputs(result, tmp_path / "plain")
    assert [p.name for p in written] == [p.name for p in plain]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "staged"]
    for a, b in zip(written, plain, strict=True):
        if a.name == "result.rrd":
            assert entity_paths(a) == entity_paths(b)
            for entity in ("world/people/0/skeleton", "world/people/0/mesh", "reproj_body/cam02"):
                assert timeline_values(a, "frame", entity) == timeline_values(b, "frame", entity)
        else:
            assert a.read_bytes() == b.read_bytes(), a.name
    dropped = OutputStaging(tmp_path / "dropped")
    dropped.fused(result)
    dropped.discard()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain", "staged"]


def test_cli_multiview_bad_input(videos: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "notes.toml"
    junk.write_text("this is = not toml [")
    code, _, err = run_cli(["multiview", "--videos", *videos, "--calib", junk, "--out", tmp_path / "o"], capsys)
    assert code == 2 and error_lines(err) == ["error: The calibration file notes.toml is not valid TOML."]
    assert not (tmp_path / "o").exists()


def test_cli_multiview_bad_options_are_one_sentence(videos: list[Path], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    for flag, value, words in (("--frames", 0, "--frames must be at least 1"),
                               ("--max-side", -5, "--max-side must be a number of pixels")):  # fmt: skip
        code, _, err = run_cli(["multiview", "--videos", *videos, "--out", tmp_path / "out", flag, value,
                                "--quiet"], capsys)  # fmt: skip
        lines = error_lines(err)
        assert code == 2 and len(lines) == 1 and words in lines[0], err
        assert "Traceback" not in err and not (tmp_path / "out").exists()
