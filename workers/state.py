"""Per-message and per-bulk delivery state in Redis (SPEC §5): written by drain jobs, read by /api.

One string per message, `msg:<id>`: zlib-compressed JSON `{"hist": [...], "cur": n}`, where
`hist` is every report received (arrival order, each with its eventId and receivedAt) and
`cur` the index of the current one. Compressed because a campaign stores millions of them
(~450 instead of ~730 bytes each); one string, because a batch then reads all its messages
with one MGET and writes each with one SET ... EX. Dedupe is "is this eventId already in
hist?", so a resent report changes nothing and emits nothing.

A final report is never replaced by an intermediate one; between reports of the same
finality the later `doneAt` wins (arrival order breaks ties).

Per bulk, `bulk:<id>` holds counters per lane ("<lane>:n", "<lane>:g:DELIVERED",
"<lane>:c:EUR", "<lane>:first", "<lane>:last"). Only one drain job owns a lane at a time, so
each field has a single writer and decimal cost sums can be read-modify-written exactly; a
reader adds the lanes up. A message counts once, in the group of its current report, with
the price of its latest priced report.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from redis import Redis
from redis.client import Pipeline

from app import events, keys
from app.clock import epoch
from app.keys import BULK, INDEX_ALL, INDEX_BULK, INDEX_BULKS, INDEX_TO, MESSAGE
from app.store import UNKNOWN_GROUP, pack, unpack
from workers.aggregates import Aggregates


@dataclass
class Message:
    hist: list[dict[str, Any]] = field(default_factory=list)
    cur: int | None = None
    dirty: bool = False

    @property
    def current(self) -> dict[str, Any] | None:
        return None if self.cur is None else self.hist[self.cur]

    def has(self, event_id: str, data: dict[str, Any] | None = None) -> bool:
        """Seen before: the same event id, or the same report by SMPP and by HTTP (app/events.py)."""
        if any(h["eventId"] == event_id for h in self.hist):
            return True
        return data is not None and any(events.same_report(h, data) for h in self.hist)


def replaces(new: dict[str, Any], old: dict[str, Any] | None) -> bool:
    if old is None:
        return True
    if old["final"] != new["final"]:
        return new["final"]
    if new.get("doneAt") and old.get("doneAt"):
        return new["doneAt"] >= old["doneAt"]  # same format (UTC, ms, Z): text order is time order
    return True


def _priced(message: Message) -> tuple[str, Decimal] | None:
    for report in [message.current, *reversed(message.hist)]:
        price = (report or {}).get("price") or {}
        if price.get("pricePerMessage") is not None and price.get("currency"):
            return price["currency"], Decimal(price["pricePerMessage"])
    return None


def _contribution(message: Message) -> tuple[str, str, tuple[str, Decimal] | None] | None:
    """What one message adds to its bulk: (bulkId, status group, price)."""
    bulk = next((h["bulkId"] for h in message.hist if h.get("bulkId")), None)
    if bulk is None or message.current is None:
        return None
    group = (message.current.get("status") or {}).get("groupName") or UNKNOWN_GROUP
    return bulk, group, _priced(message)


class DeliveryState:
    """The state a batch touches, read once, changed in memory, written in one transaction."""

    def __init__(self, lane: int, retention_seconds: int) -> None:
        self.lane = lane
        self.t = keys.tag(lane)
        self.retention = retention_seconds
        self.messages: dict[str, Message] = {}
        self.bulks: dict[str, dict[str, Any]] = {}
        self.changed_bulks: set[str] = set()
        self.indexed: list[tuple[str, float, dict[str, Any]]] = []
        self.counts: Counter[str] = Counter()  # new / duplicate, for metrics
        self.aggregates = Aggregates(lane, retention_seconds)  # what the dashboard shows

    def load(self, r: Redis, envelopes: list[dict[str, Any]]) -> None:
        reports = [envelope["data"] for envelope in envelopes]
        ids = list(dict.fromkeys(report["messageId"] for report in reports))
        stored = r.mget([MESSAGE.format(t=self.t, message_id=message_id) for message_id in ids])
        for message_id, blob in zip(ids, stored, strict=True):
            record = unpack(blob) if blob else {"hist": [], "cur": None}
            self.messages[message_id] = Message(record["hist"], record["cur"])
        pipe = r.pipeline(transaction=False)
        bulk_ids = {report["bulkId"] for report in reports if report.get("bulkId")}
        bulk_ids |= {c[0] for m in self.messages.values() if (c := _contribution(m))}
        bulk_ids = sorted(bulk_ids)
        for bulk_id in bulk_ids:
            pipe.hgetall(BULK.format(t=self.t, bulk_id=bulk_id))
        for bulk_id, raw in zip(bulk_ids, pipe.execute(), strict=True):
            self.bulks[bulk_id] = _lane_fields(raw, self.lane)

    def apply(self, envelope: dict[str, Any]) -> dict[str, Any] | None:
        """Record one report; return its event, or None for a resend (nothing changes)."""
        data = envelope["data"]
        event_id = events.dlr_event_id(data)
        if not self.record(data, event_id, envelope["receivedAt"]):
            self.counts["duplicate"] += 1
            return None
        self.counts["new"] += 1
        return events.build(event_id, events.dlr_type(data), data)

    def record(self, data: dict[str, Any], event_id: str, received_at: str) -> bool:
        """Record one report. False when it was seen before (a resend): nothing changes."""
        message = self.messages[data["messageId"]]
        if message.has(event_id, data):
            return False
        before, old = _contribution(message), message.current
        if not message.hist:
            self.indexed.append((data["messageId"], epoch(received_at), data))
        message.hist.append({**data, "eventId": event_id, "receivedAt": received_at})
        if replaces(data, message.current):
            message.cur = len(message.hist) - 1
        message.dirty = True
        after = _contribution(message)
        if before != after:
            self._count(before, -1)
            self._count(after, +1)
        if after:
            self._dates(after[0], data)
        self.aggregates.report(old, message.current, before and before[0], after and after[0], received_at)
        return True

    def _bulk(self, bulk_id: str) -> dict[str, Any]:
        self.changed_bulks.add(bulk_id)
        return self.bulks.setdefault(bulk_id, {})

    def _count(self, contribution: tuple | None, sign: int) -> None:
        if contribution is None:
            return
        bulk_id, group, price = contribution
        fields = self._bulk(bulk_id)
        fields["n"] = fields.get("n", 0) + sign
        fields[f"g:{group}"] = fields.get(f"g:{group}", 0) + sign
        if price:
            currency, amount = price
            fields[f"c:{currency}"] = fields.get(f"c:{currency}", Decimal(0)) + sign * amount

    def _dates(self, bulk_id: str, data: dict[str, Any]) -> None:
        fields = self._bulk(bulk_id)
        if data.get("sentAt") and (not fields.get("first") or data["sentAt"] < fields["first"]):
            fields["first"] = data["sentAt"]
        if data.get("doneAt") and (not fields.get("last") or data["doneAt"] > fields["last"]):
            fields["last"] = data["doneAt"]

    def write(self, pipe: Pipeline) -> None:
        """Queue every change on a MULTI pipeline; the caller executes it atomically."""
        for message_id, message in self.messages.items():
            if message.dirty:
                blob = pack({"hist": message.hist, "cur": message.cur})
                pipe.set(MESSAGE.format(t=self.t, message_id=message_id), blob, ex=self.retention)
        for bulk_id in self.changed_bulks:
            key = BULK.format(t=self.t, bulk_id=bulk_id)
            fields = self.bulks[bulk_id]
            pipe.hset(key, mapping={f"{self.lane}:{k}": str(v) for k, v in fields.items()})
            pipe.expire(key, self.retention)
        if self.changed_bulks:  # recently active bulks, for `flask stats`
            pipe.zadd(INDEX_BULKS.format(t=self.t), dict.fromkeys(self.changed_bulks, time.time()))
            pipe.expire(INDEX_BULKS.format(t=self.t), self.retention)
        # One ZADD per index key for the whole batch: a 500-report batch of one bulk is two
        # ZADDs of 500 members, not 1000 commands.
        indexes: dict[str, dict[str, float]] = defaultdict(dict)
        for message_id, score, data in self.indexed:
            indexes[INDEX_ALL.format(t=self.t)][message_id] = score
            if data.get("to"):  # one lexicographic zset "<to>|<messageId>": no key per recipient
                indexes[INDEX_TO.format(t=self.t)][f"{data['to']}|{message_id}"] = 0
            if data.get("bulkId"):
                indexes[INDEX_BULK.format(t=self.t, bulk_id=data["bulkId"])][message_id] = score
        for key, members in indexes.items():
            pipe.zadd(key, members, nx=True)
            pipe.expire(key, self.retention)


def _lane_fields(raw: dict[bytes, bytes], lane: int) -> dict[str, Any]:
    """This lane's counters of a bulk hash, without the lane prefix, as numbers."""
    lane_text, fields = str(lane), {}
    for key, value in raw.items():
        owner, name = key.decode().split(":", 1)
        if owner == lane_text:
            fields[name] = _field_value(name, value.decode())
    return fields


def _field_value(name: str, value: str) -> Any:
    if name == "n" or name.startswith("g:"):
        return int(value)
    if name.startswith("c:"):
        return Decimal(value)
    return value
