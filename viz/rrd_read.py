"""Read back .rrd files written by viz.rerun_log (used by tests and sanity checks)."""

from __future__ import annotations

from pathlib import Path

from rerun.chunk import RrdReader


def entity_paths(path: str | Path) -> set[str]:
    """Every entity path holding data in the first recording of the .rrd file (blueprint excluded).

    Paths are returned without the leading slash, as they are logged: e.g. 'world/people/0/mesh'.
    """
    reader = RrdReader(Path(path))
    return {chunk.entity_path.lstrip("/") for chunk in reader.stream()}
