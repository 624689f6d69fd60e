"""Click prompts of the playground: add a click by mode, undo, clear, draw them over the photo (SVG).

Pure functions on an immutable `PromptHistory`: every edit returns a new history, so undo is
"drop the last action". Coordinates are pixels of the full-resolution upright image (origin at
the top-left corner, as in pipelines.types); drawing happens in pixels of a downscaled display copy.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, replace
from typing import Literal

import cv2
import numpy as np

from pipelines.errors import BadPromptError
from pipelines.io.limits import MAX_IMAGE_PROMPTS
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
    max_prompts: int = MAX_IMAGE_PROMPTS,
) -> PromptHistory:
    """Add one click at image pixel (x, y). A box takes two clicks (opposite corners).

    Raises BadPromptError (one plain sentence) for a click outside the image, a keypoint click
    without a known joint name, or an unknown mode.
    """
    if not isinstance(mode, str):
        raise BadPromptError(f"The click mode could not be read; choose one of: {', '.join(MODES)}.")
    if mode not in MODES:
        raise BadPromptError(f"Unknown prompt mode {mode[:40]!r}; use one of: {', '.join(MODES)}.")
    if len(history.actions) >= max_prompts:
        raise BadPromptError(f"There are already {len(history.actions)} prompts, the limit; undo or clear some first.")
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
        if not joint or not isinstance(joint, str):
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


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _el(tag: str, text: str = "", **attrs: float | str) -> str:
    """One SVG element; attribute names with '_' are written with '-' (stroke_width -> stroke-width)."""
    parts = [f'{k.rstrip("_").replace("_", "-")}="{round(v, 1) if isinstance(v, float) else html.escape(str(v))}"'
             for k, v in attrs.items()]  # fmt: skip
    return f"<{tag} {' '.join(parts)}>{html.escape(text)}</{tag}>"


def _path(points: list[tuple[float, float]], close: bool = False) -> str:
    """SVG path data through `points` (pairs of points make separate strokes when close is False)."""
    if close:
        return "M" + "L".join(f"{x:.1f},{y:.1f}" for x, y in points) + "Z"
    pairs = zip(points[::2], points[1::2], strict=True)
    return "".join(f"M{a[0]:.1f},{a[1]:.1f}L{b[0]:.1f},{b[1]:.1f}" for a, b in pairs)


def prompts_svg(history: PromptHistory, scale: float, size_wh: tuple[int, int]) -> str:
    """SVG shapes of the prompts, in display pixels (`scale` = display px per image px; the canvas's
    viewBox is the display copy's `size_wh`). Drawn over the photo, which itself never changes.

    Positive points green, negative points red with a white cross, the box yellow, a pending box corner
    as a yellow cross, keypoint prompts as magenta diamonds labelled with the joint name. Only the prompts
    the pipeline uses are drawn (the last box, the last position of each joint). Each shape has a class
    (`pos`, `neg`, `box`, `corner`, `kp`) so the page and its tests can count them.
    """
    r = max(4.0, 0.012 * max(size_wh))
    t = max(1.0, r / 3)
    white, out = _hex(OUTLINE_RGB), []
    prompts = to_prompts(history)
    if prompts.box_xyxy is not None:
        x0, y0, x1, y1 = (float(v) * scale for v in prompts.box_xyxy)
        out.append(_el("rect", class_="box", x=x0, y=y0, width=x1 - x0, height=y1 - y0, fill="none",
                       stroke=_hex(BOX_RGB), stroke_width=t + 1))  # fmt: skip
    for x, y, label in prompts.points_n3:
        cx, cy = float(x) * scale, float(y) * scale
        kind, colour = ("pos", POSITIVE_RGB) if label == 1 else ("neg", NEGATIVE_RGB)
        out.append(_el("circle", class_=kind, cx=cx, cy=cy, r=r, fill=_hex(colour), stroke=white, stroke_width=t))
        if label == 0:
            d = 0.6 * r
            cross = [(cx - d, cy - d), (cx + d, cy + d), (cx - d, cy + d), (cx + d, cy - d)]
            out.append(_el("path", d=_path(cross), stroke=white, stroke_width=t))
    for name, (x, y) in prompts.keypoints.items():
        cx, cy, d = float(x) * scale, float(y) * scale, r + t
        diamond = [(cx, cy - d), (cx + d, cy), (cx, cy + d), (cx - d, cy)]
        out.append(_el("path", class_="kp", d=_path(diamond, close=True), fill=_hex(KEYPOINT_RGB), stroke=white,
                       stroke_width=t))  # fmt: skip
        out.append(_el("text", name, x=cx + d + t, y=cy - r, font_size=2.2 * r, fill=white, stroke="#000",
                       stroke_width=t / 2, paint_order="stroke"))  # fmt: skip
    if history.box_corner is not None:
        cx, cy, d = history.box_corner[0] * scale, history.box_corner[1] * scale, 1.5 * r
        cross = [(cx - d, cy), (cx + d, cy), (cx, cy - d), (cx, cy + d)]
        out.append(_el("path", class_="corner", d=_path(cross), stroke=_hex(BOX_RGB), stroke_width=t + 1))
    return "".join(out)


def summary(history: PromptHistory) -> str:
    """The prompts the pipeline uses, in words: e.g. '2 positive, a box' or 'none' (a half-drawn box is
    not a prompt yet)."""
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
    return ", ".join(parts) if parts else "none"


def describe(history: PromptHistory) -> str:
    """One line for the prompt status: how many prompts of each kind, and a box waiting for its corner."""
    text = "Prompts: " + summary(history)
    if history.box_corner is not None:
        text += ("; " if text != "Prompts: none" else " yet; ") + "box: click its second corner"
    return text
