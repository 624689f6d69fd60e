"""Cold start: the cached body model tables replace torch + Anny on the run path, with the same results;
the cache rebuilds when its key changes; MediaPipe's native log lines stay out of the terminal."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from pipelines.body import anny_tables
from pipelines.body.anny_model import AnnyBody
from pipelines.hmr.kinematics import Skeleton, forward, rotvec_to_matrix

REPO = Path(__file__).resolve().parents[1]

# What MediaPipe / TFLite / absl / glog print from C++ (e.g. "W0000 00:00:1796160501.870222  6989
# inference_feedback_manager.cc:114] Feedback manager requires ...", "INFO: Created TensorFlow Lite ...").
NATIVE_LOG = re.compile(r"^([IWEF]\d{4} |INFO: |WARNING: All log messages)|\.cc:\d+\]")

_PROBE = """
import json, sys
from app.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, **{name: name in sys.modules for name in ("torch", "anny", "pandas", "trimesh")}}))
"""


@pytest.fixture(scope="module")
def body() -> AnnyBody:
    return AnnyBody()


def _run_cli(args: list[str], env_extra: dict[str, str]) -> tuple[dict, str]:
    env = {**os.environ, **env_extra}
    proc = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.fixture(scope="module")
def cold_runs(tmp_path_factory: pytest.TempPathFactory, lunge_path: Path, body: AnnyBody) -> dict:
    """The CLI on lunge.jpg in two fresh processes: with the cached tables (default flags), and with the
    cache off (tables read from Anny's torch model, as before the cache existed) and --verbose."""
    _ = body.tables  # the cache file exists (built here on a fresh machine)
    root = tmp_path_factory.mktemp("cold")
    runs = {}
    for name, extra, env in (("cached", [], {}), ("uncached", ["--verbose"], {"HMR_BODY_CACHE": "off"})):
        out = root / name
        probe, stderr = _run_cli(["image", str(lunge_path), "--out", str(out), "--quiet", *extra], env)
        runs[name] = {"out": out, "probe": probe, "stderr": stderr}
    return runs


def test_cached_cold_run_imports_neither_torch_nor_anny(cold_runs: dict) -> None:
    probe = cold_runs["cached"]["probe"]
    assert probe["code"] == 0
    assert not probe["torch"] and not probe["anny"]
    assert not probe["pandas"] and not probe["trimesh"]  # neither is needed to write the .rrd and the .glb
    assert (cold_runs["cached"]["out"] / "person_0.glb").is_file()
    # The baseline really took the other path (so the assertion above is not vacuous).
    assert cold_runs["uncached"]["probe"]["torch"]


def test_cached_and_uncached_runs_write_the_same_results(cold_runs: dict) -> None:
    a, b = cold_runs["cached"]["out"], cold_runs["uncached"]["out"]
    for name in ("person_0.glb", "person_0.obj"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    ja, jb = (json.loads((d / "result.json").read_text()) for d in (a, b))
    for j in (ja, jb):
        j.pop("timings_s")
        j["image"].pop("path")
    assert ja == jb
    pa, pb = np.load(a / "person_0.npz"), np.load(b / "person_0.npz")
    assert set(pa.files) == set(pb.files)
    for key in pa.files:
        if pa[key].dtype.kind == "f":
            assert np.abs(pa[key] - pb[key]).max() < 1e-9, key
        else:
            assert (pa[key] == pb[key]).all(), key


def test_no_native_log_lines_without_verbose(cold_runs: dict) -> None:
    quiet = [line for line in cold_runs["cached"]["stderr"].splitlines() if NATIVE_LOG.search(line)]
    assert quiet == []
    # --verbose lets them through: the pattern does match what MediaPipe prints.
    assert any(NATIVE_LOG.search(line) for line in cold_runs["uncached"]["stderr"].splitlines())


def test_our_error_messages_still_reach_stderr(tmp_path: Path) -> None:
    """Hiding the native lines must not hide ours: a bad photo in a fresh process is one 'error:' line."""
    (tmp_path / "bad.jpg").write_text("not an image")
    proc = subprocess.run([sys.executable, "-m", "app.cli", "image", str(tmp_path / "bad.jpg"), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "bad.jpg" in lines[0]


def test_cli_process_writes_every_output_before_its_fast_exit(tmp_path: Path, lunge_path: Path) -> None:
    """`python -m app.cli` ends with os._exit (no interpreter teardown): every file is complete by then, the
    summary is printed and the exit code is 0."""
    from viz.rrd_read import entity_paths

    out = tmp_path / "o"
    run_as_main = ("import sys\nfrom app import cli\ncode = cli.main(sys.argv[1:])\n"
                   "print('exit: fast' if cli.can_exit_fast() else 'exit: normal', file=sys.stderr)\n"
                   "cli.exit_without_teardown(code)")  # what `python -m app.cli` runs, telling which exit it takes
    proc = subprocess.run([sys.executable, "-c", run_as_main, "image", str(lunge_path), "--out", str(out), "--quiet"],
                          capture_output=True, text=True, cwd=REPO, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "exit: fast" in proc.stderr  # the files below were written before an os._exit
    assert proc.stdout.startswith("1 person(s) found, 1 fitted") and "person 0: height" in proc.stdout
    assert {p.name for p in out.iterdir()} == {"result.json", "result.rrd", "overlay.png", "person_0.glb",
                                              "person_0.obj", "person_0.npz"}  # fmt: skip
    assert len(json.loads((out / "result.json").read_text())["people"]) == 1
    assert {"world/people/0/mesh", "world/camera/image"} <= entity_paths(out / "result.rrd")  # footer written
    glb = (out / "person_0.glb").read_bytes()
    assert glb[:4] == b"glTF" and int.from_bytes(glb[8:12], "little") == len(glb)


def test_numpy_rest_orientations_and_native_pose_match_anny(body: AnnyBody) -> None:
    """rest_state and native_pose (numpy, from the tables) against Anny's own torch forward pass, also for
    bone rotations slightly off orthonormal (as the fit's accumulated updates leave them)."""
    import torch

    m = body.model
    pheno = np.array([0.3, 0.5, 0.6, 0.55, 0.7, 0.45])
    rest = body.rest_state(pheno)
    with torch.no_grad():
        ref = m.get_rest_model(torch.as_tensor(rest.coeffs_n[None], dtype=m.dtype))["rest_bone_poses"][0].numpy()
    assert np.abs(ref[:, :3, :3] - rest.rot_j33).max() < 1e-12
    assert np.abs(ref[:, :3, 3] - rest.heads_j3).max() < 1e-12
    rng = np.random.default_rng(3)
    local = rotvec_to_matrix(rng.normal(0, 0.3, (len(body.bone_labels), 3)))
    root = np.array([0.2, -0.1, 3.0])
    G, _ = forward(Skeleton(body.bone_parents), rest.heads_j3, local, root)
    for G_test in (G, G + rng.normal(0, 1e-4, G.shape)):
        ours = body.native_pose(rest, G_test, root)
        assert np.abs(ours - body.anny_native_pose(rest, G_test, root)).max() < 1e-10


def _factory(model: object, calls: list[int]):  # noqa: ANN202
    def build() -> object:
        calls.append(1)
        return model

    return build


def test_tables_cache_is_reused_and_rebuilt_when_its_key_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: AnnyBody
) -> None:
    monkeypatch.setenv("HMR_BODY_CACHE_DIR", str(tmp_path))
    calls: list[int] = []
    build = _factory(body.model, calls)
    first = anny_tables.load_or_build(build)
    path = anny_tables.cache_path()
    assert calls == [1] and path.is_file() and path.parent == tmp_path
    again = anny_tables.load_or_build(build)
    assert calls == [1]  # read back, not rebuilt
    for f in fields(anny_tables.AnnyTables):
        a, b = getattr(first, f.name), getattr(again, f.name)
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, f.name
    # A new format number (or anny version) is a new key: rebuilt into a new file.
    monkeypatch.setattr(anny_tables, "FORMAT", anny_tables.FORMAT + 1)
    rebuilt = anny_tables.load_or_build(build)
    assert calls == [1, 1]
    assert rebuilt.key != first.key and anny_tables.cache_path().is_file()
    assert anny_tables.cache_path() != path
    # A file under the right name but built for another key, or a damaged one, is rebuilt too.
    new_path = anny_tables.cache_path()
    monkeypatch.setattr(anny_tables, "version_key", lambda: rebuilt.key)
    anny_tables.save(first, new_path)  # holds the old key
    assert anny_tables.load_or_build(build).key == rebuilt.key
    assert calls == [1, 1, 1]
    new_path.write_bytes(b"not a zip file")
    assert anny_tables.load_or_build(build).key == rebuilt.key
    assert calls == [1, 1, 1, 1]


def test_cache_off_builds_in_memory_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: AnnyBody
) -> None:
    monkeypatch.setenv("HMR_BODY_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("HMR_BODY_CACHE", "off")
    calls: list[int] = []
    tables = anny_tables.load_or_build(_factory(body.model, calls))
    assert calls == [1] and tables.faces_f3.shape[1] == 3
    assert list(tmp_path.iterdir()) == []
