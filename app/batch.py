"""Which photos a command line names, and where each one's outputs go."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif"})
"""Files taken from a folder given as input (case-insensitive); other files there are skipped."""


@dataclass
class Job:
    """One photo to process and the folder its outputs go to."""

    photo: Path
    out_dir: Path


def _folder_photos(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def plan_jobs(inputs: list[Path], out: Path) -> tuple[list[Job], list[str]]:
    """The photos to process and their output folders, plus one message per input that gives none.
    A single photo writes into `out` itself; otherwise each photo gets out/<stem> (out/<stem>-2, ...
    when two photos share a stem)."""
    photos: list[Path] = []
    problems: list[str] = []
    for path in inputs:
        if path.is_dir():
            found = _folder_photos(path)
            if not found:
                problems.append(f"{path}: the folder holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))}).")
            photos += found
        else:
            photos.append(path)  # a missing or bad file is reported when it is loaded
    if len(inputs) == 1 and not inputs[0].is_dir():
        return [Job(inputs[0], out)], problems
    jobs: list[Job] = []
    used: set[str] = set()
    for photo in photos:
        name, k = photo.stem or "photo", 2
        while name in used:
            name, k = f"{photo.stem}-{k}", k + 1
        used.add(name)
        jobs.append(Job(photo, out / name))
    return jobs, problems
