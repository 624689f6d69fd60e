"""The photo's output path made faster must write the same things: OBJ text, overlay pixels,
every file of a frame (also when a worker thread fails), the session's line segments detected once."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from pipelines.io.atomic import process_umask
from pipelines.types import Camera
from tests.test_viz import _frame, _person
from viz import export, outputs
from viz.outputs import write_outputs


def _reference_obj(verts_v3: np.ndarray, faces_f3: np.ndarray, color_rgb: tuple[int, int, int]) -> str:
    """The OBJ text line by line, as the exporter wrote it before (numpy's colour, one line at a time)."""
    v = verts_v3 @ export.GLTF_T_CAM_33.T
    rgb = np.asarray(color_rgb, dtype=np.float64) / 255.0
    lines = ["# hmr-playground mesh: metres; axes x right, y up, z towards the viewer (camera at origin)\n"]
    lines += ["v %.6f %.6f %.6f %.4f %.4f %.4f\n" % (*p.tolist(), *rgb.tolist()) for p in v]  # noqa: UP031
    lines += ["f %d %d %d\n" % tuple(f.tolist()) for f in faces_f3 + 1]  # noqa: UP031
    return "".join(lines)


def test_obj_text_is_the_line_by_line_text(tmp_path: Path) -> None:
    frame = _frame([_person(0, (0.1, -0.2, 3.0))])
    body = frame.people[0].body
    for color in [(66, 135, 245), (0, 0, 0), (255, 1, 128)]:  # the face lines are cached, the colour is not
        path = export.export_mesh_obj(tmp_path / "m.obj", body.verts_cam_v3, body.faces_f3, color)
        assert path.read_text() == _reference_obj(body.verts_cam_v3, body.faces_f3, color)
    other_faces = body.faces_f3[::-1].copy()  # another topology: its own lines
    path = export.export_mesh_obj(tmp_path / "m.obj", body.verts_cam_v3, other_faces, (1, 2, 3))
    assert path.read_text() == _reference_obj(body.verts_cam_v3, other_faces, (1, 2, 3))


def _whole_image_index(pts_f32: np.ndarray, order: np.ndarray, w: int, h: int) -> np.ndarray:
    index_hw = np.full((h, w), -1, dtype=np.int32)
    for f in order.tolist():
        cv2.fillConvexPoly(index_hw, pts_f32[f], f, cv2.LINE_8, 4)
    return index_hw


@pytest.mark.parametrize("spread_px", [30.0, 400.0, 5000.0])
def test_face_index_in_the_box_is_the_whole_images(spread_px: float) -> None:
    """The overlay rasterises the triangles' box only: the same face indices as a whole-image buffer, for
    triangles inside, across the image's edges (clipped there) and far outside."""
    w, h = 160, 120
    rng = np.random.default_rng(int(spread_px))
    centre_n2 = rng.uniform([-20, -20], [w + 20, h + 20], (300, 2))
    uv_f32 = centre_n2[:, None, :] + rng.normal(0, 1, (300, 3, 2)) * rng.uniform(0.5, spread_px, (300, 1, 1))
    pts_f32 = np.rint(uv_f32 * 16).astype(np.int32)
    order = rng.permutation(300)
    box_hw, (x0, y0) = export.face_index_in_box(pts_f32, order, w, h)
    full_hw = _whole_image_index(pts_f32, order, w, h)
    assert (full_hw >= 0).sum() > 500
    expected = np.full_like(full_hw, -1)
    expected[y0 : y0 + box_hw.shape[0], x0 : x0 + box_hw.shape[1]] = box_hw
    np.testing.assert_array_equal(expected, full_hw)
    empty_hw, _ = export.face_index_in_box(pts_f32[:0], order[:0], w, h)
    assert empty_hw.size == 0


def test_overlay_of_a_mesh_behind_the_camera_is_the_photo() -> None:
    person = _person(0, (0.0, 0.0, -3.0))
    person.detection.keypoints2d.conf_k[:] = 0.0
    image = np.full((48, 64, 3), 9, np.uint8)
    out = export.render_overlay(image, Camera.from_focal(50.0, 64, 48, "default"), [person])
    np.testing.assert_array_equal(out, image)


def test_write_outputs_in_parallel_writes_every_file_whole(tmp_path: Path) -> None:
    frame = _frame([_person(0, (0.0, 0.0, 3.0)), _person(1, None), _person(2, (0.5, 0.0, 4.0))])
    paths = write_outputs(tmp_path / "out", frame)
    names = [p.name for p in paths]
    assert names == ["person_0.npz", "person_0.glb", "person_0.obj", "person_2.npz", "person_2.glb",
                     "person_2.obj", "result.rrd", "result.json", "overlay.png"]  # fmt: skip
    overlay = np.asarray(Image.open(tmp_path / "out" / "overlay.png").convert("RGB"))
    np.testing.assert_array_equal(overlay, export.render_overlay(frame.image_rgb_hw3, frame.camera, frame.people))
    mode = 0o666 & ~process_umask()
    for p in paths:
        assert p.stat().st_size > 0 and (p.stat().st_mode & 0o777) == mode, p.name


@pytest.mark.parametrize("failing", ["_write_overlay", "_write_rrd"])
def test_a_failing_worker_leaves_the_previous_outputs(tmp_path: Path, monkeypatch, failing: str) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "old.txt").write_text("previous run")

    def boom(*args: object) -> None:
        raise RuntimeError("no space left")

    monkeypatch.setattr(outputs, failing, boom)
    with pytest.raises(RuntimeError, match="no space left"):
        write_outputs(out_dir, _frame([_person(0, (0.0, 0.0, 3.0))]))
    assert [p.name for p in out_dir.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_process_umask_reads_without_changing() -> None:
    before = os.umask(0o027)
    try:
        assert process_umask() == 0o027
        assert process_umask() == 0o027  # still set: nothing reset it to 0
    finally:
        os.umask(before)


@pytest.fixture
def line_calls(monkeypatch) -> list[tuple[int, ...]]:  # noqa: ANN001
    """The shapes of the photos whose line segments the image mode detects (its worker's calls, counted)."""
    from pipelines.modes import image as image_mode

    calls: list[tuple[int, ...]] = []
    detect = image_mode.photo_line_segments

    def counted(rgb_hw3: np.ndarray, boxes_n4: np.ndarray | None = None) -> np.ndarray:
        calls.append(rgb_hw3.shape)
        return detect(rgb_hw3, boxes_n4)

    monkeypatch.setattr(image_mode, "photo_line_segments", counted)
    return calls


def test_a_session_detects_the_photos_line_segments_once(pipeline, lunge_path, line_calls) -> None:  # noqa: ANN001
    """The segments depend on the photo only: a prompt edit reuses them (the scene stage waits for no new
    detection); another photo in the same session gets its own."""
    from pipelines.io.image_io import load_image
    from pipelines.modes import image as image_mode
    from pipelines.modes.image import ImageSession
    from pipelines.types import Prompts

    photo = load_image(lunge_path)
    session = ImageSession()
    first = pipeline.run(photo, session=session)
    kp = first.people[0].detection.keypoints2d
    knee = kp.xy_k2[kp.names.index("right_knee")]
    edit = Prompts(keypoints={"right_knee": (float(knee[0]) + 10, float(knee[1]))})
    second = pipeline.run(photo, prompts=edit, session=session)
    assert len(line_calls) == 1 and session.line_segments is not None
    assert first.scene.ground.vanishing is not None and second.scene.ground.vanishing is not None
    other = np.ascontiguousarray(photo.rgb_hw3[:, ::-1])  # another photo in the same session: detected anew
    pipeline.run(image_mode.LoadedImage(rgb_hw3=other, path=None, exif_focal_px=None, exif_note=None,
                                        warnings=[]), session=session)  # fmt: skip
    assert len(line_calls) == 2


def test_a_failed_line_detection_in_the_worker_is_redone_and_tried_again(pipeline, lunge_path,
                                                                                   monkeypatch) -> None:  # noqa: ANN001
    """The photo still gets its bodies and its vanishing point (the scene stage detects the lines itself);
    the next prompt edit of the session detects them again instead of repeating the failure."""
    from pipelines.io.image_io import load_image
    from pipelines.modes import image as image_mode
    from pipelines.modes.image import ImageSession
    from pipelines.types import Prompts

    calls: list[int] = []
    detect = image_mode.photo_line_segments

    def fails_once(rgb_hw3: np.ndarray, boxes_n4: np.ndarray | None = None) -> np.ndarray:
        calls.append(1)
        if len(calls) == 1:
            raise cv2.error("LSD: out of memory")
        return detect(rgb_hw3, boxes_n4)

    monkeypatch.setattr(image_mode, "photo_line_segments", fails_once)
    photo = load_image(lunge_path)
    session = ImageSession()
    first = pipeline.run(photo, session=session)
    assert first.people[0].body is not None and first.scene.ground.vanishing is not None
    kp = first.people[0].detection.keypoints2d
    knee = kp.xy_k2[kp.names.index("right_knee")]
    second = pipeline.run(photo, prompts=Prompts(keypoints={"right_knee": (float(knee[0]) + 10, float(knee[1]))}),
                          session=session)  # fmt: skip
    assert len(calls) == 2 and second.scene.ground.vanishing is not None


def test_a_photo_with_nobody_detects_no_line_segments(pipeline, line_calls) -> None:  # noqa: ANN001
    """The segments start once the people are detected: with nobody found no body can use them, so none are
    detected (the LSD is ~0.2 s of CPU), and the result says nobody was found."""

    rgb = np.full((480, 640, 3), 128, np.uint8)
    rgb[100:400, 300:310] = 30  # a pole: a vertical line, no person
    result = pipeline.run_array(rgb)
    assert result.people == [] and any("No person" in w for w in result.warnings)
    assert line_calls == []
    assert result.scene is not None and result.scene.ground is None


def test_two_failing_writers_raise_the_first_and_log_the_other(tmp_path: Path, monkeypatch, caplog) -> None:  # noqa: ANN001
    def overlay_fails(*args: object) -> None:
        raise RuntimeError("overlay: no space left")

    def recording_fails(*args: object) -> None:
        raise OSError("recording: read-only file system")

    monkeypatch.setattr(outputs, "_write_overlay", overlay_fails)
    monkeypatch.setattr(outputs, "_write_rrd", recording_fails)
    with pytest.raises(RuntimeError, match="overlay: no space left"):
        write_outputs(tmp_path / "out", _frame([_person(0, (0.0, 0.0, 3.0))]))
    assert "recording: read-only file system" in caplog.text
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
