"""One real browser session: Debian's chromium (headless, WebGL through SwiftShader) drives the page.

It starts the app (`python -m app.main`) on a free port, uploads a real photo, and right after the
first result clicks three positive points 150 ms apart and presses Undo, as a quick user does. Every
click must count exactly once, with no retry: the prompt status, the overlay, the shown mesh's status
and the downloaded result.json all say 2 positive points. Then Run re-runs, the viewer is checked on
its screenshot (the 3D view shows the mesh: many pixels of the person's colour, lit) and the page
shows no error. The screenshot is kept in tests/artifacts/playground.png; with
UPDATE_README_SCREENSHOT=1 the full page is also saved as assets/screenshot_playground.png. Nothing is
downloaded: chromium comes from apt-get.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[1]

def _find_chromium() -> Path:
    """$CHROMIUM if set, else the first chromium on PATH (Debian: chromium; Ubuntu: chromium-browser)."""
    if os.environ.get("CHROMIUM"):
        return Path(os.environ["CHROMIUM"])
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return Path(found)
    return Path("/usr/bin/chromium")


CHROMIUM = _find_chromium()
ARTIFACTS = REPO / "tests" / "artifacts"
PHOTO = REPO / "assets" / "examples" / "lunge.jpg"
README_SHOT = REPO / "assets" / "screenshot_playground.png"
README_VIDEO_SHOT = REPO / "assets" / "screenshot_video_tab.png"
# SwiftShader's WebGL stays on: no --disable-gpu, --use-gl=swiftshader or --enable-unsafe-webgpu.
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
]
MESH_RGB = (66, 135, 245)  # viz.export.person_color(0)
START_TIMEOUT_S = 240  # the app warms its models up before it serves; slow when the machine is busy
RUN_TIMEOUT_MS = 180_000  # generous: SwiftShader shares the 2 cores with the pipeline
UPLOAD_INPUT = 'input[type=file][data-testid$="upload-button"]'  # the hidden input of the upload button

if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium, or set CHROMIUM)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The app in a subprocess, exactly as the README starts it, on a free port."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.main", "--port", str(port)],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the app exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                log_tail = log_path.read_text()[-3000:]
                pytest.fail(f"the app did not answer on {url} within {START_TIMEOUT_S} s:\n{log_tail}")
            time.sleep(0.5)
        startup = log_path.read_text()  # the models are warm: MediaPipe / TFLite have loaded
        assert "Warm-up done" in startup, startup[-3000:]
        assert "W0000" not in startup and "XNNPACK" not in startup, f"native log lines in the terminal:\n{startup}"
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def mesh_pixels(view_bgr: np.ndarray) -> np.ndarray:
    """Pixels of the person's colour, lit (hue of MESH_RGB, saturated and bright)."""
    hsv = cv2.cvtColor(view_bgr, cv2.COLOR_BGR2HSV)
    hue_deg = hsv[..., 0].astype(int) * 2
    target = int(cv2.cvtColor(np.uint8([[MESH_RGB[::-1]]]), cv2.COLOR_BGR2HSV)[0, 0, 0]) * 2
    return (np.abs(hue_deg - target) <= 14) & (hsv[..., 1] > 140) & (hsv[..., 2] > 140)


def largest_blob(mask_hw: np.ndarray) -> int:
    """Area in pixels of the largest 8-connected blob of `mask_hw`."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask_hw.astype(np.uint8), connectivity=8)
    return int(stats[1:, cv2.CC_STAT_AREA].max()) if n > 1 else 0


def click_on_photo(page, u: float, v: float) -> None:  # noqa: ANN001 - playwright Page
    """Click at fraction (u, v) of the photo in the canvas (its box has the photo's aspect ratio).

    Playwright waits until the canvas really receives the click: while the page still loads its
    components (the Rerun viewer's wasm), Gradio lays a translucent loading cover over the whole page."""
    canvas = page.locator("#canvas .pc")
    box = canvas.bounding_box(timeout=RUN_TIMEOUT_MS)
    assert box is not None and box["width"] > 0 and box["height"] > 0, f"canvas not laid out: {box}"
    canvas.click(position={"x": u * box["width"], "y": v * box["height"]}, timeout=RUN_TIMEOUT_MS)


def wait_status(page, *needles: str, changed_from: str | None = None, box: str = "#status") -> str:  # noqa: ANN001
    """Wait until the status box `box` holds every needle (and differs from `changed_from`); return the
    text that matched (the run status keeps streaming, so it is not read again afterwards)."""
    try:
        handle = page.wait_for_function(
            "([needles, old, sel]) => { const t = document.querySelector(sel)?.innerText ?? '';"
            " return t !== old && needles.every(n => t.includes(n)) ? t : null; }",
            arg=[list(needles), changed_from, box],
            timeout=RUN_TIMEOUT_MS,
        )
        return str(handle.json_value())
    except sync_api.TimeoutError:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "playground-timeout.png"), full_page=True)
        status = page.locator(box).inner_text()
        pytest.fail(f"{box} never showed {needles}; it says {status!r}; see {ARTIFACTS / 'playground-timeout.png'}")


def test_upload_click_run_shows_the_mesh(app_url: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "playground.png"
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh user-data-dir
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1600, "height": 1250},
        )
        context.set_default_timeout(RUN_TIMEOUT_MS)  # every wait: the page may share a busy CPU
        try:
            page = context.new_page()
            page.goto(app_url, wait_until="domcontentloaded")
            page.wait_for_selector(UPLOAD_INPUT, state="attached", timeout=RUN_TIMEOUT_MS)
            page.wait_for_timeout(1500)  # let the Rerun viewer's wasm start

            # Upload a real photo: the page runs it at once (first result).
            page.locator(UPLOAD_INPUT).set_input_files(str(PHOTO))
            page.wait_for_selector("#canvas .pc", timeout=RUN_TIMEOUT_MS)
            wait_status(page, "Done", "m tall")

            # Right after it, three quick positive points on the person's back (150 ms apart), then Undo.
            rev0 = int(page.locator("#canvas .pc").get_attribute("data-rev"))
            for u, v in ((0.60, 0.64), (0.57, 0.58), (0.62, 0.70)):
                click_on_photo(page, u, v)
                page.wait_for_timeout(150)
            page.locator("#undo").click()
            # Each edit counts once (4 edits: 4 revisions), and the result shown is the one of the last edit.
            try:
                page.wait_for_function(
                    "(rev) => document.querySelector(`#status .shown-rev.rev-${rev}`) !== null",
                    arg=rev0 + 4,
                    timeout=RUN_TIMEOUT_MS,
                )
            except sync_api.TimeoutError:
                page.screenshot(path=str(ARTIFACTS / "playground-timeout.png"), full_page=True)
                pytest.fail(
                    f"no result for revision {rev0 + 4}: canvas at revision "
                    f"{page.locator('#canvas .pc').get_attribute('data-rev')}, prompt status "
                    f"{page.locator('#prompt-status').inner_text()!r}, "
                    f"run status {page.locator('#status').inner_html()!r}"
                )
            assert page.locator("#canvas .pc").get_attribute("data-rev") == str(rev0 + 4)
            assert "Prompts: 2 positive." in page.locator("#prompt-status").inner_text()
            assert page.locator("#canvas circle.pos").count() == 2
            before = page.locator("#status").inner_text()
            assert "Prompts used: 2 positive." in before and "with a body" in before and "newer" not in before
            page.wait_for_selector("#downloads a", timeout=RUN_TIMEOUT_MS)
            hrefs = page.eval_on_selector_all("#downloads a", "els => els.map(a => a.href)")
            [result_url] = [h for h in hrefs if h.split("?")[0].endswith("result.json")]
            result = page.request.get(result_url).json()
            assert len(result["prompts"]["points"]) == 2 and result["people"][0]["height_m"] > 1.0

            # Run again with the same prompts (e.g. after changing the camera): a new result streams in.
            page.locator("#run").click()
            wait_status(page, "Done", "Prompts used: 2 positive.", "m tall", changed_from=before)

            # The viewer renders in software: poll until the mesh is on screen.
            viewer = page.locator("#viewer")
            found, view = 0, None
            for _ in range(6):
                page.wait_for_timeout(2000)
                viewer.screenshot(path=str(shot))
                view = cv2.imread(str(shot))
                h, w = view.shape[:2]
                split = int(w * 3 / 5)  # the blueprint puts the 3D view on the left 3/5
                # The mesh is one large lit blob of the person's colour in the 3D view; without it the
                # 3D view only holds the mask on the small image plane of the frustum (0.5 m away).
                found = largest_blob(mesh_pixels(view[:, :split]))
                if found >= 2500:
                    break
            else:
                pytest.fail(f"no mesh in the 3D view (largest mesh-coloured blob: {found} px); see {shot}")

            errors = page.locator(".toast-body.error")
            assert errors.count() == 0, errors.all_inner_texts()
            assert "Error" not in page.locator("#status").inner_text()
            if os.environ.get("UPDATE_README_SCREENSHOT") == "1":
                page.screenshot(path=str(README_SHOT), full_page=True)
        finally:
            context.close()
            shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def test_video_tab_example_run_streams_and_offers_downloads(app_url: str, tmp_path: Path) -> None:
    """The Video tab: pick the example clip, Run (every 20th frame: 5 frames), the status says Done with
    one tracked person, the streamed viewer shows the mesh, and the downloaded tracks.json holds the 5 frames."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "playground-video.png"
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000},  # smaller than the photo test's: software rendering
        )  # fmt: skip
        context.set_default_timeout(RUN_TIMEOUT_MS)
        try:
            page = context.new_page()
            page.goto(app_url, wait_until="domcontentloaded")
            page.get_by_role("tab", name="Video").click()
            page.locator("#video-example").click()
            page.wait_for_selector("#video-upload a", timeout=RUN_TIMEOUT_MS)  # the example is the input file
            stride = page.locator("#video-tab input[type=number]").first
            stride.fill("20")
            page.locator("#video-run").click()
            text = wait_status(page, "Done", "5 frames of dancer.mp4", "person 0", box="#video-status")
            assert "Nobody" not in text and "Error" not in text
            page.wait_for_selector("#video-downloads a", timeout=RUN_TIMEOUT_MS)
            hrefs = page.eval_on_selector_all("#video-downloads a", "els => els.map(a => a.href)")
            [tracks_url] = [h for h in hrefs if h.split("?")[0].endswith("tracks.json")]
            with urllib.request.urlopen(tracks_url, timeout=30) as r:
                doc = json.loads(r.read())
            assert doc["frames"] == list(range(0, 100, 20)) and doc["tracks"][0]["frames"] == doc["frames"]
            assert any(h.split("?")[0].endswith("result.rrd") for h in hrefs)
            found = 0
            for _ in range(3):  # the viewer renders in software: poll until the streamed mesh is on screen
                page.wait_for_timeout(2000)
                page.locator("#video-viewer").screenshot(path=str(shot))
                found = largest_blob(mesh_pixels(cv2.imread(str(shot))))
                if found >= 1500:
                    break
            else:
                pytest.fail(f"no mesh in the Video tab's viewer (largest mesh-coloured blob: {found} px); see {shot}")
            errors = page.locator(".toast-body.error")
            assert errors.count() == 0, errors.all_inner_texts()
            if os.environ.get("UPDATE_README_SCREENSHOT") == "1":
                page.screenshot(path=str(README_VIDEO_SHOT), full_page=True)
        finally:
            context.close()
            shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)
