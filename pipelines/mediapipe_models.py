"""MediaPipe Tasks models built offline from the .tflite files shipped inside the mediapipe wheel.

The Tasks API (PoseLandmarker, HandLandmarker) loads a `.task` bundle: an uncompressed zip holding a
detector and a landmark model under fixed names. mediapipe 0.10.21 ships the models of the legacy
`solutions` graphs but no bundle, and those .tflite files lack the metadata the Tasks graphs need
(how to normalise the float input image). This module adds that metadata with mediapipe's own
metadata writer, zips the two models under the names the Tasks graphs look for, and caches the result
in `$HMR_CACHE_DIR/mediapipe` (default `$XDG_CACHE_HOME/hmr-playground/mediapipe`, i.e.
`~/.cache/hmr-playground/mediapipe`). Nothing is downloaded; nothing loads at import time.

Input normalisation (from the legacy graphs that use the same models): the pose detector takes
pixels in [-1, 1]; the pose landmark, palm detector and hand landmark models take pixels in [0, 1].
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from pipelines.registry import BackendUnavailable

T = TypeVar("T")

BUNDLE_FORMAT = 1
"""Bump when the way bundles are built changes, so that stale cached bundles are rebuilt."""


@dataclass(frozen=True)
class _BundledModel:
    name_in_bundle: str
    """File name the Tasks graph looks for inside the .task zip."""
    wheel_path: str
    """Path of the source .tflite relative to the installed mediapipe package."""
    norm_mean: float
    norm_std: float
    """Input normalisation written into the metadata: (pixel - mean) / std."""


_POSE_MODELS = (
    _BundledModel("pose_detector.tflite", "modules/pose_detection/pose_detection.tflite", 127.5, 127.5),
    _BundledModel(
        "pose_landmarks_detector.tflite", "modules/pose_landmark/pose_landmark_full.tflite", 0.0, 255.0
    ),
)
_HAND_MODELS = (
    _BundledModel("hand_detector.tflite", "modules/palm_detection/palm_detection_full.tflite", 0.0, 255.0),
    _BundledModel(
        "hand_landmarks_detector.tflite", "modules/hand_landmark/hand_landmark_full.tflite", 0.0, 255.0
    ),
)


def cache_dir() -> Path:
    """Where the built bundles live: $HMR_CACHE_DIR/mediapipe, else the user cache directory."""
    root = os.environ.get("HMR_CACHE_DIR")
    if root:
        return Path(root).expanduser() / "mediapipe"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "hmr-playground" / "mediapipe"


MISSING = "the embedded backends need the Python package mediapipe, which is not installed: " \
          "scripts/install.sh installs mediapipe==0.10.21 (pip install --no-deps mediapipe==0.10.21)"  # fmt: skip


def unavailable_reason() -> str | None:
    """Why the MediaPipe-based backends cannot run here (None: they can). Cheap: imports nothing.

    This module never imports mediapipe at import time (nor fails without it), so that modules the
    hub backends need can import it; the MediaPipe-based backends check this when created."""
    try:
        spec = importlib.util.find_spec("mediapipe")
    except (ImportError, ValueError):
        spec = None
    return MISSING if spec is None or not spec.submodule_search_locations else None


def _mediapipe_dir() -> Path:
    reason = unavailable_reason()
    if reason is not None:
        raise BackendUnavailable(reason)
    spec = importlib.util.find_spec("mediapipe")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations)))


def _mediapipe_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mediapipe")
    except PackageNotFoundError:
        return "unknown"


def _check_sources(models: tuple[_BundledModel, ...]) -> list[Path]:
    root = _mediapipe_dir()
    paths = [root / m.wheel_path for m in models]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise BackendUnavailable(
            "the mediapipe wheel lacks model files needed by the embedded backend "
            f"(install mediapipe==0.10.21): {', '.join(missing)}"
        )
    return paths


def check_model_files() -> None:
    """Raise BackendUnavailable when a model file of the wheel is missing (cheap: no model loads)."""
    _check_sources(_POSE_MODELS + _HAND_MODELS)


def _with_metadata(model_bytes: bytes, name: str, norm_mean: float, norm_std: float) -> bytes:
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    writer = metadata_writer.MetadataWriter.create(bytearray(model_bytes))
    writer.add_general_info(name, "Built by hmr-playground from the mediapipe wheel's model.")
    writer.add_image_input(norm_mean=[norm_mean], norm_std=[norm_std])
    model_with_metadata, _ = writer.populate()
    return bytes(model_with_metadata)


def _build_bundle(kind: str, models: tuple[_BundledModel, ...]) -> Path:
    sources = _check_sources(models)
    out_dir = cache_dir()
    target = out_dir / f"{kind}_landmarker_full_mp{_mediapipe_version()}_b{BUNDLE_FORMAT}.task"
    if target.is_file():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {
        m.name_in_bundle: _with_metadata(src.read_bytes(), src.stem, m.norm_mean, m.norm_std)
        for m, src in zip(models, sources, strict=True)
    }
    # Atomic: write a temporary file next to the target, then rename it over (safe with parallel builds).
    fd, tmp_name = tempfile.mkstemp(prefix=target.name, suffix=".tmp", dir=out_dir)
    try:
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED) as zf:
            for name, data in payload.items():
                zf.writestr(name, data)
        os.chmod(tmp_name, 0o644)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target


def pose_bundle_path() -> Path:
    """Path of the PoseLandmarker bundle (pose_detector + pose_landmarks_detector, full model)."""
    return _build_bundle("pose", _POSE_MODELS)


def hand_bundle_path() -> Path:
    """Path of the HandLandmarker bundle (hand_detector + hand_landmarks_detector, full model)."""
    return _build_bundle("hand", _HAND_MODELS)


def create_pose_landmarker(
    num_poses: int = 4,
    min_detection_confidence: float = 0.5,
    min_presence_confidence: float = 0.5,
    segmentation: bool = True,
) -> Any:
    """A Tasks PoseLandmarker in IMAGE mode (several people, optional per-person masks)."""
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.PoseLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(pose_bundle_path())),
        running_mode=vision.RunningMode.IMAGE,
        num_poses=num_poses,
        min_pose_detection_confidence=min_detection_confidence,
        min_pose_presence_confidence=min_presence_confidence,
        output_segmentation_masks=segmentation,
    )
    try:
        return vision.PoseLandmarker.create_from_options(options)
    except RuntimeError as err:
        raise BackendUnavailable(f"mediapipe could not load the pose model: {err}") from err


def create_hand_landmarker(
    num_hands: int = 2, min_detection_confidence: float = 0.3, min_presence_confidence: float = 0.5
) -> Any:
    """A Tasks HandLandmarker in IMAGE mode."""
    from mediapipe.tasks.python import BaseOptions, vision

    options = vision.HandLandmarkerOptions(
        base_options=BaseOptions(model_asset_path=str(hand_bundle_path())),
        running_mode=vision.RunningMode.IMAGE,
        num_hands=num_hands,
        min_hand_detection_confidence=min_detection_confidence,
        min_hand_presence_confidence=min_presence_confidence,
    )
    try:
        return vision.HandLandmarker.create_from_options(options)
    except RuntimeError as err:
        raise BackendUnavailable(f"mediapipe could not load the hand model: {err}") from err


class LazyTask:
    """A MediaPipe task created on first use, guarded by a lock (a task is not safe to call from two
    threads at once), and freed by close() (a later call creates it again)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._task: Any = None
        self.lock = threading.Lock()

    def get(self) -> Any:
        """The task; call with `lock` held."""
        if self._task is None:
            self._task = self._factory()
        return self._task

    def close(self) -> None:
        with self.lock:
            if self._task is not None:
                self._task.close()
                self._task = None


def map_on_lanes(work: Callable[[int, int], T], n_items: int, n_lanes: int, name: str = "lane") -> list[T]:
    """[work(i, lane) for i in range(n_items)], the items shared out over `n_lanes` threads (the calling one is
    lane 0; each takes the next item when it is done), `lane` telling a thread's own model (its lock held by
    `work`). The results in the items' order, whichever lane computed them; the first error is raised once
    every thread is done (an error, or a Ctrl-C while waiting, stops the lanes taking further items)."""
    n_threads = min(n_lanes, n_items)
    if n_threads <= 1:
        return [work(i, 0) for i in range(n_items)]
    results: list[Any] = [None] * n_items
    errors: list[BaseException] = []
    counter = iter(range(n_items))
    take = threading.Lock()

    def lane_loop(lane: int) -> None:
        while not errors:
            with take:
                i = next(counter, None)
            if i is None:
                return
            try:
                results[i] = work(i, lane)
            except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(err)

    threads = [threading.Thread(target=lane_loop, args=(k,), daemon=True, name=f"{name}-{k}")
               for k in range(1, n_threads)]  # fmt: skip
    for t in threads:
        t.start()
    try:
        lane_loop(0)
        for t in threads:
            t.join()
    except BaseException as err:  # a Ctrl-C while joining: the other lanes take no further item
        errors.append(err)
        raise
    if errors:
        raise errors[0]
    return results


def to_mp_image(image_rgb_hw3: np.ndarray) -> Any:
    """Wrap an RGB uint8 (H, W, 3) array as a mediapipe Image (copies only when not contiguous)."""
    import mediapipe as mp

    data = np.ascontiguousarray(image_rgb_hw3, dtype=np.uint8)
    return mp.Image(image_format=mp.ImageFormat.SRGB, data=data)


def as_rgb_uint8(image_hw3: np.ndarray) -> np.ndarray:
    """Check and normalise the input image to a contiguous RGB uint8 (H, W, 3) array."""
    image = np.asarray(image_hw3)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4) or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"expected an RGB image of shape (H, W, 3), got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image, got dtype {image.dtype}")
    return np.ascontiguousarray(image[:, :, :3])
