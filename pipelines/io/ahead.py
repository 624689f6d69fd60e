"""Work ahead in a thread: the stages of the video modes (decoding, detection) overlap with the caller's."""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")


def run_ahead(items: Iterable[T], fn: Callable[[T], U], size: int, name: str) -> Iterator[U]:
    """`fn(item)` for each item, in order, computed in a thread at most `size` items ahead (memory stays
    bounded). An exception in the thread is raised here; closing this generator (a cancel) stops the
    thread and closes `items` when it can be closed."""
    q: queue.Queue = queue.Queue(maxsize=max(1, size))
    stop = threading.Event()
    done = object()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if stop.is_set() or not put(fn(item)):
                    break
        except BaseException as err:  # noqa: BLE001 - handed to the consumer
            put(err)
            return
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        put(done)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.05)


_SWITCH_LOCK = threading.Lock()
_SWITCH_USERS: list[float] = []
"""The interval each active `gil_switch_interval` block asked for (the previous value is restored by the last one)."""
_SWITCH_SAVED: list[float] = []


@contextmanager
def gil_switch_interval(seconds: float) -> Iterator[None]:
    """Python's thread switch interval at most `seconds` while the block runs (sys.setswitchinterval),
    then back. Overlapped stages hand the GIL over at that interval: a thread returning from a C call
    that released it (a TFLite model run, an OpenCV decode) waits up to one interval while another thread
    runs Python (the fit), so the default 5 ms stalls each stage several times a frame. Nested and
    concurrent blocks (several videos in one process) are counted; the smallest interval asked holds."""
    with _SWITCH_LOCK:
        if not _SWITCH_USERS:
            _SWITCH_SAVED[:] = [sys.getswitchinterval()]
        _SWITCH_USERS.append(seconds)
        sys.setswitchinterval(min(_SWITCH_USERS + _SWITCH_SAVED))
    try:
        yield
    finally:
        with _SWITCH_LOCK:
            _SWITCH_USERS.remove(seconds)
            sys.setswitchinterval(min(_SWITCH_USERS + _SWITCH_SAVED) if _SWITCH_USERS else _SWITCH_SAVED[0])
