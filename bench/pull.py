"""The pull bar (SPEC §9.1): pulled reports per second into state, against pushed buckets of
the same size in the same run. Bar: at least 0.8x.

Both sides end at the same place, every report in state (`ix:msg` holds every messageId the
drain applied), with the same drain: the Procfile's `rq worker receiver`, on a Redis with
`appendfsync always`. What differs is how the reports come in:
- push: one client POSTs buckets of PAGE reports, one after another, to gunicorn (the
  Procfile's web command), as Infobip pushes to a notifyUrl;
- pull: `app.infobip.pull.poll` fetches pages of PAGE reports from the fake Infobip (a real
  HTTP server in its own process, serving each report once) and hands each over
  (`app.handoff.accept`), exactly as the pull job does.
Rounds alternate push and pull, so drift on a shared machine hits both alike; medians.
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

import orjson
import redis
import urllib3

from app.infobip import pull
from app.infobip.client import InfobipClient
from app.keys import INDEX_ALL
from bench.legs import sample_report
from tools.fake_infobip.control import FakeControl
from tools.wait import wait_for

PAGE = 1000  # Infobip's largest page; and the pushed bucket's size
KEY = "bench-infobip-key"


def start_fake(run: Any) -> str:
    """The fake Infobip on a free port (in the run's process list); its URL, from the line it
    prints once it listens (its output goes to the run's log of it)."""
    args = [sys.executable, "-m", "tools.fake_infobip", "--port", "0", "--api-key", KEY]
    log = run.procs.log_dir / "fake-infobip.log"
    before = log.stat().st_size if log.exists() else 0  # the log is appended to, run after run
    run.procs.start("fake-infobip", args, run.env())
    marker = b"listening on "

    def ours() -> bytes:
        return log.read_bytes()[before:]

    wait_for(lambda: marker in ours(), 30, "the fake Infobip to listen", interval=0.1)
    return ours().split(marker, 1)[1].split()[0].decode()


def into_state(r: redis.Redis, target: int, started: float) -> float:
    index = INDEX_ALL.format(t="")
    wait_for(lambda: r.zcard(index) >= target, 300, f"{target:,} messages in state", interval=0.02)
    return time.monotonic() - started


def push_round(r: redis.Redis, web: int, token: str, prefix: str, n: int, have: int) -> float:
    http = urllib3.PoolManager(maxsize=1, retries=False, timeout=60)
    bodies = [orjson.dumps({"results": [sample_report(i, prefix) for i in range(s, min(s + PAGE, n))]})
              for s in range(0, n, PAGE)]
    started = time.monotonic()
    for body in bodies:
        answer = http.request("POST", f"http://127.0.0.1:{web}/infobip/dlr?token={token}", body=body,
                              headers={"Content-Type": "application/json"})
        assert answer.status == 200, answer.data[:200]
    return n / into_state(r, have + n, started)


def pull_round(r: redis.Redis, fake_url: str, prefix: str, n: int, have: int) -> float:
    FakeControl(fake_url).add_reports([sample_report(i, prefix) for i in range(n)], logged=False)
    client = InfobipClient(fake_url, api_key=KEY, r=r)
    config = {"DRAIN_LANES": 4, "QUARANTINE_MAX": 10_000, "PULL_LIMIT": PAGE}
    started = time.monotonic()
    while pull.poll(r, config, client, pull.REPORTS).get("more"):
        pass
    return n / into_state(r, have + n, started)


def bar(run: Any, reports: int = 5_000, rounds: int = 2) -> dict[str, Any]:
    """Run the rounds; returns the figures for bench.run's Bar."""
    server = run.redis_server("pull")
    try:
        r = redis.Redis.from_url(server.url)
        fake_url = start_fake(run)
        web = run.gunicorn("web-pull", "app:create_app()", REDIS_URL=server.url)
        run.procs.start("worker-pull", run.procfile(server.url)["worker"], run.env(REDIS_URL=server.url))
        from bench.run import TOKEN

        pushed, pulled, have = [], [], 0
        for n in range(rounds):
            pushed.append(push_round(r, web, TOKEN, f"push{n}", reports, have))
            have += reports
            pulled.append(pull_round(r, fake_url, f"pull{n}", reports, have))
            have += reports
    finally:
        for name in ("worker-pull", "web-pull", "fake-infobip"):
            run.procs.stop(name)
        server.stop()
    push_rate, pull_rate = statistics.median(pushed), statistics.median(pulled)
    return {"ratio": pull_rate / push_rate, "pull_rate": pull_rate, "push_rate": push_rate,
            "pushed": pushed, "pulled": pulled, "reports": reports, "page": PAGE}
