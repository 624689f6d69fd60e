"""Input limits (pipelines.io.limits) and messages: bombs refused before decoding, corrupt files of every
format and malformed event values answered with one sentence, internal errors shown as an id sentence."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import cv2
import gradio as gr
import numpy as np
import pytest
from cli_helpers import error_lines, run_cli
from PIL import Image

from app.ui import handlers as H
from app.ui import multiview_handlers as MH
from app.ui import prompts as P
from app.ui import video_handlers as VH
from app.ui import video_prompts as VP
from app.ui.guard import GENERIC
from app.ui.state import UISession
from bench import hostile as HX
from bench.bench_video import PeakRss
from pipelines.errors import BadImageError, BadPromptError, UserFacingError
from pipelines.io import limits as L
from pipelines.io.image_io import decode_image_bytes, load_image
from pipelines.io.video_header import read_video_header
from pipelines.io.video_io import DecodeReport, probe, read_video
from pipelines.modes.multiview import check_inputs
from pipelines.multiview.formats import load_calibration
from pipelines.segmentation.prompts import validate_prompts
from pipelines.types import Prompts

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


def _one_sentence(msg: str, name: str) -> None:
    assert name in msg, msg
    assert "\n" not in msg and msg.endswith("."), msg
    assert not HX.raw_text_in(msg), msg


# ------------------------------------------------------------------------------------------ images


def test_bomb_header_of_each_format_is_refused_before_decoding() -> None:
    bombs = HX.image_bombs()
    assert set(L.IMAGE_FORMATS) <= set(bombs) and {"Radiance HDR", "PFM"} <= set(bombs)  # every format read
    for fmt, data in bombs.items():
        name = f"bomb_{fmt.replace(' ', '_')}.img"
        with PeakRss() as rss:
            t = time.perf_counter()
            with pytest.raises(BadImageError) as err:
                decode_image_bytes(data, name)
            elapsed_s = time.perf_counter() - t
            time.sleep(0.05)  # one more RSS sample
        msg = str(err.value)
        _one_sentence(msg, name)
        assert "too large" in msg and "megapixels" in msg, msg
        # Decoding 25 to 4000 megapixels would take seconds and hundreds of MB at least.
        assert elapsed_s < 0.5, (fmt, elapsed_s)
        assert rss.peak_mb - rss.start_mb < 40, (fmt, rss.peak_mb - rss.start_mb)


def test_radiance_hdr_bomb_through_the_upload_handler(tmp_path: Path) -> None:
    """The issue's case: a 6 MB .hdr claiming 10000x10000 cost +2.3 GB before the check."""
    path = tmp_path / "sky.hdr"
    path.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 10000 +X 10000\n" + bytes(6_000_000))
    with PeakRss() as rss, pytest.raises(gr.Error) as err:
        H.on_upload(UISession(session_id="t-hdr"), str(path))
    assert "sky.hdr is too large: 10000x10000 pixels" in err.value.message
    assert rss.peak_mb - rss.start_mb < 60  # the 6 MB file is read once; nothing is decoded


def test_small_radiance_hdr_is_read() -> None:
    ok, buf = cv2.imencode(".hdr", np.full((40, 50, 3), 0.5, np.float32))
    assert ok
    out = decode_image_bytes(buf.tobytes(), "ok.hdr")
    assert out.rgb_hw3.shape == (40, 50, 3) and out.rgb_hw3.dtype == np.uint8


def _pillow_says(data: bytes) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            im.load()
    except Exception as err:  # noqa: BLE001
        return str(err)
    return None


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's "Corrupt EXIF data" notes (server side only)
def test_corrupt_file_of_each_format_gives_a_sentence_without_pillow_text() -> None:
    rng = np.random.default_rng(3)
    valid = HX.valid_images()
    assert {"PPM", "EPS", "IM", "BLP", "DDS", "QOI", "SGI", "JPEG", "PNG", "TIFF"} <= set(valid)
    refused = 0
    for fmt, data in valid.items():
        for what, bad in HX.corrupt_variants(data, rng, 12):
            name = f"photo_{fmt.lower()}.bin"
            try:
                decode_image_bytes(bad, name)
            except BadImageError as err:
                refused += 1
                msg = str(err)
                _one_sentence(msg, name)
                assert not HX.raw_text_in(msg, _pillow_says(bad)), (fmt, what, msg)
    assert refused > 0.8 * 12 * len(valid)
    # The example: Pillow says "maxval must be greater than 0 and less than 65536".
    with pytest.raises(BadImageError) as err:
        decode_image_bytes(b"P6\n64 64\n0\n" + bytes(64), "scan.ppm")
    assert str(err.value) == "The image scan.ppm (PPM) is damaged: its header cannot be read."


def test_other_formats_are_named_and_refused_by_content(tmp_path: Path) -> None:
    path = tmp_path / "holiday.jpg"  # a DDS file named .jpg: the content decides
    path.write_bytes(HX.valid_images()["DDS"])
    with pytest.raises(BadImageError, match=r"holiday\.jpg is in the DDS format, which this app does not read"):
        load_image(path)


def test_image_file_size_is_checked_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    with open(path, "wb") as f:  # sparse: no disk used
        f.truncate(L.MAX_IMAGE_BYTES + 10 * L.MiB)
    with pytest.raises(BadImageError, match=r"The image .*huge\.png is 170 MB; the limit is 160 MB\."):
        load_image(path)


# ------------------------------------------------------------------------------------------ videos


@pytest.mark.parametrize(("data", "suffix", "expected"), [
    (HX.mp4_claiming(16384, 16384, 100, 4.0), ".mp4", "is 16384x16384 pixels; the limit is 4096 pixels"),
    (HX.mp4_claiming(640, 480, 10**9, 10.0), ".mp4", "has 1000000000 frames; the limit is 216000"),
    (HX.mp4_claiming(640, 480, 100, 360000.0), ".mp4", "is 6000 min long; the limit is 60 min"),
    (HX.avi_claiming(65535, 65535, 10), ".avi", "is 65535x65535 pixels"),
    (HX.mkv_claiming(30000, 30000, 2.0), ".webm", "is 30000x30000 pixels"),
    (HX.mkv_claiming(320, 240, 360000.0), ".webm", "is 6000 min long"),
    (HX.mkv_claiming(320, 240, 2.0, nest=200), ".webm", "cannot be read: its Matroska/WebM header is damaged"),
    (b"this is a shopping list\n" * 40, ".mp4", "cannot be read: it is not in a container this app reads"),
], ids=["mp4-size", "mp4-frames", "mp4-duration", "avi-size", "webm-size", "webm-duration", "webm-nesting",
        "text"])  # fmt: skip
def test_video_header_limits_before_opencv_opens_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, data: bytes,
                                                    suffix: str, expected: str) -> None:  # fmt: skip
    path = tmp_path / f"clip{suffix}"
    path.write_bytes(data)

    def no_opencv(*args: object) -> None:
        raise AssertionError("OpenCV opened a video the header check should have refused")

    monkeypatch.setattr(cv2, "VideoCapture", no_opencv)
    with pytest.raises(UserFacingError) as err:
        probe(path)
    _one_sentence(str(err.value), "clip")
    assert expected in str(err.value)


def test_real_video_headers_match_opencv(tmp_path: Path) -> None:
    clips = [EXAMPLES / "dancer.mp4", EXAMPLES / "multiview" / "cam03.mp4"]
    for suffix, fourcc in ((".avi", "MJPG"), (".mkv", "MJPG")):
        path = tmp_path / f"made{suffix}"
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (96, 64))
        for i in range(7):
            writer.write(np.full((64, 96, 3), 30 * i, np.uint8))
        writer.release()
        clips.append(path)
    for clip in clips:
        header, info = read_video_header(clip), probe(clip)
        assert (header.width, header.height) == (info.width, info.height), clip
        assert header.frame_count == info.frame_count, clip
        assert header.duration_s == pytest.approx(info.frame_count / info.fps, abs=0.05), clip


def test_video_tab_refuses_a_header_bomb(tmp_path: Path) -> None:
    path = tmp_path / "huge.mp4"
    path.write_bytes(HX.mp4_claiming(16384, 16384, 100, 4.0))
    with pytest.raises(gr.Error, match=r"huge\.mp4 is 16384x16384 pixels"):
        VP.on_show_frame(VP.VideoPromptState(), str(path), 0)


# ----------------------------------------------------------------- calibration, prompts and views


def test_calibration_limits_and_damage_give_a_sentence(tmp_path: Path) -> None:
    big = tmp_path / "calibration.json"
    big.write_bytes(b" " * (2 * L.MAX_CALIBRATION_BYTES) + b"{}")
    with pytest.raises(UserFacingError, match=r"calibration file calibration\.json is 2 MB; the limit is 1 MB"):
        load_calibration(big)
    deep = tmp_path / "deep.json"
    deep.write_bytes(b"[" * 100_000 + b"]" * 100_000)  # json's RecursionError must not show
    with pytest.raises(UserFacingError) as err:
        load_calibration(deep)
    _one_sentence(str(err.value), "deep.json")
    wrong = tmp_path / "Calib.qca.txt"
    wrong.write_text("<calibration><cameras><camera serial='1'/></cameras></calibration>")
    with pytest.raises(UserFacingError) as err:
        load_calibration(wrong)
    _one_sentence(str(err.value), "Calib.qca.txt")


def test_prompt_and_view_counts(tmp_path: Path) -> None:
    many = Prompts(points_n3=np.tile([[10.0, 10.0, 1.0]], (L.MAX_IMAGE_PROMPTS + 1, 1)))
    with pytest.raises(BadPromptError, match=f"{L.MAX_IMAGE_PROMPTS + 1} prompts were given; the limit is 64"):
        validate_prompts(many, 100, 100)
    history = P.PromptHistory()
    for i in range(L.MAX_IMAGE_PROMPTS):
        history = P.add_click(history, "positive", float(i % 100), 1.0, 100, 100)
    with pytest.raises(BadPromptError, match="already 64 prompts, the limit"):
        P.add_click(history, "positive", 5, 5, 100, 100)
    videos = [tmp_path / f"cam{i}.mp4" for i in range(L.MAX_VIEWS + 1)]
    with pytest.raises(UserFacingError, match="9 videos were given; a multi-view run takes at most 8"):
        check_inputs(videos, tmp_path / "calibration.json")  # refused before any file is opened


# ------------------------------------------------------------------------------------------ events


@pytest.fixture(scope="module")
def photo() -> Iterator[UISession]:
    state = UISession(session_id="t-events")
    H.on_upload(state, str(EXAMPLES / "astronaut.png"))
    yield state
    state.cleanup()


def test_malformed_event_payloads_get_a_sentence(photo: UISession) -> None:
    """Crafted events gave "cannot unpack non-iterable int object", "unhashable type: 'list'"."""
    cases = [
        (H.on_example, (photo, HX.FakeSelect([0, 1])), "The example could not be read"),
        (H.on_example, (photo, HX.FakeSelect(7)), "There is no example number 7"),
        (H.on_example, (photo, "1"), "The example could not be read"),
        (H.on_click, (photo, ["positive"], None, 10, 10), "The click mode could not be read"),
        (H.on_click, (photo, "positive", None, [1, 2], 10), "The click position could not be read"),
        (H.on_click, (photo, "positive", None, float("nan"), 10), "The click position must be a finite number"),
        (H.on_click, (photo, "keypoint", {"a": 1}, 10, 10), "The joint could not be read"),
        (H.focal_from_fov, ("wide", 100), "The field of view could not be read"),
        (VH.parse_options, ([1], 0, None, 640, True, 2), "The frame stride could not be read"),
        (VH.parse_options, (1, 0, None, float("inf"), True, 2), "The maximum resolution must be a finite number"),
        (VP.on_show_frame, (VP.VideoPromptState(), str(EXAMPLES / "dancer.mp4"), "x"), "frame number"),
        (MH._paths, ([1, 2],), "one of them is not a file"),
    ]
    for fn, args, expected in cases:
        with pytest.raises(gr.Error) as err:
            out = fn(*args)
            list(out) if hasattr(out, "__next__") else None
        msg = err.value.message
        assert expected in msg, (fn.__name__, args, msg)
        assert not HX.raw_text_in(msg), msg
    with pytest.raises(gr.Error, match="segmentation backend"):
        list(H.run_latest(photo, None, {"segmentation": ["embedded"]}, engine=H.Engine(), force=True))


class _BrokenEngine:
    """An engine whose worker fails unexpectedly when a job takes it (the app's Engine.acquire)."""

    @contextlib.contextmanager
    def acquire(self, config: object) -> Iterator[None]:
        raise KeyError("internal detail 0x7f that must stay on the server")
        yield


def test_internal_error_is_logged_and_shown_as_an_id_sentence(photo: UISession,
                                                               caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    with caplog.at_level(logging.ERROR, logger="app.ui"), pytest.raises(gr.Error) as err:
        list(H.run_latest(photo, None, None, engine=_BrokenEngine(), force=True))  # type: ignore[arg-type]
    msg = err.value.message
    assert msg.startswith(GENERIC.split("{")[0]) and "internal detail" not in msg
    error_id = msg.split("(error ", 1)[1].split(")", 1)[0]
    assert len(error_id) == 8
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None and "internal detail" in logged[0].getMessage()


# ------------------------------------------------------------------------------------ the CLI, frames


def test_cli_refuses_bombs_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "sky.hdr"
    photo.write_bytes(HX.image_bombs()["Radiance HDR"])
    code, _, err = run_cli(["image", photo, "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(error_lines(err)) == 1 and "sky.hdr is too large" in error_lines(err)[0]
    video = tmp_path / "long.avi"
    video.write_bytes(HX.avi_claiming(320, 240, 10**9))
    code, _, err = run_cli(["video", video, "--out", tmp_path / "out2"], capsys)
    assert code == 2 and error_lines(err) == ["error: The video long.avi is 555550 min long; the limit is 60 min "
                                              "(cut it first)."]  # fmt: skip
    assert not (tmp_path / "out").exists() and not (tmp_path / "out2").exists()


def test_bomb_in_a_folder_of_frames_is_skipped_undecoded(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.new("RGB", (64, 48), (200, 10, 10)).save(folder / "frame_1.png")
    (folder / "frame_2.png").write_bytes(HX.image_bombs()["PNG"])
    Image.new("RGB", (64, 48), (10, 200, 10)).save(folder / "frame_3.png")
    report = DecodeReport()
    frames = list(read_video(probe(folder), report=report, prefetch=0))
    assert [f.index for f in frames] == [0, 2]
    assert any("frame_2.png is too large" in n and "Frame 1 skipped" in n for n in report.notes), report.notes
