"""app/api.py (SPEC §5): the query API and the health probes."""

from __future__ import annotations

from collections import defaultdict
from typing import Any
from urllib.parse import quote

import pytest
from rq import Queue, Worker

from app import enqueue
from app.connection import queue_client
from app.keys import QUEUE_NAME, lane_of
from tests.conftest import API_KEY
from tests.samples import envelopes, push, raw, report


@pytest.fixture
def store(r, work):
    """Put reports into state with chosen arrival times (the list order is arrival order)."""

    def put(*timed: tuple[dict[str, Any], str]) -> None:
        for item, received_at in timed:
            lanes: dict[int, list[bytes]] = defaultdict(list)
            lanes[lane_of(item["messageId"], 4)] += envelopes(item, received_at=received_at)
            enqueue.push(r, [enqueue.Write(dict(lanes))])
        work()

    return put


def at(second: int) -> str:
    return f"2026-01-01T00:00:{second:02}.000Z"


def results(resp) -> list[str]:
    assert resp.status_code == 200, resp.json
    return [found["messageId"] for found in resp.json["results"]]


# --- one message ----------------------------------------------------------------------------


def test_message_is_the_current_report_with_its_history_oldest_first(infobip, work, api):
    infobip.dlr(raw("intermediate_push.json"))
    work()
    infobip.dlr(raw("notify_push.json"))
    work()
    resp = api.get("/api/messages/MESSAGE-ID-123-xyz")
    assert resp.status_code == 200 and resp.is_json
    got = resp.json
    assert got["messageId"] == "MESSAGE-ID-123-xyz"
    assert got["final"] is True and got["warnings"] == []
    assert got["status"]["groupName"] == "DELIVERED"
    assert {"from", "smsCount", "error", "price", "callbackData", "sentAt", "doneAt"} <= set(got)
    assert [h["status"]["groupName"] for h in got["history"]] == ["PENDING", "DELIVERED"]
    assert got["history"][0]["final"] is False and len(got["history"][0]["warnings"]) == 2
    assert got["history"][0]["receivedAt"] <= got["history"][1]["receivedAt"]
    assert got["eventId"] == got["history"][1]["eventId"]


@pytest.mark.parametrize("message_id", ["nope", "MESSAGE-ID-123-xyz"])
def test_unknown_message_is_404_json(message_id, api):
    resp = api.get(f"/api/messages/{message_id}")
    assert resp.status_code == 404
    assert resp.is_json and resp.json["error"] == "not_found"


def test_message_id_with_odd_characters(infobip, work, api):
    message_id = "a:b*c?d [e]"
    infobip.dlr(push(report(message_id)))
    work()
    assert api.get(f"/api/messages/{quote(message_id)}").json["messageId"] == message_id


# --- lists ----------------------------------------------------------------------------------


def test_list_is_newest_first_without_history(store, api):
    store((report("m1"), at(1)), (report("m2"), at(2)), (report("m3"), at(3)))
    resp = api.get("/api/messages")
    assert results(resp) == ["m3", "m2", "m1"]
    assert all("history" not in found for found in resp.json["results"])


def test_list_orders_by_first_arrival(store, api):
    store((report("m1", "PENDING"), at(1)), (report("m2"), at(2)), (report("m1"), at(3)))
    assert results(api.get("/api/messages")) == ["m2", "m1"]


def test_list_shows_the_current_report(store, api):
    store((report("m1", "PENDING"), at(1)), (report("m1"), at(2)))
    [found] = api.get("/api/messages").json["results"]
    assert found["status"]["groupName"] == "DELIVERED"


def test_empty_list(api):
    resp = api.get("/api/messages")
    assert resp.status_code == 200 and resp.json == {"results": []}


def test_filter_by_bulk(store, api):
    store(
        (report("m1", bulkId="b1"), at(1)),
        (report("m2", bulkId="b2"), at(2)),
        (report("m3", bulkId="b1"), at(3)),
        (report("m4", bulkId=""), at(4)),
    )
    assert results(api.get("/api/messages", bulkId="b1")) == ["m3", "m1"]
    assert results(api.get("/api/messages", bulkId="b3")) == []


def test_filter_by_to(store, api):
    store((report("m1", to="41793026727"), at(1)), (report("m2", to="41793026731"), at(2)))
    assert results(api.get("/api/messages", to="41793026731")) == ["m2"]


@pytest.mark.parametrize("general_status", ["DELIVERED", "delivered", "Delivered"])
def test_filter_by_general_status_any_case(general_status, store, api):
    store(
        (report("m1", "DELIVERED"), at(1)),
        (report("m2", "PENDING"), at(2)),
        (report("m3", "REJECTED"), at(3)),
        (report("m4", "DELIVERED"), at(4)),
    )
    assert results(api.get("/api/messages", generalStatus=general_status)) == ["m4", "m1"]


def test_filter_by_current_status_only(store, api):
    store((report("m1", "PENDING"), at(1)), (report("m1", "DELIVERED"), at(2)))
    assert results(api.get("/api/messages", generalStatus="PENDING")) == []
    assert results(api.get("/api/messages", generalStatus="DELIVERED")) == ["m1"]


def test_filters_combine(store, api):
    store(
        (report("m1", "DELIVERED", bulkId="b1", to="1"), at(1)),
        (report("m2", "PENDING", bulkId="b1", to="1"), at(2)),
        (report("m3", "DELIVERED", bulkId="b2", to="1"), at(3)),
        (report("m4", "DELIVERED", bulkId="b1", to="2"), at(4)),
    )
    assert results(api.get("/api/messages", bulkId="b1", generalStatus="delivered")) == ["m4", "m1"]
    assert results(api.get("/api/messages", bulkId="b1", to="1", generalStatus="DELIVERED")) == ["m1"]


@pytest.fixture
def sent_at_three_times(store):
    store(
        (report("early", sentAt="2015-06-04T12:00:00.000+0000"), at(1)),
        (report("middle", sentAt="2015-06-04T13:00:00.000+0000"), at(2)),
        (report("late", sentAt="2015-06-04T14:00:00.000+0000"), at(3)),
        (report("unknown", sentAt=None), at(4)),
    )


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"sentSince": "2015-06-04T13:00:00Z"}, ["late", "middle"]),
        ({"sentSince": "2015-06-04T14:00:00+01:00"}, ["late", "middle"]),  # 13:00 UTC
        ({"sentUntil": "2015-06-04T13:00:00.000+00:00"}, ["middle", "early"]),
        ({"sentSince": "2015-06-04T12:30:00", "sentUntil": "2015-06-04T13:30:00"}, ["middle"]),  # UTC
        ({"sentSince": "2015-06-04T15:00:00Z"}, []),
        ({}, ["unknown", "late", "middle", "early"]),
    ],
)
def test_filter_by_sent_time(params, expected, sent_at_three_times, api):
    assert results(api.get("/api/messages", **params)) == expected


def test_sent_time_with_an_unencoded_plus_in_the_url(sent_at_three_times, client):
    """`?sentSince=2015-06-04T14:00:00+01:00` typed into a URL: the '+' arrives as a space."""
    resp = client.get(
        "/api/messages?sentSince=2015-06-04T14:00:00+01:00", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert results(resp) == ["late", "middle"]


@pytest.mark.parametrize("name", ["sentSince", "sentUntil"])
def test_bad_sent_time_is_400(name, api):
    resp = api.get("/api/messages", **{name: "yesterday"})
    assert resp.status_code == 400
    assert name in resp.json["details"]


def test_default_limit_is_50(infobip, work, api):
    infobip.dlr(push(*(report(f"m{n:02}") for n in range(55))))
    work()
    assert len(results(api.get("/api/messages"))) == 50
    assert len(results(api.get("/api/messages", limit=""))) == 50


def test_limit_keeps_the_newest(store, api):
    store(*((report(f"m{n}"), at(n)) for n in range(1, 8)))
    assert results(api.get("/api/messages", limit=3)) == ["m7", "m6", "m5"]
    assert results(api.get("/api/messages", limit=1000)) == [f"m{n}" for n in range(7, 0, -1)]


def test_limit_applies_after_filtering(store, api):
    store(*((report(f"m{n}", "DELIVERED" if n % 2 else "PENDING"), at(n)) for n in range(1, 9)))
    assert results(api.get("/api/messages", generalStatus="PENDING", limit=2)) == ["m8", "m6"]


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1.5", "1001", "1e3", " 5"])
def test_invalid_limit_is_400(limit, api):
    resp = api.get("/api/messages", limit=limit)
    assert resp.status_code == 400
    assert resp.json["error"] == "invalid_payload"
    assert "limit" in resp.json["details"]


# --- bulks ----------------------------------------------------------------------------------


def test_bulk_shape(infobip, work, api):
    infobip.dlr(raw("notify_push.nested.xml"), "application/xml")
    work()
    resp = api.get("/api/bulks/BULK-ID-123-xyz")
    assert resp.status_code == 200
    assert resp.json == {
        "bulkId": "BULK-ID-123-xyz",
        "total": 2,
        "awaitingReport": 0,
        "stale": 0,
        "byGroup": {"DELIVERED": 2},
        "cost": {"EUR": "0.0002000000"},
        "firstSentAt": "2015-06-04T13:01:52.933Z",
        "lastDoneAt": "2015-06-04T13:02:01.204Z",
    }


def test_bulk_across_every_lane(infobip, work, api):
    infobip.dlr(push(*(report(f"m{n}", "DELIVERED" if n % 3 else "REJECTED") for n in range(30))))
    work()
    bulk = api.get("/api/bulks/bulk-1").json
    assert bulk["total"] == 30
    assert bulk["byGroup"] == {"DELIVERED": 20, "REJECTED": 10}
    assert bulk["cost"] == {"EUR": "0.30"}


def test_unknown_bulk_is_404_json(api):
    resp = api.get("/api/bulks/nope")
    assert resp.status_code == 404
    assert resp.is_json and resp.json["error"] == "not_found"


# --- health ---------------------------------------------------------------------------------


@pytest.fixture
def redis_down_client(data_plane_down):
    return data_plane_down().test_client()


def test_healthz_needs_no_redis(redis_down_client):
    resp = redis_down_client.get("/healthz")
    assert resp.status_code == 200 and resp.json == {"status": "ok"}


def test_healthz_needs_no_credentials(client):
    assert client.get("/healthz").status_code == 200


def test_readyz_without_redis_is_503(redis_down_client):
    resp = redis_down_client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json["redis"] is False


def test_readyz_without_a_worker_is_503(client):
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json["redis"] is True and resp.json["workers"] == 0


@pytest.fixture
def live_worker(r):
    worker = Worker([Queue(QUEUE_NAME, connection=queue_client(r))], connection=queue_client(r))
    worker.register_birth()
    yield worker
    worker.register_death()


def test_readyz_with_a_worker_is_200_with_the_backlog(live_worker, infobip, client, work):
    infobip.dlr(raw("notify_push.json"))
    resp = client.get("/readyz")
    assert resp.status_code == 200
    assert resp.json["status"] == "ok"
    assert resp.json["workers"] == 1
    assert resp.json["inbox"] == 2
    assert resp.json["queuedJobs"][QUEUE_NAME] >= 1
    work()
    assert client.get("/readyz").json["inbox"] == 0


def test_readyz_after_the_worker_died_is_503(r, client):
    worker = Worker([Queue(QUEUE_NAME, connection=queue_client(r))], connection=queue_client(r))
    worker.register_birth()
    assert client.get("/readyz").status_code == 200
    worker.register_death()
    assert client.get("/readyz").status_code == 503


# --- JSON answers (app.JSONProvider) -----------------------------------------------------------


def test_json_answers_are_the_same_json_flask_writes(app):
    import json
    from datetime import UTC, datetime
    from decimal import Decimal

    from flask.json.provider import DefaultJSONProvider

    value = {"b": "Нет ничего лучше родного дома.", "a": [1, 2.5, None, True], "big": 2**70,
             "when": datetime(2026, 11, 29, 10, 0, tzinfo=UTC), "cost": Decimal("0.0001000000")}
    with app.app_context():
        ours = app.json.response(value).get_data()
        flask = DefaultJSONProvider(app).response(value).get_data()
    assert json.loads(ours) == json.loads(flask)  # ints beyond 64 bits too: Flask's own wrote it
    small = {"b": "Нет", "a": 1, "when": datetime(2026, 11, 29, 10, 0, tzinfo=UTC)}
    with app.app_context():
        written = app.json.response(small).get_data()
    assert written == '{"a":1,"b":"Нет","when":"Sun, 29 Nov 2026 10:00:00 GMT"}\n'.encode()
