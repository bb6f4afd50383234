"""SPEC §6: who may call the ingest endpoints and /api, and that secrets never leak.

One suite, parametrized over INGEST_ENDPOINTS: an endpoint added later gets every check by
adding a line here. A path may carry a query string (the MO forward by GET): `call` merges it
with the query parameters a test adds (the token).
"""

from __future__ import annotations

import base64
import logging
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson
import pytest
from flask import Request

from app import auth, create_app
from app.errors import ConfigError
from app.keys import QUARANTINE
from tests.conftest import API_KEY, BASIC_PASSWORD, BASIC_USER, SECRETS, TOKEN, basic_header
from tests.samples import raw

MO_PARAMS = "sender=38598123123&receiver=41793026727&text=KEY+Test+message&messageid=mo-sec-1"

# (method, path with any query, a valid body, its content type)
INGEST_ENDPOINTS = [
    ("POST", "/infobip/dlr", raw("notify_push.json"), "application/json"),
    ("GET", f"/infobip/mo?{MO_PARAMS}", b"", None),  # Infobip's default MO forward
    ("POST", "/infobip/mo", MO_PARAMS.encode(), "application/x-www-form-urlencoded"),
]

ENDPOINT_IDS = [f"{method} {urlsplit(path).path}" for method, path, _, _ in INGEST_ENDPOINTS]
endpoints = pytest.mark.parametrize(
    ("method", "path", "body", "content_type"), INGEST_ENDPOINTS, ids=ENDPOINT_IDS
)

NO_CREDENTIALS = {"WEBHOOK_TOKEN": None, "WEBHOOK_BASIC_USER": None, "WEBHOOK_BASIC_PASSWORD": None}


def call(client, method: str, path: str, body: bytes, content_type: str | None, **kw: Any):
    headers = kw.pop("headers", {})
    if content_type:
        headers["Content-Type"] = content_type
    url = urlsplit(path)
    query = [*parse_qsl(url.query), *kw.pop("query_string", {}).items()]
    return client.open(url.path, method=method, data=body, headers=headers, query_string=query, **kw)


# --- credentials ----------------------------------------------------------------------------


@endpoints
def test_no_credentials_is_401(method, path, body, content_type, client, r):
    resp = call(client, method, path, body, content_type)
    assert resp.status_code == 401
    assert resp.json["error"] == "unauthorized"
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    assert r.llen(QUARANTINE) == 0  # unauthenticated input is not stored


@endpoints
@pytest.mark.parametrize(
    "how",
    [
        {"query_string": {"token": "wrong"}},
        {"headers": {"X-Webhook-Token": "wrong"}},
        {"query_string": {"token": ""}},
        {"query_string": {"token": TOKEN[:-1]}},
        {"query_string": {"token": TOKEN + "x"}},
        {"headers": {"Authorization": f"Bearer {TOKEN}"}},  # not a place we read the token from
    ],
    ids=["query", "header", "empty", "prefix", "longer", "bearer"],
)
def test_wrong_token_is_401(method, path, body, content_type, how, client):
    assert call(client, method, path, body, content_type, **how).status_code == 401


@endpoints
@pytest.mark.parametrize(
    "how",
    [{"query_string": {"token": TOKEN}}, {"headers": {"X-Webhook-Token": TOKEN}}],
    ids=["query", "header"],
)
def test_token_in_query_or_header_is_accepted(method, path, body, content_type, how, client):
    assert call(client, method, path, body, content_type, **how).status_code == 200


@pytest.mark.parametrize("query", [
    b"token=abc", b"token=a%20b&x=1", b"x=1&token=first&token=second", b"token=", b"token", b"tok%65n=abc",
    b"token=a+b", b"token=%80%FF", b"token=%E2%82%AC", b"a=1;token=2", b"", b"&&token=z&"])
def test_the_remembered_query_token_is_werkzeugs(query):
    """auth.query_token parses a query string once per process; what it finds is `args`'."""
    environ = {"QUERY_STRING": query.decode("latin-1"), "REQUEST_METHOD": "GET"}
    assert auth.query_token(query) == Request(environ).args.get("token")
    assert auth.query_token(query) == Request(environ).args.get("token")  # remembered


@endpoints
@pytest.mark.parametrize("variant", [TOKEN.upper(), TOKEN.swapcase(), TOKEN.capitalize()])
def test_case_variant_of_the_token_is_401(method, path, body, content_type, variant, client):
    assert variant != TOKEN
    for how in ({"query_string": {"token": variant}}, {"headers": {"X-Webhook-Token": variant}}):
        assert call(client, method, path, body, content_type, **how).status_code == 401


@endpoints
def test_basic_with_the_right_pair_is_accepted(method, path, body, content_type, client):
    assert call(client, method, path, body, content_type, headers=basic_header()).status_code == 200


@endpoints
@pytest.mark.parametrize(
    ("user", "password"),
    [
        ("someone", BASIC_PASSWORD),
        (BASIC_USER, "wrong"),
        (BASIC_USER.upper(), BASIC_PASSWORD),
        (BASIC_USER, BASIC_PASSWORD.upper()),
        (BASIC_USER, ""),
        ("", BASIC_PASSWORD),
    ],
    ids=["wrong-user", "wrong-password", "user-case", "password-case", "no-password", "no-user"],
)
def test_basic_with_a_wrong_user_or_password_is_401(method, path, body, content_type, user, password, client):
    resp = call(client, method, path, body, content_type, headers=basic_header(user, password))
    assert resp.status_code == 401


@endpoints
def test_basic_in_the_url_userinfo_form_is_accepted(method, path, body, content_type, client):
    """notifyUrl `https://user:pass@host/...`: the client sends it as an Authorization header."""
    pair = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()
    headers = {"Authorization": f"basic {pair}"}  # scheme names are case-insensitive
    assert call(client, method, path, body, content_type, headers=headers).status_code == 200


@endpoints
def test_token_only_configuration(method, path, body, content_type, config, r):
    client = create_app({**config, "WEBHOOK_BASIC_USER": None, "WEBHOOK_BASIC_PASSWORD": None}).test_client()
    assert call(client, method, path, body, content_type, headers=basic_header()).status_code == 401
    assert call(client, method, path, body, content_type, query_string={"token": TOKEN}).status_code == 200


@endpoints
def test_basic_only_configuration(method, path, body, content_type, config, r):
    client = create_app({**config, "WEBHOOK_TOKEN": None}).test_client()
    assert call(client, method, path, body, content_type, query_string={"token": TOKEN}).status_code == 401
    assert call(client, method, path, body, content_type, headers=basic_header()).status_code == 200


# --- start-up refusal and development mode --------------------------------------------------


def test_refuses_to_start_without_credentials(config):
    with pytest.raises(ConfigError, match="no ingest credentials"):
        create_app({**config, **NO_CREDENTIALS})


@pytest.mark.parametrize(
    "half",
    [{"WEBHOOK_BASIC_PASSWORD": None}, {"WEBHOOK_BASIC_USER": None}],
    ids=["user-only", "password-only"],
)
def test_refuses_half_a_basic_pair(half, config):
    with pytest.raises(ConfigError, match="WEBHOOK_BASIC_USER"):
        create_app({**config, "WEBHOOK_TOKEN": None, **half})


def test_refuses_a_bad_allowed_network(config):
    with pytest.raises(ConfigError, match="WEBHOOK_ALLOWED_IPS"):
        create_app({**config, "WEBHOOK_ALLOWED_IPS": ["10.0.0.0/33"]})


@endpoints
def test_dev_mode_without_credentials_accepts(method, path, body, content_type, config, r):
    client = create_app({**config, **NO_CREDENTIALS, "DEV_MODE": True}).test_client()
    assert call(client, method, path, body, content_type).status_code == 200


@endpoints
def test_dev_mode_with_credentials_still_checks_them(method, path, body, content_type, config, r):
    client = create_app({**config, "DEV_MODE": True}).test_client()
    assert call(client, method, path, body, content_type).status_code == 401


# --- source addresses -----------------------------------------------------------------------

ALLOWED = ["203.0.113.0/24", "2001:db8::/32"]


@pytest.fixture
def allowlisted(config, r):
    def make(proxies: int = 0):
        app = create_app({**config, "WEBHOOK_ALLOWED_IPS": ALLOWED, "TRUSTED_PROXIES": proxies})
        return app.test_client()

    return make


@endpoints
@pytest.mark.parametrize("address", ["203.0.113.7", "2001:db8::1"])
def test_allowed_address_is_accepted(method, path, body, content_type, address, allowlisted):
    source = {"REMOTE_ADDR": address}
    resp = call(allowlisted(), method, path, body, content_type, headers=basic_header(), environ_base=source)
    assert resp.status_code == 200


@endpoints
@pytest.mark.parametrize("address", ["198.51.100.7", "127.0.0.1", "2001:db9::1"])
def test_other_address_is_403(method, path, body, content_type, address, allowlisted, r):
    source = {"REMOTE_ADDR": address}
    resp = call(allowlisted(), method, path, body, content_type, headers=basic_header(), environ_base=source)
    assert resp.status_code == 403
    assert resp.json["error"] == "forbidden"
    assert r.llen(QUARANTINE) == 0


@endpoints
def test_source_is_checked_before_credentials(method, path, body, content_type, allowlisted):
    """A stranger learns nothing about the credentials: 403 whatever it sends."""
    resp = call(allowlisted(), method, path, body, content_type, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    assert resp.status_code == 403


@endpoints
def test_forwarded_for_is_ignored_without_trusted_proxies(method, path, body, content_type, allowlisted):
    resp = call(
        allowlisted(0),
        method,
        path,
        body,
        content_type,
        headers={**basic_header(), "X-Forwarded-For": "203.0.113.7"},
        environ_base={"REMOTE_ADDR": "198.51.100.7"},
    )
    assert resp.status_code == 403


@endpoints
@pytest.mark.parametrize(
    ("forwarded_for", "status"),
    [
        ("203.0.113.7", 200),  # the proxy saw an allowed client
        ("198.51.100.7", 403),  # the proxy saw another client
        ("198.51.100.7, 203.0.113.7", 200),  # a forged hop before the real one is ignored
        ("203.0.113.7, 198.51.100.7", 403),  # a forged allowed address does not help a stranger
    ],
)
def test_trusted_proxy_last_hop_is_the_source(
    method, path, body, content_type, forwarded_for, status, allowlisted
):
    resp = call(
        allowlisted(1),
        method,
        path,
        body,
        content_type,
        headers={**basic_header(), "X-Forwarded-For": forwarded_for},
        environ_base={"REMOTE_ADDR": "10.0.0.2"},  # the proxy itself, not in the allowlist
    )
    assert resp.status_code == status


# --- secrets never leak ---------------------------------------------------------------------

BAD_BODIES = [
    (b'{"results": [{"to": "41793026727"}]}', "application/json"),  # 400, nothing valid
    (b"<!DOCTYPE x><reportResponse/>", "application/xml"),  # 400, DTD
    (b"plain text", "text/plain"),  # 415
    (b'{"results": [{"messageId": "ok"}, {"messageId": 5}]}', "application/json"),  # 200, partial
]
FORBIDDEN = (
    *SECRETS,
    base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode(),
)


def leaks(text: str) -> list[str]:
    return [secret for secret in FORBIDDEN if secret in text]


@endpoints
@pytest.mark.parametrize("bad", BAD_BODIES, ids=["400-items", "400-dtd", "415", "200-partial"])
@pytest.mark.parametrize(
    "how",
    [
        {"query_string": {"token": TOKEN}},
        {"query_string": {"token": TOKEN, "Token": TOKEN, "TOKEN": TOKEN}},
        {"headers": {"X-Webhook-Token": TOKEN}},
        {"headers": basic_header()},
        {"headers": {**basic_header(), "X-Webhook-Token": TOKEN, "Cookie": f"s={TOKEN}"}},
    ],
    ids=["query", "query-cases", "header", "basic", "everything"],
)
def test_secrets_never_reach_quarantine_logs_or_answers(
    method, path, body, content_type, bad, how, client, r, caplog
):
    caplog.set_level(logging.DEBUG)
    bad_body, bad_type = bad
    resp = call(client, method, path, bad_body, bad_type, **how)
    assert resp.status_code in (200, 400, 415)
    assert leaks(resp.get_data(as_text=True)) == []
    entries = r.lrange(QUARANTINE, 0, -1)
    assert len(entries) == 1
    assert leaks(entries[0].decode()) == []
    entry = orjson.loads(entries[0])
    assert {k.lower() for k in entry["headers"]}.isdisjoint({"authorization", "x-webhook-token", "cookie"})
    assert all(k.lower() != "token" for k, _ in entry["query"])
    assert leaks(caplog.text) == []
    assert leaks(" ".join(str(record.args) for record in caplog.records)) == []


@endpoints
def test_secrets_never_reach_quarantine_for_oversized_bodies(
    method, path, body, content_type, config, r, caplog
):
    caplog.set_level(logging.DEBUG)
    client = create_app({**config, "MAX_BODY_BYTES": 16}).test_client()
    body = body.ljust(64)  # a GET forward has no body of its own
    resp = call(client, method, path, body, content_type, query_string={"token": TOKEN})
    assert resp.status_code == 413
    assert leaks(resp.get_data(as_text=True)) == []
    assert leaks(r.lindex(QUARANTINE, 0).decode()) == []
    assert leaks(caplog.text) == []


@endpoints
def test_secrets_never_reach_the_log_when_redis_is_down(method, path, body, content_type, data_plane_down,
                                                        caplog):
    caplog.set_level(logging.DEBUG)
    app = data_plane_down(password=TOKEN)
    resp = call(app.test_client(), method, path, body, content_type, query_string={"token": TOKEN})
    assert resp.status_code == 503
    assert leaks(resp.get_data(as_text=True)) == []
    assert leaks(caplog.text) == []


# --- the query API --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {API_KEY.upper()}"},
        {"Authorization": f"Bearer {API_KEY}x"},
        {"Authorization": f"Token {API_KEY}"},
        {"Authorization": API_KEY},
        basic_header(),
        {"X-Webhook-Token": TOKEN},
    ],
    ids=["none", "wrong", "empty", "case", "longer", "scheme", "bare", "basic", "ingest-token"],
)
@pytest.mark.parametrize("path", ["/api/messages", "/api/messages/m1", "/api/bulks/b1"])
def test_api_without_a_right_bearer_key_is_401(path, headers, client):
    resp = client.get(path, headers=headers)
    assert resp.status_code == 401
    assert leaks(resp.get_data(as_text=True)) == []


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_api_with_a_bearer_key_is_allowed(scheme, client):
    assert client.get("/api/messages", headers={"Authorization": f"{scheme} {API_KEY}"}).status_code == 200


def test_api_accepts_any_configured_key(config, r):
    client = create_app({**config, "API_KEYS": ["first-key", API_KEY]}).test_client()
    for key in ("first-key", API_KEY):
        assert client.get("/api/messages", headers={"Authorization": f"Bearer {key}"}).status_code == 200


@pytest.mark.parametrize("keys", [[], [""]], ids=["none", "empty"])
def test_api_without_configured_keys_is_always_401(keys, config, r):
    client = create_app({**config, "API_KEYS": keys}).test_client()
    for header in ("", "Bearer ", f"Bearer {API_KEY}", "Bearer none"):
        assert client.get("/api/messages", headers={"Authorization": header}).status_code == 401


def test_api_keys_from_the_environment_are_a_comma_list(config, r, monkeypatch):
    """`API_KEYS=k1, k2` (a space after the comma, a trailing comma) still means k1 and k2."""
    monkeypatch.setenv("API_KEYS", f"first-key, {API_KEY} ,")
    client = create_app({k: v for k, v in config.items() if k != "API_KEYS"}).test_client()
    for key in ("first-key", API_KEY):
        assert client.get("/api/messages", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/api/messages", headers={"Authorization": "Bearer  "}).status_code == 401
