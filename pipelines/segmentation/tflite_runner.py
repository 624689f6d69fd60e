"""One .tflite model of the mediapipe wheel run directly with the LiteRT interpreter (ai-edge-litert).

The Tasks API always runs BlazePose's detector and landmark model together on the whole image; running
them one by one lets the detector look at tiles and the landmark model at chosen regions only.
Created on first use (nothing loads at import time); a lock guards each interpreter (not thread safe).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from pipelines.registry import BackendUnavailable

POSE_DETECTOR = "modules/pose_detection/pose_detection.tflite"
"""BlazePose detector: 224x224 RGB in [-1, 1] -> 2254 anchors x (box + 4 keypoints), scores."""
POSE_LANDMARKS_FULL = "modules/pose_landmark/pose_landmark_full.tflite"
"""BlazePose landmark model (full): 256x256 RGB in [0, 1] -> 39 landmarks, flag, mask, heatmap, world."""


def _mediapipe_dir() -> Path:
    from pipelines.mediapipe_models import _mediapipe_dir as root

    return root()


class TfliteModel:
    """A lazily created LiteRT interpreter for one model file of the mediapipe wheel."""

    def __init__(self, wheel_path: str, num_threads: int | None = None) -> None:
        self.wheel_path = wheel_path
        self.num_threads = num_threads or min(2, os.cpu_count() or 1)
        self._interpreter = None
        self._lock = threading.Lock()

    def _get(self):  # noqa: ANN202 - ai_edge_litert.interpreter.Interpreter
        if self._interpreter is None:
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
            self._interpreter = interpreter
        return self._interpreter

    def run(self, input_1hw3: np.ndarray) -> list[np.ndarray]:
        """Run on one float32 input (1, H, W, 3); the outputs by name (Identity, Identity_1, ...), copied."""
        with self._lock:
            it = self._get()
            it.set_tensor(it.get_input_details()[0]["index"], np.ascontiguousarray(input_1hw3, dtype=np.float32))
            it.invoke()
            outputs = sorted(it.get_output_details(), key=lambda d: d["name"])  # Identity, Identity_1, ...
            return [it.get_tensor(d["index"]).copy() for d in outputs]

    def close(self) -> None:
        with self._lock:
            self._interpreter = None
