"""Periodic housekeeping, run by `rq cron workers/cron.py` every few seconds.

- A lane with waiting items and no drain job (its lock expired, or an enqueue failed after
  the items were written) gets one.
- A claimed batch (of a lane or a consumer outbox) whose job no longer holds the channel's
  lock goes back to its list. A working job refreshes its lock (LOCK_TTL) at every batch and
  every delivery attempt, so a lock that lapsed means the job died (SIGKILL, lost host):
  its batch is taken over within LOCK_TTL + the sweep interval, without waiting for RQ to
  notice the dead worker. Handing back is always safe: applying is idempotent. Batches are
  found in the `claimed` set (app/enqueue.py); the keyspace is scanned for them only once per
  Redis, for batches claimed by a version before that set.
- A consumer with deliveries waiting or retries due, and no delivery job, gets one.
- A long MO whose parts are still incomplete after `MO_PARTS_TIMEOUT` gets a flush item in
  its lane; the drain job then emits the parts it has, flagged `incomplete` (workers/inbound.py).
  Removing the pending entry and queueing the flush is one atomic step: one flush each.
- Index entries older than the retention period are trimmed (message hashes expire alone).
"""

from __future__ import annotations

import time
from collections import Counter

import orjson
from redis import Redis
from rq import get_current_job

from app import enqueue, keys
from app.clock import now_text
from app.connection import data_client
from app.keys import (
    CLAIMED,
    CLAIMED_SCANNED,
    FANOUT,
    INDEX_ALL,
    INDEX_BULKS,
    INDEX_IN,
    PARTS_PENDING,
    RETRIES,
    consumer_key,
)
from workers.optout import kick_replies_if_due
from workers.settings import routes, settings

# Queue the flush only if this call removed the pending entry: one flush per reassembly.
_FLUSH_ONCE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then redis.call('RPUSH', KEYS[2], ARGV[2]) return 1 end
return 0
"""


def run() -> dict[str, int]:
    return sweep(data_client(get_current_job().connection))


def sweep(r: Redis) -> dict[str, int]:
    cfg = settings()
    done: Counter[str] = Counter()
    if not keys.sharded() and not r.exists(CLAIMED_SCANNED):  # once per Redis: batches from before the set
        for pattern in ("batch:*", "dbatch:*"):
            for key in r.scan_iter(match=pattern, count=1000):
                r.sadd(CLAIMED.format(t=""), key)
        r.set(CLAIMED_SCANNED, 1)  # only once the scan is complete: a sweep that died rescans
    channels = [enqueue.lane(lane) for lane in range(cfg["DRAIN_LANES"])]
    channels += [enqueue.outbox(name) for name in routes().consumers]
    for claimed in dict.fromkeys(channel.claimed for channel in channels):  # one set on one Redis
        for key in r.smembers(claimed):  # a handful: one per running job, not a scan of every key
            channel, job_id = enqueue.channel_of_batch(key.decode())
            if r.get(channel.lock) != job_id.encode():
                done["handedBack"] += channel.hand_back(r, job_id)  # also unlists a key already gone
    for lane in range(cfg["DRAIN_LANES"]):
        channel = enqueue.lane(lane)
        waiting = r.llen(channel.inbox) or (keys.sharded() and r.llen(FANOUT.format(t=keys.tag(lane))))
        if waiting and channel.kick(r):
            done["kicked"] += 1
    now = time.time()
    for consumer in routes().consumers.values():
        channel = enqueue.outbox(consumer.name)
        retries = RETRIES.format(consumer=consumer_key(consumer.name))
        due = r.zrangebyscore(retries, "-inf", now, start=0, num=1)
        if consumer.kind == "http" and (due or r.llen(channel.inbox)) and channel.kick(r):
            done["kickedDeliveries"] += 1
    done["kickedReplies"] = kick_replies_if_due(r, now)  # a killed sender's lock lapsed (SPEC §11)
    done["flushed"] = flush_stale_parts(r, now - cfg["MO_PARTS_TIMEOUT"])
    cutoff = now - cfg["RETENTION_SECONDS"]
    for t in keys.tags():
        done["expiredIndex"] += r.zremrangebyscore(INDEX_ALL.format(t=t), "-inf", cutoff)
        r.zremrangebyscore(INDEX_BULKS.format(t=t), "-inf", cutoff)
        done["expiredInbound"] += r.zremrangebyscore(INDEX_IN.format(t=t), "-inf", cutoff)
    return dict(done)


def flush_stale_parts(r: Redis, started_before: float) -> int:
    """Queue a flush for every reassembly that began before `started_before`."""
    flushed = 0
    for t in keys.tags():  # one set on one Redis; one per lane (in the lane's slot) on a cluster
        pending = PARTS_PENDING.format(t=t)
        for member in r.zrangebyscore(pending, "-inf", started_before, start=0, num=1000):
            lane, key = member.decode().split("|", 1)
            envelope = {"kind": "mo.flush", "receivedAt": now_text(), "data": {"partsKey": key}}
            channel = enqueue.lane(int(lane))
            flushed += r.eval(_FLUSH_ONCE, 2, pending, channel.inbox, member, orjson.dumps(envelope))
            channel.kick(r)
    return flushed


