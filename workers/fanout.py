"""Route and sink stage: who gets each new event (SPEC §4), and putting it on its way.

Runs inside the drain job's transaction, so an event reaches every consumer's outbox or
stream exactly when its state is written: never one without the other.
- An MO takes the first matching MO route (`app.routes.match_mo_route`); its name is
  recorded on the message. An MO no route takes is kept all the same, and counted.
- `redis-stream` consumers get an XADD (approximate MAXLEN) right here.
- HTTP consumers get a delivery in their outbox; `workers.deliver` sends it, with retries,
  on its own queue, so a slow or dead consumer never delays state or the other consumers.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis import Redis
from redis.client import Pipeline

from app.clock import now_text
from app.enqueue import outbox
from app.events import MO_RECEIVED
from app.keys import MO_UNROUTED, OUTBOX
from app.routes import Routes, consumers_for, match_mo_route


def delivery(event_id: str, body: bytes) -> bytes:
    """A delivery record: the event's exact bytes (signed as-is on every attempt) and its count."""
    return orjson.dumps({"id": event_id, "body": body.decode(), "attempt": 0, "queuedAt": now_text()})


class Fanout:
    def __init__(self, routes: Routes) -> None:
        self.routes = routes
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
                    pipe.incr(MO_UNROUTED)
            body = orjson.dumps(event)
            for consumer in consumers_for(self.routes, event["type"], route):
                if consumer.kind == "redis-stream":
                    pipe.xadd(consumer.stream, {"event": body}, maxlen=consumer.maxlen, approximate=True)
                else:
                    pipe.rpush(OUTBOX.format(consumer=consumer.name), delivery(event["id"], body))
                    self.outboxes.add(consumer.name)

    def kick(self, r: Redis) -> None:
        """After the transaction: make sure a delivery job serves every outbox we filled."""
        for name in self.outboxes:
            outbox(name).kick(r)
