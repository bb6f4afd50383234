"""workers/state.py (SPEC §5): per-message history and current report, dedupe, per-bulk
counters and cost, retention; and the events the drain writes to the `sms-events` stream (§3).

Reports go in through HTTP and a real RQ worker, as in production.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import orjson
import pytest

from app import dlr, events, keys, store
from app.keys import BULK, EVENT_STREAM, INDEX_ALL, INDEX_BULK, INDEX_TO, MESSAGE
from tests.samples import push, raw, report
from workers.settings import settings


def stream(r) -> list[dict[str, Any]]:
    return [orjson.loads(fields[b"event"]) for _, fields in r.xrange(EVENT_STREAM)]


def history(r, message_id: str) -> list[dict[str, Any]]:
    return store.get_message(r, message_id)["history"]


@pytest.fixture
def deliver(infobip, work):
    """Send a push body and run the workers; returns the HTTP answer."""

    def send(body: Any, content_type: str = "application/json"):
        resp = infobip.dlr(body, content_type)
        assert resp.status_code == 200, resp.json
        work()
        return resp

    return send


PENDING_AT = "2015-06-04T13:01:55.000+0000"
DONE_AT = "2015-06-04T13:02:00.134+0000"


def pending(message_id: str, **fields: Any) -> dict[str, Any]:
    return report(message_id, "PENDING", **{"doneAt": PENDING_AT, **fields})


def delivered(message_id: str, **fields: Any) -> dict[str, Any]:
    return report(message_id, "DELIVERED", **{"doneAt": DONE_AT, **fields})


# --- duplicates -----------------------------------------------------------------------------


def test_resent_report_changes_nothing_and_emits_nothing(deliver, r):
    deliver(push(delivered("m1")))
    t = keys.tag_of("m1")  # m1's lane on a cluster
    before = (r.get(MESSAGE.format(t=t, message_id="m1")), r.hgetall(BULK.format(t=t, bulk_id="bulk-1")))
    assert r.xlen(EVENT_STREAM) == 1

    deliver(push(delivered("m1")))  # Infobip resends when our answer was slow

    after = (r.get(MESSAGE.format(t=t, message_id="m1")), r.hgetall(BULK.format(t=t, bulk_id="bulk-1")))
    assert after == before
    assert r.xlen(EVENT_STREAM) == 1
    assert len(history(r, "m1")) == 1


def test_resend_with_the_same_instant_written_differently_is_a_duplicate(deliver, r):
    deliver(push(delivered("m1", doneAt="2015-06-04T14:02:00.134+0100")))
    deliver(push(delivered("m1", doneAt="2015-06-04T13:02:00.134Z")))
    assert r.xlen(EVENT_STREAM) == 1
    assert len(history(r, "m1")) == 1


def test_resend_of_an_old_report_after_a_newer_one_is_a_duplicate(deliver, r):
    deliver(push(pending("m1")))
    deliver(push(delivered("m1")))
    deliver(push(pending("m1")))
    assert r.xlen(EVENT_STREAM) == 2
    assert [h["status"]["groupName"] for h in history(r, "m1")] == ["PENDING", "DELIVERED"]


def test_the_same_report_twice_in_one_request_counts_once(deliver, r):
    resp = deliver(push(delivered("m1"), delivered("m1")))
    assert resp.json["accepted"] == 2  # both valid; the worker dedupes
    assert r.xlen(EVENT_STREAM) == 1
    assert len(history(r, "m1")) == 1
    assert store.get_bulk(r, "bulk-1")["total"] == 1
    assert store.get_bulk(r, "bulk-1")["cost"] == {"EUR": "0.01"}


def test_a_new_status_or_error_or_doneAt_is_not_a_duplicate(deliver, r):
    deliver(push(pending("m1")))
    deliver(push(pending("m1", error={"id": 27})))  # the same status, another GSM error
    deliver(push(pending("m1", doneAt="2015-06-04T13:01:56.000+0000")))  # a later retry
    deliver(push(delivered("m1")))
    assert r.xlen(EVENT_STREAM) == 4
    assert len(history(r, "m1")) == 4


# --- current state --------------------------------------------------------------------------


def test_intermediate_then_final(deliver, r):
    deliver(push(pending("m1")))
    assert store.get_message(r, "m1")["final"] is False
    deliver(push(delivered("m1")))
    current = store.get_message(r, "m1")
    assert current["final"] is True and current["status"]["groupName"] == "DELIVERED"


@pytest.mark.parametrize(
    "intermediate_done_at", [PENDING_AT, "2015-06-04T13:05:00.000+0000"], ids=["older", "newer"]
)
def test_intermediate_arriving_after_the_final_is_kept_but_not_current(intermediate_done_at, deliver, r):
    deliver(push(delivered("m1")))
    deliver(push(pending("m1", doneAt=intermediate_done_at)))
    current = store.get_message(r, "m1")
    assert current["status"]["groupName"] == "DELIVERED" and current["final"] is True
    assert [h["status"]["groupName"] for h in current["history"]] == ["DELIVERED", "PENDING"]
    assert store.get_bulk(r, "bulk-1")["byGroup"] == {"DELIVERED": 1}


def test_both_orders_in_one_request(deliver, r):
    deliver(push(delivered("m1"), pending("m1")))
    assert store.get_message(r, "m1")["status"]["groupName"] == "DELIVERED"
    deliver(push(pending("m2"), delivered("m2")))
    assert store.get_message(r, "m2")["status"]["groupName"] == "DELIVERED"


def test_between_two_intermediates_the_later_doneAt_wins(deliver, r):
    deliver(push(pending("m1", doneAt="2015-06-04T13:01:58.000+0000", error={"id": 27})))
    deliver(push(pending("m1", doneAt="2015-06-04T13:01:50.000+0000")))  # older, arrived late
    current = store.get_message(r, "m1")
    assert current["error"]["id"] == 27
    assert len(current["history"]) == 2


def test_between_two_finals_the_later_doneAt_wins(deliver, r):
    deliver(push(report("m1", "UNDELIVERABLE", doneAt="2015-06-04T13:03:00.000+0000")))
    deliver(push(report("m1", "DELIVERED", doneAt="2015-06-04T13:02:00.000+0000")))
    assert store.get_message(r, "m1")["status"]["groupName"] == "UNDELIVERABLE"


def test_history_keeps_every_report_in_arrival_order_with_event_ids(deliver, r):
    deliver(push(pending("m1")))
    deliver(push(pending("m1", error={"id": 27})))
    deliver(push(delivered("m1")))
    hist = history(r, "m1")
    assert [h["status"]["groupName"] for h in hist] == ["PENDING", "PENDING", "DELIVERED"]
    assert [h["eventId"] for h in hist] == [e["id"] for e in stream(r)]
    assert all(h["receivedAt"].endswith("Z") for h in hist)


def test_unknown_message_is_none(r):
    assert store.get_message(r, "nope") is None
    assert store.get_bulk(r, "nope") is None


# --- per bulk -------------------------------------------------------------------------------


def test_counts_per_group_move_with_the_current_status(deliver, r):
    deliver(push(pending("m1"), pending("m2"), pending("m3")))
    assert store.get_bulk(r, "bulk-1")["byGroup"] == {"PENDING": 3}
    deliver(push(delivered("m1")))
    bulk = store.get_bulk(r, "bulk-1")
    assert bulk["byGroup"] == {"DELIVERED": 1, "PENDING": 2}
    assert bulk["total"] == 3  # a message counts once, in its current group
    deliver(push(delivered("m2"), report("m3", "UNDELIVERABLE", error={"id": 1})))
    bulk = store.get_bulk(r, "bulk-1")
    assert bulk["byGroup"] == {"DELIVERED": 2, "UNDELIVERABLE": 1}
    assert bulk["total"] == 3


def test_cost_is_summed_exactly_in_decimals(deliver, r):
    """3 x 0.0001000000 EUR from XML text, whose digits are kept: never a float sum."""
    body = raw("notify_push.repeated.xml").replace(b"MESSAGE-ID-123-xyz", b"MESSAGE-ID-124-xyz")
    deliver(raw("notify_push.nested.xml"), "application/xml")
    deliver(body, "application/xml")  # one more message of the bulk (the first is a resend)
    bulk = store.get_bulk(r, "BULK-ID-123-xyz")
    assert bulk["total"] == 3
    assert bulk["cost"] == {"EUR": "0.0003000000"}


def test_float_prices_do_not_leave_float_artifacts(deliver, r):
    deliver(push(*(delivered(f"m{n}", price={"pricePerMessage": 0.1, "currency": "EUR"}) for n in range(3))))
    assert store.get_bulk(r, "bulk-1")["cost"] == {"EUR": "0.3"}  # not 0.30000000000000004


def test_cost_per_currency(deliver, r):
    deliver(
        push(
            delivered("m1", price={"pricePerMessage": 0.0045, "currency": "EUR"}),
            delivered("m2", price={"pricePerMessage": "0.0100", "currency": "USD"}),
            delivered("m3", price={"pricePerMessage": 0.0055, "currency": "EUR"}),
            delivered("m4", price=None),
        )
    )
    bulk = store.get_bulk(r, "bulk-1")
    assert bulk["cost"] == {"EUR": "0.0100", "USD": "0.0100"}
    assert bulk["total"] == 4


def test_a_message_is_charged_once_whatever_its_reports(deliver, r):
    """The intermediate and the final report both carry the price: the bulk pays it once."""
    deliver(raw("intermediate_push.json"))
    assert store.get_bulk(r, "BULK-ID-123-xyz")["cost"] == {"EUR": "0.0002"}
    deliver(raw("notify_push.json"))
    bulk = store.get_bulk(r, "BULK-ID-123-xyz")
    assert bulk["cost"] == {"EUR": "0.0002"}
    assert bulk["byGroup"] == {"DELIVERED": 2}


def test_a_changed_price_replaces_the_old_one(deliver, r):
    deliver(push(pending("m1", price={"pricePerMessage": 0.01, "currency": "EUR"})))
    deliver(push(delivered("m1", price={"pricePerMessage": 0.02, "currency": "EUR"})))
    assert store.get_bulk(r, "bulk-1")["cost"] == {"EUR": "0.02"}


def test_first_sent_and_last_done(deliver, r):
    deliver(
        push(
            report("a", sentAt="2015-06-04T13:01:52.937+0000", doneAt="2015-06-04T13:02:01.204+0000"),
            report("b", sentAt="2015-06-04T14:01:50.000+0100", doneAt="2015-06-04T13:03:00.000+0000"),
            report("c", sentAt="2015-06-04T13:01:59.000+0000", doneAt="2015-06-04T15:02:30.000+0200"),
        )
    )
    bulk = store.get_bulk(r, "bulk-1")
    assert bulk["firstSentAt"] == "2015-06-04T13:01:50.000Z"
    assert bulk["lastDoneAt"] == "2015-06-04T13:03:00.000Z"


def test_bulk_shape(deliver, r):
    deliver(raw("notify_push.json"))
    assert store.get_bulk(r, "BULK-ID-123-xyz") == {
        "bulkId": "BULK-ID-123-xyz",
        "total": 2,
        "awaitingReport": 0,
        "stale": 0,
        "byGroup": {"DELIVERED": 2},
        "cost": {"EUR": "0.0002"},
        "firstSentAt": "2015-06-04T13:01:52.933Z",
        "lastDoneAt": "2015-06-04T13:02:01.204Z",
    }


def test_reports_without_bulk_make_no_bulk(deliver, r):
    deliver(push(delivered("m1", bulkId=""), delivered("m2", bulkId=None)))
    assert r.keys("bulk:*") == []


def test_a_status_group_the_tables_do_not_know_is_counted_as_given(deliver, r):
    deliver(push(report("m1", status={"groupName": "LOST"}), report("m2", status={"id": 999})))
    assert store.get_bulk(r, "bulk-1")["byGroup"] == {"LOST": 1, "UNKNOWN": 1}


# --- retention ------------------------------------------------------------------------------


@pytest.fixture
def retention_days(monkeypatch):
    """Workers read RETENTION_DAYS from the environment (workers/settings.py, cached)."""
    monkeypatch.setenv("RETENTION_DAYS", "3")
    settings.cache_clear()
    yield 3
    settings.cache_clear()


def test_keys_expire_after_retention_days(retention_days, deliver, r):
    deliver(push(delivered("m1")))
    seconds = retention_days * 86400
    names = [  # m1's: on a cluster, in m1's lane
        MESSAGE.format(t=keys.tag_of("m1"), message_id="m1"),
        BULK.format(t=keys.tag_of("m1"), bulk_id="bulk-1"),
        INDEX_ALL.format(t=keys.tag_of("m1")),
        INDEX_TO.format(t=keys.tag_of("m1")),
        INDEX_BULK.format(t=keys.tag_of("m1"), bulk_id="bulk-1"),
    ]
    for key in names:
        ttl = r.ttl(key)
        assert seconds - 60 < ttl <= seconds, key


def test_default_retention_is_seven_days(deliver, r, monkeypatch):
    monkeypatch.delenv("RETENTION_DAYS", raising=False)
    settings.cache_clear()
    deliver(push(delivered("m1")))
    assert 7 * 86400 - 60 < r.ttl(MESSAGE.format(t=keys.tag_of("m1"), message_id="m1")) <= 7 * 86400
    settings.cache_clear()


# --- events ---------------------------------------------------------------------------------

DLR_DATA_FIELDS = {
    "messageId", "bulkId", "to", "from", "sentAt", "doneAt", "smsCount", "mccMnc", "price", "status",
    "error", "callbackData", "final", "warnings",
}


def test_event_shape(deliver, r):
    deliver(raw("intermediate_push.json"))
    deliver(raw("notify_push.json"))
    got = stream(r)
    assert [e["type"] for e in got] == ["dlr.intermediate"] * 2 + ["dlr.final"] * 2
    for event in got:
        assert set(event) == {"id", "type", "timestamp", "data"}
        assert re.fullmatch(r"evt_[0-9a-f]{32}", event["id"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", event["timestamp"])
        assert set(event["data"]) >= DLR_DATA_FIELDS
        assert event["data"]["final"] is (event["type"] == "dlr.final")
        assert event["data"]["sentAt"].endswith("Z") and event["data"]["doneAt"].endswith("Z")
    intermediate, final = got[0]["data"], got[2]["data"]
    assert len(intermediate["warnings"]) == 2
    assert intermediate["error"]["name"] == "EC_ABSENT_SUBSCRIBER"
    assert final["warnings"] == []
    assert final["price"] == {"pricePerMessage": "0.0001", "currency": "EUR"}
    assert len({e["id"] for e in got}) == 4


def test_event_ids_match_history(deliver, r):
    deliver(raw("notify_push.json"))
    ids = {e["data"]["messageId"]: e["id"] for e in stream(r)}
    for message_id, event_id in ids.items():
        assert store.get_message(r, message_id)["eventId"] == event_id


def event_id(**fields: Any) -> str:
    return events.dlr_event_id(dlr.load(delivered("m1", **fields)))


def test_event_id_is_stable_for_the_same_source_report():
    assert event_id() == event_id()
    # what is not part of (messageId, status id, error id, doneAt) does not change the id
    assert event_id() == event_id(price={"pricePerMessage": 0.02, "currency": "EUR"}, callbackData="x")
    assert event_id() == event_id(doneAt="2015-06-04T15:02:00.134+0200")  # the same instant


@pytest.mark.parametrize(
    "change",
    [
        {"doneAt": "2015-06-04T13:02:00.135+0000"},
        {"error": {"id": 27}},
        {"status": {"id": 2}},
        {"messageId": "m2"},
    ],
    ids=["doneAt", "error", "status", "messageId"],
)
def test_event_id_differs_when_the_source_report_differs(change):
    assert event_id() != event_id(**change)


def test_event_id_of_a_report_without_dates_or_error():
    item = {"messageId": "m1", "status": {"groupId": 1}}
    data = dlr.load(item)
    assert events.dlr_event_id(data) == events.dlr_event_id(dlr.load(item))
    assert events.dlr_event_id(data).startswith("evt_")


def test_amounts_in_state_are_decimal_text(deliver, r):
    deliver(raw("notify_push.nested.xml"), "application/xml")
    raw_bulk = {field: value for t in keys.tags()  # one hash per lane on a cluster, fields never overlap
                for field, value in r.hgetall(BULK.format(t=t, bulk_id="BULK-ID-123-xyz")).items()}
    costs = [v.decode() for k, v in raw_bulk.items() if b":c:" in k]
    assert costs and all(Decimal(c) == Decimal("0.0001000000") for c in costs)
