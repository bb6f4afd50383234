"""Inbound SMS (MO) in Redis: dedupe, long-message reassembly, storage (SPEC §2.2, §5).

Same shape as workers/state.py: a batch's state is read once (`load`), changed in memory
(`apply`), and written in the drain job's transaction (`write`), so a re-run batch changes
nothing twice. Parts of a concatenated message all map to one lane (ingest keys them by
sender, receiver and reference), so one drain job at a time reassembles a message.

- A whole message is stored as `in:<messageId>`; if it exists, a resend is dropped.
- A part is kept in `parts:<key>` (seq -> part) and marked `part:<source id>`, so a resent
  part is dropped and a worker restart loses nothing. When all parts are there, one
  `mo.received` event carries the whole text. Parts arrive in any order.
- `parts:pending` remembers when a reassembly began; the sweep pushes a flush item into the
  lane after `MO_PARTS_TIMEOUT`, and the flush emits what arrived, flagged `incomplete`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
from redis import Redis
from redis.client import Pipeline

from app import events, keys
from app.clock import epoch
from app.keys import (
    INBOUND,
    INDEX_IN,
    INDEX_IN_FROM,
    INDEX_IN_KEYWORD,
    INDEX_IN_TO,
    PART_SEEN,
    PARTS,
    PARTS_PENDING,
)
from app.mo_text import keyword_split

Router = Callable[[dict[str, Any]], str | None]


def pending_member(lane: int, key: str) -> str:
    return f"{lane}|{key}"


class InboundState:
    def __init__(self, lane: int, retention_seconds: int, router: Router | None = None) -> None:
        self.lane = lane
        self.t = keys.tag(lane)
        self.retention = retention_seconds
        self.router = router
        self.stored: dict[str, bool] = {}  # messageId -> already in Redis (or stored now)
        self.seen_parts: dict[str, bool] = {}  # part source id -> already received
        self.parts: dict[str, dict[int, dict[str, Any]]] = {}  # parts key -> seq -> part
        self.new_messages: list[dict[str, Any]] = []
        self.new_parts: list[tuple[str, int, dict[str, Any], str]] = []
        self.done_keys: set[str] = set()
        self.started_keys: dict[str, str] = {}
        self.counts: Counter[str] = Counter()  # new / duplicate / part, for metrics

    def load(self, r: Redis, envelopes: list[dict[str, Any]]) -> None:
        message_ids, part_ids, part_keys = [], [], []
        for envelope in envelopes:
            data = envelope["data"]
            if envelope["kind"] == "mo.flush":
                part_keys.append(data["partsKey"])
            elif data.get("part"):
                part_ids.append(data["part"]["sourceId"])
                part_keys.append(data["part"]["key"])
            else:
                message_ids.append(data["messageId"])
        pipe = r.pipeline(transaction=False)
        for message_id in message_ids:
            pipe.exists(INBOUND.format(t=self.t, message_id=message_id))
        for source_id in part_ids:
            pipe.exists(PART_SEEN.format(t=self.t, source_id=source_id))
        part_keys = list(dict.fromkeys(part_keys))
        for key in part_keys:
            pipe.hgetall(PARTS.format(t=self.t, key=key))
        results = pipe.execute()
        self.stored = dict(zip(message_ids, map(bool, results[: len(message_ids)]), strict=True))
        results = results[len(message_ids) :]
        self.seen_parts = dict(zip(part_ids, map(bool, results[: len(part_ids)]), strict=True))
        for key, raw in zip(part_keys, results[len(part_ids) :], strict=True):
            self.parts[key] = {int(seq): orjson.loads(part) for seq, part in raw.items()}

    def apply(self, envelope: dict[str, Any]) -> dict[str, Any] | None:
        """Record one MO, part or flush; return the event to emit, if any."""
        data = envelope["data"]
        if envelope["kind"] == "mo.flush":
            return self._flush(data["partsKey"])
        if data.get("part"):
            return self._add_part(data, envelope["receivedAt"])
        return self._store(data)

    def _store(self, data: dict[str, Any]) -> dict[str, Any] | None:
        if self.stored.get(data["messageId"]):
            self.counts["duplicate"] += 1
            return None
        self.stored[data["messageId"]] = True
        self.counts["new"] += 1
        data = {**data, "route": self.router(data) if self.router else None}
        self.new_messages.append(data)
        return events.build(events.mo_event_id(data["messageId"]), events.MO_RECEIVED, data)

    def _add_part(self, data: dict[str, Any], received_at: str) -> dict[str, Any] | None:
        part = data["part"]
        if self.seen_parts.get(part["sourceId"]):
            self.counts["duplicate"] += 1
            return None
        self.seen_parts[part["sourceId"]] = True
        key, seq = part["key"], part["seq"]
        parts = self.parts.setdefault(key, {})
        if seq in parts:
            self.counts["duplicate"] += 1
            return None  # the same part under another id
        stored = {k: v for k, v in data.items() if k != "part"}
        parts[seq] = stored
        self.new_parts.append((key, seq, stored, part["sourceId"]))
        if key in self.done_keys:
            # A part that missed the flush of its message in this same batch: emitted alone,
            # flagged incomplete, rather than lost (in a later batch it would start a new
            # reassembly and be flushed alone all the same).
            return self._store({**stored, "incomplete": True})
        if len(parts) == 1:
            self.started_keys[key] = received_at
        if len(parts) >= part["total"]:
            return self._assemble(key, part["total"], incomplete=False)
        self.counts["part"] += 1
        return None

    def _flush(self, key: str) -> dict[str, Any] | None:
        parts = self.parts.get(key)
        if not parts or key in self.done_keys:
            self.done_keys.add(key)
            return None
        return self._assemble(key, None, incomplete=True)

    def _assemble(self, key: str, total: int | None, incomplete: bool) -> dict[str, Any] | None:
        ordered = [self.parts[key][seq] for seq in sorted(self.parts[key])]
        self.done_keys.add(key)
        first = ordered[0]
        texts = [p.get("text") for p in ordered]
        text = "".join(texts) if all(t is not None for t in texts) else None
        whole = {k: v for k, v in first.items() if k not in ("text", "binary", "keyword", "cleanText")}
        whole["text"] = text
        if text is None:
            whole["binary"] = "".join(p.get("binary") or "" for p in ordered)
        whole["keyword"], whole["cleanText"] = keyword_split(text or "")
        whole["parts"] = len(ordered)
        whole["incomplete"] = incomplete
        whole["smsCount"] = len(ordered)
        return self._store(whole)

    def write(self, pipe: Pipeline) -> None:
        for key, seq, part, source_id in self.new_parts:
            if key not in self.done_keys:
                pipe.hset(PARTS.format(t=self.t, key=key), str(seq), orjson.dumps(part))
                pipe.expire(PARTS.format(t=self.t, key=key), self.retention)
            pipe.set(PART_SEEN.format(t=self.t, source_id=source_id), 1, ex=self.retention)
        for key, received_at in self.started_keys.items():
            if key not in self.done_keys:
                member = pending_member(self.lane, key)
                pipe.zadd(PARTS_PENDING.format(t=self.t), {member: epoch(received_at)}, nx=True)
        for key in self.done_keys:
            pipe.delete(PARTS.format(t=self.t, key=key))
            pipe.zrem(PARTS_PENDING.format(t=self.t), pending_member(self.lane, key))
        for data in self.new_messages:
            self._write_message(pipe, data)

    def _write_message(self, pipe: Pipeline, data: dict[str, Any]) -> None:
        message_id = data["messageId"]
        pipe.set(INBOUND.format(t=self.t, message_id=message_id), orjson.dumps(data), ex=self.retention)
        score = epoch(data["receivedAt"])
        names = [INDEX_IN.format(t=self.t)]
        if data.get("from"):
            names.append(INDEX_IN_FROM.format(t=self.t, sender=data["from"]))
        if data.get("to"):
            names.append(INDEX_IN_TO.format(t=self.t, to=data["to"]))
        if data.get("keyword"):
            names.append(INDEX_IN_KEYWORD.format(t=self.t, keyword=data["keyword"]))
        for key in names:
            pipe.zadd(key, {message_id: score}, nx=True)
            pipe.expire(key, self.retention)
