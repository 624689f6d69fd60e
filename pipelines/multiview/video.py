"""Decode video frames as RGB arrays (OpenCV), for the multi-view and video modes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from pipelines.errors import UserFacingError
from pipelines.io.limits import check_video_file, check_video_size


def frame_count(path: str | Path) -> int:
    """Number of frames the container announces (may be approximate for some codecs)."""
    capture = _open(Path(path))
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()


def _open(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise UserFacingError(f"The video {path} does not exist.")
    check_video_file(path)  # size, container and announced frame size / length: before OpenCV sees it
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise UserFacingError(f"The video {path.name} cannot be read (unknown format or damaged file).")
    try:  # the decoder's own idea of the frame size, should the container header have lied
        check_video_size(int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
                         int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0), path.name)  # fmt: skip
    except UserFacingError:
        capture.release()
        raise
    return capture


def read_frames(path: str | Path, indices: Iterable[int] | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame index, RGB uint8 image (H, W, 3)) for every frame, or only for `indices`.

    Frames are decoded in order (no seeking, which is frame-inexact for many codecs); frames that
    are not wanted are only grabbed, not converted. Stops after the last wanted index.
    """
    path = Path(path)
    wanted = None if indices is None else sorted({int(i) for i in indices})
    if wanted is not None and wanted and wanted[0] < 0:
        raise UserFacingError(f"Frame indices cannot be negative; got {wanted[0]}.")
    capture = _open(path)
    try:
        if wanted is not None and not wanted:
            return
        last = None if wanted is None else wanted[-1]
        wanted_set = None if wanted is None else set(wanted)
        index = 0
        while last is None or index <= last:
            if not capture.grab():
                break
            if wanted_set is None or index in wanted_set:
                ok, bgr_hw3 = capture.retrieve()
                if not ok or bgr_hw3 is None:
                    raise UserFacingError(f"The video {path.name} has a damaged frame at index {index}.")
                yield index, cv2.cvtColor(bgr_hw3, cv2.COLOR_BGR2RGB)
            index += 1
        if index == 0:
            raise UserFacingError(f"The video {path.name} has no frame that can be decoded.")
    finally:
        capture.release()
