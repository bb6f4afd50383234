"""app/decode.py: bytes -> Python data, JSON or XML, sniffed; DTDs refused; XML lists."""

from __future__ import annotations

import pytest

from app.decode import MAX_DEPTH, decode_body, media_kind, parse_xml, xml_list
from app.errors import InvalidPayload, UnsupportedMediaType
from tests.samples import (
    BILLION_LAUGHS,
    EXTERNAL_DTD,
    EXTERNAL_ENTITY,
    PARAMETER_ENTITY,
    PLAIN_DOCTYPE,
    raw,
)

# --- sniffing -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        (b'{"results": []}', "application/json", "json"),
        (b'{"results": []}', "application/xml", "json"),  # the body wins over the header
        (b'{"results": []}', None, "json"),
        (b'  \r\n\t{"results": []}', "text/plain", "json"),  # first non-blank byte
        (b"[]", "text/html", "json"),
        (b"<reportResponse/>", "application/json", "xml"),
        (b"<reportResponse/>", None, "xml"),
        (b"\n\n  <?xml version='1.0'?><reportResponse/>", "text/plain", "xml"),
    ],
)
def test_sniffed_from_first_non_blank_byte(body, content_type, kind):
    assert media_kind(content_type, body) == kind


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("TEXT/JSON", "json"),
        ("application/vnd.infobip+json", "json"),
        ("application/xml", "xml"),
        ("text/xml; charset=UTF-8", "xml"),
        ("application/atom+xml", "xml"),
    ],
)
def test_declared_type_breaks_ties(content_type, kind):
    """A body that starts with neither `{`/`[` nor `<` is decided by the declared type."""
    assert media_kind(content_type, b"results") == kind


@pytest.mark.parametrize(
    "content_type", [None, "", "text/plain", "application/octet-stream", "multipart/form-data"]
)
def test_neither_json_nor_xml_is_415(content_type):
    with pytest.raises(UnsupportedMediaType) as caught:
        media_kind(content_type, b"messageId=1&status=DELIVERED")
    assert caught.value.status == 415


@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n\t "])
def test_empty_body_is_invalid(body):
    with pytest.raises(InvalidPayload, match="empty body"):
        decode_body(body, "application/json")


def test_declared_json_that_is_not_json_is_invalid_payload():
    with pytest.raises(InvalidPayload, match="invalid JSON"):
        decode_body(b"results", "application/json")


@pytest.mark.parametrize("body", [b'{"results": [', b'{"results": [{"messageId": "a"}]', b'{"a": 1,}'])
def test_truncated_or_broken_json_is_invalid_payload(body):
    with pytest.raises(InvalidPayload, match="invalid JSON"):
        decode_body(body, "application/json")


@pytest.mark.parametrize(
    "body", [b"<reportResponse><results>", b"<reportResponse></results>", b"<a>&undefined;</a>"]
)
def test_truncated_or_broken_xml_is_invalid_payload(body):
    with pytest.raises(InvalidPayload, match="invalid XML"):
        decode_body(body, "application/xml")


def test_decode_returns_kind_and_data():
    body = b'{"results": [{"messageId": "a"}]}'
    assert decode_body(body, None) == ("json", {"results": [{"messageId": "a"}]})
    assert decode_body(b"<r><a>1</a></r>", None) == ("xml", {"r": {"a": "1"}})


# --- DTDs and entities are refused ----------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [BILLION_LAUGHS, EXTERNAL_ENTITY, EXTERNAL_DTD, PARAMETER_ENTITY, PLAIN_DOCTYPE],
    ids=["billion-laughs", "external-entity", "external-dtd", "parameter-entity", "plain-doctype"],
)
def test_any_dtd_is_refused(body):
    with pytest.raises(InvalidPayload) as caught:
        decode_body(body, "application/xml")
    assert "DTD" in caught.value.message
    assert "root:" not in caught.value.message  # nothing of /etc/passwd was read


def test_predefined_xml_entities_still_work():
    assert parse_xml(b"<r><t>a &amp; b &lt;c&gt;</t></r>") == {"r": {"t": "a & b <c>"}}


# --- values ---------------------------------------------------------------------------------


def test_empty_element_is_empty_string():
    assert parse_xml(b"<r><keyword /><bulkId></bulkId><a>1</a></r>") == {
        "r": {"keyword": "", "bulkId": "", "a": "1"}
    }


def test_values_stay_text():
    parsed = parse_xml(b"<r><smsCount>1</smsCount><permanent>false</permanent><p>0.0001000000</p></r>")
    assert parsed == {"r": {"smsCount": "1", "permanent": "false", "p": "0.0001000000"}}


def test_text_whitespace_is_kept_and_indentation_is_not_data():
    """`<callbackData> x</callbackData>` is ' x', as the same report in JSON; indentation between
    child elements does not show up as a '#text' value."""
    body = b"<r>\n  <callbackData> Nothing like home.</callbackData>\n  <n>\n    <a>1</a>\n  </n>\n</r>"
    parsed = parse_xml(body)
    assert parsed == {"r": {"callbackData": " Nothing like home.", "n": {"a": "1"}}}


def test_utf8_text():
    assert parse_xml("<r><t>Нет ничего лучше родного дома.</t></r>".encode()) == {
        "r": {"t": "Нет ничего лучше родного дома."}
    }


# --- lists ----------------------------------------------------------------------------------


def results_of(body: bytes):
    return xml_list(parse_xml(body)["reportResponse"].get("results"), "result")


def test_xml_list_nested_convention():
    body = (
        b"<reportResponse><results><result><m>a</m></result><result><m>b</m></result></results>"
        b"</reportResponse>"
    )
    assert results_of(body) == [{"m": "a"}, {"m": "b"}]


def test_xml_list_repeated_convention():
    body = b"<reportResponse><results><m>a</m></results><results><m>b</m></results></reportResponse>"
    assert results_of(body) == [{"m": "a"}, {"m": "b"}]


@pytest.mark.parametrize(
    "body",
    [
        b"<reportResponse><results><result><m>a</m></result></results></reportResponse>",
        b"<reportResponse><results><m>a</m></results></reportResponse>",
    ],
    ids=["nested", "repeated"],
)
def test_xml_list_single_item_is_a_list_of_one(body):
    assert results_of(body) == [{"m": "a"}]


@pytest.mark.parametrize("value", [None, ""])
def test_xml_list_of_nothing_is_empty(value):
    assert xml_list(value, "result") == []


def test_xml_list_of_seed_payloads():
    nested = results_of(raw("notify_push.nested.xml"))
    repeated = results_of(raw("notify_push.repeated.xml"))
    assert nested == repeated
    assert [item["messageId"] for item in nested] == [
        "c9823180-94d4-4ea0-9bf3-ec907e7534a6",
        "MESSAGE-ID-123-xyz",
    ]
    assert nested[0]["price"] == {"pricePerMessage": "0.0001000000", "currency": "EUR"}
    for single in ("reports_by_message_id.single.xml", "reports_by_message_id.single-nested.xml"):
        found = results_of(raw(single))
        assert [item["messageId"] for item in found] == ["ff4804ef-6ab6-4abd-984d-ab3b1387e852"]


def test_json_depth_is_checked_at_the_limit_whatever_the_bracket_shortcut():
    """decode_body skips the depth walk only when the body has too few brackets to be deep."""
    at_limit = b'{"results": ' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    assert decode_body(at_limit, "application/json")[0] == "json"
    over = b'{"results": ' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    with pytest.raises(InvalidPayload, match="nested deeper"):
        decode_body(over, "application/json")
