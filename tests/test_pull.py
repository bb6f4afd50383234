"""Pull mode (app/infobip/pull.py, SPEC §9.1) against the fake Infobip, a real HTTP server that
serves each report and inbound message once, with real workers applying what was pulled."""

from __future__ import annotations

import time
from typing import Any

import orjson
import pytest

from app import enqueue, keys, quarantine, store
from app.infobip import pull, status
from app.infobip.client import InfobipClient, RetryPolicy
from app.keys import PULL_LOCK, WORKER_COUNTERS
from tests.samples import push, report
from tools.redis_server import free_port

CONFIG = {"DRAIN_LANES": 4, "QUARANTINE_MAX": 100, "PULL_LIMIT": 1000}


@pytest.fixture
def ib(fake_infobip, r) -> InfobipClient:
    return InfobipClient(fake_infobip.url, api_key=fake_infobip.api_key, timeout=2, r=r,
                         policy=RetryPolicy(base=0.05, cap=0.2))


def poll(r, ib, feed=pull.REPORTS, **config: Any) -> dict[str, Any]:
    return pull.poll(r, {**CONFIG, **config}, ib, feed)


def test_a_campaign_is_pulled_page_by_page_each_report_once(fake_infobip, ib, r, work) -> None:
    ids = fake_infobip.control.add_reports(count=2500, bulkId="camp")
    figures = poll(r, ib)
    assert (figures["pages"], figures["accepted"], figures["more"]) == (3, 2500, False)
    assert [c["status"] for c in fake_infobip.control.calls("/sms/1/reports")] == [200, 200, 200]
    work()
    found = [store.get_message(r, i) for i in ids]
    assert all(m and m["source"] == "pull" and m["final"] for m in found)
    assert store.get_bulk(r, "camp")["total"] == 2500
    assert poll(r, ib)["accepted"] == 0, "served once: a second poll finds nothing"


def test_a_full_page_asks_for_more(fake_infobip, ib, r) -> None:
    fake_infobip.control.add_reports(count=30)
    figures = pull.poll(r, {**CONFIG, "PULL_LIMIT": 10}, ib, pull.REPORTS, max_pages=2)
    assert (figures["pages"], figures["accepted"], figures["more"]) == (2, 20, True)


def test_one_poller_at_a_time(fake_infobip, ib, r) -> None:
    fake_infobip.control.add_reports(count=3)
    r.set(PULL_LOCK.format(feature="pull-reports"), "someone else", ex=30)
    assert "skipped" in poll(r, ib)
    assert fake_infobip.control.calls("/sms/1/reports") == [], "no call while another poller runs"
    r.delete(PULL_LOCK.format(feature="pull-reports"))
    assert poll(r, ib)["accepted"] == 3
    assert not r.exists(PULL_LOCK.format(feature="pull-reports")), "released after the poll"


def test_bad_items_of_a_page_are_quarantined_with_the_page(fake_infobip, ib, r, work) -> None:
    good = report("good-1", bulkId="b")
    fake_infobip.control.add_reports([good, {"to": "41793026727", "status": {"id": "five"}}], logged=False)
    figures = poll(r, ib)
    assert (figures["accepted"], figures["rejected"]) == (1, 1)
    [entry] = quarantine.entries(r)
    assert entry["source"] == "pull" and entry["path"] == "/infobip/dlr"
    assert [i["messageId"] for i in orjson.loads(quarantine.body_of(entry))["results"][:1]] == ["good-1"]
    work()
    assert store.get_message(r, "good-1")["source"] == "pull"


def test_inbound_messages_are_pulled(fake_infobip, ib, r, work) -> None:
    ids = fake_infobip.control.add_inbox(count=3, text="HELLO there")
    assert poll(r, ib, pull.INBOX)["accepted"] == 3
    work()
    got = [store.get_inbound(r, i) for i in ids]
    assert all(m["source"] == "pull" and m["keyword"] == "HELLO" for m in got)


def test_a_report_by_push_and_by_pull_is_one_event(fake_infobip, ib, r, work, infobip) -> None:
    same = report("twice", bulkId="b")
    assert infobip.dlr(push(same)).status_code == 200
    fake_infobip.control.add_reports([same], logged=False)
    assert poll(r, ib)["accepted"] == 1
    work()
    message = store.get_message(r, "twice")
    assert len(message["history"]) == 1 and message["source"] == "push"
    counters = WORKER_COUNTERS.format(t=keys.tag_of("twice"))  # its lane's, on a cluster
    assert int(r.hget(counters, "dlr:new")) == 1 and int(r.hget(counters, "dlr:duplicate")) == 1


def test_429_and_503_are_waited_out(fake_infobip, ib, r) -> None:
    fake_infobip.control.add_reports(count=5)
    fake_infobip.control.fail("/sms/1/reports", status=429, count=1, retry_after=1)
    fake_infobip.control.fail("/sms/1/reports", status=503, count=1)
    assert poll(r, ib)["accepted"] == 5
    assert [c["status"] for c in fake_infobip.control.calls("/sms/1/reports")] == [429, 503, 200]


def test_a_wrong_key_stops_the_feature_with_backoff(fake_infobip, r) -> None:
    wrong = InfobipClient(fake_infobip.url, api_key="not-the-key", timeout=2, r=r)
    fake_infobip.control.add_reports(count=2)
    assert poll(r, wrong)["error"] == "InfobipAuthError"
    assert status.blocked_until(r, "pull-reports") is not None
    assert poll(r, wrong)["error"] == "InfobipAuthError"
    assert len(fake_infobip.control.calls("/sms/1/reports")) == 1, "blocked: no second call"
    assert "not-the-key" not in orjson.dumps(status.all(r)).decode()


def test_a_page_redis_refuses_is_kept_in_hand_and_written_once_redis_is_back(tmp_path, monkeypatch) -> None:
    """The page is gone from Infobip: while Redis refuses it, the poller asks again (not a
    second fetch), and the page lands whole once Redis answers."""
    import threading

    import redis as redis_lib

    from tools.redis_server import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis").start()
    down = redis_lib.Redis.from_url(server.url, socket_connect_timeout=0.5, socket_timeout=0.5)
    server.stop()
    real_sleep = time.sleep
    monkeypatch.setattr(pull.time, "sleep", lambda s: real_sleep(min(s, 0.5)))
    back = threading.Timer(1.0, server.start)
    back.start()
    try:
        page = {"results": [report("kept-1"), report("kept-2")]}
        answer = pull.hand_over(down, CONFIG, pull.REPORTS, page["results"], page, tries=8)
        assert answer["accepted"] == 2
        assert sum(down.llen(enqueue.lane(lane).inbox) for lane in range(4)) == 2
    finally:
        back.join()
        server.stop()


def test_a_page_redis_never_takes_is_logged_by_message_id_and_raised(tmp_path, monkeypatch, caplog) -> None:
    import redis as redis_lib

    down = redis_lib.Redis(port=free_port(), socket_connect_timeout=0.2)
    monkeypatch.setattr(pull.time, "sleep", lambda s: None)
    page = {"results": [report("lost-1")]}
    with pytest.raises(redis_lib.RedisError):
        pull.hand_over(down, CONFIG, pull.REPORTS, page["results"], page, tries=2)
    [line] = [rec for rec in caplog.records if rec.getMessage() == "pulled page lost: Redis refused it"]
    assert line.messageIds == ["lost-1"]
