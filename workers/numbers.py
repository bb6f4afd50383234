"""Number-check results in Redis: dedupe and storage, in the drain job's transaction.

Same shape as workers/inbound.py: read once (`load`), decide in memory (`apply`), write with
the batch (`write`). A result is stored as `num:<messageId>`; if it is there, a resend (a
deliver_sm Infobip delivered again after a lost deliver_sm_resp) is dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from redis import Redis
from redis.client import Pipeline

from app import events, keys
from app.keys import NUMBER_CHECK


class NumberState:
    def __init__(self, lane: int, retention_seconds: int) -> None:
        self.t = keys.tag(lane)
        self.retention = retention_seconds
        self.stored: dict[str, bool] = {}
        self.new: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()

    def load(self, r: Redis, envelopes: list[dict[str, Any]]) -> None:
        ids = list(dict.fromkeys(e["data"]["messageId"] for e in envelopes))
        pipe = r.pipeline(transaction=False)
        for message_id in ids:
            pipe.exists(NUMBER_CHECK.format(t=self.t, message_id=message_id))
        self.stored = dict(zip(ids, map(bool, pipe.execute()), strict=True))

    def apply(self, envelope: dict[str, Any]) -> dict[str, Any] | None:
        data = envelope["data"]
        if self.stored.get(data["messageId"]):
            self.counts["duplicate"] += 1
            return None
        self.stored[data["messageId"]] = True
        self.counts["new"] += 1
        self.new.append(data)
        return events.build(events.number_event_id(data["messageId"]), events.NUMBER_CHECKED, data)

    def write(self, pipe: Pipeline) -> None:
        for data in self.new:
            key = NUMBER_CHECK.format(t=self.t, message_id=data["messageId"])
            pipe.set(key, orjson.dumps(data), ex=self.retention)
