"""The hand-off every adapter feeds: validate, quarantine the rejects, envelope by lane, push.

HTTP ingest (app/ingest.py) runs these steps inside a request, with the web process's group
commit. Adapters that run in their own processes (the pull poller, the SMPP receiver) call
`accept()`, which does the same steps and returns once the accepted items and the quarantine
record are in Redis, in one atomic write (`enqueue.push`; on a Redis Cluster one per lane, see
docs/SCALING.md). Adapters never write state: the
drain jobs do, so a report applies the same way, with the same event id, whichever way it came.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError
from redis import Redis

from app import dlr, enqueue, mo, number, quarantine, sends
from app.clock import now_text
from app.connection import Replication
from app.keys import lane_of

PARSERS = {"dlr": dlr, "mo": mo, "number": number, "send": sends}  # "send": a send record (app/sends.py)


def validate(kind: str, raw_items: list[Any], language: str = "en", source: str | None = None,
             ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(what each valid item is handed off as, `{"index", "errors"}` of the others). A valid item
    goes as `{"data": ...}`, its normalized `data`, or, for a delivery report the fast path
    checked, as `{"raw": item}`, which the drain normalizes (`dlr.check_all`, `dlr.settle`).
    `language` is that of the descriptions filled in from the code tables (`CODE_DESCRIPTIONS`);
    `source`, when given, is set on each valid item (push, pull, logs, smpp: SPEC §9 provenance)."""
    if kind == "dlr":
        accepted, rejected = dlr.check_all(raw_items, language)  # a bucket of reports in one pass
    else:
        parser = PARSERS[kind]
        accepted, rejected = [], []
        for index, item in enumerate(raw_items):
            try:
                accepted.append({"data": parser.load(item)})
            except ValidationError as err:
                rejected.append({"index": index, "errors": err.messages})
    if source is not None:
        for payload in accepted:
            if "data" in payload:
                payload["data"]["source"] = source
            else:
                payload["source"] = source  # `dlr.settle` moves it into the data
    return accepted, rejected


def reason(kind: str, rejected: list[dict[str, Any]]) -> str:
    """The quarantine reason for an input with rejected items. An inbound message sent to the
    DLR URL says so: `replay(..., to="mo")` recovers it."""
    if kind == "dlr" and dlr.inbound_like(rejected):
        return f"invalid items: {dlr.INBOUND_HINT}"
    return "invalid items"


def by_lane(kind: str, accepted: list[dict[str, Any]], lanes: int) -> dict[int, list[bytes]]:
    """Envelope each item `validate` accepted and group by lane, so one message always meets one
    drain job."""
    received_at = now_text()
    lane_key = PARSERS[kind].lane_key
    grouped: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for payload in accepted:
        envelope = {"kind": kind, "receivedAt": received_at, **payload}
        grouped[lane_of(lane_key(payload.get("data") or payload["raw"]), lanes)].append(envelope)
    return {lane: enqueue.encode(items) for lane, items in grouped.items()}


def accept(r: Redis, config: Mapping[str, Any], kind: str, raw_items: list[Any], *, source: str,
           body: bytes, path: str, content_type: str = "application/json") -> dict[str, Any]:
    """Validate `raw_items` of one input (a pulled page, a PDU), mark each accepted item with its
    `source`, and write them and, if some were rejected, a quarantine record of `body` in one
    atomic step. Returns `{"accepted": n, "rejected": [...]}` once that step is in Redis (and on
    REDIS_MIN_REPLICAS replicas); raises the RedisError (or NotReplicated) otherwise: then the
    adapter must not acknowledge the input (what was written is applied once all the same).
    `path` and `content_type` say where a quarantine replay sends `body`."""
    accepted, rejected = validate(kind, raw_items, config.get("CODE_DESCRIPTIONS", "en"), source)
    entry = None
    if rejected:
        entry = quarantine.record_input(source, path, content_type, reason(kind, rejected), rejected, body)
    if accepted or entry:
        write = enqueue.Write(by_lane(kind, accepted, config["DRAIN_LANES"]), entry)
        enqueue.push(r, [write], config["QUARANTINE_MAX"], Replication.from_config(config))
    return {"accepted": len(accepted), "rejected": rejected}
