"""Where a number-check (HLR) result becomes normalized `data` of a `number.checked` event.

Infobip answers a number check asked over SMPP with a `deliver_sm` (seed "ПРОВЕРКА НОМЕРА при
подключении по SMPP"); `app.smpp.pdu_map.number_check` reads it into the raw item this schema
validates. Status and error are classified against Infobip's tables as for a report.
"""

from __future__ import annotations

from typing import Any

from marshmallow import INCLUDE, Schema, fields, validate

from app.classify import classify_error, classify_status
from app.clock import utc_text
from app.dlr import Error as ErrorObject
from app.dlr import InfobipDateTime, Status, decimal_text


class Network(Schema):
    name = fields.String(allow_none=True)
    prefix = fields.String(allow_none=True)
    country = fields.String(allow_none=True)
    countryCode = fields.String(allow_none=True)
    countryPrefix = fields.String(allow_none=True)


class NumberCheck(Schema):
    class Meta:
        unknown = INCLUDE

    messageId = fields.String(required=True, validate=validate.Length(min=1, max=256))
    number = fields.String(allow_none=True)
    status = fields.Nested(Status, allow_none=True)
    error = fields.Nested(ErrorObject, allow_none=True)
    sentAt = InfobipDateTime(allow_none=True)
    doneAt = InfobipDateTime(allow_none=True)
    imsi = fields.String(allow_none=True)
    msc = fields.String(allow_none=True)
    hlr = fields.String(allow_none=True)
    mccMnc = fields.String(allow_none=True)
    originalNetwork = fields.Nested(Network, load_default=dict)
    portedNetwork = fields.Nested(Network, load_default=dict)
    roamingNetwork = fields.Nested(Network, load_default=dict)
    ported = fields.Boolean(allow_none=True)
    valid = fields.Boolean(allow_none=True)
    price = fields.Decimal(allow_none=True, allow_nan=False)


_SCHEMA = NumberCheck()


def load(item: Any) -> dict[str, Any]:
    """One raw number-check result -> `data`. Raises marshmallow's ValidationError."""
    loaded = _SCHEMA.load(item)
    warnings: list[str] = []
    status, _final = classify_status(loaded.get("status"), warnings)
    data = {**loaded, "status": status, "error": classify_error(loaded.get("error"), warnings),
            "warnings": warnings}
    if loaded.get("price") is not None:
        data["price"] = decimal_text(loaded["price"])  # text: never a float in sums
    for key in ("sentAt", "doneAt"):
        data[key] = utc_text(loaded[key]) if loaded.get(key) else None
    return data


def lane_key(data: dict[str, Any]) -> str:
    return data["messageId"]
