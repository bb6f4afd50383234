"""`flask simulate`: push realistic Infobip traffic at a running instance.

What Infobip does during a campaign, scaled down: delivery reports in buckets of up to
`maxBucketSize` (JSON or XML), intermediate reports before some finals, Infobip-style resends
of a bucket (as when our answer was slow), and Infobip's retry cycle on 5xx or no answer
(1 min + 1 min × n², here scaled by --retry-scale). Plus inbound SMS: forwards by GET and by
POST with the default names, and long messages as UDH parts sent out of order.
"""

from __future__ import annotations

import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import orjson
import urllib3

from app.codes import ERROR_GROUPS, GSM_ERRORS, STATUS_GROUPS, STATUSES
from app.mo_text import UCS2
from app.routes import INFOBIP_RETRY_SCHEDULE

# Final reports as (weight, status id, GSM error id); names and groups come from app/codes.py.
FINALS = ((90, 5, 0), (5, 9, 1), (3, 15, 27), (2, 6, 0))
INTERMEDIATE = (7, 27)  # PENDING_ENROUTE after EC_ABSENT_SUBSCRIBER


@dataclass(frozen=True)
class Call:
    """One HTTP request Infobip would make."""

    method: str
    path: str
    body: bytes | None = None
    content_type: str | None = None
    query: dict[str, str] = field(default_factory=dict)
    count: int = 1  # reports or messages carried


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def report(message_id: str, bulk_id: str, status_id: int, error_id: int) -> dict[str, Any]:
    status, error = STATUSES[status_id], GSM_ERRORS[error_id]
    return {
        "bulkId": bulk_id, "messageId": message_id, "to": f"4179{random.randint(1000000, 9999999)}",
        "sentAt": _now(), "doneAt": _now(), "smsCount": 1,
        "price": {"pricePerMessage": 0.0001, "currency": "EUR"},
        "status": {"groupId": status.group_id, "groupName": STATUS_GROUPS[status.group_id].name,
                   "id": status.id, "name": status.name},
        "error": {"groupId": error.group_id, "groupName": ERROR_GROUPS[error.group_id].name,
                  "id": error.id, "name": error.name, "permanent": error.permanent},
        "callbackData": "simulate",
    }


def to_xml(reports: list[dict[str, Any]]) -> bytes:
    def element(name: str, value: Any) -> str:
        if isinstance(value, dict):
            return f"<{name}>{''.join(element(k, v) for k, v in value.items())}</{name}>"
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return f"<{name}>{text}</{name}>"

    items = "".join(element("result", r) for r in reports)
    return f"<reportResponse><results>{items}</results></reportResponse>".encode()


def campaign(messages: int, bucket: int, intermediate: float, xml: float, resend: float) -> Iterator[Call]:
    """Delivery-report calls for one bulk of `messages`, in Infobip's shapes and habits."""
    bulk_id = f"sim-{uuid.uuid4().hex[:12]}"
    weights = [weight for weight, _, _ in FINALS]
    pending: list[dict[str, Any]] = []
    for n in range(messages):
        message_id = f"{bulk_id}-{n}"
        if random.random() < intermediate:
            pending.append(report(message_id, bulk_id, *INTERMEDIATE))
        _, status_id, error_id = random.choices(FINALS, weights)[0]
        pending.append(report(message_id, bulk_id, status_id, error_id))
        while len(pending) >= bucket:
            yield from _bucket_calls(pending[:bucket], xml, resend)
            del pending[:bucket]
    if pending:
        yield from _bucket_calls(pending, xml, resend)


def _bucket_calls(reports: list[dict[str, Any]], xml: float, resend: float) -> Iterator[Call]:
    if random.random() < xml:
        call = Call("POST", "/infobip/dlr", to_xml(reports), "application/xml", count=len(reports))
    else:
        call = Call("POST", "/infobip/dlr", orjson.dumps({"results": reports}), "application/json",
                    count=len(reports))
    yield call
    if random.random() < resend:
        yield call  # Infobip resends a bucket when our answer came too late for it


def from_template(template: str, fields: dict[str, str]) -> Call:
    """The GET Infobip makes for a forward URL template (MO_URL_TEMPLATE): placeholders in the
    path and in query values filled in, case-insensitively, as Infobip fills them."""
    parts = urlsplit(template)

    def fill(text: str, encode: bool) -> str:
        for name, value in fields.items():
            text = re.sub(f"%{name}%", quote(value, safe="") if encode else value, text, flags=re.IGNORECASE)
        return text

    query = {k: fill(v, encode=False) for k, v in parse_qsl(parts.query, keep_blank_values=True)}
    return Call("GET", fill(parts.path, encode=True), query=query)


def inbound(count: int, long_ratio: float, template: str | None = None) -> Iterator[Call]:
    """MO forwards: with the default names by GET (Infobip's default) and POST form, or by GET
    on the operator's URL template when one is given; long messages as UDH parts."""
    keywords = ("STOP", "INFO", "WIN42", "HELLO")
    for n in range(count):
        sender = f"38598{random.randint(100000, 999999)}"
        if not template and random.random() < long_ratio:  # parts use the default names
            yield from _long_message(sender, n)
            continue
        params = {"sender": sender, "receiver": "41793026727", "datacoding": "0", "bin": "",
                  "text": f"{random.choice(keywords)} simulated message {n}",
                  "messageid": f"mo-{uuid.uuid4().hex[:16]}", "datetime": _now()}
        if template:
            yield from_template(template, params)
        elif n % 2:
            yield Call("GET", "/infobip/mo", query=params)
        else:
            yield Call("POST", "/infobip/mo", urlencode(params).encode(), "application/x-www-form-urlencoded")


def _long_message(sender: str, n: int) -> Iterator[Call]:
    text = f"Привет! Это длинное сообщение номер {n}, в трёх частях, отправленных вразнобой. 👍" * 2
    raw = text.encode("utf-16-be")
    size = -(-len(raw) // 3)
    size += size % 2
    chunks = [raw[i : i + size] for i in range(0, len(raw), size)]
    ref = random.randint(0, 255)
    order = list(range(len(chunks)))
    random.shuffle(order)
    for seq in order:
        udh = bytes([5, 0, 3, ref, len(chunks), seq + 1])
        params = {"sender": sender, "receiver": "41793026727", "text": "", "datacoding": str(UCS2),
                  "esmclass": "64", "bin": (udh + chunks[seq]).hex(), "datetime": _now(),
                  "messageid": f"mo-{uuid.uuid4().hex[:16]}"}
        yield Call("GET", "/infobip/mo", query=params)


def through_infobip(client: Any, notify_url: str, messages: int, bucket: int,
                    intermediate: float) -> Counter[str]:
    """The campaign sent as SMS through Infobip's API (the fake Infobip: `--via-infobip`) with
    `notifyUrl` set, so that Infobip itself pushes the reports, as in production. Send answers
    counted by status group."""
    bulk_id = f"sim-{uuid.uuid4().hex[:12]}"
    counts: Counter[str] = Counter()
    for start in range(0, messages, bucket):
        destinations = [{"to": f"4179{random.randint(1000000, 9999999)}", "messageId": f"{bulk_id}-{n}"}
                        for n in range(start, min(start + bucket, messages))]
        answer = client.send_advanced({"bulkId": bulk_id, "messages": [{
            "from": "InfoSMS", "text": "Simulated campaign", "destinations": destinations,
            "notifyUrl": notify_url, "notifyContentType": "application/json", "callbackData": "simulate",
            "intermediateReport": random.random() < intermediate}]})
        counts.update(m["status"]["groupName"] for m in answer["messages"])
    return counts


class Sender:
    """Sends calls at a steady rate from a few threads, retrying as Infobip does."""

    def __init__(self, base_url: str, token: str, rate: float, retry_scale: float, threads: int = 4) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.retry_scale = retry_scale
        self.pool = urllib3.PoolManager(maxsize=threads, retries=False, timeout=urllib3.Timeout(10))
        self.executor = ThreadPoolExecutor(threads)
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.next_at = time.monotonic()

    def send(self, call: Call) -> None:
        with self.lock:  # pace the calls: a steady rate, not bursts
            self.next_at = max(self.next_at + self.interval, time.monotonic())
            wait = self.next_at - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self.executor.submit(self._deliver, call)

    def _deliver(self, call: Call) -> None:
        query = urlencode({**call.query, "token": self.token})
        headers = {"Content-Type": call.content_type} if call.content_type else {}
        for attempt, delay in enumerate((0.0, *INFOBIP_RETRY_SCHEDULE)):
            if attempt:
                self._count("retried")
                time.sleep(delay * self.retry_scale)
            try:
                answer = self.pool.request(call.method, f"{self.base_url}{call.path}?{query}",
                                           body=call.body, headers=headers)
            except urllib3.exceptions.HTTPError:
                self._count("no answer")
                continue
            self._count(str(answer.status))
            if answer.status < 500:
                self._count("items", call.count)
                return
        self._count("given up")

    def _count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counts[key] += n

    def close(self) -> Counter[str]:
        self.executor.shutdown(wait=True)
        return self.counts
