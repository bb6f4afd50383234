"""The hand-off from ingest to workers: durable inbox lanes drained by RQ jobs in batches.

Why not one RQ job per report: a job costs ~5 ms in a worker and an `enqueue` per request
costs ingest most of its speed; a campaign sends millions of reports in minutes. So:

1. Ingest `push()`es validated items onto `inbox:<lane>` (a Redis list) in one atomic
   script, together with any quarantine record; the requests a web process has in hand share one
   such step (app/group_commit.py). The answer 200 is sent only after that step returned,
   i.e. after Redis wrote it (AOF `appendfsync always` in our Redis configs).
2. Each lane has at most one drain job at a time. Its lock `drain:<lane>` holds the job id;
   whoever pushes to a lane with no lock takes the lock and enqueues the drain job (`kick`).
3. The drain job `claim()`s up to BATCH_SIZE items by moving them to `batch:<lane>:<job id>`
   (listed in the `claimed` set), applies them, and drops that key (`done()`) in the same
   transaction that writes their state. A job killed mid-batch leaves the key; RQ re-runs the
   job (same id) and it applies the same batch again; state writes are idempotent by event id,
   so nothing happens twice.
4. When a job finds its lane owned by someone else, it `hand_back()`s its batch to the inbox.
   A periodic sweep (workers/sweep.py) re-kicks idle lanes and hands back orphaned batches,
   found in the `claimed` set: a SCAN of the keyspace for them cost Redis ~2 s per sweep at
   a million stored messages, every 10 s (docs/BENCHMARKS.md).

The same protocol, as a `Channel`, carries events from state to each consumer's outbox.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from redis import Redis, RedisError
from redis.client import Pipeline
from rq import Queue, Retry

from app import keys
from app.connection import NO_REPLICAS, Replication, after_failure, queue_client
from app.keys import (
    BATCH_PREFIX,
    CLAIMED,
    DELIVERY_QUEUE,
    INBOX,
    LANE_LOCK,
    OUTBOX,
    OUTBOX_BATCH_PREFIX,
    OUTBOX_LOCK,
    QUARANTINE,
    QUEUE_NAME,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 500
LOCK_TTL = 30  # seconds; refreshed by every batch the owner applies (see workers/sweep.py)
DRAIN_RETRY = Retry(max=10, interval=[1, 2, 5, 10, 30, 60, 120, 300, 600, 600])

# Move up to ARGV[1] items from the inbox to the job's batch key, unless the job already holds
# a batch (a re-run after a crash), in which case that batch is returned again. A batch key
# that exists is listed in the claimed set (KEYS[3]).
_CLAIM = """
local held = redis.call('LRANGE', KEYS[2], 0, -1)
if #held > 0 then redis.call('SADD', KEYS[3], KEYS[2]) return held end
local items = redis.call('LPOP', KEYS[1], ARGV[1])
if not items or #items == 0 then return {} end
redis.call('RPUSH', KEYS[2], unpack(items))
redis.call('SADD', KEYS[3], KEYS[2])
return items
"""

# Put a batch back at the head of its inbox, in order, and drop the batch key.
_HAND_BACK = """
local items = redis.call('LRANGE', KEYS[1], 0, -1)
for i = #items, 1, -1 do redis.call('LPUSH', KEYS[2], items[i]) end
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[3], KEYS[1])
return #items
"""

# Own the lane: already ours, or free and now taken.
_OWN = """
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then redis.call('EXPIRE', KEYS[1], ARGV[2]) return 1 end
if not owner then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 end
return 0
"""

# Release the lane if ours; then say whether work arrived meanwhile (the caller re-owns it).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
return redis.call('LLEN', KEYS[2])
"""


@dataclass(frozen=True)
class Channel:
    """A list of work with at most one job at a time draining it (the protocol above).

    Inbox lanes (ingest -> state) and consumer outboxes (state -> a consumer) are channels;
    only the key names and the job differ.
    """

    inbox: str  # list of items waiting
    lock: str  # value: id of the job that owns the channel
    batch_prefix: str  # a job's claimed items live at "<batch_prefix>:<job id>"
    job: str  # dotted path of the RQ job function; it takes `arg`
    arg: int | str
    queue: str
    claimed: str = CLAIMED.format(t="")  # the set listing this channel's claimed batches

    def batch(self, job_id: str) -> str:
        return f"{self.batch_prefix}:{job_id}"

    def enqueue_job(self, r: Redis, job_id: str) -> None:
        Queue(self.queue, connection=queue_client(r)).enqueue(
            self.job,
            self.arg,
            job_id=job_id,
            retry=DRAIN_RETRY,
            job_timeout=600,
            result_ttl=0,
            description=f"{self.job.rsplit('.', 1)[0]} {self.arg}",
        )

    def kick(self, r: Redis) -> bool:
        """Start a job unless one owns the channel. True when a job was enqueued."""
        job_id = new_job_id()
        if r.set(self.lock, job_id, nx=True, ex=LOCK_TTL):
            self.enqueue_job(r, job_id)
            return True
        return False

    def own(self, r: Redis, job_id: str) -> bool:
        return bool(r.eval(_OWN, 1, self.lock, job_id, LOCK_TTL))

    def claim(self, r: Redis, job_id: str, size: int = BATCH_SIZE) -> list[bytes]:
        return r.eval(_CLAIM, 3, self.inbox, self.batch(job_id), self.claimed, size)

    def done(self, pipe: Pipeline, job_id: str) -> None:
        """The job's batch is applied: drop it, in the transaction that applied it."""
        pipe.delete(self.batch(job_id))
        pipe.srem(self.claimed, self.batch(job_id))

    def hand_back(self, r: Redis, job_id: str) -> int:
        return r.eval(_HAND_BACK, 3, self.batch(job_id), self.inbox, self.claimed)

    def release(self, r: Redis, job_id: str) -> int:
        """Give up the channel; returns how many items wait in it (to re-own and go on)."""
        return r.eval(_RELEASE, 2, self.lock, self.inbox, job_id)


def new_job_id() -> str:
    """32 random hex digits, as `uuid4().hex` without building a UUID (a push makes one per lane)."""
    return os.urandom(16).hex()


@functools.cache  # a handful of lanes, looked up on every push
def lane(number: int) -> Channel:
    """Inbox lane `number`: ingest pushes, workers.drain applies to state."""
    name = keys.lane_name(number)
    return Channel(INBOX.format(lane=name), LANE_LOCK.format(lane=name), BATCH_PREFIX.format(lane=name),
                   "workers.drain.run", number, QUEUE_NAME, CLAIMED.format(t=keys.tag(number)))


def outbox(consumer: str) -> Channel:
    """A consumer's outbox: workers.fanout pushes, workers.deliver sends."""
    name = keys.consumer_key(consumer)
    return Channel(OUTBOX.format(consumer=name), OUTBOX_LOCK.format(consumer=name),
                   OUTBOX_BATCH_PREFIX.format(consumer=name), "workers.deliver.run", consumer,
                   DELIVERY_QUEUE, CLAIMED.format(t=keys.consumer_tag(consumer)))


def channel_of_batch(key: str) -> tuple[Channel, str]:
    """The channel and job id of a claimed-batch key (for the sweep's orphan search)."""
    head, job_id = key.rsplit(":", 1)
    prefix, name = head.split(":", 1)
    name = keys.untag(name)
    channel = lane(int(name)) if prefix == BATCH_PREFIX.split(":")[0] else outbox(name)
    return channel, job_id


@dataclass(frozen=True)
class Write:
    """What one ingest request hands off: its items by lane, and its quarantine record if it
    rejected some of them."""

    lanes: dict[int, list[bytes]]
    quarantine: bytes | None = None


# Ingest's hand-off, atomic as MULTI/EXEC but one command: append each lane's items to its
# inbox and take the lane's lock if it is free (that pusher then enqueues the drain job), and
# keep the quarantine records. One EVAL costs the web process half the CPU of the four-command
# transaction it replaced (docs/BENCHMARKS.md, session 4).
# KEYS: inbox and lock of each lane, then the quarantine list (may be left out when no
# quarantine record is given: a cluster calls it once per lane, app/keys.py).
# ARGV: LOCK_TTL, QUARANTINE_MAX, then each lane's job id and item count, then the items of
# every lane in that order, then the quarantine records.
_PUSH = """
local lanes = math.floor(#KEYS / 2)
local at = 3 + 2 * lanes
local taken = {}
for i = 1, lanes do
  local last = at + tonumber(ARGV[2 + 2 * i]) - 1
  for first = at, last, 1000 do  -- unpack() has a limit: at most 1000 items per RPUSH
    redis.call('RPUSH', KEYS[2 * i - 1], unpack(ARGV, first, math.min(first + 999, last)))
  end
  taken[i] = redis.call('SET', KEYS[2 * i], ARGV[1 + 2 * i], 'NX', 'EX', ARGV[1]) and 1 or 0
  at = last + 1
end
for q = at, #ARGV do redis.call('LPUSH', KEYS[#KEYS], ARGV[q]) end
if at <= #ARGV then redis.call('LTRIM', KEYS[#KEYS], 0, tonumber(ARGV[2]) - 1) end
return taken
"""


def push(r: Redis, writes: list[Write], quarantine_max: int = 10_000,
         replication: Replication = NO_REPLICAS) -> None:
    """Durably append the items of `writes` to their lanes (and their quarantine records) in
    one atomic step (`_PUSH`), then kick a drain job for every lane that had none.

    Raises redis errors to the caller: then none of `writes` can be answered 200. A kick that
    fails after the push only delays the lane until the sweep kicks it (its lock expires after
    LOCK_TTL); the items are in Redis, so it is logged, not raised. When `replication` requires
    replicas, WAIT follows the script on its connection, in the same round trip (on a cluster,
    after the kicks, per primary written: `Replication.in_slots`); too few confirmations raise
    NotReplicated after the kicks (the items are on the primary: they are drained whether or not
    the answer was 200).
    """
    items: dict[int, list[bytes]] = {}
    for write in writes:
        for number, found in write.lanes.items():
            items.setdefault(number, []).extend(found)
    channels = [lane(number) for number in items]
    job_ids = [new_job_id() for _ in channels]
    names = [key for channel in channels for key in (channel.inbox, channel.lock)]
    counts = [arg for job_id, found in zip(job_ids, items.values(), strict=True)
              for arg in (job_id, len(found))]
    records = [write.quarantine for write in writes if write.quarantine is not None]
    args = (_PUSH, len(names) + 1, *names, QUARANTINE, LOCK_TTL, quarantine_max, *counts,
            *(item for found in items.values() for item in found), *records)
    acks = None
    if keys.sharded():
        taken = _push_sharded(r, channels, job_ids, list(items.values()), records, quarantine_max)
    elif replication.replicas:  # one connection: WAIT counts what this connection wrote
        taken, acks = r.pipeline(transaction=False).eval(*args).wait(
            replication.replicas, replication.timeout_ms).execute()
    else:
        taken = r.eval(*args)
    for channel, job_id, kick in zip(channels, job_ids, taken, strict=True):
        if kick:
            try:
                channel.enqueue_job(r, job_id)
            except RedisError as err:
                log.warning("drain job for lane %s not enqueued (%s); the sweep will kick it",
                            channel.arg, err.__class__.__name__)
    if keys.sharded() and replication.replicas:  # the primaries written to: lanes', quarantine's
        written = [channel.inbox for channel in channels] + [QUARANTINE] * bool(records)
        try:
            acks = replication.in_slots(r, written)
        except RedisError:
            after_failure(r)
            raise
    replication.check(acks)


def _push_sharded(r: Redis, channels: list[Channel], job_ids: list[str], items: list[list[bytes]],
                  records: list[bytes], quarantine_max: int) -> list[int]:
    """On a cluster: one `_PUSH` per lane (its keys share the lane's slot) and the quarantine
    records, in one pipeline (redis-py sends it as one batch per node). Not atomic across
    lanes: any error raises, so the request is answered 503 although some lanes may hold their
    items; Infobip's resend then adds them again, and the drain applies each report once
    (dedupe by event id), so the 200 promise holds: 200 only when every lane was written."""
    pipe = r.pipeline()
    for channel, job_id, found in zip(channels, job_ids, items, strict=True):
        pipe.execute_command("EVAL", _PUSH, 2, channel.inbox, channel.lock, LOCK_TTL, quarantine_max, job_id,
                             len(found), *found)  # ClusterPipeline has no eval(); the command routes by key
    for record in records:
        add_to_quarantine(pipe, record, quarantine_max)
    try:
        results = pipe.execute()
    except RedisError:
        after_failure(r)  # e.g. a primary died: the next request goes to its replica
        raise
    return [lane_taken[0] for lane_taken in results[: len(channels)]]


def add_to_quarantine(pipe: Pipeline, record: bytes, quarantine_max: int) -> None:
    pipe.lpush(QUARANTINE, record)
    pipe.ltrim(QUARANTINE, 0, quarantine_max - 1)


def encode(items: Iterable[dict]) -> list[bytes]:
    return [orjson.dumps(item) for item in items]
