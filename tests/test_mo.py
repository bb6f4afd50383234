"""app/mo.py: an inbound SMS (MO) request -> normalized `data` (SPEC §2.2, §3 MO part).

`mo.items()` finds the raw items of a request (forward parameters by GET query, form, JSON or
XML object, or Infobip's pull-shape push); `mo.load()` validates one. Decoding details of
`app.mo_text` and template inversion of `app.mo_template` have their own unit tests; here they
are seen through what a forward turns into.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import urlencode
from xml.sax.saxutils import escape

import orjson
import pytest
from marshmallow import ValidationError

from app import mo
from app.errors import InvalidPayload, UnsupportedMediaType
from app.mo_template import Template
from tests.samples import SEED_BIN, SEED_PULL, SEED_TEXT

DEFAULT = Template.default()
BOTH = "https://sms.example.com/infobip/mo?s=%sender%&r=%receiver%&t=%text%&b=%bin%&dc=%datacoding%"

SEED_PULL_ITEM = orjson.loads(SEED_PULL)["results"][0]


def ucs2(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


def udh8(ref: int, total: int, seq: int) -> str:
    return f"050003{ref:02X}{total:02X}{seq:02X}"


def udh16(ref: int, total: int, seq: int) -> str:
    return f"060804{ref:04X}{total:02X}{seq:02X}"


def tagged(args: dict[str, str] | None = None, template: Template = DEFAULT, rest: str = "",
           content_type: str | None = None, body: bytes = b"") -> list[tuple[str, Any]]:
    return mo.items(template, rest, args or {}, content_type, body)


def forward(args: dict[str, str] | None = None, template: Template = DEFAULT, **kw: Any) -> dict[str, Any]:
    """The one MO of a forward request."""
    [item] = tagged(args, template, **kw)
    assert item[0] == "forward"
    return mo.load(item)


def pulled(item: dict[str, Any]) -> dict[str, Any]:
    return mo.load(("pull", item))


def invalid(args: dict[str, str], template: Template = DEFAULT) -> dict[str, Any]:
    with pytest.raises(ValidationError) as caught:
        forward(args, template)
    return caught.value.messages


# --- default parameter names ----------------------------------------------------------------


@pytest.mark.parametrize(
    "names",
    [
        ("sender", "receiver", "text", "datetime", "messageid", "datacoding", "esmclass"),
        ("Sender", "Receiver", "Text", "Datetime", "MessageId", "Datacoding", "Esmclass"),  # the seed's
        ("SENDER", "RECEIVER", "TEXT", "DATETIME", "MESSAGEID", "DATACODING", "ESMCLASS"),
        ("sEnDeR", "receiveR", "tExt", "DateTime", "messageId", "dataCoding", "esmClass"),
    ],
    ids=["lower", "seed", "upper", "mixed"],
)
def test_default_names_are_case_insensitive(names):
    values = ("38598123123", "41793026727", "Hello world", "2015-02-15T11:43:20+0100", "mo-1", "0", "0")
    got = forward(dict(zip(names, values, strict=True)))
    assert (got["from"], got["to"], got["text"], got["messageId"]) == (*values[:3], "mo-1")
    assert (got["dataCoding"], got["esmClass"]) == (0, 0)
    assert got["receivedAt"] == "2015-02-15T10:43:20.000Z"


def test_default_bin_name_is_case_insensitive():
    assert forward({"SENDER": "385", "BIN": ucs2("Да"), "DataCoding": "8"})["text"] == "Да"


def test_unknown_parameters_are_not_data():
    got = forward({"sender": "385", "text": "hi", "token": "secret", "output": "json", "foo": "bar"})
    assert "secret" not in orjson.dumps(got).decode()
    assert "extra" not in got


# --- the seed's forward examples, literally -------------------------------------------------


def test_seed_forward_text_example():
    got = forward({"who": "38598123123", "what": "ABC"}, Template.parse(SEED_TEXT), rest="")
    assert got["from"] == "38598123123"
    assert got["text"] == "ABC"
    assert (got["keyword"], got["cleanText"]) == ("ABC", "")
    assert got["to"] is None
    assert (got["dataCoding"], got["esmClass"], got["binary"]) == (0, 0, None)
    assert (got["parts"], got["smsCount"], got["incomplete"]) == (1, 1, False)


def test_seed_forward_bin_example():
    got = forward({"who": "38598123123", "what": "414243"}, Template.parse(SEED_BIN))
    assert (got["from"], got["text"], got["dataCoding"], got["binary"]) == ("38598123123", "ABC", 0, None)


def test_seed_forward_with_the_literal_output_parameter_repeated():
    got = forward({"who": "38598123123", "what": "ABC", "output": "xml"}, Template.parse(SEED_TEXT))
    assert (got["from"], got["text"]) == ("38598123123", "ABC")


def test_seed_text_and_bin_examples_are_the_same_message():
    as_text = forward({"who": "38598123123", "what": "ABC"}, Template.parse(SEED_TEXT))
    as_bin = forward({"who": "38598123123", "what": "414243"}, Template.parse(SEED_BIN))
    same = ("from", "to", "text", "keyword", "cleanText", "dataCoding", "binary")
    assert {k: as_text[k] for k in same} == {k: as_bin[k] for k in same}


# --- text / bin semantics (SPEC §2.2) -------------------------------------------------------


def test_coding_0_sends_text_and_an_empty_bin():
    got = forward({"s": "385", "r": "4179", "t": "Hello", "b": "", "dc": "0"}, Template.parse(BOTH))
    assert (got["text"], got["binary"], got["dataCoding"]) == ("Hello", None, 0)


def test_other_coding_sends_bin_and_an_empty_text():
    args = {"s": "385", "r": "4179", "t": "", "b": ucs2("Привет мир"), "dc": "8"}
    got = forward(args, Template.parse(BOTH))
    assert (got["text"], got["binary"], got["dataCoding"]) == ("Привет мир", None, 8)
    assert (got["keyword"], got["cleanText"]) == ("ПРИВЕТ", "мир")


def test_template_with_only_text_takes_the_text_whatever_the_coding():
    template = Template.parse("https://h/mo?s=%sender%&t=%text%&dc=%datacoding%")
    got = forward({"s": "385", "t": "Привет", "dc": "8"}, template)
    assert (got["text"], got["dataCoding"], got["binary"]) == ("Привет", 8, None)


def test_template_with_only_bin_decodes_it_by_the_coding():
    template = Template.parse("https://h/mo?s=%sender%&b=%bin%&dc=%datacoding%")
    assert forward({"s": "385", "b": "414243", "dc": "0"}, template)["text"] == "ABC"
    assert forward({"s": "385", "b": ucs2("Ünïcödé"), "dc": "8"}, template)["text"] == "Ünïcödé"
    assert forward({"s": "385", "b": "414243"}, template)["dataCoding"] == 0  # no coding sent: 0


def test_empty_datacoding_and_esmclass_are_the_defaults():
    got = forward({"sender": "385", "bin": "414243", "datacoding": "", "esmclass": ""})
    assert (got["text"], got["dataCoding"], got["esmClass"]) == ("ABC", 0, 0)


# --- every data coding with real text -------------------------------------------------------

CODINGS = {
    "GSM basic": ("48656C6C6F20576F726C64", 0, "Hello World"),
    "GSM national letters": ("5B5C5D5E7B7C7D7E", 0, "ÄÖÑÜäöñü"),
    "GSM extension": ("50726963653A2031301B6520", 0, "Price: 10€ "),
    "GSM every extension char": ("1B651B3C1B3E1B281B291B3D1B2F1B401B14", 0, "€[]{}~\\|^"),
    "GSM as coding 1": ("1B28412C421B29", 1, "{A,B}"),
    "Latin-1": ("4372E86D65206272FB6CE965", 3, "Crème brûlée"),
    "Latin-1 high": ("A3A9D8DFFF", 3, "£©Øßÿ"),
    "UCS-2 Cyrillic": (ucs2("Привет, как дела?"), 8, "Привет, как дела?"),
    "UCS-2 Turkish": (ucs2("Şişli'de ığüşöç İĞÜŞÖÇ"), 8, "Şişli'de ığüşöç İĞÜŞÖÇ"),
    "UCS-2 emoji pairs": (ucs2("Ok 👍🏽 да 🎉"), 8, "Ok 👍🏽 да 🎉"),
    "UCS-2 pair literally": ("D83DDC4D", 8, "👍"),
    "UCS-2 lower-case hex": (ucs2("Ёж").lower(), 8, "Ёж"),
}


@pytest.mark.parametrize(("bin_hex", "coding", "text"), CODINGS.values(), ids=CODINGS.keys())
def test_every_data_coding_with_real_text(bin_hex, coding, text):
    got = forward({"sender": "385", "receiver": "4179", "bin": bin_hex, "datacoding": str(coding)})
    assert got["text"] == text
    assert got["binary"] is None
    assert got["dataCoding"] == coding


@pytest.mark.parametrize("coding", [4, 2, 245])
def test_binary_codings_keep_the_bytes_as_hex_without_text(coding):
    got = forward({"sender": "385", "bin": "0001FEff", "datacoding": str(coding)})
    assert got["text"] is None
    assert got["binary"] == "0001feff"
    assert (got["keyword"], got["cleanText"]) == ("", "")
    assert got["dataCoding"] == coding


def test_binary_after_a_user_data_header_keeps_only_the_body():
    got = forward({"sender": "385", "bin": "0605040B8423F0" + "C0FFEE", "datacoding": "4", "esmclass": "64"})
    assert (got["text"], got["binary"]) == (None, "c0ffee")
    assert "part" not in got  # a port-addressing header alone is no concatenation


# --- sender ---------------------------------------------------------------------------------


@pytest.mark.parametrize("sender", ["+38598123123", "++38598123123", "38598123123"])
def test_leading_plus_of_the_sender_is_stripped(sender):
    assert forward({"sender": sender, "text": "hi"})["from"] == "38598123123"


def test_leading_plus_is_stripped_in_the_pull_shape_too():
    assert pulled({**SEED_PULL_ITEM, "from": "+38598111"})["from"] == "38598111"


def test_alphanumeric_sender_is_kept():
    assert forward({"sender": "InfoSMS", "text": "hi"})["from"] == "InfoSMS"


@pytest.mark.parametrize("sender", ["", "+", "+++"])
def test_sender_that_is_empty_without_its_plus_is_missing(sender):
    assert "sender" in invalid({"sender": sender, "text": "hi"})


@pytest.mark.parametrize("sender", ["", "+"])
def test_pull_sender_that_is_empty_without_its_plus_is_missing(sender):
    with pytest.raises(ValidationError) as caught:
        pulled({**SEED_PULL_ITEM, "from": sender})
    assert "from" in caught.value.messages


# --- keyword and cleanText ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "keyword", "clean"),
    [
        ("stop", "STOP", ""),
        ("Stop all messages", "STOP", "all messages"),
        ("  win5   please  ", "WIN5", "please  "),
        ("KEY\tTest\nmessage", "KEY", "Test\nmessage"),
        ("привет мир", "ПРИВЕТ", "мир"),
        ("", "", ""),
        ("   ", "", ""),
    ],
)
def test_keyword_is_the_first_word_upper_cased(text, keyword, clean):
    got = forward({"sender": "385", "text": text})
    assert (got["keyword"], got["cleanText"], got["text"]) == (keyword, clean, text)


def test_keyword_of_decoded_bin():
    got = forward({"sender": "385", "bin": ucs2("стоп рассылка"), "datacoding": "8"})
    assert (got["keyword"], got["cleanText"]) == ("СТОП", "рассылка")


def test_infobip_keyword_and_clean_text_win_in_the_pull_shape():
    got = pulled({**SEED_PULL_ITEM, "text": "WIN123 now", "keyword": "WIN", "cleanText": "123 now"})
    assert (got["keyword"], got["cleanText"], got["text"]) == ("WIN", "123 now", "WIN123 now")


def test_infobip_keyword_is_upper_cased():
    assert pulled({**SEED_PULL_ITEM, "keyword": "key"})["keyword"] == "KEY"


@pytest.mark.parametrize(
    "item",
    [
        {"keyword": ""},
        {"keyword": "", "cleanText": ""},
        {"keyword": None, "cleanText": None},
        {"keyword": "  "},
        {},
    ],
    ids=["empty", "both-empty", "null", "blank", "missing"],
)
def test_pull_keyword_empty_or_missing_is_computed(item):
    base = {k: v for k, v in SEED_PULL_ITEM.items() if k not in ("keyword", "cleanText")}
    got = pulled({**base, "text": "hello  big world", **item})
    assert (got["keyword"], got["cleanText"]) == ("HELLO", "big world")


# --- messageId ------------------------------------------------------------------------------

BASE = {"sender": "38598123123", "receiver": "41793026727", "datetime": "2015-02-15T11:43:20+0100",
        "text": "Hello"}


def test_infobip_message_id_is_kept():
    assert forward({**BASE, "messageid": "ff4804ef-6ab6"})["messageId"] == "ff4804ef-6ab6"


def test_derived_message_id_is_stable():
    first, again = forward(dict(BASE)), forward(dict(BASE))
    assert first["messageId"] == again["messageId"]
    assert first["messageId"].startswith("mo_")


def test_derived_message_id_does_not_depend_on_how_the_values_came():
    template = Template.parse("https://h/mo/%receiver%?who=%sender%&when=%datetime%&what=%text%")
    other = forward({"who": BASE["sender"], "when": BASE["datetime"], "what": "Hello"}, template,
                    rest=BASE["receiver"])
    assert other["messageId"] == forward(dict(BASE))["messageId"]
    as_form = forward(content_type=mo.FORM_TYPE, body=urlencode(BASE).encode())
    assert as_form["messageId"] == other["messageId"]


@pytest.mark.parametrize(
    "change",
    [
        {"sender": "38598123124"},
        {"receiver": "41793026728"},
        {"datetime": "2015-02-15T11:43:21+0100"},
        {"text": "Hello!"},
        {"text": "hello"},
    ],
    ids=["sender", "receiver", "datetime", "text", "text-case"],
)
def test_derived_message_id_differs_when_anything_differs(change):
    assert forward({**BASE, **change})["messageId"] != forward(dict(BASE))["messageId"]


def test_derived_ids_do_not_collide_by_moving_a_separator():
    a = forward({"sender": "1", "receiver": "23", "text": "x"})
    b = forward({"sender": "12", "receiver": "3", "text": "x"})
    assert a["messageId"] != b["messageId"]


# --- datetime -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "utc"),
    [
        ("2015-02-15T11:43:20.254+0100", "2015-02-15T10:43:20.254Z"),
        ("2015-02-15T11:43:20.254+01:00", "2015-02-15T10:43:20.254Z"),
        ("2015-02-15T11:43:20.254-0230", "2015-02-15T14:13:20.254Z"),
        ("2015-02-15T11:43:20Z", "2015-02-15T11:43:20.000Z"),
        ("2015-02-15T11:43:20", "2015-02-15T11:43:20.000Z"),  # no offset: UTC
        ("2015-02-15 11:43:20", "2015-02-15T11:43:20.000Z"),
        ("2015-02-16T00:43:20+1300", "2015-02-15T11:43:20.000Z"),  # another day locally
        # the '+' of the offset, sent unencoded in a query, arrives as a space
        ("2015-02-15T11:43:20.254 0100", "2015-02-15T10:43:20.254Z"),
        ("2015-02-15 11:43:20 01:00", "2015-02-15T10:43:20.000Z"),
        (" 2015-02-15T11:43:20Z\n", "2015-02-15T11:43:20.000Z"),
    ],
)
def test_datetime_becomes_utc_received_at_and_the_original_is_kept(raw, utc):
    got = forward({"sender": "385", "text": "hi", "datetime": raw})
    assert got["receivedAt"] == utc
    assert got["original"] == {"datetime": raw}
    assert got["warnings"] == []


@pytest.mark.parametrize("raw", ["yesterday", "15.02.2015 11:43", "2015-02-30T10:00:00"])
def test_unreadable_datetime_is_a_warning_not_a_rejection(raw):
    got = forward({"sender": "385", "text": "hi", "datetime": raw})
    assert got["original"] == {"datetime": raw}
    assert len(got["warnings"]) == 1 and raw in got["warnings"][0]
    assert datetime.fromisoformat(got["receivedAt"]).tzinfo is not None  # the arrival time, UTC
    assert got["receivedAt"].endswith("Z")


@pytest.mark.parametrize("args", [{}, {"datetime": ""}], ids=["missing", "empty"])
def test_no_datetime_means_the_arrival_time_and_no_original(args):
    got = forward({"sender": "385", "text": "hi", **args})
    assert "original" not in got
    assert got["receivedAt"].endswith("Z")
    assert got["warnings"] == []


# --- invalid forwards -----------------------------------------------------------------------

INVALID = {
    "bin not hex": ({"bin": "ZZ", "datacoding": "8"}, "bin"),
    "bin with a space inside": ({"bin": "41 42"}, "bin"),
    "bin with odd digits": ({"bin": "414"}, "bin"),
    "odd-length UCS-2": ({"bin": "041F04", "datacoding": "8"}, "bin"),
    "unpaired high surrogate": ({"bin": "D83D0041", "datacoding": "8"}, "bin"),
    "unpaired low surrogate": ({"bin": "DC4D", "datacoding": "8"}, "bin"),
    "GSM byte over 0x7F": ({"bin": "41C3", "datacoding": "0"}, "bin"),
    "UDH longer than the payload": ({"bin": "0500030201", "datacoding": "8", "esmclass": "64"}, "bin"),
    "UDHI on an empty payload": ({"bin": "", "esmclass": "64"}, "text"),
    "UDH IE overruns the header": ({"bin": "0300050141", "datacoding": "0", "esmclass": "64"}, "bin"),
    "concat part 0": ({"bin": udh8(1, 3, 0) + "0041", "datacoding": "8", "esmclass": "64"}, "bin"),
    "concat part past total": ({"bin": udh8(1, 2, 3) + "0041", "datacoding": "8", "esmclass": "64"}, "bin"),
    "concat total 0": ({"bin": udh8(1, 0, 0) + "0041", "datacoding": "8", "esmclass": "64"}, "bin"),
    "concat IE of the wrong size": ({"bin": "04000201020041", "datacoding": "8", "esmclass": "64"}, "bin"),
    "neither text nor bin": ({}, "text"),
    "empty bin and no text": ({"bin": ""}, "text"),
    "datacoding not a number": ({"text": "hi", "datacoding": "eight"}, "datacoding"),
    "datacoding over 255": ({"text": "hi", "datacoding": "256"}, "datacoding"),
    "esmclass negative": ({"text": "hi", "esmclass": "-1"}, "esmclass"),
    "sender too long": ({"text": "hi", "sender": "1" * 65}, "sender"),
}


@pytest.mark.parametrize(("args", "field"), INVALID.values(), ids=INVALID.keys())
def test_invalid_forward_is_a_validation_error(args, field):
    assert field in invalid({"sender": "385", **args})


def test_missing_sender_is_a_validation_error():
    assert "sender" in invalid({"text": "hi"})


def test_invalid_bin_message_says_where():
    assert invalid({"sender": "385", "bin": "41ZZ"})["bin"] == ["bin is not hex: 'Z' at position 2"]
    odd = invalid({"sender": "385", "bin": "041F04", "datacoding": "8"})["bin"][0]
    assert "odd number of bytes" in odd


# --- concatenated parts (reassembled by the worker) -----------------------------------------


def test_concatenated_part_carries_what_the_worker_needs():
    args = {"sender": "385", "receiver": "4179", "datacoding": "8", "esmclass": "64",
            "bin": udh8(0x2A, 3, 2) + ucs2("вторая ")}
    got = forward(args)
    assert got["text"] == "вторая "
    assert got["part"]["key"] == "385:4179:42"
    assert (got["part"]["seq"], got["part"]["total"]) == (2, 3)
    assert got["messageId"] == got["part"]["sourceId"]
    assert mo.lane_key(got) == "385"  # the sender's lane: its parts, resends and opt-outs meet there
    assert forward(dict(args))["part"] == got["part"]  # a resent part has the same id


def test_part_with_an_infobip_message_id_is_seen_by_id_and_part_number():
    """Infobip may give the parts of one message one messageid: they must not look like resends."""
    parts = [forward({"sender": "385", "receiver": "4179", "esmclass": "64", "messageid": "ib-1",
                      "bin": udh8(7, 2, seq) + "41"}) for seq in (1, 2)]
    assert [p["messageId"] for p in parts] == ["ib-1", "ib-1"]
    assert [p["part"]["sourceId"] for p in parts] == ["ib-1:1", "ib-1:2"]


def test_parts_of_one_message_share_a_key_and_differ_in_id():
    parts = [
        forward({"sender": "385", "receiver": "4179", "datacoding": "0", "esmclass": "64",
                 "bin": udh8(7, 2, seq) + "41"})
        for seq in (1, 2)
    ]
    assert parts[0]["part"]["key"] == parts[1]["part"]["key"]
    assert parts[0]["part"]["sourceId"] != parts[1]["part"]["sourceId"]
    assert {mo.lane_key(p) for p in parts} == {"385"}


def test_sixteen_bit_reference():
    got = forward({"sender": "385", "receiver": "4179", "datacoding": "8", "esmclass": "64",
                   "bin": udh16(0xBEEF, 2, 1) + ucs2("Hi")})
    assert got["part"]["key"] == f"385:4179:{0xBEEF}"
    assert (got["part"]["seq"], got["part"]["total"], got["text"]) == (1, 2, "Hi")


def test_unrelated_information_element_before_the_concat_one():
    # port addressing (IE 0x05, 4 bytes), then concatenation (IE 0x00): UDHL 0x0B
    header = "0B" + "05040B8423F0" + f"0003{9:02X}0201"
    got = forward({"sender": "385", "datacoding": "0", "esmclass": "64", "bin": header + "414243"})
    assert (got["text"], got["part"]["seq"], got["part"]["total"]) == ("ABC", 1, 2)
    assert got["part"]["key"] == "385::9"


def test_esmclass_without_udhi_keeps_the_bytes_as_text():
    got = forward({"sender": "385", "datacoding": "0", "esmclass": "3", "bin": "414243"})
    assert got["text"] == "ABC" and "part" not in got


def test_whole_message_lane_key_is_its_sender():
    got = forward({"sender": "+385", "text": "hi", "messageid": "m-9"})
    assert mo.lane_key(got) == "385"  # as the opt-out list keys the number (app/optout/lists.py)


# --- POST bodies: form, JSON object, XML object ---------------------------------------------

FORWARD_VALUES = {"sender": "38598123123", "receiver": "41793026727", "text": "Stop it & go+home",
                  "datetime": "2015-02-15T11:43:20.254+0100", "messageid": "mo-77", "datacoding": "0",
                  "esmclass": "0"}


def _xml(root: str, values: dict[str, str]) -> bytes:
    inner = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in values.items())
    return f'<?xml version="1.0" encoding="UTF-8"?><{root}>{inner}</{root}>'.encode()


FORM = urlencode(FORWARD_VALUES).encode()
AS_NUMBERS = {**FORWARD_VALUES, "sender": 38598123123, "receiver": 41793026727, "datacoding": 0,
              "esmclass": 0}
BODIES = {
    "query": {"args": FORWARD_VALUES},
    "form": {"content_type": "application/x-www-form-urlencoded", "body": FORM},
    "form charset": {"content_type": "application/x-www-form-urlencoded; charset=UTF-8", "body": FORM},
    "JSON": {"content_type": "application/json", "body": orjson.dumps(FORWARD_VALUES)},
    "JSON numbers": {"content_type": "application/json", "body": orjson.dumps(AS_NUMBERS)},
    "JSON sniffed": {"content_type": None, "body": orjson.dumps(FORWARD_VALUES)},
    "XML": {"content_type": "application/xml", "body": _xml("message", FORWARD_VALUES)},
    "XML text/xml": {"content_type": "text/xml", "body": _xml("mo", FORWARD_VALUES)},
    "XML capitalised names": {
        "content_type": "application/xml",
        "body": _xml("Message", {k.capitalize(): v for k, v in FORWARD_VALUES.items()}),
    },
}


@pytest.mark.parametrize("how", BODIES.values(), ids=BODIES.keys())
def test_every_body_form_gives_the_same_message(how):
    got = forward(**how)
    assert got["from"] == "38598123123" and got["to"] == "41793026727"
    assert got["text"] == "Stop it & go+home"
    assert (got["keyword"], got["cleanText"]) == ("STOP", "it & go+home")
    assert got["messageId"] == "mo-77"
    assert got["receivedAt"] == "2015-02-15T10:43:20.254Z"
    assert got["original"] == {"datetime": "2015-02-15T11:43:20.254+0100"}


def test_form_body_decodes_plus_and_percent_escapes():
    got = forward(content_type=mo.FORM_TYPE, body=b"sender=%2B385&text=Hi+there%21+%E2%82%AC5")
    assert (got["from"], got["text"]) == ("385", "Hi there! €5")


def test_body_and_query_parameters_meet():
    """Infobip's POST keeps the template's query (here the token) and sends the values in the body."""
    got = forward({"token": "t"}, content_type="application/json", body=b'{"sender": "385", "text": "hi"}')
    assert (got["from"], got["text"]) == ("385", "hi")


def test_xml_forward_keeps_text_as_sent():
    got = forward(content_type="application/xml",
                  body=b"<mo><sender>385</sender><text>  two  spaces </text><bin/></mo>")
    assert got["text"] == "  two  spaces "


def test_nested_or_null_json_values_are_not_parameters():
    with pytest.raises(ValidationError) as caught:
        forward(content_type="application/json", body=b'{"sender": "385", "text": {"a": 1}, "bin": null}')
    assert "text" in caught.value.messages


@pytest.mark.parametrize(
    ("body", "content_type", "error"),
    [
        (b"[1, 2]", "application/json", InvalidPayload),
        (b'"text"', "application/json", InvalidPayload),
        (b"{broken", "application/json", InvalidPayload),
        (b"<mo/>", "application/xml", InvalidPayload),
        (b"<mo><sender>1</sender>", "application/xml", InvalidPayload),
        (b'{"results": {"messageId": "m"}}', "application/json", InvalidPayload),
        (b'{"results": "m"}', "application/json", InvalidPayload),
        (b"sender=1&text=hi", "text/plain", UnsupportedMediaType),
    ],
    ids=["list", "string", "malformed", "empty-root", "truncated-xml", "results-object", "results-string",
         "plain-text"],
)
def test_bodies_that_are_no_object_of_parameters(body, content_type, error):
    with pytest.raises(error):
        tagged(content_type=content_type, body=body)


def test_xml_with_a_dtd_is_refused():
    body = b'<?xml version="1.0"?><!DOCTYPE mo [<!ENTITY x "y">]><mo><sender>1</sender><text>&x;</text></mo>'
    with pytest.raises(InvalidPayload, match="DTD"):
        tagged(content_type="application/xml", body=body)


def test_a_request_without_mo_parameters_has_no_items():
    assert tagged({"token": "t"}) == []
    assert tagged(content_type="application/json", body=b"{}") == []
    assert tagged(content_type="application/json", body=b"  \n") == []


# --- the pull shape pushed to the MO endpoint -----------------------------------------------


def test_seed_pull_example_literally():
    [item] = tagged(content_type="application/json", body=SEED_PULL)
    assert item[0] == "pull"
    got = mo.load(item)
    assert got["messageId"] == "ff4804ef-6ab6-4abd-984d-ab3b1387e823"
    assert (got["from"], got["to"]) == ("38598111", "41793026727")
    assert (got["text"], got["keyword"], got["cleanText"]) == ("KEY Test message", "KEY", "Test message")
    assert got["receivedAt"] == "2015-02-15T10:43:20.254Z"
    assert got["original"] == {"receivedAt": "2015-02-15T11:43:20.254+0100"}
    assert (got["smsCount"], got["parts"], got["incomplete"]) == (1, 1, False)
    assert "part" not in got and "extra" not in got


def test_pull_shape_with_message_counts():
    body = orjson.dumps({"results": [SEED_PULL_ITEM, {**SEED_PULL_ITEM, "messageId": "second"}],
                         "messageCount": 2, "pendingMessageCount": 5})
    found = tagged(content_type="application/json", body=body)
    assert [shape for shape, _ in found] == ["pull", "pull"]
    assert [mo.load(item)["messageId"] for item in found] == [SEED_PULL_ITEM["messageId"], "second"]


def test_pull_shape_ignores_query_parameters():
    found = tagged({"sender": "999", "text": "not this"}, content_type="application/json", body=SEED_PULL)
    assert [mo.load(item)["from"] for item in found] == ["38598111"]


def test_pull_shape_keeps_price_callback_data_and_unknown_fields():
    got = pulled({**SEED_PULL_ITEM, "price": {"pricePerMessage": "0.0001000000", "currency": "EUR"},
                  "callbackData": "cb-1", "smsCount": 2, "applicationId": "app-7"})
    assert got["price"] == {"pricePerMessage": "0.0001000000", "currency": "EUR"}
    assert got["callbackData"] == "cb-1"
    assert got["smsCount"] == 2
    assert got["extra"] == {"applicationId": "app-7"}


def test_pull_item_without_received_at_gets_the_arrival_time():
    got = pulled({"messageId": "m", "from": "385", "text": "hi"})
    assert got["receivedAt"].endswith("Z") and "original" not in got
    assert (got["to"], got["smsCount"]) == (None, 1)


PULL_XML_NESTED = b"""<?xml version="1.0" encoding="UTF-8"?>
<inboundReportResponse>
  <results>
    <result>
      <messageId>ff4804ef-6ab6-4abd-984d-ab3b1387e823</messageId>
      <from>38598111</from>
      <to>41793026727</to>
      <text>KEY Test message</text>
      <cleanText>Test message</cleanText>
      <keyword>KEY</keyword>
      <receivedAt>2015-02-15T11:43:20.254+0100</receivedAt>
      <smsCount>1</smsCount>
    </result>
  </results>
  <messageCount>1</messageCount>
  <pendingMessageCount>0</pendingMessageCount>
</inboundReportResponse>"""

PULL_XML_REPEATED = b"""<inboundReportResponse>
  <results>
    <messageId>x-1</messageId><from>385</from><to>4179</to><text>hello there</text>
    <keyword /><cleanText />
    <receivedAt>2015-02-15T11:43:20.254+0100</receivedAt><smsCount>1</smsCount>
    <price><pricePerMessage>0.0001000000</pricePerMessage><currency>EUR</currency></price>
  </results>
  <results>
    <messageId>x-2</messageId><from>385</from><text>second</text>
  </results>
</inboundReportResponse>"""


def test_pull_shape_xml_nested_is_the_same_as_the_seed_json():
    [from_json] = [mo.load(i) for i in tagged(content_type="application/json", body=SEED_PULL)]
    [from_xml] = [mo.load(i) for i in tagged(content_type="application/xml", body=PULL_XML_NESTED)]
    assert from_xml == from_json


def test_pull_shape_xml_repeated_results():
    found = [mo.load(i) for i in tagged(content_type="text/xml", body=PULL_XML_REPEATED)]
    assert [m["messageId"] for m in found] == ["x-1", "x-2"]
    first = found[0]
    assert (first["keyword"], first["cleanText"]) == ("HELLO", "there")  # empty elements: computed
    assert first["price"] == {"pricePerMessage": "0.0001000000", "currency": "EUR"}
    assert first["smsCount"] == 1 and first["receivedAt"] == "2015-02-15T10:43:20.254Z"


INVALID_PULL = {
    "no messageId": ({"messageId": None}, "messageId"),
    "empty messageId": ({"messageId": ""}, "messageId"),
    "messageId not a string": ({"messageId": 5}, "messageId"),
    "no from": ({"from": None}, "from"),
    "from not a string": ({"from": 38598111}, "from"),
    "to not a string": ({"to": ["x"]}, "to"),
    "text null": ({"text": None}, "text"),
    "bad receivedAt": ({"receivedAt": "yesterday"}, "receivedAt"),
    "smsCount not a number": ({"smsCount": "many"}, "smsCount"),
    "smsCount over 64 bits": ({"smsCount": 10**30}, "smsCount"),
    "negative smsCount": ({"smsCount": -1}, "smsCount"),
    "price not an object": ({"price": "0.01"}, "price"),
    "price too precise": ({"price": {"pricePerMessage": "1e-999999"}}, "price"),
}


@pytest.mark.parametrize(("change", "field"), INVALID_PULL.values(), ids=INVALID_PULL.keys())
def test_invalid_pull_item(change, field):
    item = {**SEED_PULL_ITEM, **change}
    item = {k: v for k, v in item.items() if not (v is None and k in ("messageId", "from"))}
    with pytest.raises(ValidationError) as caught:
        pulled(item)
    assert field in caught.value.messages


@pytest.mark.parametrize("item", [None, "m", 5, ["m"]])
def test_pull_item_that_is_not_an_object(item):
    with pytest.raises(ValidationError):
        pulled(item)


def test_loaded_data_is_json_serializable():
    """What load() returns is queued with orjson: every shape must serialize."""
    samples = [
        forward(dict(FORWARD_VALUES)),
        forward({"sender": "385", "bin": "00FF", "datacoding": "4"}),
        forward({"sender": "385", "bin": udh8(1, 2, 1) + "41", "esmclass": "64"}),
        pulled({**SEED_PULL_ITEM, "extra1": {"nested": [1, 2]}, "smsCount": 2**63 - 1}),
    ]
    for data in samples:
        assert orjson.loads(orjson.dumps(data)) == data
