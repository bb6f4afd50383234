"""Normalized events (SPEC §3): a stable id per source item, a type from a closed list."""

from __future__ import annotations

import hashlib
from typing import Any

from app.clock import now_text

# The closed list of event types. Consumers subscribe to these (or `dlr.*`, `*`).
DLR_FINAL = "dlr.final"
DLR_INTERMEDIATE = "dlr.intermediate"
MO_RECEIVED = "mo.received"
NUMBER_CHECKED = "number.checked"  # a number-check (HLR) result, from SMPP (SPEC §13)
CONTACT_OPTOUT = "contact.optout"  # SPEC §11: a number opted out (STOP, or by the API)
CONTACT_OPTIN = "contact.optin"  # ... and back in (START, or by the API)
EVENT_TYPES = (DLR_FINAL, DLR_INTERMEDIATE, MO_RECEIVED, NUMBER_CHECKED, CONTACT_OPTOUT, CONTACT_OPTIN)


def _digest(*parts: Any) -> str:
    joined = "\x1f".join("" if p is None else str(p) for p in parts)
    return "evt_" + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


def dlr_event_id(data: dict[str, Any]) -> str:
    """Same (messageId, status id, error id, doneAt) -> same id, however often Infobip resends."""
    status, error = data.get("status") or {}, data.get("error") or {}
    return _digest("dlr", data["messageId"], status.get("id"), error.get("id"), data.get("doneAt"))


def same_report(seen: dict[str, Any], data: dict[str, Any]) -> bool:
    """One report, once by SMPP and once another way (push, pull, logs)? An SMPP receipt dates
    it to the minute (`YYMMDDhhmm`), HTTP to the millisecond, so their event ids differ: they
    are the same report when status id and error id agree and doneAt agrees to the minute."""
    sources = {seen.get("source"), data.get("source")}
    if "smpp" not in sources or len(sources) == 1:
        return False
    same_codes = all((seen.get(k) or {}).get("id") == (data.get(k) or {}).get("id")
                     for k in ("status", "error"))
    return same_codes and (seen.get("doneAt") or "")[:16] == (data.get("doneAt") or "")[:16]


def number_event_id(message_id: str) -> str:
    """A number-check result has one outcome per request: its id is the request's messageId."""
    return _digest("number", message_id)


def mo_event_id(message_id: str) -> str:
    """Inbound messages without an Infobip messageId get a derived one at ingest (app/mo.py)."""
    return _digest("mo", message_id)


def contact_event_id(event_type: str, msisdn: str, receiver: str, cause: str) -> str:
    """`cause` is the MO's messageId (a resent STOP is the same MO: the same id, no second
    event) or the id of a manual change (its re-run batch gives the same id)."""
    return _digest(event_type, msisdn, receiver, cause)


def dlr_type(data: dict[str, Any]) -> str:
    return DLR_FINAL if data.get("final") else DLR_INTERMEDIATE


def build(event_id: str, event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"id": event_id, "type": event_type, "timestamp": now_text(), "data": data}
