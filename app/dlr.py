"""Where an Infobip delivery report (JSON or XML, v2 or v3 shape) becomes normalized `data`.

`items(kind, doc)` finds the list of reports in a decoded body; `load(item)` validates one
report with marshmallow and returns the SPEC §3 `data` of a DLR event: v3 names mapped to v2
ones, dates in UTC with the originals kept, prices as exact decimal strings, status and error
classified against Infobip's tables, `final` and `warnings` set. Invalid reports raise
marshmallow's ValidationError with per-field messages.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any

import orjson
from marshmallow import INCLUDE, Schema, ValidationError, fields, pre_load, validate

from app.classify import classify_error, classify_status
from app.clock import utc_text
from app.decode import xml_list
from app.errors import InvalidPayload
from app.memo import json_key


class InfobipDateTime(fields.Field):
    """`2015-02-12T09:51:43.123+0100`, `...+00:00`, `...Z`: any ISO 8601 -> aware UTC datetime."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str):
            raise ValidationError("Not a valid date string.")
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError as err:
            raise ValidationError(f"Not a valid ISO 8601 date: {value!r}.") from err
        if parsed.tzinfo is None:  # no offset given: Infobip's platform time is UTC
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)


# Integers are stored as JSON by orjson, which refuses anything beyond 64 bits: such a value
# must be a validation error (400), not a failure when the item is queued (500).
INT64 = validate.Range(min=-(2**63), max=2**63 - 1)

# Prices are written out in plain notation; '1e-999999999' would be a gigabyte of zeros. Infobip's
# prices have 10 decimal places, so these bounds are generous.
MAX_DECIMAL_PLACES = 20
MAX_DECIMAL_DIGITS = 20


def _plain_decimal(amount: Decimal) -> None:
    """Refuse decimals whose plain text would be huge (see `decimal_text`)."""
    if -amount.as_tuple().exponent > MAX_DECIMAL_PLACES or amount.adjusted() >= MAX_DECIMAL_DIGITS:
        raise ValidationError(
            f"At most {MAX_DECIMAL_DIGITS} integer digits and {MAX_DECIMAL_PLACES} decimal places."
        )


def _blank(value: Any) -> bool:
    """'' or only whitespace: how XML writes an empty (possibly indented) element."""
    return isinstance(value, str) and not value.strip()


class _Open(Schema):
    class Meta:
        unknown = INCLUDE  # Infobip adds fields over time; keep them rather than reject

    @pre_load
    def blank_is_absent(self, item: Any, **_kwargs: Any) -> Any:
        """An empty XML element inside price/status/error means "absent", as at the top level."""
        if not isinstance(item, dict):
            return item
        typed = (fields.Number, fields.Boolean)
        return {k: v for k, v in item.items() if not (_blank(v) and isinstance(self.fields.get(k), typed))}


class Price(_Open):
    pricePerMessage = fields.Decimal(allow_nan=False, allow_none=True, validate=_plain_decimal)
    currency = fields.String(allow_none=True)


class Status(_Open):
    groupId = fields.Integer(allow_none=True, validate=INT64)
    groupName = fields.String(allow_none=True)
    id = fields.Integer(allow_none=True, validate=INT64)
    name = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    action = fields.String(allow_none=True)


class Error(Status):
    permanent = fields.Boolean(allow_none=True)


class RepeatedNested(fields.Nested):
    """A nested object (price, status, error) loaded once per distinct value.

    A campaign's reports repeat a handful of these objects (Infobip's status and error tables are
    small, a bulk has one price), and loading them was ~60% of the time ingest spent validating a
    report (docs/BENCHMARKS.md, profile). A load depends only on the value, so a small object is
    loaded once (app/memo.py) and later ones get a copy of that result; anything else, and
    every invalid value, takes marshmallow's ordinary path.
    """

    def _load(self, value: Any, partial: Any = None) -> Any:
        key = json_key(value)
        if key is None or partial:
            return super()._load(value, partial=partial)
        try:
            return dict(_load_plain(self.nested, key))
        except ValidationError as error:  # as Nested._load raises it
            raise ValidationError(error.messages, valid_data=error.valid_data) from error


@lru_cache(maxsize=4096)
def _load_plain(schema: type[Schema], key: bytes) -> dict[str, Any]:
    return schema().load(orjson.loads(key))


# Identifiers never hold control characters; a NUL in a messageId is an attack or a broken
# sender, and it would reach consumers' databases and logs.
NO_CONTROL = validate.Regexp(r"\A[^\x00-\x1f\x7f-\x9f]*\Z", error="Control characters are not allowed here.")
INBOUND_HINT = "looks like an inbound message: is the MO forward URL pointing at /infobip/dlr?"
# What an inbound message has and a delivery report has not (seed, "ПОЛУЧЕНИЕ ВХОДЯЩИХ СООБЩЕНИЙ").
_INBOUND_ONLY = frozenset({"receivedAt", "keyword", "cleanText"})

_FIELDS: dict[str, fields.Field] = {
    "messageId": fields.String(required=True, validate=[validate.Length(min=1, max=256), NO_CONTROL]),
    "bulkId": fields.String(allow_none=True, validate=NO_CONTROL),
    "to": fields.String(allow_none=True, validate=NO_CONTROL),
    "from": fields.String(allow_none=True, validate=NO_CONTROL),
    "text": fields.String(allow_none=True),
    "sentAt": InfobipDateTime(allow_none=True),
    "doneAt": InfobipDateTime(allow_none=True),
    "smsCount": fields.Integer(allow_none=True, validate=validate.Range(min=0, max=INT64.max)),
    "mccMnc": fields.String(allow_none=True, validate=NO_CONTROL),
    "price": RepeatedNested(Price, allow_none=True),
    # An item without a status is not a delivery report (issue 19): an inbound message posted
    # here by a misconfigured MO URL was stored as a report and never reached MO routing.
    "status": RepeatedNested(Status, required=True, error_messages={
        "required": "An item without a status is not a delivery report.",
        "null": "An item without a status is not a delivery report."}),
    "error": RepeatedNested(Error, allow_none=True),
    "callbackData": fields.String(allow_none=True),
    "entityId": fields.String(allow_none=True, validate=NO_CONTROL),
    "applicationId": fields.String(allow_none=True, validate=NO_CONTROL),
    "campaignReferenceId": fields.String(allow_none=True, validate=NO_CONTROL),
}
# Fields whose empty value (an empty XML element) means "absent": numbers, dates, objects.
_TYPED_FIELDS = frozenset(name for name, f in _FIELDS.items() if not isinstance(f, fields.String))

# Infobip's v3 report names -> the v2 names we normalize to (SPEC §2.1).
ALIASES = {"sender": "from", "messageCount": "smsCount", "mccmnc": "mccMnc"}


class DeliveryReport(Schema.from_dict(_FIELDS)):  # type: ignore[misc]
    class Meta:
        unknown = INCLUDE

    @pre_load
    def normalize_shape(self, item: Any, **_kwargs: Any) -> Any:
        if not isinstance(item, dict):
            return item  # marshmallow answers "Invalid input type"
        item = dict(item)
        for alias, name in ALIASES.items():
            if alias in item and name not in item:
                item[name] = item.pop(alias)
        platform = item.pop("platform", None)
        if isinstance(platform, dict):
            for key in ("entityId", "applicationId"):
                item.setdefault(key, platform.get(key))
        # An empty value of a number or object field (an empty XML element, `{}`) means "absent".
        return {k: v for k, v in item.items() if not (k in _TYPED_FIELDS and (_blank(v) or v == {}))}


_SCHEMA = DeliveryReport()


def load(item: Any, language: str = "en") -> dict[str, Any]:
    """One raw report -> normalized `data` (SPEC §3), missing descriptions filled in `language`
    (CODE_DESCRIPTIONS: "en" or "ru"). Raises ValidationError."""
    try:
        return _normalized(_SCHEMA.load(item), item, language)
    except ValidationError as err:
        raise ValidationError(_with_hint(err.messages, item)) from err


def _with_hint(errors: Any, item: Any) -> Any:
    """Name the likely cause when the item without a status has an inbound message's fields."""
    inbound = isinstance(item, dict) and bool(_INBOUND_ONLY & set(item))
    if inbound and isinstance(errors, dict) and "status" in errors:
        return {**errors, "status": [*errors["status"], INBOUND_HINT]}
    return errors


def inbound_like(rejected: list[dict[str, Any]]) -> bool:
    """Whether `load_all`'s rejected items include one that looks like an inbound message."""
    return any(INBOUND_HINT in r["errors"].get("status", ())
               for r in rejected if isinstance(r["errors"], dict))


def load_all(raw_items: list[Any], language: str = "en") -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A bucket of raw reports -> (normalized `data` of the valid ones, `{"index", "errors"}` of
    the others). One marshmallow pass with `many=True` costs ~15% less per report than a `load()`
    call each (docs/BENCHMARKS.md), and buckets of 100 are how campaigns report."""
    try:
        loaded, errors = _SCHEMA.load(raw_items, many=True), {}
    except ValidationError as err:
        loaded, errors = err.valid_data, err.messages
    accepted, rejected = [], []
    for index, (item, valid) in enumerate(zip(raw_items, loaded, strict=True)):
        if index in errors:
            rejected.append({"index": index, "errors": _with_hint(errors[index], item)})
        else:
            accepted.append(_normalized(valid, item, language))
    return accepted, rejected


def _normalized(loaded: dict[str, Any], item: dict[str, Any], language: str) -> dict[str, Any]:
    warnings: list[str] = []
    status, final = classify_status(loaded.get("status"), warnings, language)
    data: dict[str, Any] = {
        "messageId": loaded["messageId"],
        "bulkId": loaded.get("bulkId") or None,
        "to": loaded.get("to"),
        "from": loaded.get("from"),
        "sentAt": None,
        "doneAt": None,
        "smsCount": loaded.get("smsCount"),
        "mccMnc": loaded.get("mccMnc"),
        "price": None,
        "status": status,
        "error": classify_error(loaded.get("error"), warnings, language),
        "callbackData": loaded.get("callbackData"),
        "final": final,
        "warnings": warnings,
    }
    original = {}
    for key in ("sentAt", "doneAt"):
        if loaded.get(key) is not None:
            data[key] = utc_text(loaded[key])
            original[key] = item[key]
    if original:
        data["original"] = original
    price = loaded.get("price")
    if price:
        amount = price.get("pricePerMessage")
        data["price"] = {**price, "pricePerMessage": None if amount is None else decimal_text(amount)}
    for key in ("text", "entityId", "applicationId", "campaignReferenceId"):
        if loaded.get(key) is not None:
            data[key] = loaded[key]
    extra = {k: v for k, v in loaded.items() if k not in _FIELDS}
    if extra:
        data["extra"] = extra
    return data


def lane_key(data: dict[str, Any]) -> str:
    """All reports of one message meet in one lane (one writer per message's state)."""
    return data["messageId"]


def decimal_text(amount: Decimal) -> str:
    """Plain notation, never exponent: '0.0001000000', not '1.000000E-4'."""
    return format(amount, "f")


def items(kind: str, doc: Any) -> list[Any]:
    """The list of raw reports in a decoded push body (JSON `results`, XML `reportResponse`)."""
    if kind == "xml":
        if not isinstance(doc, dict) or "reportResponse" not in doc:
            raise InvalidPayload("XML root must be <reportResponse>")
        root = doc["reportResponse"] or {}
        return xml_list(root.get("results") if isinstance(root, dict) else None, "result")
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        raise InvalidPayload('JSON body must be an object with a "results" list')
    return doc["results"]
