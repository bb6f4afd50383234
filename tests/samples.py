"""Payload files (tests/payloads, see its README) and small builders shared by test modules."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from app import dlr
from app.clock import now_text
from app.keys import lane_of

PAYLOADS = Path(__file__).parent / "payloads"


def raw(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def doc(name: str) -> Any:
    """A JSON payload with numbers as Decimal, so `0.0001000000` keeps its digits in assertions."""
    return json.loads(raw(name), parse_float=Decimal)


# XML attacks: entity expansion (billion laughs), external entities and DTDs. All are refused.
BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<reportResponse><results><messageId>&lol9;</messageId></results></reportResponse>"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE reportResponse [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<reportResponse><results><messageId>m1</messageId><callbackData>&xxe;</callbackData></results></reportResponse>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE reportResponse SYSTEM "http://127.0.0.1:9/evil.dtd">
<reportResponse><results><messageId>m1</messageId></results></reportResponse>"""

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>
<reportResponse/>"""

PLAIN_DOCTYPE = b"""<?xml version="1.0"?><!DOCTYPE reportResponse><reportResponse/>"""


def report(message_id: str, group: str = "DELIVERED", **fields: Any) -> dict[str, Any]:
    """One delivery report in Infobip's v2 push shape; `fields` override or add keys."""
    statuses = {
        "ACCEPTED": (0, 0, "MESSAGE_ACCEPTED"),
        "PENDING": (1, 7, "PENDING_ENROUTE"),
        "UNDELIVERABLE": (2, 9, "UNDELIVERABLE_NOT_DELIVERED"),
        "DELIVERED": (3, 5, "DELIVERED_TO_HANDSET"),
        "EXPIRED": (4, 15, "EXPIRED_EXPIRED"),
        "REJECTED": (5, 6, "REJECTED_NETWORK"),
    }
    group_id, status_id, name = statuses[group]
    body: dict[str, Any] = {
        "bulkId": "bulk-1",
        "messageId": message_id,
        "to": "41793026727",
        "sentAt": "2015-06-04T13:01:52.933+0000",
        "doneAt": "2015-06-04T13:02:00.134+0000",
        "smsCount": 1,
        "price": {"pricePerMessage": 0.01, "currency": "EUR"},
        "status": {"groupId": group_id, "groupName": group, "id": status_id, "name": name},
        "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": False},
    }
    body.update(fields)
    return body


def push(*reports: dict[str, Any]) -> dict[str, Any]:
    return {"results": list(reports)}


def envelopes(*reports: dict[str, Any], received_at: str | None = None) -> list[bytes]:
    """Inbox items exactly as ingest writes them (`IngestView.lanes`), for worker-level tests: a
    report of the common shape as it came (`{"raw": ...}`), the drain normalizes it."""
    at = received_at or now_text()
    accepted, rejected = dlr.check_all(list(reports))
    assert not rejected, rejected
    return [orjson.dumps({"kind": "dlr", "receivedAt": at, **payload}) for payload in accepted]


def ids_in_lane(lane: int, count: int, lanes: int = 4, prefix: str = "msg") -> list[str]:
    """`count` message ids that all map to `lane` (app.keys.lane_of), so one drain job sees them."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        candidate = f"{prefix}-{n}"
        if lane_of(candidate, lanes) == lane:
            found.append(candidate)
        n += 1
    return found


# The seed's MO forward templates ("ПЕРЕНАПРАВЛЕНИЕ ПОЛУЧЕННЫХ СООБЩЕНИЙ (PUSH)"), literally.
SEED_TEXT = "https://some.server.com/incoming_sms.php?who=%sender%&what=%text%&output=xml"
SEED_BIN = "https://some.server.com/incoming_sms.php?who=%sender%&what=%bin%"

# The seed's pull example ("ПОЛУЧЕНИЕ ВХОДЯЩИХ СООБЩЕНИЙ – метод PULL"), literally.
SEED_PULL = b"""{
  "results": [
    {
      "messageId": "ff4804ef-6ab6-4abd-984d-ab3b1387e823",
      "from": "38598111",
      "to": "41793026727",
      "text": "KEY Test message",
      "cleanText": "Test message",
      "keyword": "KEY",
      "receivedAt": "2015-02-15T11:43:20.254+0100",
      "smsCount": 1
    }
  ]
}"""
