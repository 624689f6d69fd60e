"""Image decoding: every bad input gives one plain BadImageError; conversions give upright RGB uint8."""

from __future__ import annotations

import io
import math
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from pipelines.errors import BadImageError, UserFacingError
from pipelines.io.image_io import decode_image_bytes, load_image


def _encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _noise_rgb(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with a tiny (invalid) body: costs nothing to make."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (
            struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def _assert_one_sentence(err: pytest.ExceptionInfo[BadImageError], name: str) -> str:
    msg = str(err.value)
    assert isinstance(err.value, UserFacingError)
    assert name in msg, msg
    assert "\n" not in msg and msg.endswith("."), msg
    return msg


# ------------------------------------------------------------------------------------ bad inputs


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(BadImageError) as err:
        load_image(tmp_path / "nope.jpg")
    assert "does not exist" in _assert_one_sentence(err, "nope.jpg")


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(BadImageError) as err:
        load_image(path)
    assert "empty" in _assert_one_sentence(err, "empty.jpg")


def test_text_renamed_jpg(tmp_path: Path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("this is a shopping list, not a photo\n" * 20)
    with pytest.raises(BadImageError) as err:
        load_image(path)
    assert "not an image" in _assert_one_sentence(err, "notes.jpg")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path: Path, fmt: str) -> None:
    data = _encode(Image.fromarray(_noise_rgb(200, 300)), fmt)
    path = tmp_path / f"half.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError) as err:
        load_image(path)
    assert "truncated" in _assert_one_sentence(err, path.name)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_real_photo(tmp_path: Path, lunge_path: Path) -> None:
    data = lunge_path.read_bytes()
    path = tmp_path / "lunge_half.jpg"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="truncated"):
        load_image(path)


def test_too_small(tmp_path: Path) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), (255, 0, 0)).save(path)
    with pytest.raises(BadImageError) as err:
        load_image(path)
    assert "is 1x1 pixels; need at least 32x32" in _assert_one_sentence(err, "dot.png")


def test_huge_image_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(20000, 20000))
    t0 = time.perf_counter()
    with pytest.raises(BadImageError) as err:
        load_image(path)
    assert time.perf_counter() - t0 < 1.0
    msg = _assert_one_sentence(err, "bomb.png")
    assert "too large" in msg and "400 megapixels" in msg and "50 megapixels" in msg


def test_over_limit_below_pillow_guard(tmp_path: Path) -> None:
    # 64 MP: under Pillow's own bomb limit (89 MP), over ours (50 MP).
    with pytest.raises(BadImageError) as err:
        decode_image_bytes(_png_header_only(8000, 8000), "big.png")
    msg = _assert_one_sentence(err, "big.png")
    assert "8000x8000" in msg and "50 megapixels" in msg


# ----------------------------------------------------------------------------------- conversions


def test_rgba_composited_on_white() -> None:
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:20, :, 3] = 255  # top half opaque red-ish, bottom half transparent
    out = decode_image_bytes(_encode(Image.fromarray(rgba, "RGBA"), "PNG"), "a.png")
    assert out.rgb_hw3.dtype == np.uint8 and out.rgb_hw3.shape == (40, 40, 3)
    assert tuple(out.rgb_hw3[5, 5]) == (200, 0, 0)
    assert tuple(out.rgb_hw3[35, 5]) == (255, 255, 255)
    assert any("transparen" in w for w in out.warnings)


@pytest.mark.parametrize("mode", ["L", "LA", "1", "P", "CMYK"])
def test_modes_become_rgb(mode: str) -> None:
    im = Image.fromarray(_noise_rgb()).convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    out = decode_image_bytes(_encode(im, fmt), f"x.{fmt.lower()}")
    assert out.rgb_hw3.dtype == np.uint8 and out.rgb_hw3.shape == (64, 80, 3)
    if mode in ("L", "LA"):
        expect = np.asarray(im.convert("L"))
        assert np.array_equal(out.rgb_hw3[..., 0], expect) and np.array_equal(out.rgb_hw3[..., 2], expect)


def test_grayscale_16bit_png_scaled() -> None:
    gray = np.zeros((40, 50), dtype=np.uint16)
    gray[:, 25:] = 65535
    gray[:10] = 32896  # 128 * 257
    ok, buf = cv2.imencode(".png", gray)
    assert ok
    out = decode_image_bytes(buf.tobytes(), "g16.png")
    assert out.rgb_hw3.dtype == np.uint8 and out.rgb_hw3.shape == (40, 50, 3)
    assert tuple(out.rgb_hw3[20, 0]) == (0, 0, 0)
    assert tuple(out.rgb_hw3[20, 40]) == (255, 255, 255)
    assert out.rgb_hw3[5, 5, 0] == 128
    assert any("16 bits" in w for w in out.warnings)


def test_rgb_48bit_png() -> None:
    rgb16 = np.zeros((40, 50, 3), dtype=np.uint16)
    rgb16[..., 0] = 65535  # red in RGB order
    ok, buf = cv2.imencode(".png", rgb16[..., ::-1].copy())  # cv2 wants BGR
    assert ok
    out = decode_image_bytes(buf.tobytes(), "c48.png")
    assert tuple(out.rgb_hw3[3, 3]) == (255, 0, 0)


def test_large_image_kept_with_warning() -> None:
    im = Image.new("RGB", (4100, 40), (10, 20, 30))
    out = decode_image_bytes(_encode(im, "PNG"), "wide.png")
    assert out.rgb_hw3.shape == (40, 4100, 3)
    assert any("large" in w for w in out.warnings)


def test_exif_orientation_applied(tmp_path: Path) -> None:
    stored = np.zeros((40, 64, 3), dtype=np.uint8)  # stored landscape: left half red, right half blue
    stored[:, :32] = (255, 0, 0)
    stored[:, 32:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rot.jpg"
    Image.fromarray(stored).save(path, "JPEG", exif=exif, quality=95)
    out = load_image(path)
    assert out.rgb_hw3.shape == (64, 40, 3)  # upright: portrait
    top, bottom = out.rgb_hw3[10, 20].astype(int), out.rgb_hw3[54, 20].astype(int)
    assert top[0] > 200 and top[2] < 60  # stored left column is now the top row
    assert bottom[2] > 200 and bottom[0] < 60


def test_exif_focal_from_35mm_equivalent() -> None:
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 26  # FocalLengthIn35mmFilm
    exif[0x0112] = 6
    out = decode_image_bytes(_encode(Image.fromarray(_noise_rgb(48, 64)), "JPEG", exif=exif), "f35.jpg")
    expected = 26 * math.hypot(64, 48) / math.hypot(36, 24)
    assert out.exif_focal_px == pytest.approx(expected, rel=1e-6)
    assert out.rgb_hw3.shape == (64, 48, 3)
    assert out.exif_note is not None and "35 mm" in out.exif_note


def test_exif_focal_from_focal_plane_resolution_resized() -> None:
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[0x920A] = 4.25  # FocalLength, mm
    ifd[0xA20E] = 1000 / 1.4  # FocalPlaneXResolution: 1.4 um pixels, per mm
    ifd[0xA210] = 4  # unit: mm
    ifd[0xA002] = 4032  # the camera wrote 4032x3024; this file is 64x48
    ifd[0xA003] = 3024
    out = decode_image_bytes(_encode(Image.fromarray(_noise_rgb(48, 64)), "JPEG", exif=exif), "fp.jpg")
    expected = 4.25 * (1000 / 1.4) * 64 / 4032
    assert out.exif_focal_px == pytest.approx(expected, rel=1e-3)


def test_exif_focal_plane_resolution_in_inches() -> None:
    exif = Image.Exif()
    ifd = exif.get_ifd(0x8769)
    ifd[0x920A] = 10.0
    ifd[0xA20E] = 2540.0  # pixels per inch = 100 px/mm
    ifd[0xA210] = 2
    out = decode_image_bytes(_encode(Image.fromarray(_noise_rgb(480, 640)), "JPEG", exif=exif), "inch.jpg")
    assert out.exif_focal_px == pytest.approx(1000.0, rel=1e-3)


def test_no_exif() -> None:
    out = decode_image_bytes(_encode(Image.fromarray(_noise_rgb()), "PNG"), "plain.png")
    assert out.exif_focal_px is None and out.exif_note
    assert out.path == "plain.png" and out.width == 80 and out.height == 64


def test_real_photo(lunge_path: Path) -> None:
    out = load_image(lunge_path)
    assert out.rgb_hw3.shape == (1200, 801, 3) and out.rgb_hw3.dtype == np.uint8
    assert out.path == str(lunge_path)
