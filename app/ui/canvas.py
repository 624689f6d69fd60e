"""The click canvas: the photo as one <img> that never changes under the mouse, prompts as an SVG overlay.

A click is turned into display-pixel coordinates in the browser and sent as the component's 'click'
event with {x, y}; the server answers with a new value whose only change is the overlay, which the
page patches in place (the <img> element and its decoded pixels stay). The box keeps the photo's
aspect ratio from the first byte, so a click lands right even before the photo is decoded.

Value (a dict, or None before any photo): src (the display copy as a data: URL), w and h (its size
in display pixels), svg (the prompt shapes, app.ui.prompts.prompts_svg), rev (the prompt revision).
"""

from __future__ import annotations

import base64
from typing import Any

import cv2
import numpy as np

MAX_HEIGHT_PX = 560
"""The canvas is at most this tall on the page (and as wide as its column)."""
JPEG_QUALITY = 88

TEMPLATE = """${value && value.src ? `<div class="pc" data-w="${value.w}" data-h="${value.h}" data-rev="${value.rev}"
 style="width: min(100%, ${value.maxw}px); aspect-ratio: ${value.w} / ${value.h}">
<img class="pc-img" src="${value.src}" width="${value.w}" height="${value.h}" alt="the photo" draggable="false">
<svg class="pc-svg" viewBox="0 0 ${value.w} ${value.h}" xmlns="http://www.w3.org/2000/svg">${value.svg}</svg>
</div>` : `<div class="pc-empty">Upload a photo or pick an example.</div>`}"""

CSS = """
.pc {position: relative; margin: 0 auto; cursor: crosshair; user-select: none; touch-action: manipulation}
.pc-img {position: absolute; inset: 0; width: 100%; height: 100%; display: block; pointer-events: none}
.pc-svg {position: absolute; inset: 0; width: 100%; height: 100%; pointer-events: none; overflow: visible}
.pc-empty {padding: 4em 1em; text-align: center; opacity: 0.7; border: 1px dashed currentColor}
"""

JS_ON_LOAD = """
element.addEventListener('click', (e) => {
  const box = e.target.closest('.pc');
  if (!box) return;
  const r = box.getBoundingClientRect();
  const w = Number(box.dataset.w), h = Number(box.dataset.h);
  if (!(r.width > 0 && r.height > 0 && w > 0 && h > 0)) return;
  const x = (e.clientX - r.left) / r.width * w, y = (e.clientY - r.top) / r.height * h;
  if (x < 0 || y < 0 || x > w || y > h) return;
  trigger('click', {x: x, y: y});
});
"""


def data_url(rgb_hw3: np.ndarray) -> str:
    """The image as a JPEG data: URL (RGB uint8 in)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb_hw3, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("could not encode the display image")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def canvas_value(src: str, size_wh: tuple[int, int], svg: str, revision: int) -> dict[str, Any]:
    """The component's value for a photo of display size `size_wh` with the prompt overlay `svg`."""
    w, h = int(size_wh[0]), int(size_wh[1])
    return {"src": src, "w": w, "h": h, "maxw": round(MAX_HEIGHT_PX * w / h, 1), "svg": svg, "rev": int(revision)}


def click_xy(event_data: Any) -> tuple[float, float]:
    """(x, y) display pixels from the click event's data; ValueError for anything else."""
    data = getattr(event_data, "_data", event_data)
    if not isinstance(data, dict):
        raise ValueError("the click carried no position")
    x, y = data.get("x"), data.get("y")
    if isinstance(x, bool) or isinstance(y, bool) or not isinstance(x, int | float) or not isinstance(y, int | float):
        raise ValueError("the click position is not a pair of numbers")
    return float(x), float(y)
