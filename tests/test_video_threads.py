"""The video mode's thread settings leave the host process as they found it (the playground runs videos
in its own server process): Python's switch interval is lowered while a video runs, then restored."""

from __future__ import annotations

import sys
import threading

import pytest

from pipelines.io.ahead import gil_switch_interval


def test_switch_interval_is_lowered_then_restored_with_overlapping_runs() -> None:
    before = sys.getswitchinterval()
    inside: list[float] = []
    started, release = threading.Event(), threading.Event()

    def other_video() -> None:  # a second video in the same process, overlapping the first
        with gil_switch_interval(0.002):
            started.set()
            release.wait(5)

    with gil_switch_interval(0.001):
        inside.append(sys.getswitchinterval())
        t = threading.Thread(target=other_video)
        t.start()
        started.wait(5)
        inside.append(sys.getswitchinterval())  # the smaller of the two holds
    inside.append(sys.getswitchinterval())  # the other video still runs: still lowered
    release.set()
    t.join()
    assert inside == pytest.approx([0.001, 0.001, 0.002])
    assert sys.getswitchinterval() == pytest.approx(before)
