"""Video mode on real footage: every frame processed and logged, one stable id, smoothing lowers jitter,
the BVH reads back with a BVH library, bad videos give one-line messages and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_helpers import error_lines, run_cli

from app.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_SOME_FAILED, build_parser, main
from pipelines.modes.video import mean_joint_acceleration

STRIDE, END_S = 3, 1.0  # 20 frames of the 60 fps clip, at 20 Hz
MAX_SIDE = 960


@pytest.fixture(scope="module")
def single_video(data_dir: Path) -> Path:
    return data_dir / "multiview" / "pose2sim_single" / "cam01.mp4"


@pytest.fixture(scope="module")
def runs(single_video: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The CLI on the one-person clip, smoothed and not (same frames)."""
    out: dict[str, Path] = {}
    for name, extra in (("smooth", []), ("raw", ["--no-smooth", "--no-rrd"])):
        folder = tmp_path_factory.mktemp("video") / name
        code = main(["video", str(single_video), "--out", str(folder), "--stride", str(STRIDE), "--end", str(END_S),
                     "--max-side", str(MAX_SIDE), "--quiet", *extra])  # fmt: skip
        assert code == EXIT_OK
        out[name] = folder
    return out


def expected_frames() -> list[int]:
    return list(range(0, int(np.floor(END_S * 60 - 1e-9)) + 1, STRIDE))


def test_help_explains_every_flag() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["video"].format_help()
    for flag in ("--out", "--stride", "--start", "--end", "--max-side", "--focal-px", "--no-smooth", "--no-rrd",
                 "--fps", "--max-frames"):
        assert flag in text
    assert "static camera" in text and "metres" in text and "exit codes" in text


def test_every_frame_written_one_stable_id(runs: dict[str, Path]) -> None:
    from viz.rrd_read import timeline_values

    out = runs["smooth"]
    for name in ("tracks.json", "result.rrd", "track_0.npz", "track_0.bvh", "track_0.glb"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    doc = json.loads((out / "tracks.json").read_text())
    frames = expected_frames()
    assert doc["fps"] == pytest.approx(60.0)
    assert doc["frames"] == frames
    # The dancer keeps one id in every frame. This view also holds a bystander at its left edge (found by
    # the tiled detector): any other track is someone else, never a second id of the same person.
    track = doc["tracks"][0]
    assert track["id"] == 0 and track["frames"] == frames
    root_k = [doc["joint_names"].index(n) for n in ("left_hip", "right_hip")]
    roots = {t["id"]: np.median(np.array(t["joints3d_cam"])[:, root_k].mean(axis=1), axis=0) for t in doc["tracks"]}
    for other in doc["tracks"][1:]:
        assert set(other["frames"]) <= set(frames)
        assert np.linalg.norm(roots[other["id"]] - roots[0]) > 0.5, "a second track on the dancer"
    joints = np.array(track["joints3d_cam"])
    assert joints.shape == (len(frames), len(doc["joint_names"]), 3)
    # the ground under the feet of all frames: this camera (calibrated) is 1.86 m above the treadmill and
    # looks 22.5 degrees down
    ground = doc["ground"]
    assert ground["assumes"] == "a static camera"
    assert 1.2 < ground["camera_height_m"] < 2.6 and 10 < ground["pitch_deg"] < 35
    assert "left_ankle" in doc["joint_names"]
    assert 2.0 < float(np.median(joints[:, :, 2])) < 6.0  # metres in front of the camera
    assert 1.5 < track["height_m"] < 1.95
    K = np.array(doc["camera"]["K_33"])
    assert K.shape == (3, 3) and K[0, 2] == pytest.approx(540.0)  # source pixels (1080 wide)
    params = np.load(out / "track_0.npz")
    assert params["bone_rot_cam_fj33"].shape[0] == len(frames)
    assert list(params["frames"]) == frames
    # The recording: the video as an asset, and every processed frame on the frame timeline
    assert timeline_values(out / "result.rrd", "frame", "world/camera/image") == set(frames)
    assert timeline_values(out / "result.rrd", "frame", "world/people/0/skeleton") == set(frames)
    video_ns = timeline_values(out / "result.rrd", "video_time", "world/camera/image")
    assert sorted(video_ns) == pytest.approx([f / 60.0 * 1e9 for f in frames], abs=1e3)


def test_smoothing_lowers_jitter(runs: dict[str, Path]) -> None:
    acc = {}
    for name, out in runs.items():
        track = json.loads((out / "tracks.json").read_text())["tracks"][0]
        times = np.array(track["frames"]) / 60.0
        acc[name] = mean_joint_acceleration(np.array(track["joints3d_cam"]), times)
    assert np.isfinite(acc["raw"]) and acc["smooth"] < acc["raw"], acc


def test_bvh_reads_back(runs: dict[str, Path]) -> None:
    import bvhio

    from viz.bvh import bvh_joint_names

    out = runs["smooth"]
    n_frames = len(json.loads((out / "tracks.json").read_text())["tracks"][0]["frames"])
    root = bvhio.readAsHierarchy(str(out / "track_0.bvh"))
    joints = root.layout()
    assert len(joints) == 104
    assert len(root.Keyframes) == n_frames
    # The BVH root follows the fitted root, shifted along the ground to keep touching feet in place and
    # landed on the floor, in the ground's world frame (y up)
    params = np.load(out / "track_0.npz")
    root.loadPose(n_frames - 1)
    T = params["exports_T_cam_44"]
    to_file = lambda p: p @ T[:3, :3].T + T[:3, 3]  # noqa: E731 - camera frame -> the BVH's frame
    root_cam = params["root_pos_cam_f3"][-1] + params["feet_pin_shift_cam_f3"][-1]
    assert np.linalg.norm(params["feet_pin_shift_cam_f3"], axis=1).max() < 0.15  # a few cm, not a jump
    assert np.allclose(np.array(root.PositionWorld), to_file(root_cam), atol=1e-3)
    # ... and every joint sits at the fitted bone head: o_c = o_p + G_p (h_c - h_p)
    G, heads, parents = params["bone_rot_cam_fj33"][-1], params["rest_heads_j3"], params["bone_parents"]
    o = np.zeros_like(heads)
    o[0] = root_cam
    for c in range(1, len(parents)):
        o[c] = o[parents[c]] + G[parents[c]] @ (heads[c] - heads[parents[c]])
    names = bvh_joint_names([str(n) for n in params["bone_labels"]])
    for joint, *_ in joints:
        k = names.index(joint.Name)
        assert np.allclose(np.array(joint.PositionWorld), to_file(o[k]), atol=2e-3), joint.Name


def _accessor(gltf, i: int) -> np.ndarray:  # noqa: ANN001 - pygltflib.GLTF2
    a = gltf.accessors[i]
    view = gltf.bufferViews[a.bufferView]
    dtype = {5126: np.float32, 5123: np.uint16, 5125: np.uint32}[a.componentType]
    width = {"SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[a.type]
    return np.frombuffer(gltf.binary_blob(), dtype=dtype, count=a.count * width,
                         offset=view.byteOffset).reshape(a.count, width)  # fmt: skip


def test_glb_is_an_animated_skinned_body(runs: dict[str, Path]) -> None:
    """track_0.glb loads (pygltflib, trimesh), has one keyframe per processed frame and a joint per bone,
    and skinning its mesh with its own animation at the last frame gives the joints of tracks.json (moved
    along the ground as the feet pinning says)."""
    import pygltflib
    import trimesh

    from app.cli import _pipeline
    from pipelines.body.anny_points import output_joint_regressor

    out = runs["smooth"]
    doc = json.loads((out / "tracks.json").read_text())
    track = doc["tracks"][0]
    assert track["files"]["glb"] == "track_0.glb"
    assert len(trimesh.load(out / "track_0.glb", force="scene").geometry) == 1
    gltf = pygltflib.GLTF2().load(str(out / "track_0.glb"))
    params = np.load(out / "track_0.npz")
    (skin,), (anim,) = gltf.skins, gltf.animations
    assert len(skin.joints) == len(params["bone_labels"]) == 104
    times = {int(s.input) for s in anim.samplers}
    assert len(times) == 1
    keys_s = _accessor(gltf, times.pop())[:, 0]
    assert len(keys_s) == len(track["frames"])
    assert np.allclose(keys_s, np.array(track["frames"]) / 60.0, atol=1e-5)  # video time (60 fps)
    assert np.allclose(track["times_s"], keys_s, atol=1e-5)  # tracks.json says when each frame is
    # Pose the skeleton at the last keyframe from the file alone, skin the mesh, regress the joints.
    k = len(keys_s) - 1
    verts_gltf_v3 = _skinned_glb_verts(gltf, k)
    idx_s, weights_ks = output_joint_regressor(_pipeline().hmr.body)
    T = params["exports_T_cam_44"]  # camera frame -> the GLB's (the ground's world frame)
    joints_cam_k3 = (weights_ks @ verts_gltf_v3[idx_s] - T[:3, 3]) @ T[:3, :3]  # back to the camera frame
    expected_k3 = np.array(track["joints3d_cam"][k]) + params["feet_pin_shift_cam_f3"][k]  # feet kept in place
    err_mm = np.linalg.norm(joints_cam_k3 - expected_k3, axis=1) * 1e3
    assert err_mm.max() < 10.0, err_mm  # 4 of Anny's 9 skinning weights kept per vertex


def _skinned_glb_verts(gltf, k: int) -> np.ndarray:  # noqa: ANN001 - pygltflib.GLTF2
    """The GLB's mesh posed at keyframe k by its own skin and animation, as a player does (V, 3)."""
    from scipy.spatial.transform import Rotation

    (skin,), (anim,) = gltf.skins, gltf.animations
    animated: dict[int, dict[str, np.ndarray]] = {}
    for ch in anim.channels:
        animated.setdefault(ch.target.node, {})[ch.target.path] = _accessor(gltf, anim.samplers[ch.sampler].output)[k]
    parent = {c: i for i, n in enumerate(gltf.nodes) for c in n.children or []}

    def world(i: int) -> np.ndarray:
        node, m = gltf.nodes[i], np.eye(4)
        m[:3, :3] = Rotation.from_quat(animated.get(i, {}).get("rotation", node.rotation)).as_matrix()
        m[:3, 3] = animated.get(i, {}).get("translation", node.translation)
        return m if i not in parent else world(parent[i]) @ m

    ibm_j44 = _accessor(gltf, skin.inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    joint_j44 = np.stack([world(n) @ ibm_j44[j] for j, n in enumerate(skin.joints)])
    attrs = gltf.meshes[0].primitives[0].attributes
    v_h = np.c_[_accessor(gltf, attrs.POSITION), np.ones(gltf.accessors[attrs.POSITION].count)]
    idx_v4, w_v4 = _accessor(gltf, attrs.JOINTS_0).astype(int), _accessor(gltf, attrs.WEIGHTS_0)
    assert np.allclose(w_v4.sum(axis=1), 1.0, atol=1e-4)
    return np.einsum("vk,vkab,vb->va", w_v4, joint_j44[idx_v4], v_h)[:, :3]


def test_exports_stand_on_the_ground(runs: dict[str, Path]) -> None:
    """The GLB and the BVH are in the ground's world frame, y up: played from the files alone, the body
    stands upright on y = 0, its soles within a few cm of the floor on the frames a foot touches it."""
    import bvhio
    import pygltflib

    out = runs["smooth"]
    doc = json.loads((out / "tracks.json").read_text())
    assert "world frame" in doc["exports_frame"]
    track = doc["tracks"][0]
    touching = np.flatnonzero(np.array(track["foot_contact"]["left"]) | np.array(track["foot_contact"]["right"]))
    assert len(touching) >= 3
    gltf = pygltflib.GLTF2().load(str(out / "track_0.glb"))
    soles, heads = [], []
    for k in touching:
        y_v = _skinned_glb_verts(gltf, int(k))[:, 1]
        soles.append(float(y_v.min()))
        heads.append(float(y_v.max()))
    # metres: the lowest vertex on the floor; one view's depth error moves single frames by a few cm, and a
    # foot counts as touching up to the contact height above the track's floor level: no sole is further off
    from pipelines.tracking.feet import ContactOptions

    # (3.5 cm median: where the scene's vertical vanishing point gives the floor's up, a body's own tilt error
    # against it shows as a sole off the floor; with the bodies' up the floor followed the bodies: 3 cm)
    err = np.abs(soles)
    assert np.median(err) < 0.035 and np.mean(err < 0.05) >= 0.8, soles
    assert err.max() < ContactOptions().contact_height_m, soles
    assert np.all(np.array(heads) > 1.4), heads  # upright: the head 1.4+ m above it (the dancer is ~1.7 m)
    # The BVH: the same frame, its lowest bone heads (the toes) at the floor
    root = bvhio.readAsHierarchy(str(out / "track_0.bvh"))
    lowest = []
    for k in touching:
        root.loadPose(int(k))
        lowest.append(min(float(j.PositionWorld.y) for j, *_ in root.layout()))
    assert -0.03 < float(np.median(lowest)) < 0.1, lowest  # the lowest bone heads (toes) near the floor


def test_ground_plane_and_root_on_it(runs: dict[str, Path], single_video: Path) -> None:
    """The ground fitted to the feet agrees with the rig's calibrated floor; the roots are on it in metres;
    pinned feet slide less than the fitted ones; the plane and trajectory are in the recording."""
    from pipelines.multiview.calibration import load_qualisys_calibration
    from viz.rrd_read import entity_paths

    out = runs["smooth"]
    doc = json.loads((out / "tracks.json").read_text())
    ground = doc["ground"]
    assert ground is not None and ground["assumes"] == "a static camera"
    cam = load_qualisys_calibration(single_video.parent / "Calib.qca.txt")[0]
    floor_up_cam = cam.cam_T_world_44[:3, :3] @ np.array([0.0, 0.0, 1.0])  # the rig's world is z up
    angle = np.degrees(np.arccos(np.clip(np.dot(ground["normal_cam"], floor_up_cam), -1.0, 1.0)))
    assert angle < 20.0, angle
    assert abs(ground["camera_height_m"] - cam.centre_world_3[2]) < 0.5  # metres; 1.90 m in the rig
    track = doc["tracks"][0]
    root_w = np.array(track["root_world"])
    assert root_w.shape == (len(track["frames"]), 3)
    assert 0.6 < float(np.median(root_w[:, 1])) < 1.1  # the pelvis' height above the ground
    assert sum(track["foot_contact"]["left"]) + sum(track["foot_contact"]["right"]) > 0
    slide = track["foot_slide_cm_per_s"]
    assert slide["exported"] < slide["fitted"]
    paths = entity_paths(out / "result.rrd")
    assert "/world/ground/plane" in paths or "world/ground/plane" in paths
    assert any(p.strip("/") == "world/ground/trajectory/0" for p in paths)


def test_cancel_keeps_what_was_done(single_video: Path) -> None:
    """Closing the stream mid-way (a cancel) stops the decode and detection threads; the frames done stay."""
    import threading

    from app.cli import _pipeline
    from pipelines.io.video_io import probe, read_video
    from pipelines.modes.video import VideoOptions, VideoPipeline

    info = probe(single_video)
    vp = VideoPipeline(_pipeline(), VideoOptions(rate_hz=info.fps))
    stream = vp.run(read_video(info, stride=STRIDE, max_side=MAX_SIDE))
    for n, result in enumerate(stream, 1):
        assert result.people
        if n == 3:
            break
    stream.close()
    assert vp.frames_done == [0, STRIDE, 2 * STRIDE]
    assert len(vp.tracks[0].frames) == 3
    assert not [t for t in threading.enumerate() if t.name in ("video-detect", "video-decode")]


def test_unreadable_video(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "notes.mp4"
    bad.write_text("this is not a video")
    code, _, err = run_cli(["video", bad, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == EXIT_BAD_INPUT
    lines = error_lines(err)
    assert len(lines) == 1 and "notes.mp4" in lines[0] and "cannot be read" in lines[0]
    assert not (tmp_path / "out").exists()


def _write_avi(path: Path, frames_bgr: list[np.ndarray], fps: float = 60.0) -> None:
    h, w = frames_bgr[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for f in frames_bgr:
        writer.write(f)
    writer.release()


def _clip_frames(video: Path, n: int, size: tuple[int, int] = (540, 960)) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(video))
    frames = []
    for _ in range(n):
        ok, bgr = capture.read()
        assert ok
        frames.append(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA))
    capture.release()
    return frames


def test_truncated_video_keeps_decoded_frames(single_video: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    full = tmp_path / "full.avi"
    _write_avi(full, _clip_frames(single_video, 12))
    data = full.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out = tmp_path / "out"
    code, _, err = run_cli(["video", cut, "--out", out, "--stride", 2, "--quiet"], capsys)
    assert code == EXIT_SOME_FAILED
    lines = error_lines(err)
    assert len(lines) == 1 and "cut.avi" in lines[0] and "truncated" in lines[0]
    doc = json.loads((out / "tracks.json").read_text())
    assert 0 < len(doc["frames"]) < 6 and doc["tracks"][0]["frames"] == doc["frames"]
    assert any("truncated" in w for w in doc["warnings"])


def test_zero_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(empty), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (320, 240))
    writer.release()
    code, _, err = run_cli(["video", empty, "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == EXIT_BAD_INPUT
    lines = error_lines(err)
    assert len(lines) == 1 and "empty.avi" in lines[0]
    assert not (tmp_path / "out").exists()


def test_nobody_in_some_frames(single_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real = _clip_frames(single_video, 4)
    blank = [np.full_like(real[0], 128) for _ in range(3)]
    clip = tmp_path / "gap.avi"
    _write_avi(clip, blank + real)  # AVI/MJPEG: Rerun cannot read it as a video asset, JPEG frames instead
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["video", clip, "--out", out, "--quiet"], capsys)
    assert code == EXIT_OK
    assert "nobody found in 3 frame(s)" in stdout
    doc = json.loads((out / "tracks.json").read_text())
    assert doc["frames"] == list(range(7))
    assert doc["tracks"][0]["frames"] == [3, 4, 5, 6]  # the dancer (the bystander may be a second track)
    assert all(set(t["frames"]) <= {3, 4, 5, 6} for t in doc["tracks"])  # nobody in the blank frames


def test_folder_of_frames(single_video: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of frames plays in name order (frame_2 before frame_10) at --fps; a file that is not an
    image is skipped with a note; an empty folder says so."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, bgr in zip((1, 2, 10, 11), _clip_frames(single_video, 4), strict=True):
        cv2.imwrite(str(folder / f"frame_{i}.{'png' if i % 2 else 'jpg'}"), bgr)
    (folder / "frame_3.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("ignored")
    out = tmp_path / "out"
    code, stdout, _ = run_cli(["video", folder, "--out", out, "--fps", 25, "--quiet"], capsys)
    assert code == EXIT_OK
    doc = json.loads((out / "tracks.json").read_text())
    assert doc["fps"] == pytest.approx(25.0)
    assert doc["frames"] == [0, 1, 3, 4]  # frame_3.jpg (index 2) skipped
    assert doc["tracks"][0]["frames"] == [0, 1, 3, 4]
    assert any("frame_3.jpg" in w and "skipped" in w for w in doc["warnings"])
    assert "frame_3.jpg" in stdout
    assert doc["camera"]["width"] == 540  # the frames' own pixels
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli(["video", empty, "--out", tmp_path / "out2", "--quiet"], capsys)
    assert code == EXIT_BAD_INPUT
    (line,) = error_lines(err)
    assert "empty" in line and "no frames" in line
    assert not (tmp_path / "out2").exists()


def test_too_long_video_is_refused_up_front(single_video: Path, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """More frames than --max-frames: one sentence naming the file, its length and how to narrow it; a stride
    that brings it under the limit runs."""
    code, _, err = run_cli(["video", single_video, "--out", tmp_path / "out", "--max-frames", 30, "--quiet"], capsys)
    assert code == EXIT_BAD_INPUT
    (line,) = error_lines(err)
    assert "cam01.mp4" in line and "100 frames" in line and "--stride" in line and "--max-frames" in line
    assert not (tmp_path / "out").exists()


def test_feet_are_not_pinned_across_a_gap_in_the_track() -> None:
    """A person standing, unseen for 10 frames while walking 1 m, standing again: the exported motion
    must not pull them back to where they stood before the gap (the foot re-lands after it)."""
    from pipelines.body.anny_points import OUTPUT_JOINT_NAMES
    from pipelines.scene.ground import GroundPlane
    from pipelines.tracking.feet import break_contacts_at_gaps, pin_feet

    normal, offset = np.array([0.0, -1.0, 0.0]), 1.5  # level camera 1.5 m above the ground (y down)
    ground = GroundPlane(normal_cam=normal, offset_m=offset, contacts_cam_n3=np.zeros((0, 3)), source="test")
    frames = np.r_[np.arange(10), np.arange(20, 30)]
    times_s = frames / 30.0
    joints = np.zeros((len(frames), len(OUTPUT_JOINT_NAMES), 3))
    joints[..., 1], joints[..., 2] = offset, 4.0  # every joint on the ground, 4 m ahead
    joints[10:, :, 0] += 1.0  # after the gap the person stands 1 m to the right
    touching = {side: np.ones(len(frames), bool) for side in ("left", "right")}
    shift_naive = pin_feet(ground, joints, touching)
    assert abs(shift_naive[-1, 0] + 1.0) < 1e-6  # without the gap rule: pulled back by the metre walked
    shift = pin_feet(ground, joints, break_contacts_at_gaps(touching, times_s))
    assert np.abs(shift).max() < 1e-6  # standing still before and after: nothing to pin


def test_small_people_finds_the_bystander(data_dir: Path, tmp_path: Path) -> None:
    """pose2sim_multi's bystander, small at the frame's left edge, is missed by the whole-frame detector;
    --small-people (tiles when looking for newcomers) tracks him too, 1.5+ m left of the two dancers."""
    video = data_dir / "multiview" / "pose2sim_multi" / "cam01.mp4"
    lefts = {}
    for name, extra in (("plain", []), ("small", ["--small-people"])):
        out = tmp_path / name
        code = main(["video", str(video), "--out", str(out), "--stride", "10", "--end", "0.3", "--max-side", "1280",
                     "--no-rrd", "--quiet", *extra])  # fmt: skip
        assert code == EXIT_OK
        doc = json.loads((out / "tracks.json").read_text())
        hips = [doc["joint_names"].index(n) for n in ("left_hip", "right_hip")]
        lefts[name] = [float(np.median(np.array(t["joints3d_cam"])[:, hips, 0])) for t in doc["tracks"]]
    assert len(lefts["plain"]) == 2 and min(lefts["plain"]) > -1.0, lefts  # the two dancers only
    assert len(lefts["small"]) == 3 and min(lefts["small"]) < -1.5, lefts  # and the bystander, metres left
