"""Hostile input (SPEC §2.3, §6) that tests/test_security.py and the bad-input corpora of
test_ingest_*.py do not already cover: extreme nesting, 10 MB bodies, header and parameter
injection, raw non-UTF-8 bytes, duplicate keys, timing-safe comparison, forged proxy hops, and
a search for every configured secret (ingest token, Basic password, API key, a consumer's
`whsec_` secret) in captured logs, answers, quarantine and dead letters.

Slow-drip bodies need a real server: tests/faults/test_fault_slow_client.py, against gunicorn;
here only the app's side of it (a body read that times out is a 408).
"""

from __future__ import annotations

import base64
import hmac
import io
import logging
import socket
from typing import Any

import orjson
import pytest

from app import auth, create_app, ingest
from app.keys import DEAD_LETTERS, EVENT_STREAM, QUARANTINE, consumer_key
from tests.conftest import API_KEY, BASIC_PASSWORD, BASIC_USER, TOKEN, basic_header
from tests.consumers import SECRET, http_consumer, routes_text
from tests.samples import BILLION_LAUGHS, EXTERNAL_ENTITY, push, raw, report
from tools.redis_server import free_port

JSON, XML, FORM = "application/json", "application/xml", "application/x-www-form-urlencoded"
TEN_MB = 10 * 1024 * 1024


def quarantined(r) -> list[dict[str, Any]]:
    return [orjson.loads(e) for e in r.lrange(QUARANTINE, 0, -1)]


def post(client, path: str, body: bytes, content_type: str | None = JSON, **kw: Any):
    headers = {**basic_header(), **kw.pop("headers", {})}
    if content_type:
        headers["Content-Type"] = content_type
    return client.post(path, data=body, headers=headers, **kw)


# --- nesting ----------------------------------------------------------------------------------

DEPTH = 100_000
NESTED = {
    "JSON lists": b"[" * DEPTH + b"]" * DEPTH,
    "JSON objects": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
    "JSON inside results": b'{"results": [' + b"[" * DEPTH + b"]" * DEPTH + b"]}",
    "XML elements": b"<reportResponse>" + b"<a>" * DEPTH + b"</a>" * DEPTH + b"</reportResponse>",
    "XML unclosed": b"<reportResponse>" + b"<a>" * DEPTH,
}


@pytest.mark.parametrize("path", ["/infobip/dlr", "/infobip/mo"])
@pytest.mark.parametrize("body", NESTED.values(), ids=NESTED.keys())
def test_deeply_nested_documents_are_400_and_quarantined(body, path, client, r, work):
    resp = post(client, path, body, None)
    assert resp.status_code == 400, resp.json
    assert len(quarantined(r)) == 1
    work()
    assert r.xlen(EVENT_STREAM) == 0


# orjson reads 1024 levels but writes only 255: an accepted item with a deep unknown field used
# to be a 500 when it was queued. Now anything over decode.MAX_DEPTH is refused up front.
DEEP_EXTRA = {
    "DLR JSON": ("/infobip/dlr", b'{"results":[{"messageId":"m1","x":' + b"[" * 300 + b"]" * 300 + b"}]}",
                 JSON),
    "DLR XML": ("/infobip/dlr", b"<reportResponse><results><messageId>m1</messageId><x>" + b"<a>" * 300
                + b"t" + b"</a>" * 300 + b"</x></results></reportResponse>", XML),
    "MO pull JSON": ("/infobip/mo", b'{"results":[{"messageId":"m1","from":"1","x":' + b"[" * 300
                     + b"]" * 300 + b"}]}", JSON),
    "DLR nested status": ("/infobip/dlr", b'{"results":[{"messageId":"m1","status":{"x":' + b"[" * 300
                          + b"]" * 300 + b"}}]}", JSON),
}


@pytest.mark.parametrize(("path", "body", "content_type"), DEEP_EXTRA.values(), ids=DEEP_EXTRA.keys())
def test_a_deep_unknown_field_is_400_not_500(path, body, content_type, client, r):
    resp = post(client, path, body, content_type)
    assert resp.status_code == 400
    assert "nested deeper" in resp.json["message"]
    assert len(quarantined(r)) == 1


def test_unknown_fields_of_ordinary_depth_are_still_kept(infobip, work, api):
    deep_enough = {"a": {"b": [{"c": [1, 2, {"d": "e"}]}]}}
    assert infobip.dlr(push(report("m1", custom=deep_enough))).status_code == 200
    work()
    assert api.get("/api/messages/m1").json["extra"] == {"custom": deep_enough}


# --- 10 MB bodies -----------------------------------------------------------------------------


@pytest.fixture
def no_parsing(monkeypatch):
    """Fail the test if a body reaches a parser: the cap must hold before parsing."""

    def refuse(*_args: Any, **_kw: Any) -> Any:
        raise AssertionError("an oversized body was parsed")

    monkeypatch.setattr(ingest, "decode_body", refuse)
    monkeypatch.setattr(ingest.mo, "items", refuse)


@pytest.mark.parametrize("path", ["/infobip/dlr", "/infobip/mo"])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_10_mb_body_is_413_before_parsing(path, chunked, client, r, no_parsing):
    body = b'{"results": [' + b" " * TEN_MB + b"]}"
    if chunked:  # no Content-Length: the cap holds while reading
        stream = io.BytesIO(body)
        resp = client.post(path, input_stream=stream, environ_overrides={"wsgi.input_terminated": True},
                           headers={**basic_header(), "Content-Type": JSON})
    else:
        resp = post(client, path, body)
    assert resp.status_code == 413
    [entry] = quarantined(r)
    assert entry["reason"] == "body too large"
    assert "body" not in entry and "bodyBase64" not in entry  # 10 MB are not copied into Redis


class TimingOut(io.RawIOBase):
    """A request body whose read times out, as deploy/gunicorn.conf.py makes a slow drip's do."""

    def readable(self) -> bool:
        return True

    def readinto(self, _buffer: Any) -> int:
        raise TimeoutError("request body not received in time")


@pytest.mark.parametrize("path", ["/infobip/dlr", "/infobip/mo"])
def test_a_body_that_does_not_arrive_in_time_is_408_and_closes(path, client, r):
    environ = {"wsgi.input": TimingOut(), "CONTENT_LENGTH": "1000"}
    resp = client.post(path, environ_overrides=environ, headers={**basic_header(), "Content-Type": JSON})
    assert resp.status_code == 408
    assert resp.json["error"] == "request_timeout"
    assert resp.headers["Connection"] == "close"
    [entry] = quarantined(r)
    assert entry["reason"] == "body not received in time"


# --- injection --------------------------------------------------------------------------------

CRLF_VALUES = ["x\r\nSet-Cookie: a=1", "x\nLocation: http://evil.example", "x%0d%0aX-Injected: 1",
               "\r\n\r\n<h1>"]


def no_injected_headers(resp) -> None:
    names = {name.lower() for name, _ in resp.headers}
    assert names.isdisjoint({"set-cookie", "location", "x-injected", "refresh"})
    for name, value in resp.headers:
        assert "\r" not in value and "\n" not in value, (name, value)


@pytest.mark.parametrize("value", CRLF_VALUES)
def test_crlf_in_parameters_cannot_inject_headers(value, client, r):
    for params in ({"sender": value, "text": value}, {"token": value},
                   {"sender": "1", "text": "x", "bogus": value}):
        resp = client.get("/infobip/mo", query_string=params, headers=basic_header())
        assert resp.status_code in (200, 400, 401)
        no_injected_headers(resp)
    path = "/infobip/mo/" + value.replace("\r", "%0D").replace("\n", "%0A")
    resp = client.get(path, headers=basic_header(), query_string={"sender": "1", "text": "x"})
    assert resp.status_code in (200, 400)
    no_injected_headers(resp)


@pytest.mark.parametrize("value", CRLF_VALUES)
def test_crlf_in_request_header_values_is_not_echoed(value, client, r):
    # Set in the WSGI environ: werkzeug's test client refuses to send such a header at all.
    environ = {"HTTP_X_FORWARDED_FOR": value, "HTTP_USER_AGENT": value, "HTTP_X_REQUEST_ID": value}
    resp = client.post("/infobip/dlr", data=b"junk", environ_overrides=environ,
                       headers={**basic_header(), "Content-Type": "text/plain"})
    assert resp.status_code == 415
    no_injected_headers(resp)
    [entry] = quarantined(r)
    assert entry["reason"]


def test_an_mo_path_with_an_empty_placeholder_or_a_newline_is_data(config, r, work):
    """werkzeug used to answer `//` with a 308 (Infobip does not follow it) and a newline in a
    path segment with a 404: an MO lost either way."""
    app = create_app({**config, "MO_URL_TEMPLATE": "https://h/infobip/mo/%receiver%/in-%sender%?t=%text%"})
    client = app.test_client()
    resp = client.get("/infobip/mo//in-38598111", query_string={"t": "hello"}, headers=basic_header())
    assert resp.status_code == 200, resp.json
    resp = client.get("/infobip/mo/4179%0A3026727/in-38598111", query_string={"t": "hi"},
                      headers=basic_header())
    assert resp.status_code == 200, resp.json
    work()
    senders = {orjson.loads(e[1][b"event"])["data"]["to"] for e in r.xrange(EVENT_STREAM)}
    assert senders == {"", "4179\n3026727"}


# --- non-UTF-8 bytes --------------------------------------------------------------------------

NON_UTF8 = {
    "JSON string": ("/infobip/dlr", b'{"results": [{"messageId": "m\xff\xfe"}]}', JSON, 400),
    "JSON key": ("/infobip/dlr", b'{"results": [{"\xc3\x28": 1, "messageId": "m"}]}', JSON, 400),
    "XML text": ("/infobip/dlr", b"<reportResponse><results><messageId>m\xff</messageId></results>"
                 b"</reportResponse>", XML, 400),
    "XML declared Latin-1": ("/infobip/dlr", b'<?xml version="1.0" encoding="ISO-8859-1"?><reportResponse>'
                             b"<results><messageId>m\xe9</messageId><status><id>5</id></status></results></reportResponse>",
                             XML, 200),
    "MO form": ("/infobip/mo", b"sender=1&text=caf\xe9", FORM, 200),
    "MO JSON": ("/infobip/mo", b'{"sender": "1", "text": "\xff"}', JSON, 400),
    "lone surrogate escape": ("/infobip/dlr", b'{"results": [{"messageId": "\\ud800"}]}', JSON, 400),
}


@pytest.mark.parametrize(("path", "body", "content_type", "status"), NON_UTF8.values(), ids=NON_UTF8.keys())
def test_non_utf8_bodies(path, body, content_type, status, client, r, work):
    resp = post(client, path, body, content_type)
    assert resp.status_code == status, resp.json
    if status != 200:
        [entry] = quarantined(r)
        assert entry.get("body", "").encode() == body or base64.b64decode(entry["bodyBase64"]) == body
    work()


@pytest.mark.parametrize("raw_query", [b"\x80", b"sender=1&text=\xff\xfe", b"text=caf\xe9&sender=\xc3\x28"])
def test_raw_non_utf8_bytes_in_the_query_string_are_not_a_500(raw_query, client, r):
    """A proxy may pass bytes the client did not percent-escape; werkzeug decoded them strictly."""
    query = f"token={TOKEN}&".encode() + raw_query
    resp = client.get("/infobip/mo", environ_overrides={"QUERY_STRING": query.decode("latin-1")})
    assert resp.status_code in (200, 400)
    if resp.status_code == 400:
        assert len(quarantined(r)) == 1
    resp = client.get("/infobip/mo", environ_overrides={"QUERY_STRING": "token=\xff" + TOKEN})
    assert resp.status_code == 401


def test_raw_non_utf8_text_is_kept_escaped(client, r, work):
    query = f"token={TOKEN}&sender=38598111&text=caf\xe9".encode("latin-1")
    resp = client.get("/infobip/mo", environ_overrides={"QUERY_STRING": query.decode("latin-1")})
    assert resp.status_code == 200
    work()
    [(_id, fields)] = r.xrange(EVENT_STREAM)
    assert orjson.loads(fields[b"event"])["data"]["text"] == "caf%E9"  # as werkzeug keeps a sent %E9


# --- duplicate keys ---------------------------------------------------------------------------


def test_duplicate_json_keys_the_last_one_wins(infobip, work, api):
    """As in every JSON parser we know (orjson, json, JavaScript): no error, the last value."""
    body = (b'{"results": [{"messageId": "first", "messageId": "last", "to": "1", "to": "2",'
            b' "status": {"id": 5}}]}')
    assert infobip.dlr(body).json == {"accepted": 1, "rejected": []}
    work()
    assert api.get("/api/messages/first").status_code == 404
    assert api.get("/api/messages/last").json["to"] == "2"


def test_duplicate_results_keys(infobip, work, r):
    status = b'"status": {"id": 5}'
    body = (b'{"results": [{"messageId": "a", %s}], '
            b'"results": [{"messageId": "b", %s}, {"messageId": "c", %s}]}' % (status, status, status))
    assert infobip.dlr(body).json["accepted"] == 2
    work()
    assert r.xlen(EVENT_STREAM) == 2


def test_duplicate_xml_elements_are_a_list_and_refused(infobip, r):
    body = (b"<reportResponse><results><messageId>a</messageId><messageId>b</messageId></results>"
            b"</reportResponse>")
    resp = infobip.dlr(body, XML)
    assert resp.status_code == 400
    assert "messageId" in resp.json["details"][0]["errors"]


def test_duplicate_mo_parameters_the_first_one_wins(client, work, api):
    resp = client.get("/infobip/mo", headers=basic_header(), query_string=[
        ("sender", "111"), ("SENDER", "222"), ("sender", "333"), ("text", "one"), ("text", "two"),
        ("messageid", "dup-1")])
    assert resp.status_code == 200
    work()
    found = api.get("/api/inbound/dup-1").json
    assert (found["from"], found["text"]) == ("111", "one")


@pytest.mark.parametrize(("tokens", "status"), [([TOKEN, "wrong"], 200), (["wrong", TOKEN], 401)])
def test_duplicate_token_parameters_only_the_first_counts(tokens, status, client):
    query = [("token", t) for t in tokens] + [("sender", "1"), ("text", "x")]
    assert client.get("/infobip/mo", query_string=query).status_code == status


# --- timing-safe comparison -------------------------------------------------------------------


@pytest.fixture
def comparisons(monkeypatch) -> list[tuple[bytes, bytes]]:
    """Every credential comparison made, recorded through hmac.compare_digest."""
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    return seen


def test_token_is_compared_in_constant_time(client, comparisons):
    resp = client.get("/infobip/mo", query_string={"token": TOKEN[:-1] + "x", "sender": "1"})
    assert resp.status_code == 401
    assert (TOKEN[:-1].encode() + b"x", TOKEN.encode()) in comparisons


def test_basic_compares_both_halves_even_when_the_user_is_wrong(client, comparisons):
    resp = client.get("/infobip/mo", query_string={"sender": "1"}, headers=basic_header("nobody", "nothing"))
    assert resp.status_code == 401
    assert (b"nobody", BASIC_USER.encode()) in comparisons
    assert (b"nothing", BASIC_PASSWORD.encode()) in comparisons  # no early exit that timing could show


def test_every_api_key_is_compared(config, r, comparisons):
    client = create_app({**config, "API_KEYS": ["k-one", "k-two", API_KEY]}).test_client()
    assert client.get("/api/messages", headers={"Authorization": "Bearer k-one"}).status_code == 200
    assert {expected for _given, expected in comparisons} == {b"k-one", b"k-two", API_KEY.encode()}


def test_no_plain_equality_on_secrets_in_auth():
    """The auth module compares secrets only through `_same` (hmac.compare_digest)."""
    import inspect

    source = inspect.getsource(auth)
    for name in ("token", "password", "user", "key"):
        assert f"== {name}" not in source and f"{name} ==" not in source


# --- forged X-Forwarded-For -------------------------------------------------------------------

ALLOWED = ["203.0.113.0/24"]


@pytest.mark.parametrize(
    ("proxies", "forwarded_for", "status"),
    [
        (2, "203.0.113.7, 198.51.100.7, 10.0.0.3", 403),  # forged allowed hop beyond the two trusted
        (2, "198.51.100.7, 203.0.113.7, 10.0.0.3", 200),  # the second trusted proxy saw an allowed client
        (2, "203.0.113.7", 403),  # fewer hops than trusted: the header is not believed at all
        (1, "203.0.113.7, 203.0.113.8, 198.51.100.7", 403),  # any number of forged hops is ignored
    ],
)
def test_forged_forwarded_for_beyond_the_trusted_hops(proxies, forwarded_for, status, config, r):
    app = create_app({**config, "WEBHOOK_ALLOWED_IPS": ALLOWED, "TRUSTED_PROXIES": proxies})
    resp = app.test_client().get("/infobip/mo", query_string={"sender": "1", "text": "x"}, headers={
        **basic_header(), "X-Forwarded-For": forwarded_for}, environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert resp.status_code == status


@pytest.mark.parametrize("header", ["Forwarded", "X-Real-IP", "X-Client-IP", "True-Client-IP"])
def test_other_forwarding_headers_are_not_believed(header, config, r):
    app = create_app({**config, "WEBHOOK_ALLOWED_IPS": ALLOWED, "TRUSTED_PROXIES": 1})
    value = "for=203.0.113.7" if header == "Forwarded" else "203.0.113.7"
    resp = app.test_client().get("/infobip/mo", query_string={"sender": "1", "text": "x"}, headers={
        **basic_header(), header: value}, environ_base={"REMOTE_ADDR": "198.51.100.9"})
    assert resp.status_code == 403


# --- no configured secret anywhere ------------------------------------------------------------

CONSUMER_PASSWORD = "consumer-pa55-7d1e"


def every_secret() -> list[str]:
    return [TOKEN, BASIC_PASSWORD, API_KEY, SECRET, SECRET.removeprefix("whsec_"), CONSUMER_PASSWORD,
            base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()]


HOSTILE_BODIES = [
    (BILLION_LAUGHS, XML), (EXTERNAL_ENTITY, XML), (b"[" * 5000, JSON), (b"\xff\xfe", JSON),
    (b"plain", "text/plain"),
    (raw("notify_push.json"), JSON), (b'{"results": [{"messageId": 5}, {"messageId": "ok-1"}]}', JSON),
]


def test_no_secret_in_logs_answers_quarantine_or_dead_letters(use_routes, work, r, caplog):
    """Every configured secret, every place it could leak to, after hostile and valid input and a
    consumer whose deliveries fail until dead-lettered."""
    caplog.set_level(logging.DEBUG)
    dead_url = f"http://hook:{CONSUMER_PASSWORD}@127.0.0.1:{free_port()}/events"  # refuses connections
    service = use_routes(routes_text(http_consumer("crm", dead_url, events='["*"]', retry_schedule="[0]")))
    answers = []
    credentials = [{"query_string": {"token": TOKEN}}, {"headers": {"X-Webhook-Token": TOKEN}},
                   {"headers": basic_header()}, {"headers": {**basic_header(), "Cookie": f"t={TOKEN}"}}]
    for body, content_type in HOSTILE_BODIES:
        for how in credentials:
            headers = {"Content-Type": content_type, **how.get("headers", {})}
            for path in ("/infobip/dlr", "/infobip/mo"):
                resp = service.client.post(path, data=body, headers=headers,
                                           query_string=how.get("query_string"))
                assert resp.status_code in (200, 400, 415)
                answers.append(resp.get_data(as_text=True))
    for path in ("/api/messages", "/api/quarantine", "/api/consumers", "/api/dlq/crm"):
        answers.append(service.api.get(path).get_data(as_text=True))
    work()
    dead = r.lrange(DEAD_LETTERS.format(consumer=consumer_key("crm")), 0, -1)
    assert dead, "the consumer's deliveries were dead-lettered"
    places = {
        "answers": "\n".join(answers),
        "quarantine": "\n".join(e.decode() for e in r.lrange(QUARANTINE, 0, -1)),
        "dead letters": "\n".join(e.decode() for e in dead),
        "log": caplog.text + " ".join(str(rec.args) for rec in caplog.records),
    }
    for where, text in places.items():
        assert [s for s in every_secret() if s in text] == [], where


# --- what gunicorn refuses itself is JSON too (issue 19) -------------------------------------

GUNICORN_REFUSALS = {
    "bad request line": b"GET /infobip/mo?token=%s HTTP/1.1 extra\r\nHost: h\r\n\r\n",
    "header over limit_request_field_size": b"GET /healthz HTTP/1.1\r\nHost: h\r\nX-Big: "
                                            + b"a" * 20000 + b"\r\n\r\n",
    "malformed header": b"GET /healthz HTTP/1.1\r\nHost: h\r\nBad Header: x\r\n\r\n",
}


@pytest.mark.parametrize("name", GUNICORN_REFUSALS)
def test_what_gunicorn_refuses_itself_is_answered_in_json(name, gunicorn):
    data = GUNICORN_REFUSALS[name].replace(b"%s", TOKEN.encode())
    with socket.create_connection(("127.0.0.1", gunicorn.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert 400 <= status < 500, answer[:300]
    assert b"content-type: application/json" in head.lower(), head
    assert set(orjson.loads(body)) == {"error", "message"}
    assert TOKEN.encode() not in answer
