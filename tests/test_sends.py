"""Send records (SPEC §9.2): POST /api/sends, through the lanes into state, with real workers."""

from __future__ import annotations

from typing import Any

import pytest

from app import keys
from app.keys import BULK, INDEX_PENDING, MESSAGE, QUARANTINE
from tests.samples import push, report


def answer(*ids: str, bulk_id: str | None = "bulk-1", group: str = "PENDING") -> dict[str, Any]:
    """Infobip's answer to /sms/1/text/advanced (seed, "Формат ответа")."""
    statuses = {"PENDING": (1, 26, "PENDING_ACCEPTED"), "REJECTED": (5, 6, "REJECTED_NETWORK")}
    group_id, status_id, name = statuses[group]
    body: dict[str, Any] = {"messages": [
        {"to": f"4179302{n:04}", "smsCount": 1, "messageId": message_id,
         "status": {"groupId": group_id, "groupName": group, "id": status_id, "name": name,
                    "description": "Message sent to next instance"}}
        for n, message_id in enumerate(ids)]}
    if bulk_id is not None:
        body["bulkId"] = bulk_id
    return body


def written(r) -> list[bytes]:
    """Keys of ours (RQ's own worker registry aside)."""
    return [key for key in r.scan_iter() if not key.startswith(b"rq:")]


@pytest.fixture
def send(api, work):
    def post(body: Any, status: int = 200) -> Any:
        resp = api.post("/api/sends", body)
        assert resp.status_code == status, resp.json
        work()
        return resp.json

    return post


def test_a_sent_message_awaits_its_report_and_its_bulk_counts_it(send, api, r) -> None:
    assert send(answer("s1", "s2")) == {"accepted": 2, "rejected": []}
    message = api.get("/api/messages/s1").json
    assert message["status"]["groupName"] == "PENDING" and message["final"] is False
    assert message["awaitingReport"] is True and message["stale"] is False
    assert message["source"] == "send" and message["history"] == [] and message["bulkId"] == "bulk-1"
    bulk = api.get("/api/bulks/bulk-1").json
    assert (bulk["total"], bulk["awaitingReport"], bulk["byGroup"]) == (2, 2, {"PENDING": 2})
    pending = {m.decode() for t in keys.tags() for m in r.zrange(INDEX_PENDING.format(t=t), 0, -1)}
    assert pending == {"s1", "s2"}
    listed = api.get("/api/messages", bulkId="bulk-1").json["results"]
    assert {m["messageId"] for m in listed} == {"s1", "s2"}


def test_a_later_report_advances_it(send, api, infobip, work, r) -> None:
    send(answer("s1", "s2"))
    assert infobip.dlr(push(report("s1", bulkId="bulk-1"))).status_code == 200
    work()
    message = api.get("/api/messages/s1").json
    assert message["status"]["groupName"] == "DELIVERED" and message["final"] is True
    assert message["awaitingReport"] is False and message["source"] == "push"
    bulk = api.get("/api/bulks/bulk-1").json
    assert (bulk["total"], bulk["awaitingReport"], bulk["byGroup"]) == (2, 1, {"DELIVERED": 1, "PENDING": 1})
    pending = [m.decode() for t in keys.tags() for m in r.zrange(INDEX_PENDING.format(t=t), 0, -1)]
    assert pending == ["s2"], "a final message is not pending"


def test_a_report_that_came_first_is_not_overwritten_by_the_send_record(send, api, infobip, work) -> None:
    for group in ("PENDING", "DELIVERED"):
        assert infobip.dlr(push(report(f"early-{group}", group, bulkId="bulk-1"))).status_code == 200
    work()
    send(answer("early-PENDING", "early-DELIVERED"))
    for group in ("PENDING", "DELIVERED"):
        message = api.get(f"/api/messages/early-{group}").json
        assert message["status"]["id"] == report("x", group)["status"]["id"], "the report stays current"
        assert message["awaitingReport"] is False and message["source"] == "push"
        assert len(message["history"]) == 1
    bulk = api.get("/api/bulks/bulk-1").json
    assert (bulk["total"], bulk["awaitingReport"]) == (2, 0)


def test_posting_the_same_answer_twice_changes_nothing(send, api, r) -> None:
    send(answer("s1", "s2"))
    names = [MESSAGE.format(t=keys.tag_of(m), message_id=m) for m in ("s1", "s2")]
    names += [BULK.format(t=t, bulk_id="bulk-1") for t in keys.tags()]  # a hash per lane on a cluster
    before = {key: r.dump(key) for key in names}
    assert before[names[0]] and before[names[1]], "the send records are there to compare"
    assert send(answer("s1", "s2")) == {"accepted": 2, "rejected": []}
    assert {key: r.dump(key) for key in before} == before
    assert api.get("/api/bulks/bulk-1").json["total"] == 2


def test_a_send_rejected_by_infobip_is_final_and_awaits_nothing(send, api) -> None:
    send(answer("s1", group="REJECTED"))
    message = api.get("/api/messages/s1").json
    assert message["final"] is True and message["awaitingReport"] is False
    assert api.get("/api/bulks/bulk-1").json["awaitingReport"] == 0


def test_a_send_without_bulk_is_a_message_without_bulk(send, api) -> None:
    send(answer("single", bulk_id=None))
    assert api.get("/api/messages/single").json["bulkId"] is None


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ([], "_schema"),
        ({"bulkId": 7, "messages": []}, "bulkId"),
        ({"messages": "s1"}, "messages"),
        ({"messages": [{"messageId": f"m{n}", "to": "1", "status": {}} for n in range(10_001)]}, "messages"),
    ],
)
def test_a_bad_body_is_a_400_naming_the_field(send, api, r, body, named) -> None:
    got = send(body, status=400)
    assert named in got["details"]
    assert written(r) == []


def test_one_bad_message_is_a_400_naming_it_and_nothing_is_written(send, r) -> None:
    body = answer("s1", "s2", "s3")
    del body["messages"][1]["to"]
    body["messages"][2]["smsCount"] = "two"
    got = send(body, status=400)
    assert [(d["index"], sorted(d["errors"])) for d in got["details"]] == [(1, ["to"]), (2, ["smsCount"])]
    assert written(r) == [] and not r.exists(QUARANTINE)


def test_not_json_is_a_400(client, r) -> None:
    got = client.post("/api/sends", data=b"{", headers={"Authorization": "Bearer key-5b2e8d7a0c1f",
                                                         "Content-Type": "application/json"})
    assert got.status_code == 400 and got.json["error"] == "invalid_payload"


def test_ten_thousand_messages_in_one_answer(send, api) -> None:
    ids = [f"big-{n:05}" for n in range(10_000)]
    assert send(answer(*ids, bulk_id="big"))["accepted"] == 10_000
    bulk = api.get("/api/bulks/big").json
    assert (bulk["total"], bulk["awaitingReport"]) == (10_000, 10_000)


def test_needs_the_api_key(client) -> None:
    assert client.post("/api/sends", json=answer("s1")).status_code == 401
