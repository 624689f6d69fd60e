"""Write 3D marker trajectories as a TRC file (OpenSim's marker format, as Pose2Sim writes it).

Tab-separated; header: file type, data rate, number of frames and markers, units (m); then one row
per frame: frame number (1-based), time (s), X Y Z per marker. OpenSim is y up: world points with
z up (the calibration's world) are written as (x, z, -y). Missing values are left empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.io.atomic import write_text_atomic

TRC_T_WORLD_33 = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
"""World axes (z up) -> TRC axes (y up)."""


def write_trc(path: str | Path, marker_names: Sequence[str], xyz_world_fk3: np.ndarray, fps: float,
              frame_numbers: Sequence[int] | None = None) -> Path:  # fmt: skip
    path = Path(path)
    xyz = np.asarray(xyz_world_fk3, dtype=np.float64) @ TRC_T_WORLD_33.T
    n_f, n_k = xyz.shape[:2]
    frames = list(range(1, n_f + 1)) if frame_numbers is None else [int(f) + 1 for f in frame_numbers]
    lines = [f"PathFileType\t4\t(X/Y/Z)\t{path.name}",
             "DataRate\tCameraRate\tNumFrames\tNumMarkers\tUnits\tOrigDataRate\tOrigDataStartFrame\tOrigNumFrames",
             f"{fps:g}\t{fps:g}\t{n_f}\t{n_k}\tm\t{fps:g}\t{frames[0] if frames else 1}\t{n_f}",
             "Frame#\tTime\t" + "\t\t\t".join(marker_names) + "\t\t",
             "\t\t" + "\t".join(f"X{i}\tY{i}\tZ{i}" for i in range(1, n_k + 1)), ""]  # fmt: skip
    for f in range(n_f):
        vals = "\t".join("" if not np.isfinite(v) else f"{v:.6f}" for v in xyz[f].ravel())
        lines.append(f"{frames[f]}\t{(frames[f] - 1) / fps:.6f}\t{vals}")
    return write_text_atomic(path, "\n".join(lines) + "\n")
