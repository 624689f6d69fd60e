"""Video prompts on pose2sim_multi cam01 (two people): a click selects one person (one track, on that person),
a negative click drops one, a joint correction moves that joint on its frame and fades out over ~1 s; the
CLI's prompt flags, their messages and tracks.json's record of them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import error_lines, run_cli

from app.cli import EXIT_BAD_INPUT, EXIT_OK, EXIT_SOME_FAILED
from pipelines.tracking.prompts import CARRY_S, VideoPrompts

STRIDE, END_S, MAX_SIDE = 6, 1.05, 640  # frames 0, 6, ..., 60 of the 60 fps clip (0 to 1 s), 363x640
WRIST = "left_wrist"
SHIFT = np.array([30.0, 24.0])  # source pixels


@pytest.fixture(scope="module")
def video(data_dir: Path) -> Path:
    return data_dir / "multiview" / "pose2sim_multi" / "cam01.mp4"


def _run(video: Path, prompts: VideoPrompts | None) -> dict[int, dict[int, tuple[np.ndarray, ...]]]:
    """Per frame index, per track id: box (4,), body keypoints (33, 2) as fitted, and the fitted body's
    wrist projected into the frame (2,); source pixels."""
    from app.cli import _pipeline
    from pipelines.io.video_io import probe, read_video
    from pipelines.modes.video import VideoOptions, VideoPipeline

    info = probe(video)
    pipe = VideoPipeline(_pipeline(), VideoOptions(rate_hz=info.fps / STRIDE, mesh_hz=0), prompts=prompts)
    out: dict[int, dict[int, tuple[np.ndarray, np.ndarray]]] = {}
    for r in pipe.run(read_video(info, stride=STRIDE, end_s=END_S, max_side=MAX_SIDE)):
        s = r.frame.scale
        out[r.frame.index] = {p.id: (np.asarray(p.detection.bbox_xyxy) / s, p.detection.keypoints2d.xy_k2[:33] / s,
                                     _projected(r.camera.K_33, p.body.joints3d_cam, WRIST) / s)
                              for p in r.people if p.body is not None}  # fmt: skip
    return out


def _projected(K_33: np.ndarray, joints3d_cam, name: str) -> np.ndarray:  # noqa: ANN001 - Keypoints3D
    xyz = np.asarray(joints3d_cam.xyz_k3[joints3d_cam.names.index(name)], dtype=np.float64)
    uvw = K_33 @ xyz
    return uvw[:2] / uvw[2]


@pytest.fixture(scope="module")
def baseline(video: Path) -> dict[int, dict[int, tuple[np.ndarray, np.ndarray]]]:
    base = _run(video, None)
    assert all(set(people) == {0, 1} for people in base.values()), "both people on every frame"
    return base


def _centre(box: np.ndarray) -> tuple[float, float]:
    return float(box[0] + box[2]) / 2, float(box[1] + box[3]) / 2


def test_a_point_selects_one_person_who_keeps_their_id(video: Path, baseline: dict) -> None:
    for chosen in (0, 1):
        x, y = _centre(baseline[0][chosen][0])
        prompts = VideoPrompts()
        prompts.add_point(0, x, y, 1)
        run = _run(video, prompts)
        assert list(run) == list(baseline)
        for index, people in run.items():
            assert list(people) == [chosen], (index, list(people))  # exactly one track, the clicked one
            box = people[chosen][0]
            assert np.abs(box - baseline[index][chosen][0]).max() < 15.0  # on that person all along (px)


def test_a_negative_point_drops_a_person_from_its_frame_on(video: Path, baseline: dict) -> None:
    frames = list(baseline)
    at = frames[3]
    prompts = VideoPrompts()
    prompts.add_point(at, *_centre(baseline[at][0][0]), 0)
    run = _run(video, prompts)
    for index, people in run.items():
        assert set(people) == ({0, 1} if index < at else {1}), (index, list(people))


def test_a_joint_correction_moves_the_joint_then_fades(video: Path, baseline: dict) -> None:
    from pipelines.keypoints.names import BLAZEPOSE_NAMES

    k = BLAZEPOSE_NAMES.index(WRIST)
    frames = list(baseline)
    target = baseline[0][1][1][k] + SHIFT
    prompts = VideoPrompts()
    prompts.add_point(0, *_centre(baseline[0][1][0]), 1)
    prompts.add_keypoint(0, WRIST, *target)
    run = _run(video, prompts)
    shift = {i: run[i][1][1][k] - baseline[i][1][1][k] for i in frames}
    assert np.linalg.norm(run[0][1][1][k] - target) < 1.0  # on its frame: where the user put it
    # ... and the fitted body's wrist follows it (most of the way: the fit weighs every joint)
    before, after = (float(np.linalg.norm(r[0][1][2] - target)) for r in (baseline, run))
    assert after < before - 0.5 * np.linalg.norm(SHIFT), (before, after)
    # Later frames: the same shift in units of the person's box, fading out linearly over CARRY_S
    wh_0 = baseline[0][1][0][2:] - baseline[0][1][0][:2]
    for i in frames:
        wh = baseline[i][1][0][2:] - baseline[i][1][0][:2]
        fade = max(0.0, 1.0 - i / 60.0 / CARRY_S)
        assert np.linalg.norm(shift[i] - fade * SHIFT / wh_0 * wh) < 1.0, (i, shift[i])
    half = min(frames, key=lambda i: abs(i / 60.0 - CARRY_S / 2))
    assert 0.1 * np.linalg.norm(SHIFT) < np.linalg.norm(shift[half]) < np.linalg.norm(shift[0])
    assert np.linalg.norm(shift[frames[-1]]) < 1e-6  # 1 s later: gone
    others = [j for j in range(33) if j != k]
    assert np.abs(run[0][1][1][others] - baseline[0][1][1][others]).max() < 1e-6  # the other joints stay


def test_prompts_validate_against_the_video(video: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "out"
    base = ["video", video, "--out", out, "--stride", STRIDE, "--end", 0.1, "--max-side", MAX_SIDE, "--quiet"]
    cases = {
        "--point=0:2000,100": "the point at (2000, 100) on frame 0 is outside the 1088x1920 video",
        "--point=500:100,100": "a prompt is on frame 500, but the video has frames 0 to 99",
        "--point=3:100,100": "a prompt is on frame 3, which is not processed",
        "--keypoint=0:elbow=10,10": "unknown joint name 'elbow' on frame 0",
        "--box=0:10,10,5,50": "the box (10, 10, 5, 50) on frame 0 is empty",
    }
    for flag, message in cases.items():
        code, _, err = run_cli([*base, flag], capsys)
        assert code == EXIT_BAD_INPUT, (flag, err)
        assert message in err, (flag, err)
        assert not out.exists()


def test_badly_written_prompt_flags_are_usage_errors(video: Path, capsys: pytest.CaptureFixture) -> None:
    from app.cli import main

    for flag, message in {"--point=0:1,2,3": "the label must be 1", "--point=x:1,2": "expected F:x,y[,1|0]",
                          "--keypoint=0:left_wrist": "expected NAME=x,y", "--box=2:1,2,3": "expected 4"}.items():
        with pytest.raises(SystemExit) as exc:
            main(["video", str(video), "--out", "x", flag])
        assert exc.value.code == EXIT_BAD_INPUT
        assert message in capsys.readouterr().err, flag


def test_cli_records_prompts_and_says_when_a_point_is_on_nobody(video: Path, tmp_path: Path, baseline: dict,
                                                                capsys: pytest.CaptureFixture) -> None:  # fmt: skip
    x, y = _centre(baseline[0][1][0])
    out = tmp_path / "sel"
    args = ["video", video, "--out", out, "--stride", STRIDE, "--end", 0.2, "--max-side", MAX_SIDE, "--quiet",
            "--no-rrd", "--mesh-hz", 0]  # fmt: skip
    code, stdout, err = run_cli([*args, f"--point=0:{x:.0f},{y:.0f}", "--keypoint", "6:left_wrist=500,900"], capsys)
    assert code == EXIT_OK, err
    doc = json.loads((out / "tracks.json").read_text())
    assert [t["id"] for t in doc["tracks"]] == [1]
    assert doc["options"]["prompts"] == {"0": {"points": [[round(x), round(y), 1]], "boxes": [], "keypoints": {}},
                                         "6": {"points": [], "boxes": [], "keypoints": {"left_wrist": [500, 900]}}}
    # A point in the empty top-left corner: a clear sentence, the outputs still written, exit code 3
    out2 = tmp_path / "nobody"
    code, _, err = run_cli([*args[:3], out2, *args[4:], "--point=0:5,5"], capsys)
    assert code == EXIT_SOME_FAILED
    assert error_lines(err) == ["error: the point at (5, 5) on frame 0 is on nobody; nothing was selected"]
    assert (out2 / "tracks.json").is_file()


def test_a_selected_person_lost_for_long_is_selected_again_when_found() -> None:
    """A box selects the left person; they are hidden for longer than the tracker keeps a track, so they
    come back with a new id: that id is selected in their place (with a note), the person on the right
    stays unselected, and a newcomer far from where the lost person was is not selected."""
    from pipelines.tracking.prompts import PromptSelector
    from pipelines.tracking.tracker import PersonTracker
    from pipelines.types import Keypoints2D, PersonDetection

    def person(x0: float) -> PersonDetection:
        box = np.array([x0, 100.0, x0 + 100.0, 400.0])
        xy_k2 = np.c_[np.linspace(x0 + 10, x0 + 90, 33), np.linspace(110, 390, 33)]
        return PersonDetection(box, 0.9, keypoints2d=Keypoints2D([f"k{i}" for i in range(33)], xy_k2, np.ones(33)))

    prompts = VideoPrompts()
    prompts.add_box(0, 90, 90, 210, 410)  # around the left person
    tracker, selector = PersonTracker(max_age=5), PromptSelector(prompts)
    kept: dict[int, list[int]] = {}
    for f in range(30):
        dets = [person(600.0)] if 5 <= f < 20 else [person(100.0 + 2 * f), person(600.0)]
        if f >= 25:
            dets.append(person(1200.0))  # someone else enters, far away
        kept[f] = [t for t, _ in selector.select(f, 1.0, tracker.update(dets), dets)]
    assert kept[0] == [0] and kept[4] == [0]  # the left person (id 0); the right one (id 1) is not kept
    assert kept[10] == []  # hidden: nobody selected is in view
    back = kept[20]
    assert len(back) == 1 and back[0] not in (0, 1), back  # back under a new id, selected again
    assert kept[29] == back  # the newcomer far away is not selected
    assert any(f"person 0 (selected) was lost and is found again as person {back[0]}" in n for n in selector.notes)
