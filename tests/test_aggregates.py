"""workers/aggregates.py, read back by app/store_dashboard.py: the dashboard's counters are written
in the drain's transaction, so a re-run batch, a resent report or a replay counts nothing twice."""

from __future__ import annotations

from collections import Counter

import orjson

from app import enqueue, keys, store_dashboard
from app.keys import DASH_ANSWER, DASH_BULK, DASH_BULKS, DASH_HOUR, consumer_key
from tests.conftest import basic_header, run_workers
from tests.consumers import Answer, http_consumer, routes_text
from tests.samples import envelopes, ids_in_lane, push, report
from workers import drain

LANE = 1
GSM_ABSENT = {"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER",
              "permanent": False}


def dash_keys(r) -> dict[bytes, dict[bytes, bytes]]:
    """Every dashboard counter, by key: what must not change when nothing new happened."""
    # On a cluster the "*" also matches the lane's tag.
    names = r.keys(DASH_HOUR.format(t="", hour="*")) + r.keys(DASH_BULK.format(t="", bulk_id="*"))
    return {key: r.hgetall(key) for key in sorted(names)}


def campaign(r, ids: list[str]) -> None:
    """Delivered, undeliverable (absent subscriber) and pending reports, in the inbox of LANE."""
    reports = [report(ids[0]), report(ids[1], "UNDELIVERABLE", error=GSM_ABSENT), report(ids[2], "PENDING")]
    r.rpush(enqueue.lane(LANE).inbox, *envelopes(*reports))


def test_a_batch_counts_reports_groups_errors_and_delivery_times(r):
    ids = ids_in_lane(LANE, 3)
    campaign(r, ids)
    drain.drain(r, LANE, "job-1")
    day = store_dashboard.last_day(r)
    assert day["totals"] == {"reports": 3, "inbound": 0, "messages": 3}
    assert sum(day["reports"]) == 3 and len(day["reports"]) == 24 * 60
    assert day["groups"]["DELIVERED"] == 1 and day["groups"]["UNDELIVERABLE"] == 1
    assert day["groups"]["PENDING"] == 1
    assert [(e["name"], e["count"]) for e in day["errors"]] == [("EC_ABSENT_SUBSCRIBER", 1)]
    assert day["errors"][0]["description"] == "Absent Subscriber"  # Infobip's English (CODE_DESCRIPTIONS)
    assert store_dashboard.last_day(r, language="ru")["errors"][0]["description"] == "Отсутствующий абонент"
    assert day["delivery"]["count"] == 1 and day["delivery"]["p50"] == 10.0  # 7.2 s, in (5, 10]
    assert day["lag"]["count"] == 3
    bulk = store_dashboard.bulk_detail(r, "bulk-1")
    assert bulk["total"] == 3 and [(e["id"], e["count"]) for e in bulk["errors"]] == [(27, 1)]
    assert dict(bulk["deliveryTimes"])["10"] == 1
    assert r.zscore(DASH_BULKS.format(t=keys.tag(LANE)), "bulk-1") is not None


def test_rerun_of_a_claimed_batch_counts_nothing_twice(r):
    """The job died after its batch's transaction; RQ runs it again with the same batch."""
    ids = ids_in_lane(LANE, 3)
    campaign(r, ids)
    channel = enqueue.lane(LANE)
    channel.own(r, "job-1")
    items = channel.claim(r, "job-1")
    assert drain.apply_batch(r, LANE, "job-1", items, Counter())
    once = dash_keys(r)
    assert once, "the batch wrote counters"

    drain.apply_batch(r, LANE, "job-1", items, Counter())  # the same claimed items again
    drain.drain(r, LANE, "job-1")
    assert dash_keys(r) == once


def test_a_resent_report_counts_nothing(r):
    ids = ids_in_lane(LANE, 3)
    campaign(r, ids)
    drain.drain(r, LANE, "job-1")
    before = store_dashboard.last_day(r)
    campaign(r, ids)  # Infobip resends the bucket
    drain.drain(r, LANE, "job-2")
    after = store_dashboard.last_day(r)
    for name in ("totals", "groups", "errors", "delivery"):
        assert after[name] == before[name], name


def test_bulk_errors_follow_the_current_report(r):
    """An intermediate report with an error, then the final DELIVERED one: the bulk's breakdown
    moves the message out of that error, as its counts per group move it between groups."""
    (message_id,) = ids_in_lane(LANE, 1)
    r.rpush(enqueue.lane(LANE).inbox, *envelopes(report(message_id, "PENDING", error=GSM_ABSENT)))
    drain.drain(r, LANE, "job-1")
    assert [e["id"] for e in store_dashboard.bulk_detail(r, "bulk-1")["errors"]] == [27]
    r.rpush(enqueue.lane(LANE).inbox, *envelopes(report(message_id, doneAt="2015-06-04T13:03:00.000+0000")))
    drain.drain(r, LANE, "job-2")
    bulk = store_dashboard.bulk_detail(r, "bulk-1")
    assert bulk["errors"] == [] and bulk["byGroup"] == {"DELIVERED": 1}
    day = store_dashboard.last_day(r)
    assert day["errors"] == []  # an intermediate report's error is not a final one
    assert day["groups"]["PENDING"] == 1 and day["groups"]["DELIVERED"] == 1  # the funnel
    assert day["totals"]["messages"] == 1


def test_inbound_messages_are_counted_per_minute(infobip, work, r):
    query = {"sender": "38598111", "receiver": "41793026727", "text": "HELLO there", "messageid": "mo-1"}
    answer = infobip.client.get("/infobip/mo", query_string=query, headers=basic_header())
    assert answer.status_code == 200
    work()
    assert store_dashboard.last_day(r)["totals"]["inbound"] == 1


def test_consumer_answer_times_are_kept(use_routes, consumer_server, r):
    service = use_routes(routes_text(http_consumer("crm", f"{consumer_server.url}/crm", events='["*"]')))
    consumer_server.script("/crm", Answer(500))
    assert service.infobip.dlr(push(report("m-1"), report("m-2"))).status_code == 200
    run_workers(r)
    raw = r.hgetall(DASH_ANSWER.format(consumer=consumer_key("crm")))
    assert sum(int(v) for v in raw.values()) >= 2  # the 500 and the 2xx both were answers
    times = store_dashboard.answer_times(r, ["crm"])["crm"]
    assert times["p50"] is not None and times["p99"] >= times["p50"]


def test_percentile_reads_bucket_bounds():
    buckets = [("1", 50), ("10", 40), ("100", 9), ("inf", 1)]
    assert store_dashboard.percentile(buckets, 0.5) == 1.0
    assert store_dashboard.percentile(buckets, 0.9) == 10.0
    assert store_dashboard.percentile(buckets, 0.99) == 100.0
    assert store_dashboard.percentile(buckets, 1.0) == 100.0  # beyond the last bound reads "more than"
    assert store_dashboard.percentile([("1", 0)], 0.5) is None


def test_inbox_items_are_plain_json(r):
    """The fixtures above push what ingest pushes."""
    (message_id,) = ids_in_lane(LANE, 1)
    item = envelopes(report(message_id))[0]
    assert orjson.loads(item)["kind"] == "dlr"
