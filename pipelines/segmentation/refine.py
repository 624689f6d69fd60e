"""Mask refinement from click prompts with OpenCV GrabCut, on a small crop around the person.

GrabCut runs on a crop, downscaled so that its long side is at most `max_side` pixels (384 by
default: about 100-200 ms on 2 CPU cores).
Seeds: the prior mask gives probable foreground / background, positive clicks are small discs of
definite foreground, negative clicks discs of definite background, and everything outside the box is
definite background. Clicks on a known person (without a box) only change the mask near them: the
crop is a square around the clicks whose border keeps the prior's labels. A box (or a new person) is
segmented as a whole, in a crop around the box and the mask. Where GrabCut agrees with the prior mask,
the prior's soft edges are kept.
Points are pixels (x, y) with the origin at the top-left image corner.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class GrabCutSettings:
    max_side: int = 384
    """Long side, in pixels, of the downscaled crop that GrabCut works on."""
    local_max_side: int = 192
    """The same for the small crop around clicks on a known person."""
    new_max_side: int = 192
    """The same for a new person (no prior mask): almost every label is uncertain, GrabCut is slower."""
    iterations: int = 3
    """GrabCut iterations."""
    pad_frac: float = 0.15
    """Margin around the region of interest, as a fraction of its size (gives GrabCut background)."""
    disc_frac: float = 0.01
    """Radius of a click's disc as a fraction of the image's long side (at least 3 px)."""
    local_frac: float = 0.15
    """Clicks on a known person change its mask only within this distance of them (fraction of the
    person's box long side, at least 24 px)."""
    click_reach_frac: float = 0.07
    """Around a click on a known person, a disc of this radius (fraction of the person's box long
    side) is re-seeded as probable fg (positive click) or probable bg (negative click)."""
    band_frac: float = 0.01
    """With a box on a known person, only a band of this half-width (fraction of the crop's long side)
    along the mask's edge may change."""
    point_region_frac: float = 0.15
    """Without a mask or a box, half-size of the square crop around the clicks (fraction of the
    image's long side) in which GrabCut may grow a new person."""


def _bbox_of(mask_hw: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(mask_hw)
    if len(xs) == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def _union(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    if a is None:
        return b
    if b is None:
        return a
    return np.array([min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])], dtype=np.float64)


def _clip_roi(roi: np.ndarray, shape_hw: tuple[int, int], pad_frac: float) -> tuple[int, int, int, int]:
    h, w = shape_hw
    pad_x = pad_frac * (roi[2] - roi[0]) + (8 if pad_frac else 0)
    pad_y = pad_frac * (roi[3] - roi[1]) + (8 if pad_frac else 0)
    x0 = int(np.clip(np.floor(roi[0] - pad_x), 0, w - 1))
    y0 = int(np.clip(np.floor(roi[1] - pad_y), 0, h - 1))
    x1 = int(np.clip(np.ceil(roi[2] + pad_x), x0 + 1, w))
    y1 = int(np.clip(np.ceil(roi[3] + pad_y), y0 + 1, h))
    return x0, y0, x1, y1


def _roi(
    shape_hw: tuple[int, int],
    prior_mask_hw: np.ndarray | None,
    points_n2: np.ndarray,
    fg_points_n2: np.ndarray,
    box_xyxy: np.ndarray | None,
    settings: GrabCutSettings,
) -> tuple[tuple[int, int, int, int], bool]:
    """Crop (x0, y0, x1, y1) in integer pixels, and whether it is a local crop around the clicks.

    Clicks on a known person (no box) only change the mask near them: a local crop, whose border keeps
    the prior's labels. A box, or a new person, is segmented as a whole: a crop around everything.
    """
    h, w = shape_hw
    prior_box = _bbox_of(prior_mask_hw > 0.5) if prior_mask_hw is not None else None
    if prior_box is not None and box_xyxy is None and len(points_n2):
        half = max(settings.local_frac * max(prior_box[2] - prior_box[0], prior_box[3] - prior_box[1]), 24.0)
        roi = np.concatenate([points_n2.min(0) - half, points_n2.max(0) + half])
        return _clip_roi(roi, shape_hw, 0.0), True
    roi = _union(prior_box, None if box_xyxy is None else np.asarray(box_xyxy, dtype=np.float64))
    if len(fg_points_n2):
        pts_bbox = np.concatenate([fg_points_n2.min(0), fg_points_n2.max(0)])
        if roi is None:  # only clicks: let the new person grow in a square around them
            half = settings.point_region_frac * max(h, w)
            pts_bbox = pts_bbox + np.array([-half, -half, half, half])
        roi = _union(roi, pts_bbox)
    if roi is None:
        return (0, 0, w, h), False
    return _clip_roi(roi, shape_hw, settings.pad_frac), False


def _draw_discs(labels_hw: np.ndarray, points_n2: np.ndarray, radius: int, value: int) -> None:
    for x, y in points_n2:
        cv2.circle(labels_hw, (int(np.floor(x)), int(np.floor(y))), radius, value, thickness=-1)


def refine_mask_grabcut(
    image_rgb_hw3: np.ndarray,
    prior_mask_hw: np.ndarray | None,
    fg_points_n2: np.ndarray,
    bg_points_n2: np.ndarray,
    box_xyxy: np.ndarray | None = None,
    settings: GrabCutSettings | None = None,
) -> np.ndarray:
    """Refine (or, without a prior, create) a person mask with GrabCut.

    Args:
        image_rgb_hw3: the image, uint8 (H, W, 3).
        prior_mask_hw: the current soft mask, float (H, W) in [0, 1], or None for a new person.
        fg_points_n2: positive clicks (x, y) in pixels: definitely this person.
        bg_points_n2: negative clicks (x, y) in pixels: definitely not this person.
        box_xyxy: optional box (x0, y0, x1, y1) in pixels: the person is inside it.

    Returns:
        The refined soft mask, float32 (H, W) in [0, 1], at full image resolution.
    """
    settings = settings or GrabCutSettings()
    h, w = image_rgb_hw3.shape[:2]
    fg_points_n2 = np.asarray(fg_points_n2, dtype=np.float64).reshape(-1, 2)
    bg_points_n2 = np.asarray(bg_points_n2, dtype=np.float64).reshape(-1, 2)
    box = None if box_xyxy is None else np.asarray(box_xyxy, dtype=np.float64).reshape(4)
    prior_hw = None if prior_mask_hw is None else np.clip(prior_mask_hw.astype(np.float32), 0.0, 1.0)

    all_points_n2 = np.concatenate([fg_points_n2, bg_points_n2])
    (x0, y0, x1, y1), local = _roi((h, w), prior_hw, all_points_n2, fg_points_n2, box, settings)
    crop_w, crop_h = x1 - x0, y1 - y0
    max_side = settings.local_max_side if local else settings.max_side
    if prior_hw is None:  # a new person: GrabCut has more to decide, so it gets fewer pixels
        max_side = min(max_side, settings.new_max_side)
    scale = min(1.0, max_side / max(crop_w, crop_h))
    small_w, small_h = max(1, round(crop_w * scale)), max(1, round(crop_h * scale))
    sx, sy = small_w / crop_w, small_h / crop_h
    origin_2, scale_2 = np.array([x0, y0], dtype=np.float64), np.array([sx, sy])

    def small_xy(points_n2: np.ndarray) -> np.ndarray:
        """Full-image pixels -> pixels of the downscaled crop."""
        return (points_n2 - origin_2) * scale_2

    crop_rgb = image_rgb_hw3[y0:y1, x0:x1]
    small_rgb = cv2.resize(crop_rgb, (small_w, small_h), interpolation=cv2.INTER_AREA)
    small_rgb = np.ascontiguousarray(small_rgb[..., :3], dtype=np.uint8)

    # Seeds: probable fg/bg from the prior (without one: from the box, or from discs around the clicks).
    labels_hw = np.full((small_h, small_w), cv2.GC_PR_BGD, dtype=np.uint8)
    full_radius = max(3, round(settings.disc_frac * max(h, w)))
    radius = max(2, round(full_radius * min(sx, sy)))
    if prior_hw is not None:
        prior_small = cv2.resize(prior_hw[y0:y1, x0:x1], (small_w, small_h), interpolation=cv2.INTER_LINEAR)
        fg_prior_hw = prior_small > 0.5
        if local:  # the crop's border keeps the prior's labels, so the change stays near the clicks
            labels_hw[fg_prior_hw] = cv2.GC_PR_FGD
            ring_hw = np.ones((small_h, small_w), dtype=bool)
            ring_hw[2:-2, 2:-2] = False
            labels_hw[ring_hw] = np.where(fg_prior_hw[ring_hw], cv2.GC_FGD, cv2.GC_BGD)
        else:  # a box on a known person: only a band along the prior's edge may change
            band = max(2, round(settings.band_frac * max(small_w, small_h)))
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
            fg_u8 = fg_prior_hw.astype(np.uint8)
            labels_hw[:] = cv2.GC_BGD
            labels_hw[cv2.dilate(fg_u8, kernel) > 0] = cv2.GC_PR_BGD
            labels_hw[fg_prior_hw] = cv2.GC_PR_FGD
            labels_hw[cv2.erode(fg_u8, kernel) > 0] = cv2.GC_FGD
        # Around a click the click decides the seed; GrabCut then grows or carves the region by colour.
        prior_box = _bbox_of(prior_hw > 0.5)
        size = 0.0 if prior_box is None else max(prior_box[2] - prior_box[0], prior_box[3] - prior_box[1])
        reach = max(radius, round(settings.click_reach_frac * size * min(sx, sy)))
        _draw_discs(labels_hw, small_xy(bg_points_n2), reach, cv2.GC_PR_BGD)
        _draw_discs(labels_hw, small_xy(fg_points_n2), reach, cv2.GC_PR_FGD)
    elif box is not None:
        bx0, by0 = small_xy(box[:2])
        bx1, by1 = small_xy(box[2:])
        labels_hw[max(0, int(by0)) : int(np.ceil(by1)), max(0, int(bx0)) : int(np.ceil(bx1))] = cv2.GC_PR_FGD
    else:
        # Clicks alone: grow from a disc around each click by colour; the crop's border is background.
        reach = max(radius, round(settings.click_reach_frac * max(small_w, small_h)))
        _draw_discs(labels_hw, small_xy(fg_points_n2), reach, cv2.GC_PR_FGD)
        labels_hw[[0, -1], :] = cv2.GC_BGD
        labels_hw[:, [0, -1]] = cv2.GC_BGD
    if box is not None:
        xs = (np.arange(small_w) + 0.5) / sx + x0
        ys = (np.arange(small_h) + 0.5) / sy + y0
        inside_y = (ys[:, None] >= box[1]) & (ys[:, None] <= box[3])
        inside_x = (xs[None, :] >= box[0]) & (xs[None, :] <= box[2])
        outside_box_hw = ~(inside_y & inside_x)
        labels_hw[outside_box_hw] = cv2.GC_BGD
    _draw_discs(labels_hw, small_xy(bg_points_n2), radius, cv2.GC_BGD)
    _draw_discs(labels_hw, small_xy(fg_points_n2), radius, cv2.GC_FGD)

    is_fg = (labels_hw == cv2.GC_FGD) | (labels_hw == cv2.GC_PR_FGD)
    if not is_fg.any():  # nothing to grow from: the prompts removed everything
        fg_small = np.zeros((small_h, small_w), dtype=np.float32)
    else:
        if is_fg.all():  # GrabCut needs background samples: use the crop's border
            labels_hw[[0, -1], :] = cv2.GC_PR_BGD
            labels_hw[:, [0, -1]] = cv2.GC_PR_BGD
        bgd_model = np.zeros((1, 65), np.float64)
        fgd_model = np.zeros((1, 65), np.float64)
        mode = cv2.GC_INIT_WITH_MASK
        # With too few pixels of one kind for its colour model GrabCut fails: the seeds then stand.
        with contextlib.suppress(cv2.error):
            cv2.grabCut(small_rgb, labels_hw, None, bgd_model, fgd_model, settings.iterations, mode)
        fg_small = ((labels_hw == cv2.GC_FGD) | (labels_hw == cv2.GC_PR_FGD)).astype(np.float32)

    fg_crop = cv2.resize(fg_small, (crop_w, crop_h), interpolation=cv2.INTER_LINEAR)
    out_hw = np.zeros((h, w), dtype=np.float32) if prior_hw is None else prior_hw.copy()
    if prior_hw is not None:  # keep the prior's soft edges where GrabCut agrees with it
        prior_crop = prior_hw[y0:y1, x0:x1]
        agree = (fg_crop > 0.5) == (prior_crop > 0.5)
        fg_crop = np.where(agree, prior_crop, fg_crop)
    out_hw[y0:y1, x0:x1] = fg_crop
    if box is not None:  # outside the box is definitely not the person
        keep_hw = np.zeros((h, w), dtype=bool)
        keep_hw[max(0, int(box[1])) : int(np.ceil(box[3])), max(0, int(box[0])) : int(np.ceil(box[2]))] = True
        out_hw[~keep_hw] = 0.0
    # The clicks are definite, whatever the upsampling did around them.
    _draw_discs(out_hw, bg_points_n2, full_radius, 0)
    _draw_discs(out_hw, fg_points_n2, full_radius, 1)
    return np.clip(out_hw, 0.0, 1.0).astype(np.float32)
