"""Replies to inbound messages: their record's shape and how the inbound views show them.

`reply:<inbound messageId>` is a hash written once, in the drain transaction that stores the
MO (workers/optout.py), before anything is sent; workers/replies.py moves its `status` on:

    queued -> sending -> sent          (Infobip took it; its delivery report comes later)
    queued -> suppressed               (over the per-sender cap, or the number opted out)
    sending -> queued                  (5xx or connection error: retried after a backoff)
    sending -> sending                 (no answer: looked up in /sms/1/logs before a resend)
    sending -> failed                  (refused by Infobip, or out of attempts)
    disabled                           (no INFOBIP_BASE_URL: recorded, never sent)

The reply's messageId is derived from the inbound one, so the same MO always names the same
reply, at Infobip too (its logs are searched by it).
"""

from __future__ import annotations

import uuid
from typing import Any

from redis import Redis

from app import keys, store  # the modules: app.store imports this one
from app.keys import MESSAGE, REPLY

NAMESPACE = uuid.UUID("8f6d2a4e-3b1c-5d7e-9a0f-4c2b1e6d8a73")  # ours; any fixed UUID would do
FIELDS = ("inbound", "messageId", "kind", "from", "to", "text", "status", "reason", "createdAt",
          "sentAt", "attempts", "attemptAt", "error")
SHOWN = ("messageId", "kind", "text", "status", "reason", "createdAt", "sentAt", "attempts", "error")


def reply_id(inbound_id: str) -> str:
    """The messageId of the reply to inbound message `inbound_id`: the same on every re-run."""
    return str(uuid.uuid5(NAMESPACE, inbound_id))


def record(r: Redis, inbound_id: str) -> dict[str, str] | None:
    raw = r.hgetall(REPLY.format(message_id=inbound_id))
    return {k.decode(): v.decode() for k, v in raw.items()} or None


def with_replies(r: Redis, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add `reply` to each inbound message that has one: two pipelined reads for the lot.

    `status` is the state of the reply message when a delivery report for it has arrived (its
    status group, e.g. DELIVERED); before that, the record's own status (queued, sent, ...)."""
    if not messages:
        return messages
    pipe = r.pipeline(transaction=False)
    for message in messages:
        pipe.hgetall(REPLY.format(message_id=message["messageId"]))
    records = [{k.decode(): v.decode() for k, v in raw.items()} for raw in pipe.execute()]
    ids = [rec.get("messageId") for rec in records]
    reports = store.mget(r, [MESSAGE.format(t=keys.tag_of(i), message_id=i) for i in ids if i])
    by_id = dict(zip([i for i in ids if i], reports, strict=True))
    for message, rec in zip(messages, records, strict=True):
        if rec:
            message["reply"] = view(rec, by_id.get(rec.get("messageId")))
    return messages


def view(rec: dict[str, str], report_blob: bytes | None) -> dict[str, Any]:
    shown: dict[str, Any] = {k: rec[k] for k in SHOWN if rec.get(k)}
    shown["attempts"] = int(rec.get("attempts") or 0)
    if report_blob:
        current = store.unpack(report_blob)
        report = current["hist"][current["cur"]]
        status = report.get("status") or {}
        shown["status"] = status.get("groupName") or shown.get("status")
        shown["report"] = {"status": status.get("name"), "error": (report.get("error") or {}).get("name"),
                           "doneAt": report.get("doneAt")}
    return shown
