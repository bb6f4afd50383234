"""workers/deliver.py (SPEC §4): each HTTP consumer's outbox, retries, dead letters and figures,
against real consumers on 127.0.0.1 and real RQ workers.

Retries become due without sleeping: a zero `retry_schedule`, or due times (scores of
`retry:<consumer>`) moved into the past, then the sweep and the workers run again. Due times
are checked as stored values against `time.time()` taken before the attempt, never by timing.
The isolation test runs real `rq worker` processes and only checks who got what.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from pathlib import Path
from typing import Any

import orjson
import pytest
from redis import Redis
from rq import Queue, SimpleWorker

from app.connection import queue_client
from app.enqueue import outbox
from app.events import build
from app.keys import DEAD_LETTERS, DELIVERY_QUEUE, QUEUE_NAME, RETRIES, consumer_key
from tests.consumers import Answer, ConsumerServer, http_consumer, routes_text
from tests.samples import push, report
from tools.redis_server import EmbeddedRedis
from workers import deliver, sweep
from workers.fanout import delivery

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def crm(use_routes, consumer_server: ConsumerServer) -> Callable[..., Any]:
    """`crm(**options)`: a service whose one HTTP consumer `crm` (every event) is at /crm."""

    def make(**options: Any) -> Any:
        options.setdefault("events", '["*"]')
        url = options.pop("url", consumer_server.url + "/crm")
        return use_routes(routes_text(http_consumer("crm", url, **options)))

    return make


def post_reports(service: Any, count: int, prefix: str = "m") -> list[str]:
    """`count` final reports in one push; returns their event ids as state recorded them."""
    ids = [f"{prefix}-{n}" for n in range(count)]
    resp = service.infobip.dlr(push(*(report(i) for i in ids)))
    assert resp.status_code == 200 and resp.json["accepted"] == count
    return ids


def event_ids(service: Any, message_ids: list[str]) -> list[str]:
    return [service.api.get(f"/api/messages/{m}").json["eventId"] for m in message_ids]


def figures(service: Any, name: str = "crm") -> dict[str, Any]:
    resp = service.api.get("/api/consumers")
    assert resp.status_code == 200
    return resp.json["consumers"][name]


def retries(r: Redis, name: str = "crm") -> list[tuple[dict[str, Any], float]]:
    key = RETRIES.format(consumer=consumer_key(name))
    return [(orjson.loads(raw), score) for raw, score in r.zrange(key, 0, -1, withscores=True)]


def make_due(r: Redis, name: str = "crm") -> int:
    """Move every waiting retry's due time into the past (as if the wait had passed)."""
    key = RETRIES.format(consumer=consumer_key(name))
    members = r.zrange(key, 0, -1)
    if members:
        r.zadd(key, dict.fromkeys(members, 1.0))
    return len(members)


def dead(r: Redis, name: str = "crm") -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in r.lrange(DEAD_LETTERS.format(consumer=consumer_key(name)), 0, -1)]


# --- failures, then recovery: delivered exactly once ----------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 400, 404, 409, 429])
def test_a_consumer_failing_the_first_attempts_gets_each_event_once(crm, consumer_server, work, r, status):
    service = crm(retry_schedule="[0, 0, 0]")
    consumer_server.script("/crm", Answer(status), Answer(status))
    messages = post_reports(service, 3)
    work()
    ids = event_ids(service, messages)
    assert consumer_server.delivered("/crm") == dict.fromkeys(ids, 1)
    attempts = [s.event_id for s in consumer_server.requests("/crm")]
    assert len(attempts) == 5 and set(attempts) == set(ids)
    assert figures(service) | {"target": None} == {
        "kind": "http", "target": None, "delivered": 3, "failedAttempts": 2, "deadLettered": 0,
        "deadLetters": 0, "pending": 0, "oldestPendingSeconds": None}
    assert retries(r) == [] and dead(r) == []


def test_a_consumer_that_recovers_on_the_last_retry(crm, consumer_server, work, r):
    service = crm(retry_schedule="[0, 0, 0]")
    consumer_server.script("/crm", *[Answer(500)] * 3)
    [message] = post_reports(service, 1)
    work()
    [event_id] = event_ids(service, [message])
    assert [s.status for s in consumer_server.requests("/crm")] == [500, 500, 500, 200]
    assert {s.event_id for s in consumer_server.requests("/crm")} == {event_id}
    assert consumer_server.delivered("/crm") == {event_id: 1}
    assert dead(r) == []


def test_failures_wait_as_the_schedule_says(crm, consumer_server, work, r):
    service = crm(retry_schedule="[60, 7200]")
    consumer_server.script("/crm", Answer(500), Answer(503), then=Answer(500))
    post_reports(service, 1)
    before = time.time()
    work()
    [(record, due)] = retries(r)
    assert record["attempt"] == 1 and record["lastError"] == "HTTP 500"
    assert before + 60 <= due < before + 7200  # the first wait, not the second

    make_due(r)
    before = time.time()
    assert sweep.sweep(r)["kickedDeliveries"] == 1
    work()
    [(record, due)] = retries(r)
    assert record["attempt"] == 2 and record["lastError"] == "HTTP 503"
    assert due >= before + 7200

    make_due(r)
    sweep.sweep(r)
    work()
    assert retries(r) == [] and len(consumer_server.requests("/crm")) == 3
    [letter] = dead(r)
    assert letter["reason"] == "retries exhausted" and letter["lastError"] == "HTTP 500"


def test_a_retry_that_is_not_due_is_not_sent(crm, consumer_server, work, r):
    service = crm(retry_schedule="[3600]")
    consumer_server.script("/crm", Answer(500))
    post_reports(service, 1)
    work()
    sweep.sweep(r)
    work()
    assert len(consumer_server.requests("/crm")) == 1 and len(retries(r)) == 1


# --- dead letters ---------------------------------------------------------------------------


def test_after_the_last_attempt_the_delivery_is_dead_lettered(crm, consumer_server, work, r):
    service = crm(retry_schedule="[0, 0]")
    consumer_server.script("/crm", then=Answer(500))
    [message] = post_reports(service, 1)
    work()
    [event_id] = event_ids(service, [message])
    assert len(consumer_server.requests("/crm")) == 3  # the delivery and two retries
    [letter] = dead(r)
    assert letter["id"] == event_id and letter["reason"] == "retries exhausted"
    assert letter["attempt"] == 2 and letter["lastError"] == "HTTP 500" and letter["lastAttemptAt"]
    assert orjson.loads(letter["body"])["id"] == event_id
    assert figures(service) | {"target": None} == {
        "kind": "http", "target": None, "delivered": 0, "failedAttempts": 3, "deadLettered": 1,
        "deadLetters": 1, "pending": 0, "oldestPendingSeconds": None}


def test_410_stops_retries_at_once(crm, consumer_server, work, r):
    service = crm(retry_schedule="[0, 0, 0]")
    consumer_server.script("/crm", Answer(410, {"Retry-After": "5"}))
    messages = post_reports(service, 2)
    work()
    gone, delivered = event_ids(service, messages)
    assert [s.event_id for s in consumer_server.requests("/crm")] == [gone, delivered]
    assert consumer_server.delivered("/crm") == {delivered: 1}
    [letter] = dead(r)
    assert letter["id"] == gone and letter["reason"] == "gone (410)" and letter["lastError"] == "HTTP 410"
    assert retries(r) == []
    got = figures(service)
    assert (got["delivered"], got["failedAttempts"], got["deadLettered"]) == (1, 1, 1)


# --- Retry-After ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(crm, consumer_server, work, r, status):
    service = crm(retry_schedule="[0, 0, 0]")
    consumer_server.script("/crm", Answer(status, {"Retry-After": "120"}))
    [message] = post_reports(service, 1)
    before = time.time()
    work()
    [(record, due)] = retries(r)
    assert due >= before + 120  # the stored due time, not a measured wait
    assert record["attempt"] == 1 and record["lastError"] == f"HTTP {status}"
    assert len(consumer_server.requests("/crm")) == 1  # not retried at once despite [0, 0, 0]
    got = figures(service)
    assert got["pending"] == 1 and got["oldestPendingSeconds"] >= 0

    make_due(r)
    sweep.sweep(r)
    work()
    assert consumer_server.delivered("/crm") == dict.fromkeys(event_ids(service, [message]), 1)
    assert retries(r) == [] and figures(service)["pending"] == 0


def test_retry_after_pauses_the_rest_of_the_batch(crm, consumer_server, work, r):
    service = crm(retry_schedule="[0, 0]")
    consumer_server.script("/crm", Answer(429, {"Retry-After": "300"}))
    messages = post_reports(service, 3)
    before = time.time()
    work()
    assert len(consumer_server.requests("/crm")) == 1  # asked to wait: the others were not sent
    waiting = retries(r)
    assert sorted(record["id"] for record, _ in waiting) == sorted(event_ids(service, messages))
    assert all(due >= before + 300 for _, due in waiting)
    assert sorted(record["attempt"] for record, _ in waiting) == [0, 0, 1]


def test_retry_after_as_an_http_date(crm, consumer_server, work, r):
    service = crm(retry_schedule="[0]")
    before = time.time()
    when = formatdate(before + 3600, usegmt=True)  # whole seconds: at least before + 3599
    consumer_server.script("/crm", Answer(503, {"Retry-After": when}))
    post_reports(service, 1)
    work()
    [(_record, due)] = retries(r)
    assert due >= before + 3599


def test_retry_after_never_shortens_the_schedule(crm, consumer_server, work, r):
    service = crm(retry_schedule="[600]")
    consumer_server.script("/crm", Answer(503, {"Retry-After": "5"}))
    post_reports(service, 1)
    before = time.time()
    work()
    [(_record, due)] = retries(r)
    assert due >= before + 600


def test_retry_after_adds_no_retries(crm, consumer_server, work, r):
    service = crm(retry_schedule="[0]")
    consumer_server.script("/crm", Answer(503), Answer(503, {"Retry-After": "60"}))
    post_reports(service, 1)
    work()
    assert len(consumer_server.requests("/crm")) == 2
    assert retries(r) == [] and dead(r)[0]["reason"] == "retries exhausted"


# --- a consumer that is down ----------------------------------------------------------------


def test_a_timeout_is_retried_and_the_rest_of_the_batch_waits(crm, consumer_server, work, r):
    service = crm(retry_schedule="[3600, 3600]", timeout=0.5)
    consumer_server.script("/crm", Answer(hang=True))  # the first request never gets an answer
    messages = post_reports(service, 3)
    before = time.time()
    work()
    ids = event_ids(service, messages)
    assert len(consumer_server.requests("/crm")) == 1  # the others were not attempted
    waiting = retries(r)
    assert sorted(record["id"] for record, _ in waiting) == sorted(ids)
    assert all(due >= before + 3600 for _, due in waiting)
    # Only the delivery that was tried spent an attempt.
    assert sorted(record["attempt"] for record, _ in waiting) == [0, 0, 1]
    [tried] = [record for record, _ in waiting if record["attempt"] == 1]
    assert tried["lastError"] == "read timeout after 0.5s"
    got = figures(service)
    assert (got["failedAttempts"], got["pending"], got["delivered"]) == (1, 3, 0)
    # State was written all the same: a consumer never holds up the drain.
    assert service.api.get(f"/api/messages/{messages[0]}").status_code == 200

    make_due(r)
    assert sweep.sweep(r)["kickedDeliveries"] == 1
    work()
    assert consumer_server.delivered("/crm") == dict.fromkeys(ids, 1)
    assert len(consumer_server.requests("/crm")) == 4
    assert retries(r) == [] and dead(r) == []


def test_connection_refused_is_retried_until_the_consumer_is_back(crm, consumer_server, work, r):
    service = crm(retry_schedule="[3600, 3600]")
    consumer_server.stop()  # its port now refuses connections
    messages = post_reports(service, 3)
    before = time.time()
    work()
    ids = event_ids(service, messages)
    waiting = retries(r)
    assert len(waiting) == 3 and all(due >= before + 3600 for _, due in waiting)
    assert sorted(record["attempt"] for record, _ in waiting) == [0, 0, 1]  # one attempt made
    [tried] = [record for record, _ in waiting if record["attempt"] == 1]
    assert "refused" in tried["lastError"].lower()
    assert figures(service)["failedAttempts"] == 1

    consumer_server.start()  # back, on the same port
    make_due(r)
    sweep.sweep(r)
    work()
    assert consumer_server.delivered("/crm") == dict.fromkeys(ids, 1)
    assert len(consumer_server.requests("/crm")) == 3
    got = figures(service)
    assert (got["delivered"], got["failedAttempts"], got["pending"]) == (3, 1, 0)


def test_a_consumer_down_for_good_ends_in_dead_letters(crm, consumer_server, work, r):
    service = crm(retry_schedule="[0, 0]")
    consumer_server.stop()
    messages = post_reports(service, 2)
    work()
    assert sorted(letter["id"] for letter in dead(r)) == sorted(event_ids(service, messages))
    assert all("refused" in letter["lastError"].lower() for letter in dead(r))
    got = figures(service)
    assert (got["deadLettered"], got["failedAttempts"], got["pending"]) == (2, 6, 0)


# --- consumer figures -----------------------------------------------------------------------


def test_consumer_figures(use_routes, consumer_server, work, r):
    service = use_routes(routes_text(
        http_consumer("crm", consumer_server.url + "/crm", events='["*"]', retry_schedule="[3600]"),
        http_consumer("idle", consumer_server.url + "/idle", events="[mo.received]")))
    consumer_server.script("/crm", Answer(500), Answer(410))
    post_reports(service, 4)
    work()
    waiting = retries(r)
    assert len(waiting) == 1
    # Pretend the waiting delivery was queued an hour ago: the oldest pending age follows it.
    [(record, due)] = waiting
    r.zrem(RETRIES.format(consumer=consumer_key("crm")), orjson.dumps(record))
    old = {**record, "queuedAt": "2020-01-01T00:00:00.000Z"}
    r.zadd(RETRIES.format(consumer=consumer_key("crm")), {orjson.dumps(old): due})
    before = time.time()
    got = service.api.get("/api/consumers").json
    crm_figures = got["consumers"]["crm"]
    assert crm_figures["target"] == consumer_server.url + "/crm"
    assert {k: crm_figures[k] for k in ("delivered", "failedAttempts", "deadLettered", "deadLetters",
                                         "pending")} == {
        "delivered": 2, "failedAttempts": 2, "deadLettered": 1, "deadLetters": 1, "pending": 1}
    since_2020 = before - 1_577_836_800  # 2020-01-01T00:00:00Z as an epoch
    assert crm_figures["oldestPendingSeconds"] >= since_2020 - 0.001  # rounded to milliseconds
    assert got["consumers"]["idle"] == {
        "kind": "http", "target": consumer_server.url + "/idle", "delivered": 0, "failedAttempts": 0,
        "deadLettered": 0, "deadLetters": 0, "pending": 0, "oldestPendingSeconds": None}
    assert got["moUnrouted"] == 0


def test_consumer_figures_need_an_api_key(crm, r):
    service = crm()
    assert service.client.get("/api/consumers").status_code == 401


# --- crash safety ---------------------------------------------------------------------------


def queue_deliveries(r: Redis, count: int, name: str = "crm") -> list[str]:
    """Deliveries in a consumer's outbox as the fan-out writes them (no job kicked)."""
    ids = []
    for n in range(count):
        event = build(f"evt_{n:04}", "dlr.final", {"messageId": f"m-{n}"})
        r.rpush(outbox(name).inbox, delivery(event["id"], orjson.dumps(event)))
        ids.append(event["id"])
    return ids


def run_queue(r: Redis, name: str) -> None:
    SimpleWorker([Queue(name, connection=queue_client(r))], connection=queue_client(r)).work(burst=True)


def test_a_claimed_batch_is_delivered_once_by_the_rerun_of_its_job(crm, consumer_server, work, r):
    service = crm()
    messages = post_reports(service, 3)
    run_queue(r, QUEUE_NAME)  # drain only: the delivery job is queued, not run
    job_id = r.get(outbox("crm").lock).decode()
    channel = outbox("crm")
    # The job claims its batch and dies before sending anything.
    assert channel.own(r, job_id)
    assert len(channel.claim(r, job_id)) == 3
    assert consumer_server.requests() == [] and r.llen(channel.inbox) == 0

    # RQ runs it again, with the same id.
    assert deliver.deliver(r, "crm", job_id) == {"delivered": 3}
    ids = event_ids(service, messages)
    assert consumer_server.delivered("/crm") == dict.fromkeys(ids, 1)
    assert not r.exists(channel.batch(job_id)) and not r.exists(channel.lock)
    assert not r.smembers(channel.claimed)  # the applied batch is no longer listed for the sweep
    work()  # the queued job finds nothing left to do
    assert len(consumer_server.requests("/crm")) == 3


def test_the_sweep_hands_back_a_batch_whose_job_is_gone(crm, consumer_server, work, r):
    crm()
    ids = queue_deliveries(r, 3)
    channel = outbox("crm")
    channel.own(r, "ghost")  # a job id RQ never heard of
    channel.claim(r, "ghost")
    r.delete(channel.lock)  # its lock expired

    done = sweep.sweep(r)
    assert done["handedBack"] == 3 and done["kickedDeliveries"] == 1
    assert not r.exists("dbatch:crm:ghost")
    assert [orjson.loads(raw)["id"] for raw in r.lrange(channel.inbox, 0, -1)] == ids  # in order
    work()
    assert consumer_server.delivered("/crm") == dict.fromkeys(ids, 1)
    assert [s.event_id for s in consumer_server.requests("/crm")] == ids


def test_the_sweep_leaves_a_live_delivery_job_alone(crm, consumer_server, work, r):
    crm()
    ids = queue_deliveries(r, 2)
    outbox("crm").kick(r)  # a queued job owns the outbox
    job_id = r.get(outbox("crm").lock).decode()
    outbox("crm").claim(r, job_id, 1)
    done = sweep.sweep(r)
    assert done.get("handedBack", 0) == 0 and done.get("kickedDeliveries", 0) == 0
    work()
    assert consumer_server.delivered("/crm") == dict.fromkeys(ids, 1)


def test_a_job_that_lost_its_outbox_hands_its_batch_back(crm, consumer_server, work, r):
    crm()
    ids = queue_deliveries(r, 2)
    channel = outbox("crm")
    channel.own(r, "old-job")
    channel.claim(r, "old-job", 1)
    r.set(channel.lock, "new-job")  # the old job's lock expired and another job took over
    assert deliver.deliver(r, "crm", "old-job") == {"handedBack": 1}
    assert consumer_server.requests() == []
    r.delete(channel.lock)
    channel.kick(r)
    work()
    assert [s.event_id for s in consumer_server.requests("/crm")] == ids


def test_a_job_past_its_time_budget_requeues_itself(crm, consumer_server, work, r):
    crm()
    ids = queue_deliveries(r, 3)
    assert deliver.deliver(r, "crm", "job-1", budget=0) == {}
    assert consumer_server.requests() == []
    assert r.llen(outbox("crm").inbox) == 3  # nothing lost, order kept
    assert Queue(DELIVERY_QUEUE, connection=queue_client(r)).count == 1  # a fresh job, behind the others
    work()
    assert [s.event_id for s in consumer_server.requests("/crm")] == ids


def test_a_delivery_job_for_a_consumer_no_longer_configured_sends_nothing(crm, consumer_server, r):
    crm()
    queue_deliveries(r, 1, name="gone")
    assert deliver.deliver(r, "gone", "job-1") == {}
    assert consumer_server.requests() == [] and r.llen(outbox("gone").inbox) == 1


# --- isolation: a hanging consumer never delays a healthy one -------------------------------


@pytest.fixture
def rq_workers(redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """`start(routes_path)`: real `rq worker` processes, one on `receiver`, two on `deliveries`."""
    started: list[subprocess.Popen[bytes]] = []

    def start(routes_path: Path) -> None:
        env = {**os.environ, "ROUTES_FILE": str(routes_path), "REDIS_URL": redis_server.url}
        for n, queue in enumerate((QUEUE_NAME, DELIVERY_QUEUE, DELIVERY_QUEUE)):
            log = (tmp_path / f"worker-{n}.log").open("wb")
            started.append(subprocess.Popen(
                [str(ROOT / ".venv/bin/rq"), "worker", "--url", redis_server.url, "--path", str(ROOT),
                 "--name", f"test-{os.getpid()}-{n}", queue],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
            log.close()

    yield start
    for process in started:
        process.terminate()  # warm shutdown: the current job may finish
    for process in started:
        try:
            process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            process.terminate()  # a second signal is a cold shutdown: RQ kills the work-horse
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def wait_for(condition: Callable[[], bool], seconds: float = 60.0, step: float = 0.1) -> bool:
    """Poll, bounded both in time and in the number of checks."""
    deadline = time.monotonic() + seconds
    for _ in range(int(seconds / step)):
        if condition():
            return True
        if time.monotonic() > deadline:
            break
        time.sleep(step)
    return condition()


def test_a_hanging_consumer_never_delays_a_healthy_one(use_routes, consumer_server, rq_workers, r):
    zeros = "[" + ", ".join(["0"] * 10) + "]"  # the hanging consumer keeps its worker busy
    service = use_routes(routes_text(
        http_consumer("stuck", consumer_server.url + "/stuck", events='["*"]', timeout=1,
                      retry_schedule=zeros),
        http_consumer("healthy", consumer_server.url + "/healthy", events='["*"]')))
    consumer_server.script("/stuck", then=Answer(hang=True))  # never answers while the test runs
    rq_workers(service.path)

    first = post_reports(service, 1, prefix="first")
    assert wait_for(lambda: len(consumer_server.requests("/stuck")) >= 1), "stuck consumer never called"
    more = post_reports(service, 20, prefix="more")  # while the stuck consumer hangs
    expected = 1 + len(more)
    assert wait_for(lambda: len(consumer_server.delivered("/healthy")) >= expected), \
        f"healthy consumer got {len(consumer_server.delivered('/healthy'))} of {expected}"

    ids = event_ids(service, first + more)
    assert consumer_server.delivered("/healthy") == dict.fromkeys(ids, 1)
    assert len(consumer_server.requests("/healthy")) == expected
    assert consumer_server.delivered("/stuck") == {}
