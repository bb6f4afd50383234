"""Bytes of a request body -> plain Python data. No Infobip knowledge lives here.

JSON and XML are told apart by the first non-blank byte, because Infobip and the proxies in
front of us do not always send a correct Content-Type (SPEC §2.1). XML is parsed by xmltodict
on an expat parser that refuses any DTD, so entity expansion (billion laughs, external
entities) cannot happen; values stay text and the marshmallow schemas coerce them.

A charset declared on the Content-Type is honoured (RFC 7303 lets it override an XML
declaration), and a UTF-8 byte-order mark before JSON is ignored (RFC 8259). Bytes the
declared charset cannot decode are a 400, and the raw body is kept in the quarantine.
"""

from __future__ import annotations

import codecs
from types import SimpleNamespace
from typing import Any
from xml.parsers import expat

import orjson
import xmltodict
from werkzeug.http import parse_options_header

from app.errors import InvalidPayload, UnsupportedMediaType

JSON_TYPES = ("application/json", "text/json")
XML_TYPES = ("application/xml", "text/xml")
# Infobip's documents are 4 levels deep. Unknown fields are kept (SPEC §2.1), and orjson refuses
# to write anything nested over 255 levels: without a bound, a deep extra field was a 500 when
# the accepted item was queued.
MAX_DEPTH = 32


def media_kind(content_type: str | None, body: bytes) -> str:
    """'json' or 'xml': sniffed from the body first, the declared type only breaks ties."""
    first = body.lstrip()[:1]
    if first in (b"{", b"["):
        return "json"
    if first == b"<":
        return "xml"
    declared = (content_type or "").split(";")[0].strip().lower()
    if declared in JSON_TYPES or declared.endswith("+json"):
        return "json"
    if declared in XML_TYPES or declared.endswith("+xml"):
        return "xml"
    raise UnsupportedMediaType(f"body is neither JSON nor XML (Content-Type {declared or 'missing'!r})")


def declared_charset(content_type: str | None) -> str | None:
    """The codec name of the Content-Type's `charset`, None when none is declared."""
    charset = parse_options_header(content_type or "")[1].get("charset")
    if not charset:
        return None
    try:
        return codecs.lookup(charset).name
    except LookupError as err:
        raise UnsupportedMediaType(f"unknown charset {charset!r}") from err


def decode_body(body: bytes, content_type: str | None) -> tuple[str, Any]:
    """Parse a body; return (kind, data). Empty or malformed bodies raise InvalidPayload."""
    charset = declared_charset(content_type)
    if charset is not None and charset != "utf-8":
        try:
            body = body.decode(charset).encode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidPayload(f"body is not valid {charset}: {err.reason} at byte {err.start}") from err
    body = body.removeprefix(codecs.BOM_UTF8)
    if not body.strip():
        raise InvalidPayload("empty body")
    kind = media_kind(content_type, body)
    # Transcoded, the body is UTF-8 whatever its XML declaration says.
    if kind == "json":
        doc = parse_json(body)
        # A JSON document cannot nest deeper than it has brackets: most bodies need no walk.
        if body.count(b"{") + body.count(b"[") > MAX_DEPTH:
            check_depth(doc)
    else:
        doc = parse_xml(body, "utf-8" if charset else None)
        check_depth(doc)
    return kind, doc


def check_depth(doc: Any, limit: int = MAX_DEPTH) -> None:
    """Refuse documents nested deeper than `limit` lists/objects. Iterative: XML has no depth limit."""
    if not isinstance(doc, (dict, list)):
        return
    stack = [(doc, 1)]
    while stack:  # only containers are stacked: a 100-report bucket has ~2,700 scalars, 400 objects
        value, depth = stack.pop()
        if depth > limit:
            raise InvalidPayload(f"document nested deeper than {limit} levels")
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list)):  # a tuple: isinstance with `dict | list` is slower
                stack.append((child, depth + 1))


def parse_json(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise InvalidPayload(f"invalid JSON: {err}") from err


def _refuse_dtd(*_args: object) -> None:
    raise ValueError("XML with a DTD (<!DOCTYPE>) is refused")


def _safe_parser_create(*args: Any, **kwargs: Any) -> Any:
    parser = expat.ParserCreate(*args, **kwargs)
    parser.StartDoctypeDeclHandler = _refuse_dtd
    return parser


# What xmltodict calls "expat": the real one, except that every parser refuses DTDs.
_SAFE_EXPAT = SimpleNamespace(ParserCreate=_safe_parser_create)


def _empty_is_text(_path: Any, key: str, value: Any) -> tuple[str, Any] | None:
    """An empty element (`<keyword />`) is an empty string, as SPEC §2.1 says, not None.

    Text is kept as sent (`<callbackData> a</callbackData>` is ' a', as in JSON), so the
    indentation between child elements arrives as whitespace-only '#text' and is dropped here.
    """
    if key == "#text" and isinstance(value, str) and not value.strip():
        return None
    return key, "" if value is None else value


def parse_xml(body: bytes, encoding: str | None = None) -> dict[str, Any]:
    """`encoding`, when given, overrides the document's own declaration."""
    try:
        return xmltodict.parse(
            body,
            encoding=encoding,
            expat=_SAFE_EXPAT,
            disable_entities=True,
            postprocessor=_empty_is_text,
            strip_whitespace=False,
        )
    except (expat.ExpatError, ValueError) as err:
        raise InvalidPayload(f"invalid XML: {err}") from err


def xml_list(value: Any, item_tag: str) -> list[Any]:
    """Infobip writes XML lists two ways; both, and a single item, become a Python list.

    `<results><result>a</result><result>b</result></results>` gives {'result': [a, b]};
    repeated `<results>a</results><results>b</results>` gives [a, b]; one item gives a dict.
    """
    if value in (None, ""):
        return []
    if isinstance(value, dict) and set(value) == {item_tag}:
        value = value[item_tag]
    return value if isinstance(value, list) else [value]
