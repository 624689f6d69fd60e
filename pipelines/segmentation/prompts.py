"""Click and box prompts, backend-neutral: validation and which detected person they are about.

Pixels of the image, origin at the top-left corner, (x, y). Used by every segmentation backend and by
the image mode (which must not import an embedded backend to check prompts).
"""

from __future__ import annotations

import numpy as np

from pipelines.errors import BadPromptError
from pipelines.io.limits import MAX_IMAGE_PROMPTS
from pipelines.keypoints.names import PROMPTABLE_NAMES
from pipelines.types import PersonDetection, Prompts

FACE_LANDMARKS = 11
"""BlazePose's first 11 landmarks are the face's (nose, eyes, ears, mouth)."""


def check_prompts(points_n3: np.ndarray, boxes_n4: np.ndarray, keypoints: dict[str, tuple[float, float]],
                  width: int, height: int, noun: str = "image", where: str = "") -> None:
    """Raise BadPromptError (one plain sentence) for a point whose label is not 0/1, a point, box or joint
    outside the `width` x `height` `noun` ("image", "video"), an empty box, or an unknown joint name.
    `where` ends each sentence's subject (" on frame 12"). The one check of the photo and video prompts."""
    size = f"{width}x{height} {noun}"

    def inside(x: float, y: float) -> bool:
        return bool(np.isfinite(x) and np.isfinite(y) and 0 <= x <= width and 0 <= y <= height)

    for x, y, label in np.asarray(points_n3, dtype=np.float64).reshape(-1, 3):
        if label not in (0, 1):
            raise BadPromptError(f"the point at ({x:g}, {y:g}){where} has label {label:g}; use 1 (person) or 0 (not)")
        if not inside(x, y):
            raise BadPromptError(f"the point at ({x:g}, {y:g}){where} is outside the {size}")
    for x0, y0, x1, y1 in np.asarray(boxes_n4, dtype=np.float64).reshape(-1, 4):
        text = f"the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}){where}"
        if not (inside(x0, y0) and inside(x1, y1)):
            raise BadPromptError(f"{text} is outside the {size}")
        if x1 <= x0 or y1 <= y0:
            raise BadPromptError(f"{text} is empty: x1 must be > x0 and y1 > y0")
    for name, (x, y) in keypoints.items():
        if name not in PROMPTABLE_NAMES:
            raise BadPromptError(f"unknown joint name {name!r}{where} (e.g. left_wrist, right_knee)")
        if not inside(x, y):
            raise BadPromptError(f"keypoint {name} at ({x:g}, {y:g}){where} is outside the {size}")


def validate_prompts(prompts: Prompts, width: int, height: int) -> None:
    """Raise BadPromptError (one plain sentence) for too many prompts, or one outside the image or an
    unknown joint (check_prompts)."""
    points_n3 = np.asarray(prompts.points_n3, dtype=np.float64).reshape(-1, 3)
    n = len(points_n3) + (prompts.box_xyxy is not None) + len(prompts.keypoints)
    if n > MAX_IMAGE_PROMPTS:
        raise BadPromptError(f"{n} prompts were given; the limit is {MAX_IMAGE_PROMPTS} a photo")
    boxes_n4 = np.zeros((0, 4))
    if prompts.box_xyxy is not None:
        box = np.asarray(prompts.box_xyxy, dtype=np.float64).reshape(-1)
        if box.shape != (4,):
            raise BadPromptError("a box needs four numbers: x0, y0, x1, y1")
        boxes_n4 = box[None]
    check_prompts(points_n3, boxes_n4, prompts.keypoints, width, height)


def split_prompts(prompts: Prompts, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated click prompts: positive points (N, 2), negative points (M, 2) and the box (4,) or None."""
    validate_prompts(prompts, width, height)
    points_n3 = np.asarray(prompts.points_n3, dtype=np.float64).reshape(-1, 3)
    box = None if prompts.box_xyxy is None else np.asarray(prompts.box_xyxy, dtype=np.float64).reshape(4)
    return points_n3[points_n3[:, 2] == 1, :2], points_n3[points_n3[:, 2] == 0, :2], box


def box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> float:
    inter = max(0.0, min(a_xyxy[2], b_xyxy[2]) - max(a_xyxy[0], b_xyxy[0])) * max(
        0.0, min(a_xyxy[3], b_xyxy[3]) - max(a_xyxy[1], b_xyxy[1])
    )
    area = (a_xyxy[2] - a_xyxy[0]) * (a_xyxy[3] - a_xyxy[1]) + (b_xyxy[2] - b_xyxy[0]) * (b_xyxy[3] - b_xyxy[1])
    return float(inter / (area - inter)) if area - inter > 0 else 0.0


def fraction_inside(xy_k2: np.ndarray, conf_k: np.ndarray, box_xyxy: np.ndarray, margin: float = 0.1) -> float:
    """Share of the confident landmarks inside the box grown by `margin` of its size on each side."""
    good = conf_k >= 0.5
    if not good.any():
        return 0.0
    x0, y0, x1, y1 = box_xyxy
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    xy = xy_k2[good]
    inside = (xy[:, 0] >= x0 - mx) & (xy[:, 0] <= x1 + mx) & (xy[:, 1] >= y0 - my) & (xy[:, 1] <= y1 + my)
    return float(inside.mean())


def face_of(xy_k2: np.ndarray, conf_k: np.ndarray) -> tuple[np.ndarray, float] | None:
    """(centre (2,), width) in pixels of the confident face landmarks (3 or more) of a landmark set."""
    face = xy_k2[:FACE_LANDMARKS][conf_k[:FACE_LANDMARKS] >= 0.5]
    if len(face) < 3:
        return None
    return face.mean(axis=0), max(float(np.ptp(face, axis=0).max()), 4.0)


def box_faces(box: np.ndarray, faces: list[tuple[np.ndarray, float] | None]) -> tuple[int | None, list[int]]:
    """Of the faces (centre, width) whose centre is in the box's upper half, the one the box is drawn
    around (the nearest to its vertical centre line, in box widths) and the others, a face's width or
    more away from it (two entangled people's faces); (None, []) when there are none."""
    x0, y0, x1, y1 = box
    inside = [i for i, f in enumerate(faces)
              if f is not None and x0 <= f[0][0] <= x1 and y0 <= f[0][1] <= (y0 + y1) / 2]  # fmt: skip
    if not inside:
        return None, []
    own = min(inside, key=lambda i: abs(faces[i][0][0] - (x0 + x1) / 2))
    centre, width = faces[own]
    others = [i for i in inside if float(np.linalg.norm(faces[i][0] - centre)) > max(width, faces[i][1])]
    return own, others


def person_under_point(people: list[PersonDetection], x: float, y: float) -> int | None:
    """The person whose mask covers (x, y); else the nearest one whose (10 % larger) box holds it."""
    col, row = int(x), int(y)
    best, best_value = None, 0.5
    for i, p in enumerate(people):
        h, w = p.mask_hw.shape
        value = float(p.mask_hw[min(row, h - 1), min(col, w - 1)])
        if value > best_value:
            best, best_value = i, value
    if best is not None:
        return best
    best_dist = np.inf
    for i, p in enumerate(people):
        x0, y0, x1, y1 = p.bbox_xyxy
        mx, my = 0.05 * (x1 - x0), 0.05 * (y1 - y0)
        if x0 - mx <= x <= x1 + mx and y0 - my <= y <= y1 + my:
            dist = float(np.hypot(x - (x0 + x1) / 2, y - (y0 + y1) / 2))
            if dist < best_dist:
                best, best_dist = i, dist
    return best


def person_in_box(people: list[PersonDetection], box_xyxy: np.ndarray, min_iou: float = 0.25,
                  face_key_share: float = 0.5) -> int | None:  # fmt: skip
    """The person whose box overlaps the prompt box most (IoU above `min_iou`), weighted by the share
    of their confident landmarks inside the box (of two overlapping people, the one the box is around).
    Where two candidates' faces share the box (entangled people, whose boxes and masks are nearly the
    same), the person whose face the box is drawn around (`box_faces`) wins when their key is at least
    `face_key_share` of the best."""
    keys = {}
    for i, p in enumerate(people):
        iou = box_iou(p.bbox_xyxy, box_xyxy)
        if iou <= min_iou:
            continue
        kp = p.keypoints2d
        share = fraction_inside(kp.xy_k2, kp.conf_k, box_xyxy, 0.0) if (kp.conf_k >= 0.5).any() else 1.0
        if iou * share > 0.0:
            keys[i] = iou * share
    if not keys:
        return None
    best = max(keys, key=lambda i: (keys[i], -i))
    faces = [face_of(p.keypoints2d.xy_k2, p.keypoints2d.conf_k) if i in keys else None  # candidates only: a
             for i, p in enumerate(people)]  # small face behind them must not void or steer the rule
    own, rivals = box_faces(box_xyxy, faces)
    if own is not None and rivals and own in keys and keys[own] >= face_key_share * keys[best]:
        return own
    return best


def select_person(
    people: list[PersonDetection], pos_n2: np.ndarray, neg_n2: np.ndarray, box_xyxy: np.ndarray | None
) -> int | None:
    """Which person the prompts are about: the box's person, else the one most positive clicks fall
    on, else (negative clicks only) the one whose mask they carve; None when they fall on nobody."""
    if box_xyxy is not None:
        return person_in_box(people, box_xyxy)
    votes = [person_under_point(people, x, y) for x, y in pos_n2]
    if not len(pos_n2):
        votes = [person_under_point(people, x, y) for x, y in neg_n2]
    hits = [v for v in votes if v is not None]
    if not hits:
        return None
    return max(set(hits), key=lambda i: (hits.count(i), -i))
