"""Click prompts on a video's frames: which people to track, and corrections of a joint that carry on.

`VideoPrompts` holds, per frame index, what the user clicked, in pixels of the source video (before any
downscale; origin at the top-left corner). `PromptSelector` applies them in the video pipeline, after
the tracker has given each detection its id (so the people keep their ids):

- Positive points / boxes: once any is given, only the people they select are tracked from their frame
  on (earlier frames keep everyone). A point selects the person whose mask covers it, else the nearest
  one whose box holds it; a box selects the person whose box it overlaps best
  (pipelines.segmentation.embedded's helpers, as in the image mode). Prompts on later frames add people.
- Negative points: the person under the point is dropped from that frame on, unless a positive point
  or a box selects that person on the same frame: then it is a mask correction (below); so is a
  negative point on nobody's box but within half a box of a person selected on its frame.
- Mask corrections: more than one prompt on a person selected on a frame (a positive point or a box,
  and another point) reshapes that person's mask there and on the following frames: positive points
  = this is the person, negative = this is not. `mask_points` hands them to the video pipeline
  (pipelines.tracking.video_masks carries them on with the person's box).
- Keypoint corrections `NAME=x,y` on frame F: that joint of the person the frame's positive prompt
  selects (else the person whose box holds the point) is moved to (x, y) on F (confidence 1), and the
  correction carries to the following frames as an offset in the person's box-normalised coordinates
  (a fraction of the box's width and height), fading out linearly over `CARRY_S` = 1 s of video time,
  unless a later correction of that joint replaces it. The fit then follows the moved keypoint.
- Lost and found: the tracker gives a person who was unseen too long (a long occlusion, out of the
  frame) a new id when they come back. A new track that starts within `reacquire_diag` box diagonals
  of where a selected (or dropped) person, now unseen, was last seen takes their place: it is selected
  (or dropped) too, with a note in `notes`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from pipelines.errors import BadPromptError
from pipelines.io.limits import MAX_VIDEO_PROMPTS
from pipelines.segmentation.prompts import check_prompts
from pipelines.types import Keypoints2D, PersonDetection

CARRY_S = 1.0
"""A keypoint correction's offset fades out linearly to nothing over this many seconds of video."""


@dataclass
class FramePrompts:
    """What the user clicked on one frame, in source-video pixels."""

    points_n3: list[tuple[float, float, int]] = field(default_factory=list)
    """Click points (x, y, label): label 1 = track this person, 0 = drop this person."""
    boxes_n4: list[tuple[float, float, float, float]] = field(default_factory=list)
    """Boxes (x0, y0, x1, y1) around people to track."""
    keypoints: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Joint name (BlazePose name, e.g. left_wrist) -> where it really is (x, y)."""


@dataclass
class VideoPrompts:
    """The prompts of a video, per frame index (0-based, in the video, before the stride)."""

    frames: dict[int, FramePrompts] = field(default_factory=dict)
    """Frame index -> that frame's prompts."""

    def at(self, index: int) -> FramePrompts:
        return self.frames.setdefault(int(index), FramePrompts())

    def add_point(self, index: int, x: float, y: float, label: int = 1) -> None:
        self.at(index).points_n3.append((float(x), float(y), int(label)))

    def add_box(self, index: int, x0: float, y0: float, x1: float, y1: float) -> None:
        self.at(index).boxes_n4.append((float(x0), float(y0), float(x1), float(y1)))

    def add_keypoint(self, index: int, name: str, x: float, y: float) -> None:
        self.at(index).keypoints[name] = (float(x), float(y))

    def is_empty(self) -> bool:
        return not any(p.points_n3 or p.boxes_n4 or p.keypoints for p in self.frames.values())

    def as_dict(self) -> dict[str, dict[str, object]]:
        """JSON form (tracks.json): frame index -> {"points", "boxes", "keypoints"}, source-video pixels."""
        return {str(i): {"points": [list(p) for p in f.points_n3], "boxes": [list(b) for b in f.boxes_n4],
                         "keypoints": {n: list(xy) for n, xy in f.keypoints.items()}}
                for i, f in sorted(self.frames.items())}  # fmt: skip

    def validate(self, width: int, height: int, frame_count: int, frames: list[int] | None = None) -> None:
        """Raise BadPromptError (one sentence) for a prompt outside the `width` x `height` video, on a
        frame past its end (`frame_count` > 0) or not among the processed `frames`, or an unknown joint."""
        n = sum(len(f.points_n3) + len(f.boxes_n4) + len(f.keypoints) for f in self.frames.values())
        if n > MAX_VIDEO_PROMPTS:
            raise BadPromptError(f"{n} prompts were given; the limit is {MAX_VIDEO_PROMPTS} a video")
        for i, f in sorted(self.frames.items()):
            if i < 0 or (frame_count > 0 and i >= frame_count):
                raise BadPromptError(f"a prompt is on frame {i}, but the video has frames 0 to {frame_count - 1}")
            if frames is not None and i not in set(frames):
                raise BadPromptError(f"a prompt is on frame {i}, which is not processed with this stride and "
                                     f"time range (processed frames are e.g. {frames[:3]})")  # fmt: skip
            check_prompts(np.asarray(f.points_n3, dtype=np.float64).reshape(-1, 3),
                          np.asarray(f.boxes_n4, dtype=np.float64).reshape(-1, 4), f.keypoints,
                          width, height, noun="video", where=f" on frame {i}")

@dataclass
class _Carry:
    """A keypoint correction being carried to the following frames."""

    track_id: int
    name: str
    time_s: float
    offset_2: np.ndarray
    """Correction in box-normalised units: (dx / box width, dy / box height) on the correction's frame."""


def _box_wh(det: PersonDetection) -> np.ndarray:
    x0, y0, x1, y1 = np.asarray(det.bbox_xyxy, dtype=np.float64)
    return np.array([max(x1 - x0, 1.0), max(y1 - y0, 1.0)])


def _near(detections: list[PersonDetection], candidates: list[int], x: float, y: float, grow: float = 0.5
          ) -> int | None:  # fmt: skip
    """Of the `candidates` (indices into detections), the one whose box grown by `grow` of its size on
    each side holds (x, y), the nearest box centre first; None when none does. (A negative point that
    corrects a selected person's mask may lie off their box, which is their keypoints': on the hair, on
    a bag held out.)"""
    best, best_dist = None, np.inf
    for c in candidates:
        x0, y0, x1, y1 = np.asarray(detections[c].bbox_xyxy, dtype=np.float64)
        gx, gy = grow * (x1 - x0), grow * (y1 - y0)
        if x0 - gx <= x <= x1 + gx and y0 - gy <= y <= y1 + gy:
            dist = float(np.hypot(x - (x0 + x1) / 2, y - (y0 + y1) / 2))
            if dist < best_dist:
                best, best_dist = c, dist
    return best


def _box_distance_diag(box_4: np.ndarray, ref_4: np.ndarray) -> float:
    """Distance between two xyxy boxes' centres, in diagonals of `ref_4`."""
    gap = (box_4[:2] + box_4[2:]) / 2 - (ref_4[:2] + ref_4[2:]) / 2
    return float(np.linalg.norm(gap)) / max(float(np.hypot(*(ref_4[2:] - ref_4[:2]))), 1.0)


@dataclass
class PromptSelector:
    """Applies `VideoPrompts` frame by frame (see the module docstring); frames must come in order."""

    prompts: VideoPrompts
    """The user's prompts (source-video pixels)."""
    selected: set[int] | None = None
    """Track ids kept (None: everyone, no positive prompt yet)."""
    dropped: set[int] = field(default_factory=set)
    """Track ids dropped by a negative point."""
    problems: list[str] = field(default_factory=list)
    """Prompts that fell on nobody (one sentence each)."""
    notes: list[str] = field(default_factory=list)
    """Lost selected (or dropped) people found again under a new id (one sentence each)."""
    reacquire_diag: float = 2.0
    """A new track this close (box centres, in diagonals of the lost person's last box) to a lost
    selected or dropped person takes their place (see the module docstring)."""
    mask_points: dict[int, np.ndarray] = field(default_factory=dict)
    """This frame's mask corrections (set by `select`): track id -> its points (N, 3) (x, y, label) in
    processed pixels (see the module docstring); empty on most frames."""
    _known: set[int] = field(default_factory=set)
    _last_box: dict[int, np.ndarray] = field(default_factory=dict)
    _carries: dict[tuple[int, str], _Carry] = field(default_factory=dict)
    _pending: dict[int, dict[str, np.ndarray]] = field(default_factory=dict)

    def keeps(self, track_id: int) -> bool:
        return (self.selected is None or track_id in self.selected) and track_id not in self.dropped

    def select(self, index: int, scale: float, ids: list[int], detections: list[PersonDetection],
               ) -> list[tuple[int, PersonDetection]]:  # fmt: skip
        """The (track id, detection) pairs to keep on frame `index` (processed pixels = `scale` x source
        pixels), after this frame's points and boxes; assigns the frame's keypoint corrections."""
        self._reacquire(index, ids, detections)
        pairs = self._select(index, scale, ids, detections)
        for t, d in zip(ids, detections, strict=True):
            if (self.selected is not None and t in self.selected) or t in self.dropped:
                self._last_box[t] = np.asarray(d.bbox_xyxy, dtype=np.float64)
        return pairs

    def _reacquire(self, index: int, ids: list[int], detections: list[PersonDetection]) -> None:
        """New ids near a lost selected / dropped person inherit their status (see the module docstring)."""
        new = [c for c, t in enumerate(ids) if t not in self._known]
        self._known.update(ids)
        for group, verb in ((self.selected, "selected"), (self.dropped, "dropped")):
            lost = [t for t in (group or ()) if t not in ids and t in self._last_box]
            for c in new:
                if not lost or ids[c] in (self.selected or set()) | self.dropped:
                    continue
                box = np.asarray(detections[c].bbox_xyxy, dtype=np.float64)
                dist = {t: _box_distance_diag(box, self._last_box[t]) for t in lost}
                t = min(dist, key=dist.get)
                if dist[t] <= self.reacquire_diag:
                    group.add(ids[c])  # type: ignore[union-attr]
                    lost.remove(t)
                    self.notes.append(f"frame {index}: person {t} ({verb}) was lost and is found again as "
                                      f"person {ids[c]}, {verb} too")  # fmt: skip

    def _select(self, index: int, scale: float, ids: list[int], detections: list[PersonDetection],
                ) -> list[tuple[int, PersonDetection]]:  # fmt: skip
        from pipelines.segmentation.prompts import person_in_box, person_under_point

        here = self.prompts.frames.get(int(index))
        self._pending = {}
        self.mask_points = {}
        if here is None:
            return [(t, d) for t, d in zip(ids, detections, strict=True) if self.keeps(t)]
        picked: list[int] = []
        boxed: set[int] = set()
        for box in here.boxes_n4:
            i = person_in_box(detections, np.asarray(box, dtype=np.float64) * scale)
            if i is None:
                x0, y0, x1, y1 = box
                self.problems.append(f"the box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) on frame {index} is around "
                                     "nobody; nothing was selected")  # fmt: skip
            else:
                picked.append(ids[i])
                boxed.add(ids[i])
                self.dropped.discard(ids[i])
        on: dict[int, list[tuple[float, float, int]]] = {}  # track id -> this frame's points on them
        for x, y, label in sorted(here.points_n3, key=lambda p: -p[2]):  # positive ones first: they select
            i = person_under_point(detections, x * scale, y * scale)
            if i is None and label == 0:  # off everyone's box: a mask correction of a person selected here?
                i = _near(detections, [c for c, t in enumerate(ids) if t in picked], x * scale, y * scale)
            if i is None:
                kind = "" if label == 1 else "negative "
                self.problems.append(f"the {kind}point at ({x:g}, {y:g}) on frame {index} is on nobody; "
                                     "nothing was selected")  # fmt: skip
                continue
            on.setdefault(ids[i], []).append((x * scale, y * scale, label))
            if label == 1:
                picked.append(ids[i])
                self.dropped.discard(ids[i])
            elif ids[i] not in picked:  # a negative point on someone not selected here: drop them
                self.dropped.add(ids[i])
        for t, pts in on.items():  # more than one prompt on a selected person: a mask correction
            if t in picked and len(pts) + (t in boxed) > 1:
                self.mask_points[t] = np.asarray(pts, dtype=np.float64)
        if picked:
            self.selected = (self.selected or set()) | set(picked)
        pairs = [(t, d) for t, d in zip(ids, detections, strict=True) if self.keeps(t)]
        for name, (x, y) in here.keypoints.items():
            xy = np.array([x, y], dtype=np.float64) * scale
            target = next((p for p in pairs if picked and p[0] == picked[0]), None) or self._holder(pairs, xy)
            if target is None:
                self.problems.append(f"the keypoint {name} at ({x:g}, {y:g}) on frame {index} is on nobody tracked; "
                                     "it was not used")  # fmt: skip
                continue
            self._pending.setdefault(target[0], {})[name] = xy
        return pairs

    @staticmethod
    def _holder(pairs: list[tuple[int, PersonDetection]], xy: np.ndarray) -> tuple[int, PersonDetection] | None:
        """The person whose box holds `xy` (the nearest box centre among them, else overall)."""
        if not pairs:
            return None

        def key(p: tuple[int, PersonDetection]) -> tuple[int, float]:
            x0, y0, x1, y1 = p[1].bbox_xyxy
            inside = x0 <= xy[0] <= x1 and y0 <= xy[1] <= y1
            return (0 if inside else 1, float(np.hypot(xy[0] - (x0 + x1) / 2, xy[1] - (y0 + y1) / 2)))

        return min(pairs, key=key)

    def correct(self, index: int, time_s: float, track_id: int, det: PersonDetection) -> PersonDetection:
        """`det` (the track's detection on frame `index`, smoothed) with the keypoint corrections given on
        this frame (their offsets are measured here) and those carried from earlier frames."""
        for name, xy in self._pending.pop(track_id, {}).items():
            names = det.keypoints2d.names
            if name not in names:
                self.problems.append(f"frame {index}: person {track_id} has no {name} keypoint (hands are found "
                                     "with --hands); the correction was not used")  # fmt: skip
                continue
            now = np.asarray(det.keypoints2d.xy_k2[names.index(name)], dtype=np.float64)
            self._carries[(track_id, name)] = _Carry(track_id, name, time_s, (xy - now) / _box_wh(det))
        carries = [c for c in self._carries.values() if c.track_id == track_id]
        if not carries:
            return det
        kp = det.keypoints2d
        xy_k2 = np.array(kp.xy_k2, dtype=np.float64, copy=True)
        conf_k = np.array(kp.conf_k, dtype=np.float64, copy=True)
        wh = _box_wh(det)
        for c in carries:
            fade = 1.0 - (time_s - c.time_s) / CARRY_S
            if fade <= 0:
                del self._carries[(c.track_id, c.name)]
                continue
            if c.name in kp.names:
                k = kp.names.index(c.name)
                xy_k2[k] += fade * c.offset_2 * wh
                conf_k[k] = max(conf_k[k], fade)
        return replace(det, keypoints2d=Keypoints2D(list(kp.names), xy_k2, conf_k))
