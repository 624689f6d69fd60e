"""A video file as a Rerun video asset, where the viewer can play it.

Rerun's viewer decodes MP4 files with H.264, H.265, AV1 or VP9 video. Another container (AVI, Matroska)
or codec (MPEG-4 Part 2 'mp4v', as OpenCV's own writer makes; Motion JPEG) is not logged as an asset:
the caller logs its frames as images instead (`None` here), so the user still sees the video.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rerun as rr

from pipelines.errors import UserFacingError
from pipelines.io.video_header import read_video_header

PLAYABLE_CODECS = frozenset({"avc1", "avc3", "hvc1", "hev1", "av01", "vp09"})
"""MP4 sample entries of the codecs Rerun's viewer decodes."""


def viewer_plays(path: str | Path) -> bool:
    """Whether Rerun's viewer can play the video file at `path` (an MP4 of a playable codec)."""
    try:
        header = read_video_header(path)
    except (UserFacingError, OSError):
        return False
    return header.container == "MP4/MOV" and header.codec in PLAYABLE_CODECS


def log_video_asset(rec: rr.RecordingStream, entity: str, path: str | Path) -> np.ndarray | None:
    """Log the video at `path` as a static asset at `entity`; its frames' timestamps (ns, decode order
    = frame order), or None when the viewer cannot play it (nothing is logged then)."""
    if not viewer_plays(path):
        return None
    try:
        video = rr.AssetVideo(path=str(path))
        timestamps_ns = np.asarray(video.read_frame_timestamps_nanos(), dtype=np.int64)
    except Exception:  # noqa: BLE001 - a file Rerun's reader refuses despite its header: images instead
        return None
    rec.log(entity, video, static=True)
    return timestamps_ns


class FrameImages:
    """The frames of a video the viewer cannot play, as JPEG images for Rerun, read forward only
    (`at` must be called with non-decreasing frame indices)."""

    def __init__(self, path: str | Path, quality: int = 70) -> None:
        from pipelines.multiview.video import read_frames

        self._frames = read_frames(path)
        self._quality = quality
        self._index, self._rgb = -1, None

    def at(self, index: int) -> rr.EncodedImage | None:
        """Frame `index` as an encoded image; None past the end or before the start."""
        import cv2

        if index < self._index:
            raise ValueError("FrameImages reads forward only")
        while self._index < index:
            try:
                self._index, self._rgb = next(self._frames)
            except (StopIteration, UserFacingError):
                self._index, self._rgb = 1 << 62, None
        if index < 0 or self._rgb is None or self._index != index:
            return None
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(self._rgb, cv2.COLOR_RGB2BGR),
                               [cv2.IMWRITE_JPEG_QUALITY, self._quality])  # fmt: skip
        return rr.EncodedImage(contents=buf.tobytes(), media_type="image/jpeg") if ok else None
