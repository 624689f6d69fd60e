"""Shared helpers for the benchmarks: metrics (from pipelines.metrics), joint sets, machine line, tables."""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipelines.keypoints.names import COCO17_NAMES
from pipelines.metrics import (
    Similarity,
    mpjpe,
    pa_mpjpe,
    procrustes,
    root_distance_error,
    root_relative_mpjpe,
)

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"
"""The real data: ../shared/data beside the checkout (see its README)."""

__all__ = [
    "DATA_DIR",
    "save_json",
    "BODY12_NAMES",
    "COCO17_NAMES",
    "ROOT_NAMES",
    "Similarity",
    "machine_description",
    "markdown_table",
    "mpjpe",
    "pa_mpjpe",
    "procrustes",
    "root_distance_error",
    "root_relative_mpjpe",
    "stack_joints",
]

BODY12_NAMES: list[str] = COCO17_NAMES[5:]
"""The 12 body joints of COCO-17: shoulders, elbows, wrists, hips, knees, ankles (no face)."""
ROOT_NAMES: list[str] = ["left_hip", "right_hip"]
"""The root is the mid-point of the hips."""


def machine_description() -> str:
    """One line: CPU model, logical core count, Python and OS, for the header of every table."""
    cpu = platform.processor() or "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    system = f"{platform.system()} {platform.machine()}"
    return f"{cpu}, {cores} cores, Python {platform.python_version()}, {system}"


def stack_joints(joints: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray | None:
    """(K, 3) array of `names` from a name -> (3,) dict; None if one is missing or not finite."""
    if not all(n in joints for n in names):
        return None
    xyz_k3 = np.stack([np.asarray(joints[n], dtype=np.float64) for n in names])
    return xyz_k3 if np.isfinite(xyz_k3).all() else None


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table; floats printed with one decimal, None as an en dash."""

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and not np.isfinite(value)):
            return "–"
        if isinstance(value, float):
            return f"{value:.1f}"
        return str(value)

    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(" --- " for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def save_json(path: Path, report: dict) -> None:
    """Write a bench's full report as JSON (folders created) and say where."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"saved {path}")
