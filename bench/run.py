"""`make bench` / `make bench-full`: every bar of docs/BENCHMARKS.md, measured in one run.

Each bar is a ratio to a baseline measured in the same run, or a count, because absolute
figures drift on a shared machine. The load comes from separate processes (wrk, or one of the
`bench.legs` processes); the service runs exactly as in production (Procfile commands,
`-c deploy/gunicorn.conf.py`, Redis with AOF and `appendfsync always`). Every process started
here is stopped by PID in a `finally` block; every wait is bounded; traffic only to 127.0.0.1.

Prints one PASS/FAIL line per bar with its figure and baseline, and writes var/bench/results.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import redis

from bench import optout, rebased
from bench import pull as bench_pull
from bench.cluster import cluster as bench_cluster
from bench.legs import sample_report
from bench.procs import BIN, ROOT, Procs, parents, rss_kib, tree, tree_rss_mib
from bench.smpp import smpp as bench_smpp
from tools.redis_server import EmbeddedRedis, find_binary, free_port
from tools.wait import wait_for

OUT = ROOT / "var" / "bench"
LUA = ROOT / "bench" / "wrk"
TOKEN = "bench-token-0123456789abcdef"
INGEST_PATH = f"/infobip/dlr?token={TOKEN}"
# The single-report bar's reference apps (not baselines): name -> (gunicorn app, the path each
# is POSTed, what it is). bench.run and bench.cpu run each beside bare Flask and the service.
REFERENCES = {
    "lpush": ("bench.lpush_app:app", "/", "LPUSH of the body only"),
    "handoff": ("bench.handoff_app:app", "/", "the service's hand-off only (group commit, no validation)"),
    "nowrite": ("bench.nowrite_app:app", INGEST_PATH,
                "the service without its Redis write (bench/nowrite_app.py)"),
}
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONSUMER = "bench"
EVENT_ID_BYTES = len("evt_") + 32 + 1  # one line of a consumer's id file


@dataclass(frozen=True)
class Plan:
    """How long and how big: `short` for `make bench` (< 5 minutes), `full` for the 1M run."""

    name: str
    seconds: float  # one wrk measurement
    rounds: int  # bare/ours alternations of the ingest bars
    latency_seconds: float
    worker_jobs: int
    fanout_posts: int
    scale_small: int  # reports
    scale_big: int
    quiet_wait: float  # seconds to wait for the 1-minute load average to fall below 1.0
    paired_rounds: int = 6  # hand-off/service pairs per connection count of issue 17's bar (bench/rebased.py)


PLANS = {
    "short": Plan("short", seconds=5, rounds=3, latency_seconds=10, worker_jobs=2000, fanout_posts=5000,
                  scale_small=2_000, scale_big=20_000, quiet_wait=30),
    "full": Plan("full", seconds=10, rounds=3, latency_seconds=30, worker_jobs=5000, fanout_posts=10_000,
                 scale_small=100_000, scale_big=1_000_000, quiet_wait=300, paired_rounds=12),
}


@dataclass
class Bar:
    key: str
    title: str
    figure: float
    unit: str
    bar: str  # the threshold, as text
    passed: bool
    baseline: str = ""
    extra: bool = False  # an informational line (e.g. appendfsync everysec), not a bar
    details: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        verdict = "INFO" if self.extra else ("PASS" if self.passed else "FAIL")
        base = f"; baseline {self.baseline}" if self.baseline else ""
        return f"{verdict:4} {self.title}: {self.figure:,.2f} {self.unit}{base} [bar {self.bar}]"


class Run:
    def __init__(self, plan: Plan, only: set[str] | None) -> None:
        self.plan = plan
        self.only = only
        self.bars: list[Bar] = []
        self.raw: dict[str, Any] = {}
        self.procs = Procs(OUT / "logs")
        self.web_concurrency = os.environ.get("WEB_CONCURRENCY", str(os.cpu_count() or 2))
        self.web_threads = os.environ.get("WEB_THREADS", "4")
        self.connections = int(os.environ.get("BENCH_CONNECTIONS", "0")) or (
            int(self.web_concurrency) * int(self.web_threads))
        self.loads: dict[str, list[float]] = {}

    def wants(self, section: str) -> bool:
        return self.only is None or section in self.only

    def add(self, bar: Bar) -> None:
        self.bars.append(bar)
        print(bar.line(), flush=True)

    def note_load(self, section: str) -> None:
        self.loads[section] = list(os.getloadavg())

    # --- processes -------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": os.environ.get("HOME", str(ROOT)),
            "LANG": "C.UTF-8",
            "PYTHONPATH": str(ROOT),
            "HOST": "127.0.0.1",
            "WEB_CONCURRENCY": self.web_concurrency,
            "WEB_THREADS": self.web_threads,
            "WEBHOOK_TOKEN": TOKEN,
        }
        env.update(extra)
        return env

    def redis_server(self, name: str, fsync: str = "always") -> EmbeddedRedis:
        data = OUT / f"redis-{name}"
        shutil.rmtree(data, ignore_errors=True)
        return EmbeddedRedis(data, fsync=fsync).start()

    def gunicorn(self, name: str, app: str, **env: str) -> int:
        port = free_port()
        args = [str(BIN / "gunicorn"), "-c", "deploy/gunicorn.conf.py", app]
        home = OUT / "home" / name  # gunicorn's control socket lives in $HOME: one per server
        home.mkdir(parents=True, exist_ok=True)
        self.procs.start(name, args, self.env(PORT=str(port), HOME=str(home), **env))
        path = "/healthz"
        wait_for(lambda: _answers(port, path), 60, f"{name} to answer on port {port}")
        return port

    def ingest_apps(self, redis_url: str, service: str) -> dict[str, str]:
        """Start bare Flask, the REFERENCES and the service (process name `service`); the URL
        each is POSTed at, in the order their rounds alternate."""
        urls = {"bare": f"http://127.0.0.1:{self.gunicorn('bare', 'bench.bare_app:app')}/"}
        for name, (app, path, _title) in REFERENCES.items():
            urls[name] = f"http://127.0.0.1:{self.gunicorn(name, app, REDIS_URL=redis_url)}{path}"
        port = self.gunicorn(service, "app:create_app()", REDIS_URL=redis_url)
        urls["ours"] = f"http://127.0.0.1:{port}{INGEST_PATH}"
        return urls

    def consumer(self, name: str, ids: Path) -> int:
        """bench/consumer.py: records every delivery's webhook-id in `ids`."""
        port = free_port()
        args = [sys.executable, "-m", "bench.consumer", "--port", str(port), "--ids-dir", str(ids)]
        self.procs.start(name, args, self.env())
        wait_for(lambda: _answers(port, "/"), 30, f"{name} to answer on port {port}")
        return port

    def procfile(self, redis_url: str) -> dict[str, list[str]]:
        """The Procfile's worker commands with this run's Redis and the venv's executables."""
        commands = {}
        for line in (ROOT / "Procfile").read_text().splitlines():
            if line.strip():
                name, command = line.split(":", 1)
                args = [redis_url if w == '"$REDIS_URL"' or w == "$REDIS_URL" else w for w in command.split()]
                args = [a.strip('"') for a in args]
                args[0] = str(BIN / args[0])
                commands[name.strip()] = args
        return commands

    def wrk(self, script: str, url: str, seconds: float, done_dir: Path | None = None,
            connections: int = 0, **env: Any) -> dict[str, Any]:
        """Run wrk with a bench/wrk script; its done() prints the JSON line returned here. With
        `done_dir` (buckets.lua) wrk is ended with SIGINT as soon as its thread says it is done."""
        wrk = shutil.which("wrk")
        if not wrk:
            raise SystemExit("wrk is not installed: `apt-get install -y wrk` (make bench does it as root)")
        args = [wrk, "-t1", f"-c{connections or self.connections}", f"-d{seconds:g}s", "--timeout", "10s",
                "-s", str(LUA / script), url]
        full_env = {**os.environ, "BENCH_LUA_DIR": str(LUA), "BENCH_THREADS": "1",
                    **{k: str(v) for k, v in env.items()}}
        if done_dir is not None:
            shutil.rmtree(done_dir, ignore_errors=True)
            done_dir.mkdir(parents=True)
            full_env["BENCH_DONE_DIR"] = str(done_dir)
        proc = subprocess.Popen(args, env=full_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        try:
            if done_dir is not None:
                with contextlib.suppress(TimeoutError):
                    wait_for(lambda: any(done_dir.iterdir()) or proc.poll() is not None, seconds + 60,
                             "wrk to send its buckets", interval=0.05)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
            stdout, stderr = proc.communicate(timeout=seconds + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for line in stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                return json.loads(line.removeprefix("BENCH_JSON "))
        raise RuntimeError(f"wrk printed no result: {stdout[-2000:]} {stderr[-2000:]}")

    def leg(self, *args: str, env: dict[str, str] | None = None, timeout: float = 900) -> dict[str, Any]:
        done = subprocess.run([sys.executable, "-m", "bench.legs", *args], env=self.env(**(env or {})),
                              cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        for line in done.stdout.splitlines():
            if line.startswith("BENCH_JSON "):
                return json.loads(line.removeprefix("BENCH_JSON "))
        raise RuntimeError(f"bench.legs {args[0]} failed: {done.stdout[-2000:]} {done.stderr[-3000:]}")

    # --- 2, 3, 6: ingest -------------------------------------------------------------------

    def ingest(self) -> None:
        plan = self.plan
        server = self.redis_server("ingest")
        r = redis.Redis.from_url(server.url)
        try:
            self.note_load("ingest")
            wake = self.leg("wake", "--n", "1000")
            self.raw["wake"] = wake
            self.add(Bar(
                "machine.wake", "machine: CPU of the same work right after a 0.3 ms sleep", wake["ratio"],
                f"x back to back ({wake['after_sleep_us']:.0f} vs {wake['hot_us']:.0f} us per report "
                "validated)", "none (what a wait for Redis costs here)", True, extra=True))
            urls = self.ingest_apps(server.url, "web-ingest")
            service = urls["ours"].removesuffix(INGEST_PATH)
            body = OUT / "report.json"
            body.write_bytes(orjson.dumps({"results": [sample_report(1, "single")]}))
            one = {"BENCH_BODY": str(body)}
            for url in urls.values():  # warm them all (imports, connection pools)
                self.wrk("post.lua", url, 2, **one)
            for fsync in ("always", "everysec"):
                r.config_set("appendfsync", fsync)
                # The service without its write does not depend on fsync: measured once.
                names = [n for n in urls if fsync == "always" or n != "nowrite"]
                runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
                for _ in range(plan.rounds):  # alternate, so drift hits all of them alike
                    for name in names:
                        url = urls[name]
                        writes = redis_writes(r)
                        result = self.wrk("post.lua", url, plan.seconds, **one)
                        result["redis_writes"] = redis_writes(r) - writes
                        runs[name].append(result)
                    r.flushall()
                # Medians: a stall with the cores idle (bare Flask's rounds too) hits single rounds
                # at random on this VM and would drag a mean (docs/BENCHMARKS.md).
                rps = {name: statistics.median(x["rps"] for x in found) for name, found in runs.items()}
                errors = sum(x["errors"]["status"] + x["errors"]["timeout"] for x in runs["ours"])
                per_write = sum(x["requests"] for x in runs["ours"]) / max(1, sum(
                    x["redis_writes"] for x in runs["ours"]))
                ratio = rps["ours"] / rps["bare"]
                self.raw[f"ingest_single_{fsync}"] = runs
                self.add(Bar(
                    f"ingest.single.{fsync}", f"ingest, 1 report/request, appendfsync {fsync}", ratio,
                    f"x bare Flask ({rps['ours']:,.0f} vs {rps['bare']:,.0f} req/s, {errors} errors; "
                    f"{per_write:.2f} requests per Redis write)", ">= 0.5x (bar 2 before issue 17)",
                    ratio >= 0.5 and errors == 0, baseline=f"bare Flask {rps['bare']:,.0f} req/s", extra=True,
                    details={"rps": rps, "errors": errors, "requests_per_write": per_write}))
                for name, (_app, _path, title) in REFERENCES.items():
                    if name not in rps:
                        continue
                    self.add(Bar(
                        f"ingest.{name}.{fsync}", f"reference: {title}, appendfsync {fsync}",
                        rps[name] / rps["bare"], f"x bare Flask ({rps[name]:,.0f} req/s)", "none (reference)",
                        True, baseline=f"bare Flask {rps['bare']:,.0f} req/s", extra=True))
                if fsync == "always":
                    max_rps = rps["ours"]
            # The bar since issue 17, against the hand-off, not bare Flask: -c8, then -c64.
            r.config_set("appendfsync", "always")
            r.flushall()
            rebased.paired(self, {name: urls[name] for name in ("handoff", "ours")}, self.connections, one, r)
            for name in REFERENCES:
                self.procs.stop(name)
            rebased.wide(self, server.url, one)
            r.flushall()
            for fsync in ("always", "everysec"):
                r.config_set("appendfsync", fsync)
                runs = []
                for round_ in range(plan.rounds):
                    runs.append(self.wrk("buckets.lua", service, plan.seconds,
                                         BENCH_TOTAL=10**9, BENCH_BUCKET=100, BENCH_QUERY=f"?token={TOKEN}",
                                         BENCH_PREFIX=f"b{fsync}{round_}"))
                    r.flushall()
                rate = statistics.median(x["reports_ok"] / x["seconds"] for x in runs)
                bad = sum(x["buckets_bad"] for x in runs)
                self.raw[f"ingest_bucket_{fsync}"] = runs
                self.add(Bar(
                    f"ingest.bucket.{fsync}", f"ingest, 100-report buckets, appendfsync {fsync}", rate,
                    f"reports/s ({bad} buckets not 200)", ">= 10,000 reports/s", rate >= 10_000 and bad == 0,
                    extra=fsync != "always", details={"rate": rate, "bad": bad}))
            r.config_set("appendfsync", "always")
            target = 0.8 * max_rps
            result = self.wrk("throttled.lua", urls["ours"], plan.latency_seconds, BENCH_RATE=f"{target:.0f}",
                              **one)
            self.raw["latency"] = result
            lat = result["latency_ms"]
            self.add(Bar(
                "latency.p99", f"ingest latency at 80% of max ({target:,.0f} req/s asked, "
                f"{result['rps']:,.0f} done)", lat["p99"],
                f"ms p99 (p50 {lat['p50']:.2f}, p90 {lat['p90']:.2f}, p99.9 {lat['p999']:.2f} ms)",
                "p99 <= 25 ms", lat["p99"] <= 25 and result["errors"]["status"] == 0,
                details={"target_rps": target, **result}))
        finally:
            self.procs.stop("web-ingest")
            self.procs.stop("bare")
            for name in REFERENCES:
                self.procs.stop(name)
            r.close()
            server.stop()

    # --- 4: workers ------------------------------------------------------------------------

    def workers(self) -> None:
        n = self.plan.worker_jobs
        # Redis with appendfsync everysec here: the baseline is then RQ's own cost per job (~190/s
        # on a quiet machine, the figure the issue quotes). Under `always` RQ waits for an fsync
        # on each of its several writes per job (23-63 jobs/s measured), which would flatter the
        # ratio. The drain job itself writes one transaction per 500 reports either way.
        for fsync in ("everysec",):
            server = self.redis_server(f"workers-{fsync}", fsync=fsync)
            try:
                self.note_load(f"workers-{fsync}")
                noop = self.leg("noop", "--redis", server.url, "--n", str(n))
                self.leg("fill-lane", "--redis", server.url, "--n", str(n), "--prefix", "w")
                ours = self.leg("drain", "--redis", server.url, "--n", str(n))
            finally:
                server.stop()
            ratio = ours["rate"] / noop["rate"]
            self.raw[f"workers_{fsync}"] = {"noop": noop, "drain": ours}
            self.add(Bar(
                f"workers.{fsync}", f"worker, {n:,} single reports, appendfsync {fsync}", ratio,
                f"x RQ no-op jobs ({ours['rate']:,.0f} reports/s vs {noop['rate']:,.0f} jobs/s)",
                ">= 25x", ratio >= 25 and ours["totals"].get("new") == n,
                baseline=f"SimpleWorker {noop['rate']:,.0f} no-op jobs/s", extra=fsync != "everysec",
                details={"ours": ours, "noop": noop}))

    # --- 5: fan-out ------------------------------------------------------------------------

    def fanout(self) -> None:
        n = self.plan.fanout_posts
        server = self.redis_server("fanout")
        ids = OUT / "ids-fanout"
        shutil.rmtree(ids, ignore_errors=True)
        ids.mkdir(parents=True)
        try:
            self.note_load("fanout")
            port = self.consumer("consumer-fanout", ids)
            url = f"http://127.0.0.1:{port}/{CONSUMER}"
            routes = OUT / "routes-fanout.yml"
            routes.write_text(routes_text(url))
            self.leg("post", "--url", url, "--n", "500")  # warm the consumer
            bare, ours = [], []
            for _ in range(self.plan.rounds):  # alternate, medians: one pair of runs swung 0.35-1.05x
                bare.append(self.leg("post", "--url", url, "--n", str(n)))
                self.leg("fill-outbox", "--redis", server.url, "--n", str(n), "--consumer", CONSUMER)
                ours.append(self.leg("deliver", "--redis", server.url, "--consumer", CONSUMER,
                                     env={"ROUTES_FILE": str(routes)}))
        finally:
            self.procs.stop("consumer-fanout")
            server.stop()
        bare_rate = statistics.median(x["rate"] for x in bare)
        ours_rate = statistics.median(x["rate"] for x in ours)
        ratio = ours_rate / bare_rate
        self.raw["fanout"] = {"bare": bare, "deliver": ours}
        self.add(Bar(
            "fanout", f"fan-out, {n:,} deliveries, 1 process", ratio,
            f"x bare urllib3 loop ({ours_rate:,.0f} vs {bare_rate:,.0f} POST/s; medians of {len(ours)} "
            "alternating rounds)", ">= 0.5x",
            ratio >= 0.5 and all(x["totals"].get("delivered") == n for x in ours),
            baseline=f"keep-alive POST loop {bare_rate:,.0f}/s", details={"ours": ours, "bare": bare}))

    # --- 7: scale --------------------------------------------------------------------------

    def scale(self) -> None:
        server = self.redis_server("scale")
        r = redis.Redis.from_url(server.url)
        ids = OUT / "ids-scale"
        try:
            self.note_load("scale")
            with self.stack(r, ids, REDIS_URL=server.url) as web:
                small = self.campaign(r, web, ids, self.plan.scale_small, "s")
                big = self.campaign(r, web, ids, self.plan.scale_big, "l")
        finally:
            r.close()
            server.stop()
        self.raw["scale"] = {"small": small, "big": big}
        self.scale_bars(small, big)

    @contextlib.contextmanager
    def stack(self, queue: redis.Redis, ids: Path, **env: str) -> Iterator[int]:
        """The whole service as in production (gunicorn, the Procfile's worker, two deliverers
        and the scheduler) on the Redis settings in `env`, and one HTTP consumer recording into
        `ids`; yields the web port. `queue` is RQ's Redis, where the workers register."""
        shutil.rmtree(ids, ignore_errors=True)
        ids.mkdir(parents=True)
        names = ["consumer-scale", "web-scale", "worker", "deliverer-1", "deliverer-2", "scheduler"]
        try:
            consumer = self.consumer("consumer-scale", ids)
            routes = OUT / "routes-scale.yml"
            routes.write_text(routes_text(f"http://127.0.0.1:{consumer}/{CONSUMER}"))
            env = {**env, "ROUTES_FILE": str(routes)}
            web = self.gunicorn("web-scale", "app:create_app()", **env)
            commands = self.procfile(env["REDIS_URL"])
            for name in names[2:]:
                self.procs.start(name, commands[name.split("-")[0]], self.env(**env))
            wait_for(lambda: len(queue.smembers("rq:workers")) >= 3, 60, "three rq workers to register")
            yield web
        finally:
            for name in reversed(names):
                self.procs.stop(name)

    def scale_bars(self, small: dict[str, Any], big: dict[str, Any]) -> None:
        for run in (small, big):
            n = run["reports"]
            ok = not (run["lost"] or run["duplicates"] or run["unexpected"] or run["buckets_bad"])
            self.add(Bar(
                f"scale.exact.{n}", f"scale {n:,} reports: lost + duplicate deliveries",
                run["lost"] + run["duplicates"], f"(lost {run['lost']}, duplicates {run['duplicates']}, "
                f"unexpected {run['unexpected']}, non-200 buckets {run['buckets_bad']}; "
                f"{run['delivered_distinct']:,} distinct event ids at the consumer)", "0 lost, 0 duplicates",
                ok, details=run))
        per_small = small["seconds"] / small["reports"]
        per_big = big["seconds"] / big["reports"]
        ratio = per_big / per_small
        self.add(Bar(
            "scale.linear", f"time per report at {big['reports']:,} vs {small['reports']:,}", ratio,
            f"x ({per_big * 1e6:,.0f} vs {per_small * 1e6:,.0f} us/report end to end; "
            f"{big['reports'] / big['seconds']:,.0f} reports/s at {big['reports']:,})", "<= 1.3x",
            ratio <= 1.3))
        ingest_ratio = (big["ingest_seconds"] / big["reports"]) / (small["ingest_seconds"] / small["reports"])
        self.add(Bar(
            "scale.linear.ingest", f"ingest time per report at {big['reports']:,} vs {small['reports']:,}",
            ingest_ratio, f"x ({big['reports'] / big['ingest_seconds']:,.0f} vs "
            f"{small['reports'] / small['ingest_seconds']:,.0f} reports/s answered while the workers ran)",
            "<= 1.3x", ingest_ratio <= 1.3, extra=True))
        self.add(Bar(
            "scale.memory", f"Redis memory per stored message ({big['reports']:,})", big["bytes_per_message"],
            "bytes", "<= 1024 bytes", big["bytes_per_message"] <= 1024))
        for role in ("web", "worker", "worker-horse", "deliverers", "deliverers-horse"):
            rss = big["rss"][role]
            growth = rss["last"] / rss["first"] if rss["first"] else float("inf")
            self.add(Bar(
                f"scale.rss.{role}", f"{role} RSS over the {big['reports']:,} run", growth,
                f"x (median {rss['first']:.0f} MiB in the first half, {rss['last']:.0f} MiB in the second, "
                f"peak {rss['max']:.0f}; {rss['samples']} samples)", "<= 1.2x (flat)", growth <= 1.2))

    def campaign(self, r: redis.Redis, web: int, ids: Path, reports: int, tag: str,
                 memory: Callable[[], int] | None = None) -> dict[str, Any]:
        """Ingest `reports` unique reports in 100-report buckets while the workers run; wait until
        the consumer has them all and the pipeline is idle; count what the consumer got. `r` is
        the data plane; `memory` its used_memory (default: `r`'s; a cluster sums its primaries)."""
        memory = memory or (lambda: used_memory(r))
        for old in ids.glob("*.txt"):
            os.truncate(old, 0)
        buckets = reports // 100
        wait_idle(r, 120)
        before = memory()
        load_before = list(os.getloadavg())  # the machine is shared: say what else ran meanwhile
        sampler = RssSampler(self.procs.pid("web-scale"), {
            "worker": [self.procs.pid("worker")],
            "deliverers": [self.procs.pid("deliverer-1"), self.procs.pid("deliverer-2")]})
        sampler.start()
        started = time.monotonic()
        try:
            ingest = self.wrk("buckets.lua", f"http://127.0.0.1:{web}", max(60, reports / 500),
                              done_dir=OUT / "wrk-done", BENCH_TOTAL=buckets, BENCH_BUCKET=100,
                              BENCH_QUERY=f"?token={TOKEN}", BENCH_PREFIX=f"c{tag}")
            ingested = time.monotonic() - started
            expected = ingest["reports_ok"]
            wait_for(lambda: delivered_lines(ids) >= expected, max(120, reports / 100),
                     f"{expected:,} deliveries at the consumer", interval=0.2)
            seconds = time.monotonic() - started
            wait_idle(r, 120)
        finally:
            sampler.stop()
        after = memory()
        got = read_ids(ids)
        want = expected_event_ids(f"c{tag}-0", buckets, 100)
        distinct = set(got)
        return {
            "reports": reports, "buckets_ok": ingest["buckets_ok"], "buckets_bad": ingest["buckets_bad"],
            "ingest_seconds": ingested, "seconds": seconds, "ingest": ingest,
            "delivered_lines": len(got), "delivered_distinct": len(distinct),
            "lost": len(want - distinct), "unexpected": len(distinct - want),
            "duplicates": len(got) - len(distinct),
            "used_memory_before": before, "used_memory_after": after,
            "bytes_per_message": (after - before) / max(1, len(want)),
            "rss": sampler.summary(), "rss_samples": sampler.samples,
            "load_before": load_before, "load_after": list(os.getloadavg()),
        }

    def pull(self) -> None:  # SPEC §9.1, bench/pull.py
        got = bench_pull.bar(self)
        self.raw["pull"] = got
        self.add(Bar("pull", f"pull, {got['reports']:,} reports in pages of {got['page']:,}, into state",
                     got["ratio"], f"x pushed buckets of {got['page']:,} ({got['pull_rate']:,.0f} vs "
                     f"{got['push_rate']:,.0f} reports/s)", ">= 0.8x", got["ratio"] >= 0.8))

    # --- the whole run ---------------------------------------------------------------------

    def dashboard(self) -> None:
        """bench/dashboard.py (a few minutes: in the full plan, or with --only dashboard)."""
        if self.plan.name == "full" or self.only:
            from bench import dashboard

            for bar in dashboard.measure():
                self.add(Bar(**bar))

    def machine(self) -> dict[str, Any]:
        def version(dist: str) -> str:
            try:
                return metadata.version(dist)
            except metadata.PackageNotFoundError:
                return "?"

        redis_version = subprocess.run([find_binary(), "--version"], capture_output=True, text=True).stdout
        wrk_path = shutil.which("wrk")
        wrk_version = ""
        if wrk_path:
            wrk_version = subprocess.run([wrk_path, "--version"], capture_output=True, text=True).stdout
        mem_kib = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
                       if line.startswith("MemTotal:"))
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "?")
        return {
            "nproc": os.cpu_count(), "cpu": cpu, "memory_gib": round(mem_kib / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "redis_server": redis_version.split()[2] if redis_version else "?",
            "wrk": (wrk_version.splitlines() or ["?"])[0].split(" [")[0],
            **{name: version(name) for name in ("gunicorn", "flask", "werkzeug", "rq", "redis", "urllib3",
                                                 "orjson", "marshmallow", "hiredis")},
            "web_concurrency": self.web_concurrency, "web_threads": self.web_threads,
            "wrk_connections": self.connections,
        }

    def smpp(self) -> None:  # bench/smpp.py
        bench_smpp(self)

    def cluster(self) -> None:  # bench/cluster.py
        bench_cluster(self)

    def go(self) -> int:
        started = time.monotonic()
        OUT.mkdir(parents=True, exist_ok=True)
        load = wait_quiet(self.plan.quiet_wait)
        machine = self.machine()
        print(f"bench {self.plan.name}: {machine['nproc']} cores, {machine['memory_gib']} GiB, "
              f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; gunicorn "
              f"{self.web_concurrency}x{self.web_threads}, wrk -c{self.connections}", flush=True)
        try:
            for section in ("ingest", "workers", "fanout", "scale", "cluster", "pull", "smpp", "optout",
                            "dashboard"):
                if self.wants(section):
                    getattr(self, section)()
        finally:
            self.procs.stop_all()
            results = {
                "plan": self.plan.__dict__, "machine": machine, "load_at_start": load,
                "load_by_section": self.loads, "load_at_end": list(os.getloadavg()),
                "seconds": time.monotonic() - started,
                "bars": [bar.__dict__ for bar in self.bars], "raw": self.raw,
            }
            path = OUT / ("results.json" if self.plan.name == "short" else f"results-{self.plan.name}.json")
            path.write_text(json.dumps(results, indent=2, default=str))
        failed = [b for b in self.bars if not b.extra and not b.passed]
        end = os.getloadavg()
        print(f"{len(self.bars) - len(failed)} of {len(self.bars)} lines PASS/INFO, {len(failed)} FAIL; "
              f"{time.monotonic() - started:.0f} s; load average at end {end[0]:.2f}; results in {path}")
        return 1 if failed else 0


    def optout(self) -> None:
        """SPEC §11: the bulk opt-out check, per number at 10,000 vs at 100 (bench/optout.py)."""
        server = self.redis_server("optout")
        try:
            self.add(Bar(**optout.measure(server.url)))
        finally:
            server.stop()


# --- helpers ---------------------------------------------------------------------------------


def _answers(port: int, path: str) -> bool:
    import http.client

    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", path)
        return conn.getresponse().status in (200, 204)
    except OSError:
        return False


def routes_text(url: str) -> str:
    """Only the HTTP consumer: no event stream, so Redis memory is the stored state alone."""
    return (f"consumers:\n  - name: {CONSUMER}\n    url: {url}\n    secret: {SECRET}\n"
            f"    events: [\"*\"]\n    timeout: 10\n")


def wait_quiet(limit: float, threshold: float = 1.0) -> tuple[float, float, float]:
    """Wait (at most `limit` seconds, polling every 10 s) for the 1-minute load average to fall
    below `threshold`: other people's test suites share this machine. Returns the load then."""
    for _ in range(int(limit / 10) + 1):
        load = os.getloadavg()
        if load[0] < threshold:
            break
        print(f"load average {load[0]:.2f} >= {threshold}: waiting (at most {limit:.0f} s in all)",
              flush=True)
        time.sleep(10)
    return os.getloadavg()


def redis_writes(r: redis.Redis) -> int:
    """Hand-off writes Redis has run: each ingest write is one EVAL (app/enqueue.py `push`)."""
    return int(r.info("commandstats").get("cmdstat_eval", {}).get("calls", 0))


def used_memory(r: redis.Redis) -> int:
    """used_memory once no AOF rewrite is running (its buffers would count)."""
    wait_for(lambda: not int(r.info("persistence")["aof_rewrite_in_progress"]), 120, "AOF rewrite to end")
    return int(r.info("memory")["used_memory"])


def wait_idle(r: redis.Redis, timeout: float) -> None:
    """Inboxes, outboxes, claimed batches and retries empty."""
    def idle() -> bool:
        keys = [k for pattern in ("inbox:*", "out:*", "batch:*", "dbatch:*", "retry:*", "fan:*")
                for k in r.scan_iter(match=pattern, count=1000)]
        return not keys

    wait_for(idle, timeout, "the pipeline to be idle", interval=0.2)


def delivered_lines(ids: Path) -> int:
    return sum(path.stat().st_size for path in ids.glob("*.txt")) // EVENT_ID_BYTES


def read_ids(ids: Path) -> list[str]:
    got: list[str] = []
    for path in ids.glob("*.txt"):
        got.extend(path.read_text().split())
    return got


def expected_event_ids(prefix: str, buckets: int, size: int) -> set[str]:
    """The event ids of the reports bench/wrk/buckets.lua sends with one wrk thread: one per
    report (its messageIds are `<prefix>-1` .. `<prefix>-<buckets*size>`)."""
    from app import dlr, events

    template = dlr.load(sample_report(1, prefix))
    out = set()
    for n in range(1, buckets * size + 1):
        out.add(events.dlr_event_id({**template, "messageId": f"{prefix}-{n}"}))
    return out


class RssSampler:
    """VmRSS of the service's processes every second: `web` is gunicorn's master and workers; an
    rq role is the worker process plus its work-horse (forked per job), sampled apart, so that a
    horse that comes and goes between jobs is not read as memory growth or shrinkage."""

    def __init__(self, web: int, rq_roles: dict[str, list[int]]) -> None:
        self.web = web
        self.rq_roles = rq_roles
        self.samples: list[dict[str, float]] = []
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        for _ in range(100_000):  # bounded: one a second
            table = parents()  # one pass over /proc per sample
            sample = {"t": round(time.monotonic() - started, 1),
                      "web": round(tree_rss_mib(self.web, table), 1)}
            for role, pids in self.rq_roles.items():
                sample[role] = round(sum(rss_kib(p) for p in pids) / 1024, 1)
                horses = [c for p in pids for c in tree(p, table)[1:]]
                sample[f"{role}-horse"] = round(sum(rss_kib(c) for c in horses) / 1024, 1)
            self.samples.append(sample)
            if self._halt.wait(1.0):
                break

    def stop(self) -> None:
        self._halt.set()
        self._thread.join(10)

    def summary(self) -> dict[str, dict[str, float]]:
        """Median of the first half of the run (after 5 s of warm-up) against the median of the
        second half: memory that grows with the number of reports shows as a higher second
        median. Medians, not peaks: when a delivery job hands over to the next one (every
        TIME_BUDGET seconds) two horses live for a moment, which a peak would read as growth.
        For horses, only samples where a horse was running."""
        return rss_summary(self.samples, ["web", *self.rq_roles, *(f"{r}-horse" for r in self.rq_roles)])


def rss_summary(samples: list[dict[str, float]], roles: list[str]) -> dict[str, dict[str, float]]:
    warm = [s for s in samples if s["t"] >= 5] or samples
    out = {}
    for role in roles:
        values = [s[role] for s in warm if s[role] > 0] or [0.0]
        half = max(1, len(values) // 2)
        out[role] = {"first": statistics.median(values[:half]),
                     "last": statistics.median(values[half:] or values),
                     "max": max(values), "samples": len(values)}
    return out


def rescore(path: Path) -> int:
    results = json.loads(path.read_text())
    plan = Plan(**results["plan"])
    run = Run(plan, None)
    small, big = results["raw"]["scale"]["small"], results["raw"]["scale"]["big"]
    for campaign in (small, big):
        roles = [k for k in campaign["rss_samples"][0] if k != "t"]
        campaign["rss"] = rss_summary(campaign["rss_samples"], roles)
    run.scale_bars(small, big)
    keep = [b for b in results["bars"] if not b["key"].startswith("scale.")]
    results["bars"] = keep + [bar.__dict__ for bar in run.bars]
    results["rescored"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path.write_text(json.dumps(results, indent=2, default=str))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--plan", choices=sorted(PLANS), default="short")
    parser.add_argument("--only", help="comma list of sections: ingest, workers, fanout, scale, cluster, "
                        "pull, smpp, optout, dashboard")
    parser.add_argument("--scale", type=int, help="reports of the big scale point (small: a tenth)")
    parser.add_argument("--rescore", type=Path, help="recompute the scale bars of a results file from its "
                        "stored samples (after a change of how they are scored), and rewrite it")
    args = parser.parse_args(argv)
    if args.rescore:
        return rescore(args.rescore)
    plan = PLANS[args.plan]
    if args.scale:
        plan = Plan(**{**plan.__dict__, "scale_big": args.scale, "scale_small": args.scale // 10})
    only = set(args.only.split(",")) if args.only else None
    return Run(plan, only).go()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
