"""Camera stage: the field of view (intrinsics) of the photo."""

from __future__ import annotations

from typing import Protocol

from pipelines.types import Camera


class CameraSolver(Protocol):
    def initial(self, width: int, height: int, exif_focal_px: float | None, user_focal_px: float | None) -> Camera:
        """The camera before any body is fitted: user value > EXIF > prior (source 'default')."""
        ...
