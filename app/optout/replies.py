"""Replies to inbound messages: their record's shape (app/store.py shows them with each inbound message).

`reply{t}:<inbound messageId>` (`{t}`: the lane of the inbound message's sender, app/keys.py §11)
is a hash written once, in the drain transaction that stores the MO (workers/optout.py), before
anything is sent; workers/replies.py moves its `status` on:

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

from redis import Redis

from app.keys import REPLY

NAMESPACE = uuid.UUID("8f6d2a4e-3b1c-5d7e-9a0f-4c2b1e6d8a73")  # ours; any fixed UUID would do
FIELDS = ("inbound", "messageId", "kind", "from", "to", "text", "status", "reason", "createdAt",
          "sentAt", "attempts", "attemptAt", "error")


def reply_id(inbound_id: str) -> str:
    """The messageId of the reply to inbound message `inbound_id`: the same on every re-run."""
    return str(uuid.uuid5(NAMESPACE, inbound_id))


def record(r: Redis, inbound_id: str, t: str) -> dict[str, str] | None:
    """The reply record of inbound message `inbound_id`, whose sender's lane has the tag `t`."""
    raw = r.hgetall(REPLY.format(t=t, message_id=inbound_id))
    return {k.decode(): v.decode() for k, v in raw.items()} or None
