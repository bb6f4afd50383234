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
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
from redis import Redis
from redis.client import Pipeline

from app.clock import epoch
from app.keys import BULK, INDEX_ALL, INDEX_BULK, INDEX_BULKS, INDEX_TO, MESSAGE
from workers import events

UNKNOWN_GROUP = "UNKNOWN"


@dataclass
class Message:
    hist: list[dict[str, Any]] = field(default_factory=list)
    cur: int | None = None
    dirty: bool = False

    @property
    def current(self) -> dict[str, Any] | None:
        return None if self.cur is None else self.hist[self.cur]

    def has(self, event_id: str) -> bool:
        return any(h["eventId"] == event_id for h in self.hist)


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
        self.retention = retention_seconds
        self.messages: dict[str, Message] = {}
        self.bulks: dict[str, dict[str, Any]] = {}
        self.changed_bulks: set[str] = set()
        self.indexed: list[tuple[str, float, dict[str, Any]]] = []
        self.counts: Counter[str] = Counter()  # new / duplicate, for metrics

    def load(self, r: Redis, envelopes: list[dict[str, Any]]) -> None:
        reports = [envelope["data"] for envelope in envelopes]
        ids = list(dict.fromkeys(report["messageId"] for report in reports))
        stored = r.mget([MESSAGE.format(message_id=message_id) for message_id in ids])
        for message_id, blob in zip(ids, stored, strict=True):
            record = unpack(blob) if blob else {"hist": [], "cur": None}
            self.messages[message_id] = Message(record["hist"], record["cur"])
        pipe = r.pipeline(transaction=False)
        bulk_ids = {report["bulkId"] for report in reports if report.get("bulkId")}
        bulk_ids |= {c[0] for m in self.messages.values() if (c := _contribution(m))}
        bulk_ids = sorted(bulk_ids)
        for bulk_id in bulk_ids:
            pipe.hgetall(BULK.format(bulk_id=bulk_id))
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
        if message.has(event_id):
            return False
        before = _contribution(message)
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
                pipe.set(MESSAGE.format(message_id=message_id), blob, ex=self.retention)
        for bulk_id in self.changed_bulks:
            key = BULK.format(bulk_id=bulk_id)
            fields = self.bulks[bulk_id]
            pipe.hset(key, mapping={f"{self.lane}:{k}": str(v) for k, v in fields.items()})
            pipe.expire(key, self.retention)
        if self.changed_bulks:  # recently active bulks, for `flask stats`
            pipe.zadd(INDEX_BULKS, dict.fromkeys(self.changed_bulks, time.time()))
            pipe.expire(INDEX_BULKS, self.retention)
        # One ZADD per index key for the whole batch: a 500-report batch of one bulk is two
        # ZADDs of 500 members, not 1000 commands.
        indexes: dict[str, dict[str, float]] = defaultdict(dict)
        for message_id, score, data in self.indexed:
            indexes[INDEX_ALL][message_id] = score
            if data.get("to"):  # one lexicographic zset "<to>|<messageId>": no key per recipient
                indexes[INDEX_TO][f"{data['to']}|{message_id}"] = 0
            if data.get("bulkId"):
                indexes[INDEX_BULK.format(bulk_id=data["bulkId"])][message_id] = score
        for key, members in indexes.items():
            pipe.zadd(key, members, nx=True)
            pipe.expire(key, self.retention)


def pack(record: dict[str, Any]) -> bytes:
    return zlib.compress(orjson.dumps(record), 1)


def unpack(blob: bytes) -> dict[str, Any]:
    return orjson.loads(zlib.decompress(blob))


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


# --- reads, for the query API ---------------------------------------------------------------


def get_message(r: Redis, message_id: str) -> dict[str, Any] | None:
    return _message_view(r.get(MESSAGE.format(message_id=message_id)))


def _message_view(blob: bytes | None, with_history: bool = True) -> dict[str, Any] | None:
    """The current report in SPEC §3 `data` form, plus every report received, oldest first."""
    if not blob:
        return None
    record = unpack(blob)
    current = record["hist"][record["cur"]]
    return {**current, "history": record["hist"]} if with_history else current


def get_bulk(r: Redis, bulk_id: str) -> dict[str, Any] | None:
    raw = r.hgetall(BULK.format(bulk_id=bulk_id))
    if not raw:
        return None
    totals: dict[str, Any] = defaultdict(int)
    cost: dict[str, Decimal] = defaultdict(Decimal)
    first, last = [], []
    for key, value in raw.items():
        name = key.decode().split(":", 1)[1]
        text = value.decode()
        if name == "first":
            first.append(text)
        elif name == "last":
            last.append(text)
        elif name.startswith("c:"):
            cost[name[2:]] += Decimal(text)
        else:
            totals[name] += int(text)
    return {
        "bulkId": bulk_id,
        "total": totals.pop("n", 0),
        "byGroup": {name[2:]: n for name, n in sorted(totals.items()) if n},
        "cost": {currency: format(amount, "f") for currency, amount in sorted(cost.items())},
        "firstSentAt": min(first, default=None),
        "lastDoneAt": max(last, default=None),
    }


def recent_bulks(r: Redis, limit: int = 10) -> list[dict[str, Any]]:
    """The bulks that changed last, with their totals."""
    found = (get_bulk(r, b.decode()) for b in r.zrevrange(INDEX_BULKS, 0, limit - 1))
    return [bulk for bulk in found if bulk]


def find_messages(
    r: Redis,
    *,
    bulk_id: str | None = None,
    to: str | None = None,
    general_status: str | None = None,
    sent_since: datetime | None = None,
    sent_until: datetime | None = None,
    limit: int = 50,
    max_scan: int = 20_000,
) -> list[dict[str, Any]]:
    """Newest first (by arrival), filtered like Infobip's /sms/1/logs. Scans at most `max_scan`."""
    if to and not bulk_id:
        return _find_by_recipient(r, to, general_status, sent_since, sent_until, limit, max_scan)
    return scan_newest(
        r,
        INDEX_BULK.format(bulk_id=bulk_id) if bulk_id else INDEX_ALL,
        MESSAGE,
        lambda blob: _message_view(blob, with_history=False),
        lambda view: _matches(view, bulk_id, to, general_status, sent_since, sent_until),
        limit,
        max_scan,
    )


def scan_newest(
    r: Redis,
    index: str,
    value_key: str,
    decode: Callable[[bytes], dict[str, Any] | None],
    keep: Callable[[dict[str, Any]], bool],
    limit: int,
    max_scan: int,
) -> list[dict[str, Any]]:
    """Walk an index zset newest first, a page at a time; fetch the values (`value_key` with
    `{message_id}`) with one MGET per page; keep what `keep` accepts, up to `limit`. Entries
    whose value expired are skipped. At most `max_scan` index entries are looked at."""
    found: list[dict[str, Any]] = []
    page = max(limit * 2, 100)
    for start in range(0, max_scan, page):
        ids = r.zrevrange(index, start, start + page - 1)
        if not ids:
            break
        for blob in r.mget([value_key.format(message_id=i.decode()) for i in ids]):
            value = decode(blob) if blob else None
            if value is not None and keep(value):
                found.append(value)
                if len(found) >= limit:
                    return found
    return found


def _find_by_recipient(
    r: Redis,
    to: str,
    general_status: str | None,
    sent_since: datetime | None,
    sent_until: datetime | None,
    limit: int,
    max_scan: int,
) -> list[dict[str, Any]]:
    """A recipient has few messages: take them all from the lexicographic index, then sort."""
    prefix = f"{to}|".encode()
    # Byte 0xFF never occurs in UTF-8, so "[prefix" .. "[prefix\xff" is exactly that prefix.
    members = r.zrangebylex(INDEX_TO, b"[" + prefix, b"[" + prefix + b"\xff", start=0, num=max_scan)
    ids = [m[len(prefix) :].decode() for m in members]
    blobs = r.mget([MESSAGE.format(message_id=i) for i in ids]) if ids else []
    views = [_message_view(blob, with_history=False) for blob in blobs]
    found = [v for v in views if v and _matches(v, None, to, general_status, sent_since, sent_until)]
    found.sort(key=lambda v: v.get("receivedAt") or "", reverse=True)
    return found[:limit]


def _matches(
    view: dict[str, Any],
    bulk_id: str | None,
    to: str | None,
    general_status: str | None,
    sent_since: datetime | None,
    sent_until: datetime | None,
) -> bool:
    if bulk_id and view.get("bulkId") != bulk_id:
        return False
    if to and view.get("to") != to:
        return False
    group = (view.get("status") or {}).get("groupName") or UNKNOWN_GROUP
    if general_status and group.upper() != general_status.upper():
        return False
    if sent_since or sent_until:
        if not view.get("sentAt"):
            return False
        sent = datetime.fromisoformat(view["sentAt"])
        if (sent_since and sent < sent_since) or (sent_until and sent > sent_until):
            return False
    return True
