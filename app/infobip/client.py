"""The one way the service calls Infobip's HTTP API (SPEC §9 "Client").

    client = InfobipClient.from_config(app.config, r)   # None when INFOBIP_BASE_URL is unset
    page = client.reports(limit=1000)                   # {"results": [...]}

Authentication: `INFOBIP_API_KEY` is sent as `Authorization: App <key>`, else
`INFOBIP_USERNAME`/`INFOBIP_PASSWORD` as HTTP Basic (the seed's scheme).

Retry policy (`RetryPolicy`), and why:
- Every call has a timeout (`INFOBIP_TIMEOUT`, connect and read).
- GET is safe to repeat: on 5xx or a connection error it is retried up to `attempts` times,
  waiting `uniform(0, min(cap, base * 2**n))` (exponential backoff with "full jitter", so
  workers that failed together do not come back together). A read timeout is retried too;
  a served-once page lost that way is what reconciliation (`/sms/1/logs`) is for.
- 429 waits what `Retry-After` says (seconds or an HTTP date), then tries again; 5xx uses the
  backoff. The waits of one call never add up to more than `max_wait`: when the next wait
  would pass it, the call stops with `InfobipUnavailable(retry_after=...)` and the feature is
  marked unavailable until then, so the caller can reschedule instead of holding a worker.
- POST (a send costs money) is repeated only when the request certainly did not reach Infobip
  (connection refused, DNS or connect timeout, TLS handshake) or Infobip answered 429/5xx.
  When it may have arrived but no answer came (read timeout, connection dropped after
  sending), `InfobipUnknownOutcome` is raised and nothing is retried: the caller decides, e.g.
  looks the messageId up in `/sms/1/logs`, or resends with the same messageId (Infobip refuses
  a duplicate id).
- 401/403 are not retried: `InfobipAuthError` at once, and the feature is blocked with
  exponential backoff (app/infobip/status.py). A blocked feature is not called at all until
  its `retryAt`: the call raises the same error without touching the network.
- Other 4xx mean our request is wrong: `InfobipError`, not retried, the feature's health is
  unchanged.
urllib3's own `Retry` is not used: it cannot tell "certainly not sent" from "maybe sent" for
POST, and its jitter is additive, not full.

Secrets: the key and password live only in the Authorization header of this object (never in
its repr), exception texts are fixed forms (status, reason, path) and urllib3's messages are not
passed on; nothing logs headers.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import urlencode

import orjson
import urllib3
from redis import Redis, RedisError
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    InvalidHeader,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util.retry import Retry

from app.infobip import status

log = logging.getLogger(__name__)

POOL = urllib3.PoolManager(num_pools=4, maxsize=8, block=False, retries=False)
os.register_at_fork(after_in_child=POOL.clear)  # an RQ work-horse must not share its parent's sockets
USER_AGENT = "infobip-webhook-receiver"


class InfobipError(Exception):
    """A call failed. `status` is Infobip's HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class InfobipAuthError(InfobipError):
    """401/403: the key or password is wrong or lacks the right. Not retried."""


class InfobipUnavailable(InfobipError):
    """5xx, 429 or no connection after the retries. Try again in `retry_after` seconds."""

    def __init__(self, message: str, retry_after: float, status: int | None = None) -> None:
        super().__init__(message, status)
        self.retry_after = retry_after


class InfobipUnknownOutcome(InfobipError):
    """A POST that may have reached Infobip, whose answer never came. Never retried here."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # calls in all, the first included
    base: float = 0.5  # seconds: the first backoff is uniform(0, base)
    cap: float = 8.0  # no single backoff is longer
    max_wait: float = 30.0  # seconds one call may spend waiting between attempts

    def ceiling(self, attempt: int) -> float:
        return min(self.cap, self.base * 2**attempt)

    def backoff(self, attempt: int) -> float:
        """Full jitter: anywhere from 0 to the ceiling, so clients that failed together spread out."""
        return random.uniform(0, self.ceiling(attempt))


def _describe(err: HTTPError) -> str:
    """A fixed-form reason: urllib3's own messages name hosts and pools, never used."""
    if isinstance(err, ConnectTimeoutError):  # also NewConnectionError, NameResolutionError
        return "connection failed" if type(err) is not ConnectTimeoutError else "connect timeout"
    if isinstance(err, ReadTimeoutError):
        return "read timeout"
    if isinstance(err, SSLError):
        return "TLS error"
    if isinstance(err, ProtocolError):
        return "connection dropped"
    return f"request failed ({type(err).__name__})"


def _not_sent(err: HTTPError) -> bool:
    """True when the request certainly never reached Infobip (so a POST may be repeated)."""
    return isinstance(err, (ConnectTimeoutError, SSLError))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return Retry().parse_retry_after(value)
    except InvalidHeader:
        return None


class InfobipClient:
    def __init__(self, base_url: str, *, api_key: str | None = None, username: str | None = None,
                 password: str | None = None, timeout: float = 10.0, r: Redis | None = None,
                 policy: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep) -> None:
        if api_key:
            authorization = f"App {api_key}"
        elif username and password:
            authorization = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        else:
            raise ValueError("InfobipClient needs api_key, or username and password")
        self.base_url = base_url.rstrip("/")
        self.scheme = authorization.split(" ", 1)[0]
        self._headers = {"Authorization": authorization, "Accept": "application/json",
                         "User-Agent": USER_AGENT}
        self.timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self.r = r
        self.policy = policy
        self.sleep = sleep

    def __repr__(self) -> str:
        return f"InfobipClient({self.base_url!r}, auth={self.scheme})"

    @classmethod
    def from_config(cls, config: Mapping[str, Any], r: Redis | None = None) -> InfobipClient | None:
        """None when INFOBIP_BASE_URL is unset: calls to Infobip are off (SPEC §9)."""
        if not config.get("INFOBIP_BASE_URL"):
            return None
        if r is None:
            from app.connection import make_client

            r = make_client(config["REDIS_URL"])
        return cls(config["INFOBIP_BASE_URL"], api_key=config.get("INFOBIP_API_KEY"),
                   username=config.get("INFOBIP_USERNAME"), password=config.get("INFOBIP_PASSWORD"),
                   timeout=float(config.get("INFOBIP_TIMEOUT", 10.0)), r=r)

    # --- Infobip's endpoints -------------------------------------------------------------------

    def reports(self, limit: int = 1000, **filters: Any) -> dict[str, Any]:
        """`GET /sms/1/reports`: delivery reports not fetched before (each is served once)."""
        return self.get("/sms/1/reports", {"limit": limit, **filters}, feature="pull-reports")

    def inbox(self, limit: int = 1000) -> dict[str, Any]:
        """`GET /sms/1/inbox/reports`: inbound messages not fetched before (served once)."""
        return self.get("/sms/1/inbox/reports", {"limit": limit}, feature="pull-inbox")

    def logs(self, **filters: Any) -> dict[str, Any]:
        """`GET /sms/1/logs` (repeatable, last 48 h): from_ (or "from"), to, bulkId, messageId
        (a list gives several), generalStatus, sentSince, sentUntil, limit, mcc, mnc."""
        if "from_" in filters:
            filters["from"] = filters.pop("from_")
        return self.get("/sms/1/logs", filters, feature="logs")

    def send_advanced(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """`POST /sms/1/text/advanced`. Give each destination a `messageId` of your own so an
        `InfobipUnknownOutcome` can be settled by looking it up or resending it."""
        return self.post("/sms/1/text/advanced", json=body, feature="send")

    # --- the calls -----------------------------------------------------------------------------

    def get(self, path: str, params: Mapping[str, Any] | None = None, feature: str = "api") -> dict[str, Any]:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None}, doseq=True)
        return self._call("GET", path + (f"?{query}" if query else ""), None, feature)

    def post(self, path: str, json: Any = None, feature: str = "api") -> dict[str, Any]:
        return self._call("POST", path, orjson.dumps(json), feature)

    def _call(self, method: str, target: str, body: bytes | None, feature: str) -> dict[str, Any]:
        path = target.split("?", 1)[0]
        self._check_blocked(feature, path)
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        waited, attempt = 0.0, 0
        while True:
            http_status, delay = None, None
            try:
                answer = POOL.request(method, self.base_url + target, body=body, headers=headers,
                                      timeout=self.timeout, retries=False, redirect=False)
            except HTTPError as err:
                reason = _describe(err)
                if method != "GET" and not _not_sent(err):
                    self._outcome(feature, "unknown_outcome")
                    raise InfobipUnknownOutcome(f"{method} {path}: {reason}; the request may have been "
                                                "processed") from None
            else:
                http_status = answer.status
                if 200 <= http_status < 300:
                    return self._success(feature, method, path, answer.data)
                reason = f"{http_status} {_phrase(http_status)}"
                if http_status in (401, 403):
                    self._failure(feature, "auth_failed", reason, None)
                    raise InfobipAuthError(f"{method} {path}: {reason}", http_status)
                if http_status != 429 and http_status < 500:
                    self._outcome(feature, "rejected")
                    raise InfobipError(f"{method} {path}: {reason}: {_service_text(answer.data)}",
                                       http_status)
                delay = _retry_after(answer.headers.get("Retry-After"))
            asked = delay is not None  # Infobip said when (Retry-After)
            delay = delay if asked else self.policy.backoff(attempt)
            attempt += 1
            log.warning("infobip call failed", extra={"feature": feature, "method": method, "path": path,
                                                      "reason": reason, "attempt": attempt})
            if attempt >= self.policy.attempts or waited + delay > self.policy.max_wait:
                # Come back when Infobip said, else after the longest backoff this call had reached.
                retry_after = delay if asked else self.policy.ceiling(attempt)
                self._failure(feature, "unavailable", f"{reason} (after {attempt} attempts)", retry_after)
                raise InfobipUnavailable(f"{method} {path}: {reason} after {attempt} attempts; "
                                         f"retry in {retry_after:.1f}s", retry_after, http_status)
            self.sleep(delay)
            waited += delay

    def _check_blocked(self, feature: str, path: str) -> None:
        if self.r is None:
            return
        until = status.blocked_until(self.r, feature)
        if until is None:
            return
        entry = status.get(self.r, feature) or {}
        self._outcome(feature, "blocked")
        message = f"{feature} is not called until {status.when(until)}: {entry.get('reason')}"
        if entry.get("state") == status.AUTH_FAILED:
            raise InfobipAuthError(message)
        raise InfobipUnavailable(message, max(until - time.time(), 0.0))

    def _success(self, feature: str, method: str, path: str, data: bytes) -> dict[str, Any]:
        try:
            parsed = orjson.loads(data) if data.strip() else {}
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            self._outcome(feature, "bad_answer")
            error = InfobipUnknownOutcome if method != "GET" else InfobipError
            raise error(f"{method} {path}: the answer is not a JSON object")
        self._record(status.record_ok, feature)
        self._outcome(feature, "ok")
        return parsed

    def _failure(self, feature: str, state: str, reason: str, retry_after: float | None) -> None:
        retry_at = None if retry_after is None else time.time() + retry_after
        self._record(status.record_failure, feature, reason, retry_at, state)
        self._outcome(feature, state)

    def _outcome(self, feature: str, outcome: str) -> None:
        self._record(status.count, feature, outcome)

    def _record(self, what: Callable[..., Any], *args: Any) -> None:
        """Health bookkeeping never hides the call's own result: a page already fetched (and
        gone from Infobip) is still handed to the caller when Redis cannot take the note."""
        if self.r is None:
            return
        try:
            what(self.r, *args)
        except RedisError as err:
            log.warning("infobip status not recorded", extra={"error": type(err).__name__})


def _phrase(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "HTTP error"


def _service_text(data: bytes) -> str:
    """Infobip's own reason (`requestError.serviceException.text`), short."""
    try:
        error = orjson.loads(data)["requestError"]["serviceException"]
        return str(error.get("text") or error.get("messageId"))[:200]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return "no reason given"
