"""One .tflite model of the mediapipe wheel run directly with the LiteRT interpreter (ai-edge-litert).

The Tasks API always runs BlazePose's detector and landmark model together on the whole image; running
them one by one lets the detector look at tiles and the landmark model at chosen regions only.
Created on first use (nothing loads at import time); a lock guards each interpreter (not thread safe).

`lanes`: independent interpreters of the same model, so that independent inputs (the detector's tiles)
run at the same time, one per core (`map_lanes`). LiteRT releases the GIL while it invokes, and a model's
outputs do not depend on the number of threads or on the interpreter (checked bit for bit: 1, 2 and 4
threads give the same outputs).
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipelines.mediapipe_models import map_on_lanes
from pipelines.registry import BackendUnavailable

POSE_DETECTOR = "modules/pose_detection/pose_detection.tflite"
"""BlazePose detector: 224x224 RGB in [-1, 1] -> 2254 anchors x (box + 4 keypoints), scores."""
POSE_LANDMARKS_FULL = "modules/pose_landmark/pose_landmark_full.tflite"
"""BlazePose landmark model (full): 256x256 RGB in [0, 1] -> 39 landmarks, flag, mask, heatmap, world."""

T = TypeVar("T")
Runner = Callable[[np.ndarray], list[np.ndarray]]
"""Runs the model on one input (1, H, W, 3); the outputs by name, copied (TfliteModel.run's contract)."""


def _mediapipe_dir() -> Path:
    from pipelines.mediapipe_models import _mediapipe_dir as root

    return root()


class _Lane:
    """One interpreter and its lock, plus what `run` needs of it looked up once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.interpreter: Any = None
        self.input_index = 0
        self.output_indices: list[int] = []


class TfliteModel:
    """A lazily created LiteRT interpreter (or `lanes` of them) for one model file of the mediapipe wheel."""

    def __init__(self, wheel_path: str, num_threads: int | None = None, lanes: int = 1) -> None:
        """`num_threads`: XNNPACK threads of each interpreter (default: 2 on a 2-core machine, 1 with
        several lanes); `lanes`: interpreters for `map_lanes` (`run` uses the first)."""
        self.wheel_path = wheel_path
        self.lanes = max(1, lanes)
        cores = os.cpu_count() or 1
        self.num_threads = num_threads or (1 if self.lanes > 1 else min(2, cores))
        self._lanes = [_Lane() for _ in range(self.lanes)]

    def _get(self, lane: int = 0):  # noqa: ANN202 - ai_edge_litert.interpreter.Interpreter
        ln = self._lanes[lane]
        if ln.interpreter is None:
            try:
                from ai_edge_litert.interpreter import Interpreter
            except ImportError as err:
                raise BackendUnavailable(
                    "ai-edge-litert is not installed (scripts/requirements.txt lists it)"
                ) from err
            path = _mediapipe_dir() / self.wheel_path
            if not path.is_file():
                raise BackendUnavailable(f"the mediapipe wheel lacks {path} (install mediapipe==0.10.21)")
            interpreter = Interpreter(model_path=str(path), num_threads=self.num_threads)
            interpreter.allocate_tensors()
            ln.input_index = interpreter.get_input_details()[0]["index"]
            outputs = sorted(interpreter.get_output_details(), key=lambda d: d["name"])  # Identity, Identity_1, ...
            ln.output_indices = [d["index"] for d in outputs]
            ln.interpreter = interpreter
        return ln.interpreter

    def _run_on(self, lane: int, input_1hw3: np.ndarray) -> list[np.ndarray]:
        ln = self._lanes[lane]
        with ln.lock:
            it = self._get(lane)
            it.set_tensor(ln.input_index, np.ascontiguousarray(input_1hw3, dtype=np.float32))
            it.invoke()
            return [it.get_tensor(i) for i in ln.output_indices]  # get_tensor returns a copy of its own

    def run(self, input_1hw3: np.ndarray) -> list[np.ndarray]:
        """Run on one float32 input (1, H, W, 3); the outputs by name (Identity, Identity_1, ...), copied."""
        return self._run_on(0, input_1hw3)

    def map_lanes(self, work: Callable[[Any, Runner], T], items: Sequence[Any]) -> list[T]:
        """[work(item, run) for item in items], the items shared out over the lanes (one thread each, the
        calling one included; each takes the next item when it is done), `run` bound to that thread's
        interpreter. The results in the items' order, whichever lane computed them; the first error is
        raised once all threads are done."""
        runners = [self.run] + [functools.partial(self._run_on, lane) for lane in range(1, self.lanes)]
        return map_on_lanes(lambda i, lane: work(items[i], runners[lane]), len(items), self.lanes, "tflite-lane")

    def close(self) -> None:
        for ln in self._lanes:
            with ln.lock:
                ln.interpreter = None
