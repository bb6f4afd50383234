"""Pull mode, send records and reconciliation with real processes (SPEC §9, docs/RELIABILITY.md).

The stack of tests/faults/harness.py (redis-server, gunicorn, rq workers, the `rq cron`
scheduler, a consumer) plus the fake Infobip (tools/fake_infobip) as one more process, which
serves each pulled report once, keeps 48 h of logs, pushes to the notifyUrl given at send
time (or withholds the push), and answers 429/503 on demand. The service is configured as an
operator would: INFOBIP_BASE_URL pointing at the fake, PULL_REPORTS=1, RECONCILE_AFTER short.

What every test checks at the end, at the consumer: each message has exactly one event id
(a report by push, pull and logs is one event), and every expected message has one.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOKEN
from tests.consumers import ConsumerServer
from tests.fake import API_KEY as INFOBIP_KEY
from tests.fake import FakeProcess
from tests.faults.harness import Stack, assert_no_secret_in_logs, delivered, report_figures, wait_for
from tools.fake_infobip.control import FakeControl

pytestmark = pytest.mark.faults


class InfobipStack(Stack):
    """The harness's stack, talking to the fake Infobip."""

    def __init__(self, tmp: Path, consumer: ConsumerServer, fake_url: str, **env: str) -> None:
        super().__init__(tmp, consumer)
        self.extra = {"INFOBIP_BASE_URL": fake_url, "INFOBIP_API_KEY": INFOBIP_KEY, "INFOBIP_TIMEOUT": "5",
                      "PULL_INTERVAL": "1", **env}

    def env(self) -> dict[str, str]:
        return {**super().env(), **self.extra}

    def sources(self, message_ids: list[str]) -> Counter:
        """How the current report of each message came: push, pull, logs, send (none yet)."""
        found: Counter = Counter()
        for message_id in message_ids:
            status, view = self.api("GET", f"/api/messages/{message_id}")
            found[view["source"] if status == 200 else "missing"] += 1
        return found


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeControl]:
    process = FakeProcess(tmp_path / "fake-infobip.log").start()
    control = FakeControl(process.url)
    control.settings(notify_delay=0.2, retry_scale=0.005)
    control.url = process.url  # type: ignore[attr-defined]
    try:
        yield control
    finally:
        process.stop()


@contextlib.contextmanager
def running(tmp_path: Path, consumer: ConsumerServer, fake: FakeControl,
            **env: str) -> Iterator[InfobipStack]:
    stack = InfobipStack(tmp_path, consumer, fake.url, **env)  # type: ignore[attr-defined]
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def one_event_each(consumer: ConsumerServer, message_ids: list[str], timeout: float = 120) -> dict[str, Any]:
    """Every message delivered, each with exactly one distinct event id; the figures."""
    wanted = set(message_ids)
    wait_for(lambda: wanted <= set(delivered(consumer)), timeout,
             "an event for every message at the consumer")
    got = {m: ids for m, ids in delivered(consumer).items() if m in wanted}
    doubled = {m: ids for m, ids in got.items() if len(ids) != 1}
    assert doubled == {}, f"messages with more than one event id: {list(doubled.items())[:5]}"
    return {"messages": len(wanted), "distinctEventIds": sum(len(ids) for ids in got.values()),
            "deliveredCopies": sum(sum(ids.values()) for ids in got.values())}


def send(fake: FakeControl, stack: InfobipStack, ids: list[str], bulk_id: str, notify: bool) -> None:
    """Send through the fake (our own messageIds), and post each answer as send records, as the
    sending system does."""
    from app.infobip.client import InfobipClient

    client = InfobipClient(fake.url, api_key=INFOBIP_KEY)  # type: ignore[attr-defined]
    notify_url = f"{stack.url}/infobip/dlr?token={TOKEN}" if notify else None
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        destinations = [{"to": f"417930{n:05}", "messageId": m} for n, m in enumerate(chunk)]
        message = {"from": "InfoSMS", "text": "Hello", "destinations": destinations}
        if notify_url:
            message["notifyUrl"] = notify_url
        answer = client.send_advanced({"bulkId": bulk_id, "messages": [message]})
        status, body = stack.api("POST", "/api/sends", answer)
        assert status == 200 and body["accepted"] == len(destinations), body


def test_a_pulled_campaign_of_10000_reports_none_lost_none_doubled(tmp_path, consumer, fake) -> None:
    ids = fake.add_reports(count=10_000, bulkId="pulled")
    with running(tmp_path, consumer, fake, PULL_REPORTS="1", PULL_LIMIT="1000", RECONCILE_AFTER="0") as stack:
        figures = one_event_each(consumer, ids, timeout=150)
        assert fake.pending()["reports"] == 0
        status, bulk = stack.api("GET", "/api/bulks/pulled")
        assert status == 200 and bulk["total"] == 10_000
        pages = [c for c in fake.calls("/sms/1/reports") if c["status"] == 200]
        assert stack.sources(ids[:200]) == Counter(pull=200)
        figures.update(pages=len(pages), processRestarts=[name for _, name, _ in stack.restarts])
        report_figures("pull_campaign_10000", figures)
        assert_no_secret_in_logs(stack)
        assert INFOBIP_KEY not in stack.logs()


def test_a_worker_sigkilled_while_pulling_loses_nothing(tmp_path, consumer, fake) -> None:
    """The kill lands while the poller holds its lock: a page may be fetched and gone from
    Infobip but not yet in Redis (the loss window). Send records make those messages
    candidates, and reconciliation fills them from the logs: in the end nothing is missing."""
    ids = [f"kill-{n:05}" for n in range(3000)]
    # RECONCILE_AFTER outlasts the dead poller's lock (30 s) and the pulling after it, so the
    # logs fill only what pulling lost.
    with running(tmp_path, consumer, fake, PULL_REPORTS="1", PULL_LIMIT="50", RECONCILE_AFTER="45",
                 RECONCILE_RATE="50") as stack:
        stack.held.add("worker")  # sends first: no pulling until they are recorded
        stack.procs["worker"].stop()
        send(fake, stack, ids, "killed", notify=False)
        wait_for(lambda: fake.pending()["reports"] == len(ids), 30, "the fake's reports to wait for a pull")
        stack.held.discard("worker")
        kills = 0
        for _ in range(5000):  # every 2 ms, at most 10 s
            if stack.r.exists("lock:pull:pull-reports"):
                stack.procs["worker"].kill_tree()
                kills += 1
                break
            time.sleep(0.002)
        assert kills == 1, "the kill landed while a poller held its lock"
        figures = one_event_each(consumer, ids, timeout=150)
        wait_for(lambda: stack.api("GET", "/api/bulks/killed")[1]["awaitingReport"] == 0, 60,
                 "nothing awaiting a report")
        sources = stack.sources(ids)
        assert sources["missing"] == 0 and sources["send"] == 0
        figures.update(sources=dict(sources), lostInTheWindowAndFilledFromLogs=sources["logs"],
                       reconciliation=stack.api("GET", "/api/reconciliation")[1]["totals"])
        report_figures("pull_worker_sigkill", figures)


def test_429_and_503_for_a_while(tmp_path, consumer, fake) -> None:
    ids = fake.add_reports(count=3000, bulkId="throttled")
    fake.fail("/sms/1/reports", status=429, count=6, retry_after=1)
    fake.fail("/sms/1/reports", status=503, count=6)
    with running(tmp_path, consumer, fake, PULL_REPORTS="1", PULL_LIMIT="500", RECONCILE_AFTER="0") as stack:
        figures = one_event_each(consumer, ids)
        answers = Counter(c["status"] for c in fake.calls("/sms/1/reports"))
        assert answers[429] == 6 and answers[503] == 6 and answers[200] >= 6
        status, ready = stack.api("GET", "/readyz")
        figures.update(answers=dict(answers), readyz=ready.get("infobip") if status in (200, 503) else None)
        report_figures("pull_429_503", figures)


def test_reports_withheld_from_push_are_found_by_reconciliation(tmp_path, consumer, fake) -> None:
    ids = [f"wh-{n:04}" for n in range(400)]
    withheld = ids[::4]
    fake.withhold(message_ids=withheld)
    with running(tmp_path, consumer, fake, RECONCILE_AFTER="4", RECONCILE_RATE="20") as stack:
        send(fake, stack, ids, "withheld", notify=True)
        figures = one_event_each(consumer, ids, timeout=120)
        wait_for(lambda: stack.api("GET", "/api/bulks/withheld")[1]["awaitingReport"] == 0, 60,
                 "nothing awaiting a report")
        assert stack.sources(withheld) == Counter(logs=len(withheld))
        assert stack.sources(ids[1:40:4]) == Counter(push=10)
        bulk = stack.api("GET", "/api/bulks/withheld")[1]
        assert (bulk["total"], bulk["awaitingReport"], bulk["stale"]) == (400, 0, 0)
        run = stack.api("GET", "/api/reconciliation")[1]
        assert run["enabled"] and run["lastRun"] is not None
        figures.update(withheld=len(withheld), bulk=bulk)
        report_figures("reconcile_withheld", figures)


def test_a_push_and_a_pull_of_the_same_report_give_one_event(tmp_path, consumer, fake) -> None:
    from tests.samples import report

    reports = [report(f"both-{n:04}", bulkId="both") for n in range(1000)]
    fake.add_reports(reports)
    with running(tmp_path, consumer, fake, PULL_REPORTS="1", RECONCILE_AFTER="0") as stack:
        import orjson

        from tests.faults.harness import request

        for start in range(0, len(reports), 100):  # Infobip's own push of the same reports
            body = orjson.dumps({"results": reports[start : start + 100]})
            status, _, _ = request(stack.port, "POST", f"/infobip/dlr?token={TOKEN}", body,
                                   {"Content-Type": "application/json"})
            assert status == 200
        wait_for(lambda: fake.pending()["reports"] == 0, 60, "every report pulled too")
        figures = one_event_each(consumer, [r["messageId"] for r in reports])
        report_figures("push_and_pull", figures)
