"""The command line: outputs written and readable, every bad input a one-line message."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import error_lines, run_cli
from PIL import Image

from app.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def test_help_explains_every_flag() -> None:
    text = build_parser()._subparsers._group_actions[0].choices["image"].format_help()
    for flag in ("--out", "--point", "--box", "--keypoint", "--focal-px", "--no-rrd", "--quiet", "--verbose",
                 "--debug"):  # fmt: skip
        assert flag in text
    assert "metres" in text and "OpenCV" in text
    assert "exit codes" in text and "some failed" in text


def test_photo_to_outputs(tmp_path: Path, lunge_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import trimesh

    from viz.rrd_read import entity_paths

    out = tmp_path / "out"
    code, stdout, _ = run_cli(["image", lunge_path, "--out", out, "--quiet"], capsys)
    assert code == 0, stdout
    assert "1 person(s) found, 1 fitted" in stdout
    for name in ("result.json", "result.rrd", "overlay.png", "person_0.glb", "person_0.obj", "person_0.npz"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0
    result = json.loads((out / "result.json").read_text())
    assert result["image"]["width"] == 801 and result["image"]["height"] == 1200
    assert result["camera"]["source"] == "estimated"
    K = np.array(result["camera"]["K_33"])
    assert K.shape == (3, 3) and K[0, 2] == pytest.approx(400.5)
    person = result["people"][0]
    assert len(person["bbox_xyxy"]) == 4 and 0 < person["score"] <= 1
    assert len(person["keypoints2d"]["left_knee"]) == 3
    for name in ("nose", "left_eye", "left_shoulder", "right_elbow", "left_wrist", "left_hip", "right_ankle"):
        assert len(person["joints3d_cam"][name]) == 3
    assert 1.4 <= person["height_m"] <= 2.1
    assert person["fit"]["reprojection_px_mean"] <= 3.5
    assert person["body"]["model"] == "anny"
    assert set(result["timings_s"]) >= {"detect", "fit"}
    # Each file loads back with its own reader
    mesh = trimesh.load(out / "person_0.glb", force="mesh")
    assert len(mesh.vertices) == 13718
    assert 1.2 < np.ptp(mesh.vertices[:, 1]) < 2.2  # glTF y-up: the standing body's extent in metres
    obj = trimesh.load(out / "person_0.obj", force="mesh")
    assert len(obj.vertices) == 13718
    params = np.load(out / "person_0.npz")
    assert params["phenotype"].shape == (6,)
    assert params["pose_local_ref_j44"].shape == (104, 4, 4)
    paths = entity_paths(out / "result.rrd")
    for path in ("/world/camera", "/world/camera/image", "/world/people/0/mesh", "/world/people/0/skeleton"):
        assert path in paths or path.lstrip("/") in paths
    overlay = np.asarray(Image.open(out / "overlay.png"))
    original = np.asarray(Image.open(lunge_path))
    assert overlay.shape == original.shape
    assert np.abs(overlay.astype(int) - original.astype(int)).sum(-1).astype(bool).mean() > 0.05


def test_prompts_on_the_command_line(tmp_path: Path, lunge_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run_cli(["image", lunge_path, "--out", out, "--quiet", "--point", "450,800,1",
                            "--point", "390,590,0", "--keypoint", "left_knee=530,1000", "--focal-px", "1200"], capsys)
    assert code == 0, err
    result = json.loads((out / "result.json").read_text())
    assert result["camera"]["source"] == "user"
    person = result["people"][0]
    assert person["fit"]["per_keypoint_px"]["left_knee"] < 3.0


def _bad_files(tmp: Path, data_dir: Path) -> dict[str, Path]:
    files = {}
    (tmp / "empty.jpg").write_bytes(b"")
    files["empty"] = tmp / "empty.jpg"
    (tmp / "text.jpg").write_text("this is not an image\n")
    files["not an image"] = tmp / "text.jpg"
    data = (data_dir / "images" / "lunge.jpg").read_bytes()
    (tmp / "truncated.jpg").write_bytes(data[: len(data) // 2])
    files["truncated"] = tmp / "truncated.jpg"
    Image.new("RGB", (1, 1)).save(tmp / "dot.png")
    files["1x1"] = tmp / "dot.png"
    Image.new("1", (20000, 20000)).save(tmp / "huge.png")
    files["20000x20000"] = tmp / "huge.png"
    files["missing"] = tmp / "nope.jpg"
    return files


@pytest.mark.parametrize("case", ["empty", "not an image", "truncated", "1x1", "20000x20000", "missing"])
def test_bad_image_is_one_line_and_nothing_written(
    case: str, tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = _bad_files(tmp_path, data_dir)[case]
    out = tmp_path / "out"
    code, stdout, err = run_cli(["image", photo, "--out", out, "--quiet"], capsys)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and photo.name in lines[0]
    assert "Traceback" not in err
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temp folder left


def test_failure_keeps_the_previous_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "result.json").write_text('{"previous": true}')
    (tmp_path / "bad.jpg").write_text("nope")
    code, _, _ = run_cli(["image", tmp_path / "bad.jpg", "--out", out, "--quiet"], capsys)
    assert code == 2
    assert json.loads((out / "result.json").read_text()) == {"previous": True}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--point", "5000,10"], "outside"),
        (["--box", "10,10,5,5"], "empty"),
        (["--keypoint", "left_elbw=10,10"], "unknown joint"),
        (["--focal-px", "3"], "implausible"),
    ],
)
def test_bad_prompts(extra: list[str], message: str, tmp_path: Path, lunge_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code, _, err = run_cli(["image", lunge_path, "--out", tmp_path / "out", "--quiet", *extra], capsys)
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and message in lines[0].lower()
    assert not (tmp_path / "out").exists()


def test_malformed_flag_is_a_usage_error(tmp_path: Path, lunge_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["image", str(lunge_path), "--out", str(tmp_path / "o"), "--point", "1;2"])
    assert exc.value.code == 2


def test_photo_without_people(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((400, 600, 3)) * 60 + 90).astype(np.uint8)).save(tmp_path / "wall.png")
    code, stdout, _ = run_cli(["image", tmp_path / "wall.png", "--out", tmp_path / "out", "--quiet"], capsys)
    assert code == 0
    assert "0 person(s) found" in stdout
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["people"] == []
    assert any("No person" in w for w in result["warnings"])


@pytest.mark.parametrize("variant", ["rgba", "grayscale", "16-bit", "exif-rotated"])
def test_image_variants_still_find_the_person(variant: str, tmp_path: Path, lunge_path: Path, pipeline) -> None:  # noqa: ANN001
    from pipelines.io.image_io import load_image

    im = Image.open(lunge_path)
    path = tmp_path / "photo.png"
    if variant == "rgba":
        im.convert("RGBA").save(path)
    elif variant == "grayscale":
        im.convert("L").save(path)
    elif variant == "16-bit":
        Image.fromarray(np.asarray(im.convert("L")).astype(np.uint16) * 257).save(path)
    else:
        path = tmp_path / "rotated.jpg"
        exif = Image.Exif()
        exif[0x0112] = 6  # stored rotated: viewers turn it 90 degrees clockwise
        im.transpose(Image.Transpose.ROTATE_90).save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.rgb_hw3.shape == (1200, 801, 3)
    result = pipeline.run(image)
    assert len(result.people) == 1 and result.people[0].body is not None
    joints = dict(zip(result.people[0].body.joints3d_cam.names, result.people[0].body.joints3d_cam.xyz_k3, strict=True))
    assert joints["left_ankle"][1] > joints["nose"][1]  # upright


def test_cli_process_exit_code_and_message(tmp_path: Path) -> None:
    """The real process: a bad file gives one line on stderr and exit code 2, no traceback."""
    (tmp_path / "x.jpg").write_text("nope")
    proc = subprocess.run([sys.executable, "-m", "app.cli", "image", str(tmp_path / "x.jpg"), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    shutil.rmtree(tmp_path, ignore_errors=True)


# ------------------------------------------------------------------------------------- batches


def _photo_folder(tmp: Path, data_dir: Path) -> Path:
    """Two photos with one person each, plus a file that is not an image and a non-image file type."""
    folder = tmp / "photos"
    folder.mkdir()
    shutil.copy(data_dir / "images" / "lunge.jpg", folder / "a_lunge.jpg")
    Image.open(data_dir / "images" / "lunge.jpg").resize((534, 800)).save(folder / "c_small.png")
    (folder / "b_broken.jpg").write_text("this is not an image\n")
    (folder / "notes.txt").write_text("not a photo: skipped\n")
    return folder


def test_batch_folder_one_folder_per_photo_survives_a_bad_file(
    tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _photo_folder(tmp_path, data_dir)
    out = tmp_path / "out"
    code, stdout, err = run_cli(["image", folder, "--out", out, "--quiet"], capsys)
    assert code == 3  # some failed, the others were written
    lines = error_lines(err)
    assert len(lines) == 1 and "b_broken.jpg" in lines[0] and "not an image" in lines[0]
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["a_lunge", "c_small"]  # nothing for the bad file
    for name in ("a_lunge", "c_small"):
        result = json.loads((out / name / "result.json").read_text())
        assert len(result["people"]) == 1 and result["people"][0]["height_m"] > 1.4
        assert (out / name / "person_0.glb").stat().st_size > 0
    assert "2 of 3 photo(s) written" in stdout and "1 failed" in stdout


def test_batch_of_files_and_shared_stems(tmp_path: Path, data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    shutil.copy(data_dir / "images" / "lunge.jpg", tmp_path / "x" / "person.jpg")
    shutil.copy(data_dir / "images" / "lunge.jpg", tmp_path / "y" / "person.jpg")
    out = tmp_path / "out"
    code, _, err = run_cli(["image", tmp_path / "x" / "person.jpg", tmp_path / "y" / "person.jpg", "--out", out,
                            "--quiet", "--no-rrd"], capsys)  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["person", "person-2"]
    assert (out / "person-2" / "result.json").is_file() and not (out / "person-2" / "result.rrd").exists()


def test_batch_where_every_photo_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a.jpg").write_text("nope")
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(["image", tmp_path / "a.jpg", tmp_path / "empty", "--out", tmp_path / "out", "--quiet"],
                           capsys)  # fmt: skip
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 2 and any("a.jpg" in line for line in lines) and any("empty" in line for line in lines)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_prompts_need_a_single_photo(tmp_path: Path, lunge_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["image", lunge_path, lunge_path, "--out", tmp_path / "out", "--quiet",
                            "--point", "450,800"], capsys)  # fmt: skip
    assert code == 2
    lines = error_lines(err)
    assert len(lines) == 1 and "one photo" in lines[0]
    assert not (tmp_path / "out").exists()
