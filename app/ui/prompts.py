"""Click prompts of the playground: add a click by mode, undo, clear, draw them on the photo.

Pure functions on an immutable `PromptHistory`: every edit returns a new history, so undo is
"drop the last action". Coordinates are pixels of the full-resolution upright image (origin at
the top-left corner, as in pipelines.types); drawing happens on a downscaled display copy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

from pipelines.errors import BadPromptError
from pipelines.keypoints.names import PROMPTABLE_NAMES
from pipelines.types import Prompts

PromptMode = Literal["positive", "negative", "box", "keypoint"]
MODES: tuple[PromptMode, ...] = ("positive", "negative", "box", "keypoint")

POSITIVE_RGB = (40, 200, 60)
NEGATIVE_RGB = (230, 40, 40)
BOX_RGB = (255, 200, 0)
KEYPOINT_RGB = (255, 0, 255)
OUTLINE_RGB = (255, 255, 255)


@dataclass(frozen=True)
class PromptAction:
    """One completed prompt."""

    kind: Literal["point", "box", "keypoint"]
    xy: tuple[float, ...]
    """point / keypoint: (x, y); box: (x0, y0, x1, y1) with x0 < x1 and y0 < y1. Image pixels."""
    label: int = 1
    """Points only: 1 = this is the person, 0 = this is not."""
    joint: str | None = None
    """Keypoints only: the joint name (one of PROMPTABLE_NAMES)."""


@dataclass(frozen=True)
class PromptHistory:
    """Every prompt action in click order, plus the first corner of a box being drawn."""

    actions: tuple[PromptAction, ...] = ()
    box_corner: tuple[float, float] | None = None
    """First click of a box: the box is added by the second click."""

    @property
    def pending(self) -> bool:
        """True while a box waits for its second corner."""
        return self.box_corner is not None

    def __len__(self) -> int:
        return len(self.actions) + (1 if self.pending else 0)


def _check_inside(x: float, y: float, width: int, height: int) -> None:
    if not (np.isfinite(x) and np.isfinite(y) and 0 <= x <= width and 0 <= y <= height):
        raise BadPromptError(
            f"The click at ({x:.0f}, {y:.0f}) is outside the {width}x{height} image; click on the photo."
        )


def add_click(
    history: PromptHistory,
    mode: PromptMode,
    x: float,
    y: float,
    width: int,
    height: int,
    joint: str | None = None,
) -> PromptHistory:
    """Add one click at image pixel (x, y). A box takes two clicks (opposite corners).

    Raises BadPromptError (one plain sentence) for a click outside the image, a keypoint click
    without a known joint name, or an unknown mode.
    """
    if mode not in MODES:
        raise BadPromptError(f"Unknown prompt mode {mode!r}; use one of: {', '.join(MODES)}.")
    _check_inside(x, y, width, height)
    x, y = float(x), float(y)
    if mode == "box":
        if history.box_corner is None:
            return replace(history, box_corner=(x, y))
        (ax, ay) = history.box_corner
        x0, x1 = sorted((ax, x))
        y0, y1 = sorted((ay, y))
        if x1 - x0 < 2 or y1 - y0 < 2:
            raise BadPromptError("The two box corners are too close; click the opposite corner of the person.")
        box = PromptAction(kind="box", xy=(x0, y0, x1, y1))
        return PromptHistory(actions=(*history.actions, box), box_corner=None)
    # Any other click abandons a half-drawn box.
    if mode == "keypoint":
        if not joint:
            raise BadPromptError("Choose which joint you are placing (the Joint list) before clicking.")
        if joint not in PROMPTABLE_NAMES:
            raise BadPromptError(f"Unknown joint name {joint!r} (e.g. left_wrist, right_knee).")
        action = PromptAction(kind="keypoint", xy=(x, y), joint=joint)
    else:
        action = PromptAction(kind="point", xy=(x, y), label=1 if mode == "positive" else 0)
    return PromptHistory(actions=(*history.actions, action), box_corner=None)


def undo(history: PromptHistory) -> PromptHistory:
    """Remove the last click: a pending box corner first, else the last completed prompt."""
    if history.box_corner is not None:
        return replace(history, box_corner=None)
    return PromptHistory(actions=history.actions[:-1])


def clear(history: PromptHistory | None = None) -> PromptHistory:  # noqa: ARG001 - symmetry with undo
    """An empty history."""
    return PromptHistory()


def to_prompts(history: PromptHistory) -> Prompts:
    """The pipeline's Prompts: every point, the last box, the last position per keypoint name."""
    points = [(*a.xy, a.label) for a in history.actions if a.kind == "point"]
    boxes = [a.xy for a in history.actions if a.kind == "box"]
    keypoints = {a.joint: (a.xy[0], a.xy[1]) for a in history.actions if a.kind == "keypoint" and a.joint}
    return Prompts(
        points_n3=np.asarray(points, dtype=np.float64).reshape(-1, 3),
        box_xyxy=np.asarray(boxes[-1], dtype=np.float64) if boxes else None,
        keypoints=keypoints,
    )


def display_scale(width: int, height: int, max_side: int | None) -> float:
    """Factor from image pixels to display pixels (<= 1): the display copy fits in max_side."""
    if not max_side or max(width, height) <= max_side:
        return 1.0
    return max_side / max(width, height)


def display_image(rgb_hw3: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    """A copy of the photo that fits in `max_side` pixels, and its scale (display px per image px)."""
    h, w = rgb_hw3.shape[:2]
    scale = display_scale(w, h, max_side)
    if scale == 1.0:
        return np.ascontiguousarray(rgb_hw3).copy(), 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb_hw3, size, interpolation=cv2.INTER_AREA), scale


def _label(canvas: np.ndarray, text: str, x: int, y: int, font_scale: float, thickness: int) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    h, w = canvas.shape[:2]
    x = int(min(max(x, 0), max(w - tw - 4, 0)))
    y = int(min(max(y, th + 4), h - base - 2))
    cv2.rectangle(canvas, (x, y - th - 4), (x + tw + 4, y + base), (0, 0, 0), -1)
    cv2.putText(canvas, text, (x + 2, y - 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, OUTLINE_RGB, thickness,
                cv2.LINE_AA)  # fmt: skip


def draw_prompts(display_rgb_hw3: np.ndarray, history: PromptHistory, scale: float = 1.0) -> np.ndarray:
    """Draw the prompts on a copy of the display image (`scale` = display px per image px).

    Positive points green, negative points red (with a cross), the box yellow, a pending box corner as
    a yellow cross, keypoint prompts as magenta diamonds labelled with the joint name. Only the prompts
    the pipeline uses are drawn (the last box, the last position of each joint).
    """
    canvas = np.ascontiguousarray(display_rgb_hw3).copy()
    h, w = canvas.shape[:2]
    r = max(4, round(0.012 * max(h, w)))
    t = max(1, r // 3)
    font = max(0.35, 0.0009 * max(h, w))

    def px(x: float, y: float) -> tuple[int, int]:
        return round(x * scale), round(y * scale)

    prompts = to_prompts(history)
    if prompts.box_xyxy is not None:
        x0, y0, x1, y1 = prompts.box_xyxy
        cv2.rectangle(canvas, px(x0, y0), px(x1, y1), BOX_RGB, t + 1, cv2.LINE_AA)
    for x, y, label in prompts.points_n3:
        c = px(x, y)
        cv2.circle(canvas, c, r + t, OUTLINE_RGB, -1, cv2.LINE_AA)
        cv2.circle(canvas, c, r, POSITIVE_RGB if label == 1 else NEGATIVE_RGB, -1, cv2.LINE_AA)
        if label == 0:
            d = max(2, round(r * 0.6))
            cv2.line(canvas, (c[0] - d, c[1] - d), (c[0] + d, c[1] + d), OUTLINE_RGB, t, cv2.LINE_AA)
            cv2.line(canvas, (c[0] - d, c[1] + d), (c[0] + d, c[1] - d), OUTLINE_RGB, t, cv2.LINE_AA)
    for name, (x, y) in prompts.keypoints.items():
        cx, cy = px(x, y)
        diamond = np.array([(cx, cy - r - t), (cx + r + t, cy), (cx, cy + r + t), (cx - r - t, cy)], np.int32)
        cv2.fillPoly(canvas, [diamond], OUTLINE_RGB, cv2.LINE_AA)
        cv2.fillPoly(canvas, [(diamond - np.sign(diamond - [cx, cy]) * t).astype(np.int32)], KEYPOINT_RGB,
                     cv2.LINE_AA)  # fmt: skip
        _label(canvas, name, cx + r + 2 * t, cy - r, font, max(1, t // 2))
    if history.box_corner is not None:
        cx, cy = px(*history.box_corner)
        cv2.drawMarker(canvas, (cx, cy), BOX_RGB, cv2.MARKER_CROSS, 3 * r, t + 1, cv2.LINE_AA)
    return canvas


def describe(history: PromptHistory) -> str:
    """One line for the status: how many prompts of each kind."""
    prompts = to_prompts(history)
    pts = np.asarray(prompts.points_n3).reshape(-1, 3)
    parts = []
    if (pts[:, 2] == 1).any():
        parts.append(f"{int((pts[:, 2] == 1).sum())} positive")
    if (pts[:, 2] == 0).any():
        parts.append(f"{int((pts[:, 2] == 0).sum())} negative")
    if prompts.box_xyxy is not None:
        parts.append("a box")
    if prompts.keypoints:
        parts.append(f"{len(prompts.keypoints)} keypoint{'s' if len(prompts.keypoints) > 1 else ''}")
    if history.box_corner is not None:
        parts.append("box: click its second corner")
    return "Prompts: " + (", ".join(parts) if parts else "none")
