"""The drain job: one inbox lane -> dedupe -> state -> route -> sinks, a batch at a time.

A plain function run by RQ (`workers.drain.run`). The hand-off protocol it follows (lane
lock, claimed batch per job id, hand-back) is described in app/enqueue.py. Each batch is
applied in one MULTI/EXEC that also deletes the claimed batch, guarded by WATCH on the lane
lock: either all of a batch takes effect exactly once, or none of it and the batch stays
claimed for the re-run. Duplicate reports inside or across batches are no-ops (state.py).
With REDIS_MIN_REPLICAS set, WAIT follows each batch's EXEC; too few confirmations fail the
job, so RQ retries it (SPEC §12).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import orjson
from marshmallow import ValidationError
from redis import Redis, WatchError
from redis.client import Pipeline
from rq import get_current_job

from app import dlr, enqueue, keys, quarantine
from app.clock import epoch
from app.connection import Replication, on_data_plane
from app.events import MO_RECEIVED
from app.keys import WORKER_COUNTERS
from workers import aggregates
from workers.fanout import Fanout
from workers.inbound import InboundState
from workers.numbers import NumberState
from workers.optout import OptOutState, forward_strays, kick_replies
from workers.settings import routes, settings
from workers.state import DeliveryState

log = logging.getLogger(__name__)

# Upper bounds (seconds) of the received -> state lag histogram in /metrics.
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# A batch whose watched opt-out entries changed under it is applied again, this many times.
WATCH_RETRIES = 5


def run(lane: int) -> dict[str, int]:
    job = get_current_job()
    return on_data_plane(job.connection, lambda r: drain(r, lane, job.id))


def drain(r: Redis, lane: int, job_id: str, batch_size: int = enqueue.BATCH_SIZE) -> dict[str, int]:
    """Apply batches until the lane is empty; returns counts of new and duplicate items."""
    totals: Counter[str] = Counter()
    channel = enqueue.lane(lane)
    if not channel.own(r, job_id):
        totals["handedBack"] += channel.hand_back(r, job_id)
        return dict(totals)
    if keys.sharded():  # a cluster: events a killed job applied but did not move on (fanout.py)
        Fanout(routes(), lane).kick(r)
    while True:
        items = channel.claim(r, job_id, batch_size)
        if not items:
            if channel.release(r, job_id) and channel.own(r, job_id):
                continue  # work arrived while we were releasing
            break
        if keys.sharded():  # MO and opt-outs of a number another lane owns go there (optout.py)
            items = forward_strays(r, lane, settings(), items)
        if not apply_batch(r, lane, job_id, items, totals):
            totals["handedBack"] += channel.hand_back(r, job_id)
            break
    log.info("drain", extra={"lane": lane, "job_id": job_id, **totals})
    return dict(totals)


class BatchState:
    """The state stages of one batch, by item kind: delivery reports (and send records, stale
    marks), inbound messages, number-check results, and the opt-out changes and replies of both
    MO and manual changes (`optout` items)."""

    def __init__(self, lane: int, cfg: dict[str, Any], fanout: Fanout) -> None:
        self.counters = WORKER_COUNTERS.format(t=keys.tag(lane))
        self.delivery = DeliveryState(lane, cfg["RETENTION_SECONDS"])
        self.inbound = InboundState(lane, cfg["RETENTION_SECONDS"], router=fanout.route_mo)
        self.numbers = NumberState(lane, cfg["RETENTION_SECONDS"])
        self.optout = OptOutState(fanout.routes, cfg)
        self.by_kind = {"dlr": self.delivery, "mo": self.inbound, "mo.flush": self.inbound,
                        "number": self.numbers,
                        "send": self.delivery, "stale": self.delivery}  # SPEC §9 (workers/state.py)

    def load(self, r: Redis, pipe: Pipeline, envelopes: list[dict[str, Any]]) -> None:
        for stage in (self.delivery, self.inbound, self.numbers):
            mine = [e for e in envelopes if self.by_kind.get(e["kind"]) is stage]
            if mine:
                stage.load(r, mine)
        self.optout.load(r, pipe, envelopes)

    def apply(self, envelope: dict[str, Any]) -> list[dict[str, Any]]:
        """The events of one item: a new MO's own, then those of its opt-out keyword."""
        if envelope["kind"] == "optout":
            return self.optout.change(envelope["data"])
        event = self.by_kind[envelope["kind"]].apply(envelope)
        if event is None:
            return []
        return [event, *self.optout.on_mo(event["data"])] if event["type"] == MO_RECEIVED else [event]

    def write(self, pipe: Pipeline, envelopes: list[dict[str, Any]]) -> None:
        self.delivery.write(pipe)
        self.inbound.write(pipe)
        self.numbers.write(pipe)
        self.optout.write(pipe)
        self.count(pipe, envelopes)
        aggregates.write_batch(pipe, self.delivery, self.inbound)

    def count(self, pipe: Pipeline, envelopes: list[dict[str, Any]]) -> None:
        """Worker figures for /metrics, in the batch's own transaction: they add up across
        workers, and a re-run batch that changes nothing counts nothing twice."""
        for kind, stage in (("dlr", self.delivery), ("mo", self.inbound), ("number", self.numbers)):
            for outcome, n in stage.counts.items():
                pipe.hincrby(self.counters, f"{kind}:{outcome}", n)
        now = time.time()
        lags = [now - epoch(e["receivedAt"]) for e in envelopes if e["kind"] not in ("mo.flush", "optout")]
        for bound in LAG_BUCKETS:
            pipe.hincrby(self.counters, f"lag_le:{bound}", sum(lag <= bound for lag in lags))
        pipe.hincrby(self.counters, "lag_count", len(lags))
        pipe.hincrbyfloat(self.counters, "lag_sum", sum(lags))


def apply_batch(r: Redis, lane: int, job_id: str, items: list[bytes], totals: Counter[str]) -> bool:
    """Apply one claimed batch atomically. False when the lane is no longer ours."""
    envelopes = settled(r, items, settings())
    for _ in range(WATCH_RETRIES):
        applied = _apply_once(r, lane, job_id, envelopes, totals)
        if applied is not None:
            return applied
    return False


def settled(r: Redis, items: list[bytes], cfg: dict[str, Any]) -> list[dict[str, Any]]:
    """The batch's envelopes, each delivery report the request handed off as it came (`{"raw":
    ...}`, `app.dlr.check_all`) normalized, as ingest did before the drain took that over. A
    report the request's checks passed always loads here; one that does not (a web process
    running other code during an upgrade) is quarantined, as ingest would have done, and left
    out. Quarantined before the batch applies (a cluster keeps the quarantine in another slot):
    a job killed in between keeps it twice, which a replay applies once (dedupe)."""
    out = []
    for envelope in map(orjson.loads, items):
        raw = envelope.get("raw")
        try:
            dlr.settle(envelope)
        except ValidationError as err:
            log.error("a checked report does not load; quarantined", extra={"errors": err.messages})
            entry = quarantine.record_input(
                envelope.get("source", "push"), "/infobip/dlr", "application/json", "invalid items",
                [{"index": 0, "errors": err.messages}], orjson.dumps({"results": [raw]}))
            quarantine.keep(r, entry, cfg["QUARANTINE_MAX"])
            continue
        out.append(envelope)
    return out


def _apply_once(r: Redis, lane: int, job_id: str, envelopes: list[dict[str, Any]],
                totals: Counter[str]) -> bool | None:
    """True: applied; False: the lane is not ours; None: a watched opt-out entry changed."""
    cfg = settings()
    channel = enqueue.lane(lane)
    fanout = Fanout(routes(), lane)
    replication = Replication.from_config(cfg)
    with replication.transaction(r) as pipe:
        pipe.watch(channel.lock)
        if pipe.get(channel.lock) != job_id.encode():
            return False
        state = BatchState(lane, cfg, fanout)
        state.load(r, pipe, envelopes)
        per_item = [state.apply(envelope) for envelope in envelopes]
        new_events = [event for found in per_item for event in found]
        pipe.multi()
        state.write(pipe, envelopes)
        fanout.emit(pipe, new_events)
        channel.done(pipe, job_id)
        pipe.expire(channel.lock, enqueue.LOCK_TTL)
        try:
            pipe.execute()
        except WatchError:
            return None if r.get(channel.lock) == job_id.encode() else False
    fanout.kick(r)
    if state.optout.queued:
        kick_replies(r, keys.tag(lane))  # the batch's replies are in its lane (its senders')
    # Too few replicas confirmed the batch (REDIS_MIN_REPLICAS): fail the job, and RQ runs it
    # again (same id). On this primary the batch is applied and gone, so the re-run goes on with
    # the next one; on a replica promoted without it, the batch is still claimed there and the
    # re-run applies it (once: applying is idempotent by event id).
    replication.confirm(r, pipe, channel.lock)
    totals["new"] += sum(1 for found in per_item if found)
    totals["duplicate"] += sum(1 for found in per_item if not found)
    return True
