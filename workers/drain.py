"""The drain job: one inbox lane -> dedupe -> state -> event stream, a batch at a time.

A plain function run by RQ (`workers.drain.run`). The hand-off protocol it follows (lane
lock, claimed batch per job id, hand-back) is described in app/enqueue.py. Each batch is
applied in one MULTI/EXEC that also deletes the claimed batch, guarded by WATCH on the lane
lock: either all of a batch takes effect exactly once, or none of it and the batch stays
claimed for the re-run. Duplicate reports inside or across batches are no-ops (state.py).
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import orjson
from redis import Redis, WatchError
from redis.client import Pipeline
from rq import get_current_job

from app import enqueue
from app.keys import BATCH, EVENT_STREAM, LANE_LOCK
from workers.inbound import InboundState
from workers.settings import settings
from workers.state import DeliveryState

log = logging.getLogger(__name__)


def run(lane: int) -> dict[str, int]:
    job = get_current_job()
    return drain(job.connection, lane, job.id)


def drain(r: Redis, lane: int, job_id: str, batch_size: int = enqueue.BATCH_SIZE) -> dict[str, int]:
    """Apply batches until the lane is empty; returns counts of new and duplicate items."""
    totals: Counter[str] = Counter()
    if not enqueue.own(r, lane, job_id):
        totals["handedBack"] += enqueue.hand_back(r, lane, job_id)
        return dict(totals)
    while True:
        items = enqueue.claim(r, lane, job_id, batch_size)
        if not items:
            if enqueue.release(r, lane, job_id) and enqueue.own(r, lane, job_id):
                continue  # work arrived while we were releasing
            break
        if not apply_batch(r, lane, job_id, items, totals):
            totals["handedBack"] += enqueue.hand_back(r, lane, job_id)
            break
    log.info("drain lane %s job %s: %s", lane, job_id, dict(totals))
    return dict(totals)


class BatchState:
    """The state stages of one batch, by item kind: delivery reports and inbound messages."""

    def __init__(self, lane: int, cfg: dict[str, Any]) -> None:
        self.delivery = DeliveryState(lane, cfg["RETENTION_SECONDS"])
        self.inbound = InboundState(lane, cfg["RETENTION_SECONDS"])
        self.by_kind = {"dlr": self.delivery, "mo": self.inbound, "mo.flush": self.inbound}

    def load(self, r: Redis, envelopes: list[dict[str, Any]]) -> None:
        for stage in (self.delivery, self.inbound):
            mine = [e for e in envelopes if self.by_kind[e["kind"]] is stage]
            if mine:
                stage.load(r, mine)

    def apply(self, envelope: dict[str, Any]) -> dict[str, Any] | None:
        return self.by_kind[envelope["kind"]].apply(envelope)

    def write(self, pipe: Pipeline) -> None:
        self.delivery.write(pipe)
        self.inbound.write(pipe)


def apply_batch(r: Redis, lane: int, job_id: str, items: list[bytes], totals: Counter[str]) -> bool:
    """Apply one claimed batch atomically. False when the lane is no longer ours."""
    cfg = settings()
    envelopes = [orjson.loads(item) for item in items]
    lock = LANE_LOCK.format(lane=lane)
    with r.pipeline(transaction=True) as pipe:
        pipe.watch(lock)
        if pipe.get(lock) != job_id.encode():
            return False
        state = BatchState(lane, cfg)
        state.load(r, envelopes)
        new_events = [event for envelope in envelopes if (event := state.apply(envelope))]
        pipe.multi()
        state.write(pipe)
        for event in new_events:
            pipe.xadd(
                EVENT_STREAM,
                {"event": orjson.dumps(event)},
                maxlen=cfg["EVENT_STREAM_MAXLEN"],
                approximate=True,
            )
        pipe.delete(BATCH.format(lane=lane, job_id=job_id))
        pipe.expire(lock, enqueue.LOCK_TTL)
        try:
            pipe.execute()
        except WatchError:
            return False
    totals["new"] += len(new_events)
    totals["duplicate"] += len(envelopes) - len(new_events)
    return True
