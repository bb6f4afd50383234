"""`make bench-profile`: py-spy profiles of ingest and of a drain job under load.

- ingest: one gunicorn worker of the service (`-c deploy/gunicorn.conf.py`, Redis with
  `appendfsync always`) while wrk posts one report per request, then 100-report buckets;
  sampled with `py-spy record --gil`, i.e. only while a thread holds the GIL: CPU spent in
  Python, not threads waiting for Redis or a socket.
- drain: `workers.drain.drain` over single-report envelopes in one lane (bench.legs).
- deliver: `workers.deliver.deliver` over deliveries to bench/consumer.py.

Collapsed stacks go to var/bench/profile-<name>.txt (feed them to any flamegraph tool); the
top frames by own time and by total time are printed, as summarised in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import orjson

from bench.legs import sample_report
from bench.procs import BIN, ROOT, children_of
from bench.run import CONSUMER, INGEST_PATH, OUT, PLANS, TOKEN, Run, routes_text

SECONDS = 10
RATE = 250  # samples a second


def py_spy() -> str:
    found = shutil.which("py-spy", path=str(BIN)) or shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: `make bench-profile` installs it into the virtualenv")
    return found


def record(out: Path, target: list[str], gil: bool = False) -> None:
    args = [py_spy(), "record", "-r", str(RATE), "-f", "raw", "-o", str(out), "--nonblocking"]
    if gil:
        args.append("--gil")
    subprocess.run([*args, *target], cwd=ROOT, capture_output=True, timeout=900, check=True)


def summarize(path: Path, top: int = 15) -> str:
    """Own time and total time per frame, as shares of all samples."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for frame in set(frames):
            total[frame] += n
    lines = [f"{path.name}: {samples} samples", "  own time:"]
    lines += [f"    {100 * n / samples:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("  total time (frames of app/, workers/ and the libraries they call):")
    interesting = [(f, n) for f, n in total.most_common() if not f.startswith(("<module>", "_run", "Thread"))]
    lines += [f"    {100 * n / samples:5.1f}%  {frame}" for frame, n in interesting[:top * 2]]
    return "\n".join(lines)


def profile_ingest(run: Run) -> list[Path]:
    server = run.redis_server("profile")
    outs = []
    try:
        port = run.gunicorn("web-profile", "app:create_app()", REDIS_URL=server.url)
        worker = children_of(run.procs.pid("web-profile"))[0]
        body = OUT / "report.json"
        body.write_bytes(orjson.dumps({"results": [sample_report(1, "profile")]}))
        loads = {
            "ingest-single": ("post.lua", f"http://127.0.0.1:{port}{INGEST_PATH}",
                              {"BENCH_BODY": str(body)}),
            "ingest-bucket": ("buckets.lua", f"http://127.0.0.1:{port}",
                              {"BENCH_TOTAL": 10**9, "BENCH_BUCKET": 100, "BENCH_QUERY": f"?token={TOKEN}"}),
        }
        for name, (script, url, env) in loads.items():
            load = threading.Thread(target=run.wrk, args=(script, url, SECONDS + 2), kwargs=env)
            load.start()
            out = OUT / f"profile-{name}.txt"
            record(out, ["-d", str(SECONDS), "-p", str(worker)], gil=True)
            load.join(SECONDS + 120)
            outs.append(out)
    finally:
        run.procs.stop("web-profile")
        server.stop()
    return outs


def profile_workers(run: Run) -> list[Path]:
    server = run.redis_server("profile-workers")
    ids = OUT / "ids-profile"
    shutil.rmtree(ids, ignore_errors=True)
    ids.mkdir(parents=True)
    try:
        run.leg("fill-lane", "--redis", server.url, "--n", "20000", "--prefix", "p")
        drain = OUT / "profile-drain.txt"
        record(drain, ["--", sys.executable, "-m", "bench.legs", "drain", "--redis", server.url])
        port = run.consumer("consumer-profile", ids)
        routes = OUT / "routes-profile.yml"
        routes.write_text(routes_text(f"http://127.0.0.1:{port}/{CONSUMER}"))
        run.leg("fill-outbox", "--redis", server.url, "--n", "10000", "--consumer", CONSUMER)
        deliver = OUT / "profile-deliver.txt"
        env = run.env(REDIS_URL=server.url, ROUTES_FILE=str(routes))
        subprocess.run([py_spy(), "record", "-r", str(RATE), "-f", "raw", "-o", str(deliver), "--",
                        sys.executable, "-m", "bench.legs", "deliver", "--redis", server.url,
                        "--consumer", CONSUMER],
                       cwd=ROOT, env=env, capture_output=True, timeout=900, check=True)
    finally:
        run.procs.stop("consumer-profile")
        server.stop()
    return [drain, deliver]


def main() -> int:
    run = Run(PLANS["short"], None)
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        outs = profile_ingest(run) + profile_workers(run)
    finally:
        run.procs.stop_all()
    for out in outs:
        print(summarize(out), "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
