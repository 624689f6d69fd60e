"""Embedded person detection + segmentation: BlazePose (full) from the mediapipe wheel, offline.

`detect` finds up to `max_people` people (default 20): BlazePose's detector runs alone over
overlapping tiles at several scales (pose_detector.py, through the LiteRT interpreter), duplicates are
merged, then the landmark model runs once per region found (pose_landmarks.py). Each person gets a
soft mask, 33 BlazePose landmarks in pixels and 33 world landmarks in metres. `single_pass=True` is
the former path (MediaPipe's Tasks PoseLandmarker over the whole image once; a few large people),
kept as the baseline of bench/bench_crowds.py. Nothing is downloaded.

A box or a positive click on someone the automatic pass missed runs the detector and the landmark
model inside the prompted region (`find_in_region`), so the prompt gives that person a body.

World landmarks (`keypoints3d_hip`, frame 'hip'): metres, origin between the hips, axes parallel to
the camera's in the OpenCV convention: x right, y down, z forward (away from the camera); MediaPipe's
"smaller z is closer to the camera" is this same z. Checked on lunge.jpg, where the man faces away from
the camera: his nose has z = +0.29 m (beyond the hips), his heels z = -0.09 m (nearer the camera).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import cv2
import numpy as np

from pipelines.keypoints.names import BLAZEPOSE_NAMES
from pipelines.mediapipe_models import LazyTask, as_rgb_uint8, check_model_files, create_pose_landmarker, to_mp_image
from pipelines.registry import register
from pipelines.segmentation.pose_detector import INPUT_SIDE as DETECTOR_INPUT_SIDE
from pipelines.segmentation.pose_detector import PoseCandidate, TiledPoseDetector, TileSettings, View, views_box
from pipelines.segmentation.pose_landmarks import MIRROR_K, PoseLandmarkModel, RegionLandmarks
from pipelines.segmentation.prompts import (  # noqa: F401 - re-exported (their old home)
    FACE_LANDMARKS,
    box_faces,
    box_iou,
    face_of,
    fraction_inside,
    select_person,
    split_prompts,
    validate_prompts,
)
from pipelines.segmentation.refine import GrabCutSettings, refine_mask_grabcut
from pipelines.segmentation.roi import RotatedRect, region_box
from pipelines.types import Keypoints2D, Keypoints3D, PersonDetection, Prompts

UNSURE_SCORE = 0.5
"""Detector candidates below this score (mediapipe's own threshold) are 'unsure': only the best few of
them get a look by the landmark model (`max_unsure_candidates`), most are textures."""

MAX_SIDE_PX = 4096
"""Images with a longer side are searched downscaled (the models work on small crops anyway); the
people found are mapped back to the full image."""


def bbox_from(
    mask_hw: np.ndarray, xy_k2: np.ndarray, conf_k: np.ndarray, min_conf: float = 0.5,
    mask_box: tuple[int, int, int, int] | None = None,
) -> np.ndarray:
    """Box (x0, y0, x1, y1) around the mask (> 0.5) and the confident keypoints, clipped to the image.
    `mask_box`: integer (x0, y0, x1, y1) outside which the mask is known to be 0 (only it is scanned)."""
    h, w = mask_hw.shape
    boxes = []
    if mask_hw.size and mask_hw.strides == (0, 0):  # one value broadcast (the tracker's empty mask): no scan
        rows, cols = (np.arange(h), np.arange(w)) if mask_hw[0, 0] > 0.5 else (np.zeros(0, int), np.zeros(0, int))
    else:
        bx0, by0, bx1, by1 = (0, 0, w, h) if mask_box is None else mask_box
        fg_hw = mask_hw[by0:by1, bx0:bx1] > 0.5
        rows, cols = np.flatnonzero(fg_hw.any(axis=1)) + by0, np.flatnonzero(fg_hw.any(axis=0)) + bx0
    if len(cols):
        boxes.append([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
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


def mask_iou(a_hw: np.ndarray, b_hw: np.ndarray, threshold: float = 0.5) -> float:
    a, b = a_hw >= threshold, b_hw >= threshold
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def suppress_duplicates(people: list[PersonDetection], iou: float = 0.6) -> list[PersonDetection]:
    """Drop detections of a person already found (people sorted best first): the same box region and
    the same mask (IoU above `iou`). MediaPipe can return one person several times, the copies with
    garbled landmarks; two real people who overlap have different masks and are both kept, and so are
    two with confident faces apart (entangled dancers, whose masks each cover both)."""
    kept: list[PersonDetection] = []
    for p in people:
        if not any(box_iou(p.bbox_xyxy, q.bbox_xyxy) >= iou and mask_iou(p.mask_hw, q.mask_hw) >= iou
                   and not _two_faces(p, q) for q in kept):  # fmt: skip
            kept.append(p)
    return kept


def _two_faces(a: PersonDetection, b: PersonDetection) -> bool:
    n = len(BLAZEPOSE_NAMES)
    ka, kb = a.keypoints2d, b.keypoints2d
    if min(len(ka.conf_k), len(kb.conf_k)) < n:
        return False
    gap = face_gap(ka.xy_k2[:n], ka.conf_k[:n], kb.xy_k2[:n], kb.conf_k[:n])
    return gap is not None and gap > 1.0


def detection_from_landmarks(
    xy_k2: np.ndarray, conf_k: np.ndarray, xyz_k3: np.ndarray, mask_hw: np.ndarray,
    mask_box: tuple[int, int, int, int] | None = None,
) -> PersonDetection:
    """A person from 33 BlazePose landmarks (pixels), their confidences, world landmarks and mask
    (`mask_box`: bbox_from's)."""
    h, w = mask_hw.shape
    in_image = (xy_k2[:, 0] >= 0) & (xy_k2[:, 0] <= w) & (xy_k2[:, 1] >= 0) & (xy_k2[:, 1] <= h)
    # Score: mean confidence of the landmarks inside the image (legs out of frame do not count).
    score = float(conf_k[in_image].mean()) if in_image.any() else float(conf_k.mean())
    return PersonDetection(
        bbox_xyxy=bbox_from(mask_hw, xy_k2, conf_k * in_image, mask_box=mask_box),
        score=float(np.clip(score, 0.0, 1.0)),
        mask_hw=mask_hw,
        keypoints2d=Keypoints2D(names=list(BLAZEPOSE_NAMES), xy_k2=xy_k2, conf_k=conf_k),
        keypoints3d_hip=Keypoints3D(names=list(BLAZEPOSE_NAMES), xyz_k3=xyz_k3, frame="hip"),
    )


def landmark_box_xyxy(xy_k2: np.ndarray, conf_k: np.ndarray, min_conf: float = 0.5) -> np.ndarray | None:
    """Box around the confident landmarks, or None when fewer than 3 are confident."""
    good = conf_k >= min_conf
    if good.sum() < 3:
        return None
    pts = xy_k2[good]
    return np.concatenate([pts.min(0), pts.max(0)])


def same_person(xy_a_k2: np.ndarray, conf_a_k: np.ndarray, xy_b_k2: np.ndarray, conf_b_k: np.ndarray,
                frac: float = 0.1) -> bool:  # fmt: skip
    """Two landmark sets are one person. Faces decide first (`face_gap`): one face is one person, two
    faces a face's width apart or more are two (entangled dancers whose bodies overlap). Otherwise:
    their landmarks confident in both (at least 4) lie within `frac` of the person's size of each
    other (median), also when one set has left and right swapped (a person seen from the front or
    the back)."""
    n = len(BLAZEPOSE_NAMES)
    if min(len(conf_a_k), len(conf_b_k)) < n:
        return False
    xy_a, conf_a, xy_b, conf_b = xy_a_k2[:n], conf_a_k[:n], xy_b_k2[:n], conf_b_k[:n]
    gap = face_gap(xy_a, conf_a, xy_b, conf_b)
    if gap is not None and (gap < 0.3 or gap > 1.0):
        return gap < 0.3
    boxes = [landmark_box_xyxy(xy_a, conf_a), landmark_box_xyxy(xy_b, conf_b)]
    size = max([float(np.ptp(b.reshape(2, 2), axis=0).max()) for b in boxes if b is not None] + [1.0])
    for order in (np.arange(n), MIRROR_K):
        both = (conf_a >= 0.5) & (conf_b[order] >= 0.5)
        if both.sum() >= 4 and np.median(np.linalg.norm(xy_a[both] - xy_b[order][both], axis=1)) < frac * size:
            return True
    return False


def face_gap(xy_a_k2: np.ndarray, conf_a_k: np.ndarray, xy_b_k2: np.ndarray, conf_b_k: np.ndarray
             ) -> float | None:  # fmt: skip
    """How far apart two landmark sets' faces are, in face widths (the median distance of the face
    landmarks confident in both, at least 3 of nose, eyes, ears, mouth, over the wider face's
    extent); None when they do not share 3 confident face landmarks. A child and the cake in front
    of him found as a second, larger 'person' around the same head: near 0."""
    face = slice(0, FACE_LANDMARKS)
    both = (conf_a_k[face] >= 0.5) & (conf_b_k[face] >= 0.5)
    if both.sum() < 3:
        return None
    a, b = xy_a_k2[face][both], xy_b_k2[face][both]
    # A face's width, at least a tenth of the larger person (a small person's face landmarks are a few
    # noisy pixels apart).
    bodies = [landmark_box_xyxy(xy, conf) for xy, conf in ((xy_a_k2, conf_a_k), (xy_b_k2, conf_b_k))]
    body = max([float(np.ptp(bx.reshape(2, 2), axis=0).max()) for bx in bodies if bx is not None] + [1.0])
    width = max(float(np.ptp(a, axis=0).max()), float(np.ptp(b, axis=0).max()), 0.1 * body, 1.0)
    return float(np.median(np.linalg.norm(a - b, axis=1))) / width


def _with_extra_keypoints(new: PersonDetection, old: PersonDetection) -> PersonDetection:
    """`new` with the keypoints `old` has beyond the 33 BlazePose ones (hands from the keypoint stage)."""
    n = len(BLAZEPOSE_NAMES)
    extra = old.keypoints2d
    if len(extra.names) <= n:
        return new
    kp = Keypoints2D(
        names=new.keypoints2d.names[:n] + extra.names[n:],
        xy_k2=np.concatenate([new.keypoints2d.xy_k2[:n], extra.xy_k2[n:]]),
        conf_k=np.concatenate([new.keypoints2d.conf_k[:n], extra.conf_k[n:]]),
    )
    return replace(new, keypoints2d=kp)


def _region_score(lm: RegionLandmarks, box: np.ndarray | None, point: np.ndarray | None,
                  shape_hw: tuple[int, int]) -> float:  # fmt: skip
    """How well landmarks found for a prompt answer it (0: not at all): presence x mean confidence,
    for a box x the share of confident landmarks inside it x the IoU of their box with it; for a
    point, it must lie on the person's mask (counts double) or within their landmarks' outline."""
    conf = lm.visibility_k * lm.presence_k
    score = lm.presence * float(conf.mean())
    own = landmark_box_xyxy(lm.xy_k2, conf)
    if box is not None:
        share = fraction_inside(lm.xy_k2, conf, box)
        return 0.0 if share < 0.6 or own is None else score * share * box_iou(own, box)
    h, w = shape_hw
    px, py = point
    on_mask = lm.mask_hw(shape_hw)[int(np.clip(py, 0, h - 1)), int(np.clip(px, 0, w - 1))] > 0.5
    good = conf >= 0.5
    if own is None or good.sum() < 3:
        return 0.0
    # On the body: inside the outline of the person's confident landmarks (or just outside it), which
    # a neighbour's box would also hold in a crowd, but not their outline.
    hull = cv2.convexHull(lm.xy_k2[good].astype(np.float32))
    size = float(max(own[2] - own[0], own[3] - own[1]))
    on_body = cv2.pointPolygonTest(hull, (float(px), float(py)), True) >= -0.05 * size
    return score * (2.0 if on_mask else 1.0) if on_mask or on_body else 0.0


def _scaled_up(person: PersonDetection, scale_xy: tuple[float, float], shape_hw: tuple[int, int]) -> PersonDetection:
    """A person found on a downscaled copy, in the pixels of the full image."""
    s_2 = np.asarray(scale_xy, dtype=np.float64)
    h, w = shape_hw
    mask_hw = cv2.resize(person.mask_hw, (w, h), interpolation=cv2.INTER_LINEAR)
    kp = person.keypoints2d
    return replace(
        person,
        bbox_xyxy=np.clip(person.bbox_xyxy * np.tile(s_2, 2), 0, [w, h, w, h]),
        mask_hw=np.clip(mask_hw, 0.0, 1.0),
        keypoints2d=Keypoints2D(names=list(kp.names), xy_k2=kp.xy_k2 * s_2, conf_k=kp.conf_k.copy()),
    )


def _face_circle(lm: RegionLandmarks) -> tuple[np.ndarray, float] | None:
    """(centre (2,), width) in pixels of the confident face landmarks (3 or more), else None."""
    return face_of(lm.xy_k2, lm.visibility_k * lm.presence_k)


def _on_a_face(cand: PoseCandidate, faces: list[tuple[np.ndarray, float] | None]) -> bool:
    """Whether a detector's head box is centred on one of the faces (centre, width) already found."""
    head_2 = (cand.face_xyxy[:2] + cand.face_xyxy[2:]) / 2
    return any(f is not None and float(np.linalg.norm(head_2 - f[0])) < 1.6 * f[1] for f in faces)


def _same(a: RegionLandmarks, b: RegionLandmarks) -> bool:
    return same_person(a.xy_k2, a.visibility_k * a.presence_k, b.xy_k2, b.visibility_k * b.presence_k)


@register("segmentation", "embedded")
class EmbeddedSegmenter:
    """People, masks and BlazePose landmarks with MediaPipe's models; prompt refinement with GrabCut."""

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why this backend cannot run here (mediapipe missing), without importing it."""
        from pipelines.mediapipe_models import unavailable_reason

        return unavailable_reason()

    def __init__(
        self,
        max_people: int = 20,
        min_detection_confidence: float = 0.3,
        min_presence_confidence: float = 0.5,
        grabcut: GrabCutSettings | None = None,
        tiles: TileSettings | None = None,
        single_pass: bool = False,
        min_prompt_presence: float = 0.2,
        max_drift: float = 0.04,
        min_person_score: float = 0.55,
        mirror_average: bool = True,
        mirror_average_all: bool = True,
        min_box_presence: float = 0.05,
        min_found_presence: float = 0.6,
        max_unsure_candidates: int = 2,
        look_behind: bool = True,
        min_behind_presence: float = 0.25,
        min_behind_face_px: float = 16.0,
        prompt_refinements: int = 1,
        box_regions: tuple[tuple[float, float], ...] = ((1.25, 0.0),),
        paint_face_scale: float = 1.6,
    ) -> None:
        """Args:
            max_people: at most this many people per image (the best scores are kept).
            min_detection_confidence: the detector's score threshold of the single pass (the tiled
                detector's is `tiles.min_score`).
            min_presence_confidence: the landmark model's pose-presence threshold (a region without a
                person scores near 0).
            tiles: how the detector tiles the image (pose_detector.TileSettings).
            single_pass: use MediaPipe's Tasks PoseLandmarker once over the whole image instead
                (the former path: at most `max_people` people, usually the few largest).
            min_prompt_presence: the presence threshold inside a prompted region (the user said
                there is someone there).
            max_drift: a detection is a person when its landmarks move less than this (median, as a
                fraction of the region's size) between the detector's region and their own.
            min_person_score: and when the mean confidence of its landmarks inside the image is at
                least this (textures the detector took for a head score 0.3-0.54 on the tuning photos,
                people 0.6 and more).
            mirror_average: the landmarks of a prompted person average the model's output on the
                region and on its mirror image (one more model run; steadier joints).
            mirror_average_all: the same for everyone found without prompts (10 ms a person).
            min_found_presence: a person found without prompts needs this pose presence on the second
                look (mirror-averaged; the lower of the two): the false finds of the tuning photos
                scored 0.57-0.58, people 0.64 and more.
            max_unsure_candidates: at most this many of the detector's candidates below UNSURE_SCORE
                get the landmark model's look, best first (each costs one to three model runs).
            look_behind: also look for people hidden behind those found (`add_hidden`).
            min_behind_presence: the presence a person found there needs (the model is less sure of a
                person half hidden by another).
            min_behind_face_px: only behind faces at least this wide (smaller ones are too coarse to
                paint over and look again).
            min_box_presence: inside a prompted box, landmarks this unsure are still taken when
                nothing surer answers the box (a box always gives a body where the model sees one).
            prompt_refinements: looks from the landmarks' own region after the first, per region tried.
            box_regions: squares tried around a prompted box, (side / the box's long side, turn in
                degrees clockwise), after the detector's finds.
            paint_face_scale: radius / face width of the grey disc painted over another person's face
                in a prompted box (`_unentangled`; `add_hidden` paints 1.6 too).
        """
        check_model_files()
        self.max_people = max_people
        self.min_detection_confidence = min_detection_confidence
        self.min_presence_confidence = min_presence_confidence
        self.min_prompt_presence = min_prompt_presence
        self.max_drift = max_drift
        self.min_person_score = min_person_score
        self.mirror_average = mirror_average
        self.mirror_average_all = mirror_average_all
        self.min_box_presence = min_box_presence
        self.min_found_presence = min_found_presence
        self.max_unsure_candidates = max_unsure_candidates
        self.look_behind = look_behind
        self.min_behind_presence = min_behind_presence
        self.min_behind_face_px = min_behind_face_px
        self.prompt_refinements = prompt_refinements
        self.box_regions = box_regions
        self.paint_face_scale = paint_face_scale
        self._region_cache: dict[tuple, PersonDetection | None] = {}
        self.grabcut = grabcut or GrabCutSettings()
        self.single_pass = single_pass
        self.tiles = tiles or TileSettings()
        self.detector = TiledPoseDetector(self.tiles)
        self.landmarks = PoseLandmarkModel()
        self._task = LazyTask(
            lambda: create_pose_landmarker(
                num_poses=self.max_people,
                min_detection_confidence=self.min_detection_confidence,
                min_presence_confidence=self.min_presence_confidence,
                segmentation=True,
            )
        )

    def close(self) -> None:
        """Free the models (a later call loads them again)."""
        self._task.close()
        self.detector.close()
        self.landmarks.close()

    def detect(self, image_rgb_hw3: np.ndarray) -> list[PersonDetection]:
        """All people in the image (at most `max_people`), best score first; [] when there is nobody."""
        image = as_rgb_uint8(image_rgb_hw3)
        if self.single_pass:
            return self._detect_single_pass(image)
        h, w = image.shape[:2]
        scale = min(1.0, MAX_SIDE_PX / max(h, w))
        if scale < 1.0:  # a very large photo: found on a smaller copy, mapped back
            size_wh = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = self.detect(cv2.resize(image, size_wh, interpolation=cv2.INTER_AREA))
            return [_scaled_up(p, (w / size_wh[0], h / size_wh[1]), (h, w)) for p in small]
        found = self.add_detected(image, [], self.max_people)
        if self.look_behind:
            found = self.add_hidden(image, found, self.max_people)
        people = [self._person_from(lm, (h, w)) for lm in found]
        people = [p for p in people if p.score >= self.min_person_score]
        people.sort(key=lambda p: -p.score)
        return suppress_duplicates(people)[: self.max_people]

    def add_detected(self, image: np.ndarray, found: list[RegionLandmarks], max_people: int) -> list[RegionLandmarks]:
        """Run the person detector on `image`; each candidate that is not one of `found` and whose landmarks
        confirm it is appended to `found` (up to `max_people` in all), which is returned."""
        faces = [_face_circle(lm) for lm in found]
        unsure_left = self.max_unsure_candidates
        for cand in self.detector.detect(image)[: 3 * max_people]:
            if len(found) >= max_people:
                break
            if _on_a_face(cand, faces):
                continue  # someone already found, seen again at another scale: no model run
            if cand.score < UNSURE_SCORE:
                if unsure_left <= 0:
                    continue
                unsure_left -= 1
            for rect in cand.rois():
                lm = self._confirmed(image, rect, found)
                if lm is not None:
                    found.append(lm)
                    faces.append(_face_circle(lm))
                    break
        return found

    def add_hidden(self, image: np.ndarray, found: list[RegionLandmarks], max_people: int) -> list[RegionLandmarks]:
        """Look for people behind or beside each one found: the detector is led by faces and sees one
        of two entangled people (dancers, a couple hugging); with the found person's face painted
        over, it runs again on their region, and a candidate there whose landmarks hold (on the
        unpainted image, presence at least `min_behind_presence`) is appended to `found`."""
        faces = [_face_circle(lm) for lm in found]
        h, w = image.shape[:2]
        for lm, face in zip(list(found), list(faces), strict=True):
            if len(found) >= max_people:
                break
            if face is None or face[1] < self.min_behind_face_px:
                continue  # seen from behind, or too small: no face of theirs hides anyone
            centre = tuple(int(round(v)) for v in face[0])
            radius = int(round(1.6 * face[1]))
            side = 1.2 * lm.rect.size_px
            cx, cy = lm.rect.center_xy
            view = View(cx - side / 2, cy - side / 2, side)
            # The detector sees only the view: painted on a copy of the part of the image under it (the
            # whole image painted only for a candidate's first look).
            x0, y0, x1, y1 = views_box([view], w, h, 2.0 * side / DETECTOR_INPUT_SIDE)
            if x1 <= x0 or y1 <= y0:
                continue
            part = image[y0:y1, x0:x1].copy()
            cv2.circle(part, (centre[0] - x0, centre[1] - y0), radius, (127, 127, 127), -1)
            painted = None
            for cand in self.detector.detect(part, [View(view.x0 - x0, view.y0 - y0, side)])[:2]:
                cand = cand.shifted(x0, y0)
                if _on_a_face(cand, faces):
                    continue  # a face already found (a neighbour's, or the painted one): no model run
                if painted is None:
                    painted = image.copy()
                    cv2.circle(painted, centre, radius, (127, 127, 127), -1)
                new = self._confirmed(image, cand.roi(), found, self.min_behind_presence, painted)
                if new is not None:
                    found.append(new)
                    faces.append(_face_circle(new))
                    break
        return found

    def _confirmed(self, image: np.ndarray, rect: RotatedRect, found: list[RegionLandmarks],
                   min_presence: float | None = None, first_image: np.ndarray | None = None
                   ) -> RegionLandmarks | None:  # fmt: skip
        """The landmarks of a detector's region when they hold: a person present in the region, and
        again in the region their own landmarks give, at nearly the same place (a texture that fooled
        the detector gives landmarks that wander off on the second look); None otherwise, and for
        someone already in `found`. `min_presence`: of the second look (default `min_found_presence`);
        `first_image`: the image of the first look (default `image`)."""
        first_image = image if first_image is None else first_image
        first = self._landmarks_in(first_image, rect, self.min_presence_confidence)
        if first is None or any(_same(first, q) for q in found):
            return None
        min_presence = self.min_found_presence if min_presence is None else min_presence
        second = self._landmarks_in(image, first.next_rect(), min_presence, self.mirror_average_all)
        if second is None:
            return None
        drift = float(np.median(np.linalg.norm(first.xy_k2 - second.xy_k2, axis=1))) / first.rect.size_px
        if drift > self.max_drift or any(_same(second, q) for q in found):
            return None
        return second

    def _landmarks_in(self, image: np.ndarray, rect: RotatedRect, min_presence: float, mirror_average: bool = False,
                      even_halving: bool = False) -> RegionLandmarks | None:  # fmt: skip
        """The landmark model in one region, None when it sees no person there (`even_halving`: the crop's,
        PoseLandmarkModel.run)."""
        if rect.size_px < 8:
            return None
        lm = self.landmarks.run(image, rect, mirror_average, skip_mirror_below=min_presence, even_halving=even_halving)
        return lm if lm.presence >= min_presence else None

    @staticmethod
    def _person_from(lm: RegionLandmarks, shape_hw: tuple[int, int], box_xyxy: np.ndarray | None = None
                     ) -> PersonDetection:  # fmt: skip
        mask_hw = lm.mask_hw(shape_hw)
        if box_xyxy is not None:  # a prompted box: nothing of the person outside it
            h, w = shape_hw
            keep = np.zeros((h, w), dtype=bool)
            x0, y0, x1, y1 = box_xyxy
            keep[max(0, int(y0)) : int(np.ceil(y1)), max(0, int(x0)) : int(np.ceil(x1))] = True
            mask_hw[~keep] = 0.0
        conf_k = np.clip(lm.visibility_k * lm.presence_k, 0.0, 1.0)
        return detection_from_landmarks(lm.xy_k2, conf_k, lm.world_k3, mask_hw, region_box(lm.rect, shape_hw))

    def find_in_region(
        self, image_rgb_hw3: np.ndarray, box_xyxy: np.ndarray | None = None, point_xy: np.ndarray | None = None,
        others: list[PersonDetection] | None = None,
    ) -> PersonDetection | None:
        """The person inside a prompted box, or under a clicked point, found by the detector and the
        landmark model on that region alone (upscaled as the models expect); None when there is none.

        A box: the detector looks at a square around it, and regions fitted to the box are tried as
        well (`box_regions`; by default BlazePose's upright square, 1.25 x the box); each result
        gets up to `prompt_refinements` more looks from the region its own landmarks give. The result
        must have most confident landmarks inside the box, and of two people the one the box fits
        wins. Where the landmark model is unsure everywhere (presence below `min_prompt_presence`), the
        best answer above `min_box_presence` is still taken: the user said there is someone. A point:
        the detector looks at squares of a third, two thirds and all of the image's short side centred
        on it; the person's mask or landmarks' outline must hold it. `others`: the people already
        found; where two of their faces share the box and the landmarks found have the wrong one
        (entangled people), the box's own person is looked for again (`_unentangled`).
        """
        image = as_rgb_uint8(image_rgb_hw3)
        h, w = image.shape[:2]
        box = None if box_xyxy is None else np.asarray(box_xyxy, dtype=np.float64).reshape(4)
        point = None if point_xy is None or box is not None else np.asarray(point_xy, dtype=np.float64).reshape(2)
        if box is None and point is None:
            return None
        best, _ = self._best_region(image, box, point)
        if best is None:
            return None
        if box is not None and others:
            image, best = self._unentangled(image, box, best, others)
        if self.mirror_average:
            best = self.landmarks.run(image, best.rect, mirror_average=True)
        return self._person_from(best, (h, w), box)

    def _best_region(self, image: np.ndarray, box: np.ndarray | None, point: np.ndarray | None
                     ) -> tuple[RegionLandmarks | None, float]:  # fmt: skip
        """The landmarks that answer a prompt best over the regions tried, and their score."""
        h, w = image.shape[:2]
        rects = self._region_rects(image, box, point)
        rects = rects if box is not None else rects[:4]
        floor = self.min_box_presence if box is not None else self.min_prompt_presence
        best, best_score = None, 0.0
        for rect in rects:
            lm = self._landmarks_in(image, rect, floor)
            for _ in range(self.prompt_refinements if lm is not None else 0):
                # One more look from the region the landmarks themselves give (as BlazePose tracks).
                again = self._landmarks_in(image, lm.next_rect(), floor)
                if again is None or again.presence < lm.presence:
                    break
                lm = again
            if lm is None:
                continue
            score = _region_score(lm, box, point, (h, w))
            if lm.presence < self.min_prompt_presence:
                score *= 0.1  # unsure: only when nothing better answers the prompt
            if score > best_score:
                best, best_score = lm, score
        return best, best_score

    def _unentangled(self, image: np.ndarray, box: np.ndarray, best: RegionLandmarks,
                     others: list[PersonDetection]) -> tuple[np.ndarray, RegionLandmarks]:  # fmt: skip
        """The box's own person where two faces share the box (entangled people): when the landmarks
        found have not the face the box is drawn around (`box_faces`, among theirs and the other
        people's), the other faces in the box are painted over (as `add_hidden` does) and the regions
        are tried again; the new landmarks are kept when they have that face. Returns the image the
        landmarks were found on (painted or not) and the landmarks. No model run without a conflict."""
        faces = [face_of(p.keypoints2d.xy_k2, p.keypoints2d.conf_k) for p in others]
        mine = _face_circle(best)
        own, rivals = box_faces(box, [*faces, mine])
        if own is None or own == len(faces) or not rivals:
            return image, best
        centre, width = faces[own]
        if mine is not None and float(np.linalg.norm(mine[0] - centre)) <= width:
            return image, best  # the landmarks found are of the box's own face
        painted = image.copy()
        for i in rivals:
            f = mine if i == len(faces) else faces[i]
            # The disc stops short of the box's own face (0.6 of its width from its centre; rivals are
            # more than a face width away).
            radius = min(self.paint_face_scale * f[1], float(np.linalg.norm(f[0] - centre)) - 0.6 * width)
            cv2.circle(painted, tuple(int(round(v)) for v in f[0]), int(round(radius)), (127, 127, 127), -1)
        alt, _ = self._best_region(painted, box, None)
        alt_face = None if alt is None else _face_circle(alt)
        if alt_face is None or float(np.linalg.norm(alt_face[0] - centre)) > width:
            return image, best
        return painted, alt

    def _region_rects(self, image: np.ndarray, box: np.ndarray | None, point: np.ndarray | None) -> list[RotatedRect]:
        """Regions to try for a prompt: the detector's finds around it (best first), then, for a box,
        squares fitted to the box (`box_regions`)."""
        h, w = image.shape[:2]
        if box is not None:
            side = 1.3 * max(box[2] - box[0], box[3] - box[1])
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            views = [View(cx - side / 2, cy - side / 2, side)]
        else:
            short = min(h, w)
            views = [View(point[0] - f * short / 2, point[1] - f * short / 2, f * short) for f in (1 / 3, 2 / 3, 1)]

        def in_box(xy: np.ndarray) -> bool:
            return bool(box[0] <= xy[0] <= box[2] and box[1] <= xy[1] <= box[3])

        rects = []
        for cand in self.detector.detect(image, views)[:3]:
            face_2 = (cand.face_xyxy[:2] + cand.face_xyxy[2:]) / 2
            if box is None or in_box(cand.keypoints_42[0]) or in_box(face_2):
                rects.append(cand.roi())
        if box is not None:
            upright = RotatedRect.around_box(box, 1.0)
            for scale, turn_deg in self.box_regions:
                rects.append(RotatedRect(upright.center_xy, upright.size_px * scale, np.deg2rad(turn_deg)))
        return rects

    def _find_cached(self, image: np.ndarray, box_xyxy: np.ndarray | None, point_xy: np.ndarray | None,
                     others: list[PersonDetection] | None = None) -> PersonDetection | None:  # fmt: skip
        """find_in_region, remembered for the last few prompts (every click re-applies a box)."""
        faces = [face_of(p.keypoints2d.xy_k2, p.keypoints2d.conf_k) for p in others or []]
        key = (
            hashlib.sha1(np.ascontiguousarray(image[::9, ::9]).tobytes()).hexdigest(), image.shape,
            None if box_xyxy is None else tuple(np.round(box_xyxy, 2)),
            None if point_xy is None else tuple(np.round(point_xy, 2)),
            tuple(None if f is None else (*np.round(f[0], 1), round(f[1], 1)) for f in faces),
        )  # fmt: skip
        if key not in self._region_cache:
            self._region_cache[key] = self.find_in_region(image, box_xyxy, point_xy, others)
            while len(self._region_cache) > 8:
                self._region_cache.pop(next(iter(self._region_cache)))
        return self._region_cache[key]

    def _detect_single_pass(self, image: np.ndarray) -> list[PersonDetection]:
        """The former path: MediaPipe's Tasks PoseLandmarker once over the whole image."""
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
        return detection_from_landmarks(xy_k2, conf_k, xyz_k3, mask_hw)

    def apply_prompts(
        self, image_rgb_hw3: np.ndarray, people: list[PersonDetection], prompts: Prompts
    ) -> list[PersonDetection]:
        """Select and refine one person with clicks and a box; returns a new list.

        The selected person is the one the box overlaps most, else the one most positive clicks fall
        on (mask, else box), else (negative clicks only) the one whose mask they carve; `select_person`
        on the returned list finds them again. Their mask is refined with GrabCut in place (the order
        of the list, hence person ids, does not change); the others are the same objects. A positive
        click or box on nobody runs the models inside that region (`find_in_region`): the person found
        there is appended at the end, with landmarks (so the body fit fits them) and a mask refined
        like any other. Where the models see nobody, the new person comes from GrabCut alone: score 1
        (the user said so), no landmarks (all confidences 0), so later stages skip it. Keypoint prompts
        are only validated here (the body fit uses them). Empty prompts return the people unchanged.
        """
        image = as_rgb_uint8(image_rgb_hw3)
        h, w = image.shape[:2]
        pos_n2, neg_n2, box = split_prompts(prompts, w, h)
        if not len(pos_n2) and not len(neg_n2) and box is None:
            return list(people)

        chosen = select_person(people, pos_n2, neg_n2, box)
        if box is not None or (chosen is None and len(pos_n2)):
            # A box always says who: the person the models find in it (an existing one, or a new one).
            found = self._find_cached(image, box, None if box is not None else pos_n2.mean(axis=0), people)
            if found is not None:
                kp = found.keypoints2d
                twin = [i for i, p in enumerate(people)
                        if same_person(kp.xy_k2, kp.conf_k, p.keypoints2d.xy_k2, p.keypoints2d.conf_k)]  # fmt: skip
                if twin and box is None:
                    chosen = twin[0]  # a click on someone already found, outside their box
                elif twin and chosen is not None and chosen not in twin:
                    pass  # the landmarks seen in the box are a neighbour's: the person the box fits keeps theirs
                elif twin or (chosen is not None and box_iou(found.bbox_xyxy, people[chosen].bbox_xyxy) >= 0.7):
                    # The boxed person was already found: the landmarks seen in the box alone win (the
                    # box is how a user fixes a detection); the index and the hands stay.
                    chosen = twin[0] if twin else chosen
                    people = list(people)
                    people[chosen] = _with_extra_keypoints(found, people[chosen])
                else:
                    people = [*people, found]
                    chosen = len(people) - 1
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


class SinglePassSegmenter(EmbeddedSegmenter):
    """The former detection: MediaPipe's Tasks PoseLandmarker once over the whole image (up to 4
    people, usually the few largest). Kept as the baseline that bench/bench_crowds.py measures."""

    def __init__(self, max_people: int = 4, **kwargs: Any) -> None:
        super().__init__(max_people=max_people, single_pass=True, **kwargs)
