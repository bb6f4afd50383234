"""How much work is waiting, read from Redis: for /readyz, `flask stats` and /metrics."""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis import Redis
from rq import Queue, Worker

from app.clock import epoch
from app.keys import DELIVERY_QUEUE, INBOX, PARTS_PENDING, QUARANTINE, QUEUE_NAME


def backlog(r: Redis, lanes: int) -> dict[str, Any]:
    """Items in the inbox lanes (and the oldest one's age), RQ jobs queued, live workers,
    quarantine size, long MO being reassembled, replicas connected to the primary (with
    REDIS_MIN_REPLICAS, fewer than that means ingest answers 503). Raises RedisError when
    Redis is away."""
    pipe = r.pipeline(transaction=False)
    for lane in range(lanes):
        pipe.llen(INBOX.format(lane=lane))
        pipe.lindex(INBOX.format(lane=lane), 0)
    pipe.llen(QUARANTINE)
    pipe.zcard(PARTS_PENDING)
    pipe.info("replication")
    *per_lane, quarantined, parts, replication = pipe.execute()
    heads = [orjson.loads(head)["receivedAt"] for head in per_lane[1::2] if head]
    oldest = min((epoch(text) for text in heads), default=None)
    return {
        "inbox": sum(per_lane[0::2]),
        "oldestInboxSeconds": round(time.time() - oldest, 3) if oldest else None,
        "queuedJobs": {name: Queue(name, connection=r).count for name in (QUEUE_NAME, DELIVERY_QUEUE)},
        "workers": len(Worker.all(connection=r)),
        "quarantined": quarantined,
        "moPartsPending": parts,
        "redisReplicas": replication.get("connected_slaves", 0),
    }
