"""Dead letters and consumer figures, for the CLI (`flask dlq ...`) and /api (SPEC §4).

A dead letter is a delivery that ran out of attempts (or got 410). Replaying one puts it back
in its consumer's outbox with a fresh attempt count; the event and so its `webhook-id` are the
same, so a consumer that did get it after all can tell.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis import Redis

from app import keys
from app.clock import epoch
from app.enqueue import outbox
from app.keys import CONSUMER_STATS, DEAD_LETTERS, MO_UNROUTED, RETRIES, consumer_key
from app.routes import Routes

RESET = ("lastError", "lastAttemptAt", "reason", "deadAt")

# ARGV holds (dead letter, fresh delivery) pairs: each fresh one is queued only if its dead
# letter was still there to remove.
_MOVE = """
local moved = 0
for i = 1, #ARGV, 2 do
  if redis.call('LREM', KEYS[1], 1, ARGV[i]) == 1 then
    redis.call('RPUSH', KEYS[2], ARGV[i + 1])
    moved = moved + 1
  end
end
return moved
"""


def list_dead(r: Redis, consumer: str, limit: int = 50) -> list[dict[str, Any]]:
    """Newest first."""
    key = DEAD_LETTERS.format(consumer=consumer_key(consumer))
    return [orjson.loads(raw) for raw in r.lrange(key, 0, limit - 1)]


def replay_dead(r: Redis, consumer: str, event_ids: set[str] | None = None) -> int:
    """Move dead letters (all, or those of `event_ids`) back to the outbox; returns how many.
    Each move is atomic (removed from the list or nothing), so two replays never double-send."""
    key = DEAD_LETTERS.format(consumer=consumer_key(consumer))
    channel = outbox(consumer)
    args: list[bytes] = []
    for raw in r.lrange(key, 0, -1):
        record = orjson.loads(raw)
        if event_ids is None or record["id"] in event_ids:
            fresh = {k: v for k, v in record.items() if k not in RESET} | {"attempt": 0}
            args += [raw, orjson.dumps(fresh)]
    moved = r.eval(_MOVE, 2, key, channel.inbox, *args) if args else 0
    if moved:
        channel.kick(r)
    return moved


def consumer_figures(r: Redis, routes: Routes) -> dict[str, Any]:
    """Per consumer: delivered, failed attempts, dead letters, pending and the oldest's age."""
    figures: dict[str, Any] = {}
    for consumer in routes.consumers.values():
        if consumer.kind == "redis-stream":
            figures[consumer.name] = {"kind": consumer.kind, "target": consumer.target,
                                      "streamLength": r.xlen(consumer.stream)}
            continue
        raw_stats = r.hgetall(CONSUMER_STATS.format(consumer=consumer_key(consumer.name)))
        stats = {k.decode(): int(v) for k, v in raw_stats.items()}
        channel = outbox(consumer.name)
        retries = RETRIES.format(consumer=consumer_key(consumer.name))
        waiting = r.lrange(channel.inbox, 0, 0) + r.zrange(retries, 0, 999)
        queued = [epoch(orjson.loads(raw)["queuedAt"]) for raw in waiting]
        figures[consumer.name] = {
            "kind": consumer.kind,
            "target": consumer.target,
            "delivered": stats.get("delivered", 0),
            "failedAttempts": stats.get("failedAttempts", 0),
            "deadLettered": stats.get("deadLettered", 0),
            "deadLetters": r.llen(DEAD_LETTERS.format(consumer=consumer_key(consumer.name))),
            "pending": r.llen(channel.inbox) + r.zcard(RETRIES.format(consumer=consumer_key(consumer.name))),
            "oldestPendingSeconds": round(time.time() - min(queued), 3) if queued else None,
        }
    unrouted = sum(int(r.get(MO_UNROUTED.format(t=t)) or 0) for t in keys.tags())  # per lane on a cluster
    return {"consumers": figures, "moUnrouted": unrouted}
