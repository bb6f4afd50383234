"""app.mo_template: MO_URL_TEMPLATE checked at start-up and inverted per request (SPEC §2.2)."""

from __future__ import annotations

import re

import pytest

from app.errors import ConfigError, InvalidPayload
from app.mo_template import FIELDS, Template

SEED_TEXT = "https://some.server.com/incoming_sms.php?who=%sender%&what=%text%&output=xml"
SEED_BIN = "https://some.server.com/incoming_sms.php?who=%sender%&what=%bin%"


def test_seed_example_text_literally():
    template = Template.parse(SEED_TEXT)
    got = template.extract("/incoming_sms.php", {"who": "38598123123", "what": "ABC"})
    assert got == {"sender": "38598123123", "text": "ABC"}


def test_seed_example_bin_literally():
    template = Template.parse(SEED_BIN)
    got = template.extract("/incoming_sms.php", {"who": "38598123123", "what": "414243"})
    assert got == {"sender": "38598123123", "bin": "414243"}


@pytest.mark.parametrize(
    ("template", "path", "query", "expected"),
    [
        # literal parameters are not data, whether Infobip repeats them or not
        (SEED_TEXT, "/infobip/mo", {"who": "385", "what": "hi", "output": "xml"},
         {"sender": "385", "text": "hi"}),
        # our path need not be the operator's public one when nothing sits in the path
        (SEED_TEXT, "/infobip/mo", {"who": "385", "what": "hi"}, {"sender": "385", "text": "hi"}),
        # missing parameters are missing keys; empty ones are kept (Infobip's empty `bin`)
        (SEED_TEXT, "/x", {"who": "385"}, {"sender": "385"}),
        (SEED_TEXT, "/x", {}, {}),
        ("/mo?s=%sender%&t=%text%&b=%bin%", "/mo", {"s": "1", "t": "ABC", "b": ""},
         {"sender": "1", "text": "ABC", "bin": ""}),
        # request parameter names are case-insensitive
        (SEED_TEXT, "/x", {"WHO": "385", "What": "hi"}, {"sender": "385", "text": "hi"}),
        ("https://h/mo?Who=%sender%&what=%text%", "/mo", {"who": "1", "WHAT": "t"},
         {"sender": "1", "text": "t"}),
        # placeholders are case-insensitive
        ("https://h/mo?Sender=%Sender%&Text=%TEXT%&MessageId=%MessageId%", "/mo",
         {"sender": "385", "text": "hi", "messageid": "m-1"},
         {"sender": "385", "text": "hi", "messageid": "m-1"}),
        # literal text around a placeholder in a query value is stripped
        ("/mo?id=mo-%messageid%&t=%text%", "/mo", {"id": "mo-123", "t": "x"},
         {"messageid": "123", "text": "x"}),
        # two placeholders in one value, split on the literal separator (left to right)
        ("/mo?route=%receiver%:%sender%&t=%text%", "/mo", {"route": "4179:385", "t": "x"},
         {"receiver": "4179", "sender": "385", "text": "x"}),
        ("/mo?m=%sender%|%text%", "/mo", {"m": "385|a|b"}, {"sender": "385", "text": "a|b"}),
        # all eight fields
        ("/mo?a=%sender%&b=%receiver%&c=%text%&d=%bin%&e=%datetime%&f=%messageid%&g=%datacoding%&h=%esmclass%",
         "/mo", {k: str(i) for i, k in enumerate("abcdefgh")},
         dict(zip(FIELDS, (str(i) for i in range(8)), strict=True))),
        # a URL-encoded literal in the template matches the decoded request name
        ("/mo?the%20text=%text%", "/mo", {"the text": "hi"}, {"text": "hi"}),
        ("/mo?the+text=%text%", "/mo", {"THE TEXT": "hi"}, {"text": "hi"}),
        # values are whatever the framework decoded, spaces and newlines included
        ("/mo?t=%text%", "/mo", {"t": "line one\nline two"}, {"text": "line one\nline two"}),
    ],
)
def test_extract_query(template, path, query, expected):
    assert Template.parse(template).extract(path, query) == expected


PATH_TEMPLATE = "https://sms.example.com/infobip/mo/%receiver%/%sender%?text=%text%"


@pytest.mark.parametrize(
    ("template", "path", "query", "expected"),
    [
        (PATH_TEMPLATE, "/infobip/mo/41793026727/38598123123", {"text": "hi"},
         {"receiver": "41793026727", "sender": "38598123123", "text": "hi"}),
        # a prefix added by a proxy does not matter: placeholders are matched from the end
        (PATH_TEMPLATE, "/sms-gw/v1/infobip/mo/41793026727/38598123123", {"text": "hi"},
         {"receiver": "41793026727", "sender": "38598123123", "text": "hi"}),
        # nor does a public prefix that the proxy rewrote
        ("https://public.example/hooks/%receiver%/%sender%?t=%text%", "/infobip/mo/4179/385", {"t": "x"},
         {"receiver": "4179", "sender": "385", "text": "x"}),
        # literal text mixed with a placeholder in a segment
        ("/mo/to-%receiver%/from-%sender%?t=%text%", "/mo/to-4179/from-385", {},
         {"receiver": "4179", "sender": "385"}),
        # a literal segment between and after placeholders must be there
        ("/mo/%receiver%/in/%sender%/sms?t=%text%", "/x/mo/4179/in/385/sms", {"t": "x"},
         {"receiver": "4179", "sender": "385", "text": "x"}),
        # two placeholders in one segment with a literal separator
        ("/infobip/mo/%receiver%-%sender%?t=%text%", "/infobip/mo/4179-385", {"t": "x"},
         {"receiver": "4179", "sender": "385", "text": "x"}),
        ("/mo/%receiver%_%sender%.json?t=%text%", "/mo/4179_385.json", {},
         {"receiver": "4179", "sender": "385"}),
        # the last placeholder of a segment takes the rest
        ("/mo/%sender%-%messageid%?t=%text%", "/mo/385-abc-def", {},
         {"sender": "385", "messageid": "abc-def"}),
        # a placeholder-only segment may be empty (Infobip's empty bin)
        ("/mo/%sender%/%bin%?t=%text%", "/mo/385/", {"t": "hi"}, {"sender": "385", "bin": "", "text": "hi"}),
        # the text itself in the path (decoded by the framework)
        ("/mo/%sender%/%text%", "/mo/385/hello world", {}, {"sender": "385", "text": "hello world"}),
        # a URL-encoded literal segment compares with the decoded path
        ("/mo/%sender%/a%20b/%text%", "/mo/385/a b/hi", {}, {"sender": "385", "text": "hi"}),
    ],
)
def test_extract_path(template, path, query, expected):
    assert Template.parse(template).extract(path, query) == expected


@pytest.mark.parametrize(
    ("template", "path", "query"),
    [
        (PATH_TEMPLATE, "/385", {}),  # fewer segments than the template's tail
        ("/mo/to-%receiver%/%sender%?t=%text%", "/mo/4179/385", {}),  # literal prefix missing
        ("/mo/%receiver%/in/%sender%?t=%text%", "/mo/4179/out/385", {}),  # literal segment differs
        ("/mo/%receiver%-%sender%?t=%text%", "/mo/4179385", {}),  # separator missing
        ("/mo?id=mo-%messageid%&t=%text%", "/mo", {"id": "123"}),  # value without its literal prefix
    ],
)
def test_extract_mismatch_is_invalid_payload(template, path, query):
    with pytest.raises(InvalidPayload, match=r"does not fit|shorter"):
        Template.parse(template).extract(path, query)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("https://h/mo?who=%sender%&what=%txt%", "unknown placeholder %txt%"),
        ("https://h/mo?who=%from%&what=%text%", "unknown placeholder %from%"),
        ("https://h/mo?a=%sender%&b=%text%&c=%sender%", "placeholder %sender% is used twice"),
        ("https://h/mo?a=%sender%&b=%text%&c=%SENDER%", "placeholder %sender% is used twice"),
        ("https://h/mo/%sender%?a=%sender%&b=%text%", "placeholder %sender% is used twice"),
        ("https://h/mo?a=%sender%%text%", "%sender% and %text% touch"),
        ("https://h/mo/%receiver%%sender%?t=%text%", "%receiver% and %sender% touch"),
        ("https://h/mo?who=%sender%", "neither %text% nor %bin%"),
        ("https://h/mo?who=%sender%&output=xml", "neither %text% nor %bin%"),
        ("https://h/mo/%sender%/%receiver%", "neither %text% nor %bin%"),
        ("https://h/mo?text=text&bin=bin", "neither %text% nor %bin%"),
        ("https://%receiver%.h/mo?t=%text%", "placeholder in the host"),
        ("https://h/mo?%sender%=%text%", "placeholder in the parameter name"),
        ("https://h/mo?t=%text%#%sender%", "placeholder in the fragment"),
        ("https://h/mo?a=%sender%&A=%receiver%:x&t=%text%", "parameter 'a' holds placeholders twice"),
        ("https://h/mo?who=%sender&what=%text%", "neither a placeholder nor a %XX escape"),
        ("https://h/mo?what=%text%%", "neither a placeholder nor a %XX escape"),
        ("https://[::1/mo?t=%text%", "MO_URL_TEMPLATE is not a URL"),
        ("", "MO_URL_TEMPLATE is empty"),
        ("   ", "MO_URL_TEMPLATE is empty"),
    ],
)
def test_parse_errors(template, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        Template.parse(template)
    if template.strip() and "[" not in template:
        assert "in MO_URL_TEMPLATE 'https://" in caught.value.message  # the template is named


def test_parse_error_masks_credentials():
    template = "https://infobip:s3cr3t-pw@h/mo?token=tok-123456&who=%sender%&what=%txt%"
    with pytest.raises(ConfigError) as caught:
        Template.parse(template)
    message = caught.value.message
    assert "s3cr3t-pw" not in message and "tok-123456" not in message
    assert "https://infobip:***@h/mo?token=***&who=%sender%&what=%txt%" in message


def test_source_is_masked():
    template = Template.parse("https://u:pw-1@h/mo?token=ab%2Fzz&t=%text%")
    assert template.source == "https://u:***@h/mo?token=***&t=%text%"
    assert "pw-1" not in repr(template) and "ab%2Fzz" not in repr(template)


def test_mistyped_placeholder_in_a_literal_parameter_is_not_echoed():
    with pytest.raises(ConfigError, match="parameter 'token' has a '%'") as caught:
        Template.parse("https://h/mo?token=s3cr%t&t=%text%")
    assert "s3cr" not in caught.value.message


def test_literal_token_parameter_is_not_data():
    template = Template.parse("https://h/infobip/mo?token=abc&who=%sender%&what=%text%")
    got = template.extract("/infobip/mo", {"token": "abc", "who": "1", "what": "x"})
    assert got == {"sender": "1", "text": "x"}


def test_default_reads_every_field_by_its_own_name():
    query = {"Sender": "38598123123", "RECEIVER": "41793026727", "text": "Hi", "bin": "",
             "DateTime": "2015-02-12T09:51:43", "messageId": "m-1", "DataCoding": "0", "esmClass": "0"}
    got = Template.default().extract("/infobip/mo", query)
    assert got == {"sender": "38598123123", "receiver": "41793026727", "text": "Hi", "bin": "",
                   "datetime": "2015-02-12T09:51:43", "messageid": "m-1", "datacoding": "0", "esmclass": "0"}


def test_default_ignores_other_parameters_and_any_path():
    got = Template.default().extract("/behind/a/proxy/infobip/mo", {"token": "t", "sender": "1", "text": "x"})
    assert got == {"sender": "1", "text": "x"}


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("https://host/infobip/mo",
         "https://host/infobip/mo?sender=%sender%&receiver=%receiver%&text=%text%&bin=%bin%"
         "&datetime=%datetime%&messageid=%messageid%&datacoding=%datacoding%&esmclass=%esmclass%"),
        ("https://host/infobip/mo?token=abc",
         "https://host/infobip/mo?token=abc&sender=%sender%&receiver=%receiver%&text=%text%&bin=%bin%"
         "&datetime=%datetime%&messageid=%messageid%&datacoding=%datacoding%&esmclass=%esmclass%"),
    ],
)
def test_paste_url(base_url, expected):
    assert Template.paste_url(base_url) == expected


def test_paste_url_round_trips_through_parse():
    pasted = Template.paste_url("https://user:pw@host/infobip/mo?token=abc")
    query = {name: f"v-{name}" for name in FIELDS}
    assert Template.parse(pasted).extract("/infobip/mo", query) == {n: f"v-{n}" for n in FIELDS}
