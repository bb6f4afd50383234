"""A `deliver_sm` (as `app.smpp.codec.fields_of` gives it) -> the raw item an HTTP push would carry.

Pure functions, no I/O: the adapter hands the result to `app.handoff.accept`, so a report, an
inbound SMS or a number check gets the same validation, quarantine, event id and state as if it
had come over HTTP (SPEC §13).

- Delivery receipt (a message-type bit in esm_class): the receipt text `id:… sub:… dlvrd:…
  submit date:… done date:… stat:… err:… text:…` (the seed writes `dlvr:`) and the TLVs
  receipted_message_id, message_state, network_error_code become a report in Infobip's push
  shape. `stat` maps to the status Infobip pushes for it (`STATS`), `err` is the GSM error id
  (the seed's table), dates `YYMMDDhhmm[ss]` are UTC. The event id uses (messageId, status id,
  error id, doneAt to the minute), so a report seen over SMPP and over HTTP is one event.
- Number check (a receipt with `IMSI:` in its text or Infobip's vendor TLVs): a "number" item.
- Anything else is an inbound SMS: a forward item (`("forward", fields)`, app/mo.py) with the
  payload as `bin`; `sar_*` TLVs become the UDH they stand for, so both reassemble alike.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.mo_text import UDHI

RECEIPT_TYPES = 0x3C  # esm_class bits 2-5: receipt, SME ack, manual ack, intermediate notification

# `stat` -> (status group id, group name, status id, status name): what Infobip pushes for it
# (seed "КОДЫ ОТВЕТОВ"). DELIVRD, EXPIRED, ACCEPTD, ENROUTE are one-to-one; UNDELIV, REJECTD,
# DELETED and UNKNOWN stand for several statuses, of which this is the generic one.
STATS: dict[str, tuple[int, str, int, str]] = {
    "DELIVRD": (3, "DELIVERED", 5, "DELIVERED_TO_HANDSET"),
    "UNDELIV": (2, "UNDELIVERABLE", 9, "UNDELIVERABLE_NOT_DELIVERED"),
    "EXPIRED": (4, "EXPIRED", 15, "EXPIRED_EXPIRED"),
    "DELETED": (2, "UNDELIVERABLE", 31, "UNDELIVERABLE_NOT_SENT"),
    "REJECTD": (5, "REJECTED", 6, "REJECTED_NETWORK"),
    "ACCEPTD": (0, "ACCEPTED", 0, "MESSAGE_ACCEPTED"),
    "ENROUTE": (1, "PENDING", 7, "PENDING_ENROUTE"),
    "UNKNOWN": (4, "EXPIRED", 29, "EXPIRED_DLR_UNKNOWN"),
}
STAT_ALIASES = {"REJECTED": "REJECTD", "DELIVERY UNKNOWN": "UNKNOWN", "DELIVERED": "DELIVRD",
                "UNDELIVERABLE": "UNDELIV", "ACCEPTED": "ACCEPTD"}
# message_state TLV (SMPP 3.4 §5.2.28) -> stat, for receipts whose text has none.
MESSAGE_STATES = {1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV",
                  6: "ACCEPTD", 7: "UNKNOWN", 8: "REJECTD"}

_KEYS = ("id", "sub", "dlvrd", "dlvr", "submit date", "done date", "stat", "err", "text",
         "imsi", "msc", "hlr", "orn", "pon", "ron", "roc", "mccmnc")
_KEY = re.compile(r"(?:^|(?<=\s))(" + "|".join(re.escape(k) for k in _KEYS) + r"):", re.IGNORECASE)


def is_receipt(esm_class: int) -> bool:
    return bool(esm_class & RECEIPT_TYPES)


def receipt_fields(text: str) -> dict[str, str]:
    """`id:1 sub:001 ... text:hi` -> {"id": "1", "sub": "001", ..., "text": "hi"} (keys lower
    case, `dlvr` as `dlvrd`). A value runs to the next key; `text` runs to the end."""
    found: dict[str, str] = {}
    matches = list(_KEY.finditer(text))
    for i, match in enumerate(matches):
        key = match.group(1).lower()
        key = "dlvrd" if key == "dlvr" else key
        if key == "text":
            found[key] = text[match.end():]
            break
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        found.setdefault(key, text[match.end():end].strip())
    return found


def smpp_date(value: str | None) -> str | None:
    """`1007291049` or `100729104953` (UTC) -> `2010-07-29T10:49:53Z`; anything else as it came,
    for validation to refuse (and the PDU to be quarantined)."""
    if not value:
        return None
    fmt = {10: "%y%m%d%H%M", 12: "%y%m%d%H%M%S"}.get(len(value))
    if fmt is None or not value.isdigit():
        return value
    try:
        return datetime.strptime(value, fmt).replace(tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        return value


def status_of(stat: str | None, message_state: int | None) -> dict[str, Any] | None:
    name = (stat or "").strip().upper() or MESSAGE_STATES.get(message_state or 0, "")
    name = STAT_ALIASES.get(name, name)
    if not name:
        return None
    if name not in STATS:
        return {"name": name}  # kept; classification warns that the group is unknown
    group_id, group_name, status_id, status_name = STATS[name]
    return {"groupId": group_id, "groupName": group_name, "id": status_id, "name": status_name}


def error_of(err: str | None, network_error_code: bytes | None) -> dict[str, Any] | None:
    """`err:001` is the GSM error id; without it, the code of network_error_code (type, 2 bytes)."""
    if err and err.strip().isdigit():
        return {"id": int(err)}
    if err:
        return {"name": err.strip()}
    if network_error_code and len(network_error_code) == 3:
        return {"id": int.from_bytes(network_error_code[1:], "big")}
    return None


def _tlv_text(value: Any) -> str | None:
    if value is None:
        return None
    text = value.rstrip(b"\0").decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
    return text.strip() or None


def _tlv_int(value: Any) -> int | None:
    if isinstance(value, bytes):
        return int.from_bytes(value, "big") if value else None
    return value


def report(fields: dict[str, Any]) -> dict[str, Any]:
    """A delivery receipt -> Infobip's report push item."""
    tlvs = fields["tlvs"]
    text = receipt_fields(fields["short_message"].decode("latin-1"))
    message_id = _tlv_text(tlvs.get("receipted_message_id")) or text.get("id")
    item: dict[str, Any] = {
        "messageId": message_id,
        # A receipt goes back the way the message came: its source is the handset.
        "to": fields["source_addr"] or None,
        "from": fields["destination_addr"] or None,
        "sentAt": smpp_date(text.get("submit date")),
        "doneAt": smpp_date(text.get("done date")),
        "status": status_of(text.get("stat"), tlvs.get("message_state")),
        "error": error_of(text.get("err"), tlvs.get("network_error_code")),
        "smpp": {k: text[k] for k in ("sub", "dlvrd", "stat", "err", "text") if k in text},
    }
    if _tlv_text(tlvs.get("ib_mcc_mnc")):
        item["mccMnc"] = _tlv_text(tlvs["ib_mcc_mnc"])
    return {k: v for k, v in item.items() if v is not None}


def is_number_check(fields: dict[str, Any]) -> bool:
    """A number-check result always has its IMSI part, in the text (`IMSI:`, empty when the check
    failed) or as TLV 0x1403. Other vendor TLVs (MCCMNC) may come with any report."""
    return "ib_imsi" in fields["tlvs"] or b"IMSI:" in fields["short_message"].upper()


def number_check(fields: dict[str, Any]) -> dict[str, Any]:
    """A number-check result (seed "ПРОВЕРКА НОМЕРА при подключении по SMPP"): the report's
    id, status and error, and what the HLR said, vendor TLVs first, the text's keys second."""
    base = report(fields)
    tlvs = fields["tlvs"]
    text = receipt_fields(fields["short_message"].decode("latin-1"))

    def pick(tlv: str, key: str | None = None) -> str | None:
        return _tlv_text(tlvs.get(tlv)) or (text.get(key) or None if key else None)

    price = _tlv_int(tlvs.get("ib_price"))
    flags = {name: _tlv_int(tlvs.get(f"ib_{name}")) for name in ("ported", "valid")}
    item = {
        "messageId": base.get("messageId"),
        "number": fields["source_addr"] or None,
        "status": base.get("status"),
        "error": base.get("error"),
        "sentAt": base.get("sentAt"),
        "doneAt": base.get("doneAt"),
        "imsi": pick("ib_imsi", "imsi"),
        "msc": pick("ib_msc", "msc"),
        "hlr": pick("ib_hlr", "hlr"),
        "mccMnc": pick("ib_mcc_mnc", "mccmnc"),
        "originalNetwork": {
            "name": pick("ib_original_network_name", "orn"),
            "prefix": pick("ib_original_network_prefix"),
            "country": pick("ib_original_country_name"),
            "countryCode": pick("ib_original_country_code"),
            "countryPrefix": pick("ib_original_country_prefix"),
        },
        "portedNetwork": {
            "name": pick("ib_ported_network_name", "pon"),
            "prefix": pick("ib_ported_network_prefix"),
            "country": pick("ib_ported_country_name"),
            "countryPrefix": pick("ib_ported_country_prefix"),
        },
        "roamingNetwork": {
            "name": pick("ib_roaming_network_name", "ron"),
            "prefix": pick("ib_roaming_network_prefix"),
            "country": pick("ib_roaming_country_name"),
            "countryCode": pick("ib_roaming_country_code", "roc"),
            "countryPrefix": pick("ib_roaming_country_prefix"),
        },
        "ported": None if flags["ported"] is None else bool(flags["ported"]),
        "valid": None if flags["valid"] is None else bool(flags["valid"]),
        # Infobip multiplies the price by 100 "for compatibility".
        "price": None if price is None else str(Decimal(price).scaleb(-2)),
    }
    for network in ("originalNetwork", "portedNetwork", "roamingNetwork"):
        item[network] = {k: v for k, v in item[network].items() if v is not None}
    return {k: v for k, v in item.items() if v is not None}


def inbound(fields: dict[str, Any], day: str) -> tuple[str, dict[str, Any]]:
    """An inbound SMS -> a forward item of app/mo.py. Without an id from Infobip, the id is
    derived from the content and the UTC `day`: a resend after a reconnect is the same message."""
    tlvs = fields["tlvs"]
    payload = fields["short_message"] or tlvs.get("message_payload") or b""
    esm = fields["esm_class"]
    sar = [tlvs.get(k) for k in ("sar_msg_ref_num", "sar_total_segments", "sar_segment_seqnum")]
    if not esm & UDHI and all(v is not None for v in sar):
        ref, total, seq = sar
        # The 16-bit-reference concatenation IE these TLVs stand for (3GPP TS 23.040).
        payload = bytes((6, 0x08, 4, (ref >> 8) & 0xFF, ref & 0xFF, total & 0xFF, seq & 0xFF)) + payload
        esm |= UDHI
    message_id = _tlv_text(tlvs.get("receipted_message_id")) or derived_id(
        fields["source_addr"], fields["destination_addr"], fields["data_coding"], esm, payload.hex(), day)
    return ("forward", {
        "sender": fields["source_addr"], "receiver": fields["destination_addr"] or None,
        "bin": payload.hex(), "datacoding": fields["data_coding"], "esmclass": esm,
        "messageid": message_id,
    })


def derived_id(*parts: Any) -> str:
    joined = "\x1f".join(str(p) for p in parts)
    return "smpp_" + hashlib.sha256(joined.encode("utf-8")).hexdigest()[:32]


def map_deliver_sm(fields: dict[str, Any], day: str) -> tuple[str, Any]:
    """(handoff kind, raw item) for one deliver_sm."""
    if not is_receipt(fields["esm_class"]):
        return "mo", inbound(fields, day)
    if is_number_check(fields):
        return "number", number_check(fields)
    return "dlr", report(fields)
