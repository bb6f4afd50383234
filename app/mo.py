"""Where an inbound SMS (MO) forward becomes normalized `data` (SPEC §2.2, §3 MO part).

Two shapes arrive at /infobip/mo:
- a forward: the operator's URL template filled in by Infobip, by GET (query) or POST (form,
  JSON or XML object of the same parameters). `app.mo_template` inverts the template;
- Infobip's JSON inbound push in the pull shape: `{"results": [{messageId, from, ...}]}`.

`items()` finds the raw items of a request; `load()` validates one and returns its data:
text decoded from `bin` by data coding, a User Data Header cut off (a concatenated part
carries `part` for the worker to reassemble), keyword and cleanText, a derived messageId
when Infobip sent none. Invalid items raise marshmallow's ValidationError.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote

from marshmallow import INCLUDE, Schema, ValidationError, fields, pre_load, validate

from app.clock import now_text, utc_text
from app.decode import declared_charset, decode_body, xml_list
from app.dlr import NO_CONTROL, InfobipDateTime, Price, decimal_text
from app.errors import InvalidPayload
from app.mo_template import Template
from app.mo_text import decode_bytes, esm_has_udh, hex_bytes, keyword_split, split_udh

FORM_TYPE = "application/x-www-form-urlencoded"
# A form body's printable ASCII stays as sent ('%' and '+' too); any other byte is %-escaped
# first, so that raw and escaped bytes decode alike, by the declared charset.
_FORM_SAFE = "".join(chr(c) for c in range(0x21, 0x7F))
_SURROGATES = re.compile("[\udc80-\udcff]")


class Forward(Schema):
    """The parameters of a forward, by canonical name (after template inversion)."""

    sender = fields.String(required=True, validate=validate.Length(min=1, max=64))
    receiver = fields.String(load_default=None)
    text = fields.String(load_default=None)
    bin = fields.String(load_default=None)
    datetime = fields.String(load_default=None)
    messageid = fields.String(load_default=None, validate=NO_CONTROL)
    datacoding = fields.Integer(load_default=0, validate=validate.Range(min=0, max=255))
    esmclass = fields.Integer(load_default=0, validate=validate.Range(min=0, max=255))
    # Set by `_undecoded`, never by a template: the hex of a text the charset could not decode.
    textbytes = fields.String(load_default=None)

    @pre_load
    def blank_numbers_are_absent(self, item: Any, **_kwargs: Any) -> Any:
        if isinstance(item, dict):
            return {k: v for k, v in item.items() if not (v == "" and k in ("datacoding", "esmclass"))}
        return item

    @pre_load
    def sender_without_plus(self, item: Any, **_kwargs: Any) -> Any:
        """Infobip sends no '+'; some proxies add one. Cut before validation, so a sender of
        only '+' is missing (400) rather than an empty `from`."""
        if isinstance(item, dict) and isinstance(item.get("sender"), str):
            return {**item, "sender": item["sender"].lstrip("+")}
        return item


class Pulled(Schema):
    """One message of Infobip's pull-shape push (seed "ПОЛУЧЕНИЕ ВХОДЯЩИХ СООБЩЕНИЙ – PULL")."""

    class Meta:
        unknown = INCLUDE

    messageId = fields.String(required=True, validate=[validate.Length(min=1, max=256), NO_CONTROL])
    text = fields.String(load_default="")
    cleanText = fields.String(allow_none=True)
    keyword = fields.String(allow_none=True)
    receivedAt = InfobipDateTime(allow_none=True)
    # Bounded to 64 bits: orjson cannot queue a bigger integer, and that must be a 400, not a 500.
    smsCount = fields.Integer(allow_none=True, validate=validate.Range(min=0, max=2**63 - 1))
    price = fields.Nested(Price, allow_none=True)
    callbackData = fields.String(allow_none=True)


_PULLED_FIELDS = set(Pulled().fields) | {"from", "to"}
_FORWARD, _PULLED = Forward(), Pulled()


def items(template: Template, path: str, args: Mapping[str, str], content_type: str | None,
          body: bytes) -> list[tuple[str, Any]]:
    """Raw items of one request, each tagged "forward" or "pull"."""
    params, charset = dict(args), "utf-8"
    if body.strip():
        declared = (content_type or "").split(";")[0].strip().lower()
        if declared == FORM_TYPE:
            charset = declared_charset(content_type) or charset
            params.update(parse_qsl(quote(body, safe=_FORM_SAFE), keep_blank_values=True, encoding=charset,
                                    errors="surrogateescape"))
        else:
            kind, doc = decode_body(body, content_type)
            if kind == "xml":
                doc = next(iter(doc.values()), None) if isinstance(doc, dict) else None
            if not isinstance(doc, dict):
                raise InvalidPayload("MO body must be an object of parameters or {\"results\": [...]}")
            if "results" in doc:
                results = doc["results"] if kind == "json" else xml_list(doc["results"], "result")
                if not isinstance(results, list):
                    raise InvalidPayload('"results" must be a list')
                return [("pull", item) for item in results]
            params.update({k: v for k, v in doc.items() if isinstance(v, (str, int, float))})
    fields_found = _undecoded(template.extract(path, {k: str(v) for k, v in params.items()}), charset)
    return [("forward", fields_found)] if fields_found else []


def _undecoded(found: dict[str, str], charset: str) -> dict[str, str]:
    """Form values with bytes the charset cannot decode (surrogate escapes, U+DC80-U+DCFF): the
    text keeps its bytes as sent (`textbytes`, hex; the message's `binary`) and shows U+FFFD
    for them, with a warning; any other field is refused, the raw body kept in quarantine."""
    for name, value in list(found.items()):
        if not _SURROGATES.search(value):
            continue
        if name != "text":
            raise InvalidPayload(f"{name} is not valid {charset}")
        sent = value.encode(charset, "surrogateescape")
        found.update(text=sent.decode(charset, "replace"), textbytes=sent.hex())
    return found


def load(tagged: tuple[str, Any]) -> dict[str, Any]:
    shape, item = tagged
    return _load_pulled(item) if shape == "pull" else _load_forward(item)


def lane_key(data: dict[str, Any]) -> str:
    """The sender: one lane owns a number's MO, so all parts of a long message meet in one lane
    (their key starts with the sender), a resend meets its first copy, and the lane that applies
    a STOP owns the sender's opt-out list and replies (app/keys.py §11; on a cluster, one slot)."""
    return data["from"]


def _load_forward(item: dict[str, str]) -> dict[str, Any]:
    f = _FORWARD.load(item)
    sender = f["sender"]
    coding, esm = f["datacoding"], f["esmclass"]
    warnings: list[str] = []
    concat, text, binary = None, f["text"], None
    if f["bin"]:
        try:
            raw = hex_bytes(f["bin"])
            if esm_has_udh(esm):
                concat, raw = split_udh(raw)
            text = decode_bytes(raw, coding)
        except InvalidPayload as err:
            raise ValidationError({"bin": [err.message]}) from err
        binary = raw.hex() if text is None else None
    elif text is None:
        raise ValidationError({"text": ["neither text nor bin was sent"]})
    elif f["textbytes"]:
        binary = f["textbytes"]
        warnings.append("text has bytes its charset cannot decode, shown as U+FFFD; binary has them as sent")
    received, original = _received_at(f["datetime"], warnings)
    source_id = f["messageid"] or _derived_id(sender, f["receiver"], f["datetime"], f["bin"] or text)
    keyword, clean = keyword_split(text or "")
    data: dict[str, Any] = {
        "messageId": source_id, "from": sender, "to": f["receiver"], "text": text,
        "cleanText": clean, "keyword": keyword, "receivedAt": received, "smsCount": 1,
        "dataCoding": coding, "esmClass": esm, "binary": binary, "parts": 1,
        "incomplete": False, "route": None, "warnings": warnings,
    }
    if original:
        data["original"] = {"datetime": original}
    if concat:
        key = f"{sender}:{f['receiver'] or ''}:{concat.ref}"
        part_id = f["messageid"] or _derived_id(key, concat.seq, f["datetime"], f["bin"])
        # What marks a part as seen: with its number, so that parts Infobip sent under one
        # messageid are not taken for resends of each other (the derived id has it already).
        source_id = f"{part_id}:{concat.seq}" if f["messageid"] else part_id
        data["part"] = {"key": key, "seq": concat.seq, "total": concat.total, "sourceId": source_id}
        data["messageId"] = part_id  # the whole message takes the id of its first part
    return data


def _load_pulled(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ValidationError({"_schema": ["Invalid input type."]})
    sender, to = item.get("from"), item.get("to")
    errors = {k: ["Not a valid string."] for k, v in (("from", sender), ("to", to))
              if v is not None and not isinstance(v, str)}
    if isinstance(sender, str):
        sender = sender.lstrip("+")  # before the check: a sender of only '+' is missing
    if not sender:
        errors.setdefault("from", ["Missing data for required field."])
    try:
        loaded = _PULLED.load({k: v for k, v in item.items() if k not in ("from", "to")})
    except ValidationError as err:
        raise ValidationError({**errors, **err.messages}) from err
    if errors:
        raise ValidationError(errors)
    text = loaded["text"]
    keyword, clean = keyword_split(text)
    own_keyword = (loaded.get("keyword") or "").strip()  # blank as XML may write it: not sent
    if own_keyword:  # Infobip's own keyword and cleanText win when it sends them
        keyword, clean = own_keyword.upper(), loaded.get("cleanText") or clean
    data: dict[str, Any] = {
        "messageId": loaded["messageId"], "from": sender, "to": to, "text": text,
        "cleanText": clean, "keyword": keyword,
        "receivedAt": utc_text(loaded["receivedAt"]) if loaded.get("receivedAt") else now_text(),
        "smsCount": loaded.get("smsCount") or 1, "dataCoding": None, "esmClass": None,
        "binary": None, "parts": 1, "incomplete": False, "route": None, "warnings": [],
        "callbackData": loaded.get("callbackData"),
    }
    price = loaded.get("price")
    if price and price.get("pricePerMessage") is not None:
        data["price"] = {**price, "pricePerMessage": decimal_text(price["pricePerMessage"])}
    if loaded.get("receivedAt"):
        data["original"] = {"receivedAt": item["receivedAt"]}
    extra = {k: v for k, v in loaded.items() if k not in _PULLED_FIELDS}
    if extra:
        data["extra"] = extra
    return data


def _received_at(raw: str | None, warnings: list[str]) -> tuple[str, str | None]:
    """Infobip's %datetime%, in UTC; arrival time (with a warning) when absent or unreadable."""
    if not raw:
        return now_text(), None
    text = raw.strip()
    if "T" not in text:
        text = text.replace(" ", "T", 1)  # `2015-02-15 11:43:20`
    # The '+' of an offset sent unencoded in a query arrives as a space: `...20.254 0100`.
    text = text.replace(" ", "+")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        warnings.append(f"datetime {raw!r} is not ISO 8601; receivedAt is the arrival time")
        return now_text(), raw
    return utc_text(parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)), raw


def _derived_id(*parts: Any) -> str:
    """A stable id for messages Infobip sent without one: same input, same id (SPEC §3)."""
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    return "mo_" + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]
