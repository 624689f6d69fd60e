"""The world's up from the scene itself: the vertical vanishing point of the image's line segments.

Walls' edges, door frames, table legs and poles are vertical in the world; seen by a pinhole camera their
image lines meet in the vertical vanishing point vp, and K^-1 vp is the world's up in the camera frame
(OpenCV frame: x right, y down, z forward). This is evidence for the ground's normal that does not come
from the fitted bodies (whose up has a per-view bias, see pipelines.scene.ground).

Segments: OpenCV's line segment detector (cv2.createLineSegmentDetector, OpenCV >= 4.5.1) on the grey
image; those shorter than MIN_LENGTH_FRAC of the image diagonal, on a person (the `exclude_hw` mask) or more
than `VanishingGates.max_segment_deg` from the bodies' up projected into the image at the segment are
dropped. Each kept segment (end points p, q) defines its interpretation plane through the camera centre,
normal n = (K^-1 p) x (K^-1 q); the up direction d lies in every plane of a vertical segment: n . d = 0.
RANSAC over segment pairs (d = n_i x n_j, drawn only within `max_angle_to_bodies_deg` of the bodies' up;
inliers |n . d| < sin(INLIER_DEG), scored by their length), then least squares on the inliers (the smallest
eigenvector of sum length * n n^T) and the inliers re-picked (REFINE_ROUNDS). The sign of d is the bodies'
up's. Several frames of a static camera pool their segments (a list of per-frame segments; the lengths count
per frame): the scene's lines repeat, the people's move.

`vertical_up` says whether the vanishing point is well supported (`VanishingGates`: inlier count, their
total length in image diagonals, the angle to the bodies' up); the ground then takes it as its normal and
the feet fix only the offset (pipelines.scene.ground.fit_ground_over_time's `up_cam_3`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipelines.scene.ground import FootedBody, GroundPlane, GroundPriors, fit_ground_over_time, unit_rows

MIN_LENGTH_FRAC = 0.02
"""Segments shorter than this fraction of the image diagonal are left out."""
INLIER_DEG = 0.5
"""A segment is an inlier when the up direction is within this angle of its interpretation plane."""
RANSAC_ITERATIONS = 500
REFINE_ROUNDS = 3
MAX_SEGMENTS = 4000
"""The longest this many segments are kept (pooled frames)."""


@dataclass
class VanishingGates:
    """When the vanishing point is trusted over the bodies (chosen on pose2sim_single)."""

    max_segment_deg: float = 25.0
    """Candidate segments within this angle (degrees, in the image) of the bodies' up projected there."""
    min_inliers: int = 10
    """At least this many inlier segments ..."""
    min_length_diag: float = 0.25
    """... of at least this total length, in image diagonals (pooled frames: per frame)."""
    max_angle_to_bodies_deg: float = 20.0
    """The vanishing point's up within this angle of the bodies' up (RANSAC draws no hypothesis outside:
    the fitted bodies' up is 10-14 degrees off on pose2sim_single's videos, the vanishing point 0.1-5)."""


@dataclass
class VerticalVanishing:
    """The vertical vanishing point's up direction and its support."""

    up_cam_3: np.ndarray
    """Unit up direction (OpenCV camera frame), the bodies' up's sign."""
    n_candidates: int
    """Near-vertical segments considered."""
    n_inliers: int
    inlier_length_diag: float
    """Total inlier length, in image diagonals per frame."""
    angle_to_bodies_deg: float
    supported: bool
    """Whether it passed the gates (else the ground keeps the bodies' up)."""

    def as_dict(self) -> dict:
        return {"up_cam": [round(float(v), 6) for v in self.up_cam_3], "n_candidates": self.n_candidates,
                "n_inliers": self.n_inliers, "inlier_length_diag": round(self.inlier_length_diag, 3),
                "angle_to_bodies_deg": round(self.angle_to_bodies_deg, 3), "supported": self.supported}  # fmt: skip


def line_segments(image: np.ndarray, max_side_px: int | None = None) -> np.ndarray:
    """Line segments (n, 4): x1, y1, x2, y2 in pixels, of an RGB or grey uint8 image. `max_side_px`: a
    larger image is converted to grey and reduced (area averaging) to this long side first (LSD's time
    grows with the pixels), the segments mapped back to the image's pixels."""
    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    h, w = grey.shape[:2]
    k = 1.0 if max_side_px is None else min(1.0, max_side_px / max(h, w))
    if k < 1.0:
        grey = cv2.resize(grey, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    lines = cv2.createLineSegmentDetector().detect(np.ascontiguousarray(grey, dtype=np.uint8))[0]
    if lines is None:
        return np.zeros((0, 4))
    seg_n4 = lines.reshape(-1, 4).astype(np.float64)
    if k < 1.0:  # pixel centres: x = (x_small + 0.5) * w / w_small - 0.5
        sx, sy = w / grey.shape[1], h / grey.shape[0]
        seg_n4 = (seg_n4 + 0.5) * np.array([sx, sy, sx, sy]) - 0.5
    return seg_n4


PHOTO_MAX_SIDE_PX = 1920
"""A photo's segments are detected at most at this long side (LSD's time grows with the pixels: ~0.25-0.45 s
of one core for 1-2.5 Mpx; the image mode runs it in a worker thread once the people are detected, beside
their keypoints and body fits, once per image of a session). Smaller was
tried on pose2sim_single's tuning frames (1080x1920) and left out: from 1600 px down the per-photo
vanishing points got worse against the calibration; so did fewer rows only (0.5-0.8 of them), LSD's own
scale 0.7, quant 3 and no refinement (README, "Speed: one photo")."""
PEOPLE_PAD_FRAC = 0.15
"""The people's boxes are grown by this much on every side before their segments are dropped."""
PEOPLE_FILL_PAD_FRAC = 0.10
"""Before the LSD, the people's detection boxes grown by this much are filled with the photo's mean grey:
their clothes' and limbs' texture is ~1/4 of the LSD's time on a full-body photo (lunge.jpg at 1280x1920:
~230 -> ~170 ms of CPU), and no segment there is kept. The fill lies inside the PEOPLE_PAD_FRAC mask, so its
own edges and the segments that run into it end there and are dropped as before; the kept segments and the
vertical vanishing points on pose2sim_single's tuning frames are as without it (README, "Speed: one photo")."""


def photo_line_segments(rgb_hw3: np.ndarray, boxes_n4: np.ndarray | None = None) -> np.ndarray:
    """All the line segments (n, 4) of one photo, in its pixels (detected at most at PHOTO_MAX_SIDE_PX).
    `boxes_n4`: the people's boxes (x1, y1, x2, y2 pixels), grown by PEOPLE_FILL_PAD_FRAC and filled with the
    mean grey first (segments there are left out anyway: photo_segments)."""
    grey_hw = cv2.cvtColor(np.ascontiguousarray(rgb_hw3), cv2.COLOR_RGB2GRAY) if rgb_hw3.ndim == 3 else rgb_hw3
    boxes_n4 = np.zeros((0, 4)) if boxes_n4 is None else np.asarray(boxes_n4, dtype=np.float64).reshape(-1, 4)
    if len(boxes_n4):
        h, w = grey_hw.shape[:2]
        grey_hw = grey_hw.copy() if grey_hw is rgb_hw3 else grey_hw
        grey_hw[boxes_mask(boxes_n4, w, h, PEOPLE_FILL_PAD_FRAC)] = int(round(float(grey_hw.mean())))
    return line_segments(grey_hw, PHOTO_MAX_SIDE_PX)


def photo_segments(rgb_hw3: np.ndarray, boxes_n4: np.ndarray, all_segments_n4: np.ndarray | None = None
                   ) -> np.ndarray:  # fmt: skip
    """The line segments (n, 4) of one photo off the people's boxes (x1, y1, x2, y2 pixels, grown by
    PEOPLE_PAD_FRAC), in the photo's pixels. `all_segments_n4`: photo_line_segments(rgb_hw3, boxes) when
    already detected (the image mode detects them, with the detections' boxes, while the bodies are fitted)."""
    h, w = rgb_hw3.shape[:2]
    segments_n4 = photo_line_segments(rgb_hw3, boxes_n4) if all_segments_n4 is None else all_segments_n4
    return segments_off_mask(segments_n4, boxes_mask(np.asarray(boxes_n4).reshape(-1, 4), w, h, PEOPLE_PAD_FRAC))


def segments_off_mask(segments_n4: np.ndarray, exclude_hw: np.ndarray | None) -> np.ndarray:
    """The segments whose midpoint and both ends are off `exclude_hw` (True = a person)."""
    if exclude_hw is None or not len(segments_n4):
        return segments_n4
    h, w = exclude_hw.shape
    keep = np.ones(len(segments_n4), dtype=bool)
    for a in (0.0, 0.5, 1.0):
        p = segments_n4[:, :2] * (1 - a) + segments_n4[:, 2:] * a
        x = np.clip(p[:, 0].round().astype(int), 0, w - 1)
        y = np.clip(p[:, 1].round().astype(int), 0, h - 1)
        keep &= ~exclude_hw[y, x]
    return segments_n4[keep]


def near_vertical(segments_n4: np.ndarray, K_33: np.ndarray, up_cam_3: np.ndarray, max_deg: float) -> np.ndarray:
    """Mask (n,) of the segments within `max_deg` (image angle) of the up direction's image line through
    their midpoint (towards its vanishing point K up, which may be at infinity)."""
    mid_n2 = (segments_n4[:, :2] + segments_n4[:, 2:]) / 2
    vp_3 = K_33 @ up_cam_3
    # towards (or away from) the vanishing point: the sign does not matter
    toward_n2 = np.broadcast_to(vp_3[:2], mid_n2.shape) if abs(vp_3[2]) < 1e-9 else vp_3[:2] / vp_3[2] - mid_n2
    seg_n2 = segments_n4[:, 2:] - segments_n4[:, :2]
    cos_n = np.abs(np.sum(unit_rows(seg_n2) * unit_rows(toward_n2), axis=1))
    return cos_n >= np.cos(np.radians(max_deg))


def _draw_pairs(rng: np.random.Generator, prob_n: np.ndarray, n_pairs: int) -> np.ndarray:
    """(n_pairs, 2) index pairs, each two different indices drawn with probabilities `prob_n`: the same
    draws as `n_pairs` calls of rng.choice(n, size=2, replace=False, p=prob_n) (numpy's inverse-CDF
    sampling, a repeated index drawn again with its probability removed), without their per-call checks."""
    cdf_n = np.cumsum(prob_n)
    cdf_n /= cdf_n[-1]
    pairs = np.empty((n_pairs, 2), dtype=np.int64)
    for k in range(n_pairs):
        i, j = cdf_n.searchsorted(rng.random(2), side="right")
        if i == j:
            rest_n = prob_n.copy()
            rest_n[i] = 0.0
            cdf_rest_n = np.cumsum(rest_n)
            cdf_rest_n /= cdf_rest_n[-1]
            j = int(cdf_rest_n.searchsorted(rng.random(1), side="right")[0])
        pairs[k] = i, j
    return pairs


def _lsq_direction(n_n3: np.ndarray, w_n: np.ndarray) -> np.ndarray:
    """The unit d minimising sum w (n . d)^2."""
    _, vecs = np.linalg.eigh((w_n[:, None] * n_n3).T @ n_n3)
    return vecs[:, 0]


def _longest(seg: np.ndarray, length_n: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """The `n_max` longest segments (all where there are fewer) and their lengths."""
    if len(seg) <= n_max:
        return seg, length_n
    top = np.argsort(-length_n)[:n_max]
    return seg[top], length_n[top]


def _long_segments(segments: list[np.ndarray], diag: float) -> tuple[np.ndarray, np.ndarray]:
    """All frames' segments (N, 4: x1, y1, x2, y2 pixels) at least MIN_LENGTH_FRAC of the image diagonal `diag`
    long, and their lengths (N,)."""
    seg = np.concatenate([np.zeros((0, 4))] + [np.asarray(s, dtype=np.float64).reshape(-1, 4) for s in segments])
    length_n = np.linalg.norm(seg[:, 2:] - seg[:, :2], axis=1)
    keep = length_n >= MIN_LENGTH_FRAC * diag
    return seg[keep], length_n[keep]


def vertical_up(segments: Sequence[np.ndarray], K_33: np.ndarray, width: int, height: int,
                bodies_up_cam_3: np.ndarray, gates: VanishingGates | None = None, seed: int = 0
                ) -> VerticalVanishing | None:  # fmt: skip
    """The vertical vanishing point's up from the segments (n, 4) of one or several frames of one camera
    (pixels of a width x height image with intrinsics K_33); None with fewer than 2 candidate segments."""
    g = gates or VanishingGates()
    up_prior = np.asarray(bodies_up_cam_3, dtype=np.float64) / np.linalg.norm(bodies_up_cam_3)
    diag = float(np.hypot(width, height))
    n_frames = max(len(segments), 1)
    seg, length_n = _long_segments(segments, diag)
    keep = near_vertical(seg, K_33, up_prior, g.max_segment_deg)
    seg, length_n = seg[keep], length_n[keep]
    seg, length_n = _longest(seg, length_n, MAX_SEGMENTS)
    if len(seg) < 2:
        return None
    K_inv = np.linalg.inv(K_33)
    p_n3 = np.c_[seg[:, :2], np.ones(len(seg))] @ K_inv.T
    q_n3 = np.c_[seg[:, 2:], np.ones(len(seg))] @ K_inv.T
    n_n3 = unit_rows(np.cross(p_n3, q_n3))
    tol = np.sin(np.radians(INLIER_DEG))
    cos_gate = np.cos(np.radians(g.max_angle_to_bodies_deg))
    rng = np.random.default_rng(seed)
    prob = length_n / length_n.sum()  # long segments are drawn more often
    pairs_m2 = _draw_pairs(rng, prob, RANSAC_ITERATIONS)
    d_m3 = np.cross(n_n3[pairs_m2[:, 0]], n_n3[pairs_m2[:, 1]])
    norm_m = np.linalg.norm(d_m3, axis=1)
    ok_m = norm_m >= 1e-6
    d_m3[ok_m] /= norm_m[ok_m, None]
    ok_m &= np.abs(d_m3 @ up_prior) >= cos_gate  # else not an up the bodies allow (e.g. a horizontal direction)
    best_d = up_prior
    if ok_m.any():
        d_k3 = d_m3[ok_m]
        score_k = length_n @ (np.abs(n_n3 @ d_k3.T) < tol)  # inliers' total length per hypothesis
        best_d = d_k3[int(np.argmax(score_k))]  # the first of the best, as a loop would keep
    d = best_d
    inl = np.abs(n_n3 @ d) < tol
    for _ in range(REFINE_ROUNDS):
        if inl.sum() < 2:
            break
        d = _lsq_direction(n_n3[inl], length_n[inl])
        inl = np.abs(n_n3 @ d) < tol
    d = d * (1.0 if d @ up_prior >= 0 else -1.0)
    angle = float(np.degrees(np.arccos(np.clip(d @ up_prior, -1.0, 1.0))))
    n_inl, inl_len = int(inl.sum()), float(length_n[inl].sum() / diag / n_frames)
    ok = n_inl >= g.min_inliers and inl_len >= g.min_length_diag and angle <= g.max_angle_to_bodies_deg
    return VerticalVanishing(up_cam_3=d, n_candidates=len(seg), n_inliers=n_inl, inlier_length_diag=inl_len,
                             angle_to_bodies_deg=angle, supported=bool(ok))  # fmt: skip


MANHATTAN_HYPOTHESES = 500
"""RANSAC draws for the Manhattan frame: a direction from two segments, its best orthogonal pair from a histogram."""
MANHATTAN_BIN_DEG = 0.5
"""Bin width (degrees) of the histogram of the horizontal directions' angle about a hypothesis' axis (mod 90)."""
MANHATTAN_MAX_SEGMENTS = 1500
"""The longest this many segments are kept for the Manhattan frame (its RANSAC holds hypotheses x segments)."""
IMAGE_UP_CAM_3 = np.array([0.0, -1.0, 0.0])
"""The image's up in the OpenCV camera frame: the photo's prior for which axis of the Manhattan frame is the
world's up (photos are upright once EXIF-rotated)."""


@dataclass
class ManhattanGates:
    """When the Manhattan frame is trusted (chosen on pose2sim_single's tuning frames)."""

    min_inliers: int = 5
    """An axis is supported with at least this many inlier segments ..."""
    min_length_diag: float = 0.1
    """... of at least this total length (image diagonals, per frame)."""
    min_axes: int = 2
    """Supported axes needed: two orthogonal directions fix the frame, so the up too (even with no vertical
    segment: two horizontal vanishing points are the horizon)."""


@dataclass
class ManhattanFrame:
    """Three orthogonal scene directions (the vertical and two horizontal ones) from the line segments."""

    R_33: np.ndarray
    """Columns: the three unit directions (OpenCV camera frame), a rotation."""
    up_axis: int
    """The column that is the world's up (the one closest to the image's up and the bodies' up together)."""
    up_cam_3: np.ndarray
    """That column, signed towards the image's up."""
    n_inliers_3: list[int]
    """Inlier segments per axis."""
    length_diag_3: list[float]
    """Their total length per axis (image diagonals per frame)."""
    angle_to_image_up_deg: float
    angle_to_bodies_deg: float
    supported: bool
    """Whether it passed `ManhattanGates` (else the vertical vanishing point or the bodies' up)."""

    def as_dict(self) -> dict:
        return {"up_cam": [round(float(v), 6) for v in self.up_cam_3], "up_axis": self.up_axis,
                "n_inliers": self.n_inliers_3, "inlier_length_diag": [round(v, 3) for v in self.length_diag_3],
                "angle_to_image_up_deg": round(self.angle_to_image_up_deg, 3),
                "angle_to_bodies_deg": round(self.angle_to_bodies_deg, 3), "supported": self.supported}  # fmt: skip


def _so3_exp(w_3: np.ndarray) -> np.ndarray:
    theta = float(np.linalg.norm(w_3))
    if theta < 1e-12:
        return np.eye(3)
    k = w_3 / theta
    K = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(theta) * K + (1 - np.cos(theta)) * K @ K


def manhattan_frame(segments: Sequence[np.ndarray], K_33: np.ndarray, width: int, height: int,
                    bodies_up_cam_3: np.ndarray, gates: ManhattanGates | None = None, seed: int = 0
                    ) -> ManhattanFrame | None:  # fmt: skip
    """The Manhattan frame of the segments (n, 4) of one or several frames of one camera: the rotation whose
    three axes explain the most segment length (a segment is an inlier of an axis when that direction is within
    INLIER_DEG of its interpretation plane). RANSAC: an axis from two segments (length-weighted draws), its
    two orthogonal axes from the mode of the other segments' horizontal directions about it (each segment's
    plane meets the plane orthogonal to the axis in one direction; angles mod 90 degrees); then Gauss-Newton
    on the rotation over the inliers. The up is the axis closest to the image's up and the bodies' up together
    (the sign: towards the image's up); None with fewer than 3 segments."""
    g = gates or ManhattanGates()
    diag = float(np.hypot(width, height))
    n_frames = max(len(segments), 1)
    seg, length_n = _long_segments(segments, diag)
    seg, length_n = _longest(seg, length_n, MANHATTAN_MAX_SEGMENTS)
    if len(seg) < 3:
        return None
    K_inv = np.linalg.inv(K_33)
    n_n3 = unit_rows(np.cross(np.c_[seg[:, :2], np.ones(len(seg))] @ K_inv.T,
                              np.c_[seg[:, 2:], np.ones(len(seg))] @ K_inv.T))  # fmt: skip
    tol = np.sin(np.radians(INLIER_DEG))
    rng = np.random.default_rng(seed)
    pairs_m2 = _draw_pairs(rng, length_n / length_n.sum(), MANHATTAN_HYPOTHESES)
    d_m3 = np.cross(n_n3[pairs_m2[:, 0]], n_n3[pairs_m2[:, 1]])
    norm_m = np.linalg.norm(d_m3, axis=1)
    d_m3 = d_m3[norm_m >= 1e-6] / norm_m[norm_m >= 1e-6, None]
    if not len(d_m3):
        return None
    # an orthonormal basis (a, b) of the plane orthogonal to each hypothesis' axis
    helper_m3 = np.where(np.abs(d_m3[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    a_m3 = unit_rows(np.cross(d_m3, helper_m3))
    b_m3 = np.cross(d_m3, a_m3)
    h_mn3 = np.cross(d_m3[:, None, :], n_n3[None, :, :])  # each segment's direction orthogonal to the axis
    on_axis_mn = np.abs(d_m3 @ n_n3.T) < tol
    usable_mn = ~on_axis_mn & (np.linalg.norm(h_mn3, axis=2) > 1e-6)
    angle_mn = np.mod(np.degrees(np.arctan2(np.einsum("mnk,mk->mn", h_mn3, b_m3),
                                            np.einsum("mnk,mk->mn", h_mn3, a_m3))), 90.0)  # fmt: skip
    n_bins = int(round(90.0 / MANHATTAN_BIN_DEG))
    bins_mn = np.minimum((angle_mn / MANHATTAN_BIN_DEG).astype(int), n_bins - 1)
    hist_mb = np.zeros((len(d_m3), n_bins))
    rows_u, cols_u = np.nonzero(usable_mn)
    np.add.at(hist_mb, (rows_u, bins_mn[rows_u, cols_u]), length_n[cols_u])
    smooth_mb = hist_mb + np.roll(hist_mb, 1, axis=1) + np.roll(hist_mb, -1, axis=1)
    t_m = np.radians((np.argmax(smooth_mb, axis=1) + 0.5) * MANHATTAN_BIN_DEG)
    d2_m3 = a_m3 * np.cos(t_m)[:, None] + b_m3 * np.sin(t_m)[:, None]
    R_m33 = np.stack([d_m3, d2_m3, np.cross(d_m3, d2_m3)], axis=2)
    inlier_mn = (np.abs(np.einsum("nk,mkc->mnc", n_n3, R_m33)) < tol).any(axis=2)
    R = R_m33[int(np.argmax(inlier_mn @ length_n))]
    for _ in range(REFINE_ROUNDS + 2):  # Gauss-Newton on R exp([w]x): residual n . (R e_c) per inlier
        r_n3 = np.abs(n_n3 @ R)
        c_n = np.argmin(r_n3, axis=1)
        inl = np.flatnonzero(r_n3[np.arange(len(n_n3)), c_n] < tol)
        if len(inl) < 4:
            break
        e_i3 = np.eye(3)[c_n[inl]]
        sw_i = np.sqrt(length_n[inl])
        J_i3 = np.cross(e_i3, n_n3[inl] @ R) * sw_i[:, None]
        res_i = np.sum((n_n3[inl] @ R) * e_i3, axis=1) * sw_i
        R = R @ _so3_exp(np.linalg.lstsq(J_i3, -res_i, rcond=None)[0])
    r_n3 = np.abs(n_n3 @ R)
    c_n = np.argmin(r_n3, axis=1)
    inl_n = r_n3[np.arange(len(n_n3)), c_n] < tol
    counts = [int((inl_n & (c_n == k)).sum()) for k in range(3)]
    lengths = [float(length_n[inl_n & (c_n == k)].sum() / diag / n_frames) for k in range(3)]
    prior = unit_rows(np.nan_to_num(np.asarray(bodies_up_cam_3, dtype=np.float64)))  # none known: the image's
    # the axis nearest the image's up and the bodies' up together: the image's up alone picks the floor's line
    # away from the camera past 45 degrees of pitch, the bodies' alone a horizontal axis past 45 degrees of
    # lean; together the vertical wins while pitch + lean stay under 90 degrees
    k = int(np.argmax(np.abs(R.T @ IMAGE_UP_CAM_3) + np.abs(R.T @ prior)))
    up = R[:, k] * (1.0 if R[:, k] @ IMAGE_UP_CAM_3 >= 0 else -1.0)
    supported = sum(c >= g.min_inliers and ln >= g.min_length_diag for c, ln in zip(counts, lengths, strict=True))
    return ManhattanFrame(
        R_33=R, up_axis=k, up_cam_3=up, n_inliers_3=counts, length_diag_3=lengths,
        angle_to_image_up_deg=float(np.degrees(np.arccos(np.clip(up @ IMAGE_UP_CAM_3, -1.0, 1.0)))),
        angle_to_bodies_deg=float(np.degrees(np.arccos(np.clip(up @ prior, -1.0, 1.0)))),
        supported=bool(supported >= g.min_axes))  # fmt: skip


def boxes_mask(boxes_n4: np.ndarray, width: int, height: int, pad_frac: float = 0.1) -> np.ndarray:
    """(height, width) bool mask of the boxes (x1, y1, x2, y2 pixels), each grown by `pad_frac` of its size
    on every side (the people, whose limbs' edges are no vertical lines of the world)."""
    mask = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes_n4, dtype=np.float64).reshape(-1, 4):
        px, py = pad_frac * (x2 - x1), pad_frac * (y2 - y1)
        c1, r1 = int(max(np.floor(x1 - px), 0)), int(max(np.floor(y1 - py), 0))
        c2, r2 = int(min(np.ceil(x2 + px), width)), int(min(np.ceil(y2 + py), height))
        mask[r1:r2, c1:c2] = True
    return mask


def fit_ground_with_vanishing(bodies_per_frame: Sequence[Sequence[FootedBody]],
                              segments_per_frame: Sequence[np.ndarray], K_33: np.ndarray, width: int, height: int,
                              priors: GroundPriors | None = None, gates: VanishingGates | None = None,
                              manhattan: bool = False, manhattan_gates: ManhattanGates | None = None
                              ) -> GroundPlane | None:  # fmt: skip
    """The ground of one static camera's frames (one frame: lists of one) with the normal from the scene's
    lines (`segments_per_frame`, the people already masked out) when they support one, else from the bodies
    (`up_source` says which); the feet fix the offset either way. With `manhattan` (the photo mode) the
    Manhattan frame's up (`manhattan_frame`) is tried first, then the vertical vanishing point. None as
    fit_ground_over_time."""
    ground = fit_ground_over_time(bodies_per_frame, priors)
    if ground is None:
        return None
    frame = manhattan_frame(segments_per_frame, K_33, width, height, ground.normal_cam, manhattan_gates) \
        if manhattan else None  # fmt: skip
    vp = vertical_up(segments_per_frame, K_33, width, height, ground.normal_cam, gates)
    candidates = [(f.up_cam_3, "manhattan_frame") for f in (frame,) if f is not None and f.supported]
    candidates += [(v.up_cam_3, "vanishing_point") for v in (vp,) if v is not None and v.supported]
    for up, source in candidates:  # the first whose plane has the camera above it
        fixed = fit_ground_over_time(bodies_per_frame, priors, up_cam_3=up)
        if fixed is not None:
            ground = fixed
            ground.up_source = source
            break
    ground.vanishing = None if vp is None else vp.as_dict()
    if manhattan:
        ground.vanishing = {**(ground.vanishing or {}), "manhattan_frame": None if frame is None else frame.as_dict()}
    return ground
