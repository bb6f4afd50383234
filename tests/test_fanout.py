"""Fan-out end to end (SPEC §3, §4): Infobip posts to the app, real RQ workers drain and deliver,
real HTTP consumers on 127.0.0.1 receive. Who gets which event, MO routing by keyword, alias,
regex and receiver, the default route, unrouted MO, Redis Stream sinks, and the signature every
POST carries (checked with the `standardwebhooks` package from PyPI, as a consumer would).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from app import keys
from app.events import dlr_event_id, mo_event_id
from app.keys import EVENT_STREAM, MO_UNROUTED
from app.optout.section import OptOut
from tests.conftest import basic_header
from tests.consumers import SECRET, ConsumerServer, http_consumer, routes_text, stream_consumer
from tests.samples import push, report

CONTEST_NUMBER = "41793026727"
OTHER_NUMBER = "41790000001"

MO_ROUTES = f"""\
  - keywords: [STOP, UNSUBSCRIBE]
    consumers: [optout]
  - name: contest
    receiver: "{CONTEST_NUMBER}"
    keyword_regex: "^WIN[0-9]*$"
    consumers: [contest]
  - default: true
    consumers: [inbox]
"""

# consumer -> its `events` in the routes file ("" = none: it gets only what an MO route names)
SUBSCRIPTIONS = {
    "finals": "[dlr.final]",
    "progress": "[dlr.intermediate]",
    "dlrs": '["dlr.*"]',
    "archive": '["*"]',
    "optout": "",
    "contest": "",
    "inbox": "[mo.received]",  # also named by the default route: gets such an MO once
}


@pytest.fixture
def service(use_routes, consumer_server: ConsumerServer):
    consumers = [http_consumer(name, f"{consumer_server.url}/{name}", events=events)
                 for name, events in SUBSCRIPTIONS.items()]
    return use_routes(routes_text(*consumers, mo_routes=MO_ROUTES))


def got(server: ConsumerServer) -> dict[str, Counter[str]]:
    """consumer name -> event id -> times delivered (2xx) to it."""
    return {name: server.delivered(f"/{name}") for name in SUBSCRIPTIONS}


def mo(service: Any, text: str, receiver: str = OTHER_NUMBER, message_id: str = "mo-1") -> str:
    """Infobip's default MO forward: a GET with the default parameter names."""
    resp = service.client.get("/infobip/mo", headers=basic_header(), query_string={
        "sender": "41791234567", "receiver": receiver, "text": text, "messageid": message_id,
        "datacoding": "0"})
    assert resp.status_code == 200 and resp.json["accepted"] == 1, resp.json
    return mo_event_id(message_id)


def dlr_id(item: dict[str, Any], api: Any) -> str:
    """The event id of a report, as state recorded it (and as SPEC §3 derives it)."""
    data = api.get(f"/api/messages/{item['messageId']}").json
    assert data["eventId"] == dlr_event_id(data)
    return data["eventId"]


# --- who gets a delivery report ------------------------------------------------------------


def test_dlr_events_go_to_the_consumers_whose_events_match(service, consumer_server, work):
    final, pending = report("m-final"), report("m-pending", "PENDING")
    assert service.infobip.dlr(push(final, pending)).status_code == 200
    work()
    final_id, pending_id = dlr_id(final, service.api), dlr_id(pending, service.api)
    assert got(consumer_server) == {
        "finals": {final_id: 1},
        "progress": {pending_id: 1},
        "dlrs": {final_id: 1, pending_id: 1},
        "archive": {final_id: 1, pending_id: 1},
        "optout": {},
        "contest": {},
        "inbox": {},
    }
    types = {s.event_id: s.event["type"] for s in consumer_server.requests()}
    assert types == {final_id: "dlr.final", pending_id: "dlr.intermediate"}


def test_a_resent_report_is_not_delivered_again(service, consumer_server, work):
    item = report("m-1")
    service.infobip.dlr(push(item))
    work()
    service.infobip.dlr(push(item))  # Infobip resends when our answer was slow
    work()
    assert len(consumer_server.requests("/finals")) == 1
    assert consumer_server.delivered("/archive") == {dlr_id(item, service.api): 1}


# --- MO routing -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "receiver", "route", "routed_to"),
    [
        ("STOP", OTHER_NUMBER, "stop", "optout"),
        ("stop please", CONTEST_NUMBER, "stop", "optout"),  # case-insensitive, any receiver
        ("Unsubscribe me", OTHER_NUMBER, "stop", "optout"),  # an alias
        ("WIN", CONTEST_NUMBER, "contest", "contest"),
        ("win42 my answer", CONTEST_NUMBER, "contest", "contest"),
        ("WIN42", OTHER_NUMBER, "default", "inbox"),  # the regex route is for one receiver only
        ("WINNER", CONTEST_NUMBER, "default", "inbox"),  # ^WIN[0-9]*$ is the whole keyword
        ("STOPP", OTHER_NUMBER, "default", "inbox"),  # a keyword is a whole word
        ("hello there", OTHER_NUMBER, "default", "inbox"),
    ],
)
def test_mo_takes_the_first_route_that_matches(service, consumer_server, work, text, receiver, route,
                                               routed_to):
    event_id = mo(service, text, receiver)
    work()
    inbound = service.api.get("/api/inbound/mo-1")
    assert inbound.status_code == 200 and inbound.json["route"] == route
    expected = {name: {} for name in SUBSCRIPTIONS}
    expected |= {"archive": {event_id: 1}, "inbox": {event_id: 1}, routed_to: {event_id: 1}}
    delivered = got(consumer_server)
    # SPEC §11: a STOP also opts the sender out; its contact.optout event goes to "*" as well
    contact = set(delivered["archive"]) - {event_id}
    assert len(contact) == (OptOut().kind(text.split()[0]) == "stop")
    delivered["archive"] = Counter({event_id: delivered["archive"][event_id]})
    assert delivered == expected
    [delivery] = consumer_server.requests(f"/{routed_to}")
    assert delivery.verify()["data"]["route"] == route
    assert service.api.get("/api/consumers").json["moUnrouted"] == 0


def test_a_consumer_named_by_events_and_by_the_route_gets_the_mo_once(service, consumer_server, work):
    event_id = mo(service, "hello")
    work()
    assert service.api.get("/api/inbound/mo-1").json["route"] == "default"
    assert [s.event_id for s in consumer_server.requests("/inbox")] == [event_id]


def test_the_same_mo_resent_is_routed_and_delivered_once(service, consumer_server, work):
    mo(service, "STOP")
    mo(service, "STOP")
    work()
    assert len(consumer_server.requests("/optout")) == 1


def test_an_mo_no_route_takes_is_kept_and_counted(use_routes, consumer_server, work):
    service = use_routes(routes_text(
        http_consumer("optout", consumer_server.url + "/optout"),
        http_consumer("archive", consumer_server.url + "/archive", events='["*"]'),
        mo_routes="  - keywords: [STOP]\n    consumers: [optout]\n"))
    kept = mo(service, "hello", message_id="mo-lost")
    mo(service, "STOP", message_id="mo-stop")
    work()
    inbound = service.api.get("/api/inbound/mo-lost")
    assert inbound.status_code == 200 and inbound.json["route"] is None
    assert inbound.json["text"] == "hello"
    listed = service.api.get("/api/inbound").json["results"]
    assert {m["messageId"]: m["route"] for m in listed} == {"mo-lost": None, "mo-stop": "stop"}
    assert service.api.get("/api/consumers").json["moUnrouted"] == 1
    # Kept, and still delivered to consumers that subscribe to every MO.
    assert consumer_server.delivered("/archive")[kept] == 1
    assert kept not in consumer_server.delivered("/optout")


def test_without_mo_routes_every_mo_is_unrouted(use_routes, consumer_server, work):
    service = use_routes(routes_text(http_consumer("archive", consumer_server.url + "/a", events='"*"')))
    mo(service, "STOP", message_id="mo-1")
    mo(service, "hello", message_id="mo-2")
    work()
    assert service.api.get("/api/consumers").json["moUnrouted"] == 2
    assert len(consumer_server.delivered("/a")) == 3  # the two MO and the STOP's contact.optout


# --- the signed POST ------------------------------------------------------------------------

DLR_DATA = {"messageId", "bulkId", "to", "from", "sentAt", "doneAt", "smsCount", "mccMnc", "price",
            "status", "error", "callbackData", "final", "warnings"}
MO_DATA = {"messageId", "from", "to", "text", "cleanText", "keyword", "receivedAt", "smsCount",
           "dataCoding", "esmClass", "binary", "parts", "incomplete", "route"}
CONTACT_DATA = {"msisdn", "receiver", "since", "keyword", "messageId", "source"}  # SPEC §11


def test_every_post_is_signed_and_carries_the_event(service, consumer_server, work):
    service.infobip.dlr(push(report("m-1"), report("m-2", "PENDING")))
    mo(service, "STOP now")
    work()
    seen = consumer_server.requests()
    # finals 1, progress 1, dlrs 2, archive 4 (2 DLR, the MO, the STOP's contact.optout),
    # optout 1, inbox 1 (every MO)
    assert len(seen) == 10
    for delivery in seen:
        event = delivery.verify(SECRET)  # standardwebhooks from PyPI, not project code
        assert delivery.headers["webhook-id"] == event["id"]
        assert delivery.headers["webhook-timestamp"].isdigit()
        assert delivery.headers["webhook-signature"].startswith("v1,")
        assert delivery.headers["content-type"] == "application/json"
        assert set(event) == {"id", "type", "timestamp", "data"}
        assert event["id"].startswith("evt_") and event["timestamp"].endswith("Z")
        fields = {"mo.received": MO_DATA, "contact.optout": CONTACT_DATA}.get(event["type"], DLR_DATA)
        assert fields <= set(event["data"]), fields - set(event["data"])
    price = next(s.event for s in seen if s.event["type"] == "dlr.final")["data"]["price"]
    assert price == {"pricePerMessage": "0.01", "currency": "EUR"}  # a decimal string


def test_each_consumer_signs_with_its_own_secret(use_routes, consumer_server, work):
    other = "whsec_" + "b3RoZXItY29uc3VtZXItc2VjcmV0LTAxMjM0NTY3ODk="
    service = use_routes(routes_text(
        http_consumer("one", consumer_server.url + "/one", events='["*"]'),
        http_consumer("two", consumer_server.url + "/two", events='["*"]', secret=other)))
    service.infobip.dlr(push(report("m-1")))
    work()
    [one], [two] = consumer_server.requests("/one"), consumer_server.requests("/two")
    assert one.body == two.body and one.event_id == two.event_id
    assert one.verify(SECRET) == two.verify(other)
    with pytest.raises(WebhookVerificationError):
        two.verify(SECRET)
    tampered = one.event
    tampered["data"]["to"] = "0000"
    with pytest.raises(WebhookVerificationError):  # a body changed in transit
        Webhook(SECRET).verify(orjson.dumps(tampered), one.headers)


# --- Redis Stream sinks ---------------------------------------------------------------------


def stream_events(r: Any, stream: str) -> list[dict[str, Any]]:
    return [orjson.loads(fields[b"event"]) for _, fields in r.xrange(stream)]


def test_without_a_routes_file_every_event_goes_to_the_sms_events_stream(infobip, client, api, work, r):
    assert infobip.dlr(push(report("m-1"), report("m-2", "PENDING"))).status_code == 200
    resp = client.get("/infobip/mo", headers=basic_header(),
                      query_string={"sender": "41791234567", "text": "hi", "messageid": "mo-1"})
    assert resp.status_code == 200
    work()
    types = Counter(e["type"] for e in stream_events(r, EVENT_STREAM))
    assert types == {"dlr.final": 1, "dlr.intermediate": 1, "mo.received": 1}
    figures = api.get("/api/consumers").json
    assert figures["consumers"] == {EVENT_STREAM: {"kind": "redis-stream", "target": "stream:sms-events",
                                                   "streamLength": 3}}
    assert figures["moUnrouted"] == 1  # no MO routes without a file
    assert r.get(MO_UNROUTED.format(t=keys.tag_of("41791234567"))) == b"1"  # the sender's lane


def test_stream_consumers_get_their_own_stream(use_routes, work, r):
    service = use_routes(routes_text(
        stream_consumer("finals", "s-finals", events="[dlr.final]"),
        stream_consumer("everything", "s-all", events='["*"]'),
        stream_consumer("optout", "s-optout"),
        mo_routes="  - keywords: [STOP]\n    consumers: [optout, everything]\n"))
    service.infobip.dlr(push(report("m-1"), report("m-2", "PENDING")))
    mo(service, "stop")
    work()
    assert [e["data"]["messageId"] for e in stream_events(r, "s-finals")] == ["m-1"]
    assert Counter(e["type"] for e in stream_events(r, "s-all")) == {  # the MO once, though named twice
        "dlr.final": 1, "dlr.intermediate": 1, "mo.received": 1, "contact.optout": 1}
    [optout] = stream_events(r, "s-optout")
    assert optout["type"] == "mo.received" and optout["data"]["route"] == "stop"
    assert not r.exists(EVENT_STREAM)  # a routes file replaces the default stream
    figures = service.api.get("/api/consumers").json["consumers"]
    assert figures["everything"] == {"kind": "redis-stream", "target": "stream:s-all", "streamLength": 4}


def test_stream_length_is_capped_approximately(use_routes, work, r):
    service = use_routes(routes_text(stream_consumer("capped", "s-capped", events='["*"]', maxlen=10)))
    sent = 0
    for bucket in range(3):  # Infobip sends at most 100 reports per request
        items = [report(f"m-{bucket}-{n}") for n in range(100)]
        assert service.infobip.dlr(push(*items)).status_code == 200
        sent += len(items)
    work()
    length = r.xlen("s-capped")
    # MAXLEN ~ trims whole stream nodes (100 entries each here): never below the cap, well under
    # what was sent.
    assert 10 <= length < sent
    newest = stream_events(r, "s-capped")[-1]
    assert newest["data"]["messageId"].startswith("m-2-")


def test_http_and_stream_consumers_together(use_routes, consumer_server, work, r):
    service = use_routes(routes_text(
        http_consumer("crm", consumer_server.url + "/crm", events="[dlr.final]"),
        stream_consumer("stream", "sms-events", events='["*"]')))
    service.infobip.dlr(push(report("m-1")))
    work()
    [event] = stream_events(r, "sms-events")
    [delivery] = consumer_server.requests("/crm")
    assert delivery.verify() == event and delivery.event_id == event["id"]
