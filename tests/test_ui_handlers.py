"""The playground's callbacks called in-process, exactly as the page calls them.

Prompts (add, undo, clear, draw), photo upload and examples, streamed runs whose every chunk is a
valid Rerun recording holding the expected entities (pinhole, image, masks, 2D keypoints, a mesh
with Anny's 13,718 vertices), the interactive re-run after a click, downloads, plain-word errors,
and per-session cleanup.
"""

from __future__ import annotations

import json
import threading
import time
import warnings
import xml.etree.ElementTree as ET
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


def _svg_shapes(svg: str) -> dict[str, list[dict[str, str]]]:
    """class -> attributes of each SVG element of that class in the canvas overlay."""
    root = ET.fromstring(f'<svg xmlns="http://www.w3.org/2000/svg">{svg}</svg>')
    out: dict[str, list[dict[str, str]]] = {}
    for el in root:
        out.setdefault(el.get("class", ""), []).append(dict(el.attrib))
    return out


def test_prompt_overlay_shapes_and_positions() -> None:
    h = P.PromptHistory()
    for mode, x, y, joint in (("positive", 40, 50, None), ("negative", 120, 50, None),
                              ("keypoint", 200, 150, "right_knee")):  # fmt: skip
        h = P.add_click(h, mode, x * 2, y * 2, 600, 400, joint=joint)  # image is 2x the display
    h = P.add_click(P.add_click(h, "box", 20, 300, 600, 400), "box", 560, 380, 600, 400)
    shapes = _svg_shapes(P.prompts_svg(h, 0.5, (300, 200)))
    [pos], [neg], [box] = shapes["pos"], shapes["neg"], shapes["box"]
    assert (float(pos["cx"]), float(pos["cy"])) == (40, 50) and pos["fill"] == "#28c83c"
    assert (float(neg["cx"]), float(neg["cy"])) == (120, 50) and neg["fill"] == "#e62828"
    assert [float(box[k]) for k in ("x", "y", "width", "height")] == [10, 150, 270, 40]
    assert len(shapes["kp"]) == 1 and "M200.0," in shapes["kp"][0]["d"]
    assert "right_knee" in P.prompts_svg(h, 0.5, (300, 200))  # the joint name is written beside it
    pending = P.add_click(h, "box", 100, 100, 600, 400)
    assert len(_svg_shapes(P.prompts_svg(pending, 0.5, (300, 200)))["corner"]) == 1
    assert P.prompts_svg(P.PromptHistory(), 0.5, (300, 200)) == ""


# ------------------------------------------------------------------------------ upload and clicks


def test_upload_and_click_in_display_pixels(state: UISession) -> None:
    canvas, status = H.on_upload(state, LUNGE)
    assert state.image is not None and state.image.rgb_hw3.shape == (1200, 801, 3)
    assert max(canvas["w"], canvas["h"]) <= H.CANVAS_MAX_SIDE and "lunge.jpg" in status
    assert canvas["src"].startswith("data:image/jpeg;base64,") and canvas["svg"] == ""
    s = state.display_scale
    canvas2, status = H.on_click(state, "positive", None, 400 * s, 600 * s)
    np.testing.assert_allclose(P.to_prompts(state.history).points_n3, [[400, 600, 1]], atol=1e-6)
    assert "1 positive" in status and canvas2["rev"] == canvas["rev"] + 1
    assert canvas2["src"] == canvas["src"]  # the photo under the mouse never changes, only the overlay
    [dot] = _svg_shapes(canvas2["svg"])["pos"]
    assert float(dot["cx"]) == pytest.approx(400 * s, abs=0.1) and float(dot["cy"]) == pytest.approx(600 * s, abs=0.1)
    H.on_click(state, "keypoint", "left_ankle", 300 * s, 1100 * s)
    assert P.to_prompts(state.history).keypoints["left_ankle"] == pytest.approx((300, 1100))
    _, status = H.on_undo(state)
    assert not P.to_prompts(state.history).keypoints and "1 positive" in status
    canvas3, status = H.on_clear(state)
    assert P.to_prompts(state.history).is_empty() and "none" in status
    assert canvas3["svg"] == canvas["svg"] == ""


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
    assert not H.needs_run(state) and state.active_runs == 0  # nothing changed since the run
    H.on_click(state, "positive", None, *person_centre_display(state))
    assert H.needs_run(state)
    updates = run_all(state, engine)
    by_stage = {u.stage: u for u in updates}
    assert by_stage["image"].chunk is None  # same photo, same camera: nothing re-sent
    timings = state.last_frame.timings_s
    assert "detect" not in timings and "keypoints" not in timings  # cached per session
    mesh = decode_chunk(by_stage["bodies"].chunk, tmp_path / "b.rrd")["world/people/0/mesh"]
    assert len(mesh["Mesh3D:vertex_positions"][0]) == ANNY_VERTICES
    assert len(by_stage["bodies"].chunk) < sum(len(u.chunk) for u in first if u.chunk)

    H.on_click(state, "box", None, 1, 1)  # half a box: no re-run yet
    assert not H.needs_run(state)
    H.on_undo(state)
    assert not H.needs_run(state)  # back to the prompts of the last run


def test_an_edit_during_a_run_is_kept_for_the_next_run(engine: H.Engine, state: UISession) -> None:
    H.on_upload(state, LUNGE)
    run_all(state, engine)
    xy = person_centre_display(state)
    H.on_click(state, "positive", None, *xy)
    run = H.on_run(state, engine=engine)
    next(run)  # the run has taken its snapshot and streams its first stage
    H.on_click(state, "negative", None, 2, 2)  # arrives while it runs
    done = [u for u in run if u.stage == "done"][-1]
    assert "Prompts used: 1 positive." in done.status and "newer prompts are not in it yet" in done.status
    assert P.summary(state.history) == "1 positive, 1 negative"  # nothing was lost
    assert state.shown.snapshot.revision < state.revision and H.needs_run(state)
    updates = list(H.run_latest(state, engine=engine))
    assert updates[0].files == [] and [u.stage for u in updates].count("done") == 1  # downloads cleared, then
    final = updates[-1]  # the status and the downloads of the new result arrive together
    assert final.stage == "done" and "Prompts used: 1 positive, 1 negative." in final.status
    assert "newer" not in final.status and any(f.endswith("result.json") for f in final.files)
    assert not H.needs_run(state)


def test_a_click_and_its_undo_need_no_new_run(engine: H.Engine, state: UISession) -> None:
    H.on_upload(state, LUNGE)
    list(H.run_latest(state, engine=engine))
    frame = state.last_frame
    H.on_click(state, "positive", None, 5, 5)
    H.on_undo(state)  # back to the prompts of the shown result, two revisions later
    assert not H.needs_run(state)
    [update] = list(H.run_latest(state, engine=engine))
    assert update.stage == "done" and update.files and state.last_frame is frame  # nothing re-ran
    assert f"rev-{state.revision}" in update.status and "newer" not in update.status
    assert list(H.run_latest(state, engine=engine)) == []  # then there is nothing left to do


def test_quick_clicks_during_runs_end_in_one_consistent_result(engine: H.Engine, state: UISession) -> None:
    """Clicks from another thread while runs go (as the page's light events arrive): none is lost, the
    last run uses all of them, and its status, its mesh and its downloads agree."""
    H.on_upload(state, LUNGE)
    run_all(state, engine)
    cx, cy = person_centre_display(state)
    offsets = [(-6, 0), (0, -6), (6, 0), (0, 6)]

    def clicker() -> None:
        for dx, dy in offsets:
            H.on_click(state, "positive", None, cx + dx, cy + dy)
            time.sleep(0.05)
        H.on_undo(state)

    H.on_click(state, "positive", None, cx, cy)
    thread = threading.Thread(target=clicker)
    thread.start()
    updates = list(H.run_latest(state, engine=engine))
    thread.join()
    updates += list(H.run_latest(state, engine=engine))  # the page's deferred trigger (trigger_mode always_last)

    assert P.summary(state.history) == "4 positive"  # 1 + 4 clicks, 1 undo: every edit applied once, in order
    assert state.shown.snapshot.revision == state.revision and not H.needs_run(state)
    final = updates[-1]
    assert final.stage == "done" and "Prompts used: 4 positive." in final.status and "newer" not in final.status
    runs = [u for u in updates if u.stage == "image"]
    assert len(runs) <= 1 + len(offsets) + 1  # runs coalesce: never more runs than edits
    files = [Path(f) for f in final.files]
    result = json.loads(next(f for f in files if f.name == "result.json").read_text())
    np.testing.assert_allclose(result["prompts"]["points"], P.to_prompts(state.history).points_n3)
    body = state.last_frame.people[0].body
    joints = result["people"][0]["joints3d_cam"]
    np.testing.assert_allclose([joints[n] for n in body.joints3d_cam.names], body.joints3d_cam.xyz_k3, atol=1e-9)


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
    files = [Path(f) for f in H.on_downloads(state)]
    names = {f.name for f in files}
    assert {"person_0.glb", "person_0.obj", "person_0.npz", "result.json", "result.rrd"} <= names
    assert all(f.is_file() and f.stat().st_size > 0 and state.tmp_dir in f.parents for f in files)
    mtime = (state.tmp_dir / "result" / "result.json").stat().st_mtime_ns
    assert [Path(f) for f in H.on_downloads(state)] == files  # written once per result
    assert (state.tmp_dir / "result" / "result.json").stat().st_mtime_ns == mtime


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
