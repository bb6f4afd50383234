"""Property-based fuzzing (hypothesis) of every decoder and both ingest endpoints (SPEC §2.3, §5.4).

Properties:
- decoders (JSON/XML bodies, DLR items, MO forwards and pull pushes, form and query strings,
  MO_URL_TEMPLATE parsing and inversion, hex `bin`, UDH, data codings) raise only the
  documented errors (InvalidPayload/UnsupportedMediaType, marshmallow's ValidationError,
  ConfigError for templates), and whatever they accept can be queued (orjson-encodable);
- the endpoints, through the Flask test client against the suite's real Redis, answer only
  200/400/413/415, never a 500; every answer but a clean 200 adds exactly one quarantine entry;
- a real RQ worker then applies everything accepted without a single failed job.

Profiles (env HYPOTHESIS_PROFILE): "ci" (default, part of `make test`, derandomized, well under
a minute) and "long" (`HYPOTHESIS_PROFILE=long make fuzz`: over 100,000 inputs in total; the
figures of a run are in docs/RELIABILITY.md). The endpoint tests run hypothesis inside the test
(`run_property`) so the app, client and Redis fixtures are shared by all examples of one test,
and the worker runs once over all that they queued.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from marshmallow import ValidationError
from rq.registry import FailedJobRegistry

from app import create_app, decode, dlr, enqueue, mo, mo_text
from app.connection import queue_client
from app.errors import ConfigError, InvalidPayload, ReceiverError
from app.keys import DELIVERY_QUEUE, QUARANTINE, QUEUE_NAME
from app.mo_template import FIELDS, Template
from tests.conftest import TOKEN
from tests.samples import raw

settings.register_profile("ci", max_examples=100, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=100, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)
LONG = PROFILE == "long"

# Examples per test. Long: 11 decoder tests x 9,000 + 4 endpoint tests x 2,500 = 109,000.
DECODER_EXAMPLES = 9_000 if LONG else 200
ENDPOINT_EXAMPLES = 2_500 if LONG else 120
decoder = settings(max_examples=DECODER_EXAMPLES)

ANSWERS = {200, 400, 413, 415}
MAX_BODY = 4096  # small, so that the fuzzer reaches 413 too

# --- strategies -------------------------------------------------------------------------------

SEED_REPORT = orjson.loads(raw("notify_push.json"))["results"][0]
SEED_PULL = {"messageId": "ff4804ef-6ab6-4abd-984d-ab3b1387e823", "from": "38598111", "to": "41793026727",
             "text": "KEY Test message", "cleanText": "Test message", "keyword": "KEY",
             "receivedAt": "2015-02-15T11:43:20.254+0100", "smsCount": 1}
FORWARD = {"sender": "38598111", "receiver": "41793026727", "text": "KEY Test message", "bin": "",
           "datetime": "2015-02-15 11:43:20", "messageid": "ff4804ef", "datacoding": "0", "esmclass": "0"}

odd_numbers = st.sampled_from([0, -1, 2**63 - 1, 2**63, -(2**63) - 1, 10**30, 1.5, -0.0, 1e308, 1e-308])
odd_strings = st.sampled_from(["", " ", "\x00", "NaN", "Infinity", "1e999999999", "-0", "2015-13-45T99:99:99",
                               "+0100", "0x10", "\u202e", "\ud7ff", "ß" * 300, "%00", "&amp;", "<x/>"])
scalars = (st.none() | st.booleans() | st.integers() | odd_numbers | st.floats() | st.text(max_size=40)
           | odd_strings)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=25,
)


@st.composite
def mutated(draw: st.DrawFn, seed: dict[str, Any], extra_keys: list[str]) -> dict[str, Any]:
    """A real item with some fields (top level or one level down) replaced, removed or added."""
    item = json.loads(json.dumps(seed))
    keys = sorted({*seed, *extra_keys})
    for _ in range(draw(st.integers(0, 4))):
        key = draw(st.sampled_from(keys))
        action = draw(st.sampled_from(["replace", "remove", "nested"]))
        if action == "remove":
            item.pop(key, None)
        elif action == "nested" and isinstance(item.get(key), dict) and item[key]:
            inner = draw(st.sampled_from(sorted(item[key])))
            item[key][inner] = draw(json_values)
        else:
            item[key] = draw(json_values)
    return item


dlr_keys = ["from", "sender", "messageCount", "mccmnc", "mccMnc", "platform", "campaignReferenceId",
            "entityId", "applicationId", "text", "unknownField"]
near_reports = mutated(SEED_REPORT, dlr_keys)
near_pulls = mutated(SEED_PULL, ["price", "callbackData", "unknownField"])
near_forwards = mutated(FORWARD, ["Sender", "TEXT", "output", "token2"])


def json_body(items: st.SearchStrategy) -> st.SearchStrategy[bytes]:
    shapes = st.one_of(
        st.lists(items, max_size=4).map(lambda xs: {"results": xs}),
        st.builds(lambda xs, extra: {"results": xs, **extra}, st.lists(items, max_size=3),
                  st.dictionaries(st.text(max_size=8), json_values, max_size=2)),
        json_values,
    )
    # json.dumps (not orjson) on purpose: it writes NaN/Infinity and huge ints, which orjson refuses.
    return shapes.map(lambda doc: json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass"))


xml_names = st.sampled_from(["reportResponse", "results", "result", "messageId", "status", "groupId", "price",
                             "pricePerMessage", "doneAt", "x", "a:b", "_"]) | st.from_regex(
    r"\A[A-Za-z_][A-Za-z0-9_.-]{0,8}\Z")
xml_text = st.text(max_size=30) | st.sampled_from(
    ["&amp;", "&lt;", "&#65;", "&#x0;", "&ent;", "]]>", "<![CDATA[x]]>"])


def to_xml(tag: str, value: Any) -> str:
    if isinstance(value, dict):
        return f"<{tag}>" + "".join(to_xml(k, v) for k, v in value.items()) + f"</{tag}>"
    if isinstance(value, list):
        return "".join(to_xml(tag, v) for v in value)
    text = "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    return f"<{tag}>{text.replace('&', '&amp;').replace('<', '&lt;')}</{tag}>"


@st.composite
def xml_bodies(draw: st.DrawFn, root: str, items: st.SearchStrategy) -> bytes:
    """Well-formed near-reports in both list conventions, then maybe broken on purpose."""
    found = draw(st.lists(items, max_size=3))
    if draw(st.booleans()):
        doc = to_xml(root, {"results": {"result": found}})
    else:
        doc = to_xml(root, {"results": found})
    broken = draw(st.sampled_from(["none", "cut", "insert", "dtd", "entity", "rename", "junk"]))
    if broken == "cut" and doc:
        doc = doc[: draw(st.integers(0, len(doc)))]
    elif broken == "insert":
        at = draw(st.integers(0, len(doc)))
        doc = doc[:at] + draw(xml_text | st.sampled_from(["<", ">", "</x>", "<x>", "&"])) + doc[at:]
    elif broken == "dtd":
        doc = '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY e "x">]>' + doc
    elif broken == "entity":
        doc = doc.replace("<messageId>", "<messageId>&e;", 1)
    elif broken == "rename":
        doc = doc.replace(root, draw(xml_names), 1)
    elif broken == "junk":
        doc = to_xml(draw(xml_names), draw(json_values))
    prolog = draw(st.sampled_from(["", '<?xml version="1.0" encoding="UTF-8"?>', "\n ", "\ufeff"]))
    return (prolog + doc).encode("utf-8", "surrogatepass")


raw_bytes = st.binary(max_size=300)
content_types = st.sampled_from([
    "application/json", "application/xml", "text/xml", "text/plain", None,
    "application/x-www-form-urlencoded", "application/json; charset=utf-8", "application/problem+json",
    "image/png", "multipart/form-data; boundary=x",
    "", "\x00", "application/xml; charset=latin-1",
])
non_utf8 = st.binary(min_size=1, max_size=20).filter(lambda b: not _is_utf8(b))


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@st.composite
def spliced(draw: st.DrawFn, bodies: st.SearchStrategy[bytes]) -> bytes:
    """A body with non-UTF-8 bytes put somewhere in it."""
    body = draw(bodies)
    at = draw(st.integers(0, len(body)))
    return body[:at] + draw(non_utf8) + body[at:]


dlr_bodies = st.one_of(
    json_body(near_reports), json_body(near_reports), json_body(json_values),
    xml_bodies("reportResponse", near_reports),
    spliced(json_body(near_reports)), raw_bytes,
)
padding = st.sampled_from([0, 0, 0, 0, 1, 2, 7, 50, 0, MAX_BODY])  # one in ten over the cap

# Form and query strings: real parameter names, case variants, junk, raw escapes.
param_names = st.sampled_from(
    [*FIELDS, "Sender", "TEXT", "BiN", "output", "token2", "", "a", "%", "sender[]"])
hex_texts = st.from_regex(r"\A[0-9A-Fa-f ]{0,40}\Z")
param_values = st.text(max_size=30) | odd_strings | hex_texts | st.sampled_from(
    ["0", "8", "64", "255", "256", "-1", "050003CC0201", "060804F0F00301"])
param_pairs = st.lists(st.tuples(param_names, param_values), max_size=10)


@st.composite
def query_strings(draw: st.DrawFn) -> str:
    pairs = draw(param_pairs)
    if draw(st.booleans()):
        pairs = [*pairs, *draw(near_forwards).items()]
    text = urlencode([(k, str(v)) for k, v in pairs])
    if draw(st.booleans()):  # raw oddities urlencode would never write
        at = draw(st.integers(0, len(text)))
        junk = draw(st.sampled_from(["%", "%FF", "%C3%28", "%00", "&&", "==", "+", "%u2020", ";", "#"]))
        text = text[:at] + junk + text[at:]
    return text


mo_bodies = st.one_of(
    json_body(near_pulls),
    near_forwards.map(lambda f: json.dumps(f).encode()),
    xml_bodies("inboundMessages", near_pulls),
    near_forwards.map(lambda f: to_xml("request", f).encode()),
    query_strings().map(str.encode),
    spliced(query_strings().map(str.encode)),
    raw_bytes,
)

# MO_URL_TEMPLATE strings: placeholders (known, unknown, odd case) in path and query, literals.
TEMPLATE_PASSWORD = "s3cr3t-pw"
placeholders = st.sampled_from([*FIELDS, "SENDER", "Text", "unknown", "bin", "x"]).map(lambda f: f"%{f}%")
literals = st.sampled_from(["", "-", "id-", ".", "a", "%20", "%", "%2", "/", ":", "~"])
pieces = st.lists(st.one_of(placeholders, literals), min_size=1, max_size=3).map("".join)


@st.composite
def templates(draw: st.DrawFn) -> str:
    path = "/".join(draw(st.lists(pieces, max_size=3)))
    names = st.sampled_from(["who", "what", "text", "bin", "dc", "output", "%sender%"])
    query = "&".join(f"{draw(names)}={piece}" for piece in draw(st.lists(pieces, max_size=4)))
    base = draw(st.sampled_from(
        ["https://sms.example.com/infobip/mo", f"http://u:{TEMPLATE_PASSWORD}@h/", "/infobip/mo", "", "x"]))
    return f"{base}/{path}" + (f"?{query}" if query else "")


# --- direct properties of the decoders ---------------------------------------------------------


def encodable(data: Any) -> None:
    """What a parser accepts goes to Redis as JSON: it must encode (else ingest would 500)."""
    enqueue.encode([{"kind": "x", "receivedAt": "now", "data": data}])


@decoder
@given(body=dlr_bodies | mo_bodies, content_type=content_types)
def test_decode_body_raises_only_payload_errors(body, content_type):
    try:
        kind, doc = decode.decode_body(body, content_type)
    except (InvalidPayload, ReceiverError) as err:
        assert err.status in (400, 415)
        return
    assert kind in ("json", "xml")
    orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS, default=str)


@decoder
@given(body=dlr_bodies, content_type=content_types)
def test_dlr_items_and_load_raise_only_validation_errors(body, content_type):
    try:
        found = dlr.items(*decode.decode_body(body, content_type))
    except ReceiverError as err:
        assert err.status in (400, 415)
        return
    for item in found:
        try:
            data = dlr.load(item)
        except ValidationError:
            continue
        encodable(data)
        assert isinstance(data["messageId"], str) and data["messageId"]


@decoder
@given(item=near_reports | json_values)
def test_dlr_load_of_any_item(item):
    try:  # what a JSON body can decode to: orjson gives floats for integers beyond 64 bits
        item = orjson.loads(json.dumps(item))
    except (orjson.JSONDecodeError, ValueError):  # NaN and infinities are no JSON
        return
    with contextlib.suppress(ValidationError):
        encodable(dlr.load(item))


@decoder
@given(query=query_strings(), body=mo_bodies, content_type=content_types)
def test_mo_items_and_load_raise_only_validation_errors(query, body, content_type):
    from werkzeug.datastructures import MultiDict

    args = MultiDict(_parse_qsl(query))
    try:
        found = mo.items(Template.default(), "", args, content_type, body)
    except ReceiverError as err:
        assert err.status in (400, 415)
        return
    for item in found:
        with contextlib.suppress(ValidationError):
            encodable(mo.load(item))


def _parse_qsl(query: str) -> list[tuple[str, str]]:
    from urllib.parse import parse_qsl

    return parse_qsl(query, keep_blank_values=True, errors="replace")


@decoder
@given(template=templates() | st.text(max_size=80))
def test_template_parse_raises_only_config_errors(template):
    try:
        Template.parse(template)
    except ConfigError as err:
        assert TEMPLATE_PASSWORD not in err.message  # the password of a template never shows
        return


@decoder
@given(template=templates(), path=st.lists(st.text(max_size=15), max_size=5).map("/".join),
       query=query_strings())
def test_template_extract_raises_only_invalid_payload(template, path, query):
    try:
        parsed = Template.parse(template)
    except ConfigError:
        return
    try:
        found = parsed.extract("/" + path, dict(_parse_qsl(query)))
    except InvalidPayload:
        return
    assert set(found) <= set(FIELDS)


values = st.text(max_size=20)


@decoder
@given(data=st.fixed_dictionaries({name: values for name in FIELDS}),
       names=st.permutations([f"p{n}" for n in range(len(FIELDS))]))
def test_template_inversion_gives_back_what_infobip_filled_in(data, names):
    """Each placeholder in a query value of its own: whatever the values, they come back."""
    template = Template.parse("https://h/infobip/mo?" + "&".join(
        f"{name}=%{field}%" for name, field in zip(names, FIELDS, strict=True)))
    query = urlencode([(name, data[field]) for name, field in zip(names, FIELDS, strict=True)])
    assert template.extract("/infobip/mo", dict(_parse_qsl(query))) == data


@decoder
@given(data=st.fixed_dictionaries({"receiver": values.filter(lambda v: "/" not in v and "-" not in v),
                                   "sender": values.filter(lambda v: "/" not in v), "text": values}))
def test_template_inversion_from_path_segments(data):
    template = Template.parse("https://h/infobip/mo/%receiver%-%sender%?t=%text%")
    path = f"/infobip/mo/{data['receiver']}-{data['sender']}"
    got = template.extract(path, {"t": data["text"]})
    assert got == data


@decoder
@given(text=st.text(max_size=60) | hex_texts | st.binary(max_size=30).map(bytes.hex))
def test_hex_bytes_raises_only_invalid_payload(text):
    try:
        data = mo_text.hex_bytes(text)
    except InvalidPayload:
        return
    assert data.hex() == text.strip().lower()


@decoder
@given(payload=st.binary(max_size=60), coding=st.integers(0, 255))
def test_udh_and_data_codings_raise_only_invalid_payload(payload, coding):
    try:
        concat, body = mo_text.split_udh(payload)
    except InvalidPayload:
        concat, body = None, payload
    if concat is not None:
        assert 1 <= concat.seq <= concat.total
    try:
        text = mo_text.decode_bytes(body, coding)
    except InvalidPayload:
        return
    assert text is None or isinstance(text, str)


@decoder
@given(ref=st.integers(0, 0xFFFF), total=st.integers(1, 255), data=st.data(), sixteen=st.booleans(),
       other=st.lists(st.tuples(st.integers(1, 0xFF).filter(lambda i: i != 8), st.binary(max_size=5)),
                      max_size=3), body=st.binary(max_size=40))
def test_udh_concatenation_is_read_back(ref, total, data, sixteen, other, body):
    seq = data.draw(st.integers(1, total))
    head = bytes([8, 4]) + ref.to_bytes(2, "big") if sixteen else bytes([0, 3, ref & 0xFF])
    concat = head + bytes([total, seq])
    ies = b"".join(bytes([iei, len(value)]) + value for iei, value in other) + concat
    found, rest = mo_text.split_udh(bytes([len(ies)]) + ies + body)
    assert rest == body
    assert (found.ref, found.total, found.seq) == (ref if sixteen else ref & 0xFF, total, seq)


# --- the endpoints, with a real Redis and a real worker ----------------------------------------


@pytest.fixture
def fuzz_client(config, r):
    app = create_app({**config, "QUARANTINE_MAX": 10**7, "MAX_BODY_BYTES": MAX_BODY})
    return app.test_client()


@pytest.fixture
def template_client(config, r):
    template = "https://sms.example.com/infobip/mo/%receiver%/in-%sender%?t=%text%&b=%bin%&dc=%datacoding%&e=%esmclass%"
    app = create_app({**config, "QUARANTINE_MAX": 10**7, "MAX_BODY_BYTES": MAX_BODY,
                      "MO_URL_TEMPLATE": template})
    return app.test_client()


ANSWERED: Counter[int] = Counter()  # statuses of the endpoint test running now


def run_property(check: Callable[..., None], **strategies: st.SearchStrategy) -> None:
    """Run `check` over ENDPOINT_EXAMPLES generated inputs, sharing the test's fixtures. The
    inputs tried are not in hypothesis' statistics (the test itself is no @given): printed."""
    ANSWERED.clear()
    settings(max_examples=ENDPOINT_EXAMPLES)(given(**strategies)(check))()
    test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
    print(f"\n{test}: {sum(ANSWERED.values())} inputs tried, answers {dict(sorted(ANSWERED.items()))}")


def answered(resp, r, before: int) -> None:
    """The documented answers only; a clean 200 stores nothing, anything else one entry."""
    ANSWERED[resp.status_code] += 1
    assert resp.status_code in ANSWERS, (resp.status_code, resp.get_data()[:300])
    assert resp.is_json
    grew = r.llen(QUARANTINE) - before
    clean = resp.status_code == 200 and not resp.json["rejected"]
    assert grew == (0 if clean else 1), (resp.status_code, resp.json)


def no_failed_jobs(r, work) -> None:
    work()
    for queue in (QUEUE_NAME, DELIVERY_QUEUE):
        failed = FailedJobRegistry(queue, connection=queue_client(r))
        assert failed.count == 0, [failed.get_job_ids()]
    assert not r.keys("batch:*")


def test_dlr_endpoint_answers_only_documented_statuses(fuzz_client, r, work):
    def check(body: bytes, content_type: str | None, pad: int) -> None:
        headers = {"Content-Type": content_type} if content_type is not None else {}
        before = r.llen(QUARANTINE)
        resp = fuzz_client.post("/infobip/dlr", query_string={"token": TOKEN}, data=body + b" " * pad,
                                headers=headers)
        answered(resp, r, before)

    run_property(check, body=dlr_bodies, content_type=content_types, pad=padding)
    no_failed_jobs(r, work)


def test_mo_endpoint_answers_only_documented_statuses(fuzz_client, r, work):
    def check(method: str, query: str, body: bytes, content_type: str | None, pad: int) -> None:
        headers = {"Content-Type": content_type} if content_type is not None else {}
        before = r.llen(QUARANTINE)
        data = b"" if method == "GET" else body + b" " * pad
        url = f"/infobip/mo?token={TOKEN}&{query}"
        resp = fuzz_client.open(url, method=method, data=data, headers=headers)
        answered(resp, r, before)

    run_property(check, method=st.sampled_from(["GET", "POST"]), query=query_strings(), body=mo_bodies,
                 content_type=content_types, pad=padding)
    no_failed_jobs(r, work)


def test_mo_template_endpoint_answers_only_documented_statuses(template_client, r, work):
    segments = st.one_of(
        st.lists(st.text(max_size=15) | st.sampled_from(["in-38598111", "41793026727", "in-"]), max_size=4),
        st.tuples(st.text(max_size=15), st.text(max_size=15)).map(lambda rs: [rs[0], f"in-{rs[1]}"]),
    )

    def check(path: list[str], query: str) -> None:
        before = r.llen(QUARANTINE)
        url = "/infobip/mo/" + "/".join(quote(s, safe="") for s in path)
        resp = template_client.get(f"{url}?token={TOKEN}&{query}")
        if resp.status_code == 404:  # an empty tail is the bare /infobip/mo, which exists; nothing else 404s
            pytest.fail(f"404 for {url!r}")
        answered(resp, r, before)

    query = st.one_of(query_strings(), st.builds(
        lambda t, b, dc, e: urlencode({"t": t, "b": b, "dc": dc, "e": e}), param_values, param_values,
        param_values, param_values))
    run_property(check, path=segments, query=query)
    no_failed_jobs(r, work)


def test_non_utf8_and_binary_everywhere(fuzz_client, r, work):
    """Raw bytes (not text) in the query string, the body and the Content-Type."""

    def check(query: bytes, body: bytes, content_type: bytes, path: str) -> None:
        before = r.llen(QUARANTINE)
        environ = {"QUERY_STRING": f"token={TOKEN}&".encode().decode("latin-1") + query.decode("latin-1"),
                   "CONTENT_TYPE": content_type.decode("latin-1")}
        resp = fuzz_client.post(path, data=body, environ_overrides=environ)
        answered(resp, r, before)

    run_property(check, query=st.binary(max_size=60), body=st.binary(max_size=200) | dlr_bodies,
                 content_type=st.binary(max_size=30), path=st.sampled_from(["/infobip/dlr", "/infobip/mo"]))
    no_failed_jobs(r, work)
