"""What the fake Infobip knows: sent messages, their logs, reports waiting to be pulled, inbound
messages, and the faults a test asked for. Plain data behind one lock; no HTTP here.

Semantics follow the seed (docs in README, "The fake Infobip"):
- `/sms/1/reports` and `/sms/1/inbox/reports` hand each item out ONCE: `take_reports` and
  `take_inbox` remove what they return.
- `/sms/1/logs` is repeatable and covers the last 48 hours of the fake's clock, newest first.
- A send is logged at once (PENDING_ENROUTE); its reports come later (`timeline.py`) and update
  the log entry, as Infobip's logs show a message's latest status.
- A `messageId` the client chose is kept; sending it again is answered REJECTED_DUPLICATE_MESSAGE_ID
  (seed status 23) and sends nothing, so a client unsure whether its send went out can resend.
"""

from __future__ import annotations

import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import gsm0338  # noqa: F401  (registers the 'gsm03.38' codec)

from app.codes import ERROR_GROUPS, GSM_ERRORS, STATUS_GROUPS, STATUSES

LOG_WINDOW = timedelta(hours=48)
DEFAULT_LIMIT = 50  # the seed's default for reports, logs and inbox
PENDING_ENROUTE, DUPLICATE_ID, MISSING_TO, BAD_DESTINATION = 7, 23, 51, 52
DELIVERED_TO_HANDSET, NO_ERROR, ABSENT_SUBSCRIBER = 5, 0, 27
_DESTINATION = re.compile(r"\+?[0-9]{3,15}")
# Infobip answers in English; the seed's examples give these texts (others: the seed's table).
_STATUS_TEXT = {3: "Message sent, waiting for delivery report", 5: "Message delivered to handset",
                6: "Network is forbidden", 7: "Message sent to next instance", 26: "Pending Accepted"}
_ERROR_TEXT = {0: "No Error", 27: "Absent Subscriber"}
# mccmnc of the first digits of a number (a few countries; others get Switzerland's).
_NETWORKS = (("41", "22801"), ("49", "26201"), ("7", "25001"), ("385", "21901"), ("44", "23410"))


def infobip_time(moment: datetime) -> str:
    """`2015-02-12T09:51:43.123+0000`, the way the seed's examples write dates."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


def status_object(status_id: int) -> dict[str, Any]:
    s = STATUSES[status_id]
    body = {"groupId": s.group_id, "groupName": STATUS_GROUPS[s.group_id].name, "id": s.id,
            "name": s.name, "description": _STATUS_TEXT.get(s.id, s.description)}
    if s.action:
        body["action"] = s.action
    return body


def error_object(error_id: int) -> dict[str, Any]:
    e = GSM_ERRORS[error_id]
    return {"groupId": e.group_id, "groupName": ERROR_GROUPS[e.group_id].name, "id": e.id,
            "name": e.name, "description": _ERROR_TEXT.get(e.id, e.description), "permanent": e.permanent}


def sms_count(text: str) -> int:
    """Parts of a long message: 160/153 GSM-7 septets, else 70/67 UCS-2 characters."""
    try:
        units, single, part = len(text.encode("gsm03.38")), 160, 153
    except UnicodeEncodeError:
        units, single, part = len(text), 70, 67
    return 1 if units <= single else math.ceil(units / part)


def mccmnc(to: str) -> str:
    digits = to.lstrip("+")
    return next((code for prefix, code in sorted(_NETWORKS, key=lambda n: -len(n[0]))
                 if digits.startswith(prefix)), "22801")


@dataclass
class Fault:
    """What the next `count` calls of `path` get instead of a normal answer."""

    path: str
    count: int = 1
    status: int = 503
    retry_after: float | None = None
    hang: bool = False  # read the request, then hold it without answering until released
    drop: bool = False  # read the request, then close the connection without answering
    apply: bool = False  # with hang/drop: the request takes effect (a send is made) first
    method: str | None = None


@dataclass
class Message:
    """One sent message: its log entry, and how its reports go out."""

    log: dict[str, Any]
    notify_url: str | None
    intermediate: bool
    callback_data: str | None
    final: tuple[int, int] = (DELIVERED_TO_HANDSET, NO_ERROR)  # status id, GSM error id
    content_type: str = "application/json"  # of its pushes (`notifyContentType`)


@dataclass
class Model:
    """Everything the fake holds. Every method takes the lock; answers are copies."""

    offset: float = 0.0  # seconds the test moved the clock forward
    messages: dict[str, Message] = field(default_factory=dict)
    reports: list[dict[str, Any]] = field(default_factory=list)  # waiting to be pulled
    inbox: list[dict[str, Any]] = field(default_factory=list)
    sends: list[dict[str, Any]] = field(default_factory=list)  # what clients sent, in order
    pushes: list[dict[str, Any]] = field(default_factory=list)  # every push attempt
    calls: list[dict[str, Any]] = field(default_factory=list)  # every API call and its answer
    faults: list[Fault] = field(default_factory=list)
    outcomes: dict[str, tuple[int, int]] = field(default_factory=dict)  # to -> final status, error
    withhold_all: bool = False
    withheld_ids: set[str] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def now(self) -> datetime:
        return datetime.fromtimestamp(time.time() + self.offset, UTC)

    # --- faults and call records -----------------------------------------------------------

    def next_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.path == path and fault.method in (None, method) and fault.count > 0:
                    fault.count -= 1
                    if fault.count == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def record_call(self, method: str, path: str, status: int | None, auth: str) -> None:
        with self.lock:
            self.calls.append({"method": method, "path": path, "status": status, "auth": auth,
                               "at": infobip_time(self.now())})

    # --- sending ---------------------------------------------------------------------------

    def send(self, bulk_id: str | None, items: list[dict[str, Any]]) -> tuple[dict[str, Any], list[str]]:
        """Accept one send request's messages (already flattened to one per destination).
        Returns Infobip's answer and the ids of the messages whose reports are to come."""
        answers, accepted = [], []
        with self.lock:
            sent_at = self.now()
            for item in items:
                to = str(item.get("to") or "")
                message_id = str(item.get("messageId") or uuid.uuid4())
                count = sms_count(str(item.get("text") or ""))
                if not to:
                    status = MISSING_TO
                elif not _DESTINATION.fullmatch(to):
                    status = BAD_DESTINATION
                elif message_id in self.messages:
                    status = DUPLICATE_ID
                else:
                    status = PENDING_ENROUTE
                answers.append({"to": to, "status": status_object(status), "smsCount": count,
                                "messageId": message_id})
                if status == DUPLICATE_ID:
                    continue  # the first message of that id stays as it was
                log = {"bulkId": bulk_id, "messageId": message_id, "to": to,
                       "from": item.get("from"), "text": item.get("text"), "sentAt": infobip_time(sent_at),
                       "smsCount": count, "mccmnc": mccmnc(to),
                       "price": {"pricePerMessage": 0.01 * count, "currency": "EUR"},
                       "status": status_object(status), "error": error_object(NO_ERROR)}
                if status != PENDING_ENROUTE:
                    log["doneAt"] = log["sentAt"]
                    log["price"]["pricePerMessage"] = 0
                self.messages[message_id] = Message(
                    {k: v for k, v in log.items() if v is not None}, item.get("notifyUrl"),
                    bool(item.get("intermediateReport")), item.get("callbackData"),
                    self.outcomes.get(to, (DELIVERED_TO_HANDSET, NO_ERROR)),
                    "application/xml" if item.get("notifyContentType") == "application/xml"
                    else "application/json")
                self.sends.append({**item, "bulkId": bulk_id, "messageId": message_id,
                                   "status": STATUSES[status].name, "sentAt": log["sentAt"]})
                if status == PENDING_ENROUTE:
                    accepted.append(message_id)
        answer: dict[str, Any] = {"messages": answers}
        if bulk_id:
            answer = {"bulkId": bulk_id, **answer}
        return answer, accepted

    def report(self, message_id: str, intermediate: bool) -> tuple[dict[str, Any], Message]:
        """The report Infobip makes for a message now; a final one also updates its log."""
        with self.lock:
            message = self.messages[message_id]
            status, error = (3, ABSENT_SUBSCRIBER) if intermediate else message.final
            done_at = infobip_time(self.now())
            log = message.log
            kept = ("bulkId", "messageId", "to", "sentAt", "smsCount", "price")
            report = {k: log[k] for k in kept if k in log}
            report.update(doneAt=done_at, status=status_object(status), error=error_object(error))
            if message.callback_data is not None:
                report["callbackData"] = message.callback_data
            if not intermediate:
                log.update(doneAt=done_at, status=report["status"], error=report["error"])
            return report, message

    def withheld(self, message_id: str) -> bool:
        with self.lock:
            return self.withhold_all or message_id in self.withheld_ids

    # --- pulls: served once ------------------------------------------------------------------

    def add_reports(self, reports: list[dict[str, Any]], logged: bool = True) -> None:
        """Reports for `/sms/1/reports` (and, unless `logged` is false, the logs)."""
        with self.lock:
            self.reports.extend(reports)
            for report in reports if logged else ():
                log = {"from": "InfoSMS", "text": "", "mccmnc": mccmnc(str(report.get("to", ""))), **report}
                log.pop("callbackData", None)
                self.messages.setdefault(str(report.get("messageId")),
                                         Message(log, None, False, report.get("callbackData")))

    def take_reports(self, limit: int, bulk_id: str | None, message_id: str | None) -> list[dict[str, Any]]:
        with self.lock:
            taken = [r for r in self.reports if bulk_id in (None, r.get("bulkId"))
                     and message_id in (None, r.get("messageId"))][:limit]
            gone = {id(r) for r in taken}
            self.reports = [r for r in self.reports if id(r) not in gone]
            return taken

    def take_inbox(self, limit: int) -> list[dict[str, Any]]:
        with self.lock:
            taken, self.inbox = self.inbox[:limit], self.inbox[limit:]
            return taken

    # --- logs: repeatable, 48 h ------------------------------------------------------------

    def logs(self, filters: dict[str, list[str]], sent_since: datetime | None, sent_until: datetime | None,
             limit: int) -> list[dict[str, Any]]:
        """Newest first. Several values of a filter (`messageId=a&messageId=b`) match any of them."""
        with self.lock:
            oldest = self.now() - LOG_WINDOW
            found = []
            ids = filters.get("messageId")  # looked up directly: reconciliation asks by id
            messages = self.messages
            for message in [messages[i] for i in ids if i in messages] if ids else messages.values():
                log = message.log
                sent = datetime.fromisoformat(log["sentAt"])
                if sent < oldest or (sent_since and sent < sent_since) or (sent_until and sent > sent_until):
                    continue
                fields = {"from": log.get("from"), "to": log.get("to"), "bulkId": log.get("bulkId"),
                          "messageId": log.get("messageId"), "generalStatus": log["status"]["groupName"],
                          "mcc": log.get("mccmnc", "")[:3], "mnc": log.get("mccmnc", "")[3:]}
                if all(fields[name] in wanted for name, wanted in filters.items()):
                    found.append(dict(log))
            found.reverse()  # newest first; the sort is stable, so sends of one moment stay newest first
            found.sort(key=lambda log: datetime.fromisoformat(log["sentAt"]), reverse=True)
            return found[:limit]
