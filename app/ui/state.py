"""Per-browser-session state of the playground: image, prompts, cached pipeline work, recording, files.

Each session owns one Rerun recording (streamed to its viewer as rrd chunks) and one temporary folder
(its downloads); `cleanup()` releases both. `SessionRegistry` maps Gradio session ids to sessions
so the page can clean up when a tab closes.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import rerun as rr

from app.ui.lifecycle import Lifecycle, new_session_dir
from app.ui.prompts import PromptHistory
from pipelines.io.image_io import LoadedImage
from pipelines.modes.image import ImageSession, image_key
from pipelines.types import Camera, FrameResult, PersonResult
from viz.blueprint import default_blueprint
from viz.rerun_log import APPLICATION_ID, RerunLogger

TMP_PREFIX = "hmr-playground-"


def _camera_signature(camera: Camera) -> bytes:
    return np.asarray(camera.K_33, dtype=np.float64).tobytes() + np.asarray(camera.world_T_cam).tobytes()


def _detections_signature(people: list[PersonResult]) -> str:
    """Changes when a mask, box or 2D keypoint of any person changes (cheap: subsampled masks)."""
    h = hashlib.sha1()
    for p in people:
        det = p.detection
        h.update(str(p.id).encode())
        h.update(np.asarray(det.bbox_xyxy, dtype=np.float64).tobytes())
        if det.mask_hw is not None:
            h.update((np.asarray(det.mask_hw)[::4, ::4] >= 0.5).tobytes())
        h.update(np.asarray(det.keypoints2d.xy_k2, dtype=np.float64).tobytes())
    return h.hexdigest()


class SessionRecording:
    """One Rerun recording streamed as rrd chunks; re-logs the image and masks only when they changed."""

    def __init__(self, recording_id: str) -> None:
        self.recording_id = recording_id
        self.rec = rr.RecordingStream(APPLICATION_ID, recording_id=recording_id)
        self.stream = self.rec.binary_stream()
        self.rec.send_blueprint(default_blueprint())
        self.logger = RerunLogger(self.rec)
        self.logger.log_setup()
        self._image_key: str | None = None
        self._camera: bytes | None = None
        self._detections: str | None = None

    def read(self) -> bytes | None:
        """Everything logged since the last read, as one self-contained rrd chunk (None if nothing)."""
        data = self.stream.read(flush=True)
        return data or None

    def log_image(self, image_key: str, frame: FrameResult) -> bool:
        """Log the photo and camera unless this exact image and camera are already logged."""
        cam = _camera_signature(frame.camera)
        new_image = image_key != self._image_key
        if not new_image and cam == self._camera:
            return False
        self.logger.log_image(frame.frame_index, frame.image_rgb_hw3, frame.camera)
        self._image_key, self._camera = image_key, cam
        if new_image:
            self._detections = None
        return True

    def log_detections(self, frame: FrameResult) -> bool:
        sig = _detections_signature(frame.people)
        if sig == self._detections:
            return False
        self.logger.set_frame(frame.frame_index)
        self.logger.log_detections(frame.people)
        self._detections = sig
        return True

    def log_bodies(self, frame: FrameResult) -> None:
        self.logger.set_frame(frame.frame_index)
        self.logger.log_bodies(frame.people)

    def forget_image(self) -> None:
        """A new photo: the next run logs image and masks again."""
        self._image_key = self._camera = self._detections = None

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing must never fail the cleanup
            self.rec.disconnect()


@dataclass(frozen=True)
class PromptSnapshot:
    """The session's photo and prompts at one revision: what a run works on, whatever happens meanwhile."""

    revision: int
    """Counts every edit of the session (photo or prompts), in the order the edits were applied."""
    image: LoadedImage | None
    image_key: str
    image_name: str
    history: PromptHistory


@dataclass
class ShownResult:
    """The result the page currently shows, and the snapshot it was computed from."""

    snapshot: PromptSnapshot
    frame: FrameResult
    elapsed_s: float = 0.0
    """How long the run took."""
    downloads: list[str] | None = None
    """The files written for this result (None until written)."""


@dataclass
class UISession:
    """Everything one browser session keeps between events.

    Edits (a new photo, a click, undo, clear) and runs happen on different threads. Every edit goes
    through `edit_prompts` / `set_image`, which apply it under the session lock and bump `revision`;
    a run works on a `snapshot()` and its result is recorded with that snapshot, so the page can tell
    whether what it shows is the latest state.
    """

    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    """Gradio's session hash (or a random id in tests); also the Rerun recording id."""
    image: LoadedImage | None = None
    """The current photo, decoded and upright."""
    image_name: str = ""
    """File name shown to the user."""
    image_key: str = ""
    """Content hash of the photo (the pipeline's cache key)."""
    display_rgb_hw3: np.ndarray | None = None
    """The downscaled copy shown in the click canvas."""
    display_src: str = ""
    """The display copy as a data: URL (sent to the canvas once per photo)."""
    display_scale: float = 1.0
    """Display pixels per image pixel (clicks arrive in display pixels)."""
    history: PromptHistory = field(default_factory=PromptHistory)
    revision: int = 0
    """Incremented by every edit (photo or prompts); see PromptSnapshot."""
    image_session: ImageSession = field(default_factory=ImageSession)
    """Detections and fits cached by the pipeline for this photo (warm start of prompt edits)."""
    config_key: tuple[str, ...] | None = None
    """Backends the cached work was computed with (changing them drops the cache)."""
    ran: PromptSnapshot | None = None
    """The snapshot of the last run started on the current photo."""
    shown: ShownResult | None = None
    """The last finished run on the current photo (what the viewer shows)."""
    active_runs: int = 0
    """Pipeline runs of this session in progress."""
    _tmp_dir: Path | None = None
    _recording: SessionRecording | None = None
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    run_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    """Held by a run while its pipeline works: two runs of one session (two heavy workers) never overlap."""
    closed: bool = False

    @property
    def busy(self) -> bool:
        """A run of this session is going on."""
        return self.active_runs > 0

    @property
    def last_frame(self) -> FrameResult | None:
        """The frame of the shown result (None before the first run on this photo)."""
        shown = self.shown
        return None if shown is None else shown.frame

    @property
    def tmp_dir(self) -> Path:
        """This session's own temporary folder, with an unguessable name (app.ui.lifecycle; created on first
        use, removed by cleanup)."""
        with self._lock:
            if self._tmp_dir is None:
                self._tmp_dir = new_session_dir(TMP_PREFIX)
            return self._tmp_dir

    @property
    def recording(self) -> SessionRecording:
        """This session's Rerun recording (created on first use)."""
        with self._lock:
            if self._recording is None:
                self._recording = SessionRecording(self.session_id)
            return self._recording

    def snapshot(self) -> PromptSnapshot:
        """The photo and prompts as of now (consistent: taken under the lock)."""
        with self._lock:
            return PromptSnapshot(self.revision, self.image, self.image_key, self.image_name, self.history)

    def edit_prompts(self, edit: Callable[[PromptHistory], PromptHistory]) -> PromptSnapshot:
        """Apply one prompt edit atomically (edits of concurrent events are applied one after the other);
        the revision grows only when the prompts changed. Exceptions of `edit` leave the session as it was."""
        with self._lock:
            new = edit(self.history)
            if new != self.history:
                self.history = new
                self.revision += 1
            return self.snapshot()

    def run_started(self) -> None:
        with self._lock:
            self.active_runs += 1

    def run_finished(self) -> None:
        with self._lock:
            self.active_runs -= 1

    def set_image(self, image: LoadedImage, name: str, display_rgb_hw3: np.ndarray, display_src: str,
                  scale: float) -> PromptSnapshot:  # fmt: skip
        """A new photo: prompts, cached detections and fits are dropped."""
        key = image_key(image.rgb_hw3)
        with self._lock:
            self.image, self.image_name, self.image_key = image, name, key
            self.display_rgb_hw3, self.display_src, self.display_scale = display_rgb_hw3, display_src, scale
            self.history = PromptHistory()
            self.revision += 1
            self.image_session = ImageSession()
            self.ran = self.shown = None
            if self._recording is not None:
                self._recording.forget_image()
            return self.snapshot()

    def record_result(self, snapshot: PromptSnapshot, frame: FrameResult, elapsed_s: float) -> ShownResult | None:
        """Keep the result of a run on `snapshot` as the shown one; None (nothing kept) when the photo
        changed since the snapshot was taken."""
        with self._lock:
            if snapshot.image_key != self.image_key or snapshot.image is not self.image:
                return None
            self.shown = ShownResult(snapshot=snapshot, frame=frame, elapsed_s=elapsed_s)
            return self.shown

    def adopt_latest(self) -> ShownResult | None:
        """Edits that came back to the prompts of the shown result (a click, then Undo) make it the result
        of the latest revision again; that result, or None when there was nothing to adopt."""
        with self._lock:
            shown = self.shown
            if shown is None or shown.snapshot.revision == self.revision or self.history.pending:
                return None
            if shown.snapshot.image is not self.image or shown.snapshot.history.actions != self.history.actions:
                return None
            shown.snapshot = self.snapshot()
            return shown

    def is_latest(self, snapshot: PromptSnapshot) -> bool:
        """True when no edit happened since `snapshot` was taken."""
        with self._lock:
            return snapshot.revision == self.revision

    def cleanup(self) -> None:
        """Close the recording, delete the temporary folder and drop the photo, its display copy and every
        result (a closed session object may stay referenced by Gradio for a while: it holds nothing big);
        safe to call twice."""
        with self._lock:
            self.closed = True
            if self._recording is not None:
                self._recording.close()
                self._recording = None
            if self._tmp_dir is not None:
                shutil.rmtree(self._tmp_dir, ignore_errors=True)
                self._tmp_dir = None
            self.image = self.display_rgb_hw3 = None
            self.display_src = ""
            self.history = PromptHistory()
            self.image_session = ImageSession()
            self.ran = self.shown = None


class SessionRegistry:
    """Gradio session id -> UISession, so that closing a tab can clean up its session."""

    def __init__(self, factory: Callable[..., Any] = UISession, lifecycle: Lifecycle | None = None) -> None:
        """`factory(session_id=...)` makes a new session (the Video tab passes its VideoSession); `lifecycle`
        (app.ui.lifecycle, shared by the page's tabs) ends idle sessions and caps how many live at once."""
        self._factory = factory
        self._sessions: dict[str, UISession] = {}
        self._lock = threading.Lock()
        self.lifecycle = lifecycle
        if lifecycle is not None:
            lifecycle.attach(self)

    def touch(self, session_id: str | None) -> None:
        """An event of this session (raises gr.Error for a new session past the lifecycle's cap)."""
        if self.lifecycle is not None and session_id:
            self.lifecycle.touch(session_id)

    def get(self, session_id: str | None) -> UISession:
        """The session for this id (created on first use; a random id when Gradio gives none)."""
        key = session_id or uuid.uuid4().hex
        # Under the lifecycle's lock: a sweep ending this session either ends it before (a fresh one is made
        # here) or sees this event and keeps it, never closes it under the event that just got it.
        with self.lifecycle.lock if self.lifecycle is not None else contextlib.nullcontext():
            self.touch(key)
            with self._lock:
                session = self._sessions.get(key)
                if session is None or session.closed:
                    session = self._sessions[key] = self._factory(session_id=key)
                return session

    def close(self, session_id: str | None) -> bool:
        """Clean up and forget one session; False when it was unknown."""
        if session_id is None:
            return False
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is None:
            return False
        session.cleanup()
        return True

    def busy(self, session_id: str) -> bool:
        """This session has a run going on."""
        session = self._sessions.get(session_id)
        return session is not None and bool(getattr(session, "busy", False))

    def expire(self, session_id: str | None) -> None:
        """Gradio expired this session's gr.State: end it (in every tab) unless it is still active."""
        if session_id is None:
            return
        if self.lifecycle is None:
            self.close(session_id)
        else:
            self.lifecycle.end_if_idle(session_id)

    def end(self, session_id: str | None) -> None:
        """The tab closed: end the session (in every tab, after the lifecycle's grace period when there is one)."""
        if self.lifecycle is None:
            self.close(session_id)
        else:
            self.lifecycle.tab_closed(session_id)

    def close_all(self) -> None:
        with self._lock:
            sessions, self._sessions = list(self._sessions.values()), {}
        for session in sessions:
            session.cleanup()

    def __len__(self) -> int:
        return len(self._sessions)


def session_end_callbacks(sessions: SessionRegistry) -> tuple[Callable[[gr.Request], None], Callable[[Any], None]]:
    """A tab's two ends of its session, as Gradio callbacks: `unload` (the tab closed; for demo.unload) and
    `delete_state` (Gradio expired the tab's gr.State without an unload; its delete_callback)."""

    def unload(request: gr.Request) -> None:
        sessions.end(getattr(request, "session_hash", None))

    def delete_state(held: Any) -> None:
        if held is not None:  # end the session unless it is still active
            sessions.expire(held.session_id)

    return unload, delete_state
