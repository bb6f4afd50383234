"""The dashboard's pages (app/dashboard/): what a signed-in operator sees after real traffic went
through ingest and real RQ workers. The browser-level checks are in tests/browser/."""

from __future__ import annotations

import csv
import io
import re

import orjson
import pytest

from app import store
from app.keys import DEAD_LETTERS, QUARANTINE, consumer_key
from tests.consumers import http_consumer, routes_text
from tests.samples import push, report
from tests.test_dashboard_security import sign_in, token_of

ABSENT = {"groupId": 1, "groupName": "HANDSET_ERRORS", "id": 27, "name": "EC_ABSENT_SUBSCRIBER",
          "permanent": False}


@pytest.fixture
def page(client):
    assert sign_in(client).status_code == 302

    def get(path: str, status: int = 200) -> str:
        answer = client.get(path)
        assert answer.status_code == status, (path, answer.status_code)
        return answer.get_data(as_text=True)

    return get


@pytest.fixture
def campaign(infobip, work):
    reports = [report(f"m-{n}", bulkId="spring", to=f"4179000000{n}") for n in range(6)]
    reports[4] = report("m-4", "UNDELIVERABLE", bulkId="spring", error=ABSENT)
    reports[5] = report("m-5", "PENDING", bulkId="spring", final=False)
    assert infobip.dlr(push(*reports)).status_code == 200
    final = report("m-5", bulkId="spring", doneAt="2015-06-04T13:09:00.000+0000")
    assert infobip.dlr(push(final)).status_code == 200
    work()


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_overview_without_data_says_what_to_paste(page):
    html = page("/")
    assert "Nothing has arrived yet" in html
    assert "/infobip/dlr?token=&lt;WEBHOOK_TOKEN&gt;" in html  # not the real token outside dev mode
    assert "make simulate" in html


def test_overview_in_dev_mode_shows_the_exact_notify_url(config, r):
    from app import create_app

    client = create_app({**config, "DEV_MODE": True}).test_client()
    sign_in(client)
    html = client.get("/").get_data(as_text=True)
    assert f"/infobip/dlr?token={config['WEBHOOK_TOKEN']}" in html


def test_overview_after_a_campaign(page, campaign):
    html = page("/")
    assert "Nothing has arrived yet" not in html
    text = text_of(html)
    assert "EC_ABSENT_SUBSCRIBER" in text and "Отсутствующий абонент" in text  # the seed's description
    assert "<svg class=\"chart-svg\"" in html and "spring" in html
    assert "Reconciliation" in text and "Not configured" in text
    fragment = page("/overview/live")
    assert "<html" not in fragment and "Traffic per minute" in fragment


def test_bulk_page_matches_the_api(page, api, campaign):
    bulk = api.get("/api/bulks/spring").get_json()
    html = page("/bulks/spring")
    assert re.search(rf'data-figure="total">{bulk["total"]}<', html)
    for group, count in bulk["byGroup"].items():
        assert re.search(rf'data-group="{group}">.*?data-count="{count}"', html, re.S), group
    for currency, amount in bulk["cost"].items():
        assert f'data-currency="{currency}" data-amount="{amount}"' in html
    text = text_of(html)
    assert "Awaiting report 0" in text and "Stale 0" in text  # no send records on this tree
    assert "EC_ABSENT_SUBSCRIBER" in text
    assert "≤ 10 s" in text  # the delivery-time distribution (7.2 s)


def test_bulk_page_shows_awaiting_and_stale_when_known(page, campaign, monkeypatch):
    real = store.get_bulk
    monkeypatch.setattr(store, "get_bulk", lambda r, b: {**real(r, b), "awaitingReport": 7, "stale": 3})
    text = text_of(page("/bulks/spring"))
    assert "Awaiting report 7" in text and "Stale 3" in text


def test_bulk_messages_filter_and_csv(page, client, campaign):
    html = page("/bulks/spring?status=UNDELIVERABLE")
    assert "m-4" in html and "/messages/m-0" not in html
    answer = client.get("/bulks/spring/messages.csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    assert sorted(row["messageId"] for row in rows) == [f"m-{n}" for n in range(6)]
    delivered = client.get("/bulks/spring/messages.csv?status=DELIVERED").get_data(as_text=True)
    assert len(list(csv.DictReader(io.StringIO(delivered)))) == 5
    assert page("/bulks/spring?status=NOPE", 400)


def test_csv_cells_never_start_a_formula(page, client, infobip, work):
    infobip.dlr(push(report("m-x", bulkId="evil", callbackData="=HYPERLINK(\"http://x\")")))
    work()
    rows = list(csv.DictReader(io.StringIO(client.get("/bulks/evil/messages.csv").get_data(as_text=True))))
    assert rows[0]["callbackData"].startswith("'=")


def test_bulks_newest_first(page, infobip, work):
    for bulk in ("first", "second"):
        infobip.dlr(push(report(f"{bulk}-1", bulkId=bulk)))
        work()
    html = page("/bulks")
    assert html.index(">second<") < html.index(">first<")


def test_unknown_bulk_and_message_are_404_pages(page):
    assert "No bulk" in page("/bulks/nope", 404)
    assert "No message" in page("/messages/nope", 404)


def test_message_page_is_a_timeline_oldest_first(page, campaign):
    html = page("/messages/m-5")
    entries = re.findall(r'<li class="(current)?">', html)
    assert len(entries) == 2 and entries == ["", "current"]
    text = text_of(html)
    assert text.index("PENDING_ENROUTE") < text.index("DELIVERED_TO_HANDSET", text.index("Report history"))


def test_inbound_feed_and_filters(page, infobip, work):
    for n, (sender, text) in enumerate((("38598111", "STOP please"), ("38598222", "WIN42 yes"))):
        query = {"sender": sender, "receiver": "41793026727", "text": text, "messageid": f"mo-{n}"}
        assert infobip.client.get("/infobip/mo", query_string=query,
                                  headers={"X-Webhook-Token": infobip_token()}).status_code == 200
    work()
    html = page("/inbound")
    assert "STOP please" in html and "WIN42 yes" in html
    assert "WIN42 yes" not in page("/inbound?keyword=stop")
    only = page("/inbound?number=38598222")
    assert "WIN42 yes" in only and "STOP please" not in only
    assert "STOP please" in page("/inbound?number=41793026727")  # the receiver's number too
    assert "Nothing matches" in page("/inbound?keyword=NONE")


def infobip_token() -> str:
    from tests.conftest import TOKEN

    return TOKEN


def test_empty_pages_say_what_to_do(page):
    assert "No inbound SMS yet" in page("/inbound")
    assert "No bulks yet" in page("/bulks")
    assert "Nothing in quarantine" in page("/quarantine")


def test_quarantine_replay_and_drop_from_the_page(client, page, infobip, r):
    assert infobip.dlr(b'{"results": [{"messageId": ""}]}').status_code == 400
    html = page("/quarantine")
    assert "What was wrong" in html and "Replay" in html
    token = token_of(html)
    entry = orjson.loads(r.lindex(QUARANTINE, 0))["id"]
    answer = client.post(f"/quarantine/{entry}/replay", data={"csrf_token": token})
    assert answer.status_code == 302
    assert "Still rejected" in page("/quarantine")
    assert r.llen(QUARANTINE) == 1  # still invalid: it stays
    client.post(f"/quarantine/{entry}/drop", data={"csrf_token": token})
    assert r.llen(QUARANTINE) == 0
    assert client.post(f"/quarantine/{entry}/drop", data={"csrf_token": token}).status_code == 404


def test_consumers_page_and_dead_letter_replay(use_routes, consumer_server, r):
    service = use_routes(routes_text(http_consumer("crm", f"{consumer_server.url}/crm", events='["*"]')))
    dead = {"id": "evt_x", "body": "{}", "attempt": 3, "queuedAt": "2026-12-01T00:00:00.000Z",
            "reason": "retries exhausted", "lastError": "HTTP 500",
            "lastAttemptAt": "2026-12-01T00:05:00.000Z"}
    r.lpush(DEAD_LETTERS.format(consumer=consumer_key("crm")), orjson.dumps(dead))
    client = service.client
    sign_in(client)
    html = client.get("/consumers").get_data(as_text=True)
    assert "evt_x" in html and "Replay all 1" in html
    answer = client.post("/consumers/crm/replay", data={"csrf_token": token_of(html), "event_id": "evt_x"})
    assert answer.status_code == 302
    assert "1 dead letter of crm queued" in client.get("/consumers").get_data(as_text=True)
    assert r.llen(DEAD_LETTERS.format(consumer=consumer_key("crm"))) == 0
    assert client.post("/consumers/nope/replay", data={"csrf_token": token_of(html)}).status_code == 404
