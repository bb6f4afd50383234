"""`make bench-dashboard` (and the `dashboard` section of `make bench`): each dashboard page's
render time with 1,000,000 stored messages against 10,000, measured in one run (SPEC §10).

Two Redis servers are filled the same way, one with 10,000 messages and one with 1,000,000 (in
bulks of 200, over the last 24 hours, and a tenth as many inbound SMS), with the workers' own code:
`msg:<id>` records packed as workers/state.py packs them, the indexes it keeps, and the
dashboard's counters through workers/aggregates.py. Pipelines, not ingest: filling a million
through HTTP would take the bench's whole budget. Then every page is rendered by the real app
(Flask's test client, signed in), alternating between the two servers render by render so
that drift on a shared machine hits both alike; the figure is the ratio of the medians.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from app import create_app, keys
from app.clock import utc_text
from app.keys import consumer_key
from app.store import pack
from tools.redis_server import EmbeddedRedis
from workers.aggregates import Aggregates

BULK_SIZE = 200  # 50 bulks at 10,000: the bulks page lists 25 either way
CHUNK = 10_000
RENDERS = 40  # per page and server, alternating render by render between the two servers
BAR = 1.2
KEY, TOKEN = "bench-dashboard-key", "bench-dashboard-token"
STATUSES = (("DELIVERED", 3, 5, "DELIVERED_TO_HANDSET", 0),
            ("UNDELIVERABLE", 2, 9, "UNDELIVERABLE_NOT_DELIVERED", 1),
            ("EXPIRED", 4, 15, "EXPIRED_EXPIRED", 27), ("PENDING", 1, 7, "PENDING_ENROUTE", 0))


def report(n: int, at: float) -> dict[str, Any]:
    group, group_id, status_id, name, error_id = STATUSES[0 if n % 10 < 7 else n % 4]
    return {
        "bulkId": f"bulk-{n // BULK_SIZE:05d}", "messageId": f"m-{n:07d}", "to": f"4179{n:07d}",
        "sentAt": utc_text_at(at - 9), "doneAt": utc_text_at(at - 1 - n % 40), "smsCount": 1,
        "price": {"pricePerMessage": "0.0100", "currency": "EUR"},
        "status": {"groupId": group_id, "groupName": group, "id": status_id, "name": name},
        "error": {"groupId": 1 if error_id else 0, "id": error_id, "name": "EC" if error_id else "NO_ERROR",
                  "permanent": False},
        "final": group != "PENDING", "callbackData": "bench", "source": "push",
    }


def utc_text_at(epoch: float) -> str:
    from datetime import UTC, datetime

    return utc_text(datetime.fromtimestamp(epoch, UTC))


def fill(r: redis.Redis, messages: int, now: float) -> None:
    """`messages` reports spread over the last 24 h, in chunks of one pipeline each."""
    for start in range(0, messages, CHUNK):
        aggregates = Aggregates(0, 7 * 86400)
        pipe = r.pipeline(transaction=False)
        bulks: dict[str, dict[str, Any]] = {}
        index_all, index_to, index_bulk = {}, {}, {}
        for n in range(start, min(start + CHUNK, messages)):
            at = now - 86000 * (messages - n) / messages
            received = utc_text_at(at)
            data = {**report(n, at), "eventId": f"evt_{n}", "receivedAt": received}
            key = keys.MESSAGE.format(t="", message_id=data["messageId"])
            pipe.set(key, pack({"hist": [data], "cur": 0}))
            aggregates.report(None, data, None, data["bulkId"], received)
            index_all[data["messageId"]] = at
            index_to[f"{data['to']}|{data['messageId']}"] = 0
            index_bulk.setdefault(data["bulkId"], {})[data["messageId"]] = at
            fields = bulks.setdefault(data["bulkId"], {"0:n": 0, "0:c:EUR": 0.0, "0:first": data["sentAt"]})
            fields["0:n"] += 1
            group = f"0:g:{data['status']['groupName']}"
            fields[group] = fields.get(group, 0) + 1
            fields["0:c:EUR"] += 0.01
            fields["0:last"] = data["doneAt"]
            if n % 10 == 0:  # 10 % inbound SMS: at 10,000 the inbound page's 100 rows are full either way
                mo = {"messageId": f"mo-{n}", "from": f"38598{n:07d}", "to": "41793026727",
                      "text": f"WIN{n % 7} hi",
                      "keyword": f"WIN{n % 7}", "receivedAt": received, "route": "contest", "source": "push"}
                pipe.set(keys.INBOUND.format(t="", message_id=mo["messageId"]), orjson.dumps(mo))
                for key in (keys.INDEX_IN.format(t=""), keys.INDEX_IN_FROM.format(t="", sender=mo["from"]),
                            keys.INDEX_IN_KEYWORD.format(t="", keyword=mo["keyword"])):
                    pipe.zadd(key, {mo["messageId"]: at})
                aggregates.inbound(received)
        pipe.zadd(keys.INDEX_ALL.format(t=""), index_all)
        pipe.zadd(keys.INDEX_TO.format(t=""), index_to)
        for bulk_id, members in index_bulk.items():
            pipe.zadd(keys.INDEX_BULK.format(t="", bulk_id=bulk_id), members)
            pipe.zadd(keys.INDEX_BULKS.format(t=""), {bulk_id: max(members.values())})
        for bulk_id, fields in bulks.items():
            fields["0:c:EUR"] = f"{fields['0:c:EUR']:.4f}"
            pipe.hincrby(keys.BULK.format(t="", bulk_id=bulk_id), "0:n", 0)  # exists before HSET merges
            pipe.hset(keys.BULK.format(t="", bulk_id=bulk_id), mapping=fields)
        aggregates.write(pipe)
        pipe.execute()
    extras = r.pipeline(transaction=False)
    for n in range(100):
        extras.lpush(keys.DEAD_LETTERS.format(consumer=consumer_key("crm")), orjson.dumps(
            {"id": f"evt_dead{n}", "body": "{}", "attempt": 3, "queuedAt": utc_text_at(now),
             "reason": "retries exhausted", "lastError": "HTTP 500", "lastAttemptAt": utc_text_at(now)}))
    for n in range(60):
        entry = {"id": f"q_{n}", "at": utc_text_at(now), "method": "POST", "path": "/infobip/dlr",
                 "query": [], "headers": {}, "reason": "bad items", "errors": {"0": ["bad"]}, "body": ""}
        extras.lpush(keys.QUARANTINE, orjson.dumps(entry))
    extras.execute()


class Pages:
    """A signed-in test client of the real app on one Redis, and the pages to render."""

    def __init__(self, url: str, routes: Path) -> None:
        app = create_app({"TESTING": True, "REDIS_URL": url, "API_KEYS": [KEY], "WEBHOOK_TOKEN": TOKEN,
                          "ROUTES_FILE": str(routes),
                          "DEV_MODE": False})
        self.client = app.test_client()
        page = self.client.get("/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        assert self.client.post("/login", data={"api_key": KEY, "csrf_token": token}).status_code == 302

    def render(self, path: str) -> float:
        started = time.perf_counter()
        answer = self.client.get(path)
        elapsed = time.perf_counter() - started
        assert answer.status_code == 200, (path, answer.status_code)
        return elapsed


PAGES = {"overview": "/", "overview-live": "/overview/live", "bulks": "/bulks", "bulk": "/bulks/bulk-00001",
         "message": "/messages/m-0001500", "inbound": "/inbound", "inbound-filtered": "/inbound?keyword=WIN3",
         "consumers": "/consumers", "quarantine": "/quarantine"}


def measure(small: int = 10_000, big: int = 1_000_000) -> list[dict[str, Any]]:
    """Fill two servers, render every page on each (alternating), return one bar per page."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    servers: list[EmbeddedRedis] = []
    try:
        routes = tmp / "routes.yml"
        routes.write_text("consumers:\n  - name: crm\n    url: http://127.0.0.1:9/crm\n    events: ['*']\n")
        now = time.time()
        clients = {}
        for size in (small, big):
            server = EmbeddedRedis(tmp / f"redis-{size}", fsync="no").start()
            servers.append(server)
            r = redis.Redis.from_url(server.url)
            r.config_set("appendonly", "no")  # page reads are measured; persistence only slows the fill
            started = time.monotonic()
            fill(r, size, now)
            print(f"dashboard: {size:,} messages stored in {time.monotonic() - started:.0f} s "
                  f"({r.info('memory')['used_memory_human']})", flush=True)
            clients[size] = Pages(server.url, routes)
        times: dict[tuple[str, int], list[float]] = {(p, s): [] for p in PAGES for s in (small, big)}
        for path in PAGES.values():  # warm-up: templates compiled, connections open
            for size in (small, big):
                clients[size].render(path)
        for page, path in PAGES.items():
            for _ in range(RENDERS):  # small, big, small, big...: drift on a busy machine hits both alike
                for size in (small, big):
                    times[(page, size)].append(clients[size].render(path))
        bars = []
        for page in PAGES:
            low, high = statistics.median(times[(page, small)]), statistics.median(times[(page, big)])
            ratio = high / low
            title = f"dashboard {page} render, {big:,} / {small:,} messages"
            bars.append({"key": f"dashboard.{page}", "title": title,
                         "figure": ratio, "unit": "x", "bar": f"<= {BAR}", "passed": ratio <= BAR,
                         "baseline": f"{low * 1000:.2f} ms at {small:,}, {high * 1000:.2f} ms at {big:,}"})
        return bars
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    bars = measure(args.small, args.big)
    for bar in bars:
        verdict = "PASS" if bar["passed"] else "FAIL"
        print(f"{verdict} {bar['title']}: {bar['figure']:.2f} x; {bar['baseline']} [bar {bar['bar']}]")
    return 0 if all(bar["passed"] for bar in bars) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
