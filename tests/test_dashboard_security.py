"""The dashboard's security (SPEC §10, §6): sign-in, the session cookie, expiry, sign-out,
rate-limited failures, CSRF on every action, the CSP and headers, escaping, no open redirect."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import pytest
from flask import session

from app import create_app
from app.dashboard.session import secret_key
from app.keys import DASH_LOGIN_FAILURES, DASH_SESSION, DEAD_LETTERS, QUARANTINE, consumer_key
from tests.conftest import API_KEY
from tests.consumers import http_consumer, routes_text

PAGES = ["/", "/overview/live", "/bulks", "/bulks/b1", "/bulks/b1/messages.csv", "/messages/m1", "/inbound",
         "/consumers", "/quarantine", "/optouts", "/optouts?number=38598111"]
ACTIONS = ["/consumers/crm/replay", "/quarantine/q_1/replay", "/quarantine/q_1/drop", "/logout", "/optouts",
           "/optouts/38598111/lift"]


def token_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has a form with a CSRF token"
    return found.group(1)


def sign_in(client: Any, key: str = API_KEY, **kw: Any) -> Any:
    token = token_of(client.get("/login", **kw).get_data(as_text=True))
    return client.post("/login", data={"api_key": key, "csrf_token": token}, **kw)


def cookie_header(response: Any) -> str:
    cookies = response.headers.getlist("Set-Cookie")
    return next(v for v in cookies if v.startswith("receiver_session="))


def token_of_session(client: Any) -> str:
    """The CSRF token in the client's session cookie (a page may show no form, e.g. when locked)."""
    with client.session_transaction() as session:
        return session["csrf"]


@pytest.fixture
def signed_in(client):
    assert sign_in(client).status_code == 302
    return client


@pytest.mark.parametrize("path", PAGES)
def test_every_page_without_a_session_redirects_to_login(client, path):
    answer = client.get(path)
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith("/login")


@pytest.mark.parametrize("path", ACTIONS)
def test_every_action_without_a_session_changes_nothing(client, path):
    assert client.post(path).status_code in (302, 400, 403)


def test_sign_in_sets_a_strict_httponly_session_cookie(client, r):
    answer = sign_in(client)
    assert answer.status_code == 302 and answer.headers["Location"] == "/"
    cookie = cookie_header(answer)
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http here: a Secure cookie would never come back
    assert API_KEY not in cookie
    assert client.get("/").status_code == 200
    assert len(r.keys(DASH_SESSION.format(sid="*"))) == 1


def test_cookie_is_secure_when_the_request_came_over_https(config, r):
    app = create_app({**config, "TRUSTED_PROXIES": 1})
    client = app.test_client()
    https = {"headers": {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}}
    assert "Secure" in cookie_header(sign_in(client, **https))


def test_forged_forwarded_proto_is_ignored_without_trusted_proxies(client):
    answer = sign_in(client, headers={"X-Forwarded-Proto": "https"})
    assert "Secure" not in cookie_header(answer)


def test_session_lasts_dashboard_session_hours(config, r):
    app = create_app({**config, "DASHBOARD_SESSION_HOURS": 2})
    client = app.test_client()
    answer = sign_in(client)
    (key,) = r.keys(DASH_SESSION.format(sid="*"))
    assert 7100 < r.ttl(key) <= 7200
    expires = re.search(r"Expires=([^;]+)", cookie_header(answer)).group(1)
    assert time.strptime(expires, "%a, %d %b %Y %H:%M:%S GMT")


def test_a_cookie_older_than_the_session_is_refused(client, monkeypatch):
    import itsdangerous.timed

    real = time.time
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: real() - 13 * 3600)
    assert sign_in(client).status_code == 302  # signed 13 h ago
    monkeypatch.setattr(itsdangerous.timed.time, "time", real)
    assert client.get("/").status_code == 302


def test_an_expired_server_side_session_signs_out(signed_in, r):
    for key in r.keys(DASH_SESSION.format(sid="*")):
        r.delete(key)
    assert signed_in.get("/").status_code == 302


def test_wrong_key_is_refused(client, r):
    answer = sign_in(client, key="not-the-key")
    assert answer.status_code == 401
    assert "receiver_session" not in answer.headers.get("Set-Cookie", "") or "sid" not in answer.headers
    assert client.get("/").status_code == 302
    assert r.keys(DASH_SESSION.format(sid="*")) == []


def test_failed_sign_ins_are_rate_limited_per_address(client, r):
    for _ in range(5):
        assert sign_in(client, key="guess").status_code == 401
    token = client.get_cookie("receiver_session") and token_of_session(client)
    locked = client.post("/login", data={"api_key": API_KEY, "csrf_token": token})  # even the right key now
    assert b"Too many failed sign-ins" in locked.data
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert client.get("/").status_code == 302
    assert int(r.get(DASH_LOGIN_FAILURES.format(address="127.0.0.1"))) == 5
    other = client.application.test_client()
    assert sign_in(other, environ_base={"REMOTE_ADDR": "198.51.100.7"}).status_code == 302


def test_a_success_clears_the_failures(client, r):
    sign_in(client, key="typo")
    assert sign_in(client).status_code == 302
    assert r.get(DASH_LOGIN_FAILURES.format(address="127.0.0.1")) is None


def test_sign_in_needs_its_csrf_token(client, r):
    client.get("/login")
    assert client.post("/login", data={"api_key": API_KEY}).status_code == 400
    assert client.post("/login", data={"api_key": API_KEY, "csrf_token": "forged"}).status_code == 400
    assert r.keys(DASH_SESSION.format(sid="*")) == []


def test_logout_ends_the_session_everywhere(signed_in, r):
    stolen = signed_in.get_cookie("receiver_session").value
    token = token_of(signed_in.get("/").get_data(as_text=True))
    assert signed_in.post("/logout", data={"csrf_token": token}).status_code == 302
    assert r.keys(DASH_SESSION.format(sid="*")) == []
    thief = signed_in.application.test_client()
    thief.set_cookie("receiver_session", stolen)
    assert thief.get("/").status_code == 302


def test_logout_without_token_keeps_the_session(signed_in):
    assert signed_in.post("/logout").status_code == 400
    assert signed_in.get("/").status_code == 200


def test_a_key_removed_from_api_keys_signs_its_sessions_out(config, r):
    first = create_app({**config, "SECRET_KEY": "fixed-secret", "API_KEYS": [API_KEY, "other-key"]})
    client = first.test_client()
    sign_in(client)
    cookie = client.get_cookie("receiver_session").value
    later = create_app({**config, "SECRET_KEY": "fixed-secret", "API_KEYS": ["other-key"]}).test_client()
    later.set_cookie("receiver_session", cookie)
    assert later.get("/").status_code == 302


def test_session_secret_is_derived_from_api_keys_or_given():
    assert secret_key({"SECRET_KEY": "s"}) == "s"
    derived = secret_key({"API_KEYS": ["a", "b"]})
    assert derived == secret_key({"API_KEYS": ["b", "a"]}) and derived not in ("a", "b")
    assert derived != secret_key({"API_KEYS": ["a"]})
    assert secret_key({"API_KEYS": []}) is None


def test_no_open_redirect_after_sign_in(client):
    token = token_of(client.get("/login?next=//evil.example/x").get_data(as_text=True))
    answer = client.post("/login", data={"api_key": API_KEY, "csrf_token": token, "next": "//evil.example/x"})
    assert answer.headers["Location"] == "/"
    client2 = client.application.test_client()
    token = token_of(client2.get("/login").get_data(as_text=True))
    answer = client2.post("/login", data={"api_key": API_KEY, "csrf_token": token, "next": "/bulks?page=2"})
    assert answer.headers["Location"] == "/bulks?page=2"


# --- CSRF on the actions ------------------------------------------------------------------------


@pytest.fixture
def operator(use_routes, consumer_server, r):
    """A signed-in client of an app with an HTTP consumer `crm`, one dead letter and one
    quarantined input."""
    service = use_routes(routes_text(http_consumer("crm", f"{consumer_server.url}/crm", events='["*"]')))
    dead = {"id": "evt_dead1", "body": "{}", "attempt": 3, "queuedAt": "2026-12-01T00:00:00.000Z",
            "reason": "retries exhausted", "lastError": "HTTP 500"}
    r.lpush(DEAD_LETTERS.format(consumer=consumer_key("crm")), orjson.dumps(dead))
    assert service.infobip.dlr(b"not json at all").status_code == 400
    client = service.client
    assert sign_in(client).status_code == 302
    return client


def quarantine_id(r) -> str:
    return orjson.loads(r.lindex(QUARANTINE, 0))["id"]


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_actions_without_a_valid_csrf_token_are_refused_and_change_nothing(operator, r, token):
    entry = quarantine_id(r)
    data = {} if token is None else {"csrf_token": token}
    before = (r.lrange(DEAD_LETTERS.format(consumer=consumer_key("crm")), 0, -1), r.lrange(QUARANTINE, 0, -1))
    for path in ("/consumers/crm/replay", f"/quarantine/{entry}/replay", f"/quarantine/{entry}/drop"):
        answer = operator.post(path, data=data)
        assert answer.status_code == 400, path
        assert b"security token" in answer.data
    dead = DEAD_LETTERS.format(consumer=consumer_key("crm"))
    assert (r.lrange(dead, 0, -1), r.lrange(QUARANTINE, 0, -1)) == before


@pytest.mark.parametrize("token", [None, "", "forged-token"])
def test_opt_out_actions_without_a_valid_csrf_token_are_refused_and_change_nothing(signed_in, r, token):
    """Adding or lifting an opt-out queues a change through the lanes: a refused one queues nothing."""
    data = {} if token is None else {"csrf_token": token}
    before = {key: r.dump(key) for key in r.scan_iter()}
    for path, form in (("/optouts", {"msisdn": "38598111", "all": "1"}),
                       ("/optouts/38598111/lift", {"receiver": "*"})):
        answer = signed_in.post(path, data=data | form)
        assert answer.status_code == 400, path
        assert b"security token" in answer.data
    assert {key: r.dump(key) for key in r.scan_iter()} == before


def test_actions_with_their_token_work(operator, r):
    token = token_of(operator.get("/consumers").get_data(as_text=True))
    answer = operator.post("/consumers/crm/replay", data={"csrf_token": token, "event_id": "evt_dead1"})
    assert answer.status_code == 302
    assert r.llen(DEAD_LETTERS.format(consumer=consumer_key("crm"))) == 0
    entry = quarantine_id(r)
    assert operator.post(f"/quarantine/{entry}/drop", data={"csrf_token": token}).status_code == 302
    assert r.llen(QUARANTINE) == 0


def test_a_token_from_another_session_is_refused(operator, r, client):
    foreign = token_of(client.get("/login").get_data(as_text=True))
    assert operator.post("/consumers/crm/replay", data={"csrf_token": foreign}).status_code == 400
    assert r.llen(DEAD_LETTERS.format(consumer=consumer_key("crm"))) == 1


# --- what every page carries ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login", "/", "/bulks", "/inbound", "/consumers", "/quarantine",
                                  "/optouts", "/dashboard/static/dashboard.css",
                                  "/dashboard/static/dashboard.js"])
def test_strict_csp_and_security_headers(signed_in, client, path):
    answer = (client.application.test_client() if path == "/login" else signed_in).get(path)
    assert answer.status_code == 200
    csp = answer.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'", "frame-ancestors 'none'",
                      "object-src 'none'", "base-uri 'none'", "form-action 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Referrer-Policy"] == "same-origin"
    if not path.startswith("/dashboard/static"):
        assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("path", ["/login", "/", "/bulks", "/inbound", "/consumers", "/quarantine",
                                  "/optouts"])
def test_pages_have_no_inline_script_or_style_and_only_own_files(signed_in, client, path):
    answer = (client.application.test_client() if path == "/login" else signed_in).get(path)
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "every script is a file"
    assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html), "no inline style or handler"
    for url in re.findall(r'(?:src|href|action)="([^"]*)"', html):
        assert url.startswith(("/", "#")), url


def test_data_is_escaped(signed_in, infobip, work):
    from tests.samples import push, report

    evil = '<script>alert(1)</script>'
    infobip.dlr(push(report("m-<b>x", bulkId="bulk-<i>", callbackData=evil)))
    work()
    for path in ("/", "/bulks", "/bulks/bulk-%3Ci%3E", "/messages/m-%3Cb%3Ex"):
        html = signed_in.get(path).get_data(as_text=True)
        assert "<script>alert" not in html and "<b>x" not in html and "bulk-<i>" not in html, path


def test_an_opt_out_note_is_escaped(signed_in, work):
    """The note is typed by an operator (or sent to the API) and shown to every other one."""
    token = token_of(signed_in.get("/optouts").get_data(as_text=True))
    evil = '<img src=x onerror=alert(1)>'
    signed_in.post("/optouts", data={"csrf_token": token, "msisdn": "38598111", "all": "1", "note": evil})
    work()
    html = signed_in.get("/optouts").get_data(as_text=True)
    assert "&lt;img src=x onerror=alert(1)&gt;" in html and evil not in html


def test_secrets_stay_out_of_pages_and_logs(signed_in, caplog, app):
    caplog.set_level("DEBUG")
    sign_in(app.test_client())
    texts = [signed_in.get(p).get_data(as_text=True) for p in ("/", "/bulks", "/inbound")]
    texts.append(caplog.text)
    for secret in (API_KEY, app.secret_key, app.config["WEBHOOK_TOKEN"]):
        assert not any(secret in text for text in texts)


def test_ingest_and_api_never_touch_the_session(signed_in, infobip, api):
    """They neither read the cookie nor set one: a session cannot reach the API, and ingest
    pays nothing for the dashboard."""
    assert "Set-Cookie" not in infobip.dlr({"results": [{"messageId": "m"}]}).headers
    answer = api.get("/api/bulks/nope")
    assert answer.status_code == 404 and "Set-Cookie" not in answer.headers
    assert signed_in.get("/api/bulks/nope").status_code == 401  # the cookie is no API credential


def test_ingest_and_the_api_share_one_session_that_takes_nothing(app):
    """One read-only empty session serves every ingest and API request: it cannot carry anything
    from one request to the next."""
    seen = []
    for path in ("/infobip/dlr", "/api/bulks/x", "/healthz"):
        with app.test_request_context(path):
            seen.append(session._get_current_object())
            assert dict(session) == {}
            with pytest.raises(RuntimeError, match="no session"):
                session["csrf"] = "x"
    assert seen[0] is seen[1] is seen[2]
    with app.test_request_context("/login"):
        session["csrf"] = "x"  # the dashboard's own session takes it
