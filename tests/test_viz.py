"""One frame's outputs: files, result.json schema, GLB/OBJ/NPZ, .rrd entities, overlay, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rerun as rr
import trimesh
from PIL import Image

from pipelines.keypoints import names
from pipelines.types import (
    BodyFit,
    Camera,
    FrameResult,
    Keypoints2D,
    Keypoints3D,
    PersonDetection,
    PersonResult,
)
from viz import export
from viz.blueprint import default_blueprint
from viz.outputs import write_outputs
from viz.rerun_log import RerunLogger, save_rrd, vertex_normals
from viz.rrd_read import entity_paths

W, H, F_PX = 640, 480, 500.0
GREY = 128
SPHERE_RADIUS_M, SPHERE_Z_M = 0.3, 3.0


def _sphere(radius: float, centre: tuple[float, float, float]) -> tuple[np.ndarray, np.ndarray]:
    mesh = trimesh.creation.icosphere(subdivisions=3, radius=radius)
    return np.asarray(mesh.vertices) + np.array(centre), np.asarray(mesh.faces)


def _person(
    pid: int, centre: tuple[float, float, float] | None, radius: float = SPHERE_RADIUS_M
) -> PersonResult:
    k = len(names.PROMPTABLE_NAMES)
    xy_k2 = np.full((k, 2), np.nan)
    conf_k = np.zeros(k)
    xy_k2[0] = (100.5, 100.5)  # nose: drawn
    conf_k[0] = 0.9
    xy_k2[1] = (500.5, 400.5)  # left_eye_inner: too unsure to draw
    conf_k[1] = 0.1
    mask_hw = np.zeros((H, W), dtype=np.float32)
    mask_hw[190:290, 270:370] = 0.9
    det = PersonDetection(
        bbox_xyxy=np.array([270.0, 190.0, 370.0, 290.0]),
        score=0.95,
        mask_hw=mask_hw,
        keypoints2d=Keypoints2D(names=list(names.PROMPTABLE_NAMES), xy_k2=xy_k2, conf_k=conf_k),
        keypoints3d_hip=Keypoints3D(names=list(names.BLAZEPOSE_NAMES), xyz_k3=np.zeros((33, 3)), frame="hip"),
    )
    if centre is None:
        return PersonResult(id=pid, detection=det, body=None)
    verts_v3, faces_f3 = _sphere(radius, centre)
    joint_names = [*names.COCO17_NAMES, "pelvis"]
    joints = Keypoints3D(
        names=joint_names, xyz_k3=np.array(centre) + np.zeros((len(joint_names), 3)), frame="cam"
    )
    body = BodyFit(
        model="anny",
        params={"pose_j3": np.zeros((24, 3)), "shape": np.arange(5.0)},
        verts_cam_v3=verts_v3,
        faces_f3=faces_f3,
        joints3d_cam=joints,
        height_m=1.75,
        reprojection_px_mean=2.5,
        reprojection_px_max=7.0,
        per_keypoint_px={"nose": 2.5},
    )
    return PersonResult(id=pid, detection=det, body=body)


def _frame(people: list[PersonResult], frame_index: int = 0) -> FrameResult:
    return FrameResult(
        image_rgb_hw3=np.full((H, W, 3), GREY, dtype=np.uint8),
        camera=Camera.from_focal(F_PX, W, H, "default"),
        people=people,
        timings_s={"segmentation": 0.1, "body": float(np.float32(0.25))},
        warnings=["no hands visible"],
        frame_index=frame_index,
    )


@pytest.fixture
def frame() -> FrameResult:
    return _frame([_person(0, (0.0, 0.0, SPHERE_Z_M)), _person(1, None)])


@pytest.fixture
def written(tmp_path: Path, frame: FrameResult) -> tuple[Path, list[Path]]:
    out_dir = tmp_path / "out"
    return out_dir, write_outputs(out_dir, frame, image_path="photos/ball.jpg")


# ----------------------------------------------------------------------------------------- files


def test_writes_every_file(written: tuple[Path, list[Path]]) -> None:
    out_dir, paths = written
    expected = {"result.json", "result.rrd", "overlay.png", "person_0.glb", "person_0.obj", "person_0.npz"}
    assert {p.name for p in paths} == expected
    assert {p.name for p in out_dir.iterdir()} == expected
    assert all(p.parent == out_dir and p.stat().st_size > 0 for p in paths)
    assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(".")]


def test_result_json_schema(written: tuple[Path, list[Path]]) -> None:
    out_dir, _ = written
    result = json.loads((out_dir / "result.json").read_text())
    assert result["image"] == {"path": "photos/ball.jpg", "width": W, "height": H}
    cam = result["camera"]
    assert np.allclose(cam["K_33"], [[F_PX, 0, W / 2], [0, F_PX, H / 2], [0, 0, 1]])
    assert cam["source"] == "default" and cam["convention"].startswith("OpenCV")
    assert cam["hfov_deg"] == pytest.approx(2 * np.degrees(np.arctan(W / 2 / F_PX)))
    p0, p1 = result["people"]
    assert p0["id"] == 0 and p0["bbox_xyxy"] == [270.0, 190.0, 370.0, 290.0] and p0["score"] == 0.95
    assert p0["keypoints2d"]["nose"] == [100.5, 100.5, 0.9]
    assert set(p0["keypoints2d"]) == set(names.PROMPTABLE_NAMES)
    assert p0["keypoints2d"]["left_hand_wrist"][:2] == [None, None]  # NaN -> null: strict JSON
    assert p0["joints3d_cam"]["pelvis"] == [0.0, 0.0, SPHERE_Z_M]
    assert p0["height_m"] == 1.75
    assert p0["body"]["model"] == "anny"
    assert p0["body"]["params_file"] == "person_0.npz"
    assert p0["body"]["mesh_glb"] == "person_0.glb" and p0["body"]["mesh_obj"] == "person_0.obj"
    assert p0["fit"]["reprojection_px_mean"] == 2.5 and p0["fit"]["reprojection_px_max"] == 7.0
    assert p1["id"] == 1 and p1["body"] is None and p1["keypoints2d"]["nose"][2] == 0.9
    assert result["timings_s"] == {"segmentation": 0.1, "body": 0.25}
    assert result["warnings"] == ["no hands visible"]


def test_glb_and_obj_load_upright(written: tuple[Path, list[Path]], frame: FrameResult) -> None:
    out_dir, _ = written
    body = frame.people[0].body
    assert body is not None
    expected_v3 = body.verts_cam_v3 * np.array([1.0, -1.0, -1.0])  # glTF axes: y up, z towards the viewer
    for name in ("person_0.glb", "person_0.obj"):
        mesh = trimesh.load(out_dir / name, force="mesh", process=False)
        assert len(mesh.vertices) == len(body.verts_cam_v3), name
        assert len(mesh.faces) == len(body.faces_f3), name
        assert np.allclose(mesh.vertices, expected_v3, atol=1e-5), name


def test_glb_is_laid_out_as_trimesh_exports_it() -> None:
    """The GLB writer (no trimesh import on the photo path) gives trimesh's file: the same JSON but the
    generator, the same binary chunk, vertex colours kept."""
    verts_v3, faces_f3 = _sphere(0.3, (0.1, -0.2, 2.5))
    verts_gltf_v3, faces, colors_v4 = export._gltf_arrays(verts_v3, faces_f3, (66, 135, 245))
    ours = export.glb_bytes(verts_gltf_v3, faces, colors_v4)
    theirs = trimesh.Trimesh(vertices=verts_gltf_v3, faces=faces, vertex_colors=colors_v4,
                             process=False).export(file_type="glb")  # fmt: skip

    def chunks(glb: bytes) -> tuple[dict, bytes]:
        n_json = int.from_bytes(glb[12:16], "little")
        assert int.from_bytes(glb[8:12], "little") == len(glb) and n_json % 4 == 0
        tree = json.loads(glb[20 : 20 + n_json])
        tree["asset"].pop("generator")
        return tree, glb[20 + n_json :]

    assert chunks(ours) == chunks(theirs)
    mesh = trimesh.load(trimesh.util.wrap_as_stream(ours), file_type="glb", force="mesh", process=False)
    assert np.allclose(mesh.vertices, verts_gltf_v3, atol=1e-6) and np.array_equal(mesh.faces, faces)
    assert (mesh.visual.vertex_colors == [66, 135, 245, 255]).all()


def test_params_npz(written: tuple[Path, list[Path]]) -> None:
    out_dir, _ = written
    with np.load(out_dir / "person_0.npz") as data:
        assert set(data.files) == {"pose_j3", "shape", "meta_json"}
        assert np.array_equal(data["shape"], np.arange(5.0))
        meta = json.loads(str(data["meta_json"]))
    assert meta["person_id"] == 0 and meta["model"] == "anny" and meta["image_size_wh"] == [W, H]


def test_rrd_entities(written: tuple[Path, list[Path]]) -> None:
    out_dir, _ = written
    paths = entity_paths(out_dir / "result.rrd")
    expected = {
        "world",
        "world/camera",
        "world/camera/image",
        "world/camera/image/people/0/mask",
        "world/camera/image/people/0/keypoints",
        "world/camera/image/people/1/mask",
        "world/camera/image/people/1/keypoints",
        "world/people",
        "world/people/0/mesh",
        "world/people/0/skeleton",
    }
    assert expected <= paths, expected - paths
    assert "world/people/1/mesh" not in paths


def test_rrd_has_blueprint(tmp_path: Path, frame: FrameResult) -> None:
    from rerun.chunk import RrdReader

    path = save_rrd(frame, tmp_path / "one.rrd", recording_id="test-recording")
    reader = RrdReader(path)
    assert [r.recording_id for r in reader.recordings()] == ["test-recording"]
    assert len(reader.blueprints()) == 1
    assert isinstance(default_blueprint(), rr.blueprint.Blueprint)


def test_logger_clears_people_who_left(tmp_path: Path) -> None:
    path = tmp_path / "video.rrd"
    rec = rr.RecordingStream("hmr-playground-test", recording_id="video")
    rec.save(path)
    logger = RerunLogger(rec, jpeg_quality=None)
    logger.log_setup()
    logger.log_frame(_frame([_person(0, (0.0, 0.0, 3.0)), _person(3, (0.5, 0.0, 4.0))], frame_index=0))
    logger.log_frame(_frame([_person(0, (0.1, 0.0, 3.0))], frame_index=1))
    rec.flush()
    rec.disconnect()
    paths = entity_paths(path)
    assert {"world/people/3/mesh", "world/people/3", "world/camera/image/people/3"} <= paths
    assert "pelvis" in logger.vocab_3d.names
    assert logger.vocab_3d.names[: len(names.PROMPTABLE_NAMES)] == names.PROMPTABLE_NAMES


# --------------------------------------------------------------------------------------- overlay


def _radius_px(uv_hw2: np.ndarray, centre_uv: tuple[float, float]) -> np.ndarray:
    return np.hypot(uv_hw2[..., 0] - centre_uv[0], uv_hw2[..., 1] - centre_uv[1])


def test_overlay_where_the_mesh_projects(written: tuple[Path, list[Path]]) -> None:
    out_dir, _ = written
    overlay = np.asarray(Image.open(out_dir / "overlay.png").convert("RGB")).astype(int)
    assert overlay.shape == (H, W, 3)
    v, u = np.mgrid[0:H, 0:W] + 0.5  # pixel centres
    r_px = _radius_px(np.stack([u, v], axis=-1), (W / 2, H / 2))
    disc_px = F_PX * SPHERE_RADIUS_M / np.sqrt(SPHERE_Z_M**2 - SPHERE_RADIUS_M**2)  # silhouette radius
    inside = r_px < disc_px - 2
    changed = (overlay != GREY).any(axis=2)
    assert changed[inside].all()
    blue = np.array(export.person_color(0))
    assert (overlay[inside][:, 2] > overlay[inside][:, 0]).all()  # person 0 is blue
    centre_rgb = overlay[H // 2, W // 2]
    assert np.abs(centre_rgb - (0.4 * GREY + 0.6 * blue)).max() <= 2  # facing the camera: full Lambert
    near_kp = np.hypot(u - 100.5, v - 100.5) < 12
    outside = (r_px > disc_px + 2) & ~near_kp
    assert not changed[outside].any()
    assert changed[int(100.5), int(100.5)]  # the confident keypoint is drawn; the unsure one is not
    assert not changed[400, 500]


def test_overlay_near_person_occludes_far_one() -> None:
    far = _person(0, (0.0, 0.0, 4.0), radius=0.5)
    near = _person(1, (0.2, 0.0, 2.0), radius=0.15)
    image = np.full((H, W, 3), GREY, dtype=np.uint8)
    camera = Camera.from_focal(F_PX, W, H, "default")
    for people in ([far, near], [near, far]):  # input order must not matter
        out = export.render_overlay(image, camera, people).astype(int)
        u_near = int(W / 2 + F_PX * 0.2 / 2.0)
        pixel = out[H // 2, u_near]
        expected = 0.4 * GREY + 0.6 * np.array(export.person_color(1))
        assert np.abs(pixel - expected).max() <= 3


# ----------------------------------------------------------------------------------- atomicity


def test_failure_leaves_previous_outputs(tmp_path: Path, frame: FrameResult, monkeypatch) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "old.txt").write_text("previous run")

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(export, "export_mesh_obj", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        write_outputs(out_dir, frame)
    assert [p.name for p in out_dir.iterdir()] == ["old.txt"]
    assert (out_dir / "old.txt").read_text() == "previous run"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary or backup folder left


def test_success_replaces_previous_outputs(tmp_path: Path, frame: FrameResult) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "old.txt").write_text("previous run")
    write_outputs(out_dir, frame)
    assert not (out_dir / "old.txt").exists() and (out_dir / "result.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


# -------------------------------------------------------------------------------------- helpers


def test_write_json_numpy_and_nan(tmp_path: Path) -> None:
    path = export.write_json(
        tmp_path / "x.json",
        {
            "a": np.float32(1.5),
            "b": np.int64(3),
            "c": np.arange(3),
            "d": float("nan"),
            "e": (Path("p"), True),
        },
    )
    assert json.loads(path.read_text()) == {"a": 1.5, "b": 3, "c": [0, 1, 2], "d": None, "e": ["p", True]}


def test_vertex_normals_of_sphere_are_radial() -> None:
    verts_v3, faces_f3 = _sphere(1.0, (0.0, 0.0, 0.0))
    normals_v3 = vertex_normals(verts_v3, faces_f3)
    assert np.allclose(np.linalg.norm(normals_v3, axis=1), 1.0)
    assert np.einsum("vi,vi->v", normals_v3, verts_v3).min() > 0.99


def test_vertex_normals_match_trimesh_on_an_uneven_mesh() -> None:
    """The animated GLB's normals (viz.gltf_anim, no trimesh import) against trimesh's angle-weighted ones,
    on an ellipsoid with uneven triangles: the same surface directions."""
    verts_v3, faces_f3 = _sphere(1.0, (0.0, 0.0, 0.0))
    rng = np.random.default_rng(0)
    verts_v3 = verts_v3 * np.array([0.3, 1.0, 0.6]) + rng.normal(0.0, 0.002, verts_v3.shape)
    ours_v3 = vertex_normals(verts_v3, faces_f3)
    theirs_v3 = trimesh.Trimesh(verts_v3, faces_f3, process=False).vertex_normals
    angle_deg = np.degrees(np.arccos(np.clip(np.einsum("vi,vi->v", ours_v3, theirs_v3), -1.0, 1.0)))
    assert np.median(angle_deg) < 1.0 and angle_deg.max() < 10.0


def test_vertex_normals_are_unit_for_unused_and_degenerate_vertices() -> None:
    """glTF requires unit NORMALs: a vertex outside every face, or only in a zero-area face, still gets one."""
    verts_v3 = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 5, 5], [2, 2, 2], [3, 3, 3]], dtype=np.float64)
    faces_f3 = np.array([[0, 1, 2], [4, 4, 5]])  # vertex 3 unused; 4 and 5 only in a degenerate face
    normals_v3 = vertex_normals(verts_v3, faces_f3)
    assert np.allclose(np.linalg.norm(normals_v3, axis=1), 1.0)
    assert np.allclose(normals_v3[0], [0.0, 0.0, 1.0])
