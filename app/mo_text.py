"""The body of an inbound SMS (MO): hex `bin` -> bytes -> text, by SMPP data coding (SPEC §2.2).

No Flask here: the ingest layer hands in the raw strings Infobip sent. Order of use for a `bin`:
`hex_bytes`, then `split_udh` when `esm_has_udh(esmclass)`, then `decode_bytes` on what follows
the header (`decode_bin` does the first and last step for a payload without a header).

GSM 03.38 (data coding 0 and 1) arrives one byte per septet, unpacked: Infobip's HTTP forward
carries SMPP's `short_message`, where septets are never packed. So there is no septet packing and
no fill bits after a User Data Header to undo; a header is cut at a byte boundary. SMPP's data
coding 1 is IA5/ASCII in theory; Infobip uses it for the GSM alphabet, so SPEC §2.2 maps both to
GSM. Codings that are not text (4 = 8-bit binary, 2, and every one we do not know) give no text
but keep the bytes, so nothing a consumer might want is thrown away.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import gsm0338  # noqa: F401  (registers the 'gsm03.38' codec)

from app.errors import InvalidPayload

GSM_CODINGS = (0, 1)
LATIN1 = 3
UCS2 = 8
UDHI = 0x40  # esm_class bit: the message starts with a User Data Header

_ESC = 0x1B
# Septets defined after an escape (GSM 03.38 extension table): FF ^ { } \ [ ~ ] | €
_EXTENSION = frozenset((0x0A, 0x14, 0x28, 0x29, 0x2F, 0x3C, 0x3D, 0x3E, 0x40, 0x65))
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")

IE_CONCAT_8 = 0x00  # concatenated SM, 8-bit reference
IE_CONCAT_16 = 0x08  # concatenated SM, 16-bit reference


class Concat(NamedTuple):
    """One part of a concatenated message: parts sharing (sender, receiver, ref) belong together."""

    ref: int
    total: int
    seq: int


def hex_bytes(hex_text: str) -> bytes:
    """`bin` as Infobip sends it (hex, either case) -> bytes. Spaces only at the ends are tolerated."""
    cleaned = hex_text.strip()
    if not _HEX.fullmatch(cleaned):
        if len(cleaned) % 2:
            raise InvalidPayload(f"bin is not hex: odd number of digits ({len(cleaned)})")
        bad = next(c for c in cleaned if c not in "0123456789abcdefABCDEF")
        raise InvalidPayload(f"bin is not hex: {bad!r} at position {cleaned.index(bad)}")
    return bytes.fromhex(cleaned)


def decode_bin(hex_text: str, data_coding: int) -> tuple[str | None, bytes]:
    """Hex `bin` of a message without a header -> (text, or None for binary codings; raw bytes)."""
    raw = hex_bytes(hex_text)
    return decode_bytes(raw, data_coding), raw


def decode_bytes(data: bytes, data_coding: int) -> str | None:
    """Message bytes -> text by SMPP data coding; None when the coding is not a text coding."""
    if data_coding in GSM_CODINGS:
        return _gsm(data)
    if data_coding == LATIN1:
        return data.decode("latin-1")
    if data_coding == UCS2:
        return _ucs2(data)
    return None


def _gsm(data: bytes) -> str:
    """GSM 03.38 default alphabet with the extension table (0x1B escape), one byte per septet.

    What 3GPP TS 23.038 tells a handset to do is done here too rather than failing the message:
    an escape before a septet the extension table does not define shows the default-table
    character, and escape-escape (reserved for a further table) shows a space.
    """
    if any(b > 0x7F for b in data):
        pos = next(i for i, b in enumerate(data) if b > 0x7F)
        raise InvalidPayload(f"GSM 7-bit text has a byte over 0x7F (0x{data[pos]:02X} at byte {pos})")
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i] == _ESC and i + 1 < len(data):
            nxt = data[i + 1]
            if nxt in _EXTENSION:
                out += data[i : i + 2]
            else:
                out.append(0x20 if nxt == _ESC else nxt)
            i += 2
            continue
        if data[i] != _ESC:  # a lone escape as the last septet stands for nothing
            out.append(data[i])
        i += 1
    return bytes(out).decode("gsm03.38")


def _ucs2(data: bytes) -> str:
    """UCS-2 as phones really send it: UTF-16 big-endian, so emoji come as surrogate pairs."""
    if len(data) % 2:
        raise InvalidPayload(f"UCS-2 text has an odd number of bytes ({len(data)})")
    try:
        return data.decode("utf-16-be")
    except UnicodeDecodeError as err:
        raise InvalidPayload(f"UCS-2 text has an unpaired surrogate at byte {err.start}") from err


def esm_has_udh(esm_class: int) -> bool:
    """True when the esm_class UDHI bit says the payload starts with a User Data Header."""
    return bool(esm_class & UDHI)


def split_udh(payload: bytes) -> tuple[Concat | None, bytes]:
    """Cut the User Data Header off a payload: (concatenation info or None, the message part).

    The first byte is the header length (UDHL), then information elements (IEI, length, data).
    Only the concatenation IEs matter for reassembly; every other IE (ports, language shift, ...)
    is skipped by its length. When a concatenation IE repeats, the last one wins (TS 23.040).
    """
    if not payload:
        raise InvalidPayload("UDHI is set but the payload is empty")
    udhl = payload[0]
    if 1 + udhl > len(payload):
        raise InvalidPayload(f"UDH length {udhl} overruns the payload of {len(payload)} bytes")
    header, body = payload[1 : 1 + udhl], payload[1 + udhl :]
    concat: Concat | None = None
    i = 0
    while i < len(header):
        if i + 2 > len(header):
            raise InvalidPayload(f"UDH ends inside the IE at byte {i}")
        iei, iel = header[i], header[i + 1]
        data = header[i + 2 : i + 2 + iel]
        if len(data) < iel:
            raise InvalidPayload(f"UDH IE 0x{iei:02X} length {iel} overruns the header")
        if iei in (IE_CONCAT_8, IE_CONCAT_16):
            concat = _concat(iei, data)
        i += 2 + iel
    return concat, body


def _concat(iei: int, data: bytes) -> Concat:
    size = 3 if iei == IE_CONCAT_8 else 4
    if len(data) != size:
        raise InvalidPayload(f"UDH concatenation IE 0x{iei:02X} must be {size} bytes, got {len(data)}")
    ref = int.from_bytes(data[: size - 2], "big")
    total, seq = data[size - 2], data[size - 1]
    if total == 0:
        raise InvalidPayload("UDH concatenation says 0 parts")
    if not 1 <= seq <= total:
        raise InvalidPayload(f"UDH concatenation part {seq} is outside 1..{total}")
    return Concat(ref, total, seq)


def keyword_split(text: str) -> tuple[str, str]:
    """(keyword, cleanText) as Infobip computes them: the first word upper-cased, and the rest.

    Words are split on any Unicode whitespace; the whitespace around the keyword is dropped, the
    rest of the text is kept as written.
    """
    parts = text.split(None, 1)
    if not parts:
        return "", ""
    return parts[0].upper(), parts[1] if len(parts) > 1 else ""
