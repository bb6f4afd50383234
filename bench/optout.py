"""`python -m bench.optout`: the bulk opt-out check (`POST /api/optouts/check`, SPEC §11) answers
10,000 numbers for no more per number than 100: one pipelined round trip per 1,000 numbers, not
one per number. The figure is the time per number at 10,000 over the time per number at 100
(bar: at most 1.2), both measured in this run, alternating, best of `rounds`, against a real
redis-server with AOF `appendfsync always` and the app's real request path (WSGI, in process).
A tenth of the numbers are opted out, of the receiver asked or of every receiver."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from app import create_app
from app.optout.lists import list_key
from tools.redis_server import EmbeddedRedis

KEY = "bench-api-key"
RECEIVER = "41793026727"
SIZES = (100, 10_000)
BAR = 1.2


def measure(redis_url: str, rounds: int = 15) -> dict[str, Any]:
    """The bar as a dict of bench.run.Bar's fields."""
    app = create_app({"REDIS_URL": redis_url, "API_KEYS": [KEY], "WEBHOOK_TOKEN": "bench", "TESTING": True})
    r = redis.Redis.from_url(redis_url)
    numbers = [f"4179{n:07d}" for n in range(max(SIZES))]
    pipe = r.pipeline(transaction=False)
    entry = orjson.dumps({"since": "2026-01-01T00:00:00.000Z", "keyword": "STOP", "messageId": None,
                          "source": "api"})
    for n, number in enumerate(numbers[::10]):
        pipe.hset(list_key(number), RECEIVER if n % 2 else "*", entry)
    pipe.execute()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    bodies = {size: orjson.dumps({"numbers": numbers[:size], "receiver": RECEIVER}) for size in SIZES}
    per_number: dict[int, list[float]] = {size: [] for size in SIZES}
    for _ in range(rounds):
        for size in SIZES:
            started = time.perf_counter()
            answer = client.post("/api/optouts/check", data=bodies[size], headers=headers)
            elapsed = time.perf_counter() - started
            assert answer.status_code == 200 and len(answer.json["optedOut"]) == size // 10, answer.json
            per_number[size].append(elapsed / size)
    best = {size: min(times) * 1e6 for size, times in per_number.items()}
    ratio = best[SIZES[1]] / best[SIZES[0]]
    r.close()
    return {"key": "optout.check", "title": "opt-out check: time per number at 10,000 / at 100",
            "figure": ratio, "unit": "x", "bar": f"<= {BAR}", "passed": ratio <= BAR,
            "baseline": f"{best[SIZES[0]]:.2f} us/number at 100, {best[SIZES[1]]:.2f} at 10,000",
            "details": {"usPerNumber": best, "rounds": rounds}}


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        server = EmbeddedRedis(Path(folder) / "redis").start()
        try:
            found = measure(server.url)
        finally:
            server.stop()
    print(f"{'PASS' if found['passed'] else 'FAIL'} {found['title']}: {found['figure']:.3f}x "
          f"({found['baseline']}) [bar {found['bar']}]")
    return 0 if found["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
