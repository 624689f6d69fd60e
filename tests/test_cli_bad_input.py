"""Bad input and Ctrl-C on the `video` and `multiview` command lines and the Multi-view tab, as a new user
meets them: one sentence naming the file and the problem, the documented exit code, and nothing already
written lost. Fast: no model runs (the long stages are replaced where a test needs them to be reached)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pytest
from cli_helpers import error_lines, run_cli

from app.ui import multiview_handlers as MH
from app.ui.multiview_state import MultiviewSession
from pipelines.errors import UserFacingError
from pipelines.io.video_io import probe
from pipelines.modes import multiview as mv_mode
from pipelines.multiview.calibration import make_camera
from pipelines.multiview.formats import load_calibration, save_qualisys


def _mv_args(single_dir: Path, out: Path) -> list[object]:
    videos = [single_dir / f"cam0{i}.mp4" for i in range(1, 5)]
    return ["multiview", "--videos", *videos, "--out", out, "--frames", 4, "--no-body", "--no-rrd", "--quiet"]


def test_calibration_without_a_camera_of_one_video_names_that_video(cams) -> None:  # noqa: ANN001
    videos = [Path(f"/clips/cam0{i}.mp4") for i in range(1, 5)]
    with pytest.raises(UserFacingError, match=r"^The calibration Calib.qca.txt has no camera for cam04.mp4 \(its 3 "
                                              r"camera\(s\): cam01, cam02, cam03; 4 video\(s\)"):  # fmt: skip
        mv_mode.match_cameras(videos, cams[:3], "Calib.qca.txt")
    with pytest.raises(UserFacingError, match=r"The videos cam01.mp4 and cam01.mp4 both name camera cam01"):
        mv_mode.match_cameras(videos[:1] * 2, cams, "Calib.qca.txt")
    assert [c.name for c in mv_mode.match_cameras(videos[:3], cams, "C")] == ["cam01", "cam02", "cam03"]
    same = [videos[0], videos[1], videos[2], Path("/other/cam01.mp4")]  # as many videos as cameras, cam01 twice
    with pytest.raises(UserFacingError, match=r"The videos cam01.mp4 and cam01.mp4 both name camera cam01"):
        mv_mode.match_cameras(same, cams, "Calib.qca.txt")
    unnamed = [Path(f"/clips/view_{k}.mp4") for k in "abcd"]  # no camera names: the calibration's order
    assert [c.name for c in mv_mode.match_cameras(unnamed, cams, "C")] == [c.name for c in cams]


def test_ui_upload_of_four_videos_with_a_three_camera_calibration(tmp_path: Path) -> None:
    calib3 = save_qualisys(load_calibration(MH.EXAMPLE_CALIBRATION)[:3], tmp_path / "Calib3.qca.txt")
    state = MultiviewSession()
    try:
        with pytest.raises(gr.Error, match=r"Calib3.qca.txt has no camera for cam04.mp4"):
            list(MH.on_multiview_run(state, [str(p) for p in MH.EXAMPLE_VIDEOS], [str(calib3)], n_frames=4))
        assert not state.running
    finally:
        state.cleanup()


def test_sizeless_calibration_for_another_image_size_leaves_the_view_out(single_dir: Path, cams) -> None:  # noqa: ANN001
    """EasyMocap's intri.yml gives no image size: a principal point far from the video's centre (a calibration
    of 640x480 images for a 1080x1920 video) is said, instead of a run that silently finds nobody."""
    info = probe(single_dir / "cam01.mp4")
    K = cams[0].camera.K_33.copy()
    sizeless = make_camera("cam01", K, cams[0].dist_k, cams[0].cam_T_world_44, None, None)
    assert not sizeless.size_known and mv_mode.fit_camera_to_video(sizeless, info)[0] is not None
    K[:2, 2] = (320, 240)
    wrong = dataclasses.replace(sizeless, camera=dataclasses.replace(sizeless.camera, K_33=K))
    fitted, note = mv_mode.fit_camera_to_video(wrong, info)
    assert fitted is None
    assert note.startswith("cam01.mp4 is 1080x1920 but camera cam01 of the calibration has its principal point at "
                           "(320, 240), far from the image centre")  # fmt: skip


def test_multiview_out_under_a_file_is_told_before_the_run(
    tmp_path: Path, single_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_run(*_a: object, **_k: object) -> None:
        raise AssertionError("the run started although --out cannot be written")

    monkeypatch.setattr(mv_mode, "run_multiview", no_run)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    code, _, err = run_cli(_mv_args(single_dir, blocker / "out"), capsys)
    assert code == 2
    assert error_lines(err) == [f"error: Cannot write into {blocker / 'out'}: {blocker} is a file, not a folder."]
    code, _, err = run_cli(_mv_args(single_dir, blocker), capsys)
    assert code == 2 and error_lines(err) == [f"error: The output path {blocker} exists and is not a folder."]
    assert blocker.read_text() == "not a folder"


def test_ctrl_c_in_multiview_says_nothing_was_written_and_keeps_the_old_outputs(
    tmp_path: Path, single_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(*_a: object, **_k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mv_mode, "run_multiview", interrupted)
    out = tmp_path / "out"
    out.mkdir()
    (out / "tracks.json").write_text("{}")  # an earlier run's result
    code, _, err = run_cli(_mv_args(single_dir, out), capsys)
    assert code == 130
    [line] = error_lines(err)
    assert line.startswith("error: interrupted: nothing was written") and "photo" not in line
    assert sorted(p.name for p in out.iterdir()) == ["tracks.json"] and (out / "tracks.json").read_text() == "{}"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no staging folder left behind


def test_ctrl_c_before_the_first_video_frame_does_not_speak_of_a_photo(
    tmp_path: Path, single_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import app.cli as cli

    def interrupted(_config: object) -> None:  # Ctrl-C while the models load
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_pipeline", interrupted)
    clip = tmp_path / "clip.mp4"
    shutil.copyfile(single_dir / "cam01.mp4", clip)
    out = tmp_path / "out"
    out.mkdir()
    (out / "tracks.json").write_text("{}")  # an earlier run's result
    code, _, err = run_cli(["video", clip, "--out", out, "--quiet"], capsys)
    assert code == 130
    [line] = error_lines(err)
    assert line.startswith("error: interrupted before the first frame was processed") and "photo" not in line
    assert [p.name for p in out.iterdir()] == ["tracks.json"] and sorted(p.name for p in tmp_path.iterdir()) == [
        "clip.mp4", "out"]


def test_multiview_summary_without_anybody_fused_says_so(
    tmp_path: Path, single_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A capture where nobody is fused (or a camera that sees nobody) prints "n/a" / "no fused person seen", not
    Python's None, beside the error line that says why."""
    import viz.multiview_outputs as mv_out

    result = SimpleNamespace(fusion=SimpleNamespace(n_frames=4, people=[]), infos=[None] * 4, bodies=[],
                             warnings=["no person is seen by two views: nothing can be triangulated."])  # fmt: skip
    views = [{"name": f"cam0{i}", "time_offset_frames": None, "median_reproj_px": None, "rotation_change_deg": None,
              "translation_change_m": None} for i in range(1, 5)]  # fmt: skip
    monkeypatch.setattr(mv_mode, "run_multiview", lambda *_a, **_k: result)
    monkeypatch.setattr(mv_out, "write_outputs", lambda *_a, **_k: [tmp_path / "out" / "tracks.json"])
    monkeypatch.setattr(mv_out, "report_dict", lambda _r: {"median_reproj_px": None, "plain_median_reproj_px": None,
                                                           "fused_fps": 2.0, "views": views})  # fmt: skip
    code, out, err = run_cli(_mv_args(single_dir, tmp_path / "out"), capsys)
    assert code == 3 and "None" not in out
    assert "median reprojection n/a (plain triangulation n/a)" in out and "  cam04: no fused person seen" in out
    assert error_lines(err) == ["error: no person is seen by two views: nothing can be triangulated."]


def test_ctrl_c_while_the_multiview_outputs_are_written_still_writes_them(
    tmp_path: Path, single_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The run is done when its outputs are written: a first Ctrl-C there is told and the files still land
    (before, they were dropped with the whole run), the exit code still 130 (a script stops as the user asked);
    a second one stops at once."""
    import os
    import signal

    import viz.multiview_outputs as mv_out

    result = SimpleNamespace(fusion=SimpleNamespace(n_frames=4, people=[]), infos=[None] * 4, bodies=[], warnings=[])
    monkeypatch.setattr(mv_mode, "run_multiview", lambda *_a, **_k: result)
    monkeypatch.setattr(mv_out, "report_dict", lambda _r: {"median_reproj_px": 1.0, "plain_median_reproj_px": 2.0,
                                                           "fused_fps": 2.0, "views": []})  # fmt: skip
    presses: list[int] = [1]
    before = signal.getsignal(signal.SIGINT)

    def write_after_ctrl_c(_result: object, out: Path, **_k: object) -> list[Path]:
        for _ in presses:
            os.kill(os.getpid(), signal.SIGINT)
        out.mkdir()
        (out / "tracks.json").write_text("{}")
        return [out / "tracks.json"]

    monkeypatch.setattr(mv_out, "write_outputs", write_after_ctrl_c)
    code, out, err = run_cli(_mv_args(single_dir, tmp_path / "out"), capsys)
    assert code == 130 and "wrote 1 file(s)" in out and (tmp_path / "out" / "tracks.json").is_file()
    assert "note: Ctrl-C: the fused views are being written first; press Ctrl-C again" in err
    presses.append(2)
    code, _, err = run_cli(_mv_args(single_dir, tmp_path / "out2"), capsys)
    assert code == 130 and not (tmp_path / "out2").exists()
    assert error_lines(err)[-1].startswith("error: interrupted: nothing was written")
    assert signal.getsignal(signal.SIGINT) is before  # restored


def test_ctrl_c_while_the_video_outputs_are_written_still_writes_them_and_exits_130(
    tmp_path: Path, single_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The video's frames are done when its outputs are written: a Ctrl-C there is told, the files land and the
    exit code is 130, as for a Ctrl-C during the frames (a script that runs several videos stops)."""
    import os
    import signal

    import app.cli as cli
    import pipelines.modes.video as video_mode
    import viz.video_outputs as video_out

    class OneFrame:  # the video pipeline, one empty frame done (no model runs)
        def __init__(self, *_a: object, **_k: object) -> None:
            self.frames_done, self.tracks, self.camera = [0], {}, None
            self.prompts = SimpleNamespace(problems=[])

        def run(self, _frames: object):  # noqa: ANN202 - the results, one per frame
            yield SimpleNamespace(people=[], warnings=[], backends={})

        def close(self) -> None:
            pass

    class Outputs:
        ground = None

        def __init__(self, out: Path, *_a: object, **_k: object) -> None:
            self.out = Path(out)

        def add(self, _result: object) -> None:
            pass

        def abort(self) -> None:
            pass

        def finish(self, *_a: object) -> list[Path]:
            os.kill(os.getpid(), signal.SIGINT)
            self.out.mkdir()
            (self.out / "tracks.json").write_text("{}")
            return [self.out / "tracks.json"]

    monkeypatch.setattr(cli, "_pipeline", lambda _config: None)
    monkeypatch.setattr(video_mode, "VideoPipeline", OneFrame)
    monkeypatch.setattr(video_out, "VideoOutputs", Outputs)
    clip = tmp_path / "clip.mp4"
    shutil.copyfile(single_dir / "cam01.mp4", clip)
    code, out, err = run_cli(["video", clip, "--out", tmp_path / "out", "--quiet"], capsys)
    assert "note: Ctrl-C: the 1 frame(s) done are being written first; press Ctrl-C again" in err
    assert code == 130 and "wrote 1 file(s)" in out and (tmp_path / "out" / "tracks.json").is_file()
