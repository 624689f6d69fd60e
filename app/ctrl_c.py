"""Ctrl-C while the command line writes its outputs: the work is done by then, so a first Ctrl-C is noted and
the outputs are still written; a second one stops at once (nothing is written, an existing --out is kept)."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType


@contextlib.contextmanager
def ctrl_c_deferred(note: str) -> Iterator[list[bool]]:
    """Within the block a first SIGINT prints `note` to stderr and is otherwise held back; a second raises
    KeyboardInterrupt. Yields a list that is non-empty once Ctrl-C was pressed (the command then ends with exit
    code 130 once its outputs are written, as a Ctrl-C during the video's frames does). Outside the main thread
    (where Python takes no signal handler) it changes nothing."""
    pressed: list[bool] = []
    if threading.current_thread() is not threading.main_thread():
        yield pressed
        return

    def on_sigint(_signum: int, _frame: FrameType | None) -> None:
        if pressed:
            raise KeyboardInterrupt
        pressed.append(True)
        print(note, file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield pressed
    finally:  # None: a handler not set from Python, which cannot be put back; Python's default then
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
