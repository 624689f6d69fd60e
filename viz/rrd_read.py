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


def timeline_values(path: str | Path, timeline: str, entity: str | None = None) -> set[int]:
    """Every value of `timeline` at which data was logged (optionally only at `entity`, no leading slash);
    sequence numbers as they are, durations and timestamps in nanoseconds."""
    values: set[int] = set()
    for chunk in RrdReader(Path(path)).stream():
        if chunk.is_static or timeline not in chunk.timeline_names:
            continue
        if entity is not None and chunk.entity_path.lstrip("/") != entity:
            continue
        column = chunk.to_record_batch().column(timeline).cast("int64")
        values.update(int(v) for v in column.to_pylist() if v is not None)
    return values
