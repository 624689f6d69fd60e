"""The world's up from the vertical vanishing point (pipelines/scene/vanishing.py) and the ground using it."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bench.scene_synth import camera_pose, proxy_body
from pipelines.scene.ground import FootedBody, pitch_deg, roll_deg
from pipelines.scene.vanishing import (
    boxes_mask,
    fit_ground_with_vanishing,
    line_segments,
    manhattan_frame,
    segments_off_mask,
    vertical_up,  # fmt: skip
)

W, H = 640, 480
K_33 = np.array([[600.0, 0, 330.0], [0, 600.0, 236.0], [0, 0, 1]])


def _project(T_44: np.ndarray, p_world_3: np.ndarray) -> np.ndarray:
    c = T_44[:3, :3] @ p_world_3 + T_44[:3, 3]
    return (K_33 @ c)[:2] / c[2]


def _room_image(T_44: np.ndarray, seed: int = 0) -> np.ndarray:
    """Grey image of vertical poles (world z) 2.5-9 m ahead, plus horizontal edges (world x and y)."""
    rng = np.random.default_rng(seed)
    img = np.full((H, W, 3), 190, np.uint8)
    for _ in range(14):
        x, y = rng.uniform(-3.5, 3.5), rng.uniform(2.5, 9.0)
        a, b = _project(T_44, np.array([x, y, 0.0])), _project(T_44, np.array([x, y, rng.uniform(1.5, 3.0)]))
        cv2.line(img, tuple(int(v) for v in a.round()), tuple(int(v) for v in b.round()), (40, 40, 40), 3, cv2.LINE_AA)
    for _ in range(6):  # not vertical in the world: must not pull the vanishing point
        x, y, z = rng.uniform(-2, 2), rng.uniform(3, 8), rng.uniform(0.5, 2.5)
        d = np.array([1.0, 0, 0]) if rng.random() < 0.5 else np.array([0, 1.0, 0])
        a, b = _project(T_44, np.array([x, y, z])), _project(T_44, np.array([x, y, z]) + 1.5 * d)
        cv2.line(img, tuple(int(v) for v in a.round()), tuple(int(v) for v in b.round()), (90, 60, 30), 3, cv2.LINE_AA)
    return img


def _person(T_44: np.ndarray, foot_xy: tuple[float, float], lean_deg: float) -> FootedBody:
    """A box person whose fitted up leans `lean_deg` towards the camera (the bodies' per-view bias)."""
    v, _, j = proxy_body(np.array(foot_xy), 1.75)
    a = np.radians(lean_deg)
    R_lean = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    base = np.array([foot_xy[0], foot_xy[1], 0.0])
    v = (v - base) @ R_lean.T + base
    j = {k: R_lean @ (p - base) + base for k, p in j.items()}
    R, t = T_44[:3, :3], T_44[:3, 3]
    return FootedBody(verts_v3=v @ R.T + t, joints={k: R @ p + t for k, p in j.items()})


@pytest.mark.parametrize(("pitch", "roll"), [(15.0, 4.0), (25.0, -12.0)])
def test_vertical_vanishing_point_of_drawn_poles_gives_the_pitch_and_roll(pitch: float, roll: float) -> None:
    T = camera_pose(1.6, pitch, roll)
    up_true = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    assert pitch_deg(up_true) == pytest.approx(pitch) and roll_deg(up_true) == pytest.approx(roll)
    tilt = np.radians(6.0)  # the bodies' up, 6 degrees off
    side = np.cross(up_true, [1.0, 0, 0])
    prior = up_true * np.cos(tilt) + side / np.linalg.norm(side) * np.sin(tilt)
    segments = line_segments(_room_image(T))
    vp = vertical_up([segments], K_33, W, H, prior)
    assert vp is not None and vp.supported and vp.n_inliers >= 8
    assert abs(pitch_deg(vp.up_cam_3) - pitch) < 0.5 and abs(roll_deg(vp.up_cam_3) - roll) < 0.5
    assert vp.angle_to_bodies_deg == pytest.approx(6.0, abs=0.6)


def test_ground_takes_the_vanishing_points_normal_and_the_feet_offset() -> None:
    T = camera_pose(1.6, 18.0, 5.0)
    up_true = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    people = [_person(T, (-0.5, 4.0), 5.0), _person(T, (0.8, 5.0), 5.0)]
    img = _room_image(T, seed=1)
    segments = line_segments(img)
    ground = fit_ground_with_vanishing([people], [segments], K_33, W, H)
    bodies_only = fit_ground_with_vanishing([people], [np.zeros((0, 4))], K_33, W, H)
    assert ground is not None and bodies_only is not None
    assert ground.up_source == "vanishing_point" and bodies_only.up_source == "bodies"
    assert ground.as_dict()["up_source"] == "vanishing_point" and ground.as_dict()["vanishing_point"]["supported"]
    angle = np.degrees(np.arccos(np.clip(ground.normal_cam @ up_true, -1, 1)))
    angle_bodies = np.degrees(np.arccos(np.clip(bodies_only.normal_cam @ up_true, -1, 1)))
    assert angle < 0.5 < 3.0 < angle_bodies
    assert ground.camera_height_m == pytest.approx(1.6, abs=0.03)


def test_image_without_lines_falls_back_to_the_bodies() -> None:
    T = camera_pose(1.5, 12.0, 0.0)
    people = [_person(T, (0.0, 4.0), 0.0)]
    rng = np.random.default_rng(3)
    noise = cv2.GaussianBlur(rng.integers(0, 255, (H, W, 3), dtype=np.uint8), (0, 0), 2.0)
    ground = fit_ground_with_vanishing([people], [line_segments(noise)], K_33, W, H)
    assert ground is not None and ground.up_source == "bodies"
    assert ground.as_dict()["up_source"] == "bodies"


def test_segments_on_the_people_are_left_out() -> None:
    segments = np.array([[10.0, 10, 10, 100], [300, 50, 305, 200]])
    mask = boxes_mask(np.array([[280.0, 40, 330, 220]]), W, H, pad_frac=0.1)
    assert mask.shape == (H, W) and mask[45, 300] and not mask[10, 10]
    np.testing.assert_array_equal(segments_off_mask(segments, mask), segments[:1])


def test_photo_ground_takes_the_vanishing_point_with_the_peoples_boxes_masked() -> None:
    """The photo mode's ground (pipelines.scene.frame_scene.photo_ground): the drawn room's lines give its
    normal (the Manhattan frame of the poles and the horizontal edges; manhattan=False: the vertical vanishing
    point), not the bodies' up 5 degrees off; without them (up_from_scene=False) the bodies' up."""
    from types import SimpleNamespace

    from pipelines.scene.frame_scene import photo_ground

    T = camera_pose(1.6, 18.0, 5.0)
    up_true = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    bodies = [_person(T, (-0.5, 4.0), 5.0), _person(T, (0.8, 5.0), 5.0)]
    img = _room_image(T, seed=1)
    boxes = []
    for b in bodies:
        uv = np.stack([(K_33 @ p)[:2] / p[2] for p in b.joints.values()])
        boxes.append([*uv.min(axis=0), *uv.max(axis=0)])
        x1, y1, x2, y2 = (int(v) for v in boxes[-1])
        cv2.rectangle(img, (x1 + 5, y1), (x2 - 5, y2), (20, 20, 20), 4)  # the person's edges: masked out
    people = [SimpleNamespace(detection=SimpleNamespace(bbox_xyxy=np.array(box))) for box in boxes]
    ground = photo_ground(img, K_33, people, bodies)
    vertical = photo_ground(img, K_33, people, bodies, manhattan=False)
    bodies_only = photo_ground(img, K_33, people, bodies, up_from_scene=False)
    assert ground is not None and vertical is not None and bodies_only is not None
    # 6 horizontal edges of two directions: under the Manhattan frame's gates, so the vertical vanishing point
    assert ground.up_source == "vanishing_point" and not ground.vanishing["manhattan_frame"]["supported"]
    assert vertical.up_source == "vanishing_point" and bodies_only.up_source == "bodies"
    angle_bodies = np.degrees(np.arccos(np.clip(bodies_only.normal_cam @ up_true, -1, 1)))
    for g in (ground, vertical):
        angle = np.degrees(np.arccos(np.clip(g.normal_cam @ up_true, -1, 1)))
        assert angle < 0.5 < 3.0 < angle_bodies
        assert g.camera_height_m == pytest.approx(1.6, abs=0.03)
    assert photo_ground(img, K_33, [], []) is None  # nobody fitted: no ground


def test_ransac_pairs_are_the_draws_of_rng_choice_without_replacement() -> None:
    """vertical_up draws its RANSAC pairs at once (vanishing._draw_pairs): the same pairs, in the same
    order, as one rng.choice(n, 2, replace=False, p) per iteration, repeats included (n = 3)."""
    from pipelines.scene.vanishing import _draw_pairs

    for n in (2, 3, 40):
        length_n = np.random.default_rng(n).random(n) ** 3 + 0.01
        prob_n = length_n / length_n.sum()
        rng_a, rng_b = np.random.default_rng(7), np.random.default_rng(7)
        expected = np.array([rng_a.choice(n, size=2, replace=False, p=prob_n) for _ in range(300)])
        pairs = _draw_pairs(rng_b, prob_n, 300)
        np.testing.assert_array_equal(pairs, expected)
        assert np.all(pairs[:, 0] != pairs[:, 1])
        assert rng_a.random() == rng_b.random()  # the generators are left in the same state


def test_line_segments_of_a_reduced_image_are_in_the_full_images_pixels() -> None:
    """line_segments(max_side_px): LSD on the grey image reduced to that long side, the segments mapped
    back (pixel centres) to within a pixel of the full-size ones; a smaller image is left as it is."""
    img = np.full((1200, 1600, 3), 200, np.uint8)
    cv2.line(img, (400, 100), (400, 1000), (30, 30, 30), 6)  # vertical, centre x = 400
    cv2.line(img, (700, 300), (1300, 900), (30, 30, 30), 6)  # diagonal
    full = line_segments(img)
    half = line_segments(img, max_side_px=800)
    assert len(full) >= 2 and len(half) >= 2
    np.testing.assert_array_equal(line_segments(img, max_side_px=2000), full)

    def nearest(seg_4: np.ndarray, segs_n4: np.ndarray) -> float:
        d = [min(np.abs(seg_4 - s).max(), np.abs(seg_4 - s[[2, 3, 0, 1]]).max()) for s in segs_n4]
        return float(min(d))

    vertical = half[np.abs(half[:, 0] - half[:, 2]) < 2]
    assert len(vertical) == 2  # the line's two edges, 7 px apart, centred on it (the pixel centres mapped back)
    assert abs(vertical[:, [0, 2]].mean() - 400.0) < 0.5 and abs(np.ptp(vertical[:, 0]) - 7.0) < 1.0
    long_full = full[np.linalg.norm(full[:, 2:] - full[:, :2], axis=1) > 300]
    long_half = half[np.linalg.norm(half[:, 2:] - half[:, :2], axis=1) > 300]
    assert len(long_half) == len(long_full)
    # each long edge of the reduced image is where the full image's is (its ends within a few pixels,
    # its direction within 0.3 degrees)
    for s in long_half:
        assert nearest(s, long_full) < 6.0
        f = long_full[int(np.argmin([min(np.abs(s - q).max(), np.abs(s - q[[2, 3, 0, 1]]).max()) for q in long_full]))]
        u, v = s[2:] - s[:2], f[2:] - f[:2]
        cos = abs(u @ v) / np.linalg.norm(u) / np.linalg.norm(v)
        assert np.degrees(np.arccos(min(cos, 1.0))) < 0.3


def test_photo_ground_from_the_segments_the_image_mode_detects_in_its_worker_thread() -> None:
    """The image mode detects the photo's line segments while the people are found and fitted
    (ImagePipeline._line_segments_soon) and hands them to photo_ground: the same ground as photo_ground
    detecting them itself."""
    from types import SimpleNamespace

    from pipelines.modes.image import ImagePipeline
    from pipelines.scene.frame_scene import photo_ground
    from pipelines.scene.vanishing import photo_line_segments

    T = camera_pose(1.6, 18.0, 5.0)
    bodies = [_person(T, (-0.5, 4.0), 5.0)]
    img = _room_image(T, seed=2)
    uv = np.stack([(K_33 @ p)[:2] / p[2] for p in bodies[0].joints.values()])
    people = [SimpleNamespace(detection=SimpleNamespace(bbox_xyxy=np.array([*uv.min(axis=0), *uv.max(axis=0)])))]
    boxes_n4 = np.array([p.detection.bbox_xyxy for p in people])
    segments_n4 = ImagePipeline()._line_segments_soon(img, boxes_n4).result(timeout=30)
    np.testing.assert_array_equal(segments_n4, photo_line_segments(img, boxes_n4))
    given = photo_ground(img, K_33, people, bodies, all_segments_n4=segments_n4)
    itself = photo_ground(img, K_33, people, bodies)
    assert given is not None and itself is not None and given.up_source != "bodies"
    np.testing.assert_array_equal(given.normal_cam, itself.normal_cam)
    assert given.offset_m == itself.offset_m and given.vanishing == itself.vanishing


def test_filling_the_people_before_the_lsd_keeps_a_real_frames_vanishing_point(segmenter, single_dir, cams) -> None:  # noqa: ANN001
    """The photo mode fills the detected people's boxes with the mean grey before the LSD (their texture
    costs time, their segments are dropped anyway): on a real frame (pose2sim_single cam03, frame 0, its
    calibration) the vertical vanishing point is the one of the unfilled photo's segments, near the true up."""
    from pipelines.multiview.video import read_frames
    from pipelines.scene.vanishing import PEOPLE_PAD_FRAC, photo_line_segments, photo_segments

    cam = next(c for c in cams if c.name == "cam03")
    ((_, rgb),) = read_frames(single_dir / "cam03.mp4", [0])
    h, w = rgb.shape[:2]
    boxes_n4 = np.array([p.bbox_xyxy for p in segmenter.detect(rgb)]).reshape(-1, 4)
    assert len(boxes_n4) >= 1
    up_true_3 = cam.cam_T_world_44[:3, :3] @ np.array([0.0, 0.0, 1.0])
    tilt = np.radians(8.0)  # a bodies' up with a typical bias as the prior
    prior_3 = np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)], [0, np.sin(tilt), np.cos(tilt)]]) @ up_true_3
    unfilled_n4 = segments_off_mask(line_segments(rgb), boxes_mask(boxes_n4, w, h, PEOPLE_PAD_FRAC))
    filled_n4 = photo_segments(rgb, boxes_n4, photo_line_segments(rgb, boxes_n4))
    a = vertical_up([unfilled_n4], cam.camera.K_33, w, h, prior_3)
    b = vertical_up([filled_n4], cam.camera.K_33, w, h, prior_3)
    assert a is not None and b is not None and a.supported and b.supported
    assert np.degrees(np.arccos(min(1.0, float(a.up_cam_3 @ b.up_cam_3)))) < 0.05
    assert np.degrees(np.arccos(min(1.0, float(b.up_cam_3 @ up_true_3)))) < 1.5
    assert abs(b.n_inliers - a.n_inliers) <= 2


def _floor_image(T_44: np.ndarray, seed: int = 0, img: np.ndarray | None = None) -> np.ndarray:
    """Grey image of a floor's lines (world x and y, z = 0: tiles, a mat's edges), drawn onto `img` (else
    onto a blank one: no vertical line)."""
    rng = np.random.default_rng(seed)
    img = np.full((H, W, 3), 190, np.uint8) if img is None else img
    for k in range(16):
        d = np.array([1.0, 0, 0]) if k % 2 else np.array([0, 1.0, 0])
        p = np.array([rng.uniform(-2.5, 2.5), rng.uniform(2.5, 7.0), 0.0])
        a, b = _project(T_44, p), _project(T_44, p + rng.uniform(1.0, 2.0) * d)
        cv2.line(img, tuple(int(v) for v in a.round()), tuple(int(v) for v in b.round()), (40, 40, 40), 3, cv2.LINE_AA)
    return img


@pytest.mark.parametrize(("pitch", "roll"), [(20.0, 3.0), (30.0, -10.0)])
def test_manhattan_frame_of_floor_lines_alone_gives_the_up(pitch: float, roll: float) -> None:
    """Two horizontal vanishing points are the horizon: the floor's lines fix the up without any vertical
    segment, which the vertical vanishing point cannot."""
    T = camera_pose(1.6, pitch, roll)
    up_true = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    segments = line_segments(_floor_image(T))
    frame = manhattan_frame([segments], K_33, W, H, up_true)
    assert frame is not None and frame.supported
    assert np.degrees(np.arccos(np.clip(frame.up_cam_3 @ up_true, -1, 1))) < 0.7
    assert abs(pitch_deg(frame.up_cam_3) - pitch) < 0.7 and abs(roll_deg(frame.up_cam_3) - roll) < 0.7
    assert np.allclose(frame.R_33.T @ frame.R_33, np.eye(3), atol=1e-9)
    assert frame.n_inliers_3[frame.up_axis] <= 2  # the up comes from the two horizontal axes
    vp = vertical_up([segments], K_33, W, H, up_true)
    assert vp is None or not vp.supported


def test_manhattan_up_is_the_axis_nearest_the_image_up_whatever_the_bodies_say() -> None:
    """A body fitted tipped over (its up 40 degrees off) does not make a horizontal axis the up; the ground
    with the Manhattan frame has the true normal and the feet's offset."""
    T = camera_pose(1.6, 18.0, 5.0)
    up_true = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    people = [_person(T, (-0.5, 4.0), 40.0)]
    segments = line_segments(_floor_image(T, seed=1, img=_room_image(T, seed=1)))
    ground = fit_ground_with_vanishing([people], [segments], K_33, W, H, manhattan=True)
    assert ground is not None and ground.up_source == "manhattan_frame"
    assert np.degrees(np.arccos(np.clip(ground.normal_cam @ up_true, -1, 1))) < 0.5
    assert ground.vanishing["manhattan_frame"]["angle_to_bodies_deg"] > 30.0


def test_manhattan_frame_needs_two_supported_axes() -> None:
    """Lines of one direction only (one vanishing point) leave the up free about it: not supported."""
    T = camera_pose(1.6, 20.0, 3.0)
    img = np.full((H, W, 3), 190, np.uint8)
    rng = np.random.default_rng(4)
    for _ in range(12):
        p = np.array([rng.uniform(-2.5, 2.5), rng.uniform(2.5, 7.0), rng.uniform(0.0, 2.0)])
        a, b = _project(T, p), _project(T, p + np.array([0.0, 1.5, 0.0]))
        cv2.line(img, tuple(int(v) for v in a.round()), tuple(int(v) for v in b.round()), (40, 40, 40), 3, cv2.LINE_AA)
    frame = manhattan_frame([line_segments(img)], K_33, W, H, T[:3, :3] @ np.array([0.0, 0.0, 1.0]))
    assert frame is None or not frame.supported


@pytest.mark.parametrize("pitch", [55.0, 65.0])
def test_manhattan_up_of_a_camera_looking_steeply_down_is_the_vertical(pitch: float) -> None:
    """Past 45 degrees of pitch the floor's line away from the camera is nearer the image's up than the
    vertical is: the bodies' up (here right) decides together with it, so the up is not a horizontal axis."""
    T = camera_pose(1.6, pitch, 3.0)
    up_true = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    y_c = 1.6 / np.tan(np.radians(pitch))  # where the optical axis meets the floor
    rng = np.random.default_rng(2)
    img = np.full((H, W, 3), 190, np.uint8)
    for k in range(24):  # floor tiles' edges (world x and y) and short poles (world z) about that spot
        d = np.eye(3)[k % 3]
        p = np.array([rng.uniform(-1.2, 1.2), y_c + rng.uniform(-0.6, 0.6), 0.0])
        a, b = _project(T, p), _project(T, p + rng.uniform(0.4, 0.8) * d)
        cv2.line(img, tuple(int(v) for v in a.round()), tuple(int(v) for v in b.round()), (40, 40, 40), 3, cv2.LINE_AA)
    frame = manhattan_frame([line_segments(img)], K_33, W, H, up_true)
    assert frame is not None and frame.supported
    assert np.degrees(np.arccos(np.clip(frame.up_cam_3 @ up_true, -1, 1))) < 1.0
    ground = fit_ground_with_vanishing([[_person(T, (-0.3, y_c), 0.0)]], [line_segments(img)], K_33, W, H,
                                       manhattan=True)  # fmt: skip
    assert ground is not None and ground.up_source == "manhattan_frame"
    assert np.degrees(np.arccos(np.clip(ground.normal_cam @ up_true, -1, 1))) < 1.0


def test_manhattan_up_without_a_bodies_up_is_the_image_s() -> None:
    """No bodies' up (NaN, zero): the axis nearest the image's up, as with one."""
    T = camera_pose(1.6, 20.0, 3.0)
    up_true = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    segments = line_segments(_floor_image(T))
    for prior in (np.full(3, np.nan), np.zeros(3)):
        frame = manhattan_frame([segments], K_33, W, H, prior)
        assert frame is not None and np.degrees(np.arccos(np.clip(frame.up_cam_3 @ up_true, -1, 1))) < 0.7


def test_video_ground_option_takes_the_manhattan_frame_where_the_vertical_vanishing_point_is_unsupported() -> None:
    """The video ground's Manhattan option (tracking.feet.tracks_ground, manhattan=True): a static camera's
    sampled frames show a floor's lines and no vertical line, which leaves the vertical vanishing point
    unsupported, and the tracked person leans 6 degrees; the pooled Manhattan frame gives the true normal, the
    feet the height. Without it (`manhattan=False`, the video mode's default) the bodies' up is taken, 6 degrees
    off."""
    from pipelines.body.anny_points import OUTPUT_JOINT_NAMES
    from pipelines.tracking.feet import tracks_ground

    T = camera_pose(1.7, 22.0, 4.0)
    up_true = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    rows = []
    for i in range(20):
        b = _person(T, (-1.0 + 0.1 * i, 3.5 + 0.05 * i), 6.0)
        rows.append(np.stack([b.joints.get(n, b.joints["left_hip"]) for n in OUTPUT_JOINT_NAMES]))
    joints_fk3, frames = np.stack(rows), list(range(20))
    segs = [line_segments(_floor_image(T, seed=2))] * 4  # 4 sampled frames of a static camera
    ground = tracks_ground([joints_fk3], [frames], segs, K_33, (W, H), manhattan=True)
    before = tracks_ground([joints_fk3], [frames], segs, K_33, (W, H))
    assert ground is not None and before is not None
    assert ground.up_source == "manhattan_frame" and before.up_source == "bodies"
    assert not ground.vanishing["supported"]  # the vertical vanishing point of the same segments
    angle = np.degrees(np.arccos(np.clip(ground.normal_cam @ up_true, -1, 1)))
    angle_before = np.degrees(np.arccos(np.clip(before.normal_cam @ up_true, -1, 1)))
    assert angle < 0.7 < 3.0 < angle_before
    assert ground.camera_height_m == pytest.approx(1.7, abs=0.04)
