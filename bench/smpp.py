"""Bench bar: delivery reports per second from `deliver_sm` into state (SPEC §13), against
single-report HTTP pushes into the same service, in the same run.

Both sides run as in production: redis-server (AOF, fsync always), gunicorn with the service,
the Procfile's `worker` (drain) and `smpp` (2 receiver sessions), and the fake Infobip SMSC as
its own process. The HTTP figure is wrk's rate of single-report pushes answered 200 (each one
durably in Redis). The SMPP figure is reports per second from the first deliver_sm until every
report is applied to state, so it includes the drain; the drain keeps up when the reports are
in state soon after the last acknowledgement (the inbox backlog is sampled on the way).

    python -m bench.run --only smpp     (part of `make bench`)
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import orjson
import redis

from app.keys import INBOX, WORKER_COUNTERS
from bench.legs import sample_report
from tools.fake_infobip.smpp import SmppControl, receipt
from tools.redis_server import free_port
from tools.wait import wait_for

if TYPE_CHECKING:
    from bench.run import Run

SYSTEM_ID, PASSWORD = "bench", "bench-pw"


def applied(r: redis.Redis) -> int:
    return int(r.hget(WORKER_COUNTERS.format(t=""), "dlr:new") or 0)


def backlog(r: redis.Redis, lanes: int = 4) -> int:
    return sum(r.llen(INBOX.format(lane=n)) for n in range(lanes))


def smpp(run: Run) -> None:
    from bench.run import INGEST_PATH, OUT, Bar

    reports = 20_000 if run.plan.name == "short" else 100_000
    server = run.redis_server("smpp")
    r = redis.Redis.from_url(server.url)
    try:
        run.note_load("smpp")
        commands = run.procfile(server.url)
        run.procs.start("smpp-worker", commands["worker"], run.env(REDIS_URL=server.url))
        web = run.gunicorn("web-smpp", "app:create_app()", REDIS_URL=server.url)
        body = OUT / "report-smpp.json"
        body.write_bytes(orjson.dumps({"results": [sample_report(1, "smpp-http")]}))
        url = f"http://127.0.0.1:{web}{INGEST_PATH}"
        run.wrk("post.lua", url, 2, BENCH_BODY=str(body))
        http = run.wrk("post.lua", url, run.plan.seconds, BENCH_BODY=str(body))

        port, control = free_port(), free_port()
        fake = [commands["smpp"][0], "-m", "tools.fake_infobip.smpp", "--port", str(port), "--control-port",
                str(control), "--system-id", SYSTEM_ID, "--password", PASSWORD, "--window", "500"]
        run.procs.start("fake-smsc", fake, run.env())
        smsc = SmppControl(control)
        wait_for(lambda: _answers(smsc), 30, "the fake SMSC")
        run.procs.start("smpp", commands["smpp"], run.env(
            REDIS_URL=server.url, SMPP_HOST="127.0.0.1", SMPP_PORT=str(port), SMPP_SYSTEM_ID=SYSTEM_ID,
            SMPP_PASSWORD=PASSWORD, SMPP_SESSIONS="2"))
        wait_for(lambda: smsc.state()["bound"] == 2, 30, "two receiver binds")
        wait_for(lambda: backlog(r) == 0, 60, "the HTTP pushes drained")
        before = applied(r)
        specs = [receipt(f"b-{n:07d}", done="2612071000") for n in range(reports)]
        started = time.monotonic()
        for at in range(0, reports, 5000):
            smsc.deliver(specs[at:at + 5000])
        samples: list[int] = []

        def all_acked() -> bool:
            samples.append(backlog(r))
            return len(smsc.state()["acked"]) >= reports

        wait_for(all_acked, 600, "every deliver_sm acknowledged", interval=0.5)
        acked_at = time.monotonic() - started
        wait_for(lambda: applied(r) - before >= reports, 600, "every report in state", interval=0.2)
        state_at = time.monotonic() - started
    finally:
        for name in ("smpp", "fake-smsc", "smpp-worker", "web-smpp"):
            run.procs.stop(name)
        server.stop()
    rate = reports / state_at
    details: dict[str, Any] = {
        "reports": reports, "seconds_to_acknowledged": round(acked_at, 2),
        "seconds_to_state": round(state_at, 2),
        "acknowledged_per_s": round(reports / acked_at, 1), "http_single_rps": http["rps"],
        "inbox_backlog_samples": samples[:: max(1, len(samples) // 20)],
        "inbox_backlog_max": max(samples or [0]),
    }
    run.raw["smpp"] = details
    run.add(Bar("smpp.reports", "SMPP: reports/s from deliver_sm into state, vs single-report HTTP pushes",
                rate / http["rps"], f"x ({rate:,.0f} vs {http['rps']:,.0f} reports/s)", ">= 1x",
                rate >= http["rps"], baseline="single-report HTTP pushes, same run", details=details))
    keeps_up = state_at <= acked_at * 1.25 + 2
    run.add(Bar("smpp.drain", "SMPP: seconds from last acknowledgement to all in state", state_at - acked_at,
                f"s (of {state_at:.1f} s; inbox backlog peak {details['inbox_backlog_max']:,})",
                "<= 25% of the run + 2 s", keeps_up, details=details))


def _answers(control: SmppControl) -> bool:
    try:
        control.state()
        return True
    except OSError:
        return False
