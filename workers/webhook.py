"""One HTTP delivery attempt to a consumer (SPEC §4). No Redis, no retry loop: the caller keeps
the attempt count and asks `next_delay` when to try again.

Requests are signed as Standard Webhooks (the `standardwebhooks` package, so consumers can verify
with the same library in any language). Connections come from one module-level urllib3 pool so
an attempt to a consumer reuses the keep-alive connection of the previous one; urllib3's own
retries and redirects are off, because retrying is the caller's schedule, and following a
redirect would hand a signed event to a host nobody configured.

An attempt never raises for a consumer's behaviour: every answer, timeout or network failure
becomes an `Outcome` with a short `error` text that holds neither the secret nor the URL's
userinfo (that text lands in logs and the dead-letter list).
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import unquote, urlsplit, urlunsplit

import urllib3
from standardwebhooks import Webhook
from urllib3 import HTTPHeaderDict
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from app.routes import Consumer

MAX_RETRY_AFTER = 24 * 3600.0  # a consumer cannot park its deliveries for longer than a day
MAX_ERROR_BODY = 200  # characters of a failure answer kept in `error`
MAX_READ = 64 * 1024  # more than this and the connection is dropped instead of drained
USER_AGENT = "infobip-webhook-receiver"

# Keep-alive pool shared by every attempt in this process. maxsize is per host; with
# block=False a burst opens extra connections and the pool keeps `maxsize` of them.
POOL = urllib3.PoolManager(num_pools=64, maxsize=4, block=False, retries=False)
# A forked RQ work-horse must not write on sockets it shares with its parent.
os.register_at_fork(after_in_child=POOL.clear)


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    status: int | None = None
    retry_after: float | None = None  # seconds the consumer asked us to wait
    gone: bool = False  # 410: the consumer says stop, retrying would be pointless
    error: str | None = None
    duration: float = 0.0


def sign_headers(consumer_secret: str, event_id: str, body: bytes, now: datetime) -> dict[str, str]:
    """Standard Webhooks headers; the event id is the message id, so consumers can deduplicate."""
    moment = now.astimezone(UTC) if now.tzinfo else now.replace(tzinfo=UTC)
    # The library's sign() takes text and reads the datetime's wall clock as UTC: hence UTF-8
    # text (event JSON always is) and the conversion above.
    signature = Webhook(consumer_secret).sign(event_id, moment, body.decode("utf-8"))
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }


def split_userinfo(url: str) -> tuple[str, dict[str, str]]:
    """`http://user:pw@host/` -> (`http://host/`, Basic auth header), as browsers and Infobip do."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, {}
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    token = base64.b64encode(f"{unquote(user)}:{unquote(password)}".encode()).decode("ascii")
    return urlunsplit(parts._replace(netloc=host)), {"Authorization": f"Basic {token}"}


def attempt(consumer: Consumer, event_id: str, body: bytes) -> Outcome:
    """POST the event once. 2xx delivered; anything else is a failed attempt with its reason."""
    url, auth = split_userinfo(consumer.url or "")
    if consumer.secret:
        ours = sign_headers(consumer.secret, event_id, body, datetime.now(UTC))
    else:  # unsigned consumer (no secret configured): still give it the id and time
        ours = {"webhook-id": event_id, "webhook-timestamp": str(int(time.time())),
                "Content-Type": "application/json"}
    headers = HTTPHeaderDict({"User-Agent": USER_AGENT})
    for name, value in (*consumer.headers.items(), *auth.items(), *ours.items()):
        headers[name] = value  # case-insensitive: later sources replace earlier ones
    timeout = urllib3.Timeout(connect=consumer.timeout, read=consumer.timeout)
    started = time.monotonic()
    try:
        response = POOL.request("POST", url, body=body, headers=headers, timeout=timeout,
                                retries=False, redirect=False, preload_content=False)
    except HTTPError as err:
        return Outcome(delivered=False, error=_describe(err, consumer.timeout),
                       duration=time.monotonic() - started)
    answer = _read_answer(response)
    duration = time.monotonic() - started
    status = response.status
    if 200 <= status < 300:
        return Outcome(delivered=True, status=status, duration=duration)
    snippet = _scrub(" ".join(answer[:MAX_ERROR_BODY].decode("utf-8", "replace").split()), consumer)
    note = " (redirects are not followed)" if 300 <= status < 400 else ""
    return Outcome(
        delivered=False,
        status=status,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
        gone=status == 410,
        error=f"HTTP {status}{note}" + (f": {snippet}" if snippet else ""),
        duration=duration,
    )


def _read_answer(response: urllib3.BaseHTTPResponse) -> bytes:
    """Read the (small) answer so the connection can be reused. The status line has already
    arrived, so a body that breaks off or times out does not change the outcome."""
    try:
        answer = response.read(MAX_READ + 1)
    except HTTPError:  # urllib3 has already closed that connection
        answer = b""
    if len(answer) > MAX_READ:
        response.close()  # a huge answer: drop the connection rather than drain it
    response.release_conn()
    return answer


def _describe(err: HTTPError, timeout: float) -> str:
    """A short, fixed-form reason. urllib3's own messages name the pool and URL: not used,
    so nothing from the consumer's configuration can reach this text."""
    # Order matters: in urllib3 2 NameResolutionError < NewConnectionError < ConnectTimeoutError.
    if isinstance(err, NameResolutionError):
        return "DNS lookup failed"
    if isinstance(err, NewConnectionError) and not isinstance(err.__cause__, TimeoutError):
        cause = err.__cause__ or err.__context__
        reason = getattr(cause, "strerror", None) or type(cause or err).__name__
        return f"connection failed: {reason}"
    if isinstance(err, ConnectTimeoutError):
        return f"connect timeout after {timeout:g}s"
    if isinstance(err, ReadTimeoutError):
        return f"read timeout after {timeout:g}s"
    if isinstance(err, SSLError):
        return "TLS error"
    if isinstance(err, ProtocolError):
        return "connection dropped by the consumer"
    return f"request failed: {type(err).__name__}"


def _scrub(text: str, consumer: Consumer) -> str:
    """A consumer's answer may echo what we sent; our credentials must not travel on in `error`.
    Short header values ("7", "acme") are left alone: they are not secrets, and replacing them
    would garble the text."""
    userinfo = urlsplit(consumer.url or "").netloc.rpartition("@")[0]
    password = unquote(userinfo.partition(":")[2])
    long_values = [v for v in consumer.headers.values() if len(v) >= 8]
    for secret in sorted({consumer.secret or "", userinfo, password, *long_values}, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
    return text


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Retry-After in seconds or as an HTTP-date -> seconds from now, clamped to [0, 24 h]."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:  # RFC 9110 dates are GMT
            moment = moment.replace(tzinfo=UTC)
        seconds = moment.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def next_delay(schedule: tuple[float, ...], attempt_number: int, retry_after: float | None) -> float | None:
    """Seconds to wait before retry number `attempt_number`, or None: dead-letter it.

    Numbered as Infobip numbers its retries: 0 is the first retry, after the original delivery
    failed, so `attempt_number` is also how many retries were already made. A Retry-After answer
    can lengthen the wait but never shorten it, nor add retries beyond the schedule.
    """
    if attempt_number < 0 or attempt_number >= len(schedule):
        return None
    return max(schedule[attempt_number], retry_after or 0.0)
