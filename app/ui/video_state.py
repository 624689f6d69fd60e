"""Per-browser-session state of the Video tab: its temporary folder, the run going on, its cancel token.

Like app.ui.state.UISession for the Image tab: one VideoSession per tab (from a SessionRegistry),
`cleanup()` stops a run that is going and deletes the folder (each run writes into a new subfolder,
the previous run's folder is removed when the next one starts).
"""

from __future__ import annotations

import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from app.ui.lifecycle import new_session_dir
from app.video_run import VideoRunSummary

TMP_PREFIX = "hmr-playground-video-"


@dataclass
class VideoSession:
    """Everything one browser tab keeps for its videos."""

    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Gradio's session hash (or a random id in tests)."""
    runs: int = 0
    """Runs started in this session (names each run's output folder)."""
    running: bool = False
    """A run is going on."""
    last: VideoRunSummary | None = None
    """The last finished run (its files are the downloads shown)."""
    cancel_event: threading.Event = field(default_factory=threading.Event, repr=False)
    """Set by Cancel (and by cleanup): the run going on stops before its next frame."""
    closed: bool = False
    _tmp_dir: Path | None = None
    _run_dir: Path | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    tmp_prefix: ClassVar[str] = TMP_PREFIX
    """Name prefix of the session's temporary folder (a tab of its own says which tab it is)."""

    @property
    def busy(self) -> bool:
        """A run is going on."""
        return self.running

    @property
    def tmp_dir(self) -> Path:
        """This session's own temporary folder, with an unguessable name (app.ui.lifecycle; created on first
        use, removed by cleanup)."""
        with self._lock:
            if self._tmp_dir is None:
                self._tmp_dir = new_session_dir(self.tmp_prefix)
            return self._tmp_dir

    def start_run(self) -> Path:
        """A run begins: the previous run's files are removed; the folder this run writes into."""
        with self._lock:
            if self.running:
                raise RuntimeError("a video run is already going on in this session")
            if self._run_dir is not None:
                shutil.rmtree(self._run_dir, ignore_errors=True)
            self.runs += 1
            self.running, self.last = True, None
            self.cancel_event.clear()
            self._run_dir = self.tmp_dir / f"run-{self.runs}"
            return self._run_dir / "outputs"

    def end_run(self, summary: VideoRunSummary | None) -> None:
        with self._lock:
            self.running, self.last = False, summary

    def should_stop(self) -> bool:
        """The cancel token handed to the pipeline."""
        return self.cancel_event.is_set()

    def request_cancel(self) -> bool:
        """Ask the run going on to stop; False when there is none."""
        with self._lock:
            if not self.running:
                return False
            self.cancel_event.set()
            return True

    def cleanup(self) -> None:
        """Stop a run going on and delete the temporary folder; safe to call twice."""
        with self._lock:
            self.closed = True
            self.cancel_event.set()
            self.last = None
            if self._tmp_dir is not None:
                shutil.rmtree(self._tmp_dir, ignore_errors=True)
                self._tmp_dir = self._run_dir = None
