"""Per-message and per-bulk delivery state in Redis (SPEC §5): written by drain jobs, read by /api.

One string per message, `msg:<id>`: zlib-compressed JSON `{"hist": [...], "cur": n}`, where
`hist` is every report received (arrival order, each with its eventId and receivedAt) and
`cur` the index of the current one. Compressed because a campaign stores millions of them
(~450 instead of ~730 bytes each); one string, because a batch then reads all its messages
with one MGET and writes each with one SET ... EX. Dedupe is "is this eventId already in
hist?", so a resent report changes nothing and emits nothing.

A final report is never replaced by an intermediate one; between reports of the same
finality the later `doneAt` wins (arrival order breaks ties).

Two more items share the lanes with reports (SPEC §9), so this one writer applies them too:
- a send record (kind "send", app/sends.py) is kept beside the reports as `send`; it is what
  the message shows only while no report has come (`awaitingReport`), so a report that arrived
  before its send record is never overwritten by it. The first send record of a message wins.
- a stale mark (kind "stale", from reconciliation) sets `stale` on a message still not final
  once Infobip's 48 h log window has passed.
Every message not final is in `ix:pending` (score: its last news), the reconciliation's index
(workers/reconcile.py), kept in the same transaction as the message.

Per bulk, `bulk:<id>` holds counters per lane ("<lane>:n", "<lane>:g:DELIVERED",
"<lane>:c:EUR", "<lane>:a" awaiting a report, "<lane>:s" stale, "<lane>:first",
"<lane>:last"). Only one drain job owns a lane at a time, so
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
from app.keys import BULK, INDEX_ALL, INDEX_BULK, INDEX_BULKS, INDEX_PENDING, INDEX_TO, MESSAGE
from app.store import UNKNOWN_GROUP, pack, unpack
from workers.aggregates import Aggregates


@dataclass
class Message:
    hist: list[dict[str, Any]] = field(default_factory=list)
    cur: int | None = None
    send: dict[str, Any] | None = None  # the send record (SPEC §9.2), when the sender posted one
    stale: bool = False
    dirty: bool = False
    news: float | None = None  # epoch of what changed it in this batch (the pending index's score)

    @property
    def current(self) -> dict[str, Any] | None:
        return None if self.cur is None else self.hist[self.cur]

    @property
    def shown(self) -> dict[str, Any] | None:
        """What the message's state is: its current report, else its send record."""
        return self.current or self.send

    @property
    def known(self) -> bool:
        return bool(self.hist) or self.send is not None

    def record(self) -> dict[str, Any]:
        record: dict[str, Any] = {"hist": self.hist, "cur": self.cur}
        if self.send is not None:
            record["send"] = self.send
        if self.stale:
            record["stale"] = True
        return record

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


Contribution = tuple[str, str, tuple[str, Decimal] | None, bool, bool]


def _contribution(message: Message) -> Contribution | None:
    """What one message adds to its bulk: (bulkId, status group, price, awaiting a report, stale)."""
    bulk = next((h["bulkId"] for h in message.hist if h.get("bulkId")), None)
    bulk = bulk or (message.send or {}).get("bulkId")
    shown = message.shown
    if bulk is None or shown is None:
        return None
    group = (shown.get("status") or {}).get("groupName") or UNKNOWN_GROUP
    return bulk, group, _priced(message), awaiting(message), message.stale and not shown["final"]


def awaiting(message: Message) -> bool:
    """Sent (a send record says so), not final, and no report yet."""
    return message.current is None and message.send is not None and not message.send["final"]


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
            self.messages[message_id] = Message(record["hist"], record["cur"], record.get("send"),
                                                record.get("stale", False))
        pipe = r.pipeline(transaction=False)
        bulk_ids = {report["bulkId"] for report in reports if report.get("bulkId")}
        bulk_ids |= {c[0] for m in self.messages.values() if (c := _contribution(m))}
        bulk_ids = sorted(bulk_ids)
        for bulk_id in bulk_ids:
            pipe.hgetall(BULK.format(t=self.t, bulk_id=bulk_id))
        for bulk_id, raw in zip(bulk_ids, pipe.execute(), strict=True):
            self.bulks[bulk_id] = _lane_fields(raw, self.lane)

    def apply(self, envelope: dict[str, Any]) -> dict[str, Any] | None:
        """Record one report; return its event, or None for a resend (nothing changes).
        Send records and stale marks change state but are no event."""
        data = envelope["data"]
        if envelope["kind"] == "send":
            self.record_send(data, envelope["receivedAt"])
            return None
        if envelope["kind"] == "stale":
            self.mark_stale(data["messageId"], envelope["receivedAt"])
            return None
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
        old = message.current
        before = self._change(message, data, received_at)
        message.hist.append({**data, "eventId": event_id, "receivedAt": received_at})
        if replaces(data, message.current):
            message.cur = len(message.hist) - 1
        after = self._changed(message, before)
        if after:
            self._dates(after[0], data)
        self.aggregates.report(old, message.current, before and before[0], after and after[0], received_at)
        return True

    def record_send(self, data: dict[str, Any], received_at: str) -> bool:
        """Keep a message's send record. False when it has one already (a re-posted answer)."""
        message = self.messages[data["messageId"]]
        if message.send is not None:
            self.counts["sendDuplicate"] += 1
            return False
        self.counts["send"] += 1
        before = self._change(message, data, received_at)
        message.send = {**data, "receivedAt": received_at}
        self._changed(message, before)
        return True

    def mark_stale(self, message_id: str, received_at: str) -> None:
        """Past Infobip's log window and still not final (reconciliation's verdict)."""
        message = self.messages[message_id]
        if message.stale or message.shown is None or message.shown["final"]:
            return  # a report made it final since the verdict, or it was marked already
        before = self._change(message, None, received_at)
        message.stale = True
        self._changed(message, before)

    def _change(self, message: Message, data: dict[str, Any] | None, received_at: str) -> Contribution | None:
        """Before changing `message`: index a message seen for the first time, note the news."""
        if data is not None and not message.known:
            self.indexed.append((data["messageId"], epoch(received_at), data))
        message.dirty = True
        message.news = epoch(received_at)
        return _contribution(message)

    def _changed(self, message: Message, before: Contribution | None) -> Contribution | None:
        """After changing `message`: move its count in its bulk if its contribution changed."""
        after = _contribution(message)
        if before != after:
            self._count(before, -1)
            self._count(after, +1)
        return after

    def _bulk(self, bulk_id: str) -> dict[str, Any]:
        self.changed_bulks.add(bulk_id)
        return self.bulks.setdefault(bulk_id, {})

    def _count(self, contribution: tuple | None, sign: int) -> None:
        if contribution is None:
            return
        bulk_id, group, price, waiting, stale = contribution
        fields = self._bulk(bulk_id)
        fields["n"] = fields.get("n", 0) + sign
        fields[f"g:{group}"] = fields.get(f"g:{group}", 0) + sign
        for name, flag in (("a", waiting), ("s", stale)):
            if flag:
                fields[name] = fields.get(name, 0) + sign
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
        pending: dict[str, float] = {}
        settled: list[str] = []
        for message_id, message in self.messages.items():
            if message.dirty:
                blob = pack(message.record())
                pipe.set(MESSAGE.format(t=self.t, message_id=message_id), blob, ex=self.retention)
                shown = message.shown
                if shown is not None and not shown["final"] and not message.stale and message.news:
                    pending[message_id] = message.news
                else:
                    settled.append(message_id)
        pending_key = INDEX_PENDING.format(t=self.t)
        if pending:  # not final: reconciliation looks them up once their last news is old
            pipe.zadd(pending_key, pending)
            pipe.expire(pending_key, self.retention)
        if settled:
            pipe.zrem(pending_key, *settled)
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
    if name in ("n", "a", "s") or name.startswith("g:"):
        return int(value)
    if name.startswith("c:"):
        return Decimal(value)
    return value
