"""The fake Infobip keeps the seed's rules, so nothing passes against it that Infobip would fail:
reports and inbox served once, `limit` paging, logs repeatable for 48 h with the seed's
filters, both auth schemes, faults on demand, sends answered as Infobip answers them, and
their reports pushed to a real local `notifyUrl` (retried) or kept for pulling."""

from __future__ import annotations

import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
import urllib3

from tests.consumers import Answer, ConsumerServer
from tests.fake import FakeInfobip
from tools.wait import wait_for

HTTP = urllib3.PoolManager(retries=False, timeout=5)


def call(fake: FakeInfobip, method: str, path: str, body: Any = None, auth: str | None = "App",
         timeout: float = 5, **params: Any) -> urllib3.BaseHTTPResponse:
    headers = {"Content-Type": "application/json"}
    if auth == "App":
        headers["Authorization"] = f"App {fake.api_key}"
    elif auth == "Basic":
        pair = base64.b64encode(f"{fake.username}:{fake.password}".encode()).decode()
        headers["Authorization"] = f"Basic {pair}"
    elif auth:
        headers["Authorization"] = auth
    query = f"?{urlencode(params, doseq=True)}" if params else ""
    return HTTP.request(method, fake.url + path + query, body=None if body is None else orjson.dumps(body),
                        headers=headers, timeout=timeout)


def results(fake: FakeInfobip, path: str, **params: Any) -> list[dict[str, Any]]:
    answer = call(fake, "GET", path, **params)
    assert answer.status == 200, answer.data
    return answer.json()["results"]


def advanced(fake: FakeInfobip, *destinations: dict[str, Any], **message: Any) -> dict[str, Any]:
    body = {"bulkId": message.pop("bulkId", None), "messages": [
        {"from": "InfoSMS", "text": "Test SMS.", "destinations": list(destinations), **message}]}
    answer = call(fake, "POST", "/sms/1/text/advanced", {k: v for k, v in body.items() if v})
    assert answer.status == 200, answer.data
    return answer.json()


@pytest.fixture
def receiver() -> Any:
    server = ConsumerServer().start()
    yield server
    server.close()


# --- served once, paging ---------------------------------------------------------------------


def test_reports_are_served_once_in_pages_of_limit(fake_infobip: FakeInfobip) -> None:
    added = fake_infobip.control.add_reports(count=120, bulkId="b-1")
    first = results(fake_infobip, "/sms/1/reports")  # the seed's default limit: 50
    second = results(fake_infobip, "/sms/1/reports", limit=60)
    third = results(fake_infobip, "/sms/1/reports", limit=60)
    assert [len(first), len(second), len(third)] == [50, 60, 10]
    assert [r["messageId"] for r in first + second + third] == added  # each once, in order
    assert results(fake_infobip, "/sms/1/reports") == []  # "you will get an empty answer"
    assert first[0]["status"]["groupName"] == "DELIVERED" and first[0]["bulkId"] == "b-1"


def test_a_report_fetched_by_message_id_is_gone_for_everyone(fake_infobip: FakeInfobip) -> None:
    one, other = fake_infobip.control.add_reports(count=2)
    assert [r["messageId"] for r in results(fake_infobip, "/sms/1/reports", messageId=one)] == [one]
    assert [r["messageId"] for r in results(fake_infobip, "/sms/1/reports")] == [other]


@pytest.mark.parametrize("limit", ["0", "1001", "x", "²"])
def test_a_bad_limit_is_refused_in_infobip_error_shape(fake_infobip: FakeInfobip, limit: str) -> None:
    fake_infobip.control.add_reports(count=1)
    answer = call(fake_infobip, "GET", "/sms/1/reports", limit=limit)
    assert answer.status == 400
    assert answer.json()["requestError"]["serviceException"]["messageId"] == "BAD_REQUEST"
    assert fake_infobip.control.pending()["reports"] == 1  # a refused call takes nothing


def test_inbox_is_served_once(fake_infobip: FakeInfobip) -> None:
    added = fake_infobip.control.add_inbox(count=60, text="KEY hello")
    page = results(fake_infobip, "/sms/1/inbox/reports")
    assert len(page) == 50 and page[0]["keyword"] == "KEY" and page[0]["cleanText"] == "hello"
    rest = results(fake_infobip, "/sms/1/inbox/reports", limit=1000)
    assert [m["messageId"] for m in page + rest] == added
    assert results(fake_infobip, "/sms/1/inbox/reports") == []


# --- logs: repeatable, filtered, 48 h ----------------------------------------------------------


def test_logs_are_repeatable_filtered_and_keep_48_hours(fake_infobip: FakeInfobip) -> None:
    fake_infobip.control.outcome("41793026731", status=15, error=27)  # EXPIRED
    first = advanced(fake_infobip, {"to": "41793026727", "messageId": "m-1"}, {"to": "41793026731"},
                     bulkId="b-1")
    wait_for(lambda: len(results(fake_infobip, "/sms/1/logs", generalStatus="PENDING")) == 0, 30, "reports")
    fake_infobip.control.advance_clock(3600)
    advanced(fake_infobip, {"to": "4917612345678", "messageId": "m-3"}, **{"from": "Shop"})
    everything = results(fake_infobip, "/sms/1/logs")
    assert everything[0]["messageId"] == "m-3"  # newest first
    assert results(fake_infobip, "/sms/1/logs") == everything  # repeatable
    log = next(entry for entry in everything if entry["messageId"] == "m-1")
    assert log["mccmnc"] == "22801" and "mccMnc" not in log  # the seed's lower-case spelling
    assert log["from"] == "InfoSMS" and log["text"] == "Test SMS." and log["bulkId"] == "b-1"
    assert log["status"]["name"] == "DELIVERED_TO_HANDSET" and "doneAt" in log

    def ids(**filters: Any) -> set[str]:
        return {entry["messageId"] for entry in results(fake_infobip, "/sms/1/logs", **filters)}

    other = first["messages"][1]["messageId"]
    assert ids(bulkId="b-1") == {"m-1", other}
    assert ids(messageId=["m-1", "m-3"]) == {"m-1", "m-3"}  # several ids in one call
    assert ids(generalStatus="EXPIRED") == {other}
    assert ids(**{"from": "Shop"}) == {"m-3"} and ids(to="41793026727") == {"m-1"}
    assert ids(mcc="262", mnc="01") == {"m-3"}
    assert ids(sentSince=log["sentAt"], sentUntil=log["sentAt"]) == {"m-1", other}
    assert len(results(fake_infobip, "/sms/1/logs", limit=1)) == 1
    fake_infobip.control.advance_clock(47 * 3600)  # m-1 is now 48 h old
    assert ids() == {"m-3"}


# --- auth and faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["App", "Basic"])
def test_both_auth_schemes_are_accepted(fake_infobip: FakeInfobip, auth: str) -> None:
    assert call(fake_infobip, "GET", "/sms/1/reports", auth=auth).status == 200
    assert fake_infobip.control.calls("/sms/1/reports")[-1]["auth"] == auth


WRONG_BASIC = "Basic " + base64.b64encode(b"ib-user:wrong").decode()


@pytest.mark.parametrize("auth", [None, "App wrong-key", WRONG_BASIC, "Bearer ib-key-3c9f1e7a5d2b48f0"])
def test_anything_else_is_401(fake_infobip: FakeInfobip, auth: str | None) -> None:
    fake_infobip.control.add_reports(count=1)
    answer = call(fake_infobip, "GET", "/sms/1/reports", auth=auth)
    assert answer.status == 401
    assert answer.json()["requestError"]["serviceException"]["messageId"] == "UNAUTHORIZED"
    assert fake_infobip.control.pending()["reports"] == 1


def test_429_with_retry_after_and_503_for_the_next_calls_only(fake_infobip: FakeInfobip) -> None:
    fake_infobip.control.add_reports(count=1)
    fake_infobip.control.fail("/sms/1/reports", status=429, count=2, retry_after=7)
    fake_infobip.control.fail("/sms/1/logs", status=503)
    for _ in range(2):
        answer = call(fake_infobip, "GET", "/sms/1/reports")
        assert answer.status == 429 and answer.headers["Retry-After"] == "7"
    assert call(fake_infobip, "GET", "/sms/1/logs").status == 503
    assert len(results(fake_infobip, "/sms/1/reports")) == 1  # nothing was taken by a failed call
    assert call(fake_infobip, "GET", "/sms/1/logs").status == 200
    assert [c["status"] for c in fake_infobip.control.calls("/sms/1/reports")] == [429, 429, 200]


def test_a_hung_send_took_effect_but_never_answers(fake_infobip: FakeInfobip) -> None:
    fake_infobip.control.hang("/sms/1/text/advanced", apply=True)
    body = {"messages": [{"from": "InfoSMS", "text": "x", "destinations": [{"to": "41793026727",
                                                                            "messageId": "m-hang"}]}]}
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        call(fake_infobip, "POST", "/sms/1/text/advanced", body, timeout=0.5)
    assert [s["messageId"] for s in fake_infobip.control.sends()] == ["m-hang"]
    assert results(fake_infobip, "/sms/1/logs", messageId="m-hang")  # the logs know it was sent
    again = call(fake_infobip, "POST", "/sms/1/text/advanced", body).json()["messages"][0]
    assert again["status"]["name"] == "REJECTED_DUPLICATE_MESSAGE_ID"  # a resend sends nothing
    assert len(fake_infobip.control.sends()) == 1


def test_a_dropped_call_gets_no_answer(fake_infobip: FakeInfobip) -> None:
    fake_infobip.control.drop("/sms/1/reports")
    with pytest.raises(urllib3.exceptions.ProtocolError):
        call(fake_infobip, "GET", "/sms/1/reports")
    assert fake_infobip.control.calls("/sms/1/reports")[-1]["status"] is None


# --- sending -----------------------------------------------------------------------------------


def test_advanced_send_answers_as_the_seed_and_honours_message_ids(fake_infobip: FakeInfobip) -> None:
    answer = advanced(fake_infobip, {"to": "41793026727", "messageId": "MESSAGE-ID-123-xyz"},
                      {"to": "41793026731"}, bulkId="BULK-ID-123-xyz", text="x" * 161)
    assert answer["bulkId"] == "BULK-ID-123-xyz"
    mine, theirs = answer["messages"]
    assert mine["messageId"] == "MESSAGE-ID-123-xyz" and mine["to"] == "41793026727"
    assert theirs["messageId"] and theirs["messageId"] != mine["messageId"]
    assert mine["smsCount"] == 2 and mine["status"]["groupName"] == "PENDING"
    assert set(mine) == {"to", "status", "smsCount", "messageId"}


def test_single_and_multi_sends_and_refusals(fake_infobip: FakeInfobip) -> None:
    one = call(fake_infobip, "POST", "/sms/1/text/single", {"from": "InfoSMS", "to": "41793026727",
                                                             "text": "My first Infobip SMS"}).json()
    assert "bulkId" not in one and one["messages"][0]["status"]["name"] == "PENDING_ENROUTE"
    many = call(fake_infobip, "POST", "/sms/1/text/single", {"from": "WineShop", "text": "Привет",
                                                              "to": ["41793026727", "41793026834"]}).json()
    assert many["bulkId"] and len(many["messages"]) == 2
    multi = call(fake_infobip, "POST", "/sms/1/text/multi", {"messages": [
        {"from": "WineShop", "to": "41793026727", "text": "a"}, {"from": "WineShop", "text": "b"}]}).json()
    assert [m["status"]["name"] for m in multi["messages"]] == ["PENDING_ENROUTE", "MISSING_TO"]
    assert call(fake_infobip, "POST", "/sms/1/text/advanced", {"messages": "no"}).status == 400
    assert call(fake_infobip, "POST", "/sms/1/text/advanced", [1]).status == 400
    sent = {log["messageId"] for log in results(fake_infobip, "/sms/1/logs")}
    assert sent == {m["messageId"] for answer in (one, many, multi) for m in answer["messages"]}


def test_without_notify_url_reports_wait_for_a_pull(fake_infobip: FakeInfobip) -> None:
    answer = advanced(fake_infobip, {"to": "41793026727"}, callbackData="cb-1")
    message_id = answer["messages"][0]["messageId"]
    wait_for(lambda: fake_infobip.control.pending()["reports"] == 1, 30, "the report")
    (report,) = results(fake_infobip, "/sms/1/reports")
    assert report["messageId"] == message_id and report["callbackData"] == "cb-1"
    assert report["status"]["name"] == "DELIVERED_TO_HANDSET"
    assert fake_infobip.control.pushes() == []


# --- pushes to notifyUrl -----------------------------------------------------------------------


def test_reports_are_pushed_to_notify_url_intermediate_then_final(fake_infobip: FakeInfobip,
                                                                  receiver: ConsumerServer) -> None:
    advanced(fake_infobip, {"to": "41793026727", "messageId": "m-1"}, bulkId="b-1",
             notifyUrl=f"{receiver.url}/dlr", intermediateReport=True, callbackData="cb")
    wait_for(lambda: len(receiver.requests("/dlr")) == 2, 30, "two pushes")
    intermediate, final = (seen.event["results"][0] for seen in receiver.requests("/dlr"))
    assert intermediate["status"]["groupName"] == "PENDING" and intermediate["error"]["id"] == 27
    assert final["status"]["name"] == "DELIVERED_TO_HANDSET" and final["messageId"] == "m-1"
    assert final["bulkId"] == "b-1" and final["callbackData"] == "cb"
    assert receiver.requests("/dlr")[0].headers["content-type"] == "application/json"
    assert results(fake_infobip, "/sms/1/reports") == []  # pushed reports are not pulled too


def test_a_failed_push_is_retried_until_answered_2xx(fake_infobip: FakeInfobip,
                                                      receiver: ConsumerServer) -> None:
    receiver.script("/dlr", Answer(500), Answer(503))
    advanced(fake_infobip, {"to": "41793026727", "messageId": "m-1"},
             notifyUrl=f"http://user:secret@127.0.0.1:{receiver.port}/dlr")
    wait_for(lambda: any(p["outcome"] == "delivered" for p in fake_infobip.control.pushes()), 30, "delivery")
    assert [s.status for s in receiver.requests("/dlr")] == [500, 503, 200]
    assert receiver.requests("/dlr")[0].headers["authorization"] == "Basic " + base64.b64encode(
        b"user:secret").decode()  # userinfo of the notifyUrl becomes Basic auth, as Infobip does
    assert [p["attempt"] for p in fake_infobip.control.pushes()] == [0, 1, 2]


def test_withheld_reports_are_never_pushed_but_logged(fake_infobip: FakeInfobip,
                                                      receiver: ConsumerServer) -> None:
    fake_infobip.control.withhold(message_ids=["m-lost"])
    advanced(fake_infobip, {"to": "41793026727", "messageId": "m-lost"},
             {"to": "41793026731", "messageId": "m-ok"}, notifyUrl=f"{receiver.url}/dlr")
    wait_for(lambda: len(fake_infobip.control.pushes()) == 2, 30, "both reports")
    pushed = [r["messageId"] for seen in receiver.requests("/dlr") for r in seen.event["results"]]
    assert pushed == ["m-ok"]
    assert results(fake_infobip, "/sms/1/reports") == []
    (log,) = results(fake_infobip, "/sms/1/logs", messageId="m-lost")
    assert log["status"]["groupName"] == "DELIVERED"  # reconciliation finds it here


def test_xml_pushes_are_the_seeds_report_response(fake_infobip: FakeInfobip, receiver: ConsumerServer,
                                                  infobip: Any) -> None:
    advanced(fake_infobip, {"to": "41793026727", "messageId": "m-1"},
             {"to": "41793026731", "messageId": "m-2"}, notifyUrl=f"{receiver.url}/dlr",
             notifyContentType="application/xml", callbackData="cb")
    wait_for(lambda: len(receiver.requests("/dlr")) == 1, 30, "the push")
    (seen,) = receiver.requests("/dlr")
    assert seen.headers["content-type"] == "application/xml"
    assert seen.body.count(b"<results>") == 2 and b"<reportResponse>" in seen.body
    assert b"<permanent>false</permanent>" in seen.body
    answer = infobip.dlr(seen.body, "application/xml")  # our own ingest takes it as it came
    assert answer.status_code == 200 and answer.json["accepted"] == 2


def test_a_fault_for_some_seconds_hits_every_call_until_then(fake_infobip: FakeInfobip) -> None:
    armed = time.monotonic()
    fake_infobip.control.fail("/sms/1/inbox/reports", status=503, seconds=2)
    statuses = []
    for _ in range(5):
        status = call(fake_infobip, "GET", "/sms/1/inbox/reports").status
        if time.monotonic() < armed + 2:  # answered before the fault can have ended
            statuses.append(status)
    assert statuses and set(statuses) == {503}
    wait_for(lambda: call(fake_infobip, "GET", "/sms/1/inbox/reports").status == 200, 30, "the fault to end")
    assert fake_infobip.control.calls()[-1]["status"] == 200


def test_a_scheduled_send_is_pending_accepted_and_reported_after_send_at(fake_infobip: FakeInfobip) -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=1)).isoformat(timespec="milliseconds")
    answer = advanced(fake_infobip, {"to": "41793026785", "messageId": "m-later"}, sendAt=soon)
    (message,) = answer["messages"]
    assert message["status"]["name"] == "PENDING_ACCEPTED" and "smsCount" not in message  # the seed's answer
    wait_for(lambda: fake_infobip.control.pending()["reports"] == 1, 30, "the scheduled message's report")
    (log,) = results(fake_infobip, "/sms/1/logs", messageId="m-later")
    assert datetime.fromisoformat(log["sentAt"]) >= datetime.fromisoformat(soon) - timedelta(milliseconds=1)
