"""POST /infobip/dlr through HTTP: answer codes (SPEC §2.3), quarantine (§5.4), and the whole
path HTTP -> inbox -> RQ worker -> state -> query API for every report the seed documents."""

from __future__ import annotations

import base64
import io
import json
from decimal import Decimal
from typing import Any

import orjson
import pytest

from app import create_app, enqueue
from app.errors import ConfigError
from app.keys import EVENT_STREAM, QUARANTINE
from tests.conftest import API_KEY, TOKEN, Infobip, basic_header
from tests.samples import BILLION_LAUGHS, EXTERNAL_ENTITY, PLAIN_DOCTYPE, push, raw, report


def quarantined(r) -> list[dict[str, Any]]:
    return [orjson.loads(entry) for entry in r.lrange(QUARANTINE, 0, -1)]


def view(api, message_id: str) -> dict[str, Any]:
    got = api.get(f"/api/messages/{message_id}")
    assert got.status_code == 200, got.json
    return got.json


# --- every seed example, end to end ---------------------------------------------------------

SEED_REPORTS = {
    "reports_pull.json": [
        ("bcfb828b-7df9-4e7b-8715-f34f5c61271a", "DELIVERED", True, "0.01", 0),
        ("12db39c3-7822-4e72-a3ec-c87442c0ffc5", "DELIVERED", True, "0.01", 0),
    ],
    "reports_by_message_id.json": [("ff4804ef-6ab6-4abd-984d-ab3b1387e852", "DELIVERED", True, "0.01", 0)],
    "logs.json": [
        ("07e03aae-fabc-44ad-b1ce-222e14094d70", "DELIVERED", True, "0.01", 0),
        ("1f21d8d7-f306-4f53-9f6e-eddfce9849ea", "DELIVERED", True, "0.01", 0),
    ],
    "logs_rejected_network.json": [("fc0cbfb8-7a72-40da-a76d-e2c2d9400835", "REJECTED", True, "0", 0)],
    "notify_push.json": [
        ("c9823180-94d4-4ea0-9bf3-ec907e7534a6", "DELIVERED", True, "0.0001", 0),
        ("MESSAGE-ID-123-xyz", "DELIVERED", True, "0.0001", 0),
    ],
    "intermediate_push.json": [
        ("c9823180-94d4-4ea0-9bf3-ec907e7534a6", "PENDING", False, "0.0001", 2),
        ("MESSAGE-ID-123-xyz", "PENDING", False, "0.0001", 2),
    ],
    "v3_report.json": [("MESSAGE-ID-v3-001", "DELIVERED", True, "0.01", 0)],
}


@pytest.mark.parametrize("name", SEED_REPORTS)
def test_seed_example_end_to_end(name, infobip, work, api, r):
    expected = SEED_REPORTS[name]
    resp = infobip.dlr(raw(name))
    assert resp.status_code == 200
    assert resp.json == {"accepted": len(expected), "rejected": []}
    work()
    for message_id, group, final, price, warnings in expected:
        got = view(api, message_id)
        assert got["status"]["groupName"] == group
        assert got["final"] is final
        assert got["price"]["pricePerMessage"] == price
        assert got["price"]["currency"] == "EUR"
        assert len(got["warnings"]) == warnings
        assert len(got["history"]) == 1
    assert r.xlen(EVENT_STREAM) == len(expected)
    assert quarantined(r) == []


def test_seed_fields_reach_the_api(infobip, work, api):
    infobip.dlr(raw("logs.json"))
    infobip.dlr(raw("notify_push.json"))
    infobip.dlr(raw("v3_report.json"))
    work()
    log = view(api, "07e03aae-fabc-44ad-b1ce-222e14094d70")
    assert (log["from"], log["text"], log["mccMnc"]) == ("InfoSMS", "Test SMS.", "22801")
    assert log["to"] == "41793026727"
    assert (log["sentAt"], log["doneAt"]) == ("2015-02-23T16:41:11.833Z", "2015-02-23T16:41:11.843Z")
    assert log["original"] == {
        "sentAt": "2015-02-23T17:41:11.833+0100",
        "doneAt": "2015-02-23T17:41:11.843+0100",
    }
    pushed = view(api, "MESSAGE-ID-123-xyz")
    assert pushed["callbackData"] == "Нет ничего лучше родного дома."
    assert pushed["bulkId"] == "BULK-ID-123-xyz"
    assert pushed["error"]["name"] == "NO_ERROR" and pushed["error"]["permanent"] is False
    v3 = view(api, "MESSAGE-ID-v3-001")
    assert (v3["from"], v3["smsCount"], v3["campaignReferenceId"]) == ("InfoSMS", 2, "summersale")
    assert v3["entityId"] == "promotional-traffic-entity"


def test_intermediate_then_final_seed_reports(infobip, work, api):
    """The seed's intermediate push (EC_ABSENT_SUBSCRIBER) and then its final push."""
    infobip.dlr(raw("intermediate_push.json"))
    work()
    infobip.dlr(raw("notify_push.json"))
    work()
    got = view(api, "MESSAGE-ID-123-xyz")
    assert got["final"] is True and got["status"]["groupName"] == "DELIVERED"
    assert [h["status"]["groupName"] for h in got["history"]] == ["PENDING", "DELIVERED"]
    assert got["history"][0]["error"]["name"] == "EC_ABSENT_SUBSCRIBER"
    assert got["history"][0]["warnings"]
    assert got["warnings"] == []


# --- XML gives the same state as JSON -------------------------------------------------------

XML_FORMS = [
    ("notify_push.json", "notify_push.nested.xml"),
    ("notify_push.json", "notify_push.repeated.xml"),
    ("intermediate_push.json", "intermediate_push.repeated.xml"),
    ("logs_rejected_network.json", "logs_rejected_network.nested.xml"),
    ("reports_by_message_id.json", "reports_by_message_id.single.xml"),
    ("reports_by_message_id.json", "reports_by_message_id.single-nested.xml"),
]


def comparable(report_view: dict[str, Any]) -> dict[str, Any]:
    """A stored report without its arrival time, the price as a Decimal: JSON numbers arrive as
    floats (0.0001000000 is 0.0001), XML keeps the text's digits; the amounts are equal."""
    out = {k: v for k, v in report_view.items() if k != "receivedAt"}
    if out.get("price"):
        out["price"] = {**out["price"], "pricePerMessage": Decimal(out["price"]["pricePerMessage"])}
    if "history" in out:
        out["history"] = [comparable(h) for h in out["history"]]
    return out


def state_after(infobip, work, api, r, name: str, content_type: str) -> list[dict[str, Any]]:
    r.flushall()
    resp = infobip.dlr(raw(name), content_type)
    assert resp.status_code == 200, resp.json
    work()
    ids = [item["messageId"] for item in json.loads(raw(json_of(name)))["results"]]
    return [comparable(view(api, message_id)) for message_id in ids]


def json_of(name: str) -> str:
    return next(j for j, x in XML_FORMS if name in (j, x))


@pytest.mark.parametrize(("json_name", "xml_name"), XML_FORMS, ids=[x for _, x in XML_FORMS])
def test_xml_form_gives_the_same_state_as_json(json_name, xml_name, infobip, work, api, r):
    from_json = state_after(infobip, work, api, r, json_name, "application/json")
    from_xml = state_after(infobip, work, api, r, xml_name, "application/xml")
    assert from_xml == from_json
    assert r.xlen(EVENT_STREAM) == len(from_json)


def test_xml_price_keeps_the_seed_digits(infobip, work, api):
    infobip.dlr(raw("notify_push.nested.xml"), "text/xml")
    work()
    assert view(api, "MESSAGE-ID-123-xyz")["price"] == {"pricePerMessage": "0.0001000000", "currency": "EUR"}


def test_xml_callback_data_keeps_its_leading_space(infobip, work, api):
    infobip.dlr(raw("intermediate_push.repeated.xml"), "application/xml")
    work()
    assert view(api, "MESSAGE-ID-123-xyz")["callbackData"] == " Нет ничего лучше родного дома."


# --- Content-Type is sniffed ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("notify_push.json", None),
        ("notify_push.json", "text/plain"),
        ("notify_push.json", "application/xml"),
        ("notify_push.json", "application/x-www-form-urlencoded"),
        ("notify_push.nested.xml", None),
        ("notify_push.nested.xml", "application/json"),
        ("notify_push.repeated.xml", "text/html; charset=utf-8"),
    ],
)
def test_missing_or_wrong_content_type_is_sniffed(name, content_type, infobip, work, api):
    resp = infobip.dlr(raw(name), content_type)
    assert resp.status_code == 200
    assert resp.json["accepted"] == 2
    work()
    assert view(api, "MESSAGE-ID-123-xyz")["final"] is True


# --- partial batches ------------------------------------------------------------------------


def test_partial_batch_accepts_the_valid_and_quarantines_the_rest(infobip, work, api, r):
    body = push(
        report("ok-1"),
        {"to": "41793026727", "status": {"groupName": "DELIVERED"}},
        report("ok-2", status={"groupId": 1, "groupName": "PENDING", "id": 7}),
        "not an object",
        report("bad-count", smsCount="many"),
    )
    resp = infobip.dlr(body)
    assert resp.status_code == 200
    assert resp.json["accepted"] == 2
    rejected = resp.json["rejected"]
    assert [entry["index"] for entry in rejected] == [1, 3, 4]
    assert "messageId" in rejected[0]["errors"]
    assert rejected[1]["errors"] == {"_schema": ["Invalid input type."]}
    assert "smsCount" in rejected[2]["errors"]

    [entry] = quarantined(r)
    assert entry["reason"] == "invalid items"
    assert entry["errors"] == rejected
    assert json.loads(entry["body"]) == body
    assert entry["path"] == "/infobip/dlr" and entry["method"] == "POST"
    assert entry["id"].startswith("q_") and entry["at"].endswith("Z")

    work()
    assert view(api, "ok-1")["final"] is True
    assert view(api, "ok-2")["final"] is False
    assert api.get("/api/messages/bad-count").status_code == 404
    assert r.xlen(EVENT_STREAM) == 2


def test_nothing_valid_is_400_with_details_and_the_body_quarantined(infobip, work, r):
    body = push({"to": "1"}, report("m1", status="DELIVERED"))
    resp = infobip.dlr(body)
    assert resp.status_code == 400
    assert resp.json["error"] == "invalid_payload"
    assert [d["index"] for d in resp.json["details"]] == [0, 1]
    assert "messageId" in resp.json["details"][0]["errors"]
    assert "status" in resp.json["details"][1]["errors"]
    [entry] = quarantined(r)
    assert json.loads(entry["body"]) == body
    assert entry["errors"] == resp.json["details"]
    work()
    assert r.xlen(EVENT_STREAM) == 0


def test_quarantine_is_newest_first(infobip, r):
    for body in (b'{"results": []}', b"{broken", b""):
        infobip.dlr(body)
    reasons = [q["reason"] for q in quarantined(r)]
    assert reasons[0] == "empty body"
    assert reasons[1].startswith("invalid JSON")
    assert reasons[2] == "no items in the body"


def test_quarantine_is_bounded(client, config, r):
    app = create_app({**config, "QUARANTINE_MAX": 3})
    sender = Infobip(app.test_client())
    for n in range(5):
        assert sender.dlr(f'{{"results": [{{"n": {n}}}]}}').status_code == 400
    assert [json.loads(q["body"])["results"][0]["n"] for q in quarantined(r)] == [4, 3, 2]


def test_undecodable_body_is_quarantined_as_base64(infobip, r):
    body = b'{"results": [{"messageId": "\xff\xfe"}]}'
    assert infobip.dlr(body).status_code == 400
    [entry] = quarantined(r)
    assert "body" not in entry
    assert base64.b64decode(entry["bodyBase64"]) == body


# --- the bad-input corpus -------------------------------------------------------------------

NOTIFY_JSON = raw("notify_push.json")
NOTIFY_XML = raw("notify_push.nested.xml")

J, X = "application/json", "application/xml"
BAD_INPUTS = {
    "truncated JSON": (NOTIFY_JSON[: len(NOTIFY_JSON) // 2], J, 400),
    "truncated XML": (NOTIFY_XML[: len(NOTIFY_XML) // 2], X, 400),
    "messageId as int": (b'{"results": [{"messageId": 12345}]}', J, 400),
    "smsCount not a number": (b'{"results": [{"messageId": "m1", "smsCount": "many"}]}', J, 400),
    "status as a string": (b'{"results": [{"messageId": "m1", "status": "DELIVERED"}]}', J, 400),
    "bad date": (b'{"results": [{"messageId": "m1", "doneAt": "yesterday"}]}', J, 400),
    "missing messageId": (b'{"results": [{"to": "41793026727"}]}', J, 400),
    "empty messageId": (b'{"results": [{"messageId": ""}]}', J, 400),
    "XML missing messageId": (b"<reportResponse><results><to>1</to></results></reportResponse>", X, 400),
    "XML billion laughs": (BILLION_LAUGHS, X, 400),
    "XML external entity": (EXTERNAL_ENTITY, X, 400),
    "XML plain DOCTYPE": (PLAIN_DOCTYPE, X, 400),
    "XML wrong root": (b"<logsResponse><results><messageId>m</messageId></results></logsResponse>", X, 400),
    "XML no results": (b"<reportResponse></reportResponse>", X, 400),
    "results is an object": (b'{"results": {}}', J, 400),
    "results is empty": (b'{"results": []}', J, 400),
    "results is null": (b'{"results": null}', J, 400),
    "no results key": (b'{"messageId": "m1"}', J, 400),
    "top-level list": (b'[{"messageId": "m1"}]', J, 400),
    "null item": (b'{"results": [null]}', J, 400),
    "empty body": (b"", J, 400),
    "blank body": (b" \r\n ", None, 400),
    "declared JSON, not JSON": (b"messageId=m1", J, 400),
    "invalid UTF-8": (b'{"results": [{"messageId": "\xff"}]}', J, 400),
    "integer over 64 bits": (b'{"results": [{"messageId": "m1", "smsCount": 1e30}]}', J, 400),
    "status id over 64 bits": (
        b'{"results": [{"messageId": "m1", "status": {"id": "99999999999999999999999"}}]}',
        J,
        400,
    ),
    "price with a huge exponent": (
        b'{"results": [{"messageId": "m1", "price": {"pricePerMessage": "1e999999999"}}]}',
        J,
        400,
    ),
    "number out of double range": (b'{"results": [{"messageId": "m1", "smsCount": 1e400}]}', None, 400),
    "deeply nested JSON": (b'{"results": [' + b"[" * 5000 + b"]" * 5000 + b"]}", None, 400),
    "plain text body": (b"DELIVERED m1", "text/plain", 415),
    "plain text, no Content-Type": (b"DELIVERED m1", None, 415),
    "form-encoded body": (b"messageId=m1&status=DELIVERED", "application/x-www-form-urlencoded", 415),
}


@pytest.mark.parametrize(("body", "content_type", "status"), BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_exact_status_and_quarantined(body, content_type, status, infobip, work, r):
    resp = infobip.dlr(body, content_type)
    assert resp.status_code == status, resp.json
    assert resp.is_json and resp.json["error"] in ("invalid_payload", "unsupported_media_type")
    assert resp.json["message"]
    [entry] = quarantined(r)
    assert entry["reason"]
    if body:
        assert entry.get("body", "").encode() == body or "bodyBase64" in entry
    work()
    assert r.xlen(EVENT_STREAM) == 0


class TestOversizedBody:
    @pytest.fixture
    def config(self, config):
        return {**config, "MAX_BODY_BYTES": 512}

    def test_body_over_the_cap_is_413_and_quarantined_without_body(self, infobip, r):
        body = NOTIFY_JSON
        assert len(body) > 512
        resp = infobip.dlr(body)
        assert resp.status_code == 413
        assert resp.is_json and resp.json["error"] == "request_entity_too_large"
        [entry] = quarantined(r)
        assert entry["reason"] == "body too large"
        assert "body" not in entry and "bodyBase64" not in entry
        assert entry["headers"]["Content-Length"] == str(len(body))

    def test_chunked_body_over_the_cap_is_413(self, client, r):
        """No Content-Length (chunked transfer): the cap holds while reading."""
        resp = client.post(
            "/infobip/dlr",
            input_stream=io.BytesIO(NOTIFY_JSON),
            headers={**basic_header(), "Content-Type": "application/json"},
            environ_overrides={"wsgi.input_terminated": True},
        )
        assert resp.status_code == 413
        assert quarantined(r)[0]["reason"] == "body too large"

    def test_body_under_the_cap_is_accepted(self, infobip):
        assert infobip.dlr(push(report("m1"))).status_code == 200


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_and_not_quarantined(method, client, r):
    resp = client.open("/infobip/dlr", method=method, headers=basic_header())
    assert resp.status_code == 405
    assert resp.is_json
    assert "POST" in resp.headers["Allow"]
    assert quarantined(r) == []


def test_a_full_bucket_of_100_reports(infobip, work, api, r):
    """Infobip's default maxBucketSize: 100 reports in one request, over every drain lane."""
    body = push(*(report(f"msg-{n:03}", bulkId="bucket") for n in range(100)))
    assert infobip.dlr(body).json == {"accepted": 100, "rejected": []}
    assert {key.decode() for key in r.keys("inbox:*")} == {enqueue.lane(lane).inbox for lane in range(4)}
    work()
    assert r.xlen(EVENT_STREAM) == 100
    assert api.get("/api/bulks/bucket").json["total"] == 100
    assert r.keys("inbox:*") == [] and r.keys("batch:*") == []


# --- never a 500 ----------------------------------------------------------------------------

ODD_VALUES = [None, "", " ", 0, -1, 1.5, "x", [], {}, True, 10**30, "1e999999999", "NaN", ["x"], {"a": 1}]
SEED_ITEM = json.loads(NOTIFY_JSON)["results"][0]
FIELD_PATHS = [(key,) for key in SEED_ITEM] + [
    (obj, key) for obj in ("price", "status", "error") for key in SEED_ITEM[obj]
] + [("mccMnc",), ("from",), ("platform",), ("sender",), ("messageCount",)]


def mutated(path: tuple[str, ...], value: Any) -> bytes:
    item = json.loads(json.dumps(SEED_ITEM))
    target = item
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps({"results": [item]}).encode()


@pytest.mark.parametrize("path", FIELD_PATHS, ids=".".join)
def test_odd_values_never_give_a_500(path, infobip, work):
    for value in ODD_VALUES:
        resp = infobip.dlr(mutated(path, value))
        assert resp.status_code in (200, 400), (path, value, resp.json)
        assert resp.is_json
    work()  # what was accepted can be applied too


@pytest.mark.parametrize("name", ["notify_push.json", "notify_push.nested.xml", "notify_push.repeated.xml"])
def test_every_truncation_is_400(name, infobip, r):
    body = raw(name).rstrip()
    for cut in range(1, len(body), 17):
        resp = infobip.dlr(body[:cut], None)
        assert resp.status_code in (400, 415), (cut, resp.json)
    assert r.llen(QUARANTINE) == len(range(1, len(body), 17))


# --- Redis down -----------------------------------------------------------------------------


@pytest.fixture
def redis_down_app(data_plane_down):
    return data_plane_down()


@pytest.mark.parametrize(
    "body", [NOTIFY_JSON, NOTIFY_XML, b'{"results": []}', b"not json"], ids=["json", "xml", "invalid", "415"]
)
def test_redis_down_is_503_with_retry_after(body, redis_down_app):
    resp = Infobip(redis_down_app.test_client()).dlr(body, None)
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) > 0
    assert resp.json["error"] == "store_unavailable"


def test_redis_down_still_checks_credentials_first(redis_down_app):
    resp = redis_down_app.test_client().post("/infobip/dlr", data=NOTIFY_JSON)
    assert resp.status_code == 401


# --- an inbound message posted to the DLR URL (issue 19) -------------------------------------

NO_CONTROL = "Control characters are not allowed here."
NOT_A_REPORT = "An item without a status is not a delivery report."
HINT = "looks like an inbound message: is the MO forward URL pointing at /infobip/dlr?"
INBOUND = {"messageId": "mo-misfiled-1", "from": "38598123123", "to": "41793026727", "text": "STOP ads",
           "cleanText": "ads", "keyword": "STOP", "receivedAt": "2026-11-29T10:00:00.123+0000", "smsCount": 1}
INBOUND_XML = (b"<reportResponse><results><result><messageId>mo-misfiled-1</messageId>"
               b"<from>38598123123</from><to>41793026727</to><text>STOP ads</text>"
               b"<cleanText>ads</cleanText><keyword>STOP</keyword>"
               b"<receivedAt>2026-11-29T10:00:00.123+0000</receivedAt><smsCount>1</smsCount></result>"
               b"</results></reportResponse>")


@pytest.mark.parametrize("body, content_type", [(orjson.dumps({"results": [INBOUND]}), "application/json"),
                                                (INBOUND_XML, "application/xml")], ids=["JSON", "XML"])
def test_an_inbound_message_posted_to_dlr_is_refused_and_recovered_by_replay_to_mo(
        body, content_type, infobip, api, work, r):
    resp = infobip.dlr(body, content_type)
    assert resp.status_code == 400
    assert resp.json["details"] == [{"index": 0, "errors": {
        "status": [NOT_A_REPORT, HINT]}}]
    [entry] = quarantined(r)
    assert entry["reason"] == f"invalid items: {HINT}"
    work()
    assert r.xlen(EVENT_STREAM) == 0  # no dlr.intermediate for anyone
    assert api.get("/api/messages/mo-misfiled-1").status_code == 404
    replayed = api.post(f"/api/quarantine/{entry['id']}/replay", {"to": "mo"})
    assert replayed.json == {"id": entry["id"], "status": 200, "accepted": 1, "rejected": []}
    assert quarantined(r) == []
    work()
    got = api.get("/api/inbound/mo-misfiled-1").json
    assert (got["text"], got["keyword"], got["from"]) == ("STOP ads", "STOP", "38598123123")
    types = [orjson.loads(e[b"event"])["type"] for _, e in r.xrange(EVENT_STREAM)]
    assert types == ["mo.received", "contact.optout"]  # the MO, then its STOP (SPEC §11)
    assert api.post(f"/api/quarantine/{entry['id']}/replay", {"to": "mo"}).status_code == 404  # once


def test_in_a_mixed_batch_only_the_inbound_item_is_rejected_and_replayed_to_mo(infobip, api, work, r):
    resp = infobip.dlr(push(report("dlr-1"), INBOUND))
    assert resp.status_code == 200 and resp.json["accepted"] == 1
    assert resp.json["rejected"] == [{"index": 1, "errors": {
        "status": [NOT_A_REPORT, HINT]}}]
    [entry] = quarantined(r)
    result = infobip.client.application.test_cli_runner().invoke(
        args=["quarantine", "replay", entry["id"], "--to", "mo"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["accepted"] == 1
    work()
    assert api.get("/api/inbound/mo-misfiled-1").status_code == 200
    assert api.get("/api/inbound/dlr-1").status_code == 404  # the report did not become an MO
    assert api.get("/api/messages/dlr-1").status_code == 200


def test_an_item_without_status_and_without_inbound_fields_is_plainly_invalid(infobip, r):
    resp = infobip.dlr(push({"messageId": "m1", "to": "41793026727"}))
    assert resp.status_code == 400
    assert resp.json["details"][0]["errors"] == {"status": [NOT_A_REPORT]}
    assert quarantined(r)[0]["reason"] == "invalid items"


def test_a_replay_target_other_than_mo_is_400(infobip, api, r):
    infobip.dlr(push({"messageId": "m1"}))
    [entry] = quarantined(r)
    resp = api.post(f"/api/quarantine/{entry['id']}/replay", {"to": "sms"})
    assert resp.status_code == 400 and list(resp.json["details"]) == ["to"]


@pytest.mark.parametrize("field", ["messageId", "bulkId"])
def test_control_characters_in_identifiers_are_rejected(field, infobip, r):
    resp = infobip.dlr(push(report("m1", **{field: "a\u0000b"}), report("m2")))
    assert resp.status_code == 200 and resp.json["accepted"] == 1
    assert resp.json["rejected"] == [{"index": 0, "errors": {field: [NO_CONTROL]}}]


# --- charsets and byte-order marks (issue 19) ------------------------------------------------


@pytest.mark.parametrize("body, content_type", [
    (b"\xef\xbb\xbf" + orjson.dumps(push(report("m1", callbackData="Café"))), "application/json"),
    (orjson.dumps(push(report("m1", callbackData="Café"))).decode().encode("latin-1"),
     "application/json; charset=ISO-8859-1"),
    (b"<reportResponse><results><messageId>m1</messageId><status><id>5</id></status>"
     b"<callbackData>Caf\xe9</callbackData></results></reportResponse>", "text/xml; charset=ISO-8859-1"),
], ids=["JSON after a UTF-8 BOM", "JSON in a declared Latin-1", "XML in a declared Latin-1"])
def test_a_declared_charset_and_a_bom_are_honoured(body, content_type, infobip, work, api):
    resp = infobip.dlr(body, content_type)
    assert resp.json == {"accepted": 1, "rejected": []}
    work()
    assert view(api, "m1")["callbackData"] == "Café"


def test_bytes_the_declared_charset_cannot_decode_are_400_with_the_raw_body_quarantined(infobip, r):
    body = orjson.dumps(push(report("m1"))).replace(b'"m1"', b'"m\x98"')  # 0x98: no character in cp1251
    resp = infobip.dlr(body, "application/json; charset=windows-1251")
    assert resp.status_code == 400 and resp.json["message"].startswith("body is not valid cp1251")
    [entry] = quarantined(r)
    assert base64.b64decode(entry["bodyBase64"]) == body


# --- descriptions filled in English, or in the seed's Russian (issue 19) ---------------------

BARE = {"status": {"groupId": 3, "id": 5}, "error": {"groupId": 0, "id": 0}}


def test_descriptions_are_filled_in_infobips_english_by_default(infobip, work, api):
    """They were the seed's Russian: "Сообщение доставлено на устройство", "Нет ошибки"."""
    infobip.dlr(push({"messageId": "en-1", **BARE},
                     {"messageId": "en-2", "status": {"id": 6}, "error": {"id": 1}}))
    work()
    got = view(api, "en-1")
    assert (got["status"]["description"], got["error"]["description"]) == (
        "Message delivered to handset", "No Error")
    other = view(api, "en-2")
    assert (other["status"]["description"], other["status"]["action"]) == ("Network is forbidden",
                                                                            "Contact account manager")
    assert other["error"]["description"] == "EC_UNKNOWN_SUBSCRIBER"  # no English text from Infobip: the name


def test_code_descriptions_ru_keeps_the_seeds_russian(config, r, work):
    client = create_app({**config, "CODE_DESCRIPTIONS": "ru"}).test_client()
    assert Infobip(client).dlr(push({"messageId": "ru-1", **BARE})).status_code == 200
    work()
    got = client.get("/api/messages/ru-1", headers={"Authorization": f"Bearer {API_KEY}"}).json
    assert (got["status"]["description"], got["error"]["description"]) == (
        "Сообщение доставлено на устройство", "Нет ошибки")


@pytest.mark.parametrize("language", ["en", "ru"])
def test_a_description_infobip_sent_is_never_replaced(language, config, r, work):
    client = create_app({**config, "CODE_DESCRIPTIONS": language}).test_client()
    sent = {"status": {"groupId": 3, "id": 5, "description": "Zugestellt", "action": "Nichts"},
            "error": {"groupId": 0, "id": 0, "description": "Kein Fehler"}}
    assert Infobip(client).dlr(push({"messageId": "sent-1", **sent})).status_code == 200
    work()
    got = client.get("/api/messages/sent-1", headers={"Authorization": f"Bearer {API_KEY}"}).json
    assert (got["status"]["description"], got["status"]["action"], got["error"]["description"]) == (
        "Zugestellt", "Nichts", "Kein Fehler")


def test_an_unknown_code_descriptions_language_stops_start_up(config, r):
    with pytest.raises(ConfigError, match="CODE_DESCRIPTIONS must be one of en, ru"):
        create_app({**config, "CODE_DESCRIPTIONS": "de"})
def test_provenance_push_on_reports_and_inbound_in_state_api_and_events(use_routes, work, r) -> None:
    """SPEC §9: every report's and inbound message's data says how it came; HTTP ingest is "push"."""
    svc = use_routes('consumers:\n  - name: stream\n    type: redis-stream\n    stream: sms-events\n'
                     '    events: ["*"]\n')
    assert svc.infobip.dlr(raw("notify_push.json")).status_code == 200
    forward = {"sender": "38598111", "receiver": "41793026727", "text": "HELLO", "messageid": "mo-1"}
    assert svc.client.get("/infobip/mo", query_string={**forward, "token": TOKEN}).status_code == 200
    work()
    events = [orjson.loads(fields[b"event"]) for _, fields in r.xrange(EVENT_STREAM)]
    assert len(events) == 3 and {e["data"]["source"] for e in events} == {"push"}
    assert svc.api.get("/api/messages/MESSAGE-ID-123-xyz").json["source"] == "push"
    assert svc.api.get("/api/inbound/mo-1").json["source"] == "push"
