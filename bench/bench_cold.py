"""Cold start and batch of the command line: fresh processes, wall time and peak memory.

    python -m bench.bench_cold [--repeats 3] [--baseline REF]

Rows (medians, and the fastest, of --repeats fresh processes on assets/examples/lunge.jpg, every cache present:
Anny's, the body model tables .npz, the MediaPipe bundles):
- this checkout's `python -m app.cli image lunge.jpg --out DIR`;
- the same with HMR_BODY_CACHE=off (the tables read out of Anny's torch model, as before the cache);
- the baseline: the CLI of git REF (default: where this branch left main), exported to a temporary
  folder and run the same way;
- imports during one cold run (the sum of the top-level imports of `-X importtime`);
- a folder of 20 photos (resized and mirrored copies of the example photos) in one process, and the
  same photos as 20 single-photo processes of the baseline, estimated from its cold median.
Prints a markdown table. Not a test: timings depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

from bench.common import DATA_DIR, machine_description, markdown_table

REPO = Path(__file__).resolve().parents[1]
LUNGE = REPO / "assets" / "examples" / "lunge.jpg"


@dataclass
class Run:
    wall_s: float
    cpu_s: float
    """User + system CPU time of the process and its threads (less sensitive to other load than wall)."""
    peak_rss_mb: float
    code: int
    stderr: str


def run_process(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> Run:
    """One fresh interpreter; wall time from spawn to exit, peak RSS from the kernel (wait4)."""
    import time

    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *args], cwd=cwd, env={**os.environ, **(env or {})},
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0, proc.returncode, text)


def median_runs(args: list[str], cwd: Path, repeats: int, env: dict[str, str] | None = None) -> tuple[Run, list[Run]]:
    runs = [run_process(args, cwd, env) for _ in range(repeats)]
    bad = [r for r in runs if r.code != 0]
    if bad:
        raise SystemExit(f"command failed ({bad[0].code}): {' '.join(args)}\n{bad[0].stderr[-2000:]}")
    med = Run(statistics.median(r.wall_s for r in runs), statistics.median(r.cpu_s for r in runs),
              statistics.median(r.peak_rss_mb for r in runs), 0, "")  # fmt: skip
    med.stderr = f"fastest of {len(runs)}: {min(r.wall_s for r in runs):.2f} s wall"
    return med, runs


def import_seconds(stderr: str) -> float:
    """Sum of the cumulative times of the top-level modules in `-X importtime` output."""
    total = 0
    for line in stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)$", line)
        if m and len(m.group(2)) <= 1:
            total += int(m.group(1))
    return total / 1e6


def export_baseline(ref: str, dest: Path) -> str:
    """The tree of git `ref` in `dest`; returns its short hash."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", ref], capture_output=True, text=True,
                            check=True).stdout.strip()  # fmt: skip
    archive = dest / "tree.tar"
    subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), commit], check=True)
    with tarfile.open(archive) as tar:
        tar.extractall(dest / "tree", filter="data")
    return commit


def default_baseline() -> str:
    proc = subprocess.run(["git", "-C", str(REPO), "merge-base", "HEAD", "main"], capture_output=True, text=True)
    return proc.stdout.strip() or "HEAD~1"


def make_batch_folder(folder: Path, n: int = 20) -> list[Path]:
    """n photos: the example photos (and ../shared/data/images) at several sizes, mirrored or not."""
    sources = sorted({p.name: p for p in [*(REPO / "assets" / "examples").glob("*.jpg"),
                                           *(REPO / "assets" / "examples").glob("*.png"),
                                           *(DATA_DIR / "images").glob("*.jpg")]}.values())  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    out: list[Path] = []
    k = 0
    while len(out) < n:
        src = sources[k % len(sources)]
        variant = k // len(sources)
        scale = (1.0, 0.8, 0.65, 0.5)[variant % 4]
        im = ImageOps.exif_transpose(Image.open(src)).convert("RGB")
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
        if variant % 2:
            im = ImageOps.mirror(im)
        path = folder / f"{k:02d}_{src.stem}_{int(scale * 100)}{'_m' if variant % 2 else ''}.jpg"
        im.save(path, quality=92)
        out.append(path)
        k += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", default=None, help="git ref of the baseline CLI (default: merge-base with main)")
    args = parser.parse_args()
    load_start = os.getloadavg()[0]

    with tempfile.TemporaryDirectory(prefix="bench_cold_") as tmp_name:
        tmp = Path(tmp_name)
        cli = ["-m", "app.cli", "image", str(LUNGE), "--out", str(tmp / "out"), "--quiet"]
        print("warming the caches (tables .npz, MediaPipe bundles, page cache)...", file=sys.stderr)
        run_process(cli, REPO)

        rows: list[list[str]] = []

        def row(what: str, run: Run, note: str = "") -> None:
            rows.append([what, f"{run.wall_s:.2f} s", f"{run.cpu_s:.2f} s", f"{run.peak_rss_mb:.0f} MB", note])

        new, _ = median_runs(cli, REPO, args.repeats)
        row("cold CLI, one photo (this checkout, caches present)", new, new.stderr)
        off, _ = median_runs(cli, REPO, args.repeats, {"HMR_BODY_CACHE": "off"})
        row("  same, body model tables cache off (torch + Anny build)", off, off.stderr)

        ref = args.baseline or default_baseline()
        base_commit = export_baseline(ref, tmp)
        base_tree = tmp / "tree"
        run_process(cli, base_tree)
        base, _ = median_runs(cli, base_tree, args.repeats)
        row(f"baseline: cold CLI, one photo (git {base_commit})", base, base.stderr)

        imp_new = run_process(["-X", "importtime", *cli, "--verbose"], REPO)
        imp_base = run_process(["-X", "importtime", *cli, "--verbose"], base_tree)  # --verbose: stderr not hidden
        rows.append(["imports during one cold run (this checkout / baseline)",
                     f"{import_seconds(imp_new.stderr):.2f} s / {import_seconds(imp_base.stderr):.2f} s", "", "", ""])

        photos = make_batch_folder(tmp / "batch")
        batch_cmd = ["-m", "app.cli", "image", str(tmp / "batch"), "--out", str(tmp / "batch_out"), "--quiet"]
        batch = run_process(batch_cmd, REPO)
        if batch.code != 0:
            raise SystemExit(f"batch failed ({batch.code}):\n{batch.stderr[-2000:]}")
        n = len(photos)
        marginal = (batch.cpu_s - new.cpu_s) / (n - 1)
        row(f"folder of {n} photos, one process (this checkout)", batch,
            f"{batch.wall_s / n:.2f} s wall per photo; {marginal:.2f} s CPU per photo after the first")  # fmt: skip
        rows.append([f"baseline: {n} photos as {n} single-photo processes (estimated: {n} x its cold median)",
                     f"{n * base.wall_s:.1f} s", f"{n * base.cpu_s:.1f} s", "", f"{base.wall_s:.2f} s per photo"])

    print(f"Machine: {machine_description()}; load average (1 min) {load_start:.1f} at the start,"
          f" {os.getloadavg()[0]:.1f} at the end (the cores are shared: read CPU beside wall).\n")  # fmt: skip
    print(markdown_table(["what", "wall", "CPU (user + sys)", "peak RSS", "note"], rows))


if __name__ == "__main__":
    main()
