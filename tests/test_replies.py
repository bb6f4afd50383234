"""Replies (SPEC §11) sent by workers/replies.py to the fake Infobip (a real HTTP server with the
seed's send and logs semantics), with the drain and reply jobs run by a real RQ worker here.

What the fake counts: `sends()` are the messages it accepted (an SMS each); `calls(path)`
every request that reached it, so a second POST would show even where the fake refuses a
duplicate messageId."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app import keys
from app.infobip import status
from app.keys import REPLIES_DUE
from app.optout.replies import reply_id
from tests.conftest import TOKEN, basic_header
from tests.consumers import routes_text, stream_consumer
from tests.samples import push, report
from tools.wait import wait_for
from workers.replies import notify_url, send_due

SEND = "/sms/1/text/advanced"
SENDER, RECEIVER = "38598111", "41793026727"
PUBLIC_URL = "https://sms.example.com/base/"
ROUTES = routes_text(stream_consumer("all", "all", events='["*"]'), mo_routes="""\
  - keywords: [WIN]
    reply: "Entry {cleanText} received."
  - default: true
    reply: "Got it."
""") + """\
optout:
  replies_per_sender_per_hour: 2
"""


@pytest.fixture
def service(use_routes, fake_infobip, monkeypatch):
    env = {**fake_infobip.config(timeout=1.0), "PUBLIC_URL": PUBLIC_URL, "REPLY_LOOKUP_DELAY": "0",
           "WEBHOOK_TOKEN": TOKEN}
    for name, value in env.items():
        if value is not None:
            monkeypatch.setenv(name, str(value))
    return use_routes(ROUTES)


def mo(service: Any, text: str, message_id: str, sender: str = SENDER) -> None:
    got = service.client.get("/infobip/mo", headers=basic_header(), query_string={
        "sender": sender, "receiver": RECEIVER, "text": text, "messageid": message_id})
    assert got.status_code == 200 and got.json["accepted"] == 1


def reply_of(service: Any, message_id: str) -> dict[str, Any]:
    return service.api.get(f"/api/inbound/{message_id}").json["reply"]


def test_a_stop_is_answered_once_from_the_receiver_with_a_notify_url(service, fake_infobip, work):
    for _ in range(5):  # Infobip resends the MO; workers re-run
        mo(service, "STOP", "mo-1")
        work()
    [sent] = fake_infobip.control.sends()
    assert len(fake_infobip.control.calls(SEND)) == 1
    assert (sent["from"], sent["to"], sent["messageId"]) == (RECEIVER, SENDER, reply_id("mo-1"))
    assert sent["text"].startswith("You are unsubscribed")
    assert sent["notifyUrl"] == f"https://sms.example.com/base/infobip/dlr?token={TOKEN}"
    shown = reply_of(service, "mo-1")
    assert (shown["status"], shown["attempts"], shown["kind"]) == ("sent", 1, "stop")
    # Its delivery report comes back to /infobip/dlr like any other: the inbound view shows it.
    assert service.infobip.dlr(push(report(reply_id("mo-1"), "DELIVERED"))).status_code == 200
    work()
    shown = reply_of(service, "mo-1")
    assert shown["status"] == "DELIVERED" and shown["report"]["status"] == "DELIVERED_TO_HANDSET"


def test_basic_credentials_go_in_the_notify_url() -> None:
    cfg = {"PUBLIC_URL": "https://h.example/", "WEBHOOK_BASIC_USER": "u@x", "WEBHOOK_BASIC_PASSWORD": "p:w"}
    assert notify_url(cfg) == "https://u%40x:p%3Aw@h.example/infobip/dlr"
    assert notify_url({"PUBLIC_URL": None}) is None


def test_a_5xx_is_retried_with_backoff_and_sent_once(service, fake_infobip, r, work):
    fake_infobip.control.fail(SEND, status=503, count=4)  # the client's own 4 attempts all fail
    mo(service, "WIN 7", "mo-1")
    work()
    assert fake_infobip.control.sends() == []
    shown = reply_of(service, "mo-1")
    assert shown["status"] == "queued" and "503" in shown["error"]
    [(_member, due)] = r.zrange(REPLIES_DUE.format(t=keys.tag_of(SENDER)), 0, -1, withscores=True)
    assert due >= status.blocked_until(r, "send") - 0.01  # not before the client's own pause ends
    wait_for(lambda: time.time() >= due, 15, "the backoff to pass")
    send_due(r, "test-job", keys.tag_of(SENDER))
    [sent] = fake_infobip.control.sends()
    assert sent["text"] == "Entry 7 received." and reply_of(service, "mo-1")["status"] == "sent"


def test_a_timeout_after_the_request_went_out_is_looked_up_not_resent(service, fake_infobip, work):
    fake_infobip.control.hang(SEND, apply=True)  # Infobip takes the SMS; its answer never comes
    mo(service, "HELP", "mo-1")
    work()
    assert len(fake_infobip.control.sends()) == 1 and len(fake_infobip.control.calls(SEND)) == 1
    assert fake_infobip.control.calls("/sms/1/logs")  # found there: marked sent, not sent again
    assert reply_of(service, "mo-1")["status"] == "sent"


def test_a_timeout_before_infobip_took_it_is_sent_again(service, fake_infobip, work):
    fake_infobip.control.hang(SEND, apply=False)  # read, never applied, never answered
    mo(service, "HELP", "mo-1")
    work()
    assert len(fake_infobip.control.calls(SEND)) == 2  # not in the logs: sent again
    assert len(fake_infobip.control.sends()) == 1
    assert reply_of(service, "mo-1")["attempts"] == 2


@pytest.mark.parametrize(("status", "outcome", "due"), [
    (400, "failed", 0),  # Infobip refused the message: sending it again would not help
    (401, "queued", 1),  # a key being rotated must not lose a STOP confirmation: wait, retry
])
def test_a_refused_send(service, fake_infobip, r, work, status, outcome, due):
    fake_infobip.control.fail(SEND, status=status)
    mo(service, "STOP", "mo-1")
    work()
    shown = reply_of(service, "mo-1")
    assert shown["status"] == outcome and str(status) in shown["error"]
    assert r.zcard(REPLIES_DUE.format(t=keys.tag_of(SENDER))) == due
    assert fake_infobip.control.sends() == []


def test_at_most_the_cap_per_sender_per_hour(service, fake_infobip, work):
    for n in range(4):
        mo(service, f"hello {n}", f"mo-{n}")
    # Another sender has a cap of its own; it is in another lane (3, SENDER's is 2), whose replies
    # another job sends on a cluster.
    mo(service, "hello", "other-1", sender="38598444")
    work()
    assert sorted(s["to"] for s in fake_infobip.control.sends()) == ["38598111", "38598111", "38598444"]
    statuses = [reply_of(service, f"mo-{n}")["status"] for n in range(4)]
    assert sorted(statuses) == ["sent", "sent", "suppressed", "suppressed"]
    assert "replies_per_sender_per_hour" in reply_of(service, "mo-3")["reason"]


def test_a_stopped_number_gets_the_stop_reply_and_help_but_no_route_reply(service, fake_infobip, work):
    mo(service, "STOP", "mo-1")
    work()
    mo(service, "hello", "mo-2")
    mo(service, "HELP", "mo-3")
    work()
    texts = [s["text"] for s in fake_infobip.control.sends()]
    assert len(texts) == 2
    assert texts[0].startswith("You are unsubscribed") and texts[1].startswith("Reply STOP")
    shown = reply_of(service, "mo-2")
    assert (shown["status"], shown["reason"]) == ("suppressed", "the number opted out")

