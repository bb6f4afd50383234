"""Opt-outs (SPEC §11), in this process against the suite's real Redis and a real RQ worker:
STOP/START/STOPALL by SMS and by `/api/optouts`, their `contact.*` events (once per change,
however often the MO is resent), the bulk check, the list, and the reply records the drain
job writes before anything is sent (`disabled` here: no INFOBIP_BASE_URL)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from redis.crc import key_slot

from app import enqueue, keys
from app.keys import OPTOUT_BY_RECEIVER, OPTOUT_INDEX, REPLIES_DUE, REPLY, lane_of
from app.optout.replies import reply_id
from tests.conftest import API_KEY, basic_header
from tests.consumers import routes_text, stream_consumer

SENDER, RECEIVER, OTHER = "38598111", "41793026727", "41793026700"
BEARER = {"Authorization": f"Bearer {API_KEY}"}
MO_ROUTES = """\
  - keywords: [STOP, WIN]
    consumers: [mo]
    reply: "Thanks {from}! Entry '{cleanText}' to {to} ({keyword}) is in."
  - keywords: [QUIET]
    reply: ""
  - default: true
"""
OPTOUT = """\
optout:
  help_reply: "Help from {to}."
"""


@pytest.fixture
def service(use_routes):
    consumers = (stream_consumer("contacts", "contacts", events='["contact.*"]'),
                 stream_consumer("mo", "mo-stream"))
    return use_routes(routes_text(*consumers, mo_routes=MO_ROUTES) + OPTOUT)


def mo(service: Any, text: str, message_id: str, sender: str = SENDER,
       receiver: str | None = RECEIVER) -> None:
    query = {"sender": sender, "text": text, "messageid": message_id}
    if receiver:
        query["receiver"] = receiver
    got = service.client.get("/infobip/mo", headers=basic_header(), query_string=query)
    assert got.status_code == 200 and got.json["accepted"] == 1, got.json


def contact_events(r) -> list[dict[str, Any]]:
    return [orjson.loads(fields[b"event"]) for _, fields in r.xrange("contacts")]


def lookup(service: Any, msisdn: str = SENDER) -> dict[str, Any]:
    got = service.api.get(f"/api/optouts/{msisdn}")
    assert got.status_code == 200, got.json
    return got.json


def check(service: Any, numbers: list[Any], receiver: str | None = None) -> Any:
    body = {"numbers": numbers} | ({"receiver": receiver} if receiver else {})
    return service.client.post("/api/optouts/check", json=body, headers=BEARER)


def change(service: Any, method: str, msisdn: str, body: Any) -> Any:
    return service.client.open(f"/api/optouts/{msisdn}", method=method, json=body, headers=BEARER)


# --- STOP, START, STOPALL by SMS ---------------------------------------------------------------


def test_stop_opts_out_of_that_receiver_once_however_often_it_is_resent(service, r, work):
    for _ in range(5):  # Infobip resends when our answer was slow: the same MO, five times
        mo(service, "Stop please", "mo-1")
    work()
    mo(service, "STOP", "mo-2")  # a second STOP is no change: no second event
    work()
    found = lookup(service)
    assert found["optedOut"] is True
    [scope] = found["scopes"]
    assert (scope["receiver"], scope["keyword"], scope["messageId"]) == (RECEIVER, "STOP", "mo-1")
    assert scope["source"] == "mo"
    [event] = contact_events(r)
    assert event["type"] == "contact.optout"
    assert event["data"] | {"since": None} == {"msisdn": SENDER, "receiver": RECEIVER, "keyword": "STOP",
                                               "messageId": "mo-1", "source": "mo", "since": None}
    assert r.xlen("mo-stream") == 2  # the STOP still reaches its route's consumers
    assert check(service, [SENDER], RECEIVER).json == {"optedOut": [SENDER]}
    assert check(service, [SENDER], OTHER).json == {"optedOut": []}  # another receiver: not opted out
    assert check(service, [SENDER]).json == {"optedOut": [SENDER]}  # of anything


def test_stopall_opts_out_of_every_receiver_and_start_lifts_it(service, r, work):
    mo(service, "stopall", "mo-1")
    work()
    assert [s["receiver"] for s in lookup(service)["scopes"]] == ["*"]
    assert check(service, [SENDER, "+" + SENDER], OTHER).json == {"optedOut": [SENDER]}
    mo(service, "START", "mo-2", receiver=OTHER)
    work()
    assert lookup(service) == {"msisdn": SENDER, "optedOut": False, "scopes": []}
    types = [(e["type"], e["data"]["receiver"]) for e in contact_events(r)]
    assert types == [("contact.optout", "*"), ("contact.optin", "*")]
    optin = contact_events(r)[1]
    assert optin["data"]["messageId"] == "mo-2" and optin["data"]["keyword"] == "START"


def test_an_mo_without_receiver_stops_every_receiver(service, work):
    mo(service, "STOP", "mo-1", receiver=None)
    work()
    assert [s["receiver"] for s in lookup(service)["scopes"]] == ["*"]


def test_keywords_are_whole_words(service, r, work):
    mo(service, "STOPPED the ads?", "mo-1")
    mo(service, "please stop", "mo-2")
    work()
    assert lookup(service)["optedOut"] is False and contact_events(r) == []


# --- manual changes ----------------------------------------------------------------------------


def test_manual_opt_out_and_lift(service, r, work):
    got = change(service, "PUT", "+" + SENDER, {"receiver": RECEIVER, "note": "asked by phone"})
    assert got.status_code == 202
    assert got.json == {"msisdn": SENDER, "action": "optout", "receiver": RECEIVER, "queued": True}
    change(service, "PUT", SENDER, {"receiver": RECEIVER})  # no change: no event
    work()
    [scope] = lookup(service)["scopes"]
    assert (scope["source"], scope["note"], scope["keyword"]) == ("api", "asked by phone", None)
    assert change(service, "PUT", SENDER, {"all": True}).status_code == 202
    work()
    assert {s["receiver"] for s in lookup(service)["scopes"]} == {RECEIVER, "*"}
    assert change(service, "DELETE", SENDER, {"all": True}).status_code == 202
    work()
    assert lookup(service)["optedOut"] is False
    types = [(e["type"], e["data"]["receiver"]) for e in contact_events(r)]
    assert sorted(types) == sorted([("contact.optout", RECEIVER), ("contact.optout", "*"),
                                    ("contact.optin", RECEIVER), ("contact.optin", "*")])
    assert len({e["id"] for e in contact_events(r)}) == 4


@pytest.mark.parametrize("body", [None, {}, {"receiver": RECEIVER, "all": True}, {"all": False},
                                  {"all": "yes"}, {"receiver": "not a number!"}, [RECEIVER],
                                  {"receiver": None},
                                  {"receiver": RECEIVER, "note": "x" * 201}])
def test_a_change_must_say_which_receiver_or_all(service, r, body):
    got = change(service, "PUT", SENDER, body)
    assert got.status_code == 400 and got.json["error"] == "invalid_payload"
    assert sum(r.llen(enqueue.lane(lane).inbox) for lane in range(4)) == 0


def test_the_api_needs_its_key(service):
    assert service.client.get(f"/api/optouts/{SENDER}").status_code == 401
    assert service.client.post("/api/optouts/check", json={"numbers": []}).status_code == 401


# --- the bulk check and the list ---------------------------------------------------------------


def test_check_answers_ten_thousand_numbers_and_no_more(service, work):
    numbers = [f"4179{n:07d}" for n in range(10_000)]
    for n in (numbers[7], numbers[9_999]):
        change(service, "PUT", n, {"receiver": RECEIVER})
    change(service, "PUT", numbers[42], {"all": True})
    work()
    assert check(service, numbers, RECEIVER).json == {"optedOut": [numbers[7], numbers[42], numbers[9_999]]}
    assert check(service, numbers, OTHER).json == {"optedOut": [numbers[42]]}
    too_many = check(service, [*numbers, "41"])
    assert too_many.status_code == 400
    assert too_many.json["details"] == {"numbers": ["a list of at most 10000 numbers"]}
    bad = check(service, [SENDER, 38598111, "385 98 111"])
    assert bad.status_code == 400
    assert bad.json["details"] == {"numbers": {"1": ["not a number"], "2": ["not a number"]}}


def test_list_newest_first_by_receiver_since_and_limit(service, work):
    for n, msisdn in enumerate(("111", "222", "333")):
        mo(service, "STOP", f"mo-{n}", sender=msisdn)
        work()
    change(service, "PUT", "444", {"all": True})
    work()
    change(service, "PUT", "555", {"receiver": OTHER})
    work()
    every = service.api.get("/api/optouts").json["results"]
    assert [(e["msisdn"], e["receiver"]) for e in every] == [
        ("555", OTHER), ("444", "*"), ("333", RECEIVER), ("222", RECEIVER), ("111", RECEIVER)]
    mine = service.api.get("/api/optouts", receiver=RECEIVER, limit=3).json["results"]
    assert [e["msisdn"] for e in mine] == ["444", "333", "222"]  # STOPALL holds for it too
    since = service.api.get("/api/optouts", since=every[1]["since"]).json["results"]
    assert [e["msisdn"] for e in since] == ["555", "444"]
    assert service.api.get("/api/optouts", since="yesterday").status_code == 400


# --- replies: recorded in the drain transaction, before any send -------------------------------


def inbound(service: Any, message_id: str) -> dict[str, Any]:
    got = service.api.get(f"/api/inbound/{message_id}")
    assert got.status_code == 200
    return got.json


@pytest.mark.parametrize(("text", "kind", "reply"), [
    ("STOP", "stop", "You are unsubscribed and will receive no more messages. Reply START to resubscribe."),
    ("start", "start", "You are subscribed again. Reply STOP to unsubscribe."),
    ("Help!", "help", f"Help from {RECEIVER}."),
    ("win 42 now", "route", f"Thanks {SENDER}! Entry '42 now' to {RECEIVER} (WIN) is in."),
])
def test_each_reply_is_recorded_once_with_its_derived_message_id(service, r, work, text, kind, reply):
    for _ in range(3):
        mo(service, text, "mo-1")
        work()
    shown = inbound(service, "mo-1")["reply"]
    assert (shown["kind"], shown["text"], shown["messageId"]) == (kind, reply, reply_id("mo-1"))
    assert shown["status"] == "disabled" and shown["attempts"] == 0  # no INFOBIP_BASE_URL: never sent
    assert r.zcard(REPLIES_DUE.format(t=keys.tag_of(SENDER))) == 0
    listed = service.api.get("/api/inbound", **{"from": SENDER}).json["results"]
    assert listed[0]["reply"] == shown


@pytest.mark.parametrize("text", ["QUIET please", "hello"])  # reply: "" and a route without reply
def test_no_reply_text_no_reply(service, work, text):
    mo(service, text, "mo-1")
    work()
    assert "reply" not in inbound(service, "mo-1")



def test_a_change_made_meanwhile_by_another_lane_makes_the_batch_run_again(service, r, work, monkeypatch):
    """MO of one sender are laned by the sender, but on one Redis a DRAIN_LANES change can put
    them in two lanes for a moment: the drain WATCHes the sender's list, so an entry written
    between its read and its write (here: as by a manual change applied in another lane) makes
    it read again, and it decides on the list as it is: no second opt-out event."""
    from workers import drain, optout

    written = []

    class Meanwhile(optout.OptOutState):
        def load(self, r_, pipe, envelopes):
            super().load(r_, pipe, envelopes)
            if not written:  # once: the re-run finds the list as the other lane left it
                entry = {"since": "2026-01-01T00:00:00.000Z", "keyword": None, "messageId": None,
                         "source": "api", "note": "other lane"}
                key = keys.OPTOUT.format(t=keys.tag_of(SENDER), msisdn=SENDER)
                written.append(r.hset(key, RECEIVER, orjson.dumps(entry)))

    monkeypatch.setattr(drain, "OptOutState", Meanwhile)
    mo(service, "STOP", "mo-1")
    work()
    assert written == [1]
    [scope] = lookup(service)["scopes"]
    assert scope["note"] == "other lane"  # not overwritten by a decision made on a stale read
    assert contact_events(r) == []  # the sender was already opted out when the batch applied
    assert inbound(service, "mo-1")["reply"]["kind"] == "stop"  # the MO itself applied once


def test_a_numbers_list_and_replies_live_in_its_lanes_slot(service, r, work):
    """One lane owns a number (its MO are laned by it): its list, its replies and the lane's
    indexes carry that lane's tag, so on a cluster the drain's transaction stays in one slot.
    On one Redis the names are those of before tags (empty)."""
    mo(service, "STOP", "mo-1")
    work()
    lane = lane_of(SENDER, 4)
    t = keys.tag(lane)
    names = [keys.OPTOUT.format(t=t, msisdn=SENDER), REPLY.format(t=t, message_id="mo-1"),
             OPTOUT_INDEX.format(t=t), OPTOUT_BY_RECEIVER.format(t=t, receiver=RECEIVER)]
    assert [r.exists(name) for name in names] == [1, 1, 1, 1]
    if keys.sharded():
        slots = {key_slot(name.encode()) for name in [*names, enqueue.lane(lane).inbox]}
        assert len(slots) == 1
    else:
        assert names == [f"optout:{SENDER}", "reply:mo-1", "ix:optout", f"ix:optout:rcv:{RECEIVER}"]


def test_an_mo_queued_in_another_lane_than_its_senders_is_applied_once(service, r, work):
    """As items queued before MO were laned by sender (or by a web process with another
    DRAIN_LANES): on a cluster the drain forwards them to the sender's lane, where its list and
    replies live (applied in the wrong lane, the transaction would be refused as CROSSSLOT); on
    one Redis any lane applies them. Either way: applied once, no lane stuck."""
    wrong = (lane_of(SENDER, 4) + 1) % 4
    data = {"messageId": "mo-1", "from": SENDER, "to": RECEIVER, "text": "STOP", "cleanText": "",
            "keyword": "STOP", "receivedAt": "2026-01-01T00:00:00.000Z", "smsCount": 1, "parts": 1,
            "incomplete": False, "route": None, "warnings": []}
    change = {"msisdn": OTHER, "action": "optout", "receiver": "*", "note": None, "changeId": "c-1",
              "source": "api"}
    envelopes = [{"kind": "mo", "receivedAt": data["receivedAt"], "data": data},
                 {"kind": "optout", "receivedAt": data["receivedAt"], "data": change}]
    for _ in range(2):  # and a resend, as a killed drain's re-run forwards it again
        enqueue.push(r, [enqueue.Write({wrong: enqueue.encode(envelopes)})])
        work()
    assert lookup(service)["optedOut"] is True and lookup(service, OTHER)["optedOut"] is True
    assert sorted(e["data"]["msisdn"] for e in contact_events(r)) == sorted([SENDER, OTHER])
    assert inbound(service, "mo-1")["reply"]["kind"] == "stop"
    assert sum(r.llen(enqueue.lane(lane).inbox) for lane in range(4)) == 0


def test_the_command_line_scrubs_a_number_list(service, work, tmp_path):
    change(service, "PUT", "41790000007", {"receiver": RECEIVER})
    change(service, "PUT", "41790000042", {"all": True})
    work()
    numbers = tmp_path / "campaign.txt"
    numbers.write_text("41790000001\n+41790000007\n\n41790000042\n", encoding="utf-8")
    cli = service.app.test_cli_runner()
    got = cli.invoke(args=["optouts", "check", str(numbers), "--receiver", RECEIVER])
    assert got.exit_code == 0 and got.output.split() == ["41790000007", "41790000042"]
    got = cli.invoke(args=["optouts", "check", str(numbers), "--receiver", OTHER])
    assert got.output.split() == ["41790000042"]
    assert orjson.loads(cli.invoke(args=["optouts", "show", "41790000042"]).output)["optedOut"] is True
    listed = orjson.loads(cli.invoke(args=["optouts", "list", "--receiver", "*"]).output)
    assert [e["msisdn"] for e in listed] == ["41790000042"]
    numbers.write_text("41790000001\nnot-a-number\n", encoding="utf-8")
    got = cli.invoke(args=["optouts", "check", str(numbers)])
    assert got.exit_code != 0 and "not phone numbers" in got.output and "Traceback" not in got.output
