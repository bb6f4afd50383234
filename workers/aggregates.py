"""What the dashboard shows, kept as counters by the workers (SPEC §10): never a scan of messages.

Written in the same MULTI/EXEC that applies a batch (workers/drain.py) or records a delivery
(workers/deliver.py). A batch either takes effect once, with its counters, or not at all and
stays claimed for its re-run; a resent report changes no state (workers/state.py), so it
counts nothing here either.

- Per UTC hour (`dash:h:<hour>`, kept two days): reports and MO applied per minute, and for
  the hour: messages first heard of, messages that reached each status group, final errors,
  delivery times (sentAt -> doneAt of messages that became DELIVERED) and ingest -> state lag
  of new reports, as histograms. One hash an hour: the overview reads 24 keys, not 1,440.
- Per bulk (`dash:bulk:<id>`): messages by the error of their current report (moved like the
  bulk's counts per status group), and the delivery-time histogram.
- Per consumer (`dash:answer:<name>`): how long the consumer took to answer.
All integers, added with HINCRBY: any number of workers can add to the same field.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from redis.client import Pipeline

from app import keys
from app.clock import epoch, now_text
from app.keys import DASH_ANSWER, DASH_BULK, DASH_BULKS, DASH_HOUR, DASH_HOUR_TTL, consumer_key
from app.store_dashboard import ANSWER_BUCKETS, DELIVERY_BUCKETS, LAG_BUCKETS, bucket_of

DELIVERED = "DELIVERED"


def _group(report: dict[str, Any] | None) -> str | None:
    return (report.get("status") or {}).get("groupName") if report else None


def _error(report: dict[str, Any] | None) -> int | None:
    """The report's error id, when there is a real one (0 is NO_ERROR)."""
    error_id = ((report or {}).get("error") or {}).get("id")
    return error_id if isinstance(error_id, int) and error_id else None


def _seconds(report: dict[str, Any]) -> float | None:
    try:
        return epoch(report["doneAt"]) - epoch(report["sentAt"])
    except (KeyError, TypeError, ValueError):
        return None


class Aggregates:
    """The counters one batch changes, gathered in memory and written with the batch."""

    def __init__(self, lane: int, retention_seconds: int) -> None:
        self.t = keys.tag(lane)  # one set of counters per lane on a cluster; readers add them up
        self.retention = retention_seconds
        self.hours: dict[int, Counter[str]] = defaultdict(Counter)
        self.bulks: dict[str, Counter[str]] = defaultdict(Counter)
        self.first_seen: dict[str, float] = {}

    def report(self, old: dict[str, Any] | None, new: dict[str, Any] | None, old_bulk: str | None,
               new_bulk: str | None, received_at: str) -> None:
        """One new report was recorded; `old` and `new` are the message's current report before
        and after it (the same object when the new report did not become current)."""
        at, now = epoch(received_at), time.time()
        hour = self.hours[int(at // 3600)]
        hour["dlr"] += 1
        hour[f"dlr:{int(at // 60) % 60}"] += 1
        self.hours[int(now // 3600)][f"lag:{bucket_of(LAG_BUCKETS, now - at)}"] += 1
        if old is None:
            hour["msgs"] += 1
        if new_bulk:
            self.first_seen.setdefault(new_bulk, at)
        if old is new or new is None:
            return
        if _group(new) != _group(old):
            hour[f"g:{_group(new) or 'UNKNOWN'}"] += 1
        if new.get("final") and _error(new) and not (old and old.get("final") and _error(old) == _error(new)):
            hour[f"e:{_error(new)}"] += 1
        if old_bulk and _error(old):
            self.bulks[old_bulk][f"e:{_error(old)}"] -= 1
        if new_bulk and _error(new):
            self.bulks[new_bulk][f"e:{_error(new)}"] += 1
        if _group(new) == DELIVERED and _group(old) != DELIVERED and (seconds := _seconds(new)) is not None:
            field = f"dt:{bucket_of(DELIVERY_BUCKETS, seconds)}"
            hour[field] += 1
            if new_bulk:
                self.bulks[new_bulk][field] += 1

    def inbound(self, received_at: str) -> None:
        at = epoch(received_at)
        hour = self.hours[int(at // 3600)]
        hour["mo"] += 1
        hour[f"mo:{int(at // 60) % 60}"] += 1

    def write(self, pipe: Pipeline) -> None:
        """Queue the counters on the batch's MULTI pipeline."""
        for hour, fields in self.hours.items():
            key = DASH_HOUR.format(t=self.t, hour=hour)
            _add(pipe, key, fields)
            pipe.expire(key, DASH_HOUR_TTL)
        for bulk_id, fields in self.bulks.items():
            key = DASH_BULK.format(t=self.t, bulk_id=bulk_id)
            _add(pipe, key, fields)
            pipe.expire(key, self.retention)
        if self.first_seen:
            pipe.zadd(DASH_BULKS.format(t=self.t), self.first_seen, nx=True)
            pipe.expire(DASH_BULKS.format(t=self.t), self.retention)


def _add(pipe: Pipeline, key: str, fields: Counter[str]) -> None:
    for name, n in fields.items():
        if n:
            pipe.hincrby(key, name, n)


def write_batch(pipe: Pipeline, delivery: Any, inbound: Any) -> None:
    """The drain's hook: the delivery stage's counters and the batch's new inbound messages."""
    aggregates: Aggregates = delivery.aggregates
    for data in inbound.new_messages:
        aggregates.inbound(data.get("receivedAt") or now_text())
    aggregates.write(pipe)


def answer_time(pipe: Pipeline, consumer: str, seconds: float) -> None:
    """The delivery job's hook: one answer (or timeout) of a consumer, in its transaction."""
    key = DASH_ANSWER.format(consumer=consumer_key(consumer))
    pipe.hincrby(key, f"a:{bucket_of(ANSWER_BUCKETS, seconds)}", 1)
