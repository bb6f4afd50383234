"""Group commit: the ingest requests one web process has in hand share one Redis write.

Every accepted request must wait until its items are in Redis before it answers 200. Alone,
each pays a round trip to Redis and, under `appendfsync always`, waits for a sync of the AOF.
Here a request queues its write and takes the commit lock; whoever holds the lock writes
everything queued so far, its own write included unless an earlier holder already wrote it,
in one atomic `enqueue.push`. The requests that arrived while a write was in flight go together
in the next: one round trip for all of them, the same idea as a database's group commit.
Nothing waits to fill a batch, so a lone request is not slowed. Under the single-report bench
load 1.5-1.7 requests share a write (docs/BENCHMARKS.md, session 4).

The rules stay those of `enqueue.push`: a request answers 200 only once the write with its
items returned, and when that write fails every request in it fails (503; Infobip resends,
and resent reports are applied once).
"""

from __future__ import annotations

import logging
import threading

from redis import Redis, RedisError

from app.connection import NO_REPLICAS, Replication
from app.enqueue import Write, push
from app.errors import NotReplicated, StoreUnavailable

log = logging.getLogger(__name__)

# How long a request waits for the commit lock. The holder's write is bounded by the
# Redis client's timeouts and retries (app/connection.py): ~4 attempts of at most 5 s.
COMMIT_WAIT = 30.0


class _Pending:
    __slots__ = ("done", "error", "write")

    def __init__(self, write: Write) -> None:
        self.write = write
        self.done = False  # the Redis write carrying it returned (or failed: then `error`)
        self.error: BaseException | None = None


class GroupCommit:
    """One per web app (`create_app`): the hand-off of every ingest request of the process."""

    def __init__(self, r: Redis, quarantine_max: int, wait: float = COMMIT_WAIT,
                 replication: Replication = NO_REPLICAS) -> None:
        self.r = r
        self.quarantine_max = quarantine_max
        self.replication = replication
        self.wait = wait
        self._queued: list[_Pending] = []
        self._queue_lock = threading.Lock()  # guards _queued; held for list operations only
        self._commit_lock = threading.Lock()  # held for a whole write

    def push(self, write: Write) -> None:
        """Return once `write` is in Redis. Raises StoreUnavailable when it is not."""
        pending = _Pending(write)
        with self._queue_lock:
            self._queued.append(pending)
        if not self._commit_lock.acquire(timeout=self.wait):
            with self._queue_lock:
                if pending in self._queued:  # else the write in flight carries it:
                    self._queued.remove(pending)  # a 503 then only means Infobip resends
            raise StoreUnavailable("Redis did not take the request in time; retry later")
        try:
            if not pending.done:
                self._commit()
        finally:
            self._commit_lock.release()
        if not pending.done:  # the thread writing its batch stopped mid-write, past `except`
            raise StoreUnavailable("the write carrying the request did not finish; retry later")
        if isinstance(pending.error, NotReplicated):
            raise pending.error
        if pending.error is not None:
            raise StoreUnavailable("Redis cannot take the request; retry later") from pending.error

    def _commit(self) -> None:
        with self._queue_lock:
            batch, self._queued = self._queued, []
        if not batch:  # ours was in a batch taken by a writer that stopped (see push)
            return
        try:
            push(self.r, [p.write for p in batch], self.quarantine_max, self.replication)
        except Exception as err:  # every request of the batch answers 503; Infobip resends
            if isinstance(err, (RedisError, NotReplicated)):
                log.warning("redis unavailable: %s", err.__class__.__name__)
            else:
                log.exception("hand-off failed")  # a bug: say so once, not once per request
            for p in batch:
                p.error = err
        for p in batch:
            p.done = True
