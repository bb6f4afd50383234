"""Route and sink stage: who gets each new event (SPEC §4), and putting it on its way.

Runs inside the drain job's transaction, so an event reaches every consumer's outbox or
stream exactly when its state is written: never one without the other.
- An MO takes the first matching MO route (`app.routes.match_mo_route`); its name is
  recorded on the message. An MO no route takes is kept all the same, and counted.
- `redis-stream` consumers get an XADD (approximate MAXLEN) right here.
- HTTP consumers get a delivery in their outbox; `workers.deliver` sends it, with retries,
  on its own queue, so a slow or dead consumer never delays state or the other consumers.

On a Redis Cluster (SPEC §12) outboxes and streams live in other slots than the lane, so the
transaction pushes each (consumer, item) to the lane's own `fan:{L}` list instead, and the drain
job moves that list on right after EXEC (`Fanout.kick`; again at its next start and by the
sweep if it died in between). The move is at least once: a job killed between the pushes and
the trim pushes those items again, so a consumer may see an event twice, with the same
`webhook-id` (event id) to drop it by, and stream readers the same event id.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis import Redis
from redis.client import Pipeline

from app import keys
from app.clock import now_text
from app.enqueue import outbox
from app.events import MO_RECEIVED
from app.keys import FANOUT, MO_UNROUTED
from app.routes import Routes, consumers_for, match_mo_route


def delivery(event_id: str, body: bytes) -> bytes:
    """A delivery record: the event's exact bytes (signed as-is on every attempt) and its count."""
    return orjson.dumps({"id": event_id, "body": body.decode(), "attempt": 0, "queuedAt": now_text()})


class Fanout:
    def __init__(self, routes: Routes, lane: int = 0) -> None:
        self.routes = routes
        self.lane = lane
        self.fan = FANOUT.format(t=keys.tag(lane)) if keys.sharded() else None
        self.route_by_name = {route.name: route for route in routes.mo_routes}
        self.outboxes: set[str] = set()

    def route_mo(self, data: dict[str, Any]) -> str | None:
        """The name of the MO route that takes this message, or None."""
        route = match_mo_route(self.routes, data.get("keyword") or "", data.get("to"))
        return route.name if route else None

    def emit(self, pipe: Pipeline, events: list[dict[str, Any]]) -> None:
        """Queue every event for its consumers on the drain job's MULTI pipeline."""
        for event in events:
            route = None
            if event["type"] == MO_RECEIVED:
                route = self.route_by_name.get(event["data"].get("route"))
                if route is None:
                    pipe.incr(MO_UNROUTED.format(t=keys.tag(self.lane)))
            body = orjson.dumps(event)
            for consumer in consumers_for(self.routes, event["type"], route):
                if self.fan:  # a cluster: other slots, moved on after EXEC
                    item = body if consumer.kind == "redis-stream" else delivery(event["id"], body)
                    pipe.rpush(self.fan, orjson.dumps({"to": consumer.name, "item": item.decode()}))
                    self.outboxes.add(consumer.name)
                elif consumer.kind == "redis-stream":
                    pipe.xadd(consumer.stream, {"event": body}, maxlen=consumer.maxlen, approximate=True)
                else:
                    pipe.rpush(outbox(consumer.name).inbox, delivery(event["id"], body))
                    self.outboxes.add(consumer.name)

    def kick(self, r: Redis) -> None:
        """After the transaction: make sure a delivery job serves every outbox we filled."""
        if self.fan:
            self.move(r)
        for name in self.outboxes:
            if (consumer := self.routes.consumers.get(name)) is None or consumer.kind == "http":
                outbox(name).kick(r)

    def move(self, r: Redis) -> int:
        """Cluster only: move the lane's fan-out list to the outboxes and streams, in order,
        then trim what was moved (at least once, see above). Returns how many items moved."""
        raw = r.lrange(self.fan, 0, 999) if self.fan else []
        if not raw:
            return 0
        pipe = r.pipeline()
        for entry in map(orjson.loads, raw):
            consumer = self.routes.consumers.get(entry["to"])
            if consumer is None:
                continue  # removed from the routes file since: as if never routed
            if consumer.kind == "redis-stream":
                pipe.xadd(consumer.stream, {"event": entry["item"]}, maxlen=consumer.maxlen, approximate=True)
            else:
                pipe.rpush(outbox(consumer.name).inbox, entry["item"])
                self.outboxes.add(consumer.name)
        pipe.execute()
        r.ltrim(self.fan, len(raw), -1)
        return len(raw) + (self.move(r) if len(raw) == 1000 else 0)
