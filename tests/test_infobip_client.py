"""The Infobip client against the real fake Infobip (a separate process): both auth schemes,
backoff with jitter on 5xx, Retry-After on 429, 401 blocking the feature (shown in /readyz and
/metrics) without a tight loop, unknown outcomes of sends, and secrets that never leak."""

from __future__ import annotations

import base64
import functools
import logging
import traceback
from typing import Any

import pytest
from rq import Queue, Worker

from app import create_app
from app.config import check_infobip
from app.connection import queue_client
from app.errors import ConfigError
from app.infobip import status
from app.infobip.client import (
    InfobipAuthError,
    InfobipClient,
    InfobipError,
    InfobipUnavailable,
    InfobipUnknownOutcome,
    RetryPolicy,
)
from app.keys import QUEUE_NAME
from tests.conftest import API_KEY
from tests.fake import FakeInfobip
from tools.redis_server import free_port

FAST = RetryPolicy(attempts=4, base=0.02, cap=0.05, max_wait=3.0)


class Sleeps(list):
    """The waits the client chose, taken for real (time.sleep) so the fake sees real timing."""

    def __call__(self, seconds: float) -> None:
        import time

        self.append(seconds)
        time.sleep(seconds)


def make_client(fake: FakeInfobip, r: Any, scheme: str = "App", timeout: float = 2.0,
                **kw: Any) -> InfobipClient:
    if scheme == "App":
        credentials = {"api_key": fake.api_key}
    else:
        credentials = {"username": fake.username, "password": fake.password}
    return InfobipClient(fake.url, **credentials, timeout=timeout, r=r, policy=kw.pop("policy", FAST), **kw)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.mark.parametrize("scheme", ["App", "Basic"])
def test_both_auth_schemes(fake_infobip: FakeInfobip, r: Any, scheme: str) -> None:
    ids = fake_infobip.control.add_reports(count=3)
    client = make_client(fake_infobip, r, scheme)
    assert [x["messageId"] for x in client.reports(limit=2)["results"]] == ids[:2]
    assert [x["messageId"] for x in client.logs(messageId=ids[1:])["results"]] == ids[:0:-1]
    assert {c["auth"] for c in fake_infobip.control.calls()} == {scheme}
    assert status.get(r, "pull-reports")["state"] == "ok"


def test_5xx_is_retried_with_full_jitter_then_succeeds(fake_infobip: FakeInfobip, r: Any,
                                                       sleeps: Sleeps) -> None:
    fake_infobip.control.add_reports(count=1)
    fake_infobip.control.fail("/sms/1/reports", status=503, count=2)
    assert len(make_client(fake_infobip, r, sleep=sleeps).reports()["results"]) == 1
    assert [c["status"] for c in fake_infobip.control.calls()] == [503, 503, 200]
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= FAST.base and 0 <= sleeps[1] <= 2 * FAST.base
    assert status.get(r, "pull-reports")["state"] == "ok"


def test_5xx_after_every_attempt_blocks_the_feature_until_retry_at(fake_infobip: FakeInfobip, r: Any,
                                                                   sleeps: Sleeps) -> None:
    fake_infobip.control.fail("/sms/1/inbox/reports", status=502, count=100)
    client = make_client(fake_infobip, r, sleep=sleeps)
    with pytest.raises(InfobipUnavailable) as raised:
        client.inbox()
    assert raised.value.status == 502 and raised.value.retry_after == FAST.ceiling(FAST.attempts)
    assert len(fake_infobip.control.calls()) == FAST.attempts
    entry = status.all(r)["pull-inbox"]
    assert entry["state"] == "unavailable" and entry["reason"].startswith("502 Bad Gateway")
    status.record_failure(r, "pull-inbox", "502 Bad Gateway", retry_at=entry_since(r, "pull-inbox") + 60)
    with pytest.raises(InfobipUnavailable):
        client.inbox()  # blocked: not even called
    assert len(fake_infobip.control.calls()) == FAST.attempts


def entry_since(r: Any, feature: str) -> float:
    return status.get(r, feature)["since"]


def test_429_waits_retry_after(fake_infobip: FakeInfobip, r: Any, sleeps: Sleeps) -> None:
    fake_infobip.control.add_reports(count=1)
    fake_infobip.control.fail("/sms/1/reports", status=429, count=1, retry_after=1)
    assert len(make_client(fake_infobip, r, sleep=sleeps).reports()["results"]) == 1
    assert sleeps == [1.0]


def test_a_retry_after_beyond_the_wait_bound_gives_up_at_once(fake_infobip: FakeInfobip, r: Any,
                                                               sleeps: Sleeps) -> None:
    fake_infobip.control.fail("/sms/1/reports", status=429, count=5, retry_after=120)
    with pytest.raises(InfobipUnavailable) as raised:
        make_client(fake_infobip, r, sleep=sleeps).reports()
    assert raised.value.retry_after == 120 and sleeps == []
    assert status.blocked_until(r, "pull-reports") is not None


def test_401_blocks_the_feature_shows_in_readyz_and_metrics(fake_infobip: FakeInfobip, r: Any,
                                                             config: dict[str, Any]) -> None:
    wrong = InfobipClient(fake_infobip.url, api_key="not-the-key", r=r, policy=FAST)
    with pytest.raises(InfobipAuthError) as raised:
        wrong.reports()
    assert raised.value.status == 401
    with pytest.raises(InfobipAuthError):
        wrong.reports()  # blocked with backoff: the fake is not called again
    assert len(fake_infobip.control.calls()) == 1
    until = status.blocked_until(r, "pull-reports")
    assert until and until > status.get(r, "pull-reports")["since"] + 20

    worker = Worker([Queue(QUEUE_NAME, connection=queue_client(r))], connection=queue_client(r))
    worker.register_birth()
    try:
        client = create_app({**config, **fake_infobip.config()}).test_client()
        ready = client.get("/readyz")
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
    finally:
        worker.register_death()
    assert ready.status_code == 200  # shown, not judged
    shown = ready.json["infobip"]["pull-reports"]
    assert shown["state"] == "auth_failed" and shown["reason"] == "401 Unauthorized" and shown["retryAt"]
    assert 'receiver_infobip_feature_up{feature="pull-reports"} 0.0' in metrics
    assert 'receiver_infobip_calls_total{feature="pull-reports",outcome="auth_failed"} 1.0' in metrics
    assert 'receiver_infobip_calls_total{feature="pull-reports",outcome="blocked"} 1.0' in metrics


def test_a_later_success_makes_the_feature_ok_again(fake_infobip: FakeInfobip, r: Any) -> None:
    status.record_failure(r, "pull-reports", "401 Unauthorized", retry_at=0, state=status.AUTH_FAILED)
    assert status.blocked_until(r, "pull-reports") is None  # retryAt has passed
    make_client(fake_infobip, r).reports()
    assert status.get(r, "pull-reports")["state"] == "ok"


def test_other_4xx_is_not_retried_and_leaves_health_alone(fake_infobip: FakeInfobip, r: Any) -> None:
    with pytest.raises(InfobipError, match="limit: an integer from 1 to 1000"):
        make_client(fake_infobip, r).reports(limit=5000)
    assert len(fake_infobip.control.calls()) == 1 and status.get(r, "pull-reports") is None


# --- POST: repeated only when it certainly did not arrive ------------------------------------


def advanced_body(message_id: str) -> dict[str, Any]:
    return {"messages": [{"from": "InfoSMS", "text": "hi",
                          "destinations": [{"to": "41793026727", "messageId": message_id}]}]}


@pytest.mark.parametrize("fault", ["hang", "drop"])
def test_a_send_whose_answer_never_came_is_an_unknown_outcome(fake_infobip: FakeInfobip, r: Any,
                                                              fault: str) -> None:
    getattr(fake_infobip.control, fault)("/sms/1/text/advanced", apply=True)
    client = make_client(fake_infobip, r, timeout=0.5)
    with pytest.raises(InfobipUnknownOutcome):
        client.send_advanced(advanced_body("m-1"))
    assert len(fake_infobip.control.calls("/sms/1/text/advanced")) == 1  # not repeated
    assert [s["messageId"] for s in fake_infobip.control.sends()] == ["m-1"]
    (log,) = client.logs(messageId="m-1")["results"]  # how a caller settles it
    assert log["messageId"] == "m-1"


def test_a_send_answered_503_is_repeated_and_made_once(fake_infobip: FakeInfobip, r: Any) -> None:
    fake_infobip.control.fail("/sms/1/text/advanced", status=503, count=1)
    answer = make_client(fake_infobip, r).send_advanced(advanced_body("m-1"))
    assert answer["messages"][0]["messageId"] == "m-1"
    assert [c["status"] for c in fake_infobip.control.calls()] == [503, 200]
    assert len(fake_infobip.control.sends()) == 1


def test_a_send_to_a_closed_port_is_repeated_then_unavailable(r: Any, sleeps: Sleeps) -> None:
    client = InfobipClient(f"http://127.0.0.1:{free_port()}", api_key="k", r=r, policy=FAST, sleep=sleeps)
    with pytest.raises(InfobipUnavailable, match="connection failed"):
        client.send_advanced(advanced_body("m-1"))
    assert len(sleeps) == FAST.attempts - 1
    assert status.get(r, "send")["state"] == "unavailable"


def test_a_get_that_timed_out_is_repeated(fake_infobip: FakeInfobip, r: Any) -> None:
    fake_infobip.control.add_reports(count=1)
    fake_infobip.control.hang("/sms/1/reports")
    assert len(make_client(fake_infobip, r, timeout=0.5).reports()["results"]) == 1


# --- configuration and secrets ---------------------------------------------------------------


def test_no_base_url_means_no_client(config: dict[str, Any]) -> None:
    assert InfobipClient.from_config({**config, "INFOBIP_BASE_URL": None}) is None


@pytest.mark.parametrize("bad", [
    {"INFOBIP_BASE_URL": "https://u:p@x.api.infobip.com", "INFOBIP_API_KEY": "k"},
    {"INFOBIP_BASE_URL": "x.api.infobip.com", "INFOBIP_API_KEY": "k"},
    {"INFOBIP_BASE_URL": "https://x.api.infobip.com"},
    {"INFOBIP_BASE_URL": "https://x.api.infobip.com", "INFOBIP_USERNAME": "u"},
    {"INFOBIP_BASE_URL": "https://x.api.infobip.com", "INFOBIP_API_KEY": "k", "INFOBIP_TIMEOUT": 0},
])
def test_bad_infobip_settings_stop_start_up(bad: dict[str, Any]) -> None:
    with pytest.raises(ConfigError) as raised:
        check_infobip(bad)
    assert "p@" not in str(raised.value)


def redis_texts(r: Any) -> list[str]:
    """Everything stored in Redis (the quarantine included), as text."""
    readers = {b"hash": r.hgetall, b"string": r.get, b"list": lambda k: r.lrange(k, 0, -1),
               b"set": r.smembers, b"zset": lambda k: r.zrange(k, 0, -1)}
    return [repr(readers[r.type(key)](key)) for key in r.scan_iter() if r.type(key) in readers]


def test_the_key_and_password_never_reach_logs_errors_or_answers(fake_infobip: FakeInfobip, r: Any,
                                                                  config: dict[str, Any],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    secrets = [fake_infobip.api_key, fake_infobip.password,
               base64.b64encode(f"{fake_infobip.username}:{fake_infobip.password}".encode()).decode()]
    texts: list[str] = []
    caplog.set_level(logging.DEBUG)  # urllib3's own debug lines included
    control = fake_infobip.control
    for scheme in ("App", "Basic"):
        ib = make_client(fake_infobip, r, scheme, timeout=0.5)
        texts.append(repr(ib))
        control.add_reports(count=1)
        ib.reports()
        for arrange, call in (
            (lambda: None, functools.partial(ib.reports, limit=0)),
            (lambda: control.fail("/sms/1/reports", 503, count=10), ib.reports),
            (lambda: control.fail("/sms/1/logs", 429, retry_after=100), ib.logs),
            (lambda: control.hang("/sms/1/text/advanced"),
             functools.partial(ib.send_advanced, advanced_body("x"))),
            (lambda: control.fail("/sms/1/inbox/reports", 401), ib.inbox),
        ):
            arrange()
            with pytest.raises(InfobipError) as raised:
                call()
            error = raised.value
            texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
        texts += redis_texts(r)
        status.clear(r)
        control.clear_faults()
    client = create_app({**config, **fake_infobip.config()}).test_client()
    metrics = client.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
    texts += [client.get("/readyz").text, metrics]
    texts += [record.getMessage() + repr(vars(record)) for record in caplog.records]
    assert any("sms/1/reports" in text for text in texts)  # the texts are real
    for secret in secrets:
        assert not [text for text in texts if secret in text]
