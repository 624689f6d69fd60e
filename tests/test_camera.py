"""Initial camera: priority user > EXIF > prior, validation of the user's focal, the focal prior."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines.camera.embedded import (
    PRIOR_DIAGONAL_FOV_DEG,
    EmbeddedCamera,
    check_user_focal,
    default_focal_px,
    focal_prior_px,
)
from pipelines.camera.exif import (
    TAG_EXIF_IMAGE_WIDTH,
    TAG_FOCAL_35MM,
    TAG_FOCAL_LENGTH,
    TAG_FOCAL_PLANE_UNIT,
    TAG_FOCAL_PLANE_XRES,
    focal_from_tags,
)
from pipelines.errors import BadPromptError, UserFacingError
from pipelines.registry import create


def _diag_fov_deg(focal_px: float, width: int, height: int) -> float:
    return math.degrees(2 * math.atan(0.5 * math.hypot(width, height) / focal_px))


def test_registry_creates_embedded() -> None:
    solver = create("camera", "embedded")
    assert isinstance(solver, EmbeddedCamera)


def test_priority_user_over_exif_over_default() -> None:
    solver = EmbeddedCamera()
    cam = solver.initial(801, 1200, exif_focal_px=1500.0, user_focal_px=900.0)
    assert cam.source == "user" and cam.focal_px == 900.0
    cam = solver.initial(801, 1200, exif_focal_px=1500.0, user_focal_px=None)
    assert cam.source == "exif" and cam.focal_px == 1500.0
    cam = solver.initial(801, 1200, exif_focal_px=None, user_focal_px=None)
    assert cam.source == "default"
    assert _diag_fov_deg(cam.focal_px, 801, 1200) == pytest.approx(PRIOR_DIAGONAL_FOV_DEG)


def test_camera_layout() -> None:
    cam = EmbeddedCamera().initial(801, 1200, None, None)
    assert cam.width == 801 and cam.height == 1200
    assert np.allclose(cam.K_33[:2, 2], [400.5, 600.0])
    assert cam.K_33[0, 0] == cam.K_33[1, 1]
    assert np.allclose(cam.world_T_cam, np.eye(4))


def test_implausible_exif_falls_back_to_default() -> None:
    cam = EmbeddedCamera().initial(801, 1200, exif_focal_px=3.0, user_focal_px=None)
    assert cam.source == "default"
    cam = EmbeddedCamera().initial(801, 1200, exif_focal_px=float("nan"), user_focal_px=None)
    assert cam.source == "default"


@pytest.mark.parametrize("bad", [5.0, 1e9, float("nan"), float("inf"), -100.0, 0.0])
def test_user_focal_validated(bad: float) -> None:
    with pytest.raises(BadPromptError) as err:
        EmbeddedCamera().initial(801, 1200, exif_focal_px=None, user_focal_px=bad)
    msg = str(err.value)
    assert isinstance(err.value, UserFacingError)
    assert "implausible for a 801x1200 image" in msg and "px" in msg and "\n" not in msg


def test_user_focal_error_message() -> None:
    with pytest.raises(
        BadPromptError, match=r"5 px is implausible for a 801x1200 image \(expected 144-28856 px\)"
    ):
        check_user_focal(5, 801, 1200)


def test_user_focal_not_a_number() -> None:
    with pytest.raises(BadPromptError, match="not a number"):
        check_user_focal("wide", 801, 1200)  # type: ignore[arg-type]


def test_focal_prior() -> None:
    mean_px, sigma_log = focal_prior_px(1920, 1080)
    assert mean_px == pytest.approx(default_focal_px(1920, 1080))
    assert 0.2 < sigma_log < 0.5
    # one sigma covers a phone main camera (26 mm) to a phone's 2x portrait lens (48 mm), both in 35 mm terms
    f35_lo = mean_px * math.exp(-sigma_log) * math.hypot(36, 24) / math.hypot(1920, 1080)
    f35_hi = mean_px * math.exp(sigma_log) * math.hypot(36, 24) / math.hypot(1920, 1080)
    assert f35_lo < 26 and f35_hi > 48


def test_bad_size() -> None:
    with pytest.raises(ValueError):
        EmbeddedCamera().initial(0, 100, None, None)


# ------------------------------------------------------------------------------------ EXIF tags


def test_exif_35mm_preferred() -> None:
    tags = {TAG_FOCAL_35MM: 50, TAG_FOCAL_LENGTH: 4.0, TAG_FOCAL_PLANE_XRES: 1000.0, TAG_FOCAL_PLANE_UNIT: 4}
    out = focal_from_tags(tags, 3000, 2000)
    assert out.focal_px == pytest.approx(50 * math.hypot(3000, 2000) / math.hypot(36, 24))
    # on a 3:2 image the diagonal rule equals the width rule: 50 mm -> 50/36 of the width
    assert out.focal_px == pytest.approx(50 / 36 * 3000)


@pytest.mark.parametrize(
    ("unit", "xres", "expected"), [(2, 2540.0, 400.0), (3, 1000.0, 400.0), (4, 100.0, 400.0)]
)
def test_exif_focal_plane_units(unit: int, xres: float, expected: float) -> None:
    tags = {TAG_FOCAL_LENGTH: 4.0, TAG_FOCAL_PLANE_XRES: xres, TAG_FOCAL_PLANE_UNIT: unit}
    assert focal_from_tags(tags, 640, 480).focal_px == pytest.approx(expected)


def test_exif_focal_plane_rescaled_to_image_size() -> None:
    tags = {
        TAG_FOCAL_LENGTH: 4.0,
        TAG_FOCAL_PLANE_XRES: 1000.0,
        TAG_FOCAL_PLANE_UNIT: 4,
        TAG_EXIF_IMAGE_WIDTH: 4000,
    }
    assert focal_from_tags(tags, 1000, 750).focal_px == pytest.approx(1000.0)


def test_exif_without_sensor_size() -> None:
    out = focal_from_tags({TAG_FOCAL_LENGTH: 4.0}, 640, 480)
    assert out.focal_px is None and out.note and "sensor" in out.note
    out = focal_from_tags(
        {TAG_FOCAL_LENGTH: 4.0, TAG_FOCAL_PLANE_XRES: 10.0, TAG_FOCAL_PLANE_UNIT: 1}, 640, 480
    )
    assert out.focal_px is None
    assert focal_from_tags({}, 640, 480).focal_px is None


def test_exif_implausible_ignored() -> None:
    out = focal_from_tags(
        {TAG_FOCAL_LENGTH: 4.0, TAG_FOCAL_PLANE_XRES: 1e6, TAG_FOCAL_PLANE_UNIT: 4}, 640, 480
    )
    assert out.focal_px is None and out.note and "implausible" in out.note


# ------------------------------------------------------------------------------------ one focal, several people


def test_shared_focal_of_one_person_is_its_own() -> None:
    from pipelines.camera.focal import FocalEstimate, combine_focal_estimates

    out = combine_focal_estimates([FocalEstimate(1500.0, 0.15**2)], prior_px=1900.0, prior_sigma_log=0.35)
    assert out.focal_px == pytest.approx(1500.0)
    assert out.log_var == pytest.approx(0.15**2)


def test_shared_focal_counts_the_prior_once_and_ignores_people_without_evidence() -> None:
    from pipelines.camera.focal import FocalEstimate, combine_focal_estimates

    prior, sigma = 1900.0, 0.35
    # Two people whose own evidence says 1500 px with the same confidence: together they pull harder
    # than either alone (the prior is not counted twice), and their variance halves.
    own_var = 0.2**2
    post_info = 1 / own_var + 1 / sigma**2
    post_mean = (np.log(1500.0) / own_var + np.log(prior) / sigma**2) / post_info
    one = FocalEstimate(float(np.exp(post_mean)), 1 / post_info)
    two = combine_focal_estimates([one, one], prior, sigma)
    assert 1500.0 < two.focal_px < one.focal_px
    assert 1 / two.log_var == pytest.approx(2 / own_var + 1 / sigma**2)
    # A person whose fit says nothing (variance of the prior, or unknown) changes nothing.
    same = combine_focal_estimates([one, FocalEstimate(1000.0, sigma**2), FocalEstimate(800.0, float("inf"))],
                                   prior, sigma)  # fmt: skip
    assert same.focal_px == pytest.approx(one.focal_px)
    assert combine_focal_estimates([], prior, sigma).focal_px == pytest.approx(prior)


def test_blade_solve_recovers_a_rendered_bodys_focal_and_distance() -> None:
    """A rigid body of known metric size 2.3 m from a 500 px camera, seen through a wrong focal (x0.75 and
    x1.3, the body placed to fill the same pixels): the joint solve of focal and distance finds both again
    from the perspective, with the keypoints alone and with the silhouette against the mask too."""
    from bench.scene_synth import camera_pose, proxy_body
    from pipelines.camera.blade import BladePerson, silhouette_hw, solve_focal_distance

    W, H, f_true = 640, 480, 500.0
    K = np.array([[f_true, 0, W / 2], [0, f_true, H / 2], [0, 0, 1]])
    T = camera_pose(1.2, 15.0, 0.0)
    v, faces, j = proxy_body(np.array([0.3, 2.2]), 1.75)
    verts = v @ T[:3, :3].T + T[:3, 3]
    pts = np.concatenate([np.stack(list(j.values())), v[::7]]) @ T[:3, :3].T + T[:3, 3]
    uv = pts[:, :2] / pts[:, 2:] * f_true + [W / 2, H / 2]
    mask = silhouette_hw(verts, faces, K, W, H)
    root = pts.mean(axis=0)
    for k0 in (0.75, 1.3):
        K0 = K.copy()
        K0[0, 0] = K0[1, 1] = f_true * k0
        person = BladePerson(points_cam_k3=pts + (k0 - 1) * root, xy_k2=uv, conf_k=np.ones(len(uv)),
                             root_cam_3=root * k0, verts_cam_v3=verts + (k0 - 1) * root, faces_f3=faces, mask_hw=mask)
        for silhouette_w, tol in ((0.0, 0.01), (1.0, 0.03)):
            r = solve_focal_distance([person], K0, W, H, silhouette_w=silhouette_w)
            assert r.focal_px == pytest.approx(f_true, rel=tol)
            dist = np.linalg.norm(person.root_cam_3 + r.shift_cam_p3[0])
            assert dist == pytest.approx(np.linalg.norm(root), rel=tol)
            assert r.keypoint_rms_px < 0.5
        assert r.iou_p[0] > 0.95


def test_blade_solve_gives_several_people_one_focal_and_their_distances() -> None:
    """Two rigid bodies 2.2 m and 3.4 m from one 500 px camera, fitted under a focal 25 % too long (each
    placed to fill its pixels): one focal for both, and each person's distance, from their perspective."""
    from bench.scene_synth import camera_pose, proxy_body
    from pipelines.camera.blade import BladePerson, solve_focal_distance

    W, H, f_true, k0 = 640, 480, 500.0, 1.25
    K0 = np.array([[f_true * k0, 0, W / 2], [0, f_true * k0, H / 2], [0, 0, 1]])
    T = camera_pose(1.2, 15.0, 0.0)
    people, truth = [], []
    for xy in ([-0.5, 2.2], [0.8, 3.4]):
        v, _, j = proxy_body(np.array(xy), 1.75)
        pts = np.concatenate([np.stack(list(j.values())), v[::7]]) @ T[:3, :3].T + T[:3, 3]
        uv = pts[:, :2] / pts[:, 2:] * f_true + [W / 2, H / 2]
        root = pts.mean(axis=0)
        truth.append(np.linalg.norm(root))
        people.append(BladePerson(points_cam_k3=pts + (k0 - 1) * root, xy_k2=uv, conf_k=np.ones(len(uv)),
                                  root_cam_3=root * k0))  # fmt: skip
    r = solve_focal_distance(people, K0, W, H)
    assert r.focal_px == pytest.approx(f_true, rel=0.01)
    for p, shift, dist in zip(people, r.shift_cam_p3, truth, strict=True):
        assert np.linalg.norm(p.root_cam_3 + shift) == pytest.approx(dist, rel=0.01)


def test_video_focal_pool_gives_the_people_of_several_frames_one_focal() -> None:
    """A video's focal: the first person's own estimate, then every new person's evidence pooled with it
    (the prior counted once), and held once the first frames are done."""
    from pipelines.camera.focal import FocalEstimate, FocalPool, combine_focal_estimates

    prior, sigma = 1900.0, 0.35
    pool = FocalPool(prior, sigma, frames=2)
    first = FocalEstimate(1700.0, 0.2**2)
    assert pool.add(first).focal_px == pytest.approx(1700.0)
    pool.end_frame()
    assert pool.open
    others = [FocalEstimate(1650.0, 0.25**2), FocalEstimate(1750.0, 0.3**2)]
    for est in others:
        shared = pool.add(est)
    pool.end_frame()
    expected = combine_focal_estimates([first, *others], prior, sigma)
    assert shared.focal_px == pytest.approx(expected.focal_px)
    assert shared.log_var < first.log_var  # more people, a surer focal
    assert not pool.open

