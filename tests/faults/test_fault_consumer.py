"""A consumer down for longer than several retries, then back (SPEC §4, docs/RELIABILITY.md).

The routes file gives the consumer `retry_schedule: [1, 1, 1, 2]` (five attempts over ~5 s) and
`timeout: 2`. Under load, it first answers 503 for 12 s, then refuses connections (port closed)
for 6 s, then answers 200 again. Deliveries that ran out of attempts while it was down are in
the dead-letter list; the others are delivered by their retries. A replay through the API
(POST /api/dlq/crm/replay) then delivers the dead letters with their original webhook-id.
In the end every acknowledged report reached the consumer: one distinct event id each.
"""

from __future__ import annotations

import time

import orjson
import pytest

from app.keys import DEAD_LETTERS, OUTBOX, RETRIES, consumer_key
from tests.consumers import OK, Answer
from tests.faults.harness import (
    CONSUMER,
    assert_no_secret_in_logs,
    assert_nothing_lost,
    delivered,
    report_figures,
    wait_for,
)

pytestmark = pytest.mark.faults

PATH = f"/{CONSUMER}"


def nothing_pending(stack) -> bool:
    r = stack.r
    return (r.llen(OUTBOX.format(consumer=consumer_key(CONSUMER))) == 0
            and r.zcard(RETRIES.format(consumer=consumer_key(CONSUMER))) == 0
            and not r.keys(f"dbatch:{CONSUMER}:*"))


def test_consumer_down_then_back_delivers_once_and_dead_letters_replay(stack, load, consumer):
    # Every failed attempt is a round trip: at five attempts per event, 20 events a second keep
    # the one delivery job of the consumer within what it can try (~150 attempts a second here).
    client = load(rate=2, size=10, mo_every=5)
    wait_for(lambda: len(delivered(consumer)) >= 100, 30, "first deliveries")

    consumer.script(PATH, then=Answer(503))
    down_at = time.monotonic()
    time.sleep(12)
    consumer.stop()  # now the port refuses connections
    time.sleep(6)
    consumer.script(PATH, then=OK)
    consumer.start()
    back_at = time.monotonic()
    time.sleep(5)  # load goes on against the recovered consumer
    client.finish(120)

    acked = sorted(client.acked)
    wait_for(lambda: len(stack.persisted(acked)) == len(acked), 120, "every acknowledged report in state")
    wait_for(lambda: nothing_pending(stack), 120, "the outbox and retries to empty")
    dead_key = DEAD_LETTERS.format(consumer=consumer_key(CONSUMER))
    dead = [orjson.loads(raw) for raw in stack.r.lrange(dead_key, 0, -1)]
    assert dead, "deliveries ran out of attempts while the consumer was down"
    assert {d["reason"] for d in dead} == {"retries exhausted"}
    dead_ids = {d["id"]: orjson.loads(d["body"])["data"]["messageId"] for d in dead}
    before_replay = delivered(consumer)
    assert not set(dead_ids.values()) & set(before_replay), "a dead letter was never delivered"
    missing = set(acked) - set(before_replay)
    assert missing == set(dead_ids.values()), "what is not delivered is exactly what is dead-lettered"

    status, listed = stack.api("GET", f"/api/dlq/{CONSUMER}?limit=1000")
    assert status == 200 and len(listed["results"]) == min(len(dead), 1000)
    status, answer = stack.api("POST", f"/api/dlq/{CONSUMER}/replay", {})
    assert status == 200 and answer == {"replayed": len(dead)}
    replayed_at = time.monotonic()
    wait_for(lambda: set(delivered(consumer)) >= set(acked), 120, "the replayed dead letters to be delivered")
    replay_took = round(time.monotonic() - replayed_at, 1)

    got = delivered(consumer)
    for event_id, message_id in dead_ids.items():
        assert set(got[message_id]) == {event_id}, "replayed with the same webhook-id"
    for seen in consumer.requests(PATH):
        if seen.status == 200 and seen.event_id in dead_ids:
            seen.verify()  # signed, with the consumer's whsec_ secret, as every attempt
    assert stack.r.llen(DEAD_LETTERS.format(consumer=consumer_key(CONSUMER))) == 0

    figures = assert_nothing_lost(stack, client, consumer)
    attempts = consumer.requests(PATH)
    refused = {s.event_id for s in attempts if s.status == 503}
    figures.update({
        "retrySchedule": [1, 1, 1, 2],
        "secondsAnswering503": 12,
        "secondsPortClosed": 6,
        "secondsDownInTotal": round(back_at - down_at, 1),
        "attemptsAnswered503": sum(1 for s in attempts if s.status == 503),
        "deadLettered": len(dead),
        "eventsRefusedThenDeliveredByARetry": len(refused - set(dead_ids)),
        "replayed": answer["replayed"],
        "secondsFromReplayToAllDelivered": replay_took,
    })
    report_figures("consumer_down", figures)
    assert_no_secret_in_logs(stack)
