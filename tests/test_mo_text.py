"""app.mo_text: MO body decoding by data coding, User Data Header, keyword split (SPEC §2.2)."""

from __future__ import annotations

import pytest

from app.errors import InvalidPayload
from app.mo_text import Concat, decode_bin, decode_bytes, esm_has_udh, hex_bytes, keyword_split, split_udh


def ucs2(text: str) -> str:
    return text.encode("utf-16-be").hex()


@pytest.mark.parametrize(
    ("hex_text", "coding", "text"),
    [
        ("414243", 0, "ABC"),  # the seed's example: "ABC" as %bin%
        ("414243", 1, "ABC"),
        ("", 0, ""),
        ("48656C6C6F20576F726C64", 0, "Hello World"),
        ("48656c6c6f", 0, "Hello"),  # lower-case hex
        ("  414243\n", 0, "ABC"),  # surrounding whitespace tolerated
        ("0001020304050607", 0, "@£$¥èéùì"),  # default table, low septets
        ("5B5C5D5E7B7C7D7E7F", 0, "ÄÖÑÜäöñüà"),  # where ASCII has [\]^{|}~ GSM has letters
        ("31301B65", 0, "10€"),
        ("1B65", 0, "€"),
        ("1B3C", 0, "["),
        ("1B3E", 0, "]"),
        ("1B28", 0, "{"),
        ("1B29", 0, "}"),
        ("1B3D", 0, "~"),
        ("1B2F", 0, "\\"),
        ("1B40", 0, "|"),
        ("1B14", 0, "^"),
        ("1B0A", 0, "\f"),
        ("1B651B3C1B3E1B281B291B3D1B2F1B401B14", 1, "€[]{}~\\|^"),
        ("1B41", 0, "A"),  # escape + undefined extension septet: the default character (TS 23.038)
        ("1B1B", 0, " "),  # escape + escape: reserved, shown as a space
        ("41421B", 0, "AB"),  # a lone trailing escape stands for nothing
        ("4E61EF76E9", 3, "Naïvé"),
        ("4372E86D65206272FB6CE965", 3, "Crème brûlée"),
        ("FF", 3, "ÿ"),
        (ucs2("Привет"), 8, "Привет"),
        (ucs2("Türkçe ığüşöç"), 8, "Türkçe ığüşöç"),
        (ucs2("👍🎉"), 8, "👍🎉"),
        ("D83DDC4D", 8, "👍"),
        (ucs2("Ok 👍 да"), 8, "Ok 👍 да"),
        ("", 8, ""),
    ],
)
def test_decode_bin_text(hex_text, coding, text):
    got, raw = decode_bin(hex_text, coding)
    assert got == text
    assert raw == bytes.fromhex(hex_text.strip())


@pytest.mark.parametrize("coding", [2, 4, 5, 6, 7, 9, 245, 256, -1])
def test_non_text_codings_keep_bytes(coding):
    assert decode_bin("0001FEFF", coding) == (None, b"\x00\x01\xfe\xff")


@pytest.mark.parametrize(
    ("hex_text", "coding", "message"),
    [
        ("41424", 0, "odd number of digits"),
        ("4G", 0, "not hex"),
        ("41 42", 0, "not hex"),
        ("0x41", 0, "not hex"),
        ("4142zz", 4, "not hex"),  # invalid hex is invalid whatever the coding
        ("41424", 8, "odd number of digits"),
        ("004100", 8, "odd number of bytes"),
        ("D83D", 8, "unpaired surrogate"),  # high surrogate at the end
        ("D83D0041", 8, "unpaired surrogate"),  # high surrogate followed by a normal character
        ("DC4D", 8, "unpaired surrogate"),  # low surrogate alone
        ("0041DC4DD83D", 8, "unpaired surrogate"),  # pair in the wrong order
        ("4180", 0, "over 0x7F"),  # not a septet
    ],
)
def test_decode_bin_invalid(hex_text, coding, message):
    with pytest.raises(InvalidPayload, match=message):
        decode_bin(hex_text, coding)


def test_invalid_hex_keeps_the_cause():
    with pytest.raises(InvalidPayload) as caught:
        decode_bin("D83D", 8)
    assert isinstance(caught.value.__cause__, UnicodeDecodeError)


def test_hex_bytes_and_decode_bytes_compose():
    assert decode_bytes(hex_bytes("31301B65"), 0) == "10€"


@pytest.mark.parametrize(
    ("esm_class", "expected"),
    [(0, False), (0x40, True), (0x43, True), (0xC0, True), (0x03, False), (0x80, False), (0x04, False)],
)
def test_esm_has_udh(esm_class, expected):
    assert esm_has_udh(esm_class) is expected


@pytest.mark.parametrize(
    ("payload_hex", "concat", "body_hex"),
    [
        ("050003CC0201" "414243", Concat(0xCC, 2, 1), "414243"),  # 8-bit reference
        ("050003CC0202" "44", Concat(0xCC, 2, 2), "44"),
        ("0500030A0303", Concat(10, 3, 3), ""),  # a part may be empty
        ("0608041234020" "1" "414243", Concat(0x1234, 2, 1), "414243"),  # 16-bit reference
        ("060804FFFF0505" "00", Concat(0xFFFF, 5, 5), "00"),
        ("080003010201" "240101" "41", Concat(1, 2, 1), "41"),  # national language shift IE after
        ("08240101" "0003010201" "41", Concat(1, 2, 1), "41"),  # ... and before the concat IE
        ("0B0504158A0000" "0003070301" "41", Concat(7, 3, 1), "41"),  # port addressing first
        ("0605040B8423F0" "C0FFEE", None, "C0FFEE"),  # ports only (WAP push): no concatenation
        ("00" "414243", None, "414243"),  # UDHL 0
        ("0A0003010201" "0003020303" "41", Concat(2, 3, 3), "41"),  # repeated IE: the last wins
        ("07" "7000" "0003050201", Concat(5, 2, 1), ""),  # unknown IE with no data skipped
    ],
)
def test_split_udh(payload_hex, concat, body_hex):
    assert split_udh(bytes.fromhex(payload_hex)) == (concat, bytes.fromhex(body_hex))


@pytest.mark.parametrize(
    ("payload_hex", "message"),
    [
        ("", "payload is empty"),
        ("05000301", "overruns the payload"),  # UDHL 5, 3 bytes follow
        ("FF41", "overruns the payload"),
        ("030005CC02", "overruns the header"),  # IE length 5 in a 3-byte header
        ("0324050102", "overruns the header"),
        ("0100", "ends inside the IE"),  # only an IEI, no length byte
        ("050003CC0000", "0 parts"),
        ("050003CC0200", "part 0 is outside 1..2"),
        ("050003CC0203", "part 3 is outside 1..2"),
        ("060804123403" "04", "part 4 is outside 1..3"),
        ("0400020102", "must be 3 bytes"),
        ("0508030102" "01", "must be 4 bytes"),
    ],
)
def test_split_udh_invalid(payload_hex, message):
    with pytest.raises(InvalidPayload, match=message):
        split_udh(bytes.fromhex(payload_hex))


def test_udh_then_ucs2_text():
    payload = hex_bytes("050003A70201" + ucs2("Привет 👍"))
    concat, body = split_udh(payload)
    assert concat == Concat(0xA7, 2, 1)
    assert decode_bytes(body, 8) == "Привет 👍"


def test_udh_then_gsm_text_needs_no_fill_bits():
    concat, body = split_udh(hex_bytes("050003010101" + "31301B65"))
    assert (concat, decode_bytes(body, 0)) == (Concat(1, 1, 1), "10€")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("STOP", ("STOP", "")),
        ("stop", ("STOP", "")),
        ("Win123 my answer", ("WIN123", "my answer")),
        ("  stop now", ("STOP", "now")),
        ("\tinfo\tplease", ("INFO", "please")),
        ("join   the  club", ("JOIN", "the  club")),  # inner spacing of the rest is kept
        ("news\nline two", ("NEWS", "line two")),
        ("vote\u00a0yes", ("VOTE", "yes")),  # no-break space is whitespace too
        ("стоп", ("СТОП", "")),
        ("привет мир", ("ПРИВЕТ", "мир")),
        ("çıkış lütfen", ("ÇIKIŞ", "lütfen")),
        ("👍 great", ("👍", "great")),
        ("", ("", "")),
        ("   ", ("", "")),
        ("\t\n", ("", "")),
    ],
)
def test_keyword_split(text, expected):
    assert keyword_split(text) == expected
