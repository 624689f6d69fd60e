"""BlazePose's landmark model (full) run on one region of the image, decoded to image pixels.

Follows mediapipe's pose_landmark_by_roi graph: the region (a turned square, see roi.py) is resampled
to 256 x 256 RGB in [0, 1]; the model gives 39 landmarks (33 named + 6 auxiliary) as x, y (pixels of
the 256 crop), z, visibility and presence logits; a pose-presence flag; a 256 x 256 mask (logits); a
64 x 64 heatmap per landmark (used to refine x, y, as RefineLandmarksFromHeatmapCalculator does);
and 39 world landmarks in metres (hip-centred, axes of the crop: turned back by the region's rotation).
Auxiliary landmarks 33 and 34 are the mid-hip and the top of the body circle: BlazePose's own next
region (landmarks_to_roi) comes from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.segmentation.roi import RotatedRect, crop_region, paste_region
from pipelines.segmentation.tflite_runner import POSE_LANDMARKS_FULL, TfliteModel

INPUT_SIDE = 256
NUM_LANDMARKS = 39
NUM_NAMED = 33
HEATMAP_KERNEL = 7
HEATMAP_MIN_CONFIDENCE = 0.5


def _mirror(name: str) -> str:
    return name.replace("left", "@").replace("right", "left").replace("@", "right")


MIRROR_K = np.array([BLAZEPOSE_NAMES.index(_mirror(n)) for n in BLAZEPOSE_NAMES])
"""BlazePose index of each landmark's left/right twin (the nose is its own)."""


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -80.0, 80.0)))


@dataclass
class RegionLandmarks:
    """What the landmark model saw in one region, in image pixels / metres."""

    rect: RotatedRect
    """The region the model looked at."""
    presence: float
    """The model's pose-presence score in [0, 1]: is there a person in the region at all."""
    xy_k2: np.ndarray
    """The 33 named landmarks (33, 2) in image pixels."""
    visibility_k: np.ndarray
    """Visibility in [0, 1] per landmark (33,)."""
    presence_k: np.ndarray
    """Presence (inside the image, not occluded) in [0, 1] per landmark (33,)."""
    world_k3: np.ndarray
    """World landmarks (33, 3): metres, hip-centred, camera-parallel axes (OpenCV: y down, z forward)."""
    aux_xy_62: np.ndarray
    """The 6 auxiliary landmarks in image pixels (33: mid-hip, 34: top of the body circle, ...)."""
    mask_crop_hw: np.ndarray = field(repr=False)
    """The person's mask in the region's 256 x 256 crop, in [0, 1]."""

    def next_rect(self) -> RotatedRect:
        """The region BlazePose would look at next, from its own auxiliary landmarks."""
        return RotatedRect.from_alignment(self.aux_xy_62[0], self.aux_xy_62[1])

    def mask_hw(self, shape_hw: tuple[int, int]) -> np.ndarray:
        """The mask warped into the image, float32 (H, W) in [0, 1] (0 outside the region, and where
        the model is sure there is no one: below 0.01)."""
        return paste_region(self.mask_crop_hw, self.rect, shape_hw, floor=0.01)


def mean_landmarks(looks: list[RegionLandmarks]) -> RegionLandmarks:
    """Several looks at one person averaged (landmarks, world landmarks, confidences; the first look's
    region and mask, resampled masks of other regions would not line up); presence: the lowest."""
    if len(looks) == 1:
        return looks[0]
    mean = lambda attr: np.mean([getattr(lm, attr) for lm in looks], axis=0)  # noqa: E731
    same_rect = all(lm.rect == looks[0].rect for lm in looks)
    return RegionLandmarks(
        rect=looks[0].rect,
        presence=min(lm.presence for lm in looks),
        xy_k2=mean("xy_k2"),
        visibility_k=mean("visibility_k"),
        presence_k=mean("presence_k"),
        world_k3=mean("world_k3"),
        aux_xy_62=mean("aux_xy_62"),
        mask_crop_hw=mean("mask_crop_hw") if same_rect else looks[0].mask_crop_hw,
    )


def refine_with_heatmap(xy_k2: np.ndarray, heatmap_hwk: np.ndarray, crop_side: int = INPUT_SIDE) -> np.ndarray:
    """Each landmark moved to the confidence-weighted mean of its heatmap around it (7 x 7 cells),
    where the heatmap is confident there (max sigmoid >= 0.5); crop pixels in and out. (Vectorised:
    only the cells of the landmarks' windows go through the sigmoid.)"""
    hm_h, hm_w, k = heatmap_hwk.shape
    out = np.array(xy_k2, dtype=np.float64, copy=True)
    n = min(k, len(out))
    half = (HEATMAP_KERNEL - 1) // 2
    col = (out[:n, 0] / crop_side * hm_w).astype(np.int64)  # as int(): towards zero
    row = (out[:n, 1] / crop_side * hm_h).astype(np.int64)
    inside = (col >= 0) & (col < hm_w) & (row >= 0) & (row < hm_h) & np.isfinite(out[:n]).all(axis=1)
    idx = np.flatnonzero(inside)
    if not len(idx):
        return out
    offs = np.arange(-half, half + 1)
    rows_iw = row[idx, None] + offs  # (I, 7) window rows, some outside the heatmap
    cols_iw = col[idx, None] + offs
    ok_r, ok_c = (rows_iw >= 0) & (rows_iw < hm_h), (cols_iw >= 0) & (cols_iw < hm_w)
    logits = heatmap_hwk[np.clip(rows_iw, 0, hm_h - 1)[:, :, None], np.clip(cols_iw, 0, hm_w - 1)[:, None, :],
                         idx[:, None, None]]  # fmt: skip
    window = _sigmoid(logits) * (ok_r[:, :, None] & ok_c[:, None, :])  # cells outside count for nothing
    total = window.sum(axis=(1, 2))
    good = (window.max(axis=(1, 2)) >= HEATMAP_MIN_CONFIDENCE) & (total > 0)
    safe = np.where(total > 0, total, 1.0)
    mean_c = (window.sum(axis=1) * cols_iw).sum(axis=1) / safe
    mean_r = (window.sum(axis=2) * rows_iw).sum(axis=1) / safe
    out[idx[good], 0] = (mean_c[good] + 0.5) / hm_w * crop_side
    out[idx[good], 1] = (mean_r[good] + 0.5) / hm_h * crop_side
    return out


@dataclass
class PoseLandmarkModel:
    """BlazePose's landmark model on regions of an image."""

    model: TfliteModel = field(default_factory=lambda: TfliteModel(POSE_LANDMARKS_FULL))

    def run(self, image_hw3: np.ndarray, rect: RotatedRect, mirror_average: bool = False,
            skip_mirror_below: float | None = None, even_halving: bool = False) -> RegionLandmarks:  # fmt: skip
        """The landmarks in one region. `mirror_average`: also run on the mirrored crop and average the
        two (left and right swapped back): one more model run, steadier landmarks. `skip_mirror_below`:
        when the first run's presence is below it, that run is returned alone (the average's presence,
        the lower of the two, could only be lower: a caller that rejects below it decides the same).
        `even_halving`: the crop cut with crop_region's exact 2:1 halvings (see there)."""
        crop = crop_region(image_hw3, rect, INPUT_SIDE, even_halving=even_halving)
        out = self._decode(crop, rect, mirrored=False)
        if not mirror_average or (skip_mirror_below is not None and out.presence < skip_mirror_below):
            return out
        other = self._decode(np.ascontiguousarray(crop[:, ::-1]), rect, mirrored=True)
        return mean_landmarks([out, other])

    def _decode(self, crop_hw3: np.ndarray, rect: RotatedRect, mirrored: bool) -> RegionLandmarks:
        """Run the model on a crop of `rect` (mirrored left-right or not) and decode into the image."""
        raw_lm, raw_flag, raw_mask, raw_heatmap, raw_world = self.model.run(
            (crop_hw3.astype(np.float32) / 255.0)[None]
        )
        lm = raw_lm.reshape(NUM_LANDMARKS, 5)
        xy_crop = refine_with_heatmap(lm[:, :2], raw_heatmap[0])
        world = raw_world.reshape(NUM_LANDMARKS, 3)[:NUM_NAMED].astype(np.float64)
        mask = _sigmoid(raw_mask[0, :, :, 0]).astype(np.float32)
        vis, pres = _sigmoid(lm[:NUM_NAMED, 3]), _sigmoid(lm[:NUM_NAMED, 4])
        if mirrored:  # back to the unmirrored crop: x flips, and the person's left is their right
            xy_crop[:, 0] = INPUT_SIDE - xy_crop[:, 0]
            world[:, 0] = -world[:, 0]
            swap = np.concatenate([MIRROR_K, np.arange(NUM_NAMED, NUM_LANDMARKS)])
            xy_crop, world, vis, pres = xy_crop[swap], world[MIRROR_K], vis[MIRROR_K], pres[MIRROR_K]
            mask = np.ascontiguousarray(mask[:, ::-1])
        xy_img = rect.to_image(xy_crop, INPUT_SIDE)
        return RegionLandmarks(
            rect=rect,
            presence=float(np.clip(raw_flag.reshape(-1)[0], 0.0, 1.0)),
            xy_k2=xy_img[:NUM_NAMED],
            visibility_k=vis,
            presence_k=pres,
            world_k3=rect.rotate_vectors(world),
            aux_xy_62=xy_img[NUM_NAMED:],
            mask_crop_hw=mask,
        )

    def close(self) -> None:
        self.model.close()
