"""When the playground's sessions end, how many may live at once, and where their files go.

A session (one browser tab, Gradio's session hash; the Image, Video and Multi-view tabs each keep
their own state for it in a SessionRegistry) ends, and its memory (photos, results, recordings) and
files (its folder, its uploads) are released:
- CLOSE_GRACE_S after its tab closes (Gradio's unload event, sent when the keep-alive stream drops):
  an event within that time keeps it (a reconnect after a network blip, or a client whose keep-alive
  timed out on a busy server), so does a run going on (Gradio stops the run itself when its client's
  stream drops); also when Gradio expires its gr.State (the delete_callback) while it is idle;
- when it has been idle for `idle_timeout_s` (IDLE_TIMEOUT_S: 15 minutes; a run going on is activity),
  checked every SWEEP_PERIOD_S by a background thread: this also ends sessions of clients that never
  open Gradio's keep-alive stream (scripts, gradio_client);
- at start-up after a crash: `sweep_stale_dirs` removes the folders of server processes that are gone.
At most `max_sessions` (MAX_SESSIONS) live at once; a new one past the cap is refused with a sentence
saying so (gr.Error), the sessions already open are not disturbed.

Files: each server process keeps its sessions' folders in one folder of its own,
<tmp>/hmr-playground-sessions/srv-<pid>-<random>/ (mode 0700); each session's folder is named with 256
random bits. The playground serves the downloads straight from there (a Gradio static path, so they are
not copied into Gradio's shared cache, where they would outlive the session): a download's URL cannot be
guessed, and it stops working when the session ends and its folder is deleted.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import gradio as gr

IDLE_TIMEOUT_S = 15 * 60
"""A session with no event and no run for this long ends."""
MAX_SESSIONS = 24
"""Live sessions at most (about 100-300 MB each with a photo and its result: 24 stay under ~4 GB with the models)."""
CLOSE_GRACE_S = 30.0
"""A closed tab's session ends this long after the close, unless an event of it comes meanwhile."""
SWEEP_PERIOD_S = 10.0
"""How often idle and closed sessions are looked for."""
ROOT_NAME = "hmr-playground-sessions"
ENDED_MEMORY = 1024
"""Ids of sessions ended for idleness remembered (to tell their tab why its photo is gone)."""


class Registry(Protocol):
    """What the lifecycle needs of a tab's SessionRegistry (app.ui.state)."""

    def close(self, session_id: str | None) -> bool: ...

    def busy(self, session_id: str) -> bool: ...


# ---------------------------------------------------------------------------------------- folders


def sessions_root() -> Path:
    """Where every server process keeps its sessions' folders (HMR_PLAYGROUND_SESSIONS_DIR, else <tmp>/...)."""
    return Path(os.environ.get("HMR_PLAYGROUND_SESSIONS_DIR") or Path(tempfile.gettempdir()) / ROOT_NAME)


@functools.cache
def server_dir() -> Path:
    """This process's folder of session folders (created on first use, mode 0700)."""
    root = sessions_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"srv-{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir(mode=0o700)
    atexit.register(shutil.rmtree, path, ignore_errors=True)  # a clean exit leaves nothing; a crash: sweep_stale_dirs
    return path


def new_session_dir(prefix: str) -> Path:
    """A new folder for one session's files, named `prefix` + 64 random hex digits (unguessable URLs)."""
    folder = server_dir()
    if not folder.is_dir():  # removed under us (a sweep by hand): make it again
        folder.mkdir(mode=0o700, parents=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{secrets.token_hex(32)}-", dir=folder))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale_dirs(root: Path | None = None) -> list[Path]:
    """Remove the session folders of server processes that no longer run (left by a crash); the removed ones.
    Folders of live processes (another playground, a test run) are kept."""
    root = root or sessions_root()
    removed = []
    for path in sorted(root.glob("srv-*")) if root.is_dir() else []:
        try:
            pid = int(path.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def gradio_upload_dir() -> Path:
    """Where Gradio stores uploads (GRADIO_TEMP_DIR, else <tmp>/gradio)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


# -------------------------------------------------------------------------------------- lifecycle


class Lifecycle:
    """The live sessions of one page (every tab's registry), their last activity, and their uploads."""

    def __init__(self, idle_timeout_s: float = IDLE_TIMEOUT_S, max_sessions: int = MAX_SESSIONS,
                 clock: Callable[[], float] = time.monotonic, sweep_period_s: float = SWEEP_PERIOD_S,
                 close_grace_s: float = CLOSE_GRACE_S) -> None:  # fmt: skip
        self.idle_timeout_s = float(idle_timeout_s)
        self.close_grace_s = float(close_grace_s)
        self.max_sessions = int(max_sessions)
        self.sweep_period_s = float(sweep_period_s)
        self._clock = clock
        self._registries: list[Registry] = []
        self._seen: dict[str, float] = {}
        self._closing: dict[str, float] = {}
        self._uploads: dict[str, set[Path]] = {}
        self._ended_idle: dict[str, None] = {}
        self._lock = threading.RLock()
        self.lock = self._lock
        """Held while a session is looked up for an event (SessionRegistry.get) and while one is ended."""
        self._sweeper: threading.Thread | None = None
        self._stop = threading.Event()

    def attach(self, registry: Registry) -> None:
        """A tab's registry: its sessions end with the others of the same id."""
        self._registries.append(registry)

    def __len__(self) -> int:
        """Live sessions."""
        return len(self._seen)

    def full_message(self) -> str:
        minutes = self.idle_timeout_s / 60
        return (f"The playground is busy: it already serves its maximum of {self.max_sessions} sessions. "
                f"Try again in a few minutes (a session ends when its tab is closed, or after {minutes:g} "
                "minutes without activity).")  # fmt: skip

    def touch(self, session_id: str) -> None:
        """An event of `session_id`: it is active now. A new session past the cap raises gr.Error; a tab whose
        session ended for idleness gets a warning saying its photo and results were released."""
        with self._lock:
            new = session_id not in self._seen
            if new and len(self._seen) >= self.max_sessions:
                raise gr.Error(self.full_message())
            self._seen[session_id] = self._clock()
            self._closing.pop(session_id, None)  # it is back (or never left)
            came_back = new and session_id in self._ended_idle
            self._ended_idle.pop(session_id, None)
        if came_back:
            gr.Warning(f"This tab was idle for more than {self.idle_timeout_s / 60:g} minutes, so its photo, "
                       "videos and results were released; upload them again.")  # fmt: skip
        self._start_sweeper()

    def claim_upload(self, session_id: str, path: str | Path | None) -> None:
        """An upload of `session_id` (a file in Gradio's upload folder): deleted when the last session using it
        ends. Paths elsewhere (the examples) are ignored."""
        if not path:
            return
        p = Path(path).resolve()
        if gradio_upload_dir() not in p.parents:
            return
        with self._lock:
            self._uploads.setdefault(session_id, set()).add(p)

    def busy(self, session_id: str) -> bool:
        return any(r.busy(session_id) for r in self._registries)

    def tab_closed(self, session_id: str | None) -> None:
        """Gradio saw the tab close: the session ends CLOSE_GRACE_S from now, unless an event of it comes first."""
        if session_id is None:
            return
        with self._lock:
            if session_id in self._seen:
                self._closing[session_id] = self._clock() + self.close_grace_s
        if self.close_grace_s <= 0:
            self.sweep()

    def end(self, session_id: str | None, *, idle: bool = False) -> bool:
        """End a session in every tab: its memory and files are released; False when it was not live."""
        if session_id is None:
            return False
        with self._lock:  # held through the close: no event gets this session while it is being ended
            live = self._seen.pop(session_id, None) is not None
            self._closing.pop(session_id, None)
            uploads = self._uploads.pop(session_id, set())
            still_used = set().union(*self._uploads.values()) if self._uploads else set()
            if idle:
                self._ended_idle[session_id] = None
                while len(self._ended_idle) > ENDED_MEMORY:
                    self._ended_idle.pop(next(iter(self._ended_idle)))
            closed = [r.close(session_id) for r in self._registries]
        for path in uploads - still_used:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
                path.parent.rmdir()  # Gradio's per-upload folder, when empty
        return live or any(closed)

    def end_if_idle(self, session_id: str) -> bool:
        """Gradio expired a session's state: end it unless it was active within the idle timeout or is running."""
        with self._lock:
            seen = self._seen.get(session_id)
            if seen is not None and (self._clock() - seen <= self.idle_timeout_s or self.busy(session_id)):
                return False
            return self.end(session_id, idle=True)

    def sweep(self) -> list[str]:
        """End the sessions idle past the timeout, and those whose tab closed more than CLOSE_GRACE_S ago (a
        session running a job counts as active); their ids."""
        ended = []
        with self._lock:  # decided and ended under the lock: an event meanwhile (touch) keeps the session
            now = self._clock()
            closed = [sid for sid, deadline in self._closing.items() if now >= deadline]
            candidates = [sid for sid, t in self._seen.items() if now - t > self.idle_timeout_s and sid not in closed]
            for sid in closed:
                if not self.busy(sid) and self.end(sid):
                    ended.append(sid)
            for sid in candidates:
                if self.busy(sid):
                    self._seen[sid] = now  # the idle time counts from the end of the run
                elif self.end(sid, idle=True):
                    ended.append(sid)
        return ended

    def _start_sweeper(self) -> None:
        with self._lock:
            if self._sweeper is not None or self.sweep_period_s <= 0:
                return
            self._sweeper = threading.Thread(target=self._sweep_loop, name="session-sweeper", daemon=True)
            self._sweeper.start()

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.sweep_period_s):
            with contextlib.suppress(Exception):  # the sweeper must survive anything a cleanup raises
                self.sweep()

    def stop(self) -> None:
        """Stop the background sweeper (tests)."""
        self._stop.set()
