"""What a video's container header announces (size, length), read without decoding anything.

The container is told by content: ISO base media (MP4, MOV, M4V, 3GP: boxes), RIFF AVI, and Matroska /
WebM (EBML). Only the header structures are read (MP4: the `moov` box, found by seeking over the
others; AVI: the `hdrl` list; Matroska: the elements before the first cluster), each bounded in size, so
a hostile file costs at most a few megabytes and milliseconds. pipelines.io.limits then checks the
numbers before OpenCV opens the file. Sizes are in pixels of the coded frames; lengths in seconds.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipelines.errors import UserFacingError

MAX_HEADER_BYTES = 64 << 20
"""The largest header structure read (an MP4 `moov` of an hour of 60 frames/s video is a few MB)."""
EBML_SCAN_BYTES = 4 << 20
"""How far into a Matroska file the track headers are looked for."""


@dataclass
class VideoHeader:
    """The container's announcements (None where it says nothing)."""

    container: str
    """'MP4/MOV', 'AVI' or 'Matroska/WebM'."""
    width: int
    """Largest video track width, pixels (0: not announced)."""
    height: int
    """Largest video track height, pixels (0: not announced)."""
    duration_s: float | None
    """Length in seconds."""
    frame_count: int | None
    """Frames of the video track."""
    codec: str | None = None
    """The video track's codec as the container names it (MP4: the sample entry, e.g. 'avc1', 'mp4v');
    None where it is not read (AVI, Matroska)."""


class _Damaged(Exception):  # noqa: N818 - internal signal
    """The header is malformed (turned into a UserFacingError naming the file)."""


def sniff_container(head: bytes) -> str | None:
    """The container family of a file starting with `head` (>= 12 bytes), or None."""
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"):
        return "MP4/MOV"
    if head[:4] == b"RIFF" and head[8:12] in (b"AVI ", b"AVIX"):
        return "AVI"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM"
    return None


def read_video_header(path: str | Path) -> VideoHeader:
    """The header of the video at `path`; UserFacingError naming the file for another container or a
    damaged header."""
    path = Path(path)
    container = "video"
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            container = sniff_container(head)
            if container is None:
                raise UserFacingError(f"The video {path.name} cannot be read: it is not in a container this app "
                                      "reads (MP4/MOV, AVI, Matroska/WebM; told by content, not by name).")  # fmt: skip
            f.seek(0)
            reader = {"MP4/MOV": _mp4, "AVI": _avi, "Matroska/WebM": _mkv}[container]
            return reader(f)
    except (_Damaged, struct.error, ValueError, OverflowError, IndexError, RecursionError) as err:
        why = f" ({err})" if isinstance(err, _Damaged) and str(err) else ""  # our own words, never a library's
        raise UserFacingError(f"The video {path.name} cannot be read: its {container} header is damaged{why}.") \
            from None
    except OSError as err:
        raise UserFacingError(f"The video {path.name} could not be read ({err.strerror or 'read error'}).") from None


# ------------------------------------------------------------------------------------------------- MP4


def _boxes(data: bytes, start: int = 0, end: int | None = None):  # noqa: ANN202 - yields (type, payload)
    """The boxes of a box list held in memory: (type, payload bytes)."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, pos + 8)
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise _Damaged(f"box {kind!r} overruns its parent")
        yield kind, data[pos + header: pos + size]
        pos += size


def _mp4(f: BinaryIO) -> VideoHeader:
    f.seek(0, 2)
    file_size = f.tell()
    pos, moov = 0, None
    while pos + 8 <= file_size:
        f.seek(pos)
        raw = f.read(16)
        size, kind = struct.unpack_from(">I4s", raw)
        header = 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", raw, 8)
            header = 16
        elif size == 0:
            size = file_size - pos
        if size < header:
            raise _Damaged(f"box {kind!r} has a size of {size} bytes")
        if kind == b"moov":
            if size > MAX_HEADER_BYTES:
                raise _Damaged(f"its movie header is {size >> 20} MB")
            f.seek(pos + header)
            moov = f.read(size - header)
            break
        pos += size
    if moov is None:
        raise _Damaged("no movie header (moov box)")
    width = height = 0
    duration_s: float | None = None
    frames: int | None = None
    codec: str | None = None
    for kind, body in _boxes(moov):
        if kind == b"mvhd":
            scale, duration = (struct.unpack_from(">IQ", body, 20) if body[0] == 1
                               else struct.unpack_from(">II", body, 12))  # fmt: skip
            if scale and duration not in (0, 0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF):
                duration_s = duration / scale
        elif kind == b"trak":
            track = _mp4_track(body)
            if track is not None:
                w, h, n, entry = track
                if w * h > width * height:
                    width, height, codec = w, h, entry
                elif codec is None:
                    codec = entry
                frames = max(frames or 0, n) if n is not None else frames
    return VideoHeader("MP4/MOV", width, height, duration_s, frames, codec)


def _mp4_track(trak: bytes) -> tuple[int, int, int | None, str | None] | None:
    """(width, height, sample count, codec) of a video track; None for another kind of track."""
    children = dict(_boxes(trak))
    mdia = dict(_boxes(children.get(b"mdia", b"")))
    hdlr = mdia.get(b"hdlr", b"")
    if hdlr[8:12] != b"vide":
        return None
    w = h = 0
    codec = None
    tkhd = children.get(b"tkhd", b"")
    if len(tkhd) >= 8:
        w, h = (v >> 16 for v in struct.unpack_from(">II", tkhd, len(tkhd) - 8))
    stbl = dict(_boxes(dict(_boxes(mdia.get(b"minf", b""))).get(b"stbl", b"")))
    stsd = stbl.get(b"stsd", b"")
    if len(stsd) >= 8 + 8 + 36:  # version/flags, count, then the first sample entry (visual: width at +32)
        ew, eh = struct.unpack_from(">HH", stsd, 8 + 8 + 24)
        w, h = max(w, ew), max(h, eh)
        codec = stsd[12:16].decode("latin-1").strip() or None
    stsz = stbl.get(b"stsz", b"")
    count = struct.unpack_from(">I", stsz, 8)[0] if len(stsz) >= 12 else None
    return w, h, count, codec


# ------------------------------------------------------------------------------------------------- AVI


def _avi(f: BinaryIO) -> VideoHeader:
    f.seek(12)
    raw = f.read(12)
    if len(raw) < 12 or raw[:4] != b"LIST" or raw[8:12] != b"hdrl":
        raise _Damaged("no header list (hdrl)")
    size = struct.unpack_from("<I", raw, 4)[0] - 4
    if size > MAX_HEADER_BYTES:
        raise _Damaged(f"its header list is {size >> 20} MB")
    hdrl = f.read(size)
    width = height = 0
    frames: int | None = None
    duration_s: float | None = None
    usec = 0
    for kind, body in _riff_chunks(hdrl):
        if kind == b"avih" and len(body) >= 40:
            usec, _, _, _, total, _, _, _, w, h = struct.unpack_from("<10I", body)
            width, height, frames = max(width, w), max(height, h), total
        elif kind == b"LIST" and body[:4] == b"strl":
            for sub, sbody in _riff_chunks(body[4:]):
                if sub == b"strf" and len(sbody) >= 12 and width == 0:
                    w, h = struct.unpack_from("<ii", sbody, 4)
                    width, height = max(width, abs(w)), max(height, abs(h))
        elif kind == b"LIST" and body[:4] == b"odml":
            for sub, sbody in _riff_chunks(body[4:]):
                if sub == b"dmlh" and len(sbody) >= 4:
                    frames = max(frames or 0, struct.unpack_from("<I", sbody)[0])
    if frames is not None and usec:
        duration_s = frames * usec / 1e6
    return VideoHeader("AVI", width, height, duration_s, frames)


def _riff_chunks(data: bytes):  # noqa: ANN202 - yields (fourcc, payload)
    pos = 0
    while pos + 8 <= len(data):
        kind, size = struct.unpack_from("<4sI", data, pos)
        if pos + 8 + size > len(data):
            raise _Damaged(f"chunk {kind!r} overruns its list")
        yield kind, data[pos + 8: pos + 8 + size]
        pos += 8 + size + (size & 1)


# -------------------------------------------------------------------------------------------- Matroska

_SEGMENT, _INFO, _TRACKS, _CLUSTER = 0x18538067, 0x1549A966, 0x1654AE6B, 0x1F43B675
_TRACK_ENTRY, _TRACK_TYPE, _VIDEO, _DEFAULT_DURATION = 0xAE, 0x83, 0xE0, 0x23E383
_PIXEL_W, _PIXEL_H, _TIMECODE_SCALE, _DURATION = 0xB0, 0xBA, 0x2AD7B1, 0x4489
_CONTAINERS = {_SEGMENT, _INFO, _TRACKS, _TRACK_ENTRY, _VIDEO}


def _vint(data: bytes, pos: int, keep_marker: bool) -> tuple[int, int, bool]:
    """An EBML variable-length integer at `pos`: (value, next position, all value bits set = unknown)."""
    first = data[pos]
    length = 9 - first.bit_length() if first else 0
    if not 1 <= length <= 8 or pos + length > len(data):
        raise _Damaged("bad element header")
    value = first if keep_marker else first & (0xFF >> length)
    for b in data[pos + 1: pos + length]:
        value = (value << 8) | b
    unknown = not keep_marker and value == (1 << (7 * length)) - 1
    return value, pos + length, unknown


def _mkv(f: BinaryIO) -> VideoHeader:
    data = f.read(EBML_SCAN_BYTES)
    info: dict[str, float] = {}
    tracks: list[dict[str, int]] = []

    def walk(pos: int, end: int, track: dict[str, int] | None, depth: int = 0) -> bool:
        """Read the elements in [pos, end); False once the first cluster is reached (stop)."""
        if depth > 8:
            raise _Damaged("its elements nest too deep")
        while pos < end:
            eid, pos, _ = _vint(data, pos, keep_marker=True)
            size, pos, unknown = _vint(data, pos, keep_marker=False)
            if eid == _CLUSTER:
                return False
            stop = min(end, len(data)) if unknown else pos + size
            if eid in _CONTAINERS:
                entry = {} if eid == _TRACK_ENTRY else track
                if not walk(pos, min(stop, len(data)), entry, depth + 1):
                    return False
                if eid == _TRACK_ENTRY and entry is not None:
                    tracks.append(entry)
            elif stop <= len(data):
                body = data[pos:stop]
                if eid in (_TRACK_TYPE, _PIXEL_W, _PIXEL_H, _DEFAULT_DURATION) and track is not None and size <= 8:
                    track[hex(eid)] = int.from_bytes(body, "big")
                elif eid == _TIMECODE_SCALE and size <= 8:
                    info["scale"] = int.from_bytes(body, "big")
                elif eid == _DURATION and size in (4, 8):
                    info["duration"] = struct.unpack(">f" if size == 4 else ">d", body)[0]
            pos = stop
        return True

    walk(0, len(data), None)
    video = [t for t in tracks if t.get(hex(_TRACK_TYPE)) == 1]
    if not video:
        raise _Damaged(f"no video track in its first {EBML_SCAN_BYTES >> 20} MB")
    width = max(t.get(hex(_PIXEL_W), 0) for t in video)
    height = max(t.get(hex(_PIXEL_H), 0) for t in video)
    duration_s = None
    if "duration" in info and info["duration"] == info["duration"] and info["duration"] >= 0:
        duration_s = info["duration"] * info.get("scale", 1_000_000) / 1e9
    frames = None
    per_frame_ns = max(t.get(hex(_DEFAULT_DURATION), 0) for t in video)
    if duration_s is not None and per_frame_ns:
        frames = int(round(duration_s * 1e9 / per_frame_ns))
    return VideoHeader("Matroska/WebM", width, height, duration_s, frames)
