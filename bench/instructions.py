"""`make bench-instructions`: CPU instructions per ingest request, counted by valgrind.

On this VM two identical timing runs differ by up to ±50%, so a change worth 5% cannot be seen
in requests/s. `valgrind --tool=callgrind` counts the instructions a process executes: the
same code and input give the same count, whatever else the machine does. Each request runs
through the WSGI app in this process, against a real redis-server (started here, stopped by
PID; its own instructions are not counted), as `app` runs under gunicorn but without the
HTTP server. The figure is (count of `--hi` requests − count of `--lo`) / (hi − lo), so
start-up cancels out.

    python -m bench.instructions                      # bare Flask, hand-off, one report, a bucket
    python -m bench.instructions --only ours-1        # one of them
    python -m bench.instructions --tree /tmp/before   # another checkout of the service, same input

Not a bar: instructions are not time (cache misses and waits are not in them), but a stage
that runs fewer instructions costs less wherever it runs.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "bench-token-0123456789abcdef"
CASES = {"bare": ("bare", 1), "handoff": ("handoff", 1), "ours-1": ("ours", 1), "ours-100": ("ours", 100)}


def serve(app_name: str, reports: int, count: int) -> None:
    """Run inside valgrind: `count` POSTs of a body of `reports` reports through the app."""
    import gc
    import logging

    import orjson

    from bench.legs import sample_report

    if app_name == "bare":
        from bench.bare_app import app

        path = "/"
    elif app_name == "handoff":  # the reference of the single-report bar: the durable write alone
        from bench.handoff_app import app

        path = "/"
    else:
        from app import create_app, logs

        app = create_app()
        logs.configure()
        path = "/infobip/dlr"
    for handler in logging.getLogger().handlers:  # a log line is written, to nowhere
        handler.stream = open(os.devnull, "w")  # noqa: SIM115
    body = orjson.dumps({"results": [sample_report(n, "i") for n in range(reports)]})
    gc.freeze()  # as deploy/gunicorn.conf.py does once a worker has loaded the app

    def start_response(status: str, headers: list, exc_info: object = None) -> None:
        if not status.startswith("200"):
            raise SystemExit(f"answer {status}")

    for _ in range(count):
        environ = {
            "REQUEST_METHOD": "POST", "PATH_INFO": path, "QUERY_STRING": f"token={TOKEN}",
            "RAW_URI": f"{path}?token={TOKEN}",  # as gunicorn sets it
            "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8080", "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1:8080", "REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
            "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr,
            "wsgi.multithread": True, "wsgi.multiprocess": True, "wsgi.run_once": False,
        }
        answer = app(environ, start_response)
        b"".join(answer)
        answer.close()


def count_instructions(tree: Path, redis_url: str, app_name: str, reports: int, count: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        env = {**os.environ, "PYTHONPATH": str(tree), "REDIS_URL": redis_url, "WEBHOOK_TOKEN": TOKEN,
               "PYTHONHASHSEED": "0"}  # the same dict layouts in every run
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        # This file, whatever `tree` is: the app and bench.legs come from `tree` (PYTHONPATH).
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                        __file__, "--serve", app_name, str(reports), str(count)],
                       cwd=tree, env=env, check=True, capture_output=True, timeout=1800)
        return int(re.search(r"^summary: (\d+)$", out.read_text(), re.M).group(1))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(CASES))
    parser.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose app is counted")
    parser.add_argument("--lo", type=int, default=50)
    parser.add_argument("--hi", type=int, default=300)
    parser.add_argument("--serve", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve[0], int(args.serve[1]), int(args.serve[2]))
        return 0
    if not shutil.which("valgrind"):
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    sys.path.insert(0, str(ROOT))
    from tools.redis_server import EmbeddedRedis

    with tempfile.TemporaryDirectory() as data, EmbeddedRedis(Path(data), fsync="everysec") as server:
        for name, (app_name, reports) in CASES.items():
            if args.only and name != args.only:
                continue
            scale = 10 if reports > 1 else 1  # a bucket costs ~30 requests: fewer of them
            lo, hi = args.lo // scale, args.hi // scale
            low = count_instructions(args.tree, server.url, app_name, reports, lo)
            high = count_instructions(args.tree, server.url, app_name, reports, hi)
            print(f"{name:9} {(high - low) / (hi - lo):>12,.0f} instructions per request "
                  f"({reports} report{'s' if reports > 1 else ''}; {args.tree})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
