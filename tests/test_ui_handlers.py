"""The playground's callbacks called in-process, exactly as the page calls them.

Prompts (add, undo, clear, draw), photo upload and examples, streamed runs whose every chunk is a
valid Rerun recording holding the expected entities (pinhole, image, masks, 2D keypoints, a mesh
with Anny's 13,718 vertices), the interactive re-run after a click, downloads, plain-word errors,
and per-session cleanup.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import numpy as np
import pytest
from rerun.chunk import RrdReader

from app.ui import handlers as H
from app.ui import prompts as P
from app.ui.state import SessionRegistry, UISession
from pipelines.errors import BadPromptError

ANNY_VERTICES = 13718
LUNGE = H.EXAMPLES_DIR / "lunge.jpg"


# ------------------------------------------------------------------------------------- helpers


def decode_chunk(chunk: bytes, path: Path) -> dict[str, dict[str, Any]]:
    """Entity path -> {component column name -> arrow column}, read back with Rerun's own reader."""
    path.write_bytes(chunk)
    out: dict[str, dict[str, Any]] = {}
    for c in RrdReader(path).stream():
        batch = c.to_record_batch()
        cols = out.setdefault(c.entity_path.lstrip("/"), {})
        for name in batch.schema.names:
            cols[name] = batch.column(name)
    return out


def run_all(state: UISession, engine: H.Engine, **kwargs: Any) -> list[H.RunUpdate]:
    return list(H.on_run(state, engine=engine, **kwargs))


def person_centre_display(state: UISession) -> tuple[float, float]:
    """A point on the (first) person, in display pixels (what the canvas click gives)."""
    assert state.last_frame is not None
    mask_hw = state.last_frame.people[0].detection.mask_hw >= 0.5
    ys, xs = np.nonzero(mask_hw)
    i = int(np.argmin((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2))  # a mask pixel near the centroid
    return (xs[i] + 0.5) * state.display_scale, (ys[i] + 0.5) * state.display_scale


@pytest.fixture(scope="module")
def engine(pipeline) -> H.Engine:  # noqa: ANN001 - conftest's warm ImagePipeline
    return H.Engine(pipeline)


@pytest.fixture()
def state() -> UISession:
    s = UISession()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def ran(engine: H.Engine, tmp_path_factory: pytest.TempPathFactory) -> tuple[UISession, list[H.RunUpdate]]:
    """One session after a first run on lunge.jpg (shared by the read-only tests)."""
    s = UISession()
    H.on_upload(s, LUNGE)
    updates = run_all(s, engine)
    yield s, updates
    s.cleanup()


# ------------------------------------------------------------------------------- pure prompts


def test_prompts_add_undo_clear() -> None:
    h = P.PromptHistory()
    h = P.add_click(h, "positive", 10, 20, 100, 80)
    h = P.add_click(h, "negative", 30, 40, 100, 80)
    h = P.add_click(h, "box", 90, 70, 100, 80)
    assert h.pending and len(h.actions) == 2
    h = P.add_click(h, "box", 5, 6, 100, 80)  # opposite corner, any order
    h = P.add_click(h, "keypoint", 50, 60, 100, 80, joint="left_wrist")
    h = P.add_click(h, "keypoint", 52, 61, 100, 80, joint="left_wrist")  # moved: the last one counts
    prompts = P.to_prompts(h)
    np.testing.assert_allclose(prompts.points_n3, [[10, 20, 1], [30, 40, 0]])
    np.testing.assert_allclose(prompts.box_xyxy, [5, 6, 90, 70])
    assert prompts.keypoints == {"left_wrist": (52.0, 61.0)}

    h = P.undo(h)
    assert P.to_prompts(h).keypoints == {"left_wrist": (50.0, 60.0)}
    h = P.undo(P.undo(h))
    assert P.to_prompts(h).box_xyxy is None and len(h.actions) == 2
    pending = P.add_click(h, "box", 1, 1, 100, 80)
    assert P.undo(pending) == h  # undo drops a half-drawn box first
    assert P.to_prompts(P.clear(h)).is_empty()
    assert P.to_prompts(P.undo(P.PromptHistory())).is_empty()  # undo on nothing is harmless


def test_prompt_errors_are_plain() -> None:
    h = P.PromptHistory()
    with pytest.raises(BadPromptError, match="outside the 100x80 image"):
        P.add_click(h, "positive", 120, 10, 100, 80)
    with pytest.raises(BadPromptError, match="Choose which joint"):
        P.add_click(h, "keypoint", 10, 10, 100, 80)
    with pytest.raises(BadPromptError, match="Unknown joint"):
        P.add_click(h, "keypoint", 10, 10, 100, 80, joint="tail")
    with pytest.raises(BadPromptError, match="too close"):
        P.add_click(P.add_click(h, "box", 10, 10, 100, 80), "box", 11, 11, 100, 80)


def test_draw_prompts_colours_and_positions() -> None:
    base = np.full((200, 300, 3), 128, np.uint8)
    h = P.PromptHistory()
    for mode, x, y, joint in (("positive", 40, 50, None), ("negative", 120, 50, None),
                              ("keypoint", 200, 150, "right_knee")):  # fmt: skip
        h = P.add_click(h, mode, x * 2, y * 2, 600, 400, joint=joint)  # image is 2x the display
    h = P.add_click(P.add_click(h, "box", 20, 300, 600, 400), "box", 560, 380, 600, 400)
    out = P.draw_prompts(base, h, scale=0.5)
    assert out.shape == base.shape and (base == 128).all()  # the input is not modified
    assert tuple(out[50, 40]) == P.POSITIVE_RGB
    assert (out[46:55, 116:125] == P.NEGATIVE_RGB).all(axis=2).any()  # red, with a white cross at its centre
    assert tuple(out[150, 200]) == P.KEYPOINT_RGB
    assert (out[150:190, 10] == P.BOX_RGB).all(axis=1).any()  # left edge of the box at x = 10
    assert (out[140:150, 210:290] != 128).any()  # the joint name is written beside it


# ------------------------------------------------------------------------------ upload and clicks


def test_upload_and_click_in_display_pixels(state: UISession) -> None:
    canvas, status = H.on_upload(state, LUNGE)
    assert state.image is not None and state.image.rgb_hw3.shape == (1200, 801, 3)
    assert max(canvas.shape[:2]) <= H.CANVAS_MAX_SIDE and "lunge.jpg" in status
    s = state.display_scale
    canvas2, status = H.on_click(state, "positive", None, 400 * s, 600 * s)
    np.testing.assert_allclose(P.to_prompts(state.history).points_n3, [[400, 600, 1]], atol=1e-6)
    assert "1 positive" in status and not np.array_equal(canvas, canvas2)
    H.on_click(state, "keypoint", "left_ankle", 300 * s, 1100 * s)
    assert P.to_prompts(state.history).keypoints["left_ankle"] == pytest.approx((300, 1100))
    _, status = H.on_undo(state)
    assert not P.to_prompts(state.history).keypoints and "1 positive" in status
    canvas3, status = H.on_clear(state)
    assert P.to_prompts(state.history).is_empty() and "none" in status
    assert np.array_equal(canvas3, canvas)


def test_examples_load(state: UISession) -> None:
    for i, name in enumerate(H.EXAMPLE_NAMES):
        canvas, status = H.on_example(state, i)
        assert canvas is not None and name in status
    assert (H.EXAMPLES_DIR / "LICENSES.md").is_file()


# ------------------------------------------------------------------------------------ streaming


def test_run_streams_valid_rerun_chunks(ran: tuple[UISession, list[H.RunUpdate]], tmp_path: Path) -> None:
    state, updates = ran
    assert [u.stage for u in updates] == ["image", "detections", "bodies", "done"]
    decoded = [decode_chunk(u.chunk, tmp_path / f"{i}.rrd") for i, u in enumerate(updates) if u.chunk]
    assert len(decoded) == 3  # every stage sent something new on a first run

    image = decoded[0]
    pinhole = image["world/camera"]["Pinhole:image_from_camera"]
    assert len(pinhole) == 1 and "Pinhole:resolution" in image["world/camera"]
    assert "EncodedImage:blob" in image["world/camera/image"]

    det = decoded[1]
    kp = det["world/camera/image/people/0/keypoints"]["Points2D:positions"]
    assert len(kp[0]) >= 33  # BlazePose + visible hand keypoints
    assert "SegmentationImage:buffer" in det["world/camera/image/people/0/mask"]

    bodies = decoded[2]
    verts = bodies["world/people/0/mesh"]["Mesh3D:vertex_positions"]
    assert len(verts[0]) == ANNY_VERTICES
    xyz = np.asarray(verts[0].values.flatten()).reshape(-1, 3)
    assert np.isfinite(xyz).all() and 1.0 < np.median(xyz[:, 2]) < 10.0  # metres in front of the camera
    assert len(bodies["world/people/0/skeleton"]["Points3D:positions"][0]) >= 17
    assert "Pinhole:image_from_camera" in bodies["world/camera"]  # the estimated focal is re-logged
    assert "Done" in updates[-1].status and "m tall" in updates[-1].status


def test_click_after_run_reruns_only_the_fit(engine: H.Engine, state: UISession, tmp_path: Path) -> None:
    H.on_upload(state, LUNGE)
    first = run_all(state, engine)
    assert not H.wants_rerun(state) and state.active_runs == 0  # nothing changed since the run
    H.on_click(state, "positive", None, *person_centre_display(state))
    assert H.wants_rerun(state)
    updates = run_all(state, engine)
    by_stage = {u.stage: u for u in updates}
    assert by_stage["image"].chunk is None  # same photo, same camera: nothing re-sent
    timings = state.last_frame.timings_s
    assert "detect" not in timings and "keypoints" not in timings  # cached per session
    mesh = decode_chunk(by_stage["bodies"].chunk, tmp_path / "b.rrd")["world/people/0/mesh"]
    assert len(mesh["Mesh3D:vertex_positions"][0]) == ANNY_VERTICES
    assert len(by_stage["bodies"].chunk) < sum(len(u.chunk) for u in first if u.chunk)

    H.on_click(state, "box", None, 1, 1)  # half a box: no re-run yet
    assert not H.wants_rerun(state)
    H.on_undo(state)
    assert not H.wants_rerun(state)  # back to the prompts of the last run


def test_keypoint_prompt_moves_the_joint(engine: H.Engine, state: UISession) -> None:
    H.on_upload(state, LUNGE)
    run_all(state, engine)
    body = state.last_frame.people[0].body
    names = body.joints3d_cam.names
    wrist_cam = body.joints3d_cam.xyz_k3[names.index("left_wrist")]
    before_px = state.last_frame.camera.project(wrist_cam[None])[0]
    target_px = before_px + np.array([0.0, 40.0])
    H.on_click(state, "keypoint", "left_wrist", *(target_px * state.display_scale))
    run_all(state, engine)
    body = state.last_frame.people[0].body
    after_px = state.last_frame.camera.project(body.joints3d_cam.xyz_k3[names.index("left_wrist")][None])[0]
    assert np.linalg.norm(after_px - target_px) < np.linalg.norm(before_px - target_px)


def test_downloads(ran: tuple[UISession, list[H.RunUpdate]]) -> None:
    state, _ = ran
    state.downloads_run = -1
    files = [Path(f) for f in H.on_downloads(state)]
    names = {f.name for f in files}
    assert {"person_0.glb", "person_0.obj", "person_0.npz", "result.json", "result.rrd"} <= names
    assert all(f.is_file() and f.stat().st_size > 0 and state.tmp_dir in f.parents for f in files)
    assert H.on_downloads(state) is None  # nothing new since


def test_fov_override(engine: H.Engine, state: UISession) -> None:
    assert H.focal_from_fov(None, 1000) is None and H.focal_from_fov(0, 1000) is None
    assert H.focal_from_fov(90, 1000) == pytest.approx(500)
    with pytest.raises(gr.Error, match="between 5 and 175 degrees"):
        H.focal_from_fov(179, 1000)
    H.on_upload(state, LUNGE)
    run_all(state, engine, fov_deg=50)
    cam = state.last_frame.camera
    assert cam.source == "user" and cam.hfov_deg == pytest.approx(50, abs=0.01)


# ---------------------------------------------------------------------------------------- errors


def test_unreadable_upload_is_a_plain_error(state: UISession, tmp_path: Path) -> None:
    bad = tmp_path / "holiday.jpg"
    bad.write_text("this is not a photo")
    with pytest.raises(gr.Error, match="holiday.jpg is not an image"):
        H.on_upload(state, bad)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(LUNGE.read_bytes()[:5000])
    with pytest.raises(gr.Error, match="truncated"):
        H.on_upload(state, cut)
    assert state.image is None


def test_prompt_outside_image_is_a_plain_error(state: UISession) -> None:
    with pytest.raises(gr.Error, match="Upload a photo"):
        H.on_click(state, "positive", None, 10, 10)
    H.on_upload(state, LUNGE)
    with pytest.raises(gr.Error, match=r"outside the 801x1200 image"):
        H.on_click(state, "positive", None, 5000, 10)
    with pytest.raises(gr.Error, match="Choose which joint"):
        H.on_click(state, "keypoint", None, 10, 10)


def test_nobody_found_is_a_warning(engine: H.Engine, state: UISession, tmp_path: Path) -> None:
    empty = tmp_path / "wall.png"
    rng = np.random.default_rng(0)
    wall = cv2.GaussianBlur(rng.integers(90, 160, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    cv2.imwrite(str(empty), wall)
    H.on_upload(state, empty)
    with pytest.warns(UserWarning, match="No person was found"):
        updates = run_all(state, engine)
    assert "No person was found" in updates[-1].status
    with pytest.raises(gr.Error, match="Upload a photo"):
        run_all(UISession(), engine)


# ----------------------------------------------------------------------------------- sessions


def test_sessions_are_separate_and_cleaned_up(engine: H.Engine) -> None:
    registry = SessionRegistry()
    a, b = registry.get("tab-a"), registry.get("tab-b")
    assert registry.get("tab-a") is a and a is not b and len(registry) == 2
    for s in (a, b):
        H.on_upload(s, LUNGE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_all(a, engine)
    assert a.recording is not b.recording and a.tmp_dir != b.tmp_dir
    files = H.on_downloads(a)
    tmp = a.tmp_dir
    assert files and tmp.is_dir()
    assert registry.close("tab-a") and not tmp.exists() and a.closed
    assert not registry.close("tab-a")  # twice is harmless
    registry.close_all()
    assert len(registry) == 0 and b.closed


def test_page_builds(engine: H.Engine) -> None:
    from app.ui.page import build_demo

    demo = build_demo(engine)
    assert isinstance(demo, gr.Blocks)
    choices = H.backend_choices()
    assert "anny" in choices["body"][0] and "embedded" in choices["hmr"][0]
