"""An A/B of gunicorn apps against bare Flask, one report per request, as `make bench` runs them.

Requests/s on this VM drift by ±50% within minutes, so a change is judged by rounds that
alternate with bare Flask in one run: each round's ratio to the bare round beside it, and the
median of those ratios. The figures of docs/BENCHMARKS.md's "Session 5" came from this.

    python -m bench.ab everysec nowrite=bench.nowrite_app:app handoff=bench.handoff_app:app \\
        'ours=app:create_app()'
    python -m bench.ab always --rounds 8 'before=app:create_app()' 'after=app:create_app()' \\
        --env after:SOME_SWITCH=1        # a patch under test, switched on for one app only
    python -m bench.ab always --against handoff handoff=bench.handoff_app:app 'ours=app:create_app()' \\
        --connections 64 --env handoff:WEB_THREADS=32 --env ours:WEB_THREADS=32   # issue 17's bar

An app from bench.run's REFERENCES is POSTed at its own path, any other at the ingest path.
Same gunicorn settings, Redis and wrk as `make bench`; every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import orjson
import redis

from bench.legs import sample_report
from bench.run import INGEST_PATH, OUT, PLANS, REFERENCES, Run, redis_writes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ab")
    parser.add_argument("fsync", choices=["always", "everysec"])
    parser.add_argument("apps", nargs="+", metavar="NAME=APP",
                        help="a gunicorn app, e.g. 'ours=app:create_app()'")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=3)
    parser.add_argument("--env", action="append", default=[], metavar="NAME:KEY=VALUE")
    parser.add_argument("--connections", type=int, default=0, help="wrk -c (default: the threads)")
    parser.add_argument("--against", default="bare", metavar="NAME",
                        help="the app each ratio is to (issue 17's bar: handoff)")
    args = parser.parse_args(argv)
    apps = dict(spec.split("=", 1) for spec in args.apps)
    env: dict[str, dict[str, str]] = {name: {} for name in apps}
    for spec in args.env:
        name, setting = spec.split(":", 1)
        key, value = setting.split("=", 1)
        env[name][key] = value
    paths = {app: path for app, path, _title in REFERENCES.values()}

    run = Run(PLANS["short"], None)
    server = run.redis_server("ab", fsync=args.fsync)
    r = redis.Redis.from_url(server.url)
    try:
        urls = {"bare": f"http://127.0.0.1:{run.gunicorn('bare', 'bench.bare_app:app')}/"}
        for name, app in apps.items():
            port = run.gunicorn(name, app, REDIS_URL=server.url, **env[name])
            urls[name] = f"http://127.0.0.1:{port}{paths.get(app, INGEST_PATH)}"
        body = OUT / "report.json"
        body.write_bytes(orjson.dumps({"results": [sample_report(1, "single")]}))
        one = {"BENCH_BODY": str(body)}
        for url in urls.values():  # warm them all
            run.wrk("post.lua", url, 2, connections=args.connections, **one)
        rps: dict[str, list[float]] = {name: [] for name in urls}
        per_write: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                writes = redis_writes(r)
                result = run.wrk("post.lua", url, args.seconds, connections=args.connections, **one)
                rps[name].append(result["rps"])
                if name != "bare" and (written := redis_writes(r) - writes):  # bare writes nothing
                    per_write[name].append(result["requests"] / written)
            r.flushall()
        print(f"{args.fsync}, {args.rounds} alternating rounds of {args.seconds:g} s, wrk "
              f"-c{args.connections or run.connections}; ratio = each round's req/s / the "
              f"{args.against} round beside it")
        for name in urls:
            ratios = [a / b for a, b in zip(rps[name], rps[args.against], strict=True)]
            shared = per_write[name] and f"  {statistics.median(per_write[name]):.2f} requests per EVAL"
            print(f"{name:10} {statistics.median(rps[name]):8,.0f} req/s  "
                  f"ratio {statistics.median(ratios):.3f} (rounds {', '.join(f'{x:.2f}' for x in ratios)})"
                  f"{shared or ''}", flush=True)
    finally:
        run.procs.stop_all()
        r.close()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
