"""Where an Infobip delivery report (JSON or XML, v2 or v3 shape) becomes normalized `data`.

`items(kind, doc)` finds the list of reports in a decoded body; `load(item)` validates one
report with marshmallow and returns the SPEC §3 `data` of a DLR event: v3 names mapped to v2
ones, dates in UTC with the originals kept, prices as exact decimal strings, status and error
classified against Infobip's tables, `final` and `warnings` set. Invalid reports raise
marshmallow's ValidationError with per-field messages.
"""

from __future__ import annotations

import re
from collections.abc import Callable
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
            return parse_date(value)
        except ValueError as err:
            raise ValidationError(f"Not a valid ISO 8601 date: {value!r}.") from err


def parse_date(value: str) -> datetime:
    """Any ISO 8601 text -> aware UTC datetime; ValueError when it is none."""
    parsed = datetime.fromisoformat(value.strip())
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
        return _shaped(item)


def _shaped(item: dict[str, Any]) -> dict[str, Any]:
    """v3 names as v2 ones, `platform` flattened, empty typed values dropped: a copy."""
    item = dict(item)
    if not _RESHAPED.isdisjoint(item):  # a v3 report (a v2 one, the common case, skips this)
        for alias, name in ALIASES.items():
            if alias in item and name not in item:
                item[name] = item.pop(alias)
        platform = item.pop("platform", None)
        if isinstance(platform, dict):
            for key in ("entityId", "applicationId"):
                item.setdefault(key, platform.get(key))
    # An empty value of a number or object field (an empty XML element, `{}`) means "absent".
    for key in _TYPED_FIELDS.intersection(item):
        value = item[key]
        if _blank(value) or value == {}:
            del item[key]
    return item


_RESHAPED = frozenset(ALIASES) | {"platform"}


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
    the others), in the bucket's order. Each report takes the fast path (`quick_load`) when it can;
    the rest go through marshmallow in one pass with `many=True` (~15% less per report than a
    `load()` call each, docs/BENCHMARKS.md)."""
    return _rest_by_marshmallow(raw_items, [quick_load(item, language) for item in raw_items], language)


def check_all(raw_items: list[Any], language: str = "en",
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The request's half of `load_all`: the same verdicts and errors, but a report the fast path
    checked is handed off as it came, `{"raw": item}`, and the drain normalizes it (`settle`);
    one that marshmallow loaded is handed off as `{"data": ...}`. Validating decides the answer,
    so it stays in the request; normalizing it (dates, price text, descriptions) was half of the
    fast path's cost and decides nothing (docs/BENCHMARKS.md, session 8)."""
    # The request's CODE_DESCRIPTIONS decides, as when it normalized: not the default, it goes along.
    extra = {} if language == "en" else {"language": language}
    checked = [None if quick_check(item) is None else {"raw": item, **extra} for item in raw_items]
    return _rest_by_marshmallow(raw_items, checked, language, wrap=lambda data: {"data": data})


def _rest_by_marshmallow(raw_items: list[Any], results: list[Any], language: str,
                         wrap: Callable[[dict[str, Any]], Any] = lambda data: data,
                         ) -> tuple[list[Any], list[dict[str, Any]]]:
    """Fill the gaps (None) of `results` with marshmallow's load of those reports, in one pass;
    (the results without gaps, the rejected items)."""
    slow = [index for index, found in enumerate(results) if found is None]
    rejected = []
    if slow:
        items = [raw_items[index] for index in slow]
        try:
            loaded, errors = _SCHEMA.load(items, many=True), {}
        except ValidationError as err:
            loaded, errors = err.valid_data, err.messages
        for at, (index, item, valid) in enumerate(zip(slow, items, loaded, strict=True)):
            if at in errors:
                rejected.append({"index": index, "errors": _with_hint(errors[at], item)})
            else:
                results[index] = wrap(_normalized(valid, item, language))
    return [found for found in results if found is not None], rejected


def settle(envelope: dict[str, Any]) -> None:
    """In the drain: a report the request checked and handed off as it came (`check_all`) gets
    its normalized `data`, and the envelope's `source` moves into it. Raises ValidationError only
    when this code disagrees with the one that checked it (a rolling upgrade)."""
    raw = envelope.pop("raw", None)
    if raw is None:
        return
    language = envelope.pop("language", "en")
    data = quick_load(raw, language) or load(raw, language)
    if "source" in envelope:
        data["source"] = envelope.pop("source")
    envelope["data"] = data


# The fast path: what marshmallow would load from a report of the common, well-formed shape,
# checked in plain Python. Field groups of _FIELDS by how a value is checked:
_CLEAN_TEXT = ("bulkId", "to", "from", "mccMnc", "entityId", "applicationId", "campaignReferenceId")
_ANY_TEXT = ("text", "callbackData")
_NESTED = (("price", Price), ("status", Status), ("error", Error))
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def quick_load(item: Any, language: str = "en") -> dict[str, Any] | None:
    """`load(item, language)` for a report of the common shape (`quick_check`); None for any
    other, which then takes marshmallow's path."""
    loaded = quick_check(item)
    return None if loaded is None else _normalized(loaded, item, language)


def quick_check(item: Any) -> dict[str, Any] | None:
    """What marshmallow's load returns (before `_normalized`) for a report whose every field is of
    the plain JSON type its field expects (texts as str, `smsCount` an int, dates ISO text,
    price/status/error small objects marshmallow has loaded before or loads now); None for
    anything else, which then takes marshmallow's path. It never rejects: a report it is unsure
    of, valid or not, is left to marshmallow, so answers and error messages stay marshmallow's.
    Marshmallow's load of a report was ~30% of a single-report request's instructions
    (docs/BENCHMARKS.md, session 7); `tests/test_dlr.py` checks this path against `load()` on
    every sample."""
    if type(item) is not dict:
        return None
    shaped = _shaped(item)  # becomes what marshmallow's load returns
    message_id = shaped.get("messageId")
    if type(message_id) is not str or not 0 < len(message_id) <= 256 or _CONTROL.search(message_id):
        return None
    for key in _CLEAN_TEXT:
        value = shaped.get(key)
        if value is not None and (type(value) is not str or _CONTROL.search(value)):
            return None
    for key in _ANY_TEXT:
        value = shaped.get(key)
        if value is not None and type(value) is not str:
            return None
    for key in ("sentAt", "doneAt"):
        value = shaped.get(key)
        if value is not None:
            if type(value) is not str:
                return None
            try:
                shaped[key] = parse_date(value)
            except ValueError:
                return None
    count = shaped.get("smsCount")
    if count is not None and (type(count) is not int or not 0 <= count <= INT64.max):
        return None
    for key, schema in _NESTED:
        value = shaped.get(key)
        if value is None:
            if key == "status":
                return None  # required: marshmallow says why
            continue
        text = json_key(value)
        if text is None:
            return None
        try:
            shaped[key] = dict(_load_plain(schema, text))
        except ValidationError:
            return None
    return shaped


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
