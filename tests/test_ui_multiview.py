"""The Multi-view tab's callbacks called in-process, as the page calls them, on the tab's example (4 small
clips of Pose2Sim's Demo_SinglePerson and their calibration).

A short run reports progress as frames read of all views' planned frames, ends with the report (median
reprojection, a table row per camera) in the status, the whole recording for the viewer and the
downloads; Cancel stops it and writes nothing; a missing, mismatched or unreadable input gives one sentence.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import gradio as gr
import pytest

from app.multiview_run import prepare_calibration
from app.ui import multiview_handlers as MH
from app.ui.handlers import EXAMPLES_DIR
from app.ui.multiview_state import MultiviewSession
from pipelines.multiview.formats import load_calibration, save_opencv_yml
from viz.rrd_read import timeline_values

N_FRAMES = 8
EXAMPLE = [str(p) for p in MH.EXAMPLE_VIDEOS]
CALIB = [str(MH.EXAMPLE_CALIBRATION)]


@pytest.fixture()
def state() -> MultiviewSession:
    s = MultiviewSession()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def full_run() -> tuple[MultiviewSession, list[MH.MultiviewUpdate], list[tuple]]:
    s = MultiviewSession()
    calls: list[tuple] = []

    def progress(value: object, **kw: object) -> None:
        calls.append((value, kw))

    updates = list(MH.on_multiview_run(s, EXAMPLE, CALIB, n_frames=N_FRAMES, progress=progress, poll_s=0.05))
    yield s, updates, calls
    s.cleanup()


def test_example_is_small_scaled_and_credited() -> None:
    assert len(MH.EXAMPLE_VIDEOS) == 4 and all(0 < p.stat().st_size <= 300 * 1024 for p in MH.EXAMPLE_VIDEOS)
    cams = load_calibration(MH.EXAMPLE_CALIBRATION)
    assert [c.name for c in cams] == ["cam01", "cam02", "cam03", "cam04"]
    assert all(c.camera.height == 640 for c in cams)  # the intrinsics follow the clips' size (a third)
    notes = (EXAMPLES_DIR / "LICENSES.md").read_text()
    assert "multiview/cam01.mp4" in notes and "BSD" in notes


def test_run_reports_progress_table_and_downloads(full_run) -> None:  # noqa: ANN001
    state, updates, calls = full_run
    assert updates[0].files == [] and updates[0].chunk is None
    # Progress: frames read of all views' planned frames (Gradio shows the bar and its ETA from these)
    tuples = [v for v, _ in calls if isinstance(v, tuple)]
    assert tuples and all(t[1] == 4 * N_FRAMES for t in tuples) and tuples[-1][0] <= 4 * N_FRAMES
    assert any("frame" in (u.status or "") and "of 32" in (u.status or "") for u in updates[1:-1])
    last = updates[-1]
    assert last.frames_read == 4 * N_FRAMES
    status = last.status or ""
    assert status.startswith(f"**Done**: {N_FRAMES} frames of 4 views") and "Traceback" not in status
    names = [Path(f).name for f in last.files or []]
    assert {"tracks.json", "report.json", "calibration.json", "track_0.trc", "track_0.bvh", "track_0.glb",
            "result.rrd"} <= set(names)  # fmt: skip
    assert "Anny bodies" in (last.status or "")
    out = Path(last.files[0]).parent
    report = json.loads((out / "report.json").read_text())
    # The report's figures, as the status shows them: the median and one table row per camera
    assert f"Median reprojection **{report['median_reproj_px']:.1f} px**" in status
    assert report["median_reproj_px"] < 5.0  # pixels of the 640-px clips
    cells = [line.split("|")[1:-1] for line in status.splitlines() if line.startswith("| cam0")]
    rows = {c[0].strip(): c[1:] for c in cells}
    assert sorted(rows) == ["cam01", "cam02", "cam03", "cam04"]
    for v in report["views"]:
        video, offset, reproj, rot, moved = (c.strip() for c in rows[v["name"]])
        assert video == f"{v['name']}.mp4" and abs(float(offset) - v["time_offset_frames"]) <= 0.051
        assert abs(float(reproj) - v["median_reproj_px"]) <= 0.051
        assert abs(float(rot) - v["rotation_change_deg"]) <= 0.006
        assert abs(float(moved) - v["translation_change_m"]) <= 6e-4
    tracks = json.loads((out / "tracks.json").read_text())
    assert len(tracks["tracks"]) == 1 and 1.5 < tracks["tracks"][0]["height_m"] < 1.95
    # The viewer gets the whole recording, which holds every fused frame
    assert last.chunk == (out / "result.rrd").read_bytes()
    assert timeline_values(out / "result.rrd", "frame") == set(range(N_FRAMES))
    assert not state.running


def test_cancel_stops_and_writes_nothing(state: MultiviewSession) -> None:
    def progress(value: object, **_: object) -> None:  # Cancel pressed once frames are being read
        if isinstance(value, tuple) and value[0] >= 2:
            MH.on_multiview_cancel(state)

    updates = list(MH.on_multiview_run(state, EXAMPLE, CALIB, n_frames=20, progress=progress, poll_s=0.02))
    last = updates[-1]
    assert (last.status or "").startswith("**Cancelled**") and "nothing was written" in last.status
    assert last.files == [] and last.frames_read < 4 * 20
    assert not any(state.tmp_dir.glob("run-*/outputs/*")) and not state.running


def test_no_calibration_estimates_the_cameras_from_the_people(state: MultiviewSession) -> None:
    updates = list(MH.on_multiview_run(state, EXAMPLE, None, n_frames=15))
    status = updates[-1].status or ""
    assert status.startswith("**Done**") and "estimated from the people" in status and "1.70 m" in status
    files = {Path(f).name: Path(f) for f in updates[-1].files or []}
    assert {"calibration.json", "track_0.glb"} <= set(files)
    assert not state.running
    # The estimated cameras against the example's calibration: relative rotations within 12 degrees on these 15
    # frames of 640-px clips (9 here; 3-4 on 100 full-size frames, README); a wrong pose is off by tens of degrees
    import numpy as np
    from scipy.spatial.transform import Rotation

    from pipelines.multiview.formats import load_calibration

    est = {c.name: c.cam_T_world_44[:3, :3] for c in load_calibration(files["calibration.json"])}
    given = {c.name: c.cam_T_world_44[:3, :3] for c in load_calibration(MH.EXAMPLE_CALIBRATION)}
    ref = sorted(est)[0]
    errors = [np.degrees(Rotation.from_matrix(est[n] @ est[ref].T @ (given[n] @ given[ref].T).T).magnitude())
              for n in sorted(est) if n != ref]  # fmt: skip
    assert len(errors) == 3 and max(errors) < 12.0, errors


def test_mismatched_calibration_names_the_counts(state: MultiviewSession, tmp_path: Path) -> None:
    videos = []
    for i, src in enumerate(MH.EXAMPLE_VIDEOS[:3]):  # 3 videos whose names do not name the 4 cameras
        videos.append(tmp_path / f"view_{'abc'[i]}.mp4")
        shutil.copyfile(src, videos[-1])
    with pytest.raises(gr.Error, match=r"describes 4 camera\(s\).*but 3 video\(s\)"):
        list(MH.on_multiview_run(state, [str(v) for v in videos], CALIB))


def test_corrupt_video_is_named(state: MultiviewSession, tmp_path: Path) -> None:
    bad = tmp_path / "cam02.mp4"
    bad.write_bytes(b"\x00not a video" * 500)
    with pytest.raises(gr.Error, match="cam02.mp4 cannot be read"):
        list(MH.on_multiview_run(state, [EXAMPLE[0], str(bad), *EXAMPLE[2:]], CALIB))
    with pytest.raises(gr.Error, match="at least two videos"):
        list(MH.on_multiview_run(state, EXAMPLE[:1], CALIB))


def test_intri_and_extri_uploaded_apart_are_read_together(tmp_path: Path) -> None:
    cams = load_calibration(MH.EXAMPLE_CALIBRATION)
    intri, extri = save_opencv_yml(cams, tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()  # Gradio puts each upload in its own folder
    up_i, up_e = shutil.move(intri, tmp_path / "a" / "intri.yml"), shutil.move(extri, tmp_path / "b" / "extri.yml")
    path = prepare_calibration([up_e, up_i], tmp_path / "work")
    back = load_calibration(path)
    assert [c.name for c in back] == [c.name for c in cams]
    assert all(abs(b.camera.K_33[0, 0] - c.camera.K_33[0, 0]) < 1e-6 for b, c in zip(back, cams, strict=True))


def test_page_has_the_multiview_tab() -> None:
    from app.ui.handlers import Engine
    from app.ui.page import build_demo

    demo = build_demo(Engine())  # no model is loaded to lay the page out
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"multiview-videos", "multiview-calibration", "multiview-example", "multiview-run", "multiview-cancel",
            "multiview-viewer", "multiview-status", "multiview-downloads", "video-upload"} <= ids  # fmt: skip
    uploads = [b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "multiview-videos"]
    assert uploads[0].file_count == "multiple"
    assert "Multi-view" in [b.label for b in demo.blocks.values() if isinstance(b, gr.Tab)]
