"""The single-process legs of the worker and fan-out bars, each run in a process of its own
(`python -m bench.legs <leg> ...`) and timed inside it. Each prints one JSON line.

- `noop`    baseline: an RQ SimpleWorker drains N no-op jobs (bench.noop.noop) in burst mode.
- `drain`   ours: `workers.drain.drain` over N single-report envelopes already in lane 0,
            exactly as ingest writes them (app.dlr.load + the ingest envelope, app.enqueue.encode).
- `post`    baseline: a bare urllib3 keep-alive POST loop of N event bodies to the consumer.
- `deliver` ours: `workers.deliver.deliver` over N deliveries already in a consumer's outbox
            (workers.fanout.delivery records), signed, sent, recorded in Redis.
- `wake`    the machine, not the service: CPU time of the same work (validating one report)
            back to back, and right after a 0.3 ms sleep, alternating. On the project's VM a
            core that went idle for a moment runs the next work at about half speed, which
            is what every request pays that waits for Redis (docs/BENCHMARKS.md).

The `fill-*` legs prepare the Redis side of `drain` and `deliver` (not timed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

import orjson
import redis

from app import dlr, enqueue
from app.clock import now_text


def sample_report(n: int, prefix: str) -> dict[str, Any]:
    """The report bench/wrk/common.lua sends, as Python data."""
    return {
        "bulkId": prefix, "messageId": f"{prefix}-{n}", "to": f"4179{n:08d}",
        "sentAt": "2026-11-29T10:00:00.000+0000", "doneAt": "2026-11-29T10:00:07.134+0000",
        "smsCount": 1, "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET",
                   "description": "Message delivered to handset"},
        "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "description": "No Error",
                  "permanent": False},
    }


def envelope(n: int, prefix: str) -> bytes:
    """One item of an inbox lane, as app/ingest.py `IngestView.lanes` writes it."""
    data = dlr.load(orjson.loads(orjson.dumps(sample_report(n, prefix))))
    return enqueue.encode([{"kind": "dlr", "receivedAt": now_text(), "data": data}])[0]


def fill_lane(r: redis.Redis, n: int, prefix: str, lane: int = 0) -> int:
    """N single-report envelopes into one lane (lane 0; lane_of is not consulted on purpose:
    the bar is one drain job over one lane)."""
    items = [envelope(i, prefix) for i in range(n)]
    for start in range(0, n, 5000):
        r.rpush(enqueue.lane(lane).inbox, *items[start : start + 5000])
    return n


def noop(args: argparse.Namespace) -> dict[str, Any]:
    from rq import Queue, SimpleWorker

    r = redis.Redis.from_url(args.redis)
    queue = Queue("bench-noop", connection=r)
    with r.pipeline() as pipe:
        for _ in range(args.n):
            queue.enqueue("bench.noop.noop", result_ttl=0, pipeline=pipe)
        pipe.execute()
    worker = SimpleWorker([queue], connection=r)
    started = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    seconds = time.perf_counter() - started
    left = queue.count
    return {"jobs": args.n - left, "seconds": seconds, "rate": (args.n - left) / seconds}


def drain(args: argparse.Namespace) -> dict[str, Any]:
    from workers.drain import drain as drain_lane
    from workers.settings import routes, settings

    r = redis.Redis.from_url(args.redis)
    settings(), routes()  # read once per worker process in production too, not per job
    r.ping()
    started = time.perf_counter()
    totals = drain_lane(r, 0, uuid.uuid4().hex)
    seconds = time.perf_counter() - started
    return {"totals": totals, "seconds": seconds, "rate": totals.get("new", 0) / seconds}


def event_body(n: int) -> tuple[str, bytes]:
    """An event as workers.fanout would send it (the state path builds the same shape)."""
    from app import events

    data = dlr.load(sample_report(n, "fan"))
    event_id = events.dlr_event_id(data)
    return event_id, orjson.dumps(events.build(event_id, events.dlr_type(data), data))


def post(args: argparse.Namespace) -> dict[str, Any]:
    import urllib3

    bodies = [event_body(i) for i in range(args.n)]
    pool = urllib3.PoolManager(maxsize=1, retries=False)
    ok = 0
    started = time.perf_counter()
    for event_id, body in bodies:
        response = pool.request("POST", args.url, body=body, redirect=False,
                                headers={"Content-Type": "application/json", "webhook-id": event_id})
        ok += 200 <= response.status < 300
    seconds = time.perf_counter() - started
    return {"delivered": ok, "seconds": seconds, "rate": ok / seconds}


def fill_outbox(r: redis.Redis, n: int, consumer: str) -> int:
    from workers.fanout import delivery

    items = [delivery(*event_body(i)) for i in range(n)]
    for start in range(0, n, 5000):
        r.rpush(enqueue.outbox(consumer).inbox, *items[start : start + 5000])
    return n


def deliver(args: argparse.Namespace) -> dict[str, Any]:
    from workers.deliver import deliver as deliver_outbox

    r = redis.Redis.from_url(args.redis)
    started = time.perf_counter()
    totals = deliver_outbox(r, args.consumer, uuid.uuid4().hex, budget=3600.0)
    seconds = time.perf_counter() - started
    return {"totals": totals, "seconds": seconds, "rate": totals.get("delivered", 0) / seconds}


def wake(args: argparse.Namespace) -> dict[str, Any]:
    """CPU per validation, back to back and after a short sleep, in alternating rounds."""
    report = sample_report(1, "wake")

    def cpu_per_call(pause: float) -> float:
        spent = 0.0
        for _ in range(args.n):
            if pause:
                time.sleep(pause)
            started = time.thread_time()
            dlr.load_all([report])
            spent += time.thread_time() - started
        return spent / args.n

    rounds: dict[str, list[float]] = {"hot": [], "after_sleep": []}
    for _ in range(5):
        rounds["hot"].append(cpu_per_call(0))
        rounds["after_sleep"].append(cpu_per_call(0.0003))
    hot, woken = (sorted(v)[len(v) // 2] for v in rounds.values())
    return {"hot_us": hot * 1e6, "after_sleep_us": woken * 1e6, "ratio": woken / hot, "rounds": rounds}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.legs")
    legs = {"noop": noop, "drain": drain, "post": post, "deliver": deliver, "wake": wake}
    parser.add_argument("leg", choices=[*legs, "fill-lane", "fill-outbox"])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--url", default="")
    parser.add_argument("--consumer", default="bench")
    parser.add_argument("--prefix", default="w")
    args = parser.parse_args(argv)
    if args.leg == "fill-lane":
        result: dict[str, Any] = {"filled": fill_lane(redis.Redis.from_url(args.redis), args.n, args.prefix)}
    elif args.leg == "fill-outbox":
        result = {"filled": fill_outbox(redis.Redis.from_url(args.redis), args.n, args.consumer)}
    else:
        result = legs[args.leg](args)
    print("BENCH_JSON " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
