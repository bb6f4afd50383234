"""/metrics under the real gunicorn (2 worker processes) and rq workers: counts add up.

Counters of each gunicorn worker live in its own process; prometheus-client's multiprocess
mode (deploy/gunicorn.conf.py) must add them up, whichever worker answers the scrape.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import API_KEY
from tests.faults.harness import Stack, request, wait_for

pytestmark = pytest.mark.faults


def scrape(stack: Stack) -> dict[tuple, float]:
    status, body, _ = request(stack.port, "GET", "/metrics", headers={"Authorization": f"Bearer {API_KEY}"})
    assert status == 200
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def test_request_counts_add_up_across_gunicorn_workers(stack, load):
    client = load(rate=20.0, size=10)
    wait_for(lambda: client.count(200) >= 40, 60, "40 acknowledged buckets")
    client.finish()
    acked = client.count(200)
    key = ("receiver_http_requests_total", (("code", "200"), ("endpoint", "/infobip/dlr")))
    assert scrape(stack)[key] == acked
    processed = ("receiver_processed_items_total", (("kind", "dlr"), ("outcome", "new")))
    wait_for(lambda: scrape(stack).get(processed, 0) == acked * 10, 60, "every report in state")
