"""BlazePose's person detector run alone on overlapping square tiles at several scales.

One pass over the whole image finds a few large people: the detector sees the image at 224 x 224
pixels, so a person smaller than about a third of the frame is a handful of pixels to it. Tiles of a
half or a third of the image's short side show small people large enough; the detections of all
tiles are merged (weighted non-maximum suppression, as mediapipe's own graph does per pass).

Decoding follows mediapipe's pose_detection_cpu graph (SsdAnchorsCalculator and
TensorsToDetectionsCalculator options): 2254 anchors of fixed size 1 on 28x28 (x2), 14x14 (x2) and
7x7 (x6) grids; each raw row is (x_centre, y_centre, w, h, then 4 keypoints x, y), in pixels of the
224 input, relative to the anchor's centre; score = sigmoid(raw). The box is the head's; the keypoints
are 0: mid-hip, 1: top of the circle around the whole body, 2: mid-shoulder, 3: top of the circle
around the upper body. Pixels as everywhere: origin top-left, pixel centres at +0.5.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from pipelines.segmentation.roi import RotatedRect
from pipelines.segmentation.tflite_runner import POSE_DETECTOR, TfliteModel

INPUT_SIDE = 224
NUM_ANCHORS = 2254
DETECTOR_LANES = min(2, os.cpu_count() or 1)
"""Interpreters of one XNNPACK thread each that share a photo's views (on 2 cores: 6.2-6.6 ms a view
against 7.2-9.3 ms on one interpreter of 2 threads; under load, 1-thread runs also cost less CPU)."""


@lru_cache(maxsize=1)
def ssd_anchors_a2() -> np.ndarray:
    """Anchor centres (2254, 2) in [0, 1] of the 224 input, in the order of the model's outputs."""
    strides = [8, 16, 32, 32, 32]
    centres = []
    layer = 0
    while layer < len(strides):
        # Layers with the same stride share one grid: 2 anchors (aspect 1 + interpolated) per layer.
        last = layer
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
        per_cell = 2 * (last - layer)
        n = int(np.ceil(INPUT_SIDE / strides[layer]))
        ys, xs = np.meshgrid((np.arange(n) + 0.5) / n, (np.arange(n) + 0.5) / n, indexing="ij")
        cell_c2 = np.stack([xs.ravel(), ys.ravel()], axis=1)
        centres.append(np.repeat(cell_c2, per_cell, axis=0))
        layer = last
    out = np.concatenate(centres)
    assert out.shape == (NUM_ANCHORS, 2)
    return out


@dataclass
class PoseCandidate:
    """One person found by the detector, in image pixels."""

    face_xyxy: np.ndarray
    """The head's box (x0, y0, x1, y1)."""
    keypoints_42: np.ndarray
    """(4, 2): mid-hip, top of the body circle, mid-shoulder, top of the upper-body circle."""
    score: float
    """Detector confidence in [0, 1]."""
    views: int = 1
    """How many detections (tiles, scales) were merged into this one."""
    alternates: list[np.ndarray] = field(default_factory=list)
    """Keypoints (4, 2) of the same head found at other scales, best first (other regions to try)."""

    def shifted(self, dx: float, dy: float) -> PoseCandidate:
        """The same candidate in pixels of an image where the one it was found on starts at (dx, dy)."""
        d_2 = np.array([dx, dy], dtype=np.float64)
        return PoseCandidate(self.face_xyxy + np.tile(d_2, 2), self.keypoints_42 + d_2, self.score, self.views,
                             [k + d_2 for k in self.alternates])  # fmt: skip

    def roi(self) -> RotatedRect:
        """Where the landmark model should look: BlazePose's region from the alignment keypoints."""
        return RotatedRect.from_alignment(self.keypoints_42[0], self.keypoints_42[1])

    def rois(self) -> list[RotatedRect]:
        """The region, then those of the alternates."""
        return [self.roi()] + [RotatedRect.from_alignment(k[0], k[1]) for k in self.alternates]


def decode_detections(
    raw_boxes_n12: np.ndarray, raw_scores_n: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw model outputs -> (face boxes (M, 4) xyxy, keypoints (M, 4, 2), scores (M,)) in [0, 1] of
    the 224 input, for the anchors scoring at least `min_score`."""
    raw_scores_n = np.clip(np.asarray(raw_scores_n, dtype=np.float64).reshape(-1), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-raw_scores_n))
    keep = scores >= min_score
    raw = np.asarray(raw_boxes_n12).reshape(-1, 12)[keep].astype(np.float64) / INPUT_SIDE  # the kept rows only
    anchors = ssd_anchors_a2()[keep]
    centre = raw[:, 0:2] + anchors
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:12].reshape(-1, 4, 2) + anchors[:, None, :]
    return boxes, keypoints, scores[keep]


def _overlap_1n(box_4: np.ndarray, boxes_n4: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(IoU, intersection over the smaller box's area) of one box with each of N boxes."""
    ix = np.clip(np.minimum(box_4[2], boxes_n4[:, 2]) - np.maximum(box_4[0], boxes_n4[:, 0]), 0, None)
    iy = np.clip(np.minimum(box_4[3], boxes_n4[:, 3]) - np.maximum(box_4[1], boxes_n4[:, 1]), 0, None)
    inter = ix * iy
    area_1 = (box_4[2] - box_4[0]) * (box_4[3] - box_4[1])
    area_n = (boxes_n4[:, 2] - boxes_n4[:, 0]) * (boxes_n4[:, 3] - boxes_n4[:, 1])
    union = area_1 + area_n - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    smaller = np.minimum(area_1, area_n)
    iomin = np.where(smaller > 0, inter / np.maximum(smaller, 1e-12), 0.0)
    return iou, iomin


def weighted_nms(
    boxes_n4: np.ndarray, keypoints_n42: np.ndarray, scores_n: np.ndarray, iou: float = 0.3, iomin: float = 0.6
) -> list[PoseCandidate]:
    """Merge overlapping detections (face-box IoU above `iou`, or the smaller box mostly inside the
    larger one: the same head seen at two scales): the best one's score, the score-weighted mean of
    the boxes and keypoints (mediapipe's WEIGHTED non-max suppression). Best first."""
    order = np.argsort(-scores_n, kind="stable")
    remaining = list(order)
    out: list[PoseCandidate] = []
    while remaining:
        idx = np.array(remaining)
        over_iou, over_min = _overlap_1n(boxes_n4[idx[0]], boxes_n4[idx])
        group = idx[over_iou > iou]
        group = group if len(group) else idx[:1]
        nested = idx[(over_iou <= iou) & (over_min > iomin)]
        w = scores_n[group][:, None]
        box = (boxes_n4[group] * w).sum(0) / w.sum()
        kps = (keypoints_n42[group] * w[:, :, None]).sum(0) / w.sum()
        # The same head at another scale: not averaged (its body keypoints differ), kept as a fallback.
        alternates = [keypoints_n42[i] for i in nested[: 2]]
        out.append(PoseCandidate(box, kps, float(scores_n[idx[0]]), len(group) + len(nested), alternates))
        grouped = set(group.tolist()) | set(nested.tolist()) | {int(idx[0])}
        remaining = [i for i in remaining if i not in grouped]
    return out


@dataclass(frozen=True)
class View:
    """A square region of the image fed to the detector (parts outside the image are black)."""

    x0: float
    y0: float
    side_px: float


@dataclass
class TileSettings:
    tile_fracs: tuple[float, ...] = (1.0, 0.5)
    """Tile sides as fractions of the image's short side, besides the whole image (letterboxed).
    1.0: square crops of a non-square photo show a close-up person larger than the letterboxed
    whole; 0.5: people down to about a sixth of the frame's height. 15-19 detector runs a photo; add
    0.33 (about 2.5x the runs) for smaller people."""
    overlap: float = 0.25
    """Overlap of neighbouring tiles, as a fraction of the tile side."""
    min_tile_px: float = 192.0
    """Tiles are at least this big (in image pixels, unless the image is smaller): smaller ones would
    only upscale the image."""
    min_score: float = 0.35
    """Detector score threshold (mediapipe's pose detector uses 0.5; lower finds people partly hidden
    or in profile, the landmark model's second look rejects the extra false finds: on the 20 COCO
    tuning photos 0.35 found 2 more people, and its 3 more false finds were dropped by
    EmbeddedSegmenter's presence and same-face checks)."""
    nms_iou: float = 0.3
    """Face boxes overlapping more than this (IoU) are one person."""
    nms_iomin: float = 0.6
    """So are two face boxes whose intersection is more than this of the smaller one."""


def tile_views(width: int, height: int, settings: TileSettings) -> list[View]:
    """The whole image letterboxed into one square, then overlapping square tiles per scale."""
    long_side, short_side = max(width, height), min(width, height)
    views = [View((width - long_side) / 2, (height - long_side) / 2, float(long_side))]
    for frac in settings.tile_fracs:
        side = max(frac * short_side, min(settings.min_tile_px, short_side))
        if side >= long_side - 0.5:
            continue  # the same as the whole image
        step = side * (1.0 - settings.overlap)
        xs = _positions(width, side, step)
        ys = _positions(height, side, step)
        views.extend(View(x, y, side) for y in ys for x in xs)
    unique: dict[tuple[int, int, int], View] = {}
    for v in views:
        unique.setdefault((round(v.x0), round(v.y0), round(v.side_px)), v)
    return list(unique.values())


def _positions(length: int, side: float, step: float) -> list[float]:
    if side >= length:
        return [(length - side) / 2]
    n = int(np.ceil((length - side) / step)) + 1
    return list(np.linspace(0.0, length - side, n))


def scaled_for(image_hw3: np.ndarray, side_px: float, source_hw3: np.ndarray | None = None
               ) -> tuple[np.ndarray, float]:  # fmt: skip
    """The image resized once for all views of one side: (resized image, scale = 224 / side).
    `source_hw3`: the same image already reduced (at least as large as the result), resized from
    instead of the full image (much cheaper for big photos)."""
    h, w = image_hw3.shape[:2]
    scale = INPUT_SIDE / side_px
    size_wh = (max(1, round(w * scale)), max(1, round(h * scale)))
    src = image_hw3 if source_hw3 is None or source_hw3.shape[1] < size_wh[0] else source_hw3
    interp = cv2.INTER_AREA if size_wh[0] < src.shape[1] else cv2.INTER_LINEAR
    return cv2.resize(src, size_wh, interpolation=interp), scale


Scaled = tuple[np.ndarray, float, tuple[int, int]]
"""The image (or a part of it) resized for the views of one side: (resized pixels, scale = 224 / side,
the image pixel (x, y) where the resized part starts)."""

SUB_IMAGE_MAX_SHARE = 0.6
"""Views of one side that lie in less than this share of the image (a look behind a face, a prompt's
squares) are cut from a resized part of the image around them, not from the whole image resized."""


def views_box(views: list[View], width: int, height: int, margin_px: float = 0.0) -> tuple[int, int, int, int]:
    """Integer box (x0, y0, x1, y1) around the views grown by `margin_px`, clipped to the image."""
    x0 = min(v.x0 for v in views) - margin_px
    y0 = min(v.y0 for v in views) - margin_px
    x1 = max(v.x0 + v.side_px for v in views) + margin_px
    y1 = max(v.y0 + v.side_px for v in views) + margin_px
    ix0, iy0 = int(np.clip(np.floor(x0), 0, width)), int(np.clip(np.floor(y0), 0, height))
    return ix0, iy0, int(np.clip(np.ceil(x1), ix0, width)), int(np.clip(np.ceil(y1), iy0, height))


def view_input(image_hw3: np.ndarray, view: View, scaled: tuple[np.ndarray, float] | Scaled | None = None
               ) -> np.ndarray:  # fmt: skip
    """The view as the detector's input: (1, 224, 224, 3) float32 in [-1, 1] (black outside the
    image). `scaled`: the image already resized for this view's side (scaled_for, or a part of it with
    its offset: Scaled), shared by tiles."""
    small, scale = scaled[:2] if scaled is not None else scaled_for(image_hw3, view.side_px)
    off_x, off_y = scaled[2] if scaled is not None and len(scaled) > 2 else (0, 0)
    sh, sw = small.shape[:2]
    ox, oy = round((view.x0 - off_x) * scale), round((view.y0 - off_y) * scale)  # the view's corner in `small`
    sx0, sy0 = max(0, ox), max(0, oy)
    sx1, sy1 = min(sw, ox + INPUT_SIDE), min(sh, oy + INPUT_SIDE)
    canvas = np.zeros((INPUT_SIDE, INPUT_SIDE, 3), dtype=np.uint8)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - oy : sy1 - oy, sx0 - ox : sx1 - ox] = small[sy0:sy1, sx0:sx1]
    return (canvas.astype(np.float32) / 127.5 - 1.0)[None]


@dataclass
class TiledPoseDetector:
    """BlazePose's detector over tiles; see the module docstring."""

    settings: TileSettings = field(default_factory=TileSettings)
    model: TfliteModel = field(default_factory=lambda: TfliteModel(POSE_DETECTOR, lanes=DETECTOR_LANES))
    """The detector; with several lanes, the views of one `detect` run on them at the same time."""

    def detect_view(self, image_hw3: np.ndarray, view: View, scaled: tuple[np.ndarray, float] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """Detections in one view, in image pixels: (boxes (M, 4), keypoints (M, 4, 2), scores (M,))."""
        scaled = scaled if scaled is not None else scaled_for(image_hw3, view.side_px)
        level: Scaled = (scaled[0], scaled[1], (0, 0))
        return self._decode_view(view, level, self.model.run(view_input(image_hw3, view, level)))

    def _decode_view(self, view: View, level: Scaled, raw: list[np.ndarray]
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """The model's outputs on one view (cut from `level`) decoded into image pixels."""
        raw_boxes, raw_scores = raw
        boxes, kps, scores = decode_detections(raw_boxes[0], raw_scores[0], self.settings.min_score)
        # The input's pixel (0, 0) corner is the view's corner rounded in the resized image (part).
        _, scale, offset = level
        side = INPUT_SIDE / scale
        off = np.asarray(offset, dtype=np.float64)
        origin = off + np.array([round((view.x0 - off[0]) * scale), round((view.y0 - off[1]) * scale)]) / scale
        boxes = boxes * side + np.tile(origin, 2)
        kps = kps * side + origin
        return boxes, kps, scores

    def _levels(self, image_hw3: np.ndarray, views: list[View]) -> dict[float, Scaled]:
        """The image resized once per views' side. A side whose views lie in a small part of the image
        (SUB_IMAGE_MAX_SHARE) resizes only that part (with a 2 resized pixels' margin); the others the
        whole image, each from the last (largest scale first)."""
        h, w = image_hw3.shape[:2]
        levels: dict[float, Scaled] = {}
        previous = None
        for side in sorted({v.side_px for v in views}):
            x0, y0, x1, y1 = views_box([v for v in views if v.side_px == side], w, h, 2.0 * side / INPUT_SIDE)
            if x1 > x0 and y1 > y0 and (x1 - x0) * (y1 - y0) < SUB_IMAGE_MAX_SHARE * w * h:
                small, scale = scaled_for(image_hw3[y0:y1, x0:x1], side)
                levels[side] = (small, scale, (x0, y0))
                continue
            small, scale = scaled_for(image_hw3, side, previous)
            levels[side] = (small, scale, (0, 0))
            previous = small
        return levels

    def detect(self, image_hw3: np.ndarray, views: list[View] | None = None) -> list[PoseCandidate]:
        """People found in any view (default: the tiles of `settings`), merged, best first."""
        h, w = image_hw3.shape[:2]
        views = views if views is not None else tile_views(w, h, self.settings)
        levels = self._levels(image_hw3, views)
        # The views are independent: their inputs made here, the model runs shared out over its lanes (only
        # the runs: the lanes' threads hardly need the GIL), decoded here in the views' order.
        inputs = [view_input(image_hw3, v, levels[v.side_px]) for v in views]
        raws = self.model.map_lanes(lambda x, run: run(x), inputs)
        found = [self._decode_view(v, levels[v.side_px], raw) for v, raw in zip(views, raws, strict=True)]
        boxes = np.concatenate([f[0] for f in found]) if found else np.zeros((0, 4))
        if not len(boxes):
            return []
        kps = np.concatenate([f[1] for f in found])
        scores = np.concatenate([f[2] for f in found])
        return weighted_nms(boxes, kps, scores, self.settings.nms_iou, self.settings.nms_iomin)

    def close(self) -> None:
        self.model.close()
