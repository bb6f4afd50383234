"""Reconciliation (app/infobip/reconcile.py, SPEC §9.3) against the fake Infobip: sends made
through it, send records posted to the API, reports never pushed nor pulled, found in its logs."""

from __future__ import annotations

import time
from typing import Any

import pytest

from app import dlr, events, keys, store
from app.infobip import reconcile
from app.infobip.client import InfobipClient, RetryPolicy
from app.keys import INDEX_PENDING
from tools import wait

CONFIG = {"DRAIN_LANES": 4, "QUARANTINE_MAX": 100, "RECONCILE_AFTER": 3600, "RECONCILE_RATE": 1000.0}
HOUR = 3600


@pytest.fixture
def ib(fake_infobip, r) -> InfobipClient:
    return InfobipClient(fake_infobip.url, api_key=fake_infobip.api_key, timeout=2, r=r,
                         policy=RetryPolicy(base=0.05, cap=0.2))


@pytest.fixture
def sent(fake_infobip, ib, api, work):
    """Send `count` messages through the fake (no notifyUrl: their reports wait, unpulled, at
    /sms/1/reports), post Infobip's answer as send records, and wait for the fake's outcomes."""

    def send(count: int, bulk_id: str = "camp", **message: Any) -> list[str]:
        answer = ib.send_advanced({"bulkId": bulk_id, "messages": [{
            "from": "InfoSMS", "text": "Hello", **message,
            "destinations": [{"to": f"4179302{n:04}"} for n in range(count)]}]})
        assert api.post("/api/sends", answer).status_code == 200
        work()
        wait.wait_for(lambda: fake_infobip.control.pending().get("reports", 0) >= count, 10,
                      "the fake's reports", interval=0.05)
        return [m["messageId"] for m in answer["messages"]]

    return send


def pending(r) -> int:
    """Messages in the pending index: one per lane on a cluster."""
    return sum(r.zcard(INDEX_PENDING.format(t=t)) for t in keys.tags())


def run(r, ib, after: float = 2 * HOUR, **config: Any) -> dict[str, Any]:
    """A run as if `after` seconds had passed since the sends."""
    return reconcile.run(r, {**CONFIG, **config}, ib, now=time.time() + after)


def test_reports_never_received_are_filled_from_the_logs(sent, ib, r, work, api) -> None:
    ids = sent(5)
    assert api.get("/api/bulks/camp").json["awaitingReport"] == 5
    figures = run(r, ib)
    assert (figures["checked"], figures["filledFromLogs"], figures["stale"]) == (5, 5, 0)
    work()
    for message_id in ids:
        message = api.get(f"/api/messages/{message_id}").json
        assert message["source"] == "logs" and message["final"] and message["awaitingReport"] is False
        assert message["mccMnc"], "the log's lower-case mccmnc is read"
    bulk = api.get("/api/bulks/camp").json
    assert (bulk["total"], bulk["awaitingReport"], bulk["byGroup"]) == (5, 0, {"DELIVERED": 5})
    assert pending(r) == 0, "final messages leave the index"
    assert api.get("/api/reconciliation").json["lastRun"]["filledFromLogs"] == 5
    run(r, ib)
    shown = api.get("/api/reconciliation").json
    assert shown["lastRun"]["filledFromLogs"] == 0 and shown["totals"]["filledFromLogs"] == 5
    assert shown["totals"]["runs"] == 2


def test_messages_with_recent_news_are_not_looked_up(sent, ib, r, fake_infobip) -> None:
    sent(3)
    assert run(r, ib, after=60)["candidates"] == 0
    assert fake_infobip.control.calls("/sms/1/logs") == []


def test_a_message_looked_up_in_vain_waits_reconcile_after_again(sent, ib, r, fake_infobip) -> None:
    fake_infobip.control.outcome("41793020000", status=7)  # PENDING_ENROUTE: no final outcome yet
    ids = sent(1)
    fake_infobip.control.reset()  # the logs forget it: Infobip has nothing for it
    assert run(r, ib)["filledFromLogs"] == 0
    looked_at = r.zscore(INDEX_PENDING.format(t=keys.tag_of(ids[0])), ids[0])
    assert looked_at > time.time() + HOUR, "noted as looked at"
    assert run(r, ib)["candidates"] == 0


def test_many_of_one_bulk_are_asked_by_bulk(sent, ib, r, fake_infobip) -> None:
    sent(reconcile.BULK_QUERY_MIN + 5)
    figures = run(r, ib)
    assert figures["filledFromLogs"] == reconcile.BULK_QUERY_MIN + 5
    [call] = fake_infobip.control.calls("/sms/1/logs")
    assert figures["calls"] == 1 and call["status"] == 200


def test_what_a_bulk_query_did_not_return_is_asked_by_message_id(sent, ib, r, monkeypatch) -> None:
    monkeypatch.setattr(reconcile, "PAGE", 10)  # a bulk bigger than a page of the logs
    sent(35)
    figures = run(r, ib)
    assert (figures["filledFromLogs"], figures["checked"], figures["calls"]) == (35, 35, 2)


def test_one_run_at_a_time(sent, ib, r, fake_infobip) -> None:
    sent(2)
    r.set(keys.RECONCILE_LOCK, "another run", ex=30)
    assert "skipped" in run(r, ib)
    assert fake_infobip.control.calls("/sms/1/logs") == [], "no call while another run holds the lease"
    r.delete(keys.RECONCILE_LOCK)
    assert run(r, ib)["filledFromLogs"] == 2
    assert not r.exists(keys.RECONCILE_LOCK), "released after the run"


class SlowClient(InfobipClient):
    """Its first logs call outlasts the run's lease, which another run then takes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.held_for: list[int] = []  # seconds the run's lease had left, seen during each call

    def logs(self, **query: Any) -> dict[str, Any]:
        answer = super().logs(**query)
        self.held_for.append(self.r.ttl(keys.RECONCILE_LOCK))
        if self.r.get(keys.RECONCILE_LOCK) != b"next run":
            self.r.set(keys.RECONCILE_LOCK, "next run", ex=30)
        return answer


def test_a_run_whose_lease_lapsed_stops_and_leaves_the_next_runs_alone(sent, r, fake_infobip,
                                                                        monkeypatch) -> None:
    """The lease is renewed before every call and lasts LOCK_TTL (30 s), not a whole run: a worker
    killed mid-run holds it no longer than that (it once held a 300 s lock)."""
    monkeypatch.setattr(reconcile, "PAGE", 10)  # two calls due: by bulk, then by messageId
    sent(35)
    slow = SlowClient(fake_infobip.url, api_key=fake_infobip.api_key, timeout=2, r=r,
                      policy=RetryPolicy(base=0.05, cap=0.2))
    figures = run(r, slow)
    assert figures["calls"] == 1, "no call after the lease lapsed"
    assert figures["filledFromLogs"] == 10, "what the one call found is fed"
    assert r.get(keys.RECONCILE_LOCK) == b"next run", "the next run's lease is not ours to release"
    assert 0 < slow.held_for[0] <= reconcile.LOCK_TTL == 30


def test_past_the_log_window_a_message_is_stale(sent, ib, r, work, api, fake_infobip) -> None:
    ids = sent(2)
    figures = run(r, ib, after=49 * HOUR)
    assert (figures["stale"], figures["checked"]) == (2, 0)
    assert fake_infobip.control.calls("/sms/1/logs") == [], "outside the window: nothing to ask"
    assert run(r, ib, after=49 * HOUR)["candidates"] == 0, "not marked twice before the drain applies it"
    work()
    message = api.get(f"/api/messages/{ids[0]}").json
    assert message["stale"] is True and message["awaitingReport"] is True
    bulk = api.get("/api/bulks/camp").json
    assert (bulk["stale"], bulk["awaitingReport"]) == (2, 2)
    assert pending(r) == 0


def test_a_report_pushed_meanwhile_is_not_fed_twice(sent, ib, r, work, infobip, fake_infobip) -> None:
    ids = sent(2)
    pulled = ib.reports(10)["results"]  # as if they had come by pull: state has them
    assert infobip.dlr({"results": pulled}).status_code == 200
    work()
    assert run(r, ib)["candidates"] == 0, "final: no longer candidates"
    for message_id in ids:
        assert len(store.get_message(r, message_id)["history"]) == 1


def test_logs_unavailable_stops_the_run_and_says_so(sent, ib, r, fake_infobip) -> None:
    sent(2)
    fake_infobip.control.fail("/sms/1/logs", status=503, count=10)
    figures = run(r, ib)
    assert figures["error"] == "InfobipUnavailable" and figures["filledFromLogs"] == 0
    assert pending(r) == 2, "still candidates for the next run"


def test_no_run_yet(api) -> None:
    assert api.get("/api/reconciliation").json == {"enabled": False, "reconcileAfter": 3600, "lastRun": None,
                                                   "totals": {}}


def test_a_log_entry_as_a_report() -> None:
    """Logs spell mccmnc in lower case and carry no callbackData: known data fills it; an entry
    without doneAt (no outcome yet) or already known is no news."""
    known = {"messageId": "m1", "callbackData": "order-7", "final": False,
             "doneAt": "2026-01-01T00:00:00.000Z", "eventId": "evt_other"}
    record = {"hist": [known], "cur": 0}
    entry = {"messageId": "m1", "to": "41793026727", "from": "InfoSMS", "text": "Hi", "mccmnc": "22801",
             "sentAt": "2026-01-01T00:00:00.000+0000", "doneAt": "2026-01-01T00:00:05.000+0000",
             "status": {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}}
    report = reconcile.as_report(entry, record)
    assert report["mccMnc"] == "22801" and "mccmnc" not in report and report["callbackData"] == "order-7"
    assert reconcile.as_report({k: v for k, v in entry.items() if k != "doneAt"}, record) is None
    seen = {"hist": [{**known, "eventId": events.dlr_event_id(dlr.load(report))}], "cur": 0}
    assert reconcile.as_report(entry, seen) is None
