"""Start the playground: `python -m app.main` serves the page on http://127.0.0.1:7860.

The models are warmed up (loaded and run once on an example) before the server opens, so the first
photo a user uploads gets its result fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: as the CLI (see app/cli.py)

from app import serve_options as SO
from app.native_logs import native_logs_hidden
from app.ui import handlers as H
from pipelines.io.limits import MAX_UPLOAD_BYTES  # show_error=False below: only app.ui.guard's sentences show

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
QUEUE_MAX_SIZE = 64


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m app.main", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--share", action="store_true", help="also open a public Gradio share link (off by default)")
    parser.add_argument("--no-warmup", action="store_true", help="skip loading the models before serving")
    parser.add_argument("--verbose", action="store_true",
                        help="let MediaPipe / TFLite print their own log lines (hidden by default, as in the CLI)")
    SO.add_arguments(parser)  # --listen, --auth, --auth-file, --max-sessions, --idle-minutes, --jobs
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with native_logs_hidden(not args.verbose):
        return _serve(args)


def _serve(args: argparse.Namespace) -> int:
    from app.ui import lifecycle as L
    from app.ui.page import CSS, build_demo

    try:
        access = SO.resolve_access(args.host, args.listen, args.auth, args.auth_file, share=args.share)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for note in access.warnings:
        print(note, file=sys.stderr, flush=True)
    stale = L.sweep_stale_dirs()  # session folders left by a server that crashed
    if stale:
        print(f"Removed {len(stale)} session folder(s) left by a previous run.", flush=True)
    engine = H.Engine(workers=args.jobs) if args.jobs else H.default_engine()
    if not args.no_warmup:
        print("Warming up the models (loading them and running one example)...", flush=True)
        t = time.perf_counter()
        try:
            engine.warmup()
        except Exception as err:  # noqa: BLE001 - serve anyway; the first run will show the error
            print(f"Warm-up failed ({type(err).__name__}: {err}); the first run will load the models.", flush=True)
        else:
            print(f"Warm-up done in {time.perf_counter() - t:.1f} s.", flush=True)
    demo = build_demo(engine, lifecycle=L.Lifecycle(idle_timeout_s=60 * args.idle_minutes,
                                                    max_sessions=args.max_sessions))  # fmt: skip
    demo.queue(default_concurrency_limit=1, max_size=QUEUE_MAX_SIZE)
    host_for_url = "127.0.0.1" if access.host in ("0.0.0.0", "::") else access.host
    print(f"HMR playground: http://{host_for_url}:{args.port}", flush=True)
    demo.launch(server_name=access.host, server_port=args.port, share=args.share, show_error=False,
                max_file_size=MAX_UPLOAD_BYTES, inbrowser=False, ssr_mode=False, css=CSS,
                auth=access.auth)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
