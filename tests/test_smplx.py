"""SMPL-X as the body model of the promptable fit (`--body smplx`), with a synthetic SMPLX_NEUTRAL.npz
that has every key and shape smplx reads (the real files are licence-gated and never shipped)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import trimesh

from bench.smplx_synthetic import N_VERTS, save_synthetic_smplx
from pipelines.body.params import SMPLXParams
from pipelines.body.smplx_model import SmplxBody
from pipelines.io.image_io import load_image
from pipelines.keypoints.names import COCO17_NAMES
from tests.cli_helpers import error_lines, run_cli
from viz.rrd_read import entity_paths

SCALE = 0.5


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("smplx")
    save_synthetic_smplx(folder)
    return folder


@pytest.fixture(scope="module")
def small_lunge(lunge_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    rgb = load_image(lunge_path).rgb_hw3
    small = cv2.resize(rgb, None, fx=SCALE, fy=SCALE, interpolation=cv2.INTER_AREA)
    path = tmp_path_factory.mktemp("img") / "lunge_half.png"
    cv2.imwrite(str(path), cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    return path


def test_fast_keypoints_match_smplx_forward(model_dir: Path) -> None:
    body = SmplxBody(model_dir)
    rng = np.random.default_rng(1)
    params = SMPLXParams(betas=rng.normal(0, 1, 10), global_orient_3=np.array([2.9, 0.2, 0.1]),
                         body_pose_j3=rng.normal(0, 0.3, (21, 3)), transl_3=np.array([0.1, -0.2, 3.0]),
                         focal_px=np.array(500.0), left_hand_pose_j3=rng.normal(0, 0.2, (15, 3)),
                         right_hand_pose_j3=rng.normal(0, 0.2, (15, 3)))  # fmt: skip
    names = ["nose", "left_ear", "left_wrist", "right_knee", "left_heel", "right_big_toe", "left_index2", "right_thumb"]
    t = {k: torch.tensor(np.asarray(v), dtype=torch.float32) for k, v in vars(params).items() if v is not None}
    fast = body.keypoints(names, t["betas"], t["global_orient_3"], t["body_pose_j3"], t["transl_3"],
                          (t["left_hand_pose_j3"], t["right_hand_pose_j3"])).numpy()  # fmt: skip
    verts_v3, joints_j3 = body.forward(params)
    assert verts_v3.shape == (N_VERTS, 3)
    ref = joints_j3[[body.joint_names.index(n) for n in names]]
    assert np.abs(fast - ref).max() < 1e-4  # metres (the synthetic model has no pose correctives)


def test_cli_fits_smplx_with_a_keypoint_prompt(model_dir: Path, small_lunge: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    prompt = (183.0, 323.0)  # ~30 px from where the detector puts the left wrist in this photo
    out = tmp_path / "out"
    code, stdout, stderr = run_cli(["image", small_lunge, "--out", out, "--body", "smplx", "--smplx-model-dir",
                                    model_dir, "--keypoint", f"left_wrist={prompt[0]},{prompt[1]}", "--quiet"],
                                   capsys)  # fmt: skip
    assert code == 0, stderr
    result = json.loads((out / "result.json").read_text())
    person = result["people"][0]
    assert person["body"]["model"] == "smplx"
    assert set(COCO17_NAMES) <= set(person["joints3d_cam"])
    assert 1.3 < person["height_m"] < 2.2
    K = np.array(result["camera"]["K_33"])
    wrist = np.array(person["joints3d_cam"]["left_wrist"])
    assert wrist[2] > 0.5  # in front of the camera, metres
    fitted_px = (K @ wrist)[:2] / wrist[2]
    detected_px = np.array(person["keypoints2d"]["left_wrist"][:2])
    assert np.linalg.norm(detected_px - prompt) > 15  # the prompt really moves the joint
    assert np.linalg.norm(fitted_px - prompt) < 0.5 * np.linalg.norm(detected_px - prompt)
    mesh = trimesh.load(out / "person_0.glb", force="mesh")
    assert len(mesh.vertices) == N_VERTS and 1.0 < np.ptp(mesh.vertices[:, 1]) < 2.3  # glTF y up, metres
    params = np.load(out / "person_0.npz")
    assert params["betas"].shape == (10,) and params["body_pose_j3"].shape == (21, 3)
    assert params["global_orient_3"].shape == (3,) and params["transl_3"].shape == (3,)
    paths = {p.lstrip("/") for p in entity_paths(out / "result.rrd")}
    assert "world/people/0/mesh" in paths
    assert "WARNING" not in stdout  # smplx's own prints are kept off the CLI's output


def test_cli_without_the_model_files_says_where_to_get_them(small_lunge: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    missing = tmp_path / "no-such-folder"
    code, _, stderr = run_cli(["image", small_lunge, "--out", tmp_path / "out", "--body", "smplx",
                               "--smplx-model-dir", missing], capsys)  # fmt: skip
    assert code == 2 and not (tmp_path / "out").exists()
    (line,) = error_lines(stderr)
    assert str(missing) in line and "smpl-x.is.tue.mpg.de" in line and "--smplx-model-dir" in line
    code, _, stderr = run_cli(["image", small_lunge, "--out", tmp_path / "out", "--body", "smplx"], capsys)
    assert code == 2 and "--smplx-model-dir DIR" in error_lines(stderr)[0]
