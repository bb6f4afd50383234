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
INFOBIP = {"INFOBIP_BASE_URL": "http://127.0.0.1:9", "INFOBIP_API_KEY": "k"}  # configured; never called


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
    assert "EC_ABSENT_SUBSCRIBER" in text and "Absent Subscriber" in text  # Infobip's English wording
    assert "Отсутствующий" not in text
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


@pytest.mark.parametrize(("language", "absent", "unknown"), [
    ("en", "Absent Subscriber", "Handset error occurred."),  # no English text for #1: its group's
    ("ru", "Отсутствующий абонент", "Неизвестный абонент"),
])
def test_error_descriptions_follow_code_descriptions(config, infobip, work, language, absent, unknown):
    """Top errors and a bulk's errors are described as ingest fills reports (app/classify.py)."""
    unknown_subscriber = {**ABSENT, "id": 1, "name": "EC_UNKNOWN_SUBSCRIBER", "permanent": True}
    infobip.dlr(push(report("u-1", "UNDELIVERABLE", bulkId="autumn", error=ABSENT),
                     report("u-2", "UNDELIVERABLE", bulkId="autumn", error=unknown_subscriber)))
    work()
    client = signed_in_with(config, CODE_DESCRIPTIONS=language)
    for path in ("/", "/bulks/autumn"):
        html = client.get(path).get_data(as_text=True)
        assert f'<span class="desc">{absent}</span>' in html, path
        assert "EC_UNKNOWN_SUBSCRIBER" in html
        descriptions = re.findall(r'<span class="desc[^"]*">([^<]*)</span>', html)
        assert sorted(descriptions) == sorted([absent, unknown]), path


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


def test_overview_hides_smpp_and_infobip_panels_when_not_configured(page):
    html = page("/")
    assert 'id="smpp"' not in html and 'id="infobip"' not in html


def signed_in_with(config, **settings):
    """A test client of the app configured with `settings`, signed in to the dashboard."""
    from app import create_app

    client = create_app({**config, **settings}).test_client()
    sign_in(client)
    return client


def states(html: str, item: str) -> dict[str, str]:
    """{`data-<item>` value: the state shown} of the overview's health lists."""
    return dict(re.findall(rf'data-{item}="([\w-]+)">.*?<span class="state \w+" data-state>([\w ]+)</span>',
                           html, re.S))


def test_overview_shows_each_smpp_bind(config, r):
    """SPEC §13 / issue 18 point 6: each configured session bound, connecting or down, its host
    and since when; a session the smpp process never reported (or that died) reads down."""
    from app.smpp import status as smpp_status

    since = 1_765_000_000.0
    smpp_status.write(r, 0, {"state": "bound", "host": "smpp1.infobip.com", "port": 8888, "since": since,
                             "received": 12, "rejected": 0})
    smpp_status.write(r, 1, {"state": "connecting", "host": "smpp2.infobip.com", "port": 8888,
                             "since": since})
    client = signed_in_with(config, SMPP_HOST="smpp1.infobip.com", SMPP_SESSIONS=3)
    html = client.get("/").get_data(as_text=True)
    assert states(html, "bind") == {"0": "bound", "1": "connecting", "2": "down"}
    text = text_of(html)
    assert "smpp1.infobip.com:8888" in text and "smpp2.infobip.com:8888" in text
    assert "2025-12-06 05:46:40 UTC" in text  # since, as a <time> the page shows in the viewer's zone
    assert "no report from the smpp process" in text
    assert 'class="dot ok"' in html and 'class="dot warn"' in html and 'class="dot bad"' in html
    assert 'data-bind="2"' in client.get("/overview/live").get_data(as_text=True)


def test_overview_shows_infobip_feature_health(config, r):
    """Each Infobip feature that has called: ok, auth failed or unavailable with the reason and
    when it is tried again (app/infobip/status.py, as /readyz shows it)."""
    from app.infobip import status as infobip_status

    configured = signed_in_with(config, **INFOBIP)
    assert "No call to Infobip yet" in configured.get("/").get_data(as_text=True)
    infobip_status.record_ok(r, "pull-reports")
    infobip_status.record_failure(r, "logs", "HTTP 401", state=infobip_status.AUTH_FAILED)
    infobip_status.record_failure(r, "send", "HTTP 503", retry_at=1_765_000_000.0)
    html = configured.get("/").get_data(as_text=True)
    assert states(html, "feature") == {"logs": "auth failed", "pull-reports": "ok", "send": "unavailable"}
    text = text_of(html)
    assert "HTTP 401" in text and "HTTP 503" in text
    assert "next try 2025-12-06 05:46:40 UTC" in text


def test_reconciliation_panel_reads_the_last_run(config, r, monkeypatch):
    """The panel reads `app.store.get_reconciliation` (pull and reconciliation, issue 14) when it
    exists; a tree without it, or a reader that fails, shows the panel's other states."""
    client = signed_in_with(config, **INFOBIP, RECONCILE_AFTER=3600)
    monkeypatch.delattr(store, "get_reconciliation", raising=False)
    assert "Not configured" in text_of(client.get("/").get_data(as_text=True))
    last = {"at": "2026-12-07T01:00:00.000Z", "candidates": 40, "checked": 38, "filledFromLogs": 5,
            "stale": 2, "calls": 3}
    monkeypatch.setattr(store, "get_reconciliation", lambda r: {"lastRun": last, "totals": {
        "runs": 4, "filledFromLogs": 9, "stale": 2}}, raising=False)
    text = text_of(client.get("/").get_data(as_text=True))
    assert "Last run 2026-12-07 01:00:00 UTC" in text
    assert "Looked up in the logs 38 of 40" in text and "Filled from the logs 5" in text
    assert "All runs 4 · 9 filled · 2 stale" in text
    monkeypatch.setattr(store, "get_reconciliation", lambda r: {"lastRun": None, "totals": {}}, raising=False)
    assert "No run yet" in client.get("/").get_data(as_text=True)

    def broken(r):
        raise KeyError("lastRun")

    monkeypatch.setattr(store, "get_reconciliation", broken, raising=False)
    assert client.get("/").status_code == 200


# --- replies on the inbound feed, the opt-out page (SPEC §11) ------------------------------------


def send_mo(infobip, sender: str, text: str, message_id: str, receiver: str = "41793026727") -> None:
    query = {"sender": sender, "receiver": receiver, "text": text, "messageid": message_id}
    assert infobip.client.get("/infobip/mo", query_string=query,
                              headers={"X-Webhook-Token": infobip_token()}).status_code == 200


def test_inbound_shows_the_reply_its_message_id_and_delivery_status(page, infobip, work):
    from app.optout.replies import reply_id

    send_mo(infobip, "38598111", "STOP", "mo-stop")
    send_mo(infobip, "38598222", "hello", "mo-hello")  # no reply: nothing under it
    work()
    html = page("/inbound")
    text = text_of(html)
    assert "Reply You are unsubscribed" in text and reply_id("mo-stop") in text
    assert "sending is off (no INFOBIP_BASE_URL)" in text  # recorded, never sent, in this config
    assert html.count('class="reply"') == 1
    assert infobip.dlr(push(report(reply_id("mo-stop"), to="38598111"))).status_code == 200
    work()
    html = page("/inbound")
    assert 'class="badge g-DELIVERED"' in html and "DELIVERED_TO_HANDSET" in html
    assert f'href="/messages/{reply_id("mo-stop")}"' in html


def test_optouts_page_without_data_says_what_stop_does(page):
    text = text_of(page("/optouts"))
    assert "Nobody has opted out" in text and "STOPALL" in text and "UNSUBSCRIBE" in text
    assert "optout section of the routes file" in text and "Opt-outs and replies" in text
    assert 'href="/optouts"' in page("/")  # in the nav


def test_optouts_page_lists_filters_adds_and_lifts(client, page, infobip, work):
    send_mo(infobip, "38598111", "STOP", "mo-1")
    send_mo(infobip, "38598222", "STOPALL", "mo-2", receiver="41793026700")
    work()
    text = text_of(page("/optouts"))
    assert text.index("38598222") < text.index("38598111")  # newest first
    assert "STOPALL" in text and "all" in text
    only = text_of(page("/optouts?number=%2B38598111"))
    assert "38598111" in only and "38598222" not in only
    by_receiver = text_of(page("/optouts?receiver=41793026727"))
    assert "38598111" in by_receiver and "38598222" in by_receiver  # STOPALL holds for it too
    assert "38598111" not in text_of(page("/optouts?receiver=41793026700"))
    assert "Not opted out" in page("/optouts?number=38598999")
    assert "is not a phone number" in page("/optouts?number=abc")

    token = token_of(page("/optouts"))
    answer = client.post("/optouts", data={"csrf_token": token, "msisdn": "+38598333",
                                           "receiver": "41793026727", "note": "asked by phone"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/optouts?number=38598333"
    html = text_of(page("/optouts?number=38598333"))
    assert "in a moment" in html and "Not opted out" in html  # queued through the lanes, not yet applied
    work()
    assert "by hand: asked by phone" in text_of(page("/optouts?number=38598333"))

    client.post("/optouts/38598222/lift", data={"csrf_token": token, "receiver": "*"})
    work()
    assert "Not opted out" in page("/optouts?number=38598222")
    assert "38598111" in text_of(page("/optouts"))


@pytest.mark.parametrize("form", [{"msisdn": "38598333"}, {"msisdn": "x1", "all": "1"},
                                  {"msisdn": "38598333", "receiver": "41793026727", "all": "1"}])
def test_an_incomplete_opt_out_form_changes_nothing(client, page, r, form):
    token = token_of(page("/optouts"))
    before = r.dbsize()
    assert client.post("/optouts", data={"csrf_token": token, **form}).status_code == 302
    assert "Nothing changed" in page("/optouts")
    assert r.dbsize() == before
