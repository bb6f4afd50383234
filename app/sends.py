"""Send records (SPEC §9.2): Infobip's answer to a send request, posted by the sending system.

`POST /api/sends` takes the answer of `/sms/1/text/single|multi|advanced` exactly as the sender
got it: `{"bulkId"?, "messages": [{"to", "status", "smsCount", "messageId"}]}`. Each message is
then known as sent and awaiting its report, so the service can say what never got one.

Like a report, a send record is an item of the hand-off (kind "send"): `items()` finds the
messages of a body, `load()` validates one, `lane_key` puts it in the lane of its messageId's
reports. So the drain job that owns that lane is the only writer of the message's state, and a
send record and a report of the same message can never race (workers/state.py applies them).
A send record never emits an event: nothing happened to the message that Infobip reported.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from app.classify import classify_status
from app.dlr import INT64, Status
from app.errors import InvalidPayload

MAX_MESSAGES = 10_000
# 10,000 messages of Infobip's answer (about 250 bytes each) with room to spare; the ingest
# cap (MAX_BODY_BYTES, 1 MiB) holds a bucket of 100 reports, not a campaign's send answer.
MAX_BODY_BYTES = 8 * 1024 * 1024


class SentStatus(Status):
    """A send answer's status: the sender's own JSON, so strict numbers (1.5 is not an id)."""

    groupId = fields.Integer(allow_none=True, strict=True, validate=INT64)
    id = fields.Integer(allow_none=True, strict=True, validate=INT64)


class SentMessage(Schema):
    """One message of a send answer. Unknown fields are allowed and dropped: they are Infobip's
    additions to the send answer, not part of the message's state."""

    class Meta:
        unknown = INCLUDE

    messageId = fields.String(required=True, validate=validate.Length(min=1, max=256))
    to = fields.String(required=True, validate=validate.Length(min=1, max=64))
    status = fields.Nested(SentStatus, required=True)
    smsCount = fields.Integer(allow_none=True, strict=True, validate=validate.Range(min=0, max=INT64.max))


_SCHEMA = SentMessage()


def items(body: Any) -> tuple[str | None, list[Any]]:
    """(bulkId, raw messages) of a send answer; InvalidPayload (400) naming the fields when
    the body itself is wrong: not an object, no `messages` list, too many, a bulkId not a string."""
    if not isinstance(body, dict):
        raise InvalidPayload("bad send answer", {"_schema": ["a JSON object {bulkId?, messages: [...]}"]})
    errors: dict[str, list[str]] = {}
    bulk_id, messages = body.get("bulkId"), body.get("messages")
    if bulk_id is not None and not isinstance(bulk_id, str):
        errors["bulkId"] = ["Not a valid string."]
    if not isinstance(messages, list) or not messages:
        errors["messages"] = ["a non-empty list of the send answer's messages"]
    elif len(messages) > MAX_MESSAGES:
        errors["messages"] = [f"at most {MAX_MESSAGES} messages per request"]
    if errors:
        raise InvalidPayload("bad send answer", errors)
    return bulk_id or None, [{**m, "bulkId": bulk_id or None} if isinstance(m, dict) else m for m in messages]


def load(item: Any) -> dict[str, Any]:
    """One message of a send answer -> the record kept for it. Raises ValidationError."""
    if not isinstance(item, dict):
        raise ValidationError({"_schema": ["Invalid input type."]})
    loaded = _SCHEMA.load(item)
    warnings: list[str] = []
    status, final = classify_status(loaded["status"], warnings)
    return {
        "messageId": loaded["messageId"],
        "bulkId": item.get("bulkId") if isinstance(item.get("bulkId"), str) else None,
        "to": loaded["to"],
        "smsCount": loaded.get("smsCount"),
        "status": status,
        "final": final,
        "warnings": warnings,
    }


def lane_key(data: dict[str, Any]) -> str:
    """The lane of the message's reports (app.dlr.lane_key): one writer per message."""
    return data["messageId"]
