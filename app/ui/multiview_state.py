"""Per-browser-session state of the Multi-view tab: the Video tab's session (its own temporary folder,
the run going on, its cancel token) with its own folder prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from app.ui.video_state import VideoSession

TMP_PREFIX = "hmr-playground-multiview-"


@dataclass
class MultiviewSession(VideoSession):
    """Everything one browser tab keeps for its multi-view runs (see app.ui.video_state.VideoSession)."""

    tmp_prefix: ClassVar[str] = TMP_PREFIX
