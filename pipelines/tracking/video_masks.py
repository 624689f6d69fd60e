"""Mask corrections in a video: click points that reshape one tracked person's mask on a frame and on the
frames after it.

The landmark tracker computes no per-frame person masks (the video fit does not use them), but its
landmark model gives one for every region it looks at (BlazePose's segmentation output, 256 x 256 in the
region's crop: `RegionLandmarks.mask_crop_hw`). A person gets a mask only once the user corrects it
(pipelines.tracking.prompts: more than one prompt on a selected person on one frame): on that frame the
landmark model's mask of the person is refined with the photo mode's click refinement
(pipelines.segmentation.refine.refine_mask_grabcut: positive points = this is the person, negative =
this is not; GrabCut on a small crop around the clicks). The points are then carried to the following
frames in the person's box coordinates ((x - x0) / width, (y - y0) / height, so a point moves with the
person's box) and the refinement runs again with them every 1 / `mask_hz` seconds (the frames in
between keep no mask: the viewer shows the last one). A person without corrections costs nothing: no
mask is pasted, no frame downscaled, no GrabCut run.

Pixels are those of the processed frame (origin at the top-left corner); masks are float32 (H, W) in
[0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.segmentation.refine import GrabCutSettings, refine_mask_grabcut
from pipelines.types import PersonDetection


@dataclass
class VideoMaskOptions:
    """How corrected masks are made and carried."""

    mask_hz: float = 2.0
    """Corrected masks per second per person after a correction's frame (each is one GrabCut run on a
    small crop, ~10-40 ms); <= 0: only on the frames with a correction."""
    max_points: int = 16
    """At most this many correction points carried per person (the oldest are dropped)."""
    grabcut: GrabCutSettings = field(default_factory=GrabCutSettings)
    """The click refinement's settings (the photo mode's)."""


@dataclass
class _Carried:
    """One correction point, in the person's box coordinates on its frame."""

    uv_2: np.ndarray
    """((x - x0) / box width, (y - y0) / box height) on the correction's frame."""
    label: int
    """1 = this is the person, 0 = this is not."""
    frame: int
    """The frame it was given on."""


def box_uv(det: PersonDetection, xy_n2: np.ndarray) -> np.ndarray:
    """Pixels (N, 2) -> coordinates in the person's box (0..1 inside it)."""
    x0, y0, x1, y1 = np.asarray(det.bbox_xyxy, dtype=np.float64)
    wh = np.array([max(x1 - x0, 1.0), max(y1 - y0, 1.0)])
    return (np.asarray(xy_n2, dtype=np.float64).reshape(-1, 2) - [x0, y0]) / wh


def box_xy(det: PersonDetection, uv_n2: np.ndarray) -> np.ndarray:
    """Coordinates in the person's box (N, 2) -> pixels (the inverse of box_uv for this box)."""
    x0, y0, x1, y1 = np.asarray(det.bbox_xyxy, dtype=np.float64)
    wh = np.array([max(x1 - x0, 1.0), max(y1 - y0, 1.0)])
    return np.asarray(uv_n2, dtype=np.float64).reshape(-1, 2) * wh + [x0, y0]


@dataclass
class VideoMasks:
    """The mask corrections of a video's tracks, applied frame by frame (frames in order)."""

    options: VideoMaskOptions = field(default_factory=VideoMaskOptions)
    """Rate and refinement settings."""
    frames_with_mask: dict[int, list[int]] = field(default_factory=dict)
    """Track id -> the frames on which it got a corrected mask."""
    _points: dict[int, list[_Carried]] = field(default_factory=dict)
    _last_s: dict[int, float] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """Whether any track has a mask correction (else nothing here runs)."""
        return bool(self._points)

    def add(self, track_id: int, frame_index: int, det: PersonDetection, points_n3: np.ndarray) -> None:
        """This frame's correction points (N, 3) (x, y, label) on the track's person `det`."""
        pts = np.asarray(points_n3, dtype=np.float64).reshape(-1, 3)
        carried = self._points.setdefault(track_id, [])
        carried += [_Carried(uv, int(label), frame_index) for uv, label in zip(box_uv(det, pts[:, :2]), pts[:, 2],
                                                                                strict=True)]  # fmt: skip
        del carried[: max(0, len(carried) - self.options.max_points)]
        self._last_s.pop(track_id, None)  # a correction's own frame always gets its mask

    def due(self, track_id: int, time_s: float) -> bool:
        """Whether the track gets a corrected mask on this frame (its correction's frame, then at
        `mask_hz`)."""
        if track_id not in self._points:
            return False
        last = self._last_s.get(track_id)
        if last is None:
            return True
        hz = self.options.mask_hz
        return hz > 0 and time_s - last >= 1.0 / hz - 1e-6

    def points_n3(self, track_id: int, det: PersonDetection) -> np.ndarray:
        """The track's correction points (N, 3) (x, y, label) carried onto this frame's box `det`."""
        carried = self._points.get(track_id, [])
        if not carried:
            return np.zeros((0, 3))
        xy = box_xy(det, np.stack([c.uv_2 for c in carried]))
        return np.column_stack([xy, [c.label for c in carried]])

    def corrected(self, track_id: int, frame_index: int, time_s: float, rgb_hw3: np.ndarray, det: PersonDetection,
                  base_mask_hw: np.ndarray | None) -> np.ndarray:  # fmt: skip
        """The track's mask on this frame: `base_mask_hw` (the landmark model's mask of the person, or the
        detector's; None: none) refined with the carried points (positive: the person, negative: not)."""
        pts = self.points_n3(track_id, det)
        h, w = rgb_hw3.shape[:2]
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        pts = pts[inside]
        prior = None if base_mask_hw is None or not (np.asarray(base_mask_hw) > 0.5).any() else base_mask_hw
        mask_hw = refine_mask_grabcut(rgb_hw3, prior, pts[pts[:, 2] == 1, :2], pts[pts[:, 2] == 0, :2],
                                      None, self.options.grabcut)  # fmt: skip
        self._last_s[track_id] = time_s
        self.frames_with_mask.setdefault(track_id, []).append(frame_index)
        return mask_hw
