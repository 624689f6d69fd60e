"""Hostile inputs for the fuzz bench and the limit tests: decompression-bomb headers, corrupt files of every
format Pillow writes, hostile video containers and calibration files, and malformed event values.

Everything is made here from tiny encodes or by hand (no data files), deterministically from a seed.
Bombs are small files whose header announces a huge picture; a reader that trusts the header before
checking it would allocate gigabytes.
"""

from __future__ import annotations

import functools
import io
import json
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

RAW_MARKERS = ("Traceback", "Errno", "errno", "NoneType", "unpack", "unhashable", "not iterable", "object has no",
               "invalid literal", "maxval", "cannot identify", "struct.error", "unsupported operand",
               "codec can't", "Expecting value", "line 1 column", "KeyError", "IndexError", "index out of range",
               "TypeError", "ValueError", "OSError", "cv2.error", "Assertion", "<class ", "0x7f")  # fmt: skip
"""Pieces of text that only a raw exception message (Python's, Pillow's, OpenCV's, a parser's) contains."""


def raw_text_in(message: str, library_message: str | None = None) -> bool:
    """True when `message` shows raw exception text: a RAW_MARKERS piece, or the library's own message."""
    if any(m in message for m in RAW_MARKERS):
        return True
    lib = (library_message or "").strip()
    return len(lib) >= 8 and lib in message


# ------------------------------------------------------------------------------------------ images


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _encode(fmt: str, size: tuple[int, int] = (48, 40), mode: str = "RGB", **kwargs: object) -> bytes:
    rgb = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    im = Image.fromarray(rgb).convert(mode)
    buf = io.BytesIO()
    im.save(buf, fmt, **kwargs)
    return buf.getvalue()


def _jpeg_bomb(w: int, h: int) -> bytes:
    data = bytearray(_encode("JPEG"))
    at = data.find(b"\xff\xc0")  # SOF0: length (2), precision (1), height (2), width (2)
    struct.pack_into(">HH", data, at + 5, h, w)
    return bytes(data)


def _tiff_bomb(w: int, h: int) -> bytes:
    entries = [(256, 4, 1, w), (257, 4, 1, h), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 200),
               (277, 3, 1, 1), (278, 4, 1, h), (279, 4, 1, w * h)]  # fmt: skip
    ifd = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHI", tag, kind, n) + (struct.pack("<HH", v, 0) if kind == 3 else struct.pack("<I", v))
        for tag, kind, n, v in entries) + b"\0\0\0\0"  # fmt: skip
    head = b"II*\0" + struct.pack("<I", 8) + ifd
    return head + b"\0" * (400 - len(head))


def _gif_bomb(w: int, h: int) -> bytes:
    screen = b"GIF89a" + struct.pack("<HHBBB", w, h, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    descriptor = b"," + struct.pack("<HHHHB", 0, 0, w, h, 0)
    return screen + descriptor + b"\x02\x02\x44\x01\x00;"


def _bmp_bomb(w: int, h: int) -> bytes:
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 2835, 2835, 0, 0)
    return b"BM" + struct.pack("<IHHI", 54 + 64, 0, 0, 54) + info + b"\0" * 64


def _webp_bomb(w: int, h: int) -> bytes:
    data = bytearray(_encode("WEBP", lossless=True))
    at = data.find(b"VP8L") + 9  # after the chunk header and the 0x2f signature: 14-bit width-1, height-1
    bits = struct.unpack_from("<I", data, at)[0]
    struct.pack_into("<I", data, at, (bits & ~((1 << 28) - 1)) | (w - 1) | ((h - 1) << 14))
    return bytes(data)


def _avif_bomb(w: int, h: int) -> bytes | None:
    try:
        data = bytearray(_encode("AVIF"))
    except Exception:  # noqa: BLE001 - this Pillow has no AVIF writer
        return None
    at = data.find(b"ispe")  # the image spatial extents property: version/flags, width, height
    if at < 0:
        return None
    struct.pack_into(">II", data, at + 8, w, h)
    return bytes(data)


@functools.cache
def image_bombs() -> dict[str, bytes]:
    """Format -> a small file whose header announces far more pixels than the limit (one per format read)."""
    bombs = {
        "JPEG": _jpeg_bomb(60000, 60000),
        "PNG": struct.pack(">8s", b"\x89PNG\r\n\x1a\n") + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 9000, 9000, 8, 2,
                                                                                            0, 0, 0))
        + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""),
        "WEBP": _webp_bomb(16384, 16384),
        "TIFF": _tiff_bomb(60000, 60000),
        "BMP": _bmp_bomb(30000, 30000),
        "GIF": _gif_bomb(65535, 65535),
        "PPM": b"P6\n20000 20000\n255\n" + b"\0" * 256,
        "PFM": b"Pf\n5000 5000\n-1.0\n" + b"\0" * 256,
        "Radiance HDR": b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 10000 +X 10000\n" + b"\x02\x02" * 4096,
    }  # fmt: skip
    avif = _avif_bomb(10000, 6000)
    if avif is not None:
        bombs["AVIF"] = avif
    return bombs


PILLOW_WRITABLE: dict[str, tuple[str, dict[str, object]]] = {
    "BMP": ("RGB", {}), "DDS": ("RGB", {}), "EPS": ("RGB", {}), "GIF": ("P", {}), "ICNS": ("RGB", {}),
    "ICO": ("RGB", {}), "IM": ("RGB", {}), "JPEG": ("RGB", {}), "JPEG2000": ("RGB", {}), "MSP": ("1", {}),
    "PCX": ("RGB", {}), "PNG": ("RGB", {}), "PPM": ("RGB", {}), "QOI": ("RGB", {}), "SGI": ("RGB", {}),
    "SPIDER": ("F", {}), "TGA": ("RGB", {}), "TIFF": ("RGB", {}), "WEBP": ("RGB", {}), "XBM": ("1", {}),
    "BLP": ("P", {}), "AVIF": ("RGB", {}), "PDF": ("RGB", {}),
}  # fmt: skip
"""Formats Pillow writes here (mode to write them in): sources of corrupt files."""


@functools.cache
def valid_images() -> dict[str, bytes]:
    """Format -> a small valid file of it (formats this Pillow cannot write are left out)."""
    out = {}
    for fmt, (mode, kwargs) in PILLOW_WRITABLE.items():
        try:
            out[fmt] = _encode(fmt, mode=mode, **kwargs)
        except Exception:  # noqa: BLE001,S112 - not writable with this Pillow build
            continue
    return out


def corrupt_variants(data: bytes, rng: np.random.Generator, n: int) -> Iterator[tuple[str, bytes]]:
    """`n` damaged copies of an encoded file: cut, header bytes flipped, zeroed or maxed, junk appended."""
    size = len(data)
    for _ in range(n):
        kind = int(rng.integers(5))
        if kind == 0:
            cut = int(rng.integers(1, max(2, min(size, 64))))
            yield f"cut@{cut}", data[:cut]
        elif kind == 1:
            cut = int(rng.integers(size // 4, max(size // 4 + 1, size - 1)))
            yield f"cut@{cut}", data[:cut]
        elif kind == 2:
            buf = bytearray(data)
            for at in rng.integers(0, min(size, 48), 3):
                buf[at] ^= int(rng.integers(1, 256))
            yield "header flipped", bytes(buf)
        elif kind == 3:
            buf = bytearray(data)
            at = int(rng.integers(2, max(3, min(size - 4, 40))))
            buf[at: at + 4] = (b"\0\0\0\0", b"\xff\xff\xff\xff")[int(rng.integers(0, 2))]
            yield f"field@{at}", bytes(buf)
        else:
            buf = bytearray(data)
            start = int(rng.integers(0, size))
            buf[start:] = rng.integers(0, 256, size - start, dtype=np.uint8).tobytes()
            yield f"random from {start}", bytes(buf)


# ------------------------------------------------------------------------------------------ videos


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def mp4_claiming(width: int, height: int, samples: int, duration_s: float) -> bytes:
    """An MP4 holding only a header: one video track announcing width x height and `samples` frames."""
    mvhd = _box(b"mvhd", b"\0" * 12 + struct.pack(">II", 1000, int(duration_s * 1000)) + b"\0" * 80)
    tkhd = _box(b"tkhd", b"\0" * 76 + struct.pack(">II", width << 16, height << 16))
    hdlr = _box(b"hdlr", b"\0" * 8 + b"vide" + b"\0" * 12)
    entry = struct.pack(">I4s", 86, b"avc1") + b"\0" * 24 + struct.pack(">HH", min(width, 65535),
                                                                          min(height, 65535)) + b"\0" * 50  # fmt: skip
    stsd = _box(b"stsd", b"\0" * 4 + struct.pack(">I", 1) + entry)
    stsz = _box(b"stsz", b"\0" * 4 + struct.pack(">II", 0, samples))
    stbl = _box(b"stbl", stsd + stsz)
    trak = _box(b"trak", tkhd + _box(b"mdia", hdlr + _box(b"minf", stbl)))
    return _box(b"ftyp", b"isom\0\0\0\0isom") + _box(b"moov", mvhd + trak) + _box(b"mdat", b"\0" * 64)


def avi_claiming(width: int, height: int, frames: int) -> bytes:
    """An AVI header announcing width x height and `frames` frames at 30 frames/s."""
    avih = struct.pack("<4sI", b"avih", 56) + struct.pack("<14I", 33333, 0, 0, 0, frames, 0, 1, 0, width, height,
                                                          0, 0, 0, 0)  # fmt: skip
    hdrl = b"hdrl" + avih
    riff = b"AVI " + struct.pack("<4sI", b"LIST", len(hdrl)) + hdrl + struct.pack("<4sI4s", b"LIST", 4, b"movi")
    return b"RIFF" + struct.pack("<I", len(riff)) + riff


def _ebml(eid: int, payload: bytes) -> bytes:
    n = len(payload)
    return eid.to_bytes((eid.bit_length() + 7) // 8, "big") + (0x01 << 56 | n).to_bytes(8, "big") + payload


def mkv_claiming(width: int, height: int, duration_s: float, nest: int = 0) -> bytes:
    """A Matroska header announcing one video track of width x height lasting `duration_s`; `nest` wraps
    the tracks in that many extra Segment elements (deep nesting)."""
    info = _ebml(0x1549A966, _ebml(0x2AD7B1, (1_000_000).to_bytes(3, "big"))
                 + _ebml(0x4489, struct.pack(">d", duration_s * 1000)))  # fmt: skip
    video = _ebml(0xE0, _ebml(0xB0, width.to_bytes(4, "big")) + _ebml(0xBA, height.to_bytes(4, "big")))
    track = _ebml(0xAE, _ebml(0x83, b"\x01") + _ebml(0x23E383, (33_333_333).to_bytes(4, "big")) + video)
    body = info + _ebml(0x1654AE6B, track)
    for _ in range(nest):
        body = _ebml(0x18538067, body)
    return _ebml(0x1A45DFA3, _ebml(0x4282, b"webm")) + _ebml(0x18538067, body)


def hostile_videos(real: bytes, rng: np.random.Generator, n: int) -> Iterator[tuple[str, str, bytes]]:
    """(what, file suffix, bytes) of hostile videos: header bombs, cut and damaged copies of `real` (an MP4)."""
    fixed: list[tuple[str, str, bytes]] = [
        ("mp4 claims 16384x16384", ".mp4", mp4_claiming(16384, 16384, 100, 4.0)),
        ("mp4 claims 10^9 frames", ".mp4", mp4_claiming(640, 480, 10**9, 10.0)),
        ("mp4 claims 100 h", ".mp4", mp4_claiming(640, 480, 100, 360000.0)),
        ("avi claims 100000x100000", ".avi", avi_claiming(65535, 65535, 10)),
        ("avi claims 10^9 frames", ".avi", avi_claiming(320, 240, 10**9)),
        ("webm claims 30000x30000", ".webm", mkv_claiming(30000, 30000, 2.0)),
        ("webm claims 100 h", ".webm", mkv_claiming(320, 240, 360000.0)),
        ("webm nested 200 deep", ".webm", mkv_claiming(320, 240, 2.0, nest=200)),
        ("empty", ".mp4", b""),
        ("text", ".mp4", b"this is not a video\n" * 50),
        ("jpeg named .mp4", ".mp4", _encode("JPEG")),
        ("moov box of 4 GB", ".mp4", _box(b"ftyp", b"isom\0\0\0\0") + struct.pack(">I4sQ", 1, b"moov", 1 << 32)),
    ]  # fmt: skip
    yield from fixed
    for i in range(max(0, n - len(fixed))):
        kind = i % 4
        if kind == 0:
            cut = int(rng.integers(8, len(real)))
            yield f"cut@{cut}", ".mp4", real[:cut]
        elif kind == 1:
            buf = bytearray(real)
            for at in rng.integers(0, min(len(real), 4096), 8):
                buf[at] ^= int(rng.integers(1, 256))
            yield "header flipped", ".mp4", bytes(buf)
        elif kind == 2:
            yield "random bytes", (".mp4", ".avi", ".webm")[i % 3], rng.integers(0, 256, int(rng.integers(16, 20000)),
                                                                                 dtype=np.uint8).tobytes()  # fmt: skip
        else:
            head = (b"\0\0\0\x18ftypisom", b"RIFF\0\0\0\0AVI ", b"\x1a\x45\xdf\xa3")[i % 3]
            body = rng.integers(0, 256, int(rng.integers(16, 4000)), dtype=np.uint8).tobytes()
            yield "magic + random", (".mp4", ".avi", ".webm")[i % 3], head + body


# ------------------------------------------------------------------------------------- calibration


def hostile_calibrations(valid: dict[str, bytes], rng: np.random.Generator, n: int
                         ) -> Iterator[tuple[str, str, bytes]]:  # fmt: skip
    """(what, file name, bytes) of hostile calibration files, from `valid` (file name -> valid content)."""
    doc = json.loads(valid["calibration.json"]) if "calibration.json" in valid else {}
    fixed = [
        ("json too large", "calibration.json", b" " * (2 << 20) + b"{}"),
        ("json deeply nested", "calibration.json", b"[" * 100000 + b"]" * 100000),
        ("json wrong types", "calibration.json", json.dumps({**doc, "cameras": "many"}).encode()),
        ("json null camera", "calibration.json", json.dumps({**doc, "cameras": [None]}).encode()),
        ("json number", "calibration.json", b"42"),
        ("toml junk", "Calib.toml", b"[cam_01]\nmatrix = 'x'\n"),
        ("toml empty", "Calib.toml", b""),
        ("xml junk", "Calib.qca.txt", b"<calibration><cameras><camera serial='1'/></cameras></calibration>"),
        ("yml junk", "intri.yml", b"%YAML:1.0\nnames: 3\n"),
        ("binary", "calibration.json", bytes(range(256)) * 8),
    ]
    yield from fixed
    names = sorted(valid)
    for i in range(max(0, n - len(fixed))):
        name = names[i % len(names)]
        data = valid[name]
        for what, bad in corrupt_variants(data, rng, 1):
            yield what, name, bad


# ------------------------------------------------------------------------------------------ events


class FakeSelect:
    """What gr.SelectData carries (index, value), with whatever a crafted request puts there."""

    def __init__(self, index: object, value: object = None) -> None:
        self.index, self.value = index, value


WEIRD_VALUES: list[object] = [None, "", "12", "abc", -1, 0, 1, 2, 99, 10**30, 1.5, float("nan"), float("inf"),
                              -float("inf"), True, False, [], [0], [1, 2], [[0]], {}, {"x": 1}, {"index": 0},
                              (1, 2), b"\0", object()]  # fmt: skip
"""Event values a crafted request may send in place of a number, an index, a choice or a list of files."""


def save(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(data)
    return path
