"""deliver_sm -> the item an HTTP push would carry (app/smpp/pdu_map.py), through the real PDU
codec (smpplib with Infobip's vendor TLVs) and the same validation as HTTP ingest."""

from __future__ import annotations

from typing import Any

import pytest

from app import dlr, events, mo, number
from app.smpp import codec, pdu_map
from tools.fake_infobip.smpp import encode, receipt

DAY = "2026-12-07"


def mapped(spec: dict[str, Any]) -> tuple[str, Any]:
    """A spec -> PDU bytes (as the fake SMSC sends them) -> parsed -> mapped."""
    return pdu_map.map_deliver_sm(codec.fields_of(codec.parse(encode(spec))), DAY)


def report_data(**kw: Any) -> dict[str, Any]:
    kind, item = mapped(receipt("m1", **kw))
    assert kind == "dlr"
    return dlr.load(item)


@pytest.mark.parametrize(
    ("stat", "group", "status_id", "name"),
    [
        ("DELIVRD", "DELIVERED", 5, "DELIVERED_TO_HANDSET"),
        ("UNDELIV", "UNDELIVERABLE", 9, "UNDELIVERABLE_NOT_DELIVERED"),
        ("EXPIRED", "EXPIRED", 15, "EXPIRED_EXPIRED"),
        ("DELETED", "UNDELIVERABLE", 31, "UNDELIVERABLE_NOT_SENT"),
        ("REJECTD", "REJECTED", 6, "REJECTED_NETWORK"),
        ("REJECTED", "REJECTED", 6, "REJECTED_NETWORK"),
        ("ACCEPTD", "ACCEPTED", 0, "MESSAGE_ACCEPTED"),
        ("ENROUTE", "PENDING", 7, "PENDING_ENROUTE"),
        ("UNKNOWN", "EXPIRED", 29, "EXPIRED_DLR_UNKNOWN"),
        ("DELIVERY UNKNOWN", "EXPIRED", 29, "EXPIRED_DLR_UNKNOWN"),
    ],
)
def test_every_stat_maps_to_infobips_status(stat, group, status_id, name):
    data = report_data(stat=stat)
    assert data["status"]["groupName"] == group
    assert (data["status"]["id"], data["status"]["name"]) == (status_id, name)
    assert data["final"] is (group not in ("ACCEPTED", "PENDING"))


def test_an_unknown_stat_is_kept_with_a_warning():
    data = report_data(stat="WEIRD")
    assert data["status"]["name"] == "WEIRD" and data["final"] is False
    assert any("group unknown" in w for w in data["warnings"])


@pytest.mark.parametrize(
    ("err", "name", "permanent"),
    [
        ("000", "NO_ERROR", False),
        ("001", "EC_UNKNOWN_SUBSCRIBER", True),
        ("027", "EC_ABSENT_SUBSCRIBER", False),
        ("4101", "EC_VALIDITYEXPIRED", True),
    ],
)
def test_err_is_the_gsm_error_table(err, name, permanent):
    error = report_data(err=err)["error"]
    assert (error["id"], error["name"], error["permanent"]) == (int(err), name, permanent)


def test_the_report_text_tlvs_and_dates():
    data = report_data(stat="DELIVRD", done="2612071003")
    assert data["messageId"] == "m1"
    assert data["doneAt"] == "2026-12-07T10:03:00.000Z" and data["sentAt"] == "2026-12-07T10:03:00.000Z"
    assert data["to"] == "41793026727" and data["from"] == "InfoSMS"
    assert data["extra"]["smpp"] == {
        "sub": "001",
        "dlvrd": "001",
        "stat": "DELIVRD",
        "err": "000",
        "text": "",
    }


def test_the_seeds_dlvr_spelling_seconds_and_tlvs_without_text():
    text = "id:abc sub:001 dlvr:001 submit date:100729104953 done date:100729105012 stat:UNDELIV err:001"
    fields = codec.fields_of(
        codec.parse(
            encode(
                {
                    "source_addr": "385",
                    "esm_class": 4,
                    "short_message": text,
                    "tlvs": {"receipted_message_id": "abc"},
                }
            )
        )
    )
    data = dlr.load(pdu_map.report(fields))
    assert data["extra"]["smpp"]["dlvrd"] == "001"
    assert data["doneAt"] == "2010-07-29T10:50:12.000Z" and data["sentAt"] == "2010-07-29T10:49:53.000Z"
    # Only TLVs: message_state 2 (DELIVERED), network_error_code GSM 0.
    bare = codec.fields_of(
        codec.parse(
            encode(
                {
                    "esm_class": 4,
                    "short_message": "",
                    "tlvs": {
                        "receipted_message_id": "x1",
                        "message_state": 2,
                        "network_error_code": {"hex": "030000"},
                    },
                }
            )
        )
    )
    data = dlr.load(pdu_map.report(bare))
    assert (data["messageId"], data["status"]["id"], data["error"]["id"]) == ("x1", 5, 0)


def test_a_report_with_infobips_mccmnc_tlv_is_a_report_with_mccmnc():
    kind, item = mapped(receipt("m1", tlvs={"receipted_message_id": "m1", "ib_mcc_mnc": "21910"}))
    assert kind == "dlr" and dlr.load(item)["mccMnc"] == "21910"


def test_a_receipt_without_an_id_or_with_a_bad_date_is_rejected_for_quarantine():
    with pytest.raises(dlr.ValidationError):
        dlr.load(
            pdu_map.report(
                codec.fields_of(codec.parse(encode({"esm_class": 4, "short_message": "stat:DELIVRD"})))
            )
        )
    _, item = mapped(receipt("m1", done="26120799"))
    with pytest.raises(dlr.ValidationError):
        dlr.load(item)


def test_smpp_and_http_copies_of_one_report_are_the_same_report():
    smpp = {**report_data(stat="DELIVRD", done="2612071003"), "source": "smpp"}
    http = dlr.load(
        {
            "messageId": "m1",
            "doneAt": "2026-12-07T11:03:27.513+0100",
            "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"},
            "error": {"groupId": 0, "groupName": "OK", "id": 0, "name": "NO_ERROR", "permanent": False},
        }
    )
    assert events.same_report(smpp, {**http, "source": "push"})
    assert events.same_report({**http, "source": None}, smpp)
    later = dlr.load({**http, "doneAt": "2026-12-07T10:04:27.513Z"})
    assert not events.same_report(smpp, later)
    assert not events.same_report(smpp, {**smpp, "source": "smpp"})  # two SMPP copies: the event id decides


# --- number checks (the seed's two samples) ---------------------------------------------------

SEED_OK = (
    "id:40072910491427628 sub:001 dlvr:001 submit date:1007291049 done date:1007291049 "
    "stat:DELIVRD err:000 IMSI:219101100935850 MSC:38591016 HLR:38591xxxxxxx ORN:VipNet "
    "PON:VipNet RON:VipNet ROC:HR MCCMNC:21910"
)
# What both samples carry alike: the original network's country, the price, validity.
SEED_COMMON_TLVS = {
    "ib_original_network_name": "VipNet",
    "ib_original_country_name": "Croatia ",
    "ib_original_country_code": "HR",
    "ib_original_country_prefix": "385",
    "ib_price": 1,
    "ib_valid": 1,
}
SEED_OK_TLVS = {
    **SEED_COMMON_TLVS,
    "network_error_code": {"hex": "030000"},
    "message_state": 2,
    "receipted_message_id": "40072910491427628",
    "ib_hlr": "38591xxxxxxx",
    "ib_ported_network_name": "VipNet",
    "ib_roaming_network_name": "VipNet",
    "ib_roaming_country_name": "Croatia ",
    "ib_roaming_country_code": "HR",
    "ib_mcc_mnc": "21910",
    "ib_roaming_network_prefix": "91",
    "ib_roaming_country_prefix": "385",
    "ib_ported": 1,
    "ib_imsi": {"hex": "323139313031313030393335383530"},
    "ib_msc": {"hex": "3338353931303136"},
}
SEED_ERROR = (
    "id:40072910491419819 sub:001 dlvr:001 submit date:1007291049 done date:1007291049 "
    "stat:UNDELIV err:001 IMSI: MSC: ORN:VipNet MCCMNC:"
)
SEED_ERROR_TLVS = {
    **SEED_COMMON_TLVS,
    "network_error_code": {"hex": "030001"},
    "message_state": 5,
    "receipted_message_id": "40072910491419819",
    "ib_mcc_mnc": {"hex": ""},
    "ib_ported": 0,
}


def number_check(number_checked: str, text: str, tlvs: dict[str, Any]) -> dict[str, Any]:
    """A number-check deliver_sm as the seed shows it (`addr: 0 0 <number>`, `addr: 0 0 0000000000`)."""
    spec = {"source_addr": number_checked, "destination_addr": "0000000000", "esm_class": 4}
    kind, item = mapped({**spec, "short_message": text, "tlvs": tlvs})
    assert kind == "number"
    return number.load(item)


def test_the_seeds_successful_number_check():
    data = number_check("38591xxxxxxx", SEED_OK, SEED_OK_TLVS)
    assert data["messageId"] == "40072910491427628" and data["number"] == "38591xxxxxxx"
    assert (data["imsi"], data["msc"], data["hlr"], data["mccMnc"]) == (
        "219101100935850",
        "38591016",
        "38591xxxxxxx",
        "21910",
    )
    assert data["originalNetwork"] == {
        "name": "VipNet",
        "country": "Croatia",
        "countryCode": "HR",
        "countryPrefix": "385",
    }
    assert data["portedNetwork"] == {"name": "VipNet"}
    assert data["roamingNetwork"] == {
        "name": "VipNet",
        "prefix": "91",
        "country": "Croatia",
        "countryCode": "HR",
        "countryPrefix": "385",
    }
    assert (data["ported"], data["valid"], data["price"]) == (True, True, "0.01")
    assert data["status"]["name"] == "DELIVERED_TO_HANDSET" and data["error"]["name"] == "NO_ERROR"


def test_the_seeds_failed_number_check():
    data = number_check("385915369423", SEED_ERROR, SEED_ERROR_TLVS)
    assert "imsi" not in data and "msc" not in data and "mccMnc" not in data
    assert data["originalNetwork"]["name"] == "VipNet"
    assert (data["ported"], data["valid"], data["price"]) == (False, True, "0.01")
    assert data["status"]["groupName"] == "UNDELIVERABLE"
    assert data["error"]["name"] == "EC_UNKNOWN_SUBSCRIBER" and data["error"]["permanent"] is True


# --- inbound messages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "payload", "text"),
    [
        (0, bytes.fromhex("48656C6C6F201B65"), "Hello €"),
        (1, b"Hi there", "Hi there"),
        (3, "Grüße".encode("latin-1"), "Grüße"),
        (8, "Привет 👋".encode("utf-16-be"), "Привет 👋"),
        (4, b"\x00\xff", None),
    ],
)
def test_inbound_messages_decode_by_data_coding(coding, payload, text):
    kind, item = mapped(
        {
            "source_addr": "38598111",
            "destination_addr": "41793026727",
            "data_coding": coding,
            "short_message_hex": payload.hex(),
        }
    )
    assert kind == "mo"
    data = mo.load(item)
    assert data["text"] == text and data["from"] == "38598111" and data["to"] == "41793026727"
    assert data["binary"] == (None if text is not None else payload.hex())


def test_an_undecodable_short_message_is_rejected_for_quarantine():
    _, item = mapped({"source_addr": "38598111", "data_coding": 0, "short_message_hex": "80ff"})
    with pytest.raises(mo.ValidationError):
        mo.load(item)


def test_udh_and_sar_parts_carry_the_same_reassembly_key():
    udh = mo.load(
        mapped(
            {
                "source_addr": "385",
                "destination_addr": "41",
                "esm_class": 0x40,
                "short_message_hex": "050003070201" + b"Hello ".hex(),
            }
        )[1]
    )
    sar = mo.load(
        mapped(
            {
                "source_addr": "385",
                "destination_addr": "41",
                "short_message": "world",
                "tlvs": {"sar_msg_ref_num": 7, "sar_total_segments": 2, "sar_segment_seqnum": 2},
            }
        )[1]
    )
    assert udh["part"]["key"] == sar["part"]["key"] == "385:41:7"
    assert (udh["part"]["seq"], sar["part"]["seq"], sar["part"]["total"]) == (1, 2, 2)
    assert (udh["text"], sar["text"]) == ("Hello ", "world")


def test_a_resent_inbound_message_has_the_same_id_and_another_message_another():
    spec = {"source_addr": "385", "destination_addr": "41", "short_message": "STOP"}
    assert mapped(spec)[1][1]["messageid"] == mapped(spec)[1][1]["messageid"]
    assert mapped(spec)[1][1]["messageid"] != mapped({**spec, "short_message": "START"})[1][1]["messageid"]


def test_consumers_subscribe_to_number_checks_by_type_or_pattern(tmp_path):
    from app.routes import consumers_for, load_routes

    path = tmp_path / "routes.yml"
    path.write_text(
        "consumers:\n"
        "  - {name: hlr, url: 'http://127.0.0.1:9/hlr', events: ['number.*']}\n"
        "  - {name: exact, url: 'http://127.0.0.1:9/x', events: [number.checked]}\n"
        "  - {name: reports, url: 'http://127.0.0.1:9/r', events: ['dlr.*']}\n"
    )
    routes = load_routes(path)
    assert [c.name for c in consumers_for(routes, events.NUMBER_CHECKED, None)] == ["hlr", "exact"]
