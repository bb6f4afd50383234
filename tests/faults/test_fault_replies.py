"""Replies and opt-outs (SPEC §11) with real processes: gunicorn, rq workers, the scheduler and
redis-server as in production (tests/faults/harness.py), and the fake Infobip as a real HTTP
server that takes the sends and pushes their delivery reports back to gunicorn.

One SMS per inbound message is the point of every test here: the fake's `sends()` are the
SMS it accepted, its `calls()` every request that reached it (a second POST shows there even
where the fake would refuse a duplicate messageId)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from app import keys
from app.keys import REPLIES_DUE, REPLY
from app.optout.replies import reply_id
from tests.conftest import TOKEN
from tests.consumers import ConsumerServer, http_consumer, routes_text
from tests.faults.harness import CONSUMER, Stack, assert_no_secret_in_logs, request, wait_for

pytestmark = pytest.mark.faults

SEND, LOGS = "/sms/1/text/advanced", "/sms/1/logs"
SENDER, RECEIVER = "38598111", "41793026727"
CAP = 3
FINISHED = ("sent", "suppressed", "failed", "DELIVERED")


class ReplyStack(Stack):
    """The harness's stack, talking to the fake Infobip, with replies on every MO route."""

    def __init__(self, tmp: Path, consumer: ConsumerServer, fake: Any) -> None:
        super().__init__(tmp, consumer)
        self.fake = fake
        entry = http_consumer(CONSUMER, f"{consumer.url}/{CONSUMER}", events='["*"]', retry_schedule="[1]")
        self.routes.write_text(routes_text(entry, mo_routes="""\
  - keywords: [WIN]
    reply: "Entry {cleanText} received."
  - default: true
    reply: "Thanks for your message."
""") + f"optout:\n  replies_per_sender_per_hour: {CAP}\n")

    def env(self) -> dict[str, str]:
        infobip = {k: str(v) for k, v in self.fake.config(timeout=5.0).items() if v is not None}
        # PUBLIC_URL is gunicorn: the fake pushes each reply's report there, as Infobip would.
        return {**super().env(), **infobip, "PUBLIC_URL": self.url, "REPLY_LOOKUP_DELAY": "1"}

    def mo(self, text: str, message_id: str, sender: str = SENDER) -> None:
        query = urlencode({"token": TOKEN, "sender": sender, "receiver": RECEIVER, "text": text,
                           "messageid": message_id})
        status, _, _ = request(self.port, "GET", f"/infobip/mo?{query}")
        assert status == 200

    def reply(self, message_id: str) -> dict[str, Any] | None:
        status, body = self.api("GET", f"/api/inbound/{message_id}")
        return body.get("reply") if status == 200 else None

    def settled(self, message_id: str) -> dict[str, Any]:
        wait_for(lambda: (self.reply(message_id) or {}).get("status") in FINISHED, 90,
                 f"the reply to {message_id} to be settled")
        return self.reply(message_id) or {}

    def idle(self) -> None:
        """Nothing left to send: no reply due or in flight."""
        due = [REPLIES_DUE.format(t=t) for t in keys.tags()]
        wait_for(lambda: sum(map(self.r.zcard, due)) == 0, 90, "no reply left to send")


@pytest.fixture
def replies(tmp_path: Path, consumer: ConsumerServer, fake_infobip: Any) -> Iterator[ReplyStack]:
    stack = ReplyStack(tmp_path, consumer, fake_infobip)
    try:
        yield stack.start()
    finally:
        fake_infobip.control.release()
        stack.stop()


def test_stop_start_help_and_a_route_reply_and_their_reports(replies: ReplyStack):
    fake = replies.fake.control
    other = "38598222"  # the cap (3 an hour) is per sender: the route reply goes to another one
    for n, text in enumerate(("STOP", "START", "HELP", "WIN 42")):
        replies.mo(text, f"mo-{n}", sender=other if text.startswith("WIN") else SENDER)
        shown = replies.settled(f"mo-{n}")
        assert shown["status"] in ("sent", "DELIVERED"), shown
        if text == "STOP":
            assert replies.api("GET", f"/api/optouts/{SENDER}")[1]["optedOut"] is True
    assert replies.api("GET", f"/api/optouts/{SENDER}")[1]["optedOut"] is False  # START lifted it
    sends = {s["messageId"]: s for s in fake.sends()}
    assert set(sends) == {reply_id(f"mo-{n}") for n in range(4)}
    texts = [sends[reply_id(f"mo-{n}")]["text"] for n in range(4)]
    assert texts[0].startswith("You are unsubscribed") and texts[1].startswith("You are subscribed again")
    assert texts[2] == "Reply STOP to unsubscribe." and texts[3] == "Entry 42 received."
    assert [(s["from"], s["to"]) for s in sends.values()] == [(RECEIVER, SENDER)] * 3 + [(RECEIVER, other)]
    # The fake pushed each reply's report to PUBLIC_URL/infobip/dlr: the inbound view shows it.
    for n in range(4):
        wait_for(lambda n=n: replies.reply(f"mo-{n}")["status"] == "DELIVERED", 60, "the reply's report")
    # The notifyUrl carries the ingest token, the client the Infobip key: neither is logged.
    assert_no_secret_in_logs(replies)
    assert replies.fake.api_key not in replies.logs()


def test_the_same_mo_resent_five_times_gives_one_sms(replies: ReplyStack):
    for _ in range(5):
        replies.mo("hello", "mo-1")
    replies.settled("mo-1")
    replies.idle()
    assert len(replies.fake.control.sends()) == 1 and len(replies.fake.control.calls(SEND)) == 1


@pytest.mark.parametrize("applied", [False, True], ids=["killed-before-infobip-took-it", "killed-after"])
def test_a_worker_killed_between_recording_and_sending_gives_one_sms(replies: ReplyStack, applied: bool):
    """The reply is recorded `sending`, the POST is at the fake, which holds it (having taken
    the SMS or not); then every deliverer, work-horses included, is SIGKILLed. The restarted
    ones find it `sending`, look it up in /sms/1/logs, and send it only if it is not there."""
    fake = replies.fake.control
    fake.hang(SEND, apply=applied)
    replies.mo("hello", "mo-1")
    wait_for(lambda: len(fake.calls(SEND)) == 1, 60, "the send to reach the fake")
    # The record itself, not the view: once the fake applied the send it may already have pushed
    # the reply's report, which the view shows (DELIVERED) in place of the record's status.
    assert replies.r.hget(REPLY.format(t=keys.tag_of(SENDER), message_id="mo-1"), "status") == b"sending"
    for name in ("deliverer-1", "deliverer-2"):
        replies.procs[name].kill()  # the supervisor restarts them
    fake.release()
    shown = replies.settled("mo-1")
    replies.idle()
    assert shown["status"] in ("sent", "DELIVERED")
    assert len(fake.sends()) == 1, fake.sends()
    assert fake.calls(LOGS), "looked up before any resend"
    assert len(fake.calls(SEND)) == (1 if applied else 2)


def test_a_timeout_after_the_fake_got_the_request_gives_one_sms(replies: ReplyStack):
    fake = replies.fake.control
    fake.hang(SEND, apply=True)
    replies.mo("HELP", "mo-1")
    shown = replies.settled("mo-1")
    replies.idle()
    assert shown["status"] in ("sent", "DELIVERED") and shown["attempts"] == 1
    assert len(fake.sends()) == 1 and len(fake.calls(SEND)) == 1 and fake.calls(LOGS)


def test_two_auto_responders_stop_at_the_cap(replies: ReplyStack):
    """The sender answers every SMS it gets (as Infobip forwards its answers to us), and so do
    we: the exchange stops after CAP replies to it, the next is suppressed."""
    fake = replies.fake.control
    replies.mo("Out of office", "auto-0")
    for n in range(CAP + 3):  # bounded: it must stop well before this
        shown = replies.settled(f"auto-{n}")
        if shown["status"] == "suppressed":
            break
        replies.mo("Out of office", f"auto-{n + 1}")  # its auto-answer to our reply
    replies.idle()
    assert n == CAP and "replies_per_sender_per_hour" in shown["reason"]
    assert len(fake.sends()) == CAP and len(fake.calls(SEND)) == CAP
