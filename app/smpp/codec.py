"""SMPP 3.4 PDUs through smpplib, plus the vendor TLVs Infobip adds to number-check results.

smpplib (python-smpplib) does the wire format: framing, every standard PDU and TLV, the bind,
unbind and enquire_link exchanges. Infobip's number-check `deliver_sm` carries vendor TLVs
(0x1403, 0x1406, 0x1409-0x1442, seed "ПРОВЕРКА НОМЕРА при подключении по SMPP") that smpplib
does not know; it would drop them (or, without `allow_unknown_opt_params`, refuse the PDU).
`register_vendor_tlvs()` adds them to smpplib's deliver_sm table as octet strings, so they are
read and written with their exact length; `app.smpp.pdu_map` decides what the bytes mean.

`fields_of(pdu)` turns a parsed deliver_sm into a plain dict (str addresses, bytes payloads,
TLVs by tag): the only shape the pure mapping sees, so it is tested without sockets.
"""

from __future__ import annotations

import struct
from typing import Any

from smpplib import command, consts, smpp
from smpplib.ptypes import ostr

# Infobip's vendor TLVs (name -> tag). 0x1403 IMSI and 0x1406 MSC arrive as octets of ASCII
# digits (the seed's "extraopt"); the others are strings or integers, read as octets here.
VENDOR_TLVS = {
    "ib_imsi": 0x1403,
    "ib_msc": 0x1406,
    "ib_hlr": 0x1409,
    "ib_original_network_prefix": 0x140B,
    "ib_original_network_name": 0x1412,
    "ib_ported_network_name": 0x1413,
    "ib_roaming_network_name": 0x1414,
    "ib_roaming_country_name": 0x1415,
    "ib_mcc_mnc": 0x1416,
    "ib_roaming_country_code": 0x1417,
    "ib_price": 0x1418,
    "ib_roaming_network_prefix": 0x1419,
    "ib_roaming_country_prefix": 0x1420,
    "ib_ported": 0x1421,
    "ib_original_country_name": 0x1422,
    "ib_original_country_code": 0x1423,
    "ib_original_country_prefix": 0x1424,
    "ib_valid": 0x1425,
    "ib_ported_network_prefix": 0x143E,
    "ib_ported_country_name": 0x143F,
    "ib_ported_country_prefix": 0x1442,
}
TAG_NAMES = {tag: name for name, tag in VENDOR_TLVS.items()}

# Standard deliver_sm TLVs the mapping uses, by smpplib's names.
STANDARD_TLVS = ("receipted_message_id", "message_state", "network_error_code", "sar_msg_ref_num",
                 "sar_total_segments", "sar_segment_seqnum", "message_payload")

HEADER = struct.Struct(">LLLL")  # command_length, command_id, command_status, sequence_number
MAX_PDU = 64 * 1024  # far above any deliver_sm; a bigger length is a broken stream


def register_vendor_tlvs() -> None:
    """Teach smpplib's deliver_sm Infobip's vendor TLVs (idempotent)."""
    deliver = command.DeliverSM
    for name, tag in VENDOR_TLVS.items():
        consts.OPTIONAL_PARAMS.setdefault(name, tag)
        deliver.params.setdefault(name, command.Param(type=ostr, max=255))
    missing = tuple(name for name in VENDOR_TLVS if name not in deliver.params_order)
    deliver.params_order = deliver.params_order + missing


register_vendor_tlvs()


def header(raw: bytes) -> tuple[int, int, int, int]:
    """(length, command id, status, sequence) of a raw PDU (at least 16 bytes)."""
    return HEADER.unpack_from(raw)


def parse(raw: bytes) -> Any:
    """A raw PDU -> smpplib PDU object. Raises on anything smpplib cannot read."""
    # sequence=0: smpplib would otherwise ask a client object for one; parse() sets the real one.
    return smpp.parse_pdu(raw, sequence=0, allow_unknown_opt_params=True)


def make(command_name: str, sequence: int, **fields: Any) -> Any:
    """A PDU to send; the sequence number is set here, as smpplib reads it from a client."""
    pdu = smpp.make_pdu(command_name, sequence=sequence, **fields)
    pdu.sequence = sequence
    return pdu


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def fields_of(pdu: Any) -> dict[str, Any]:
    """The parts of a deliver_sm the mapping needs, as plain values."""
    tlvs = {name: getattr(pdu, name, None) for name in (*STANDARD_TLVS, *VENDOR_TLVS)}
    return {
        "sequence": pdu.sequence,
        "service_type": _text(pdu.service_type),
        "source_addr": _text(pdu.source_addr),
        "destination_addr": _text(pdu.destination_addr),
        "esm_class": int(pdu.esm_class or 0),
        "data_coding": int(pdu.data_coding or 0),
        "short_message": bytes(pdu.short_message or b""),
        "tlvs": {name: value for name, value in tlvs.items() if value is not None},
    }


def deliver_sm(sequence: int, source_addr: str, destination_addr: str, short_message: bytes,
               esm_class: int = 0, data_coding: int = 0, **tlvs: Any) -> bytes:
    """Encode a deliver_sm (the fake SMSC and tests send these). Vendor TLVs go as bytes."""
    pdu = make("deliver_sm", sequence=sequence, service_type="", source_addr_ton=1,
               source_addr_npi=1, source_addr=source_addr, dest_addr_ton=1, dest_addr_npi=1,
               destination_addr=destination_addr, esm_class=esm_class, data_coding=data_coding,
               short_message=short_message, **tlvs)
    return pdu.generate()
