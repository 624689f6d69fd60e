"""Keep the log lines that MediaPipe, TFLite, absl and glog print from C++ out of the terminal.

They write straight to file descriptor 2 ("W0000 ... inference_feedback_manager.cc:114] Feedback
manager requires ...", "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."), from threads and
at any time, so an environment variable alone does not hold them back. Inside `native_logs_hidden`
fd 2 points at /dev/null, while Python's own sys.stderr (our error messages, warnings, tracebacks,
the progress bar) keeps writing to the real stderr through a duplicate of it.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator

QUIET_ENV: dict[str, str] = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}
"""Read by glog and TensorFlow when they load: keeps INFO and WARNING lines from being formatted."""


def _writes_to_fd2(stream: object) -> bool:
    try:
        return stream.fileno() == 2  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):  # pytest's capture objects, StringIO, ...
        return False


@contextlib.contextmanager
def native_logs_hidden(hide: bool = True) -> Iterator[None]:
    """Silence native writes to fd 2 for the duration (nothing changes when `hide` is False)."""
    if not hide:
        yield
        return
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved_fd = os.dup(2)
    except OSError:  # no fd 2 at all (stderr closed): nothing to hide
        yield
        return
    python_stderr = sys.stderr
    if _writes_to_fd2(python_stderr):
        sys.stderr = io.TextIOWrapper(
            io.FileIO(os.dup(saved_fd), "w"),
            encoding=getattr(python_stderr, "encoding", None) or "utf-8",
            errors=getattr(python_stderr, "errors", None) or "backslashreplace",
            line_buffering=True,
            write_through=True,
        )
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        yield
    finally:
        if sys.stderr is not python_stderr:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            replacement, sys.stderr = sys.stderr, python_stderr
            with contextlib.suppress(Exception):
                replacement.close()
        os.dup2(saved_fd, 2)
        os.close(saved_fd)
