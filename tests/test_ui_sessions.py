"""Sessions, downloads, network options and concurrent clients of the playground (app.ui.lifecycle,
app.serve_options, the engine's workers) and the atomic writes of the outputs (pipelines.io.atomic).

Memory and files of a session are freed when it ends or idles; a new session past the cap is refused
with a sentence; a crashed server's folders are swept at start-up; downloads are served from the
session's unguessable folder and refused once it ended; a public address warns without a login; and
three gradio_client clients on a live loopback server, two jobs at once, each get their own results.
"""

from __future__ import annotations

import gc
import json
import os
import re
import secrets
import subprocess
import sys
import threading
import warnings
import weakref
from pathlib import Path
from typing import Any

import cv2
import gradio as gr
import httpx
import pytest

from app import serve_options as SO
from app.ui import handlers as H
from app.ui import lifecycle as L
from app.ui.state import SessionRegistry
from app.ui.video_state import VideoSession
from pipelines.io.atomic import atomic_path, write_text_atomic

LUNGE = H.EXAMPLES_DIR / "lunge.jpg"

# MediaPipe keeps the traceback of an optional import it failed (sounddevice) in a module global, which
# pins the frames of whatever first imported its tasks, and so that call's arrays, for the whole process:
# import them here, as the server's warm-up does, so that no session's photo is the one pinned.
import mediapipe.tasks.python.vision  # noqa: E402, F401


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def small_photo(tmp_path: Path) -> Path:
    """The lunge example at 320 px (a fast run)."""
    img = cv2.imread(str(LUNGE))
    scale = 320 / max(img.shape[:2])
    path = tmp_path / "lunge_small.jpg"
    cv2.imwrite(str(path), cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    return path


# --------------------------------------------------------------------------------- atomic writes


def test_a_failed_write_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    target = write_text_atomic(tmp_path / "result.json", json.dumps({"people": 2}))
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text('{"people": ')  # half a file, then the writer dies
        raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"people": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]  # no temporary file left


# ------------------------------------------------------------------------------------- lifecycle


def test_ending_a_session_frees_its_photo_results_and_folder(pipeline, small_photo: Path) -> None:  # noqa: ANN001
    life = L.Lifecycle(sweep_period_s=0)
    images, videos = SessionRegistry(lifecycle=life), SessionRegistry(VideoSession, lifecycle=life)
    a, other = images.get("tab-a"), images.get("tab-b")
    video_a = videos.get("tab-a")
    H.on_upload(a, small_photo)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        list(H.run_latest(a, engine=H.Engine(pipeline)))
    files = [Path(f) for f in H.on_downloads(a) or []]
    assert files and all(f.is_file() for f in files)
    photo, frame = weakref.ref(a.image.rgb_hw3), weakref.ref(a.shown.frame)
    folders = [a.tmp_dir, video_a.tmp_dir]
    assert len(life) == 2
    assert life.end("tab-a")  # the tab closed (unload): every tab's state of this session goes
    gc.collect()
    assert photo() is None and frame() is None  # the arrays are freed, though Gradio may still hold `a`
    assert a.closed and a.image is None and a.display_src == "" and video_a.closed
    assert not any(f.exists() for f in folders) and not any(f.exists() for f in files)
    assert not other.closed and len(life) == 1


def test_idle_sessions_end_but_running_ones_stay() -> None:
    clock = FakeClock()
    life = L.Lifecycle(idle_timeout_s=60, clock=clock, sweep_period_s=0)
    images, videos = SessionRegistry(lifecycle=life), SessionRegistry(VideoSession, lifecycle=life)
    idle, running = images.get("idle"), videos.get("running")
    folder = idle.tmp_dir
    running.start_run()
    clock.t += 61
    assert life.sweep() == ["idle"] and idle.closed and not folder.exists()
    assert not running.closed  # a run going on is activity
    running.end_run(None)
    clock.t += 30
    assert life.sweep() == []  # its idle time counts from the end of the run
    clock.t += 31
    assert life.sweep() == ["running"] and running.closed
    with pytest.warns(UserWarning, match="idle for more than 1 minutes"):
        back = images.get("idle")  # the tab comes back: a fresh session, and a note saying why
    assert back is not idle and back.image is None


def test_a_closed_tab_ends_after_a_grace_period_unless_it_comes_back() -> None:
    clock = FakeClock()
    life = L.Lifecycle(clock=clock, sweep_period_s=0, close_grace_s=30)
    images, videos = SessionRegistry(lifecycle=life), SessionRegistry(VideoSession, lifecycle=life)
    blip, gone, running = images.get("blip"), images.get("gone"), videos.get("running")
    running.start_run()
    for sid in ("blip", "gone", "running"):
        images.end(sid)  # Gradio's unload: the keep-alive stream dropped
    clock.t += 10
    images.get("blip")  # an event within the grace period: it was a network blip
    clock.t += 25
    assert life.sweep() == ["gone"] and gone.closed and not blip.closed
    assert not running.closed  # its run goes on (Gradio stops it if its client is really gone)
    running.end_run(None)
    assert life.sweep() == ["running"] and running.closed


def test_sessions_past_the_cap_are_refused_with_a_sentence() -> None:
    life = L.Lifecycle(max_sessions=2, sweep_period_s=0)
    registry = SessionRegistry(lifecycle=life)
    a, _ = registry.get("a"), registry.get("b")
    with pytest.raises(gr.Error, match=r"maximum of 2 sessions.*Try again in a few minutes"):
        registry.get("c")
    assert registry.get("a") is a  # the open sessions are not disturbed
    life.end("b")
    assert registry.get("c") is not None


def test_start_up_sweeps_the_folders_of_crashed_servers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HMR_PLAYGROUND_SESSIONS_DIR", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    crashed = tmp_path / f"srv-{dead.pid}-0000" / "hmr-playground-abc"
    alive = tmp_path / f"srv-{os.getppid()}-1111" / "hmr-playground-def"  # another server still running
    for d in (crashed, alive):
        d.mkdir(parents=True)
        (d / "result.json").write_text("{}")
    assert L.sweep_stale_dirs() == [crashed.parent]
    assert not crashed.parent.exists() and (alive / "result.json").is_file()


# --------------------------------------------------------------------------------------- network


def test_public_listen_asks_for_a_login_and_warns_without_one(tmp_path: Path) -> None:
    local = SO.resolve_access("127.0.0.1", env={})
    assert local.host == "127.0.0.1" and not local.public and local.auth is None and not local.warnings
    bare = SO.resolve_access("127.0.0.1", listen="0.0.0.0", env={})
    assert bare.public and bare.auth is None
    assert "WITHOUT A LOGIN" in bare.warnings[0] and "--auth user:password" in bare.warnings[0]
    logged = SO.resolve_access("127.0.0.1", listen="0.0.0.0", auth="ann:s3cret,bob:pw", env={})
    assert logged.auth == [("ann", "s3cret"), ("bob", "pw")] and "WITHOUT" not in " ".join(logged.warnings)
    login_file = tmp_path / "logins.txt"
    login_file.write_text("# who may use the playground\ncarol:pass:word\n")
    assert SO.resolve_access("0.0.0.0", auth_file=login_file, env={}).auth == [("carol", "pass:word")]
    assert SO.resolve_access("0.0.0.0", env={SO.AUTH_ENV: "dan:pw"}).auth == [("dan", "pw")]
    shared = SO.resolve_access("127.0.0.1", share=True, env={})
    assert "share link" in shared.warnings[0]
    with pytest.raises(ValueError, match="user:password"):
        SO.resolve_access("0.0.0.0", auth="ann", env={})


def test_the_server_refuses_to_start_with_a_malformed_login(capsys: pytest.CaptureFixture[str]) -> None:
    from app.main import main

    assert main(["--listen", "0.0.0.0", "--auth", "ann", "--no-warmup"]) == 2  # before anything is loaded
    assert "error: --auth: each login must be user:password" in capsys.readouterr().err


# ------------------------------------------------------------------------------- a live server


@pytest.fixture(scope="module")
def server(pipeline):  # noqa: ANN001, ANN201 - (url, lifecycle, registry)
    """The page on a loopback port, two heavy jobs at once (the second worker loads its own models)."""
    from app.ui.page import build_demo

    life = L.Lifecycle(idle_timeout_s=3600, sweep_period_s=0.2)
    registry = SessionRegistry(lifecycle=life)
    demo = build_demo(H.Engine(pipeline, workers=2), registry=registry)
    demo.queue(max_size=16)
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False,
                            auth=None)  # fmt: skip
    yield url, life, registry
    life.stop()
    demo.close()


def _photo_and_run(url: str, photo: Path) -> tuple[Any, str, list[dict]]:
    """A client uploads `photo` and presses Run; (the client: its session lives while it does, the status,
    the downloads as the server gives them: path and URL)."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False, download_files=False)
    client.predict(handle_file(str(photo)), api_name="/upload")
    _, status, files = client.predict(True, None, "embedded", "embedded", "embedded", "embedded", "anny",
                                      api_name="/fn_5")  # the Run button  # fmt: skip
    return client, status, files


def test_concurrent_clients_get_their_own_downloads_refused_once_their_session_ends(server, small_photo: Path
                                                                                   ) -> None:  # noqa: ANN001  # fmt: skip
    url, life, registry = server
    results: dict[int, tuple] = {}

    def client(i: int) -> None:
        results[i] = _photo_and_run(url, small_photo)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(results) == [0, 1, 2]
    sessions = {}
    for client, status, files in results.values():
        session_hash = client.session_hash
        assert "**Done**" in status and "with a body" in status
        by_name = {Path(f["path"]).name: f for f in files}
        assert "result.json" in by_name and any(n.endswith(".glb") for n in by_name)
        folder = registry.get(session_hash).tmp_dir
        assert all(folder in Path(f["path"]).parents for f in files)  # served from the session's own folder
        assert re.search(r"[0-9a-f]{64}", folder.name)  # 256 random bits in its name
        sessions[session_hash] = by_name["result.json"]
    assert len({Path(f["path"]).parent for f in sessions.values()}) == 3

    (a, a_file), (b, b_file) = list(sessions.items())[:2]
    with httpx.Client(base_url=url) as http:
        assert json.loads(http.get(a_file["url"]).content)["people"]  # the session's own download
        guessed = a_file["url"].replace(re.search(r"[0-9a-f]{64}", a_file["url"]).group(), secrets.token_hex(32))
        assert http.get(guessed).status_code in (403, 404)
        folder_url = a_file["url"].rsplit("/", 2)[0]
        assert http.get(folder_url).status_code in (403, 404)  # no listing of the session folders
        life.end(a)  # the session ends (tab closed, or idle)
        assert http.get(a_file["url"]).status_code in (403, 404)
        assert http.get(b_file["url"]).status_code == 200  # the other sessions keep theirs


def test_a_live_session_past_the_cap_gets_the_message(server, small_photo: Path) -> None:  # noqa: ANN001
    from gradio_client import Client, handle_file

    url, life, _ = server
    life.max_sessions, cap = len(life), life.max_sessions
    try:
        client = Client(url, verbose=False, download_files=False)
        with pytest.raises(Exception, match="maximum of .* sessions"):
            client.predict(handle_file(str(small_photo)), api_name="/upload")
    finally:
        life.max_sessions = cap


def test_a_login_is_asked_when_set(pipeline) -> None:  # noqa: ANN001
    from app.ui.page import build_demo

    demo = build_demo(H.Engine(pipeline), lifecycle=L.Lifecycle(sweep_period_s=0))
    demo.queue()
    _, url, _ = demo.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, ssr_mode=False,
                            auth=[("ann", "s3cret")])  # fmt: skip
    try:
        with httpx.Client(base_url=url) as http:
            assert http.get("config").status_code == 401
            assert http.post("login", data={"username": "ann", "password": "wrong"}).status_code == 400
            assert http.post("login", data={"username": "ann", "password": "s3cret"}).status_code == 200
            assert http.get("config").status_code == 200
    finally:
        demo.close()
