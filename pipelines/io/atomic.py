"""Atomic file writes: a file is written under a temporary name beside its target, then renamed over it.

A reader (a download, the viewer, another process) sees either the previous file or the whole new one,
never half a file; a writer that fails or is killed mid-way leaves the previous file as it was (and
no temporary file behind, unless the process itself dies: the temporary names start with a dot and
hold `.tmp`). Every output writer of pipelines/ and viz/ goes through `atomic_path`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

TMP_SUFFIX = ".tmp"
_UMASK_LOCK = threading.Lock()


def process_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc/self/status): setting it
    to 0 and back, the only portable way, is a race when several threads write files at once (a file
    created by another thread meanwhile gets mode 0666, and two such pairs can leave the umask at 0)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    with _UMASK_LOCK:
        umask = os.umask(0)
        os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in `path`'s folder to write to; renamed to `path` (os.replace) when the block ends
    without an exception, deleted when it raises. The temporary name keeps `path`'s suffix, so writers
    that pick their format from the name (OpenCV, trimesh, numpy) still do."""
    path = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}{TMP_SUFFIX}{path.suffix}",
                                    dir=path.parent)  # fmt: skip
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        os.chmod(tmp, 0o666 & ~process_umask())  # mkstemp makes 0600; a plain open() would give the usual permissions
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write `data` to `path` atomically; returns `path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically; returns `path`."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
