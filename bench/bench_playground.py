"""Playground latency, measured through the very handlers the Gradio page calls (app.ui.handlers).

    python -m bench.bench_playground [--clicks 10] [--uploads 5]

Scenarios, on a 1080p-class photo of one person (lunge.jpg, upscaled; see IMAGES):
- first result of a fresh upload, after warm-up: a new session uploads the photo and runs; times to
  the first chunk (photo + camera in the viewer) and to the chunk holding the mesh;
- prompt click -> updated mesh: after a first run, each click (positive point on the person, or a
  keypoint prompt) is handled as the page does (on_click, then the automatic re-run) until the chunk
  with the new mesh is yielded;
- click -> final status and downloads: the same, until the run's last update (status and downloads
  arrive together, after the files are written);
- burst: three clicks 150 ms apart on another thread (as the page's events arrive during a run); time
  from the first click to the final status of a result that uses all three (runs coalesce);
- baseline in the same run: the same clicks without the session cache (detection, keypoints and a cold
  fit each time), i.e. what a click would cost if every prompt re-ran the whole pipeline.
Times include Rerun logging and encoding of the streamed chunks, not the browser's rendering. The image
column says how many people the pipeline found: every one of them is fitted and streamed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from app.ui import handlers as H
from app.ui import prompts as P
from app.ui.state import UISession
from bench.common import machine_description, markdown_table
from pipelines.modes.image import ImageSession

PHOTO = H.EXAMPLES_DIR / "lunge.jpg"
IMAGES = {
    "portrait 1282x1920": "lunge.jpg (801x1200) resized to height 1920 (more pixels than 1920x1080)",
    "landscape 1920x1080": "lunge.jpg resized to height 1080 and centred on a grey 1920x1080 frame",
}
BUDGET_CLICK_S = 0.3
BUDGET_FIRST_S = 1.0
BURST = 3
BURST_GAP_S = 0.15
"""A quick user: three clicks 150 ms apart (the issue's scenario)."""


def make_images(folder: Path) -> dict[str, Path]:
    bgr = cv2.imread(str(PHOTO))
    h, w = bgr.shape[:2]
    out = {}
    portrait = cv2.resize(bgr, (round(w * 1920 / h), 1920), interpolation=cv2.INTER_CUBIC)
    small = cv2.resize(bgr, (round(w * 1080 / h), 1080), interpolation=cv2.INTER_AREA)
    frame = np.full((1080, 1920, 3), 128, np.uint8)
    x0 = (1920 - small.shape[1]) // 2
    frame[:, x0 : x0 + small.shape[1]] = small
    for name, img in (("portrait 1282x1920", portrait), ("landscape 1920x1080", frame)):
        path = folder / f"{name.split()[0]}_{img.shape[1]}x{img.shape[0]}.jpg"
        cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        out[name] = path
    return out


def run_until(state: UISession, engine: H.Engine, stages: set[str], t0: float) -> dict[str, float]:
    """Consume one automatic run as the page does (runs until the latest prompts, then the downloads);
    seconds from t0 to each stage's first update ('done' = final status and downloads)."""
    seen: dict[str, float] = {}
    for update in H.run_latest(state, engine=engine):
        seen.setdefault(update.stage, time.perf_counter() - t0)
    missing = stages - set(seen)
    if missing:
        raise RuntimeError(f"the run yielded no {missing}")
    return seen


def click_points(state: UISession, n: int, seed: int = 0) -> list[tuple[float, float]]:
    """n positive-point clicks on the person's mask, in display pixels (as the canvas sends them)."""
    mask_hw = state.last_frame.people[0].detection.mask_hw >= 0.5
    ys, xs = np.nonzero(mask_hw)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(xs), size=n, replace=False)
    return [((xs[i] + 0.5) * state.display_scale, (ys[i] + 0.5) * state.display_scale) for i in pick]


def keypoint_clicks(state: UISession, n: int) -> list[tuple[str, float, float]]:
    """n keypoint prompts: a visible joint moved by up to 12 px, in display pixels."""
    kp = state.last_frame.people[0].detection.keypoints2d
    names = ["left_wrist", "right_wrist", "left_knee", "right_knee", "left_elbow", "right_elbow"]
    out = []
    for k in range(n):
        name = names[k % len(names)]
        x, y = kp.xy_k2[kp.names.index(name)]
        dx, dy = 12 * np.cos(k), 12 * np.sin(k)
        out.append((name, (x + dx) * state.display_scale, (y + dy) * state.display_scale))
    return out


def time_clicks(state: UISession, engine: H.Engine, clicks: list[Callable[[], None]], cold: bool,
                stage: str = "bodies") -> list[float]:  # fmt: skip
    """Seconds from each click to the run's `stage` update (the page's click handler + automatic re-run)."""
    out = []
    for click in clicks:
        if cold:
            state.image_session = ImageSession()  # no cached detections, no warm start
        t0 = time.perf_counter()
        click()
        if not H.needs_run(state):
            raise RuntimeError("the click did not ask for a re-run")
        out.append(run_until(state, engine, {stage}, t0)[stage])
    return out


def time_bursts(state: UISession, engine: H.Engine, points: list[tuple[float, float]], burst: int,
                gap_s: float) -> list[float]:  # fmt: skip
    """Seconds from the first click of a burst (`burst` clicks `gap_s` apart, on another thread, as the
    page's light events arrive) to the final status of a result that uses every click of it."""
    out = []
    for start in range(0, len(points) - burst + 1, burst):
        H.on_clear(state)
        run_until(state, engine, set(), time.perf_counter())
        chunk = points[start : start + burst]

        def clicker(xys: list[tuple[float, float]] = chunk) -> None:
            for xy in xys[1:]:
                time.sleep(gap_s)
                H.on_click(state, "positive", None, *xy)

        t0 = time.perf_counter()
        H.on_click(state, "positive", None, *chunk[0])
        thread = threading.Thread(target=clicker)
        thread.start()
        run_until(state, engine, {"done"}, t0)
        thread.join()
        run_until(state, engine, set(), t0)  # the page's deferred trigger for clicks after the last run began
        if P.summary(state.history) != f"{burst} positive" or not state.is_latest(state.shown.snapshot):
            raise RuntimeError(f"a burst ended with {P.summary(state.history)!r}, not {burst} positive")
        out.append(time.perf_counter() - t0)
    return out


def stats_row(label: str, image: str, times_s: list[float], budget_s: float | None) -> list[object]:
    ms = [1000 * t for t in times_s]
    p90 = float(np.percentile(ms, 90)) if len(ms) > 1 else ms[0]
    med = statistics.median(ms)
    verdict = "–" if budget_s is None else ("yes" if med <= 1000 * budget_s else "NO")
    budget = "–" if budget_s is None else f"<= {1000 * budget_s:.0f}"
    return [label, image, len(ms), med, p90, budget, verdict]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clicks", type=int, default=10, help="clicks per scenario (default 10)")
    parser.add_argument("--uploads", type=int, default=5, help="fresh uploads per image (default 5)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")  # gr.Warning outside Gradio becomes a Python warning

    engine = H.Engine()
    t = time.perf_counter()
    engine.warmup()
    warm_s = time.perf_counter() - t
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-playground-") as tmp:
        for image_name, path in make_images(Path(tmp)).items():
            first_chunk, first_mesh = [], []
            for _ in range(args.uploads):
                state = UISession()
                t0 = time.perf_counter()
                H.on_upload(state, path)
                seen = run_until(state, engine, {"image", "bodies"}, t0)
                first_chunk.append(seen["image"])
                first_mesh.append(seen["bodies"])
                state.cleanup()
            rows.append(stats_row("fresh upload -> first chunk (photo, camera)", image_name, first_chunk, None))
            rows.append(stats_row("fresh upload -> mesh chunk", image_name, first_mesh, BUDGET_FIRST_S))

            state = UISession()
            H.on_upload(state, path)
            run_until(state, engine, {"bodies"}, time.perf_counter())
            n_people = len(state.last_frame.people)
            image_name = f"{image_name}, {n_people} {'person' if n_people == 1 else 'people'} found"
            rows[-2][1] = rows[-1][1] = image_name
            points = click_points(state, 2 * args.clicks)
            keypoints = keypoint_clicks(state, args.clicks)

            def point_click(xy: tuple[float, float], s: UISession = state) -> Callable[[], None]:
                return lambda: H.on_click(s, "positive", None, *xy)

            def kp_click(k: tuple[str, float, float], s: UISession = state) -> Callable[[], None]:
                return lambda: H.on_click(s, "keypoint", k[0], k[1], k[2])

            clicks = [point_click(xy) for xy in points[: args.clicks]]
            rows.append(stats_row("click: positive point -> updated mesh", image_name,
                                  time_clicks(state, engine, clicks, cold=False), BUDGET_CLICK_S))  # fmt: skip
            H.on_clear(state)
            run_until(state, engine, set(), time.perf_counter())
            clicks = [point_click(xy) for xy in points[args.clicks :]]
            rows.append(stats_row("click: positive point -> final status + downloads", image_name,
                                  time_clicks(state, engine, clicks, cold=False, stage="done"), None))  # fmt: skip
            bursts = time_bursts(state, engine, points, BURST, BURST_GAP_S)
            label = f"burst: {BURST} clicks {1000 * BURST_GAP_S:.0f} ms apart -> result with all of them"
            rows.append(stats_row(label, image_name, bursts, None))
            H.on_clear(state)
            run_until(state, engine, {"bodies"}, time.perf_counter())
            clicks = [kp_click(k) for k in keypoints]
            rows.append(stats_row("click: keypoint prompt -> updated mesh", image_name,
                                  time_clicks(state, engine, clicks, cold=False), BUDGET_CLICK_S))  # fmt: skip
            H.on_clear(state)
            clicks = [point_click(xy) for xy in points[args.clicks :]]
            rows.append(stats_row("baseline: same clicks, no session cache (full cold run)", image_name,
                                  time_clicks(state, engine, clicks, cold=True), None))  # fmt: skip
            state.cleanup()

    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"Machine: {machine_description()}; load average at the end {load}")
    print(f"Warm-up (models + one example through the handlers): {warm_s:.1f} s")
    print("Images: " + "; ".join(f"{k}: {v}" for k, v in IMAGES.items()))
    print()
    print(markdown_table(["scenario", "image", "n", "median ms", "p90 ms", "budget ms", "within"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
