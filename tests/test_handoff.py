"""The hand-off adapters outside a request use (the pull poller, SMPP): the same validation,
quarantine and lanes as an HTTP push, written atomically, marked with the item's source."""

from __future__ import annotations

from typing import Any

import orjson
import redis

from app import handoff, quarantine, store
from app.keys import QUARANTINE

CONFIG = {"DRAIN_LANES": 4, "QUARANTINE_MAX": 100}
DELIVERED = {"groupId": 3, "groupName": "DELIVERED", "id": 5, "name": "DELIVERED_TO_HANDSET"}


def report(message_id: str) -> dict[str, Any]:
    return {"messageId": message_id, "bulkId": "b1", "to": "41793026727",
            "doneAt": "2026-12-01T10:00:00.000+0000", "status": DELIVERED}


def pulled(r: redis.Redis, page: dict[str, Any]) -> dict[str, Any]:
    return handoff.accept(r, CONFIG, "dlr", page["results"], source="pull", body=orjson.dumps(page),
                          path="/infobip/dlr")


def test_accepted_items_reach_state_with_their_source_and_rejects_are_quarantined(r, work) -> None:
    page = {"results": [report("m1"), {"to": "no id"}]}
    answer = pulled(r, page)
    assert answer["accepted"] == 1 and [x["index"] for x in answer["rejected"]] == [1]
    work()
    assert store.get_message(r, "m1")["source"] == "pull"
    [entry] = quarantine.entries(r)
    assert entry["source"] == "pull" and entry["path"] == "/infobip/dlr"
    assert orjson.loads(quarantine.body_of(entry)) == page


def test_a_quarantined_pulled_page_replays_through_the_push_endpoint(r, api) -> None:
    pulled(r, {"results": [{"to": "no id"}]})
    [entry] = quarantine.entries(r)
    answer = api.post(f"/api/quarantine/{entry['id']}/replay").get_json()
    assert answer["status"] == 400  # still invalid: it stays, and nothing was written
    assert r.llen(QUARANTINE) == 1
