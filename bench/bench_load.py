"""Load and fault run of the playground on loopback: `python -m bench.bench_load`.

Load: for each number of heavy jobs at once (--jobs-list, default 1 then 2: the baseline of the same
run), a fresh server (python -m bench.bench_load --serve) on 127.0.0.1, 16 concurrent gradio_client
clients each upload a photo (the three of ../shared/data/images in turn) and press Run, then 4 of them
process a short video (the dancer example, 1 s). Every job must complete or be refused with a sentence;
the table gives median and max latency (upload to result), the largest queue position a client was
told, and the server's memory (resident after the warm-up, peak = VmHWM).

Faults (one more server, --max-sessions 6): a client saves a result first; then a photo job fails
mid-way (the server's pipeline raises MemoryError after the detections, for photos 333 px wide: the
--serve --inject-faults hook of this script, not of the app), a client disconnects mid-video (the time
until its run stops and until its session's files are gone is measured), a client drops mid-upload,
and more clients than the cap arrive. After each, a normal photo job must still
succeed, and the first client's downloads must be byte-identical and still load (JSON, NPZ, GLB).

Bounded: every client has a timeout (--timeout-s), the whole run takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from bench.common import DATA_DIR, machine_description, markdown_table  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHOTOS = [DATA_DIR / "images" / n for n in ("lunge.jpg", "astronaut.png", "grace_hopper.jpg")]
VIDEO = REPO / "assets" / "examples" / "dancer.mp4"
FAULT_WIDTH = 333
"""Photos this wide fail mid-way on a server started with --inject-faults."""
RUN_ARGS = (True, None, "embedded", "embedded", "embedded", "embedded", "anny")
"""The Run button's inputs: auto, field of view (automatic), the backends."""
RUN_API = "/fn_5"
L_GRACE_WAIT_S = 45.0
"""Closed tabs' sessions end within the grace period (30 s) and a sweep (10 s)."""
VIDEO_ARGS = (2, 0, 1.0, 640, True, 4)
"""Video tab: stride 2, from 0 to 1 s, 640 px, smoothing, 4 people at most."""


# ------------------------------------------------------------------------------------ the server


def serve(port: int, jobs: int, max_sessions: int, inject_faults: bool) -> None:
    """The playground as app.main serves it (warm-up, lifecycle), with an optional fault hook."""
    from app.native_logs import native_logs_hidden
    from app.ui import handlers as H
    from app.ui import lifecycle as L
    from app.ui.page import build_demo

    with native_logs_hidden(True):
        engine = FaultyEngine(workers=jobs) if inject_faults else H.Engine(workers=jobs)
        engine.warmup()
        demo = build_demo(engine, lifecycle=L.Lifecycle(max_sessions=max_sessions))
        demo.queue(default_concurrency_limit=1, max_size=64)
        print(f"READY {rss_mb(os.getpid()):.0f}", flush=True)
        demo.launch(server_name="127.0.0.1", server_port=port, show_error=True, ssr_mode=False, quiet=True)


def _faulty_engine_class() -> type:
    import contextlib

    from app.ui import handlers as H

    class _FaultyPipeline:
        def __init__(self, inner: Any) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

        def run(self, image: Any, *args: Any, on_stage: Any = None, **kwargs: Any) -> Any:
            if image.width != FAULT_WIDTH:
                return self._inner.run(image, *args, on_stage=on_stage, **kwargs)

            def stage(name: str, frame: Any) -> None:
                if on_stage is not None:
                    on_stage(name, frame)
                if name == "detections":
                    raise MemoryError("injected: out of memory in the body fit")

            return self._inner.run(image, *args, on_stage=stage, **kwargs)

    class FaultyEngine(H.Engine):
        @contextlib.contextmanager
        def acquire(self, config: Any) -> Any:
            with super().acquire(config) as pipeline:
                yield _FaultyPipeline(pipeline)

    return FaultyEngine


def FaultyEngine(workers: int) -> Any:  # noqa: N802 - a class made on demand (the app loads lazily)
    return _faulty_engine_class()(workers=workers)


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A --serve subprocess on a free loopback port."""

    def __init__(self, jobs: int, max_sessions: int = 24, inject_faults: bool = False) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        cmd = [sys.executable, "-m", "bench.bench_load", "--serve", "--port", str(self.port), "--jobs", str(jobs),
               "--max-sessions", str(max_sessions)] + (["--inject-faults"] if inject_faults else [])  # fmt: skip
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - read when the server stops
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=self.log, text=True)
        t = time.perf_counter()
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("READY"):
            self.log.seek(0)
            raise RuntimeError(f"the server did not start: {line!r}\n{self.log.read()[-3000:]}")
        self.warm_rss_mb = float(line.split()[1])
        self.startup_s = time.perf_counter() - t
        import httpx

        for _ in range(200):
            try:
                httpx.get(self.url + "config", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.1)

    def peak_mb(self) -> float:
        return rss_mb(self.proc.pid, "VmHWM")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.seek(0)
        return self.log.read()


# ------------------------------------------------------------------------------------ the clients


@dataclass
class Outcome:
    kind: str
    """'photo' or 'video'."""
    ok: bool
    latency_s: float
    message: str = ""
    """The refusal or error text (empty when it completed)."""
    max_rank: int = 0
    """The largest queue position the client was told (0: it never waited)."""
    files: list[dict] = field(default_factory=list)


def client(url: str) -> Any:
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def _wait(job: Any, timeout_s: float) -> tuple[Any, int]:
    """The job's result and the largest queue position it was told while waiting."""
    t = time.perf_counter()
    rank = 0
    while not job.done():
        status = job.status()
        rank = max(rank, int(getattr(status, "rank", 0) or 0))
        if time.perf_counter() - t > timeout_s:
            job.cancel()
            raise TimeoutError(f"no result after {timeout_s:.0f} s")
        time.sleep(0.1)
    return job.result(), rank


def photo_job(c: Any, photo: Path, timeout_s: float) -> Outcome:
    from gradio_client import handle_file

    t = time.perf_counter()
    try:
        c.predict(handle_file(str(photo)), api_name="/upload")
        (_, status, files), rank = _wait(c.submit(*RUN_ARGS, api_name=RUN_API), timeout_s)
    except Exception as err:  # noqa: BLE001 - a refusal or a failure is an outcome to report
        return Outcome("photo", False, time.perf_counter() - t, str(err) or type(err).__name__)
    ok = "**Done**" in str(status)
    return Outcome("photo", ok, time.perf_counter() - t, "" if ok else str(status)[:200], rank, list(files or []))


def video_job(c: Any, timeout_s: float) -> Outcome:
    from gradio_client import handle_file

    t = time.perf_counter()
    try:
        (_, status, files), rank = _wait(c.submit(handle_file(str(VIDEO)), *VIDEO_ARGS, api_name="/run"), timeout_s)
    except Exception as err:  # noqa: BLE001
        return Outcome("video", False, time.perf_counter() - t, str(err) or type(err).__name__)
    ok = "**Done**" in str(status)
    return Outcome("video", ok, time.perf_counter() - t, "" if ok else str(status)[:200], rank, list(files or []))


def load_phase(server: Server, n_clients: int, n_video: int, timeout_s: float) -> list[Outcome]:
    clients = [client(server.url) for _ in range(n_clients)]
    out: list[Outcome] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        o = photo_job(clients[i], PHOTOS[i % len(PHOTOS)], timeout_s)
        with lock:
            out.append(o)

    def video(i: int) -> None:
        o = video_job(clients[i], timeout_s)
        with lock:
            out.append(o)

    for target, n in ((one, n_clients), (video, n_video)):
        threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout_s + 30)
    for c in clients:
        c.close()
    return out


def summarise(jobs: int, server: Server, outcomes: list[Outcome], wall_s: float) -> list[list[object]]:
    rows = []
    for kind in ("photo", "video"):
        sel = [o for o in outcomes if o.kind == kind]
        lat = [o.latency_s for o in sel if o.ok]
        refused = [o for o in sel if not o.ok]
        rows.append([jobs, kind, len(sel), len(lat), len(refused),
                     f"{statistics.median(lat):.1f}" if lat else "–", f"{max(lat):.1f}" if lat else "–",
                     max((o.max_rank for o in sel), default=0), f"{server.warm_rss_mb:.0f}",
                     f"{server.peak_mb():.0f}", f"{wall_s:.0f}"])  # fmt: skip
        for o in refused:
            print(f"  {kind} not done ({o.latency_s:.1f} s): {o.message}", flush=True)
    return rows


# ---------------------------------------------------------------------------------------- faults


def small_photo(width: int) -> Path:
    import cv2

    img = cv2.imread(str(PHOTOS[0]))
    h = round(img.shape[0] * width / img.shape[1])
    path = Path(tempfile.mkdtemp(prefix="bench-load-")) / f"lunge_{width}.jpg"
    cv2.imwrite(str(path), cv2.resize(img, (width, h), interpolation=cv2.INTER_AREA))
    return path


def fetch_all(url: str, files: list[dict]) -> dict[str, bytes]:
    import httpx

    with httpx.Client(base_url=url, timeout=30) as http:
        return {Path(f["path"]).name: http.get(f["url"]).content for f in files}


def valid(name: str, data: bytes) -> bool:
    import numpy as np

    try:
        if name.endswith(".json"):
            return isinstance(json.loads(data), dict)
        if name.endswith(".npz"):
            return len(np.load(io.BytesIO(data)).files) > 0
        if name.endswith(".glb"):
            return data[:4] == b"glTF"
        return len(data) > 0
    except Exception:  # noqa: BLE001 - invalid is the answer
        return False


def drop_mid_upload(url: str) -> None:
    """POST an upload announcing 8 MB, send 1 MB of it, then close the connection."""
    host, port = url.split("//")[1].strip("/").split(":")
    boundary = "benchboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"half.mp4\"\r\n"
            "Content-Type: video/mp4\r\n\r\n").encode()  # fmt: skip
    with socket.create_connection((host, int(port))) as s:
        s.sendall((f"POST /gradio_api/upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: {8 << 20}\r\n"
                   f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n").encode() + head)  # fmt: skip
        s.sendall(os.urandom(1 << 20))


def fault_phase(timeout_s: float) -> list[list[object]]:
    server = Server(jobs=2, max_sessions=6, inject_faults=True)
    rows: list[list[object]] = []
    good = small_photo(480)
    try:
        keeper = client(server.url)
        saved = photo_job(keeper, good, timeout_s)
        before = fetch_all(server.url, saved.files)
        digest = {n: hashlib.sha256(b).hexdigest() for n, b in before.items()}

        def check(what: str, outcome: str) -> None:
            c = client(server.url)
            after_job = photo_job(c, good, timeout_s)
            c.close()
            again = fetch_all(server.url, saved.files)
            kept = all(hashlib.sha256(again.get(n, b"")).hexdigest() == d for n, d in digest.items())
            ok_files = all(valid(n, b) for n, b in again.items())
            rows.append([what, outcome, "yes" if server.alive() and after_job.ok else f"NO: {after_job.message}",
                         f"{after_job.latency_s:.1f}", f"{len(digest)} files, {'unchanged' if kept else 'CHANGED'}, "
                         f"{'valid' if ok_files else 'INVALID'}"])  # fmt: skip

        # 1. a job that fails mid-way (out of memory in the fit)
        c = client(server.url)
        failed = photo_job(c, small_photo(FAULT_WIDTH), timeout_s)
        c.close()
        check("photo job fails mid-way (MemoryError after the detections)",
              "error shown: " + (failed.message[:90] if not failed.ok else "NONE (the job passed)"))
        # 2. a client that disconnects mid-video
        from gradio_client import handle_file

        from app.ui.lifecycle import sessions_root

        c = client(server.url)
        job = c.submit(handle_file(str(VIDEO)), 1, 0, 0, 1280, True, 4, api_name="/run")
        time.sleep(4.0)
        started = job.status().code.name
        c.close()  # the browser tab closes: its streams end, and so does its session
        t = time.perf_counter()
        session_glob = f"srv-{server.proc.pid}-*/hmr-playground-video-*"
        stopped_s = freed_s = None
        while time.perf_counter() - t < 90 and freed_s is None:
            if stopped_s is None and not any(sessions_root().glob(session_glob + "/run-*/.outputs.tmp-*")):
                stopped_s = time.perf_counter() - t  # the run aborted: its partial outputs are dropped
            if not any(sessions_root().glob(session_glob)):
                freed_s = time.perf_counter() - t
            time.sleep(0.2)
        check("client disconnects mid-video",
              f"job {started} after 4 s; the run stopped "
              + (f"{stopped_s:.1f} s" if stopped_s is not None else "NOT in 90 s")
              + " after the disconnect, the session was freed "
              + (f"{freed_s:.1f} s after (grace period 30 s)" if freed_s is not None else "NOT in 90 s"))
        # 3. a client that drops mid-upload
        drop_mid_upload(server.url)
        check("client drops mid-upload (1 of 8 MB sent)", "connection closed")
        # 4. more clients than the cap
        from gradio_client import handle_file as hf

        held, refusal = [], ""
        for _ in range(8):
            h = client(server.url)
            held.append(h)
            try:
                h.predict(hf(str(good)), api_name="/upload")
            except Exception as err:  # noqa: BLE001 - the refusal is what we look for
                refusal = str(err)
                break
        n_ok = len(held) - (1 if refusal else 0)
        for h in held:
            h.close()
        time.sleep(L_GRACE_WAIT_S)  # their sessions end after the grace period of closed tabs
        check("clients beyond a cap of 6 live sessions",
              f"{n_ok} more admitted, then refused: {refusal[:110] or '(none refused)'}")
        keeper.close()
    finally:
        log = server.stop()
    tracebacks = len(re.findall(r"Traceback \(most recent call last\)", log))
    print(f"server log: {tracebacks} traceback(s) logged (the injected fault is expected to log one)", flush=True)
    return rows


# ------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_load", description=__doc__.splitlines()[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=7860, help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=2, help=argparse.SUPPRESS)
    parser.add_argument("--max-sessions", type=int, default=24, help=argparse.SUPPRESS)
    parser.add_argument("--inject-faults", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--jobs-list", default="1,2", help="heavy jobs at once to compare (default 1,2)")
    parser.add_argument("--timeout-s", type=float, default=300.0, help="per client job")
    parser.add_argument("--no-faults", action="store_true")
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.port, args.jobs, args.max_sessions, args.inject_faults)
        return 0

    print(machine_description(), flush=True)
    print(f"load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    rows = []
    for jobs in (int(j) for j in args.jobs_list.split(",") if j.strip()):
        server = Server(jobs=jobs)
        print(f"jobs={jobs}: server warm in {server.startup_s:.0f} s ({server.warm_rss_mb:.0f} MB)", flush=True)
        t = time.perf_counter()
        try:
            outcomes = load_phase(server, args.clients, args.videos, args.timeout_s)
            rows += summarise(jobs, server, outcomes, time.perf_counter() - t)
        finally:
            log = server.stop()
        if any(not o.ok for o in outcomes):
            tracebacks = log.split("Traceback (most recent call last)")[1:]
            print("server tracebacks:\n" + "\n---\n".join(tb[-2500:] for tb in tracebacks[-3:]), flush=True)
        print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    print()
    if rows:
        print(markdown_table(["heavy jobs at once", "job", "clients", "done", "refused/failed", "median latency (s)",
                              "max latency (s)", "max queue position shown", "server MB after warm-up",
                              "server peak MB", "phase wall (s)"], rows))  # fmt: skip
    if not args.no_faults:
        print()
        fault_rows = fault_phase(args.timeout_s)
        print(markdown_table(["fault", "what the client saw", "app still serves (next photo job ok)",
                              "next job latency (s)", "downloads saved before"], fault_rows))  # fmt: skip
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
