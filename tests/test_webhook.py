"""One HTTP delivery attempt (SPEC §4), against a real HTTP server on 127.0.0.1: no mocks.

The server speaks HTTP/1.1 so connections stay open, records what arrived and from which client
socket (to see keep-alive reuse), and picks its answer from the request path:
`/status/<code>?retry_after=<value>`, `/slow` (answers only when the test ends), `/leak` (a 500
whose body echoes the consumer's secret and API key).
"""

from __future__ import annotations

import base64
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app.routes import INFOBIP_RETRY_SCHEDULE, Consumer
from workers import webhook
from workers.webhook import attempt, next_delay, parse_retry_after, sign_headers

SECRET = "whsec_" + base64.b64encode(b"consumer-secret-0123456789abcdef").decode()
EVENT_ID = "evt_5f0c2a9e8b7d4c1a"
EVENT = {"id": EVENT_ID, "type": "dlr.final", "timestamp": "2026-11-29T10:00:00.123Z",
         "data": {"messageId": "m-1", "text": "Привет €"}}
BODY = orjson.dumps(EVENT)


@dataclass
class Seen:
    path: str
    client: tuple[str, int]
    headers: dict[str, str]
    body: bytes


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    server: Recorder

    def log_message(self, *_args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.seen.append(Seen(self.path, self.client_address, dict(self.headers), body))
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/slow":
            self.server.release.wait(10)
            self._answer(200)
        elif url.path == "/leak":
            echo = f"cannot verify with {SECRET}, key {self.headers.get('X-Api-Key')}"
            self._answer(500, echo.encode())
        elif url.path == "/redirect":
            self._answer(302, headers={"Location": "/landed"})
        elif url.path.startswith("/status/"):
            retry_after = query.get("retry_after")
            self._answer(int(url.path.rsplit("/", 1)[1]),
                         headers={"Retry-After": retry_after} if retry_after else {})
        else:
            self._answer(200, b'{"ok": true}')

    def _answer(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.seen: list[Seen] = []
        self.release = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # the client gave up (timeout tests): nothing to report


@pytest.fixture
def server() -> Iterator[Recorder]:
    srv = Recorder()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)
    webhook.POOL.clear()  # close our keep-alive sockets to this server


def consumer(url: str, **options: Any) -> Consumer:
    return Consumer(name="crm", url=url, **{"secret": SECRET, "timeout": 2.0, **options})


@pytest.fixture
def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_delivered_and_signed(server: Recorder) -> None:
    outcome = attempt(consumer(server.url + "/hook", headers={"X-Tenant": "acme"}), EVENT_ID, BODY)
    assert (outcome.delivered, outcome.status, outcome.error, outcome.gone) == (True, 200, None, False)
    [seen] = server.seen
    assert seen.body == BODY and seen.path == "/hook"
    assert Webhook(SECRET).verify(seen.body, seen.headers) == EVENT
    assert seen.headers["webhook-id"] == EVENT_ID
    assert seen.headers["webhook-signature"].startswith("v1,")
    assert seen.headers["webhook-timestamp"].isdigit()
    assert seen.headers["Content-Type"] == "application/json"
    assert seen.headers["X-Tenant"] == "acme"


def test_signature_fails_with_another_secret(server: Recorder) -> None:
    attempt(consumer(server.url), EVENT_ID, BODY)
    other = "whsec_" + base64.b64encode(b"another-secret-0123456789abcdef!").decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(server.seen[0].body, server.seen[0].headers)


def test_unsigned_consumer_gets_id_but_no_signature(server: Recorder) -> None:
    assert attempt(consumer(server.url, secret=None), EVENT_ID, BODY).delivered
    headers = server.seen[0].headers
    assert headers["webhook-id"] == EVENT_ID and "webhook-signature" not in headers


def test_keep_alive_reuses_one_connection(server: Recorder) -> None:
    target = consumer(server.url)
    outcomes = [attempt(target, EVENT_ID, BODY) for _ in range(2)]
    outcomes.append(attempt(target, EVENT_ID, BODY))
    failed = attempt(consumer(server.url + "/status/503"), EVENT_ID, BODY)
    outcomes.append(attempt(target, EVENT_ID, BODY))
    assert all(o.delivered for o in outcomes) and not failed.delivered
    assert len(server.seen) == 5
    assert len({seen.client for seen in server.seen}) == 1


@pytest.mark.parametrize("status", [200, 201, 202, 204])
def test_2xx_is_delivered(server: Recorder, status: int) -> None:
    outcome = attempt(consumer(f"{server.url}/status/{status}"), EVENT_ID, BODY)
    assert (outcome.delivered, outcome.status, outcome.error) == (True, status, None)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504])
def test_4xx_and_5xx_are_not_delivered(server: Recorder, status: int) -> None:
    outcome = attempt(consumer(f"{server.url}/status/{status}"), EVENT_ID, BODY)
    assert (outcome.delivered, outcome.status, outcome.gone) == (False, status, False)
    assert outcome.error == f"HTTP {status}" and outcome.retry_after is None


def test_410_is_gone(server: Recorder) -> None:
    outcome = attempt(consumer(server.url + "/status/410"), EVENT_ID, BODY)
    assert (outcome.delivered, outcome.status, outcome.gone) == (False, 410, True)


def test_redirect_is_not_followed(server: Recorder) -> None:
    outcome = attempt(consumer(server.url + "/redirect"), EVENT_ID, BODY)
    assert (outcome.delivered, outcome.status) == (False, 302)
    assert "not followed" in (outcome.error or "")
    assert [seen.path for seen in server.seen] == ["/redirect"]


@pytest.mark.parametrize("status", [429, 503, 500, 410])
def test_retry_after_seconds(server: Recorder, status: int) -> None:
    outcome = attempt(consumer(f"{server.url}/status/{status}?retry_after=120"), EVENT_ID, BODY)
    assert not outcome.delivered and outcome.retry_after == 120


def test_retry_after_http_date(server: Recorder) -> None:
    when = formatdate(time.time() + 3600, usegmt=True)
    outcome = attempt(consumer(f"{server.url}/status/503?retry_after={when}"), EVENT_ID, BODY)
    assert outcome.retry_after is not None and 3500 < outcome.retry_after <= 3600


NOW = 1_700_000_000.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("", None),
        ("120", 120.0),
        (" 7 ", 7.0),
        ("0", 0.0),
        ("-30", 0.0),
        ("999999", 86400.0),
        ("soon", None),
        ("nan", None),
        (formatdate(NOW + 90, usegmt=True), 90.0),
        (formatdate(NOW - 90, usegmt=True), 0.0),  # a date in the past: retry now
        (formatdate(NOW + 3 * 86400, usegmt=True), 86400.0),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def test_slow_consumer_times_out(server: Recorder) -> None:
    outcome = attempt(consumer(server.url + "/slow", timeout=0.2), EVENT_ID, BODY)
    assert (outcome.delivered, outcome.status) == (False, None)
    assert outcome.error == "read timeout after 0.2s"


def test_connection_refused(closed_port: int) -> None:
    outcome = attempt(consumer(f"http://127.0.0.1:{closed_port}/"), EVENT_ID, BODY)
    assert (outcome.delivered, outcome.status) == (False, None)
    assert "refused" in (outcome.error or "").lower()


def test_unknown_host() -> None:
    outcome = attempt(consumer("http://events.invalid/"), EVENT_ID, BODY)  # RFC 6761: never resolves
    assert (outcome.delivered, outcome.status, outcome.error) == (False, None, "DNS lookup failed")


def test_userinfo_becomes_basic_auth_and_stays_out_of_errors(server: Recorder, closed_port: int) -> None:
    refused = attempt(consumer(f"http://user:pw@127.0.0.1:{closed_port}/"), EVENT_ID, BODY)
    assert refused.error and "pw" not in refused.error and "user" not in refused.error
    host = server.url.removeprefix("http://")
    failed = attempt(consumer(f"http://user:pw@{host}/status/401"), EVENT_ID, BODY)
    assert failed.error == "HTTP 401"
    assert server.seen[0].headers["Authorization"] == "Basic " + base64.b64encode(b"user:pw").decode()
    assert server.seen[0].path == "/status/401"


def test_secrets_echoed_by_a_consumer_are_scrubbed(server: Recorder) -> None:
    headers = {"X-Api-Key": "key-0123456789", "X-Shard": "5"}
    outcome = attempt(consumer(server.url + "/leak", headers=headers), EVENT_ID, BODY)
    # The short, harmless header value "5" is not scrubbed out of "500".
    assert outcome.error == "HTTP 500: cannot verify with ***, key ***"


def test_sign_headers_verify_with_the_library() -> None:
    headers = sign_headers(SECRET, EVENT_ID, BODY, datetime.now(UTC))
    assert Webhook(SECRET).verify(BODY, headers) == EVENT
    assert headers["webhook-id"] == EVENT_ID and headers["Content-Type"] == "application/json"


@pytest.mark.parametrize("tz", [UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-8))])
def test_sign_headers_use_the_instant_not_the_wall_clock(tz: timezone) -> None:
    moment = datetime(2026, 11, 29, 10, 0, 0, 500_000, tzinfo=UTC)
    headers = sign_headers(SECRET, EVENT_ID, BODY, moment.astimezone(tz))
    assert headers == sign_headers(SECRET, EVENT_ID, BODY, moment)
    assert headers["webhook-timestamp"] == str(int(moment.timestamp()))
    assert Webhook(SECRET).verify(BODY, sign_headers(SECRET, EVENT_ID, BODY, datetime.now(tz)))


@pytest.mark.parametrize(
    ("schedule", "number", "retry_after", "expected"),
    [
        (INFOBIP_RETRY_SCHEDULE, 0, None, 60.0),
        (INFOBIP_RETRY_SCHEDULE, 1, None, 120.0),
        (INFOBIP_RETRY_SCHEDULE, 4, None, 1020.0),
        (INFOBIP_RETRY_SCHEDULE, 19, None, 21720.0),
        (INFOBIP_RETRY_SCHEDULE, 20, None, None),  # 20 retries done: dead letter
        (INFOBIP_RETRY_SCHEDULE, 20, 5.0, None),  # Retry-After adds no retries
        (INFOBIP_RETRY_SCHEDULE, 0, 600.0, 600.0),  # Retry-After can lengthen the wait
        (INFOBIP_RETRY_SCHEDULE, 3, 5.0, 600.0),  # ... but not shorten it
        ((0.0, 1.5), 0, None, 0.0),
        ((0.0, 1.5), 1, 0.0, 1.5),
        ((0.0, 1.5), 2, None, None),
        ((30.0,), -1, None, None),
    ],
)
def test_next_delay(schedule: tuple[float, ...], number: int, retry_after: float | None,
                    expected: float | None) -> None:
    assert next_delay(schedule, number, retry_after) == expected
