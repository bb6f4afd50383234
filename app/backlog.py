"""How much work is waiting, read from Redis: for /readyz, `flask stats` and /metrics."""

from __future__ import annotations

import time
from typing import Any

import orjson
from redis import Redis
from rq import Queue, Worker

from app import enqueue, keys
from app.clock import epoch
from app.connection import queue_client
from app.keys import DELIVERY_QUEUE, PARTS_PENDING, QUARANTINE, QUEUE_NAME


def backlog(r: Redis, lanes: int) -> dict[str, Any]:
    """Items in the inbox lanes (and the oldest one's age), RQ jobs queued, live workers,
    quarantine size, long MO being reassembled, replicas connected to the primary (with
    REDIS_MIN_REPLICAS, fewer than that means ingest answers 503). Raises RedisError when
    Redis is away."""
    pipe = r.pipeline(transaction=False)
    for lane in range(lanes):
        pipe.llen(enqueue.lane(lane).inbox)
        pipe.lindex(enqueue.lane(lane).inbox, 0)
    pipe.llen(QUARANTINE)
    tags = keys.tags()  # one on a single Redis; one per lane on a cluster
    for t in tags:
        pipe.zcard(PARTS_PENDING.format(t=t))
    if not keys.sharded():
        pipe.info("replication")
    found = pipe.execute()
    per_lane, quarantined = found[: 2 * lanes], found[2 * lanes]
    parts = sum(found[2 * lanes + 1: 2 * lanes + 1 + len(tags)])
    replication = found[-1] if not keys.sharded() else _cluster_replication(r)
    heads = [orjson.loads(head)["receivedAt"] for head in per_lane[1::2] if head]
    oldest = min((epoch(text) for text in heads), default=None)
    return {
        "inbox": sum(per_lane[0::2]),
        "oldestInboxSeconds": round(time.time() - oldest, 3) if oldest else None,
        "queuedJobs": {name: Queue(name, connection=queue_client(r)).count
                       for name in (QUEUE_NAME, DELIVERY_QUEUE)},
        "workers": len(Worker.all(connection=queue_client(r))),
        "quarantined": quarantined,
        "moPartsPending": parts,
        "redisReplicas": replication.get("connected_slaves", 0),
    }


def _cluster_replication(r: Redis) -> dict[str, Any]:
    """On a cluster: the fewest replicas any primary has (each primary's slots need one)."""
    per_node = r.info("replication", target_nodes="primaries")  # type: ignore[call-arg]
    counts = [info.get("connected_slaves", 0) for info in per_node.values() if isinstance(info, dict)]
    return {"connected_slaves": min(counts, default=0)}
