"""app/openapi.yaml is the contract of the HTTP layer, and the code keeps it.

- the document is valid OpenAPI 3.1 (the meta-schema; schemathesis builds every operation),
  served at /openapi.json, and rendered at /docs without any external resource;
- every Flask route is in the document, and every documented operation is a Flask route;
- schemathesis runs against the WSGI app with the suite's real Redis, authenticated (token
  for ingest, bearer for /api), over state seeded through the real ingest and workers (so the
  200 answers of the query API carry real data), and finds no 500 and no answer that
  contradicts the document: status code, content type, headers and body schema; /api must
  also refuse what the document refuses;
- the answers generated requests cannot reach (403, 413, 415, 503 with Retry-After, odd
  `limit` values, replay bodies that are not an object) conform too.
"""

from __future__ import annotations

import os
import re
from typing import Any

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app, openapi
from app.keys import DEAD_LETTERS, QUARANTINE, consumer_key
from tests.conftest import API_KEY, TOKEN, Service, basic_header
from tests.samples import raw
from tools.redis_server import free_port

# Examples the document names (its `example` values), so the examples phase meets real state.
QUARANTINE_ID = "q_0f6c2b1e9d8a4c3b8e7f6a5d4c3b2a10"
PULL_ID = "ff4804ef-6ab6-4abd-984d-ab3b1387e823"

ROUTES = """
consumers:
  - name: crm
    url: http://127.0.0.1:{port}/refused
    secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
    events: [dlr.final]
    retry_schedule: [0]
  - name: archive
    url: http://127.0.0.1:{port}/refused
    events: [dlr.intermediate]
    retry_schedule: [3600]
  - name: stream
    type: redis-stream
    stream: sms-events
    events: ["*"]
mo_routes:
  - keywords: [HELLO]
    consumers: [crm]
"""

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def with_docs(app: Any) -> Any:
    """The blueprint is registered by create_app's owner; register it here when it is not (yet)."""
    if "openapi" not in app.blueprints:
        app.register_blueprint(openapi.bp)
    return app


@pytest.fixture
def service(use_routes, r, work) -> Service:
    """An app with consumers, and state in every shape the query API returns: final,
    intermediate and v3 reports (JSON and XML), MO forwards and pull pushes, a bulk, dead
    letters, pending deliveries, and a quarantine entry with the id the document names."""
    svc = use_routes(ROUTES.format(port=free_port()))
    with_docs(svc.app)
    infobip = svc.infobip
    for name in ("intermediate_push.repeated.xml", "notify_push.json", "v3_report.json",
                 "reports_by_message_id.single.xml"):
        assert infobip.dlr(raw(name), content_type=None).status_code == 200
    mo = {"sender": "38598111", "receiver": "41793026727", "text": "HELLO world", "token": TOKEN}
    assert svc.client.get("/infobip/mo", query_string=mo).status_code == 200
    stop = {**mo, "sender": "38598112", "text": "STOP"}  # an opt-out, and an inbound with a reply
    assert svc.client.get("/infobip/mo", query_string=stop).status_code == 200
    pull = {"results": [{"messageId": PULL_ID, "from": "+38598111", "to": "41793026727",
                         "text": "WIN 1", "receivedAt": "2015-02-15T11:43:20.254+0100",
                         "price": {"pricePerMessage": 0, "currency": "EUR"}, "note": "extra"}]}
    assert infobip.post("/infobip/mo", pull).status_code == 200
    assert infobip.dlr({"results": [{"messageId": "x", "smsCount": "many"}]}).status_code == 400
    status = {"groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED"}
    sent = {"bulkId": "BULK-ID-123-xyz",
            "messages": [{"to": "41793026731", "smsCount": 1, "messageId": "sent-only", "status": status}]}
    assert svc.api.post("/api/sends", sent).status_code == 200  # a message known only as sent
    work()
    raw_entry = r.lindex(QUARANTINE, 0)
    r.lset(QUARANTINE, 0, orjson.dumps({**orjson.loads(raw_entry), "id": QUARANTINE_ID}))
    return svc


def test_document_is_valid_openapi_and_served(client, app) -> None:
    with_docs(app)
    got = client.get("/openapi.json")
    assert got.status_code == 200 and got.is_json
    assert got.json == openapi.document() and got.json["openapi"].startswith("3.")
    schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    operations = list(schema.get_all_operations())
    assert operations and all(op.ok() for op in operations)  # every operation builds


def test_docs_page_is_self_contained(client, app) -> None:
    with_docs(app)
    got = client.get("/docs")
    assert got.status_code == 200 and got.mimetype == "text/html"
    page = got.get_data(as_text=True)
    assert "<script" not in page and not re.search(r"(src|href)=['\"](https?:)?//", page)
    for path in openapi.document()["paths"]:
        assert f"<code>{path}</code>" in page
    assert "id='schema-IngestAnswer'" in page and "href='#schema-Error'" in page


def _shape(path: str) -> str:
    """`/api/messages/<message_id>` and `/api/messages/{messageId}` are the same route."""
    return re.sub(r"<[^>]*>|\{[^}]*\}", "{}", path)


def test_every_route_is_documented_and_every_operation_exists(app) -> None:
    with_docs(app)
    automatic = {"HEAD", "OPTIONS"}
    # The dashboard's HTML pages (SPEC §10) are for people, not part of the JSON API's document.
    routed = {(_shape(rule.rule), method) for rule in app.url_map.iter_rules()
              if rule.endpoint != "static" and not rule.endpoint.startswith("dashboard.")
              for method in rule.methods - automatic}
    documented = {(_shape(path), method.upper()) for path, item in openapi.document()["paths"].items()
                  for method in item if method in openapi.METHODS}
    assert routed == documented


# The document as the app serves it (test_document_is_valid_openapi_and_served checks that
# /openapi.json is this); calls go to the `service` app through WSGI, no socket involved.
CONFIG = schemathesis.Config.from_dict({
    "generation": {"mode": "all", "deterministic": True},
    "phases": {"stateful": {"enabled": False}},
    "auth": {"openapi": {"ingestToken": {"api_key": TOKEN}, "bearer": {"bearer": API_KEY}}},
    # 503 is /readyz's documented "not ready" answer (the suite runs no RQ worker), not a failure.
    "operations": [{"include-path": "/readyz",
                    "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", 503]}}}],
})
api_schema = schemathesis.openapi.from_dict(openapi.document(), config=CONFIG)


# Per operation, in the fuzzing phase (the examples and coverage phases add their own cases).
# `make test` keeps it small; OPENAPI_MAX_EXAMPLES=1000 for a long run.
MAX_EXAMPLES = int(os.environ.get("OPENAPI_MAX_EXAMPLES", "25"))


@api_schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_the_document(case, service: Service) -> None:
    """Ingest is liberal on purpose (SPEC §2.1: unknown fields kept, an empty XML element is
    absent, the media type sniffed), so only /api must also refuse what the document refuses."""
    strict = [negative_data_rejection] if case.operation.path.startswith("/api/") else []
    case.call_and_validate(app=service.app, checks=CHECKS + strict)


# --- answers generated requests cannot reach: another configuration, Redis away, odd input ---

INGEST = {"token": TOKEN}
BEARER = {"Authorization": f"Bearer {API_KEY}"}
NOTIFY = orjson.loads(raw("notify_push.json"))


def answer(app: Any, path: str, method: str, status: int, **request: Any) -> Any:
    """Send one request described against the document; its answer must be `status` and
    conform to what the document says of that status (code, content type, headers, body)."""
    case = api_schema[path][method].Case(**request)
    response = case.call(app=with_docs(app))
    assert response.status_code == status, response.text
    checks = [check for check in CHECKS if check is not not_a_server_error]  # 503 is the point here
    case.validate_response(response, checks=checks)
    return response


def test_redis_away_is_503_with_retry_after_everywhere(data_plane_down) -> None:
    app = data_plane_down()
    got = answer(app, "/infobip/dlr", "POST", 503, query=INGEST, body=NOTIFY, media_type="application/json")
    assert got.headers["retry-after"] == ["30"] and got.json()["error"] == "store_unavailable"
    answer(app, "/infobip/mo", "GET", 503, query={**INGEST, "sender": "385", "text": "hi"})
    answer(app, "/api/messages/{messageId}", "GET", 503, path_parameters={"messageId": "m"}, headers=BEARER)
    answer(app, "/api/consumers", "GET", 503, headers=BEARER)
    assert answer(app, "/readyz", "GET", 503).json() == {"status": "unavailable", "redis": False}


def test_source_not_allowed_is_403(config, r) -> None:
    app = create_app({**config, "WEBHOOK_ALLOWED_IPS": ["192.0.2.0/24"]})
    answer(app, "/infobip/dlr", "POST", 403, query=INGEST, body=NOTIFY, media_type="application/json")
    answer(app, "/infobip/mo", "GET", 403, query={**INGEST, "sender": "385", "text": "hi"})


def test_body_over_the_cap_is_413(config, r) -> None:
    app = create_app({**config, "MAX_BODY_BYTES": 256})
    answer(app, "/infobip/dlr", "POST", 413, query=INGEST, body=NOTIFY, media_type="application/json")
    answer(app, "/infobip/mo", "POST", 413, query=INGEST, body={"sender": "385", "text": "x" * 300},
           media_type="application/x-www-form-urlencoded")
    answer(app, "/api/dlq/{consumer}/replay", "POST", 413, path_parameters={"consumer": "sms-events"},
           headers=BEARER, body={"ids": ["evt_" + "0" * 32] * 10}, media_type="application/json")


def test_neither_json_nor_xml_is_415(app) -> None:
    got = answer(app, "/infobip/dlr", "POST", 415, query=INGEST, body="results: []", media_type="text/plain")
    assert got.json()["error"] == "unsupported_media_type"


@pytest.mark.parametrize("limit", ["0", "1001", "-1", "1.5", "²", "１", "٣"])
def test_limit_outside_ascii_1_to_1000_is_400(app, limit: str) -> None:
    """'²', '１' and '٣' are str.isdigit(): '²' was a 500 (int() refuses it)."""
    for path in ("/api/messages", "/api/inbound", "/api/quarantine"):
        got = answer(app, path, "GET", 400, query={"limit": limit}, headers=BEARER)
        assert got.json()["details"] == {"limit": ["an integer from 1 to 1000"]}


@pytest.mark.parametrize(("body", "media_type"), [
    ('["evt_1"]', "application/json"), ("null", "application/json"), ('{"ids": ["evt_1"', "application/json"),
    ("\x00", "application/json"), ('ids=["evt_1"]', "application/x-www-form-urlencoded"),
])
def test_replay_body_that_is_not_a_json_object_is_400_and_replays_nothing(service, r, body, media_type):
    """Each of these used to replay every dead letter, as if no body had been sent."""
    key = DEAD_LETTERS.format(consumer=consumer_key("crm"))
    dead = r.llen(key)
    assert dead > 0
    answer(service.app, "/api/dlq/{consumer}/replay", "POST", 400, path_parameters={"consumer": "crm"},
           headers={**BEARER, "Content-Type": media_type}, body=body.encode(), media_type=media_type)
    assert r.llen(key) == dead
    got = answer(service.app, "/api/dlq/{consumer}/replay", "POST", 200, path_parameters={"consumer": "crm"},
                 headers=BEARER, body=b'{"ids": []}', media_type="application/json")
    assert got.json() == {"replayed": dead} and r.llen(key) == 0


def test_basic_and_header_credentials_are_documented_alternatives(service: Service) -> None:
    security = openapi.document()["paths"]["/infobip/dlr"]["post"]["security"]
    assert security == [{"ingestToken": []}, {"ingestHeader": []}, {"basic": []}]
    client = service.client
    body = raw("notify_push.json")
    for headers in (basic_header(), {"X-Webhook-Token": TOKEN}):
        got = client.post("/infobip/dlr", data=body, headers={**headers, "Content-Type": "application/json"})
        assert got.status_code == 200 and got.json["accepted"] == 2
