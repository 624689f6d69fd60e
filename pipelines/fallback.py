"""Fallback from a stage's hub backend to its embedded backend when the hub model cannot be had.

A hub backend can fail when it is created (a missing or broken package: `BackendUnavailable`) or on
its first use, when the model loads (no network, HF_HUB_OFFLINE=1 and nothing cached, a gated repo
without access, CUDA asked for without a GPU: `HubUnavailable`). `FallbackBackend` wraps the hub
backend: the first such failure hands the stage over to the embedded backend for good (the call
that failed is answered by the embedded backend) and records why in a `BackendUse`, which the image
mode copies into each result (`FrameResult.backends`, result.json, the CLI's warning line, the UI's
status). Bad input (`UserFacingError` that is not a hub failure) is never hidden by a fallback.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from pipelines.hub import HubUnavailable
from pipelines.registry import BackendUnavailable
from pipelines.types import BackendUse

log = logging.getLogger(__name__)

EMBEDDED_BACKEND: dict[str, str] = {
    "segmentation": "embedded",
    "keypoints": "embedded",
    "camera": "embedded",
    "hmr": "embedded",
    "body": "anny",
    "depth": "none",
}
"""The backend of each stage that needs no download, no GPU and no optional package ('none': the stage
is skipped)."""


class NoDepth:
    """The depth stage's 'none' backend: no scene depth (FrameResult.depth stays None)."""

    def estimate(self, image_rgb_hw3: Any, camera: Any, people: Any = None) -> None:
        return None


class FallbackBackend:
    """A stage backend that turns into the stage's embedded backend the first time the hub model
    cannot be had. Attribute access and method calls go to the backend in use."""

    def __init__(self, stage: str, asked: str, make_backend: Callable[[], Any],
                 make_fallback: Callable[[], Any]) -> None:  # fmt: skip
        self.use = BackendUse(stage=stage, asked=asked, used=asked)
        """Which backend this stage asked for, which one runs, and why it changed (None: it did not)."""
        self._make_fallback = make_fallback
        try:
            self._active: Any = make_backend()
        except BackendUnavailable as err:  # HubUnavailable too: a missing package, a bad device
            self._active = None
            self._fall_back(err)

    @property
    def fell_back(self) -> bool:
        return self.use.reason is not None

    @property
    def backend(self) -> Any:
        """The backend object in use (the hub one, or the embedded one after a fallback)."""
        return self._active

    def _fall_back(self, err: Exception) -> None:
        hook = getattr(self._active, "embedded_fallback", None)  # a hub backend may hand over its own parts
        fallback = hook() if hook is not None else self._make_fallback()
        self.use.used = EMBEDDED_BACKEND[self.use.stage]
        self.use.reason = str(err)
        self._active = fallback
        log.warning("%s", self.use.sentence())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("use", "_active", "_make_fallback"):
            raise AttributeError(name)
        attr = getattr(self._active, name)
        if self.fell_back or not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.fell_back:  # another call fell back meanwhile
                return getattr(self._active, name)(*args, **kwargs)
            try:
                return attr(*args, **kwargs)
            except HubUnavailable as err:
                self._fall_back(err)
                return getattr(self._active, name)(*args, **kwargs)

        return call


def backend_use(backend: Any, stage: str, name: str) -> BackendUse:
    """What a stage runs: the wrapper's record, or `name` itself for a backend without fallback."""
    use = getattr(backend, "use", None) if isinstance(backend, FallbackBackend) else None
    return BackendUse(stage=stage, asked=name, used=name) if use is None else BackendUse(**vars(use))
