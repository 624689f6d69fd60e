"""Read a depth map given as a file (.npy, 16-bit .png, .exr), checked against the photo it belongs to.

What the values mean is the caller's `kind` (see pipelines.scene.refine): metric (metres), relative
(depth up to an unknown scale and shift) or inverse (disparity up to a scale and shift). Zero, NaN and
infinite values are unknown pixels. A 16-bit PNG is read as its integer values (any scale: the
refinement finds it; for kind 'metric' the values are taken as millimetres). A depth map of another
size but the photo's aspect ratio is resized (nearest neighbour, so unknown pixels stay unknown).
Every problem raises BadDepthFileError with a sentence naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from pipelines.errors import UserFacingError

DEPTH_FILE_SUFFIXES = (".npy", ".png", ".exr")
MIN_KNOWN_FRACTION = 0.05
"""A depth map with fewer known pixels (finite, > 0) than this fraction is refused."""
ASPECT_TOLERANCE = 0.02


class BadDepthFileError(UserFacingError):
    """A depth file that cannot be used (unreadable, wrong size, type or content)."""


def _read_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise BadDepthFileError(f"The depth file {path.name} cannot be read as a NumPy array ({err}).") from err
    if isinstance(arr, np.lib.npyio.NpzFile):
        raise BadDepthFileError(f"The depth file {path.name} is an .npz archive; save one array with np.save.")
    return arr


def _read_png(path: Path, kind: str) -> np.ndarray:
    import cv2

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise BadDepthFileError(f"The depth file {path.name} cannot be read as a PNG image.")
    if arr.dtype != np.uint16:
        raise BadDepthFileError(f"The depth file {path.name} is an 8-bit PNG; a depth map needs 16 bits "
                                "(or save it as .npy with float values).")  # fmt: skip
    if arr.ndim == 3:
        raise BadDepthFileError(f"The depth file {path.name} has {arr.shape[2]} channels; a depth map has one.")
    out = arr.astype(np.float64)
    return out / 1000.0 if kind == "metric" else out


def _read_exr(path: Path) -> np.ndarray:
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2

    if not cv2.haveImageReader(str(path)):
        raise BadDepthFileError(f"The depth file {path.name} is OpenEXR, which no installed library reads here "
                                "(this OpenCV build has no OpenEXR codec); save the depth as .npy "
                                "(np.save) or as a 16-bit PNG.")  # fmt: skip
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED | cv2.IMREAD_ANYDEPTH)
    if arr is None:
        raise BadDepthFileError(f"The depth file {path.name} cannot be read as an OpenEXR image (damaged?).")
    if arr.ndim == 3:
        arr = arr[..., 2]  # BGR order: the R channel (where depth usually is)
    return arr


def load_depth_file(path: str | Path, width: int, height: int, kind: str = "relative") -> np.ndarray:
    """The depth map of `path` as float64 (height, width), NaN where unknown (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise BadDepthFileError(f"The depth file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix not in DEPTH_FILE_SUFFIXES:
        raise BadDepthFileError(f"The depth file {path.name} has an unknown type {suffix or '(none)'}; "
                                f"use {', '.join(DEPTH_FILE_SUFFIXES)}.")  # fmt: skip
    if suffix == ".npy":
        arr = _read_npy(path)
    elif suffix == ".png":
        arr = _read_png(path, kind)
    else:
        arr = _read_exr(path)
    arr = np.squeeze(np.asarray(arr))
    if arr.ndim != 2:
        raise BadDepthFileError(f"The depth file {path.name} holds an array of shape {tuple(arr.shape)}; "
                                f"a depth map is one {height} x {width} (rows x columns) plane.")  # fmt: skip
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise BadDepthFileError(f"The depth file {path.name} holds {arr.dtype} values; depth must be numbers "
                                "(float or integer).")  # fmt: skip
    depth = arr.astype(np.float64)
    h0, w0 = depth.shape
    if (h0, w0) != (height, width):
        if (w0, h0) == (height, width):
            raise BadDepthFileError(f"The depth file {path.name} is {w0}x{h0} (width x height) but the photo is "
                                    f"{width}x{height}: it looks transposed or rotated.")  # fmt: skip
        if abs(w0 / h0 - width / height) > ASPECT_TOLERANCE * width / height:
            raise BadDepthFileError(f"The depth file {path.name} is {w0}x{h0} (width x height) but the photo is "
                                    f"{width}x{height}, another shape; it must belong to this photo.")  # fmt: skip
        import cv2

        depth = cv2.resize(depth, (width, height), interpolation=cv2.INTER_NEAREST)
    known = np.isfinite(depth) & (depth > 0)
    frac = float(known.mean())
    if frac == 0.0:
        what = ("only NaN or infinite values" if not np.isfinite(depth).any()
                else "no positive value (all zero or negative)")  # fmt: skip
        raise BadDepthFileError(f"The depth file {path.name} has {what}: there is no depth in it.")
    if frac < MIN_KNOWN_FRACTION:
        raise BadDepthFileError(f"The depth file {path.name} has a depth on only {100 * frac:.1f} % of the pixels "
                                f"(NaN, infinite, zero or negative elsewhere); at least "
                                f"{100 * MIN_KNOWN_FRACTION:.0f} % are needed.")  # fmt: skip
    if float(np.ptp(depth[known])) == 0.0 and kind != "metric":
        raise BadDepthFileError(f"The depth file {path.name} has the same value everywhere: a {kind} depth map "
                                "needs some variation.")  # fmt: skip
    return np.where(known, depth, np.nan)
