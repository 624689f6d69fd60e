"""Embedded person detection + segmentation: MediaPipe PoseLandmarker (BlazePose full), offline.

One call finds up to `max_people` people, each with a soft mask, 33 BlazePose landmarks in pixels and
33 world landmarks in metres. The Tasks bundle is built from the mediapipe wheel's own models
(pipelines.mediapipe_models); nothing is downloaded.

World landmarks (`keypoints3d_hip`, frame 'hip'): metres, origin between the hips, axes parallel to
the camera's in the OpenCV convention: x right, y down, z forward (away from the camera); MediaPipe's
"smaller z is closer to the camera" is this same z. Checked on lunge.jpg, where the man faces away from
the camera: his nose has z = +0.29 m (beyond the hips), his heels z = -0.09 m (nearer the camera).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from pipelines.errors import BadPromptError
from pipelines.keypoints.names import BLAZEPOSE_NAMES, PROMPTABLE_NAMES
from pipelines.mediapipe_models import LazyTask, as_rgb_uint8, check_model_files, create_pose_landmarker, to_mp_image
from pipelines.registry import register
from pipelines.segmentation.refine import GrabCutSettings, refine_mask_grabcut
from pipelines.types import Keypoints2D, Keypoints3D, PersonDetection, Prompts

MAX_SIDE_PX = 4096
"""Images with a longer side are fed to MediaPipe downscaled (it works on small crops anyway)."""


def bbox_from(
    mask_hw: np.ndarray, xy_k2: np.ndarray, conf_k: np.ndarray, min_conf: float = 0.5
) -> np.ndarray:
    """Box (x0, y0, x1, y1) around the mask (> 0.5) and the confident keypoints, clipped to the image."""
    h, w = mask_hw.shape
    boxes = []
    ys, xs = np.nonzero(mask_hw > 0.5)
    if len(xs):
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    good = (conf_k >= min_conf) & np.all(np.isfinite(xy_k2), axis=1)
    if good.any():
        pts = xy_k2[good]
        boxes.append([*pts.min(0), *pts.max(0)])
    if not boxes:
        return np.array([0.0, 0.0, 0.0, 0.0])
    b = np.asarray(boxes, dtype=np.float64)
    box = np.array([b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()])
    return np.clip(box, 0, [w, h, w, h])


def _empty_keypoints(names: list[str]) -> tuple[Keypoints2D, Keypoints3D]:
    k = len(names)
    return (
        Keypoints2D(names=list(names), xy_k2=np.zeros((k, 2)), conf_k=np.zeros(k)),
        Keypoints3D(names=list(names), xyz_k3=np.zeros((k, 3)), frame="hip"),
    )


def validate_prompts(prompts: Prompts, width: int, height: int) -> None:
    """Raise BadPromptError (one plain sentence) for a prompt outside the image or an unknown joint."""
    size = f"{width}x{height}"

    def inside(x: float, y: float) -> bool:
        return bool(np.isfinite(x) and np.isfinite(y) and 0 <= x <= width and 0 <= y <= height)

    points_n3 = np.asarray(prompts.points_n3, dtype=np.float64).reshape(-1, 3)
    for x, y, label in points_n3:
        if label not in (0, 1):
            raise BadPromptError(f"point ({x:g}, {y:g}) has label {label:g}; use 1 (person) or 0 (not)")
        if not inside(x, y):
            raise BadPromptError(f"point ({x:g}, {y:g}) is outside the {size} image")
    if prompts.box_xyxy is not None:
        box = np.asarray(prompts.box_xyxy, dtype=np.float64).reshape(-1)
        if box.shape != (4,):
            raise BadPromptError("a box needs four numbers: x0, y0, x1, y1")
        x0, y0, x1, y1 = box
        text = f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g})"
        if not (inside(x0, y0) and inside(x1, y1)):
            raise BadPromptError(f"{text} is outside the {size} image")
        if x1 <= x0 or y1 <= y0:
            raise BadPromptError(f"{text} is empty: x1 must be > x0 and y1 > y0")
    for name, (x, y) in prompts.keypoints.items():
        if name not in PROMPTABLE_NAMES:
            raise BadPromptError(f"unknown joint name {name!r} (e.g. left_wrist, right_knee)")
        if not inside(x, y):
            raise BadPromptError(f"keypoint {name} at ({x:g}, {y:g}) is outside the {size} image")


def _person_under_point(people: list[PersonDetection], x: float, y: float) -> int | None:
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


def box_iou(a_xyxy: np.ndarray, b_xyxy: np.ndarray) -> float:
    inter = max(0.0, min(a_xyxy[2], b_xyxy[2]) - max(a_xyxy[0], b_xyxy[0])) * max(
        0.0, min(a_xyxy[3], b_xyxy[3]) - max(a_xyxy[1], b_xyxy[1])
    )
    area = (a_xyxy[2] - a_xyxy[0]) * (a_xyxy[3] - a_xyxy[1]) + (b_xyxy[2] - b_xyxy[0]) * (b_xyxy[3] - b_xyxy[1])
    return float(inter / (area - inter)) if area - inter > 0 else 0.0


def mask_iou(a_hw: np.ndarray, b_hw: np.ndarray, threshold: float = 0.5) -> float:
    a, b = a_hw >= threshold, b_hw >= threshold
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def suppress_duplicates(people: list[PersonDetection], iou: float = 0.6) -> list[PersonDetection]:
    """Drop detections of a person already found (people sorted best first): the same box region and
    the same mask (IoU above `iou`). MediaPipe can return one person several times, the copies with
    garbled landmarks; two real people who overlap have different masks and are both kept."""
    kept: list[PersonDetection] = []
    for p in people:
        if not any(box_iou(p.bbox_xyxy, q.bbox_xyxy) >= iou and mask_iou(p.mask_hw, q.mask_hw) >= iou for q in kept):
            kept.append(p)
    return kept


def _person_in_box(people: list[PersonDetection], box_xyxy: np.ndarray, min_iou: float = 0.25) -> int | None:
    """The person whose box overlaps the prompt box most (IoU above `min_iou`)."""
    best, best_iou = None, min_iou
    bx0, by0, bx1, by1 = box_xyxy
    for i, p in enumerate(people):
        x0, y0, x1, y1 = p.bbox_xyxy
        inter = max(0.0, min(x1, bx1) - max(x0, bx0)) * max(0.0, min(y1, by1) - max(y0, by0))
        union = (x1 - x0) * (y1 - y0) + (bx1 - bx0) * (by1 - by0) - inter
        iou = inter / union if union > 0 else 0.0
        if iou > best_iou:
            best, best_iou = i, iou
    return best


def select_person(
    people: list[PersonDetection], pos_n2: np.ndarray, neg_n2: np.ndarray, box_xyxy: np.ndarray | None
) -> int | None:
    """Which person the prompts are about: the box's person, else the one most positive clicks fall
    on, else (negative clicks only) the one whose mask they carve; None when they fall on nobody."""
    if box_xyxy is not None:
        return _person_in_box(people, box_xyxy)
    votes = [_person_under_point(people, x, y) for x, y in pos_n2]
    if not len(pos_n2):
        votes = [_person_under_point(people, x, y) for x, y in neg_n2]
    hits = [v for v in votes if v is not None]
    if not hits:
        return None
    return max(set(hits), key=lambda i: (hits.count(i), -i))


@register("segmentation", "embedded")
class EmbeddedSegmenter:
    """People, masks and BlazePose landmarks with MediaPipe; prompt refinement with GrabCut."""

    def __init__(
        self,
        max_people: int = 4,
        min_detection_confidence: float = 0.3,
        min_presence_confidence: float = 0.5,
        grabcut: GrabCutSettings | None = None,
    ) -> None:
        check_model_files()
        self.max_people = max_people
        self.min_detection_confidence = min_detection_confidence
        self.min_presence_confidence = min_presence_confidence
        self.grabcut = grabcut or GrabCutSettings()
        self._task = LazyTask(
            lambda: create_pose_landmarker(
                num_poses=self.max_people,
                min_detection_confidence=self.min_detection_confidence,
                min_presence_confidence=self.min_presence_confidence,
                segmentation=True,
            )
        )

    def close(self) -> None:
        """Free the MediaPipe graph (a later call creates it again)."""
        self._task.close()

    def detect(self, image_rgb_hw3: np.ndarray) -> list[PersonDetection]:
        """All people in the image, best score first; [] when there is nobody."""
        image = as_rgb_uint8(image_rgb_hw3)
        h, w = image.shape[:2]
        scale = min(1.0, MAX_SIDE_PX / max(h, w))
        fed = image
        if scale < 1.0:
            size_wh = (max(1, round(w * scale)), max(1, round(h * scale)))
            fed = cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA)
        with self._task.lock:
            result = self._task.get().detect(to_mp_image(fed))
        masks = result.segmentation_masks or []
        people = []
        found = zip(result.pose_landmarks, result.pose_world_landmarks, strict=True)
        for i, (landmarks, world) in enumerate(found):
            if i < len(masks):
                mask_hw = np.array(masks[i].numpy_view(), dtype=np.float32).reshape(fed.shape[:2])
                if scale < 1.0:
                    mask_hw = cv2.resize(mask_hw, (w, h), interpolation=cv2.INTER_LINEAR)
            else:
                mask_hw = np.zeros((h, w), dtype=np.float32)
            people.append(self._person(landmarks, world, np.clip(mask_hw, 0.0, 1.0), w, h))
        people.sort(key=lambda p: -p.score)
        return suppress_duplicates(people)

    @staticmethod
    def _person(landmarks: Any, world: Any, mask_hw: np.ndarray, w: int, h: int) -> PersonDetection:
        # Normalised landmark x maps to x * width pixels (pixel centres at +0.5).
        xy_k2 = np.array([[lm.x * w, lm.y * h] for lm in landmarks], dtype=np.float64)
        vis_k = np.array([lm.visibility or 0.0 for lm in landmarks], dtype=np.float64)
        pres_k = np.array([lm.presence or 0.0 for lm in landmarks], dtype=np.float64)
        conf_k = np.clip(vis_k * pres_k, 0.0, 1.0)
        xyz_k3 = np.array([[lm.x, lm.y, lm.z] for lm in world], dtype=np.float64)
        in_image = (xy_k2[:, 0] >= 0) & (xy_k2[:, 0] <= w) & (xy_k2[:, 1] >= 0) & (xy_k2[:, 1] <= h)
        # Score: mean confidence of the landmarks inside the image (legs out of frame do not count).
        score = float(conf_k[in_image].mean()) if in_image.any() else float(conf_k.mean())
        return PersonDetection(
            bbox_xyxy=bbox_from(mask_hw, xy_k2, conf_k * in_image),
            score=float(np.clip(score, 0.0, 1.0)),
            mask_hw=mask_hw,
            keypoints2d=Keypoints2D(names=list(BLAZEPOSE_NAMES), xy_k2=xy_k2, conf_k=conf_k),
            keypoints3d_hip=Keypoints3D(names=list(BLAZEPOSE_NAMES), xyz_k3=xyz_k3, frame="hip"),
        )

    def apply_prompts(
        self, image_rgb_hw3: np.ndarray, people: list[PersonDetection], prompts: Prompts
    ) -> list[PersonDetection]:
        """Select and refine one person with clicks and a box; returns a new list.

        The selected person is the one the box overlaps most, else the one most positive clicks fall
        on (mask, else box), else (negative clicks only) the one whose mask they carve; `select_person`
        on the returned list finds them again. Their mask is refined with GrabCut in place (the order
        of the list, hence person ids, does not change); the others are the same objects. A positive
        click or box on nobody makes a new person from GrabCut alone, appended at the end: score 1 (the
        user said so), no landmarks (all confidences 0), so later stages skip it. Keypoint prompts are
        only validated here (the body fit uses them). Empty prompts return the people unchanged.
        """
        image = as_rgb_uint8(image_rgb_hw3)
        h, w = image.shape[:2]
        validate_prompts(prompts, w, h)
        points_n3 = np.asarray(prompts.points_n3, dtype=np.float64).reshape(-1, 3)
        pos_n2 = points_n3[points_n3[:, 2] == 1, :2]
        neg_n2 = points_n3[points_n3[:, 2] == 0, :2]
        box = None if prompts.box_xyxy is None else np.asarray(prompts.box_xyxy, dtype=np.float64).reshape(4)
        if not len(pos_n2) and not len(neg_n2) and box is None:
            return list(people)

        chosen = select_person(people, pos_n2, neg_n2, box)
        if chosen is None:
            if not len(pos_n2) and box is None:  # negative clicks on nobody: nothing to carve
                return list(people)
            mask_hw = refine_mask_grabcut(image, None, pos_n2, neg_n2, box, self.grabcut)
            if not (mask_hw > 0.5).any():
                return list(people)
            kp2d, kp3d = _empty_keypoints(BLAZEPOSE_NAMES)
            new = PersonDetection(
                bbox_xyxy=bbox_from(mask_hw, kp2d.xy_k2, kp2d.conf_k),
                score=1.0,
                mask_hw=mask_hw,
                keypoints2d=kp2d,
                keypoints3d_hip=kp3d,
            )
            return [*people, new]

        person = people[chosen]
        mask_hw = refine_mask_grabcut(image, person.mask_hw, pos_n2, neg_n2, box, self.grabcut)
        ys, xs = np.nonzero(mask_hw > 0.5)
        bbox = person.bbox_xyxy
        if len(xs):
            bbox = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)
        out = list(people)
        out[chosen] = replace(person, mask_hw=mask_hw, bbox_xyxy=bbox)
        return out
