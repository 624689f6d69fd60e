"""Per-browser-session state of the Multi-view tab: the Video tab's session (its own temporary folder,
the run going on, its cancel token) with its own folder prefix."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from app.ui.video_state import VideoSession

TMP_PREFIX = "hmr-playground-multiview-"


@dataclass
class MultiviewSession(VideoSession):
    """Everything one browser tab keeps for its multi-view runs (see app.ui.video_state.VideoSession)."""

    @property
    def tmp_dir(self) -> Path:
        """This session's own temporary folder (created on first use, removed by cleanup)."""
        with self._lock:
            if self._tmp_dir is None:
                self._tmp_dir = Path(tempfile.mkdtemp(prefix=TMP_PREFIX))
            return self._tmp_dir
