"""/metrics: Prometheus text with the web counters and the figures workers keep in Redis."""

from __future__ import annotations

import logging

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_KEY, SECRETS, TOKEN
from tests.samples import report


def scrape(client) -> dict[str, dict[tuple, float]]:
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
    assert resp.status_code == 200
    assert resp.mimetype == "text/plain"
    families: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(resp.get_data(as_text=True)):
        for sample in family.samples:
            families.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return families


def value(families, name, **labels) -> float:
    return families.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def test_metrics_need_an_api_key_unless_public(client, config, redis_server):
    assert client.get("/metrics").status_code == 401
    from app import create_app

    public = create_app({**config, "METRICS_PUBLIC": True}).test_client()
    assert public.get("/metrics").status_code == 200


def test_ingest_counts_requests_items_latency_and_worker_figures(client, infobip, work):
    before = scrape(client)
    assert infobip.dlr({"results": [report("m1"), report("m2"), {"to": "no id"}]}).status_code == 200
    assert infobip.dlr({"results": [report("m1")]}).status_code == 200  # a resend
    assert infobip.dlr(b"{broken", "application/json").status_code == 400
    work()
    after = scrape(client)

    def grew(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("receiver_http_requests_total", endpoint="/infobip/dlr", code="200") == 2
    assert grew("receiver_http_requests_total", endpoint="/infobip/dlr", code="400") == 1
    assert grew("receiver_ingest_items_total", kind="dlr", outcome="accepted") == 3
    assert grew("receiver_ingest_items_total", kind="dlr", outcome="rejected") == 2
    assert grew("receiver_ingest_seconds_count", endpoint="/infobip/dlr") == 3
    assert value(after, "receiver_processed_items_total", kind="dlr", outcome="new") == 2
    assert value(after, "receiver_processed_items_total", kind="dlr", outcome="duplicate") == 1
    assert value(after, "receiver_processing_lag_seconds_count") == 3
    assert value(after, "receiver_quarantine_items") == 2
    assert value(after, "receiver_inbox_items") == 0


def test_every_request_is_logged_once_without_its_query_string(client, infobip, caplog):
    caplog.set_level(logging.DEBUG, logger="app.requests")
    resp = infobip.dlr({"results": [report("m1")]}, query_string={"token": TOKEN})
    [line] = [r for r in caplog.records if r.name == "app.requests"]
    assert (line.status, line.path, line.method) == (200, "/infobip/dlr", "POST")
    assert line.request_id == resp.headers["X-Request-Id"]
    assert not any(secret in caplog.text for secret in SECRETS)


def test_at_info_a_delivered_report_is_counted_not_logged_and_the_rest_is_logged(client, infobip, caplog):
    """A line per report at campaign speed is DEBUG; what an operator looks for stays INFO."""
    caplog.set_level(logging.INFO, logger="app.requests")
    infobip.dlr({"results": [report("m1")]}, query_string={"token": TOKEN})
    client.post("/infobip/dlr", json={"results": [report("m2")]})  # no credentials
    infobip.dlr({"results": ["m3"]}, query_string={"token": TOKEN})
    client.get("/healthz")
    lines = [(r.levelname, r.path, r.status) for r in caplog.records if r.name == "app.requests"]
    assert lines == [("INFO", "/infobip/dlr", 401), ("INFO", "/infobip/dlr", 400), ("INFO", "/healthz", 200)]


def test_a_request_id_is_echoed_only_when_it_is_a_plain_token(client):
    assert client.get("/healthz", headers={"X-Request-Id": "abc-123"}).headers["X-Request-Id"] == "abc-123"
    injected = client.get("/healthz", headers={"X-Request-Id": "a b<script>"}).headers["X-Request-Id"]
    assert injected != "a b<script>" and injected.isalnum()
