"""app/dlr.py: one raw report -> normalized SPEC §3 `data`; ValidationError for bad reports."""

from __future__ import annotations

from decimal import Decimal

import pytest
from marshmallow import ValidationError

from app import dlr
from app.decode import decode_body
from app.errors import InvalidPayload
from tests.samples import doc, raw, report


def seed_items(name: str) -> list:
    """Raw items of a payload file, decoded the way ingest decodes them."""
    kind, body = decode_body(raw(name), None)
    return dlr.items(kind, body)


# --- the normalized shape -------------------------------------------------------------------


def test_v2_report_normalized():
    data = dlr.load(seed_items("notify_push.json")[0])
    assert data == {
        "messageId": "c9823180-94d4-4ea0-9bf3-ec907e7534a6",
        "bulkId": "BULK-ID-123-xyz",
        "to": "41793026731",
        "from": None,
        "sentAt": "2015-06-04T13:01:52.933Z",
        "doneAt": "2015-06-04T13:02:00.134Z",
        "smsCount": 1,
        "mccMnc": None,
        "price": {"pricePerMessage": "0.0001", "currency": "EUR"},
        "status": {
            "groupId": 3,
            "groupName": "DELIVERED",
            "id": 5,
            "name": "DELIVERED_TO_HANDSET",
            "description": "Message delivered to handset",
        },
        "error": {
            "groupId": 0,
            "groupName": "OK",
            "id": 0,
            "name": "NO_ERROR",
            "description": "No Error",
            "permanent": False,
        },
        "callbackData": "Нет ничего лучше родного дома.",
        "final": True,
        "warnings": [],
        "original": {"sentAt": "2015-06-04T13:01:52.933+0000", "doneAt": "2015-06-04T13:02:00.134+0000"},
    }


def test_v3_report_normalized_to_v2_names():
    data = dlr.load(seed_items("v3_report.json")[0])
    assert data["from"] == "InfoSMS"
    assert data["smsCount"] == 2
    assert data["mccMnc"] == "22801"
    assert data["entityId"] == "promotional-traffic-entity"
    assert data["applicationId"] == "marketing-automation-application"
    assert data["campaignReferenceId"] == "summersale"
    assert "extra" not in data  # sender, messageCount and platform were mapped, not kept aside
    assert data["final"] is True
    assert data["warnings"] == []


def test_v2_and_v3_shapes_of_one_report_give_the_same_data():
    v2 = report("m1", smsCount=2, mccmnc="22801", entityId="e", applicationId="a", **{"from": "InfoSMS"})
    v3 = report("m1", sender="InfoSMS", messageCount=2, mccMnc="22801")
    del v3["smsCount"]
    v3["platform"] = {"entityId": "e", "applicationId": "a"}
    assert dlr.load(v2) == dlr.load(v3)


def test_logs_fields_from_text_and_mccmnc():
    data = dlr.load(seed_items("logs.json")[0])
    assert (data["from"], data["text"], data["mccMnc"]) == ("InfoSMS", "Test SMS.", "22801")


def test_rejected_network_log_keeps_its_action():
    data = dlr.load(seed_items("logs_rejected_network.json")[0])
    assert data["status"]["action"] == "Contact account manager"
    assert data["status"]["groupName"] == "REJECTED"
    assert data["final"] is True
    assert data["price"] == {"pricePerMessage": "0", "currency": "EUR"}
    assert data["warnings"] == []


# --- dates ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "utc"),
    [
        ("2015-02-12T09:51:43.123+0100", "2015-02-12T08:51:43.123Z"),
        ("2015-06-04T13:01:52.933+0000", "2015-06-04T13:01:52.933Z"),
        ("2015-02-12T09:51:43.123+01:00", "2015-02-12T08:51:43.123Z"),
        ("2015-02-12T09:51:43.123-0530", "2015-02-12T15:21:43.123Z"),
        ("2015-02-12T09:51:43.123Z", "2015-02-12T09:51:43.123Z"),
        ("2015-02-12T09:51:43Z", "2015-02-12T09:51:43.000Z"),
        ("2015-02-12T09:51:43.123", "2015-02-12T09:51:43.123Z"),  # no offset: Infobip's UTC
        ("2015-02-12T23:30:00.000-0100", "2015-02-13T00:30:00.000Z"),  # the day changes
    ],
)
def test_dates_become_utc_text_and_originals_are_kept(given, utc):
    data = dlr.load(report("m1", sentAt=given, doneAt=given))
    assert data["sentAt"] == data["doneAt"] == utc
    assert data["original"] == {"sentAt": given, "doneAt": given}


def test_no_dates_no_original():
    item = report("m1")
    del item["sentAt"], item["doneAt"]
    data = dlr.load(item)
    assert (data["sentAt"], data["doneAt"]) == (None, None)
    assert "original" not in data


# --- prices ---------------------------------------------------------------------------------


def test_price_from_xml_text_keeps_every_digit():
    data = dlr.load(seed_items("notify_push.nested.xml")[0])
    assert data["price"] == {"pricePerMessage": "0.0001000000", "currency": "EUR"}


@pytest.mark.parametrize(
    ("given", "text"),
    [
        (0.01, "0.01"),  # a JSON float: its shortest text, not 0.01000000000000000020816681711721685
        (0.0001, "0.0001"),
        (0, "0"),
        ("0.0001000000", "0.0001000000"),
        (1e-7, "0.0000001"),  # never exponent notation
        (12.5, "12.5"),
    ],
)
def test_price_is_an_exact_decimal_string(given, text):
    data = dlr.load(report("m1", price={"pricePerMessage": given, "currency": "EUR"}))
    assert data["price"]["pricePerMessage"] == text
    assert Decimal(text) == Decimal(str(given))


def test_price_without_amount():
    data = dlr.load(report("m1", price={"currency": "EUR"}))
    assert data["price"] == {"currency": "EUR", "pricePerMessage": None}


# --- classification against Infobip's tables ------------------------------------------------


def test_error_group_ok_in_any_case_is_ok_without_warning():
    data = dlr.load(report("m1", error={"groupId": 0, "groupName": "Ok", "id": 0, "name": "NO_ERROR"}))
    assert data["error"]["groupName"] == "OK"
    assert data["warnings"] == []


def test_seed_status_group_3_named_pending_is_pending_with_a_warning():
    """The seed's intermediate report: groupId 3 (DELIVERED) but groupName PENDING, and status
    id 1 named PENDING_WAITING_DELIVERY (the table says id 3). Accepted, flagged, intermediate."""
    for item in seed_items("intermediate_push.json"):
        data = dlr.load(item)
        assert data["final"] is False
        assert data["status"]["groupName"] == "PENDING"
        assert data["status"]["groupId"] == 1
        assert (data["status"]["id"], data["status"]["name"]) == (1, "PENDING_WAITING_DELIVERY")
        assert len(data["warnings"]) == 2
        group_warning = next(w for w in data["warnings"] if "groupId" in w)
        for value in ("3", "DELIVERED", "PENDING", "groupName wins"):
            assert value in group_warning
        id_warning = next(w for w in data["warnings"] if "status.id" in w)
        for value in ("1", "PENDING_TIME_VIOLATION", "PENDING_WAITING_DELIVERY"):
            assert value in id_warning


def test_seed_error_27_absent_subscriber_is_known():
    data = dlr.load(seed_items("intermediate_push.json")[0])
    assert data["error"] == {
        "groupId": 1,
        "groupName": "HANDSET_ERRORS",
        "id": 27,
        "name": "EC_ABSENT_SUBSCRIBER",
        "description": "Absent Subscriber",
        "permanent": False,
    }


def test_unknown_status_id_0_message_accepted_is_kept_and_flagged():
    """The seed's send answers carry status id 0 MESSAGE_ACCEPTED, absent from the table."""
    for item in doc("send_accepted.json")["messages"]:
        data = dlr.load(item)
        assert data["status"] == {
            "groupId": 0,
            "groupName": "ACCEPTED",
            "id": 0,
            "name": "MESSAGE_ACCEPTED",
            "description": "Message accepted",
        }
        assert data["final"] is False
        assert data["warnings"] == ["status.id 0 is not in Infobip's table"]


@pytest.mark.parametrize(
    ("group_id", "group", "final"),
    [
        (0, "ACCEPTED", False),
        (1, "PENDING", False),
        (2, "UNDELIVERABLE", True),
        (3, "DELIVERED", True),
        (4, "EXPIRED", True),
        (5, "REJECTED", True),
    ],
)
def test_final_or_intermediate_by_group(group_id, group, final):
    by_both = dlr.load(report("m1", status={"groupId": group_id, "groupName": group}))
    by_name = dlr.load(report("m1", status={"groupName": group.lower()}))
    by_id = dlr.load(report("m1", status={"groupId": group_id}))
    for data in (by_both, by_name, by_id):
        assert data["final"] is final
        assert (data["status"]["groupId"], data["status"]["groupName"]) == (group_id, group)
        assert data["warnings"] == []


@pytest.mark.parametrize(
    ("status_id", "group", "final"), [(5, "DELIVERED", True), (7, "PENDING", False), (15, "EXPIRED", True)]
)
def test_status_id_alone_is_classified_and_filled_from_the_table(status_id, group, final):
    data = dlr.load(report("m1", status={"id": status_id}))
    assert data["status"]["groupName"] == group
    assert data["final"] is final
    assert data["status"]["name"] and data["status"]["description"]
    assert data["warnings"] == []


def test_status_action_filled_from_the_table():
    data = dlr.load(report("m1", status={"id": 6}))
    assert data["status"]["name"] == "REJECTED_NETWORK"
    assert data["status"]["action"] == "Contact account manager"
    russian = dlr.load(report("m1", status={"id": 6}), "ru")
    assert russian["status"]["action"] == "Свяжитесь с аккаунт-менеджером"


def test_report_names_and_descriptions_win_over_the_table():
    data = dlr.load(report("m1", status={"id": 5, "description": "Message delivered to handset"}))
    assert data["status"]["description"] == "Message delivered to handset"
    assert data["status"]["name"] == "DELIVERED_TO_HANDSET"


@pytest.mark.parametrize(
    ("error_id", "name", "group", "permanent"),
    [(1, "EC_UNKNOWN_SUBSCRIBER", "HANDSET_ERRORS", True), (4101, "EC_VALIDITYEXPIRED", "USER_ERRORS", True)],
)
def test_error_id_alone_is_filled_from_the_table(error_id, name, group, permanent):
    data = dlr.load(report("m1", error={"id": error_id}))
    assert (data["error"]["name"], data["error"]["groupName"], data["error"]["permanent"]) == (
        name,
        group,
        permanent,
    )


def test_unknown_status_group_is_intermediate_with_warnings():
    status = {"groupId": 9, "groupName": "LOST", "id": 99, "name": "LOST_IN_SPACE"}
    data = dlr.load(report("m1", status=dict(status)))
    assert data["final"] is False
    assert data["status"] == status
    assert any("LOST" in w for w in data["warnings"])
    assert any("99" in w for w in data["warnings"])
    assert "status group unknown; treated as intermediate" in data["warnings"]


def test_unknown_error_id_is_kept_and_flagged():
    data = dlr.load(report("m1", error={"groupId": 1, "id": 7777, "name": "EC_NEW"}))
    assert data["error"]["id"] == 7777 and data["error"]["name"] == "EC_NEW"
    assert data["warnings"] == ["error.id 7777 is not in Infobip's table"]


# --- liberal about shape --------------------------------------------------------------------


def test_unknown_fields_are_kept_under_extra():
    item = report("m1", flash=True, tracking={"type": "SOCIAL_INVITES"})
    item["status"]["reason"] = "new field"
    data = dlr.load(item)
    assert data["extra"] == {"flash": True, "tracking": {"type": "SOCIAL_INVITES"}}
    assert data["status"]["reason"] == "new field"


@pytest.mark.parametrize("bulk", ["", None])
def test_empty_bulk_id_is_none(bulk):
    assert dlr.load(report("m1", bulkId=bulk))["bulkId"] is None


def test_missing_bulk_id_is_none():
    item = report("m1")
    del item["bulkId"]
    assert dlr.load(item)["bulkId"] is None


@pytest.mark.parametrize("item", [{"messageId": "m1"}, {"messageId": "m1", "status": None},
                                  {"messageId": "m1", "status": {}}], ids=["missing", "null", "empty"])
def test_an_item_without_status_is_not_a_report(item):
    """SPEC §2.1 says any object may be missing; issue 19 overrides it for `status`: such an
    item was an inbound message posted to /infobip/dlr, stored as a report."""
    with pytest.raises(ValidationError) as caught:
        dlr.load(item)
    assert caught.value.messages == {"status": ["An item without a status is not a delivery report."]}


def test_missing_error_and_price_are_accepted():
    data = dlr.load({"messageId": "m1", "status": {"groupName": "PENDING"}})
    assert (data["error"], data["price"]) == (None, None)
    assert data["final"] is False and data["warnings"] == []


def test_null_objects_are_accepted():
    data = dlr.load({"messageId": "m1", "status": {"groupId": 3}, "error": None, "price": None})
    assert (data["error"], data["price"]) == (None, None)


@pytest.mark.parametrize("field", ["messageId", "bulkId", "to", "from", "entityId"])
def test_control_characters_in_identifiers_are_refused(field):
    with pytest.raises(ValidationError) as caught:
        dlr.load({"messageId": "m1", "status": {"groupId": 3}, field: "a\u0000b"})
    assert caught.value.messages == {field: ["Control characters are not allowed here."]}


def test_empty_xml_elements_are_absent_at_every_level():
    body = (
        b"<reportResponse><results><messageId>m1</messageId><smsCount/><sentAt></sentAt>"
        b"<status><groupId>3</groupId><name/></status>"
        b"<price><pricePerMessage/><currency>EUR</currency></price>"
        b"<error><id>27</id><permanent/></error><callbackData/></results></reportResponse>"
    )
    data = dlr.load(dlr.items(*decode_body(body, None))[0])
    assert (data["smsCount"], data["sentAt"], data["status"]["groupName"]) == (None, None, "DELIVERED")
    assert data["price"] == {"currency": "EUR", "pricePerMessage": None}
    assert data["error"]["permanent"] is False  # filled from the table, not refused
    assert data["callbackData"] == ""  # a string field keeps its empty string


def test_xml_values_are_coerced_like_json():
    from_xml = [dlr.load(item) for item in seed_items("notify_push.repeated.xml")]
    from_json = [dlr.load(item) for item in seed_items("notify_push.json")]
    for x, j in zip(from_xml, from_json, strict=True):
        assert Decimal(x["price"].pop("pricePerMessage")) == Decimal(j["price"].pop("pricePerMessage"))
        assert x == j
        assert isinstance(x["smsCount"], int) and x["error"]["permanent"] is False


# --- invalid reports ------------------------------------------------------------------------

BAD_ITEMS = {
    "missing messageId": ({"to": "41793026727"}, "messageId"),
    "empty messageId": ({"messageId": ""}, "messageId"),
    "messageId as int": ({"messageId": 12345}, "messageId"),
    "messageId too long": ({"messageId": "m" * 257}, "messageId"),
    "status as a string": ({"messageId": "m1", "status": "DELIVERED"}, "status"),
    "error as a list": ({"messageId": "m1", "error": [0]}, "error"),
    "smsCount many": ({"messageId": "m1", "smsCount": "many"}, "smsCount"),
    "smsCount negative": ({"messageId": "m1", "smsCount": -1}, "smsCount"),
    "smsCount over 64 bits": ({"messageId": "m1", "smsCount": 10**30}, "smsCount"),
    "status id over 64 bits": ({"messageId": "m1", "status": {"id": "99999999999999999999999"}}, "status"),
    "status id boolean": ({"messageId": "m1", "status": {"id": True}}, "status"),
    "bad date": ({"messageId": "m1", "sentAt": "12/02/2015 09:51"}, "sentAt"),
    "date as number": ({"messageId": "m1", "doneAt": 1423731103}, "doneAt"),
    "price not a number": ({"messageId": "m1", "price": {"pricePerMessage": "free"}}, "price"),
    "price NaN": ({"messageId": "m1", "price": {"pricePerMessage": "NaN"}}, "price"),
    "price huge exponent": ({"messageId": "m1", "price": {"pricePerMessage": "1e999999999"}}, "price"),
    "price tiny exponent": ({"messageId": "m1", "price": {"pricePerMessage": "1e-999999999"}}, "price"),
    "permanent not boolean": ({"messageId": "m1", "error": {"permanent": "perhaps"}}, "error"),
    "to as number": ({"messageId": "m1", "to": 41793026727}, "to"),
}


@pytest.mark.parametrize(("item", "field"), BAD_ITEMS.values(), ids=BAD_ITEMS.keys())
def test_invalid_report_raises_validation_error_naming_the_field(item, field):
    with pytest.raises(ValidationError) as caught:
        dlr.load(item)
    assert field in caught.value.messages


@pytest.mark.parametrize("item", ["m1", 42, None, ["messageId", "m1"], True], ids=repr)
def test_non_object_item_is_invalid(item):
    with pytest.raises(ValidationError) as caught:
        dlr.load(item)
    assert caught.value.messages == {"_schema": ["Invalid input type."]}


def test_a_bucket_loads_exactly_as_its_reports_one_by_one():
    """load_all validates a bucket in one marshmallow pass: same data, same errors, same order."""
    bucket = [*seed_items("notify_push.json"), *(item for item, _field in BAD_ITEMS.values()),
              "m1", None, report("m2"), {**report("m3"), "sentAt": "yesterday"}]
    one_by_one_accepted, one_by_one_rejected = [], []
    for index, item in enumerate(bucket):
        try:
            one_by_one_accepted.append(dlr.load(item))
        except ValidationError as err:
            one_by_one_rejected.append({"index": index, "errors": err.messages})
    assert dlr.load_all(bucket) == (one_by_one_accepted, one_by_one_rejected)
    assert len(one_by_one_accepted) == len(seed_items("notify_push.json")) + 1
    assert len(one_by_one_rejected) == len(BAD_ITEMS) + 3


# --- finding the items ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [[], ["results"], {"results": {}}, {"results": "x"}, {"report": []}, "results", None]
)
def test_json_body_must_be_an_object_with_a_results_list(body):
    with pytest.raises(InvalidPayload):
        dlr.items("json", body)


def test_json_results_list_is_returned_as_is():
    assert dlr.items("json", {"results": [1, {"messageId": "a"}]}) == [1, {"messageId": "a"}]


@pytest.mark.parametrize("body", [{"logsResponse": {}}, {"reportresponse": {}}, "x", None])
def test_xml_root_must_be_report_response(body):
    with pytest.raises(InvalidPayload, match="reportResponse"):
        dlr.items("xml", body)


@pytest.mark.parametrize("root", ["", None, {}, {"other": "x"}])
def test_xml_without_results_has_no_items(root):
    assert dlr.items("xml", {"reportResponse": root}) == []


def test_remembered_nested_objects_keep_value_types_and_errors():
    """status/error/price loads are remembered per value (app.dlr.RepeatedNested): a value equal
    in Python but of another type (True == 1) must not reuse a remembered result, and an invalid
    object is refused every time."""
    good = report("m-memo-1", status={"groupId": 1, "groupName": "PENDING", "id": 1})
    first, again = dlr.load(good), dlr.load(good)
    assert first == again and first["status"] is not again["status"]
    flagged = report("m-memo-2", status={"groupId": 1, "groupName": "PENDING", "id": True})
    for _ in range(2):
        with pytest.raises(ValidationError) as err:
            dlr.load(flagged)
        assert "id" in err.value.messages["status"]


# --- the fast path --------------------------------------------------------------------------

# Values of every JSON type and the edge cases marshmallow judges: each is tried in every field.
ODD_VALUES = [None, "", "  ", "x", "a\x00b", "ä\x85", "2015-06-04T13:01:52+0100", "2015-06-04", "yesterday",
              "1", 0, 1, -1, 2**63, 2**64, 1.0, 1.5, True, False, [], ["x"], {}, {"groupId": 3},
              {"groupId": "3"}, {"groupId": 2**64}, {"pricePerMessage": "1e-999"}, {"id": 5, "x": [1]},
              "m" * 257]


def _marshmallow(item):
    try:
        return dlr.load(item)
    except ValidationError:
        return "rejected"


@pytest.mark.parametrize("field", [*dlr._FIELDS, "sender", "messageCount", "platform", "unknownField"])
def test_the_fast_path_loads_what_marshmallow_loads_or_leaves_it_to_marshmallow(field):
    """quick_load never disagrees with marshmallow: same data, or None (marshmallow decides)."""
    for value in ODD_VALUES:
        for item in (report("m1", **{field: value}), {k: v for k, v in report("m1").items() if k != field}):
            fast = dlr.quick_load(item)
            assert fast is None or fast == _marshmallow(item), (field, value)


@pytest.mark.parametrize("name", ["notify_push.json", "intermediate_push.json", "logs.json",
                                  "logs_rejected_network.json", "reports_pull.json", "v3_report.json"])
def test_json_reports_as_infobip_sends_them_take_the_fast_path(name):
    for item in seed_items(name):
        fast = dlr.quick_load(item, "ru")
        assert fast is not None and fast == dlr.load(item, "ru")


def test_a_bucket_mixing_fast_slow_and_bad_reports_keeps_its_order():
    bucket = [report("m1"), report("m2", smsCount="2"), "m3", report("m4"), report("m5", sentAt="x")]
    accepted, rejected = dlr.load_all(bucket)
    assert [data["messageId"] for data in accepted] == ["m1", "m2", "m4"]
    assert accepted[1]["smsCount"] == 2  # marshmallow's path converts the text
    assert [x["index"] for x in rejected] == [2, 4]


def test_the_fast_path_knows_every_field_of_the_schema():
    """A field added to the schema must be added to quick_load's checks too (or it would pass
    unchecked there)."""
    checked = {"messageId", "sentAt", "doneAt", "smsCount", *dlr._CLEAN_TEXT, *dlr._ANY_TEXT,
               *(name for name, _schema in dlr._NESTED)}
    assert checked == set(dlr._FIELDS)


@pytest.mark.parametrize("language", ["en", "ru"])
def test_checking_in_the_request_and_settling_in_the_drain_is_loading(language):
    """check_all (the request) + settle (the drain) == load_all: the same answers, the same data;
    a report the fast path checked goes as it came, one marshmallow loaded goes loaded."""
    bucket = [*seed_items("notify_push.json"), *seed_items("v3_report.json"), report("m2", smsCount="2"),
              "m3", None, {**report("m4"), "sentAt": "yesterday"}, report("m5", doneAt="")]
    accepted, rejected = dlr.check_all(bucket, language)
    loaded, refused = dlr.load_all(bucket, language)
    assert rejected == refused
    assert [("raw" in payload) for payload in accepted] == [True] * (len(loaded) - 2) + [False, True]
    for payload in accepted:
        dlr.settle(payload)
    assert [payload for payload in accepted] == [{"data": data} for data in loaded]


def test_settling_moves_the_source_into_the_data():
    payload = {"raw": report("m1"), "source": "pull"}
    dlr.settle(payload)
    assert payload == {"data": {**dlr.load(report("m1")), "source": "pull"}}
