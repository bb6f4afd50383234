"""Deliver events to one HTTP consumer: its outbox, its retries, its dead letters (SPEC §4).

One job per consumer at a time (the outbox is a `Channel`, app/enqueue.py), on the
`deliveries` queue, so a slow consumer only ever holds its own job. A claimed batch is sent
in order over one keep-alive connection; then one transaction records every outcome and
drops the batch. A job killed mid-batch leaves the batch claimed and its re-run sends it
again: delivery is at least once, with the same `webhook-id`, which consumers dedupe on.

- 2xx: delivered. 410: the consumer wants no more of it: dead-lettered at once.
- anything else: retried after the consumer's schedule (Infobip's own by default), or the
  answer's Retry-After if longer; after the last attempt, dead-lettered.
- a transport failure (refused, timeout) or a Retry-After answer: the consumer is down or asked
  for a pause, so the rest of the batch is not tried now; it waits as long as the failed
  delivery, without spending attempts.
- after TIME_BUDGET seconds the job gives the channel up and re-queues itself, behind the
  other consumers' jobs.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import orjson
from redis import Redis
from redis.client import Pipeline
from rq import get_current_job

from app.clock import now_text
from app.connection import on_data_plane
from app.enqueue import LOCK_TTL, Channel, outbox
from app.keys import CONSUMER_STATS, DEAD_LETTERS, RETRIES, consumer_key
from app.routes import Consumer
from workers import aggregates, webhook
from workers.settings import routes

log = logging.getLogger(__name__)

BATCH_SIZE = 50
TIME_BUDGET = 20.0
# The channel lock is refreshed before an attempt only when this long has passed since the last
# refresh: an EXPIRE per delivery is a Redis write that waits for an fsync under
# `appendfsync always` (~3.5 ms here), which capped a consumer at ~280 deliveries/s
# (docs/BENCHMARKS.md). The lock then still has at least LOCK_TTL - LOCK_REFRESH + timeout
# seconds left when an attempt starts: a slow consumer still keeps the channel ours.
LOCK_REFRESH = 5.0

# Move retries that are due into the outbox.
_PROMOTE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, item in ipairs(due) do redis.call('RPUSH', KEYS[2], item) end
if #due > 0 then redis.call('ZREM', KEYS[1], unpack(due)) end
return #due
"""


def run(name: str) -> dict[str, int]:
    job = get_current_job()
    return on_data_plane(job.connection, lambda r: deliver(r, name, job.id))


def deliver(
    r: Redis, name: str, job_id: str, batch_size: int = BATCH_SIZE, budget: float = TIME_BUDGET
) -> dict[str, int]:
    totals: Counter[str] = Counter()
    channel = outbox(name)
    consumer = routes().consumers.get(name)
    if consumer is None or consumer.kind != "http":
        log.warning("no HTTP consumer %r in the routes file; its outbox waits", name)
        return dict(totals)
    if not channel.own(r, job_id):
        totals["handedBack"] += channel.hand_back(r, job_id)
        return dict(totals)
    deadline = time.monotonic() + budget
    while True:
        promote_due(r, name, batch_size)
        items = channel.claim(r, job_id, batch_size)
        if not items:
            if channel.release(r, job_id) and channel.own(r, job_id):
                continue
            break
        send_batch(r, consumer, channel, job_id, items, deadline, totals)
        if time.monotonic() > deadline:  # yield: a fresh job queues behind other consumers'
            channel.release(r, job_id)
            channel.kick(r)
            break
    log.info("deliver %s job %s: %s", consumer.target, job_id, dict(totals))
    return dict(totals)


def promote_due(r: Redis, name: str, limit: int) -> int:
    retries = RETRIES.format(consumer=consumer_key(name))
    return r.eval(_PROMOTE, 2, retries, outbox(name).inbox, time.time(), limit)


def send_batch(
    r: Redis,
    consumer: Consumer,
    channel: Channel,
    job_id: str,
    items: list[bytes],
    deadline: float,
    totals: Counter[str],
) -> None:
    records = [orjson.loads(item) for item in items]
    outcomes: list[webhook.Outcome] = []
    refreshed = -LOCK_REFRESH
    for record in records:
        if time.monotonic() > deadline or (outcomes and _pause(outcomes[-1])):
            break
        if time.monotonic() - refreshed >= LOCK_REFRESH:  # a slow consumer keeps the channel ours
            r.expire(channel.lock, LOCK_TTL + int(consumer.timeout))
            refreshed = time.monotonic()
        outcomes.append(webhook.attempt(consumer, record["id"], record["body"].encode()))
    pipe = r.pipeline(transaction=True)
    wait = None
    for record, outcome in zip(records, outcomes, strict=False):
        wait = _record(pipe, consumer, record, outcome, totals)
    untried = [orjson.dumps(record) for record in records[len(outcomes) :]]
    if untried and outcomes and _pause(outcomes[-1]) and wait is not None:
        retries = RETRIES.format(consumer=consumer_key(consumer.name))
        pipe.zadd(retries, dict.fromkeys(untried, time.time() + wait))
    elif untried:
        pipe.lpush(channel.inbox, *reversed(untried))  # back to the head, in order
    channel.done(pipe, job_id)
    pipe.execute()


def _pause(outcome: webhook.Outcome) -> bool:
    """Stop sending this batch: no HTTP answer at all (refused, timed out, unresolvable), or
    the consumer said when to come back (Retry-After). The rest waits as long as this one."""
    return not outcome.delivered and (outcome.status is None or outcome.retry_after is not None)


def _record(
    pipe: Pipeline, consumer: Consumer, record: dict[str, Any], outcome: webhook.Outcome, totals: Counter[str]
) -> float | None:
    """Queue the effect of one attempt; return the wait before its retry, if any."""
    log.info("delivery", extra={
        "event_id": record["id"], "consumer": consumer.name, "attempt": record["attempt"],
        "outcome": "delivered" if outcome.delivered else "failed", "status": outcome.status,
        "error": outcome.error, "duration_ms": round(outcome.duration * 1000, 2),
    })
    stats = CONSUMER_STATS.format(consumer=consumer_key(consumer.name))
    if outcome.status is not None:  # an answer came: its time, for the dashboard's /consumers
        aggregates.answer_time(pipe, consumer.name, outcome.duration)
    if outcome.delivered:
        pipe.hincrby(stats, "delivered", 1)
        totals["delivered"] += 1
        return None
    pipe.hincrby(stats, "failedAttempts", 1)
    totals["failed"] += 1
    failed = {**record, "lastError": outcome.error or f"HTTP {outcome.status}", "lastAttemptAt": now_text()}
    wait = None if outcome.gone else webhook.next_delay(
        consumer.retry_schedule, record["attempt"], outcome.retry_after
    )
    if wait is None:
        failed["reason"] = "gone (410)" if outcome.gone else "retries exhausted"
        pipe.lpush(DEAD_LETTERS.format(consumer=consumer_key(consumer.name)), orjson.dumps(failed))
        pipe.hincrby(stats, "deadLettered", 1)
        totals["deadLettered"] += 1
        return None
    failed["attempt"] = record["attempt"] + 1
    retries = RETRIES.format(consumer=consumer_key(consumer.name))
    pipe.zadd(retries, {orjson.dumps(failed): time.time() + wait})
    return wait
