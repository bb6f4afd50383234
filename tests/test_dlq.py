"""Dead letters and quarantine (SPEC §4, §5.4): listed and replayed from /api and the CLI
(`flask dlq ...`, `flask quarantine ...`, through Flask's `test_cli_runner`).

A replayed dead letter is the same event: the consumer sees the same `webhook-id` again, so it
can deduplicate. A replayed quarantine entry runs through ingest again; it leaves the
quarantine only when everything in it is accepted now.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from flask import request

from app import dlq, quarantine
from app.enqueue import outbox
from app.keys import DEAD_LETTERS, QUARANTINE, consumer_key
from tests.consumers import Answer, ConsumerServer, http_consumer, routes_text
from tests.samples import push, report


@pytest.fixture
def service(use_routes, consumer_server: ConsumerServer) -> Any:
    """One HTTP consumer `crm` of every event, two retries without waiting."""
    return use_routes(routes_text(
        http_consumer("crm", consumer_server.url + "/crm", events='["*"]', retry_schedule="[0, 0]")))


def cli(service: Any, *args: str) -> Any:
    return service.app.test_cli_runner().invoke(args=list(args))


def dead_letters(service: Any, consumer: str = "crm") -> list[dict[str, Any]]:
    resp = service.api.get(f"/api/dlq/{consumer}")
    assert resp.status_code == 200, resp.json
    return resp.json["results"]


def kill(service: Any, server: ConsumerServer, work: Any, *message_ids: str) -> list[str]:
    """Deliver reports to a consumer answering 410: each ends in the dead letters at once."""
    server.script("/crm", *[Answer(410)] * len(message_ids))
    assert service.infobip.dlr(push(*(report(m) for m in message_ids))).status_code == 200
    work()
    return [service.api.get(f"/api/messages/{m}").json["eventId"] for m in message_ids]


# --- dead letters ---------------------------------------------------------------------------


def test_dead_letters_are_listed_newest_first(service, consumer_server, work):
    first, second = kill(service, consumer_server, work, "m-1", "m-2")
    listed = dead_letters(service)
    assert [d["id"] for d in listed] == [second, first]
    letter = listed[0]
    assert letter["reason"] == "gone (410)" and letter["lastError"] == "HTTP 410"
    assert orjson.loads(letter["body"])["data"]["messageId"] == "m-2"
    assert [d["id"] for d in service.api.get("/api/dlq/crm", limit=1).json["results"]] == [second]


def test_dead_letters_from_the_cli(service, consumer_server, work):
    first, second = kill(service, consumer_server, work, "m-1", "m-2")
    result = cli(service, "dlq", "list", "crm")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [d["id"] for d in listed] == [second, first] and listed == dead_letters(service)
    limited = cli(service, "dlq", "list", "crm", "--limit", "1")
    assert [d["id"] for d in json.loads(limited.output)] == [second]


def test_dead_letters_of_an_unknown_consumer_are_404(service):
    for resp in (service.api.get("/api/dlq/nobody"), service.api.post("/api/dlq/nobody/replay")):
        assert resp.status_code == 404 and resp.json["error"] == "not_found"


def test_dead_letters_need_an_api_key(service):
    assert service.client.get("/api/dlq/crm").status_code == 401
    assert service.client.post("/api/dlq/crm/replay").status_code == 401


def test_replay_from_the_api_delivers_once_more_with_the_same_webhook_id(service, consumer_server, work):
    [event_id] = kill(service, consumer_server, work, "m-1")
    first_try = consumer_server.requests("/crm")[0]
    resp = service.api.post("/api/dlq/crm/replay", {"ids": [event_id]})
    assert resp.status_code == 200 and resp.json == {"replayed": 1}
    assert dead_letters(service) == []
    work()
    sent = consumer_server.requests("/crm")
    assert [s.status for s in sent] == [410, 200]
    assert sent[1].headers["webhook-id"] == first_try.headers["webhook-id"] == event_id
    assert sent[1].body == first_try.body  # the same event, byte for byte
    assert sent[1].verify()["id"] == event_id
    figures = service.api.get("/api/consumers").json["consumers"]["crm"]
    assert (figures["delivered"], figures["deadLettered"], figures["deadLetters"]) == (1, 1, 0)


def test_replay_without_ids_replays_every_dead_letter(service, consumer_server, work):
    ids = kill(service, consumer_server, work, "m-1", "m-2", "m-3")
    assert service.api.post("/api/dlq/crm/replay").json == {"replayed": 3}
    work()
    assert consumer_server.delivered("/crm") == dict.fromkeys(ids, 1)
    assert service.api.post("/api/dlq/crm/replay").json == {"replayed": 0}  # nothing left


def test_two_replays_racing_queue_each_dead_letter_once(service, consumer_server, work, r):
    ids = kill(service, consumer_server, work, "m-1", "m-2")
    # Both replays read the dead letters before either moved one: the move itself decides.
    dead, out = DEAD_LETTERS.format(consumer=consumer_key("crm")), outbox("crm").inbox
    pairs = [part for raw in r.lrange(dead, 0, -1) for part in (raw, raw)]
    assert r.eval(dlq._MOVE, 2, dead, out, *pairs) == 2
    assert r.eval(dlq._MOVE, 2, dead, out, *pairs) == 0
    assert r.llen(out) == 2
    assert dlq.replay_dead(r, "crm") == 0
    outbox("crm").kick(r)
    work()
    assert consumer_server.delivered("/crm") == dict.fromkeys(ids, 1)


def test_replay_of_some_ids_leaves_the_others(service, consumer_server, work):
    first, second = kill(service, consumer_server, work, "m-1", "m-2")
    assert service.api.post("/api/dlq/crm/replay", {"ids": [second, "evt_unknown"]}).json == {"replayed": 1}
    work()
    assert consumer_server.delivered("/crm") == {second: 1}
    assert [d["id"] for d in dead_letters(service)] == [first]


@pytest.mark.parametrize("body", [{"ids": "evt_1"}, {"ids": [1, 2]}, {"ids": [None]}])
def test_replay_with_a_bad_body_is_400(service, body):
    resp = service.api.post("/api/dlq/crm/replay", body)
    assert resp.status_code == 400 and resp.json["details"] == {"ids": ["a list of event ids"]}


def test_a_replay_gets_a_fresh_set_of_attempts(service, consumer_server, work, r):
    [event_id] = kill(service, consumer_server, work, "m-1")
    consumer_server.script("/crm", Answer(500), Answer(500))  # then 200: needs both retries
    service.api.post("/api/dlq/crm/replay")
    work()
    sent = consumer_server.requests("/crm")
    assert [s.status for s in sent] == [410, 500, 500, 200]
    assert {s.event_id for s in sent} == {event_id}
    assert dead_letters(service) == []


def test_a_replay_that_fails_again_is_dead_lettered_again(service, consumer_server, work):
    [event_id] = kill(service, consumer_server, work, "m-1")
    consumer_server.script("/crm", then=Answer(500))
    service.api.post("/api/dlq/crm/replay")
    work()
    [letter] = dead_letters(service)
    assert letter["id"] == event_id and letter["reason"] == "retries exhausted"
    assert letter["attempt"] == 2 and letter["lastError"] == "HTTP 500"


def test_replay_from_the_cli_delivers_once_more_with_the_same_webhook_id(service, consumer_server, work):
    first, second = kill(service, consumer_server, work, "m-1", "m-2")
    result = cli(service, "dlq", "replay", "crm", "--id", first)
    assert result.exit_code == 0 and "1 dead letter(s) of crm queued" in result.output
    work()
    assert consumer_server.delivered("/crm") == {first: 1}
    assert [s.event_id for s in consumer_server.requests("/crm")].count(first) == 2
    result = cli(service, "dlq", "replay", "crm")
    assert result.exit_code == 0 and "1 dead letter(s)" in result.output
    work()
    assert consumer_server.delivered("/crm") == {first: 1, second: 1}
    assert json.loads(cli(service, "dlq", "list", "crm").output) == []


# --- quarantine -----------------------------------------------------------------------------


def partial_batch(service: Any) -> dict[str, Any]:
    """A push with one valid and one invalid report: 200, and the body kept in quarantine."""
    resp = service.infobip.dlr(push(report("m-ok"), {"to": "41793026727"}))
    assert resp.status_code == 200 and resp.json["accepted"] == 1
    assert [x["index"] for x in resp.json["rejected"]] == [1]
    return service.api.get("/api/quarantine").json["results"][0]  # newest first


def keep_valid_entry(service: Any, r: Any, message_id: str = "m-kept") -> str:
    """A quarantine entry whose body is acceptable now (e.g. rejected while a fix was pending)."""
    body = orjson.dumps(push(report(message_id)))
    with service.app.test_request_context("/infobip/dlr", method="POST", data=body,
                                          headers={"Content-Type": "application/json"}):
        entry = quarantine.record(request, "rejected before a fix", {"0": ["was refused"]}, body)
    quarantine.keep(r, entry, 100)
    return orjson.loads(entry)["id"]


def test_quarantine_is_listed_by_api_and_cli(service):
    entry = partial_batch(service)
    assert len(service.api.get("/api/quarantine").json["results"]) == 1
    assert entry["reason"] == "invalid items" and entry["path"] == "/infobip/dlr"
    assert "authorization" not in {k.lower() for k in entry["headers"]}  # no secrets kept
    result = cli(service, "quarantine", "list")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == [entry]
    assert json.loads(cli(service, "quarantine", "list", "--limit", "1").output) == [entry]


def test_a_partially_invalid_batch_replayed_stays_in_quarantine(service, consumer_server, work, r):
    entry = partial_batch(service)
    work()
    resp = service.api.post(f"/api/quarantine/{entry['id']}/replay")
    assert resp.status_code == 200
    assert resp.json["status"] == 200 and resp.json["accepted"] == 1
    assert [x["index"] for x in resp.json["rejected"]] == [1]
    assert [e["id"] for e in service.api.get("/api/quarantine").json["results"]] == [entry["id"]]
    assert r.llen(QUARANTINE) == 1  # no twin entry from the replay
    work()
    # The valid report was accepted twice: one message, one event, one delivery.
    event_id = service.api.get("/api/messages/m-ok").json["eventId"]
    assert consumer_server.delivered("/crm") == {event_id: 1}
    assert len(consumer_server.requests("/crm")) == 1


def test_an_entry_acceptable_now_leaves_the_quarantine_by_api(service, consumer_server, work, r):
    entry_id = keep_valid_entry(service, r)
    resp = service.api.post(f"/api/quarantine/{entry_id}/replay")
    assert resp.status_code == 200
    assert resp.json == {"id": entry_id, "status": 200, "accepted": 1, "rejected": []}
    assert service.api.get("/api/quarantine").json["results"] == []
    work()
    event_id = service.api.get("/api/messages/m-kept").json["eventId"]
    assert consumer_server.delivered("/crm") == {event_id: 1}


def test_an_entry_acceptable_now_leaves_the_quarantine_by_cli(service, consumer_server, work, r):
    kept = keep_valid_entry(service, r, "m-kept")
    stays = partial_batch(service)["id"]
    result = cli(service, "quarantine", "replay", kept, stays)
    assert result.exit_code == 0, result.output
    answers = json.loads(result.output)
    assert [(a["id"], a["status"], a["accepted"], len(a["rejected"])) for a in answers] == [
        (kept, 200, 1, 0), (stays, 200, 1, 1)]
    assert [e["id"] for e in json.loads(cli(service, "quarantine", "list").output)] == [stays]
    work()
    assert service.api.get("/api/messages/m-kept").status_code == 200


def test_an_entry_still_invalid_reports_why_and_stays(service, r):
    resp = service.infobip.dlr(push({"to": "41793026727"}))
    assert resp.status_code == 400
    [entry] = service.api.get("/api/quarantine").json["results"]
    replayed = service.api.post(f"/api/quarantine/{entry['id']}/replay")
    assert replayed.status_code == 200
    assert replayed.json["status"] == 400 and replayed.json["error"] == "nothing valid in the body"
    assert r.llen(QUARANTINE) == 1


def test_replay_of_an_unknown_quarantine_entry(service):
    resp = service.api.post("/api/quarantine/q_nope/replay")
    assert resp.status_code == 404 and resp.json["error"] == "not_found"
    result = cli(service, "quarantine", "replay", "q_nope")
    assert result.exit_code != 0
    assert "no quarantine entry 'q_nope'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # no traceback


def test_quarantine_needs_an_api_key(service):
    assert service.client.get("/api/quarantine").status_code == 401
    assert service.client.post("/api/quarantine/q_1/replay").status_code == 401
