"""GET|POST /infobip/mo through HTTP (SPEC §2.2, §2.3), then a real RQ worker, then the query
API (§5): default names and MO_URL_TEMPLATE, pull-shape pushes, reassembly of concatenated
messages (in any order, across batches and worker restarts, and the timeout flush), dedupe of
resent MOs, /api/inbound, and the bad-input matrix with quarantine (§5.4). Never a 500.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest

from app import create_app, events, keys
from app.errors import ConfigError
from app.keys import EVENT_STREAM, INDEX_IN, PARTS, PARTS_PENDING, QUARANTINE
from tests.conftest import BASIC_PASSWORD, TOKEN, Infobip, basic_header, run_workers
from tests.samples import BILLION_LAUGHS, EXTERNAL_ENTITY, SEED_BIN, SEED_PULL, SEED_TEXT
from workers import sweep
from workers.settings import routes, settings

PATH_TEMPLATE = "https://sms.example.com/infobip/mo/%receiver%/%sender%?text=%text%"

SEED_PULL_ID = "ff4804ef-6ab6-4abd-984d-ab3b1387e823"
FORM = "application/x-www-form-urlencoded"
SENDER, RECEIVER = "38598123123", "41793026727"


def stream(r) -> list[dict[str, Any]]:
    return [orjson.loads(fields[b"event"]) for _, fields in r.xrange(EVENT_STREAM)]


def received(r) -> list[dict[str, Any]]:
    return [e for e in stream(r) if e["type"] == events.MO_RECEIVED]


def inbound_count(r) -> int:
    """Entries of `ix:in`, every lane's on a cluster."""
    return sum(r.zcard(INDEX_IN.format(t=t)) for t in keys.tags())


def pending() -> str:
    """`parts:pending` of SENDER's lane, where its long messages are reassembled."""
    return PARTS_PENDING.format(t=keys.tag_of(SENDER))


def quarantined(r) -> list[dict[str, Any]]:
    return [orjson.loads(entry) for entry in r.lrange(QUARANTINE, 0, -1)]


def ucs2(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


def udh8(ref: int, total: int, seq: int) -> str:
    return f"050003{ref:02X}{total:02X}{seq:02X}"


def udh16(ref: int, total: int, seq: int) -> str:
    return f"060804{ref:04X}{total:02X}{seq:02X}"


class Mo:
    """Infobip's MO forward: GET (its default) or POST, with our Basic credentials."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, path: str = "/infobip/mo", headers: dict[str, str] | None = None, **params: Any):
        return self.client.get(path, query_string=params, headers={**basic_header(), **(headers or {})})

    def post(self, body: bytes | str, content_type: str | None, path: str = "/infobip/mo", **kw: Any):
        return Infobip(self.client).post(path, body, content_type, **kw)

    def ok(self, path: str = "/infobip/mo", **params: Any) -> dict[str, Any]:
        resp = self.get(path, **params)
        assert resp.status_code == 200, resp.json
        assert resp.json == {"accepted": 1, "rejected": []}
        return resp.json


@pytest.fixture
def mo(client) -> Mo:
    return Mo(client)


def mo_client(config: dict[str, Any], **changes: Any) -> Mo:
    return Mo(create_app({**config, **changes}).test_client())


def inbound(api, message_id: str) -> dict[str, Any]:
    got = api.get(f"/api/inbound/{message_id}")
    assert got.status_code == 200, got.json
    return got.json


def listed(api, **params: Any) -> list[str]:
    got = api.get("/api/inbound", **params)
    assert got.status_code == 200, got.json
    return [m["messageId"] for m in got.json["results"]]


# --- default names: GET, and POST as form, JSON, XML ----------------------------------------

VALUES = {"sender": SENDER, "receiver": RECEIVER, "text": "Stop sending me ads",
          "datetime": "2015-02-15T11:43:20.254+0100", "messageid": "mo-1", "datacoding": "0", "esmclass": "0"}


def _xml(values: dict[str, str]) -> bytes:
    return ("<moRequest>" + "".join(f"<{k}>{v}</{k}>" for k, v in values.items()) + "</moRequest>").encode()


REQUESTS = {
    "GET": lambda mo: mo.get(**VALUES),
    "GET capitalised": lambda mo: mo.get(**{k.capitalize(): v for k, v in VALUES.items()}),
    "GET upper-case": lambda mo: mo.get(**{k.upper(): v for k, v in VALUES.items()}),
    "POST form": lambda mo: mo.post(urlencode(VALUES), FORM),
    "POST JSON": lambda mo: mo.post(orjson.dumps(VALUES), "application/json"),
    "POST XML": lambda mo: mo.post(_xml(VALUES), "application/xml"),
    "POST XML as text/xml": lambda mo: mo.post(_xml(VALUES), "text/xml"),
}


@pytest.mark.parametrize("send", REQUESTS.values(), ids=REQUESTS.keys())
def test_default_names_end_to_end(send, mo, work, api, r):
    resp = send(mo)
    assert resp.status_code == 200, resp.json
    assert resp.json == {"accepted": 1, "rejected": []}
    work()
    [event] = received(r)
    assert event["id"] == events.mo_event_id("mo-1")
    data = event["data"]
    assert (data["messageId"], data["from"], data["to"]) == ("mo-1", SENDER, RECEIVER)
    assert data["text"] == "Stop sending me ads"
    assert (data["keyword"], data["cleanText"]) == ("STOP", "sending me ads")
    assert data["receivedAt"] == "2015-02-15T10:43:20.254Z"
    assert (data["dataCoding"], data["esmClass"], data["binary"]) == (0, 0, None)
    assert (data["parts"], data["smsCount"], data["incomplete"]) == (1, 1, False)
    assert "route" in data
    stored = inbound(api, "mo-1")
    assert stored.pop("reply")["kind"] == "stop"  # SPEC §11: a STOP is answered (app/optout/)
    assert stored == data
    assert quarantined(r) == []


def test_get_on_a_sub_path_with_default_names(mo, work, api):
    """Without path placeholders, what follows /infobip/mo/ is the operator's business."""
    mo.ok("/infobip/mo/some/prefix", sender=SENDER, text="hi", messageid="m-sub")
    work()
    assert inbound(api, "m-sub")["text"] == "hi"


def test_trailing_slash_is_the_same_endpoint(mo, work, api):
    """An MO URL pasted at Infobip as `.../infobip/mo/?sender=...` must not 404 every MO."""
    mo.ok("/infobip/mo/", sender=SENDER, text="slash", messageid="m-slash")
    assert mo.post(urlencode({"sender": SENDER, "text": "form", "messageid": "m-slash2"}), FORM,
                   path="/infobip/mo/").status_code == 200
    work()
    assert inbound(api, "m-slash")["text"] == "slash"
    assert inbound(api, "m-slash2")["text"] == "form"


def test_unicode_get_with_bin(mo, work, api):
    mo.ok(sender="+" + SENDER, receiver=RECEIVER, bin=ucs2("Привет 👋 dünya"), datacoding="8",
          messageid="m-u")
    work()
    got = inbound(api, "m-u")
    assert (got["from"], got["text"], got["keyword"]) == (SENDER, "Привет 👋 dünya", "ПРИВЕТ")


def test_binary_message_is_stored_as_hex(mo, work, api):
    mo.ok(sender=SENDER, bin="C0FFEE00", datacoding="4", messageid="m-bin")
    work()
    got = inbound(api, "m-bin")
    assert (got["text"], got["binary"], got["keyword"]) == (None, "c0ffee00", "")


# --- MO_URL_TEMPLATE ------------------------------------------------------------------------


def test_seed_text_template_literally(config, work, api, r):
    mo = mo_client(config, MO_URL_TEMPLATE=SEED_TEXT)
    mo.ok(who="38598123123", what="ABC")
    work()
    [event] = received(r)
    data = event["data"]
    assert (data["from"], data["text"], data["to"]) == ("38598123123", "ABC", None)
    assert inbound(api, data["messageId"])["text"] == "ABC"


def test_seed_bin_template_literally(config, work, r):
    mo = mo_client(config, MO_URL_TEMPLATE=SEED_BIN)
    mo.ok(who="38598123123", what="414243")
    work()
    [event] = received(r)
    data = event["data"]
    assert (data["from"], data["text"], data["dataCoding"]) == ("38598123123", "ABC", 0)


def test_template_from_the_environment(config, monkeypatch, work, r):
    monkeypatch.setenv("MO_URL_TEMPLATE", SEED_TEXT)
    mo = Mo(create_app({k: v for k, v in config.items() if k != "MO_URL_TEMPLATE"}).test_client())
    mo.ok(who="38598123123", what="ABC")
    work()
    assert [e["data"]["text"] for e in received(r)] == ["ABC"]


def test_template_names_replace_the_default_ones(config, r):
    """With the seed's template, `sender`/`text` are not data: the request has no MO in it."""
    resp = mo_client(config, MO_URL_TEMPLATE=SEED_TEXT).get(sender=SENDER, text="hi")
    assert resp.status_code == 400
    assert len(quarantined(r)) == 1


def test_path_placeholders(config, work, api, r):
    mo = mo_client(config, MO_URL_TEMPLATE=PATH_TEMPLATE)
    mo.ok("/infobip/mo/41793026727/38598123123", text="Win a prize")
    work()
    [event] = received(r)
    data = event["data"]
    assert (data["to"], data["from"]) == (RECEIVER, SENDER)
    assert (data["text"], data["keyword"]) == ("Win a prize", "WIN")
    assert listed(api, to=RECEIVER) == [data["messageId"]]


@pytest.mark.parametrize("path", ["/infobip/mo", "/infobip/mo/41793026727"])
def test_path_shorter_than_the_template_is_400(path, config, r):
    resp = mo_client(config, MO_URL_TEMPLATE=PATH_TEMPLATE).get(path, text="hi")
    assert resp.status_code == 400
    assert resp.json["error"] == "invalid_payload"
    [entry] = quarantined(r)
    assert entry["path"] == path


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("https://h/infobip/mo?from=%sender%&to=%sender%&text=%text%", "%sender% is used twice"),
        ("https://h/infobip/mo/%sender%?s=%SENDER%&text=%text%", "%sender% is used twice"),
        ("https://h/infobip/mo/%receiver%%sender%?text=%text%", "%receiver% and %sender% touch"),
        ("https://h/infobip/mo?pair=%sender%%text%", "%sender% and %text% touch"),
        ("https://h/infobip/mo?who=%sender%", "neither %text% nor %bin%"),
        ("https://h/infobip/mo?who=%sender%&what=%txt%", "unknown placeholder %txt%"),
    ],
    ids=["twice-in-query", "twice-path-and-query", "touching-in-path", "touching-in-query", "no-body",
         "unknown"],
)
def test_template_that_cannot_be_inverted_stops_start_up(template, message, config, r):
    with pytest.raises(ConfigError, match="MO_URL_TEMPLATE") as caught:
        create_app({**config, "MO_URL_TEMPLATE": template})
    assert message in caught.value.message


def test_start_up_error_does_not_show_template_secrets(config, r):
    template = f"https://infobip:{BASIC_PASSWORD}@h/infobip/mo?token={TOKEN}&a=%sender%&b=%sender%&t=%text%"
    with pytest.raises(ConfigError) as caught:
        create_app({**config, "MO_URL_TEMPLATE": template})
    assert "used twice" in caught.value.message
    assert TOKEN not in caught.value.message and BASIC_PASSWORD not in caught.value.message


def test_template_with_a_literal_token_authenticates_and_is_not_data(config, work, r):
    """The operator may put our token in the template itself; Infobip then sends it back."""
    template = f"https://h/infobip/mo?token={TOKEN}&who=%sender%&what=%text%"
    app = create_app({**config, "MO_URL_TEMPLATE": template})
    resp = app.test_client().get("/infobip/mo", query_string={"token": TOKEN, "who": SENDER, "what": "hi"})
    assert resp.status_code == 200
    work()
    [event] = received(r)
    assert TOKEN not in orjson.dumps(event).decode()


# --- the pull shape pushed to the MO endpoint -----------------------------------------------


def test_seed_pull_example_end_to_end(mo, work, api, r):
    resp = mo.post(SEED_PULL, "application/json")
    assert resp.json == {"accepted": 1, "rejected": []}
    work()
    [event] = received(r)
    assert event["id"] == events.mo_event_id(SEED_PULL_ID)
    got = inbound(api, SEED_PULL_ID)
    assert (got["from"], got["to"], got["text"]) == ("38598111", RECEIVER, "KEY Test message")
    assert (got["keyword"], got["cleanText"]) == ("KEY", "Test message")
    assert got["receivedAt"] == "2015-02-15T10:43:20.254Z"
    assert got["original"] == {"receivedAt": "2015-02-15T11:43:20.254+0100"}
    assert listed(api, keyword="key") == [SEED_PULL_ID]


def test_pull_shape_with_counts_and_several_messages(mo, work, api, r):
    item = orjson.loads(SEED_PULL)["results"][0]
    body = {"results": [item, {**item, "messageId": "m-2", "text": "hello", "keyword": "",
                               "receivedAt": "2015-02-15T11:44:00.000+0100"}],
            "messageCount": 2, "pendingMessageCount": 3}
    assert mo.post(orjson.dumps(body), "application/json").json == {"accepted": 2, "rejected": []}
    work()
    assert len(received(r)) == 2
    assert inbound(api, "m-2")["keyword"] == "HELLO"  # "" from Infobip: computed
    assert listed(api) == ["m-2", SEED_PULL_ID]


def test_pull_shape_as_xml(mo, work, api, r):
    body = b"""<inboundReportResponse><results><result>
      <messageId>ff4804ef-6ab6-4abd-984d-ab3b1387e823</messageId><from>38598111</from>
      <to>41793026727</to><text>KEY Test message</text><cleanText>Test message</cleanText>
      <keyword>KEY</keyword><receivedAt>2015-02-15T11:43:20.254+0100</receivedAt><smsCount>1</smsCount>
    </result></results><messageCount>1</messageCount><pendingMessageCount>0</pendingMessageCount>
    </inboundReportResponse>"""
    assert mo.post(body, "application/xml").json == {"accepted": 1, "rejected": []}
    work()
    from_xml = inbound(api, SEED_PULL_ID)
    r.flushall()
    mo.post(SEED_PULL, "application/json")
    work()
    assert inbound(api, SEED_PULL_ID) == from_xml


def test_pull_shape_partial_batch_is_200_and_quarantines_the_rest(mo, work, api, r):
    item = orjson.loads(SEED_PULL)["results"][0]
    body = orjson.dumps({"results": [item, {"messageId": "no-sender", "text": "x"}, "junk"]})
    resp = mo.post(body, "application/json")
    assert resp.status_code == 200
    assert resp.json["accepted"] == 1
    assert [x["index"] for x in resp.json["rejected"]] == [1, 2]
    assert "from" in resp.json["rejected"][0]["errors"]
    [entry] = quarantined(r)
    assert entry["reason"] == "invalid items" and entry["errors"] == resp.json["rejected"]
    work()
    assert [e["data"]["messageId"] for e in received(r)] == [SEED_PULL_ID]
    assert api.get("/api/inbound/no-sender").status_code == 404


# --- concatenated messages ------------------------------------------------------------------

LONG = ["Привет! Это длинное ", "сообщение из трёх ", "частей 👍"]


def part(seq: int, total: int = 3, ref: int = 0x42, chunks: list[str] = LONG, udh=udh8,
         **extra: str) -> dict[str, str]:
    """One part of a concatenated UCS-2 MO, as Infobip forwards it (esmclass with UDHI)."""
    return {"sender": SENDER, "receiver": RECEIVER, "datacoding": "8", "esmclass": "64",
            "datetime": f"2015-02-15T11:43:2{seq}+0100", "bin": udh(ref, total, seq) + ucs2(chunks[seq - 1]),
            **extra}


def the_one_message(r) -> dict[str, Any]:
    events_now = received(r)
    assert len(events_now) == 1, [e["data"].get("text") for e in events_now]
    return events_now[0]["data"]


def assert_no_reassembly_left(r) -> None:
    assert r.keys(PARTS.format(t=keys.tag_of(SENDER), key="*")) == []
    assert r.zcard(pending()) == 0


@pytest.mark.parametrize("work_between", [False, True], ids=["one-batch", "batch-per-part"])
def test_three_part_ucs2_scrambled_with_a_repeat(work_between, mo, work, api, r):
    for seq in (3, 1, 3, 2):
        mo.ok(**part(seq))
        if work_between:
            work()
    work()
    data = the_one_message(r)
    assert data["text"] == "".join(LONG)
    assert (data["parts"], data["smsCount"], data["incomplete"]) == (3, 3, False)
    assert (data["keyword"], data["cleanText"]) == ("ПРИВЕТ!", "Это длинное сообщение из трёх частей 👍")
    assert (data["from"], data["to"], data["dataCoding"]) == (SENDER, RECEIVER, 8)
    assert data["receivedAt"] == "2015-02-15T10:43:21.000Z"  # the first part's
    assert "part" not in data
    assert inbound(api, data["messageId"]) == data
    assert listed(api, **{"from": SENDER}) == [data["messageId"]]
    assert_no_reassembly_left(r)


def test_whole_message_takes_the_id_of_its_first_part(mo, work, api, r):
    for seq in (2, 3, 1):
        mo.ok(**part(seq, messageid=f"infobip-{seq}"))
    work()
    data = the_one_message(r)
    assert data["messageId"] == "infobip-1"
    assert [e["id"] for e in received(r)] == [events.mo_event_id("infobip-1")]
    for seq in (2, 3):
        assert api.get(f"/api/inbound/infobip-{seq}").status_code == 404


def test_parts_that_share_one_infobip_message_id_are_all_kept(mo, work, api, r):
    """Whether Infobip gives each part its own messageid or the message one id, no part is
    taken for a resend of another: the part number tells them apart."""
    for seq in (2, 1, 3, 2):
        mo.ok(**part(seq, messageid="shared-1"))
    work()
    data = the_one_message(r)
    assert (data["messageId"], data["text"], data["parts"]) == ("shared-1", "".join(LONG), 3)
    assert inbound(api, "shared-1")["incomplete"] is False
    assert_no_reassembly_left(r)


def test_sixteen_bit_reference(mo, work, r):
    chunks = ["Sixteen-bit ", "reference"]
    for seq in (2, 1):
        mo.ok(**part(seq, total=2, ref=0xBEEF, chunks=chunks, udh=udh16))
    work()
    data = the_one_message(r)
    assert (data["text"], data["parts"]) == ("Sixteen-bit reference", 2)


def test_same_low_byte_of_a_sixteen_bit_reference_is_another_message(mo, work, r):
    for ref in (0x0142, 0x0242):
        for seq in (1, 2):
            mo.ok(**part(seq, total=2, ref=ref, chunks=[f"{ref:X}a", f"{ref:X}b"], udh=udh16))
    work()
    assert sorted(e["data"]["text"] for e in received(r)) == ["142a142b", "242a242b"]


def test_unrelated_information_element_before_the_concat_one(mo, work, r):
    chunks = ["Ports ", "first"]
    for seq in (1, 2):
        header = "0B" + "05040B8423F0" + f"000377{2:02X}{seq:02X}"  # port IE, then concat 8-bit
        mo.ok(sender=SENDER, receiver=RECEIVER, datacoding="8", esmclass="64",
              bin=header + ucs2(chunks[seq - 1]))
    work()
    assert the_one_message(r)["text"] == "Ports first"


def test_gsm_parts_with_extension_characters(mo, work, r):
    gsm = {1: "5072696365203D20", 2: "31301B65201B28411B29"}  # "Price = ", "10€ {A}" (GSM 03.38)
    for seq in (2, 1):
        mo.ok(sender=SENDER, receiver=RECEIVER, datacoding="0", esmclass="64",
              bin=udh8(5, 2, seq) + gsm[seq])
    work()
    assert the_one_message(r)["text"] == "Price = 10€ {A}"


def test_binary_parts_are_joined_as_hex(mo, work, r):
    for seq, body in ((2, "DDEEFF"), (1, "AABBCC")):
        mo.ok(sender=SENDER, receiver=RECEIVER, datacoding="4", esmclass="64", bin=udh8(9, 2, seq) + body)
    work()
    data = the_one_message(r)
    assert (data["text"], data["binary"], data["parts"], data["keyword"]) == (None, "aabbccddeeff", 2, "")


def test_a_message_of_one_part_is_emitted_at_once(mo, work, r):
    mo.ok(**part(1, total=1))
    work()
    data = the_one_message(r)
    assert (data["text"], data["parts"], data["incomplete"]) == (LONG[0], 1, False)
    assert_no_reassembly_left(r)


def test_parts_of_different_senders_do_not_mix(mo, work, r):
    for sender in ("111", "222"):
        for seq in (1, 2, 3):
            mo.ok(**{**part(seq), "sender": sender, "bin": udh8(0x42, 3, seq) + ucs2(f"{sender}-{seq} ")})
    work()
    assert sorted(e["data"]["text"] for e in received(r)) == ["111-1 111-2 111-3 ", "222-1 222-2 222-3 "]


@pytest.mark.parametrize("with_ids", [False, True], ids=["derived-ids", "infobip-ids"])
def test_resent_part_after_the_message_completed_is_dropped(with_ids, mo, work, api, r):
    ids = {seq: {"messageid": f"p-{seq}"} if with_ids else {} for seq in (1, 2, 3)}
    for seq in (1, 2, 3):
        mo.ok(**part(seq, **ids[seq]))
    work()
    first = the_one_message(r)
    mo.ok(**part(2, **ids[2]))  # Infobip resends a part whose answer was slow
    work()
    assert the_one_message(r) == first
    assert inbound_count(r) == 1
    assert_no_reassembly_left(r)


def test_parts_survive_a_worker_restart(config, work, api, r):
    """The parts received so far live in Redis, not in a process: a new web app and a new
    worker (fresh settings, as after a deploy) finish the message."""
    first_app = mo_client(config)
    first_app.ok(**part(2))
    work()
    assert r.hlen(PARTS.format(t=keys.tag_of(SENDER), key=f"{SENDER}:{RECEIVER}:66")) == 1
    assert r.zcard(pending()) == 1
    assert received(r) == []

    settings.cache_clear()
    routes.cache_clear()
    second_app = mo_client(config)
    second_app.ok(**part(3))
    second_app.ok(**part(1))
    run_workers(r)  # a new SimpleWorker
    data = the_one_message(r)
    assert data["text"] == "".join(LONG)
    assert_no_reassembly_left(r)


def test_parts_queued_while_no_worker_runs_are_not_lost(config, r):
    """Ingest only writes to Redis: parts wait in the inbox until a worker comes."""
    for seq in (1, 2):
        mo_client(config).ok(**part(seq))
    mo_client(config).ok(**part(3))
    run_workers(r)
    assert the_one_message(r)["text"] == "".join(LONG)


# --- the timeout path -----------------------------------------------------------------------


def test_timeout_flush_emits_what_arrived_flagged_incomplete(mo, work, api, r):
    mo.ok(**part(3))
    mo.ok(**part(1))
    work()
    assert received(r) == []
    assert sweep.flush_stale_parts(r, started_before=time.time() + 3600) == 1
    work()
    data = the_one_message(r)
    assert data["incomplete"] is True
    assert data["text"] == LONG[0] + LONG[2]
    assert (data["parts"], data["smsCount"]) == (2, 2)
    assert inbound(api, data["messageId"])["incomplete"] is True
    assert_no_reassembly_left(r)

    assert sweep.flush_stale_parts(r, started_before=time.time() + 3600) == 0  # a second sweep
    work()
    assert len(received(r)) == 1


def test_flush_leaves_younger_reassemblies_alone(mo, work, r):
    mo.ok(**part(1))
    work()
    assert sweep.flush_stale_parts(r, started_before=time.time() - 3600) == 0
    work()
    assert received(r) == []
    assert r.zcard(pending()) == 1


@pytest.mark.parametrize("same_batch", [True, False], ids=["same-batch", "later-batch"])
def test_part_that_misses_the_flush_of_its_message_is_not_lost(same_batch, mo, work, r):
    """The third part comes after its message was flushed: it is emitted on its own, flagged
    incomplete (at once when it meets the flush in one batch, else at its own timeout)."""
    mo.ok(**part(1))
    mo.ok(**part(2))
    work()
    assert sweep.flush_stale_parts(r, started_before=time.time() + 3600) == 1
    if not same_batch:
        work()
    mo.ok(**part(3))  # lands in the same lane, after the flush item
    work()
    sweep.flush_stale_parts(r, started_before=time.time() + 3600)
    work()
    texts = [(e["data"]["text"], e["data"]["incomplete"], e["data"]["parts"]) for e in received(r)]
    assert texts == [(LONG[0] + LONG[1], True, 2), (LONG[2], True, 1)]
    assert_no_reassembly_left(r)
    mo.ok(**part(3))  # and a resend of it changes nothing
    work()
    assert sweep.flush_stale_parts(r, started_before=time.time() + 3600) == 0
    assert len(received(r)) == 2


@pytest.fixture
def parts_timeout(monkeypatch):
    """MO_PARTS_TIMEOUT from the environment, as the worker reads it (workers.settings)."""

    def set_timeout(seconds: int) -> None:
        monkeypatch.setenv("MO_PARTS_TIMEOUT", str(seconds))
        settings.cache_clear()

    yield set_timeout
    settings.cache_clear()


def test_sweep_flushes_after_mo_parts_timeout(parts_timeout, mo, work, r):
    parts_timeout(600)
    mo.ok(**part(1))
    mo.ok(**part(2))
    work()
    assert sweep.sweep(r)["flushed"] == 0  # just arrived: not stale yet
    work()
    assert received(r) == []

    # Ten minutes and a second pass, without sleeping: the reassembly began earlier.
    [member] = r.zrange(pending(), 0, -1)
    r.zadd(pending(), {member: time.time() - 601}, xx=True)
    assert sweep.sweep(r)["flushed"] == 1
    work()
    data = the_one_message(r)
    assert data["incomplete"] is True and data["text"] == LONG[0] + LONG[1]
    assert sweep.sweep(r)["flushed"] == 0
    work()
    assert len(received(r)) == 1


# --- resent MOs -----------------------------------------------------------------------------


def test_resent_mo_with_the_same_message_id(mo, work, api, r):
    mo.ok(sender=SENDER, text="hello", messageid="same-1")
    mo.ok(sender=SENDER, text="hello", messageid="same-1")  # same batch
    work()
    mo.ok(sender=SENDER, text="hello", messageid="same-1")  # a later batch
    work()
    assert [e["id"] for e in received(r)] == [events.mo_event_id("same-1")]
    assert inbound_count(r) == 1
    assert listed(api) == ["same-1"]


def test_resent_pull_push_with_the_same_message_id(mo, work, r):
    for _ in range(2):
        mo.post(SEED_PULL, "application/json")
        work()
    assert len(received(r)) == 1


def test_resent_mo_without_message_id(mo, work, api, r):
    same = {"sender": SENDER, "receiver": RECEIVER, "datetime": "2015-02-15T11:43:20+0100", "text": "hello"}
    mo.ok(**same)
    work()
    mo.ok(**same)
    mo.post(urlencode(same), FORM)  # the same MO by POST
    work()
    assert len(received(r)) == 1
    assert inbound_count(r) == 1
    for change in ({"text": "hello!"}, {"datetime": "2015-02-15T11:43:21+0100"}, {"receiver": "41793026728"}):
        mo.ok(**{**same, **change})
    work()
    assert len(received(r)) == 4
    assert len(listed(api)) == 4


# --- /api/inbound ---------------------------------------------------------------------------


@pytest.fixture
def some_mos(mo, work):
    """Four MOs, arriving out of order; newest first by receivedAt is m4, m3, m2, m1."""
    sent = [
        ("m3", "385111", "4179", "Stop now", "2015-02-15T11:43:03+0000"),
        ("m1", "385111", "4179", "STOP", "2015-02-15T11:43:01+0000"),
        ("m4", "385222", "4179", "hello there", "2015-02-15T11:43:04+0000"),
        ("m2", "385222", "4180", "stop", "2015-02-15T11:43:02+0000"),
    ]
    for message_id, sender, receiver, text, at in sent:
        mo.ok(sender=sender, receiver=receiver, text=text, datetime=at, messageid=message_id)
    work()


def test_inbound_by_id(some_mos, api):
    got = inbound(api, "m3")
    assert (got["from"], got["to"], got["text"], got["keyword"]) == ("385111", "4179", "Stop now", "STOP")
    assert got["receivedAt"] == "2015-02-15T11:43:03.000Z"
    assert {"messageId", "cleanText", "smsCount", "dataCoding", "esmClass", "binary", "parts", "incomplete",
            "route"} <= set(got)


def test_unknown_inbound_id_is_404_json(some_mos, api):
    resp = api.get("/api/inbound/nope")
    assert resp.status_code == 404
    assert resp.is_json and resp.json["error"] == "not_found"


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["m4", "m3", "m2", "m1"]),
        ({"from": "385111"}, ["m3", "m1"]),
        ({"to": "4179"}, ["m4", "m3", "m1"]),
        ({"keyword": "STOP"}, ["m3", "m2", "m1"]),
        ({"keyword": "stop"}, ["m3", "m2", "m1"]),
        ({"keyword": "sToP"}, ["m3", "m2", "m1"]),
        ({"keyword": "hello"}, ["m4"]),
        ({"keyword": "stop", "from": "385222"}, ["m2"]),
        ({"keyword": "stop", "to": "4179"}, ["m3", "m1"]),
        ({"from": "385111", "to": "4180"}, []),
        ({"from": "000"}, []),
        ({"keyword": "nothing"}, []),
        ({"limit": "2"}, ["m4", "m3"]),
        ({"limit": "1", "keyword": "stop"}, ["m3"]),
        ({"limit": "1000"}, ["m4", "m3", "m2", "m1"]),
        ({"from": "", "keyword": ""}, ["m4", "m3", "m2", "m1"]),
    ],
)
def test_inbound_list_filters_newest_first(params, expected, some_mos, api):
    assert listed(api, **params) == expected


@pytest.mark.parametrize("limit", ["0", "-1", "1001", "x", "1.5", " 5"])
def test_inbound_list_limit_is_validated(limit, some_mos, api):
    resp = api.get("/api/inbound", limit=limit)
    assert resp.status_code == 400
    assert resp.is_json and resp.json["error"] == "invalid_payload"
    assert "limit" in resp.json["details"]


def test_inbound_api_needs_the_bearer_key(some_mos, client):
    assert client.get("/api/inbound").status_code == 401
    assert client.get("/api/inbound/m1", headers=basic_header()).status_code == 401


# --- bad input: exact codes, quarantine, never a 500 ----------------------------------------

HUGE_COUNT = b'{"results": [{"messageId": "m", "from": "1", "smsCount": 1e30}]}'
BAD = {
    "invalid hex": ("GET", {"sender": SENDER, "bin": "ZZ", "datacoding": "8"}, None, None, 400),
    "odd-length UCS-2": ("GET", {"sender": SENDER, "bin": "041F04", "datacoding": "8"}, None, None, 400),
    "unpaired surrogate": ("GET", {"sender": SENDER, "bin": "D83D", "datacoding": "8"}, None, None, 400),
    "bad UDH": ("GET", {"sender": SENDER, "bin": "0500030201", "datacoding": "8", "esmclass": "64"},
                None, None, 400),
    "neither text nor bin": ("GET", {"sender": SENDER, "receiver": RECEIVER}, None, None, 400),
    "missing sender": ("GET", {"text": "hi", "receiver": RECEIVER}, None, None, 400),
    "sender only a plus": ("GET", {"sender": "+", "text": "hi"}, None, None, 400),
    "no parameters": ("GET", {}, None, None, 400),
    "datacoding not a number": ("GET", {"sender": SENDER, "text": "hi", "datacoding": "ucs2"}, None, None,
                                400),
    "form missing sender": ("POST", {}, b"text=hi&receiver=1", FORM, 400),
    "malformed JSON": ("POST", {}, b'{"sender": "385", "text": ', "application/json", 400),
    "JSON list": ("POST", {}, b'[{"sender": "385", "text": "hi"}]', "application/json", 400),
    "XML with DTD": ("POST", {}, b'<!DOCTYPE mo><mo><sender>385</sender><text>hi</text></mo>',
                     "application/xml", 400),
    "XML billion laughs": ("POST", {}, BILLION_LAUGHS, "application/xml", 400),
    "XML external entity": ("POST", {}, EXTERNAL_ENTITY, "text/xml", 400),
    "truncated XML": ("POST", {}, b"<mo><sender>385</sender><text>hi", "application/xml", 400),
    "pull nothing valid": ("POST", {}, b'{"results": [{"messageId": "m"}], "messageCount": 1}',
                           "application/json", 400),
    "pull results not a list": ("POST", {}, b'{"results": {"messageId": "m"}}', "application/json", 400),
    "pull smsCount over 64 bits": ("POST", {}, HUGE_COUNT, "application/json", 400),
    "plain text body": ("POST", {}, b"sender=385 text=hi", "text/plain", 415),
}


@pytest.mark.parametrize(("method", "params", "body", "content_type", "status"), BAD.values(), ids=BAD.keys())
def test_bad_input_exact_status_quarantined_without_secrets(method, params, body, content_type, status,
                                                            client, work, r):
    headers = {"X-Webhook-Token": TOKEN, **({"Content-Type": content_type} if content_type else {})}
    resp = client.open("/infobip/mo", method=method, query_string={**params, "token": TOKEN},
                       data=body, headers=headers)
    assert resp.status_code == status, resp.json
    assert resp.is_json
    assert resp.json["error"] in ("invalid_payload", "unsupported_media_type")
    assert resp.json["message"]
    raw_entries = r.lrange(QUARANTINE, 0, -1)
    assert len(raw_entries) == 1
    assert TOKEN not in raw_entries[0].decode()
    entry = orjson.loads(raw_entries[0])
    assert entry["reason"] and entry["method"] == method and entry["path"] == "/infobip/mo"
    assert sorted(entry["query"]) == sorted([k, v] for k, v in params.items())
    assert all(k.lower() != "x-webhook-token" for k in entry["headers"])
    if body:
        assert entry.get("body", "").encode() == body
    work()
    assert stream(r) == []
    assert inbound_count(r) == 0


class TestOversizedBody:
    @pytest.fixture
    def config(self, config):
        return {**config, "MAX_BODY_BYTES": 256}

    @pytest.mark.parametrize("content_type", [FORM, "application/json", "application/xml"])
    def test_body_over_the_cap_is_413_and_quarantined(self, content_type, mo, r):
        body = urlencode({"sender": SENDER, "text": "x" * 300}).encode()
        resp = mo.post(body, content_type, query_string={"token": TOKEN})
        assert resp.status_code == 413
        assert resp.is_json and resp.json["error"] == "request_entity_too_large"
        [entry] = quarantined(r)
        assert entry["reason"] == "body too large"
        assert "body" not in entry and "bodyBase64" not in entry
        assert TOKEN not in orjson.dumps(entry).decode()

    def test_body_under_the_cap_is_accepted(self, mo):
        assert mo.post(urlencode({"sender": SENDER, "text": "x" * 100}), FORM).status_code == 200


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
@pytest.mark.parametrize("path", ["/infobip/mo", "/infobip/mo/41793026727/38598123123"])
def test_wrong_method_is_405(method, path, client, r):
    resp = client.open(path, method=method, query_string={"sender": SENDER, "text": "hi"},
                       headers=basic_header())
    assert resp.status_code == 405
    assert resp.is_json
    assert {"GET", "POST"} <= {m.strip() for m in resp.headers["Allow"].split(",")}
    # As for /infobip/dlr: refused by routing before any input is read, so nothing to keep.
    assert quarantined(r) == []


ODD_QUERY_VALUES = ["", " ", "+", "%", "-1", "1e30", "99999999999999999999", "NaN", "0x40", "\x00",
                    "ü", "9" * 3000, "\ud800".encode("utf-8", "surrogatepass").decode("latin-1")]


@pytest.mark.parametrize("name", ["sender", "receiver", "text", "bin", "datetime", "messageid", "datacoding",
                                  "esmclass"])
def test_odd_query_values_never_give_a_500(name, mo, work, r):
    base = {"sender": SENDER, "receiver": RECEIVER, "text": "hi", "datacoding": "0", "esmclass": "0"}
    for value in ODD_QUERY_VALUES:
        for esm in ("0", "64"):
            resp = mo.get(**{**base, "esmclass": esm, "bin": "0500030A0201414243", name: value})
            assert resp.status_code in (200, 400), (name, value, resp.json)
            assert resp.is_json
    work()  # what was accepted can be applied too


ODD_JSON_VALUES = [None, "", " ", 0, -1, 1.5, [], {}, True, 10**30, "1e999999999", ["x"], {"a": 1}, "+"]
PULL_FIELDS = ["messageId", "from", "to", "text", "cleanText", "keyword", "receivedAt", "smsCount", "price",
               "callbackData", "extra"]


@pytest.mark.parametrize("name", PULL_FIELDS)
def test_odd_pull_values_never_give_a_500(name, mo, work):
    item = orjson.loads(SEED_PULL)["results"][0]
    for value in ODD_JSON_VALUES:
        resp = mo.post(_dumps({"results": [{**item, name: value}]}), "application/json")
        assert resp.status_code in (200, 400), (name, value, resp.json)
        assert resp.is_json
    work()


@pytest.mark.parametrize("name", ["sender", "receiver", "text", "bin", "datacoding", "esmclass", "messageid"])
def test_odd_json_forward_values_never_give_a_500(name, mo, work):
    base = {"sender": SENDER, "text": "hi", "bin": "", "datacoding": 0}
    for value in ODD_JSON_VALUES:
        resp = mo.post(_dumps({**base, name: value}), "application/json")
        assert resp.status_code in (200, 400), (name, value, resp.json)
        assert resp.is_json
    work()


def _dumps(doc: Any) -> bytes:
    """JSON with integers beyond 64 bits, which orjson refuses to write."""
    return json.dumps(doc).encode()


def test_redis_down_is_503_for_mo(data_plane_down):
    mo = Mo(data_plane_down().test_client())
    resp = mo.get(sender=SENDER, text="hi")
    assert resp.status_code == 503
    assert int(resp.headers["Retry-After"]) > 0


# --- long messages by GET through real gunicorn (issue 19) -----------------------------------

CYRILLIC = "Съешь же ещё этих мягких французских булок, да выпей чаю. "
GSM7 = "The quick brown fox jumps over the lazy dog @ 10 EUR! "


def _long(sample: str, length: int) -> str:
    return (sample * (length // len(sample) + 1))[:length]


@pytest.mark.parametrize("text, coding, hex_of", [
    (_long(CYRILLIC, 1000), 8, ucs2),
    (_long(CYRILLIC, 2000), 8, ucs2),
    (_long(GSM7, 2000), 0, lambda text: text.encode("gsm03.38").hex().upper()),
], ids=["1000 Cyrillic", "2000 Cyrillic", "2000 GSM-7"])
def test_a_long_mo_by_get_is_accepted_end_to_end(text, coding, hex_of, gunicorn, r, api):
    """gunicorn refused request lines over 4,094 bytes with an HTML 414: a 1,000-character
    Cyrillic message forwarded with %text% and %bin% (~9 KB) was lost on every retry."""
    params = {"token": TOKEN, "sender": SENDER, "receiver": RECEIVER, "text": text, "bin": hex_of(text),
              "datacoding": coding, "messageid": f"long-{coding}-{len(text)}"}
    target = "/infobip/mo?" + urlencode(params)
    assert len(target) > 4094  # gunicorn's default limit_request_line
    status, _, body = gunicorn.request("GET", target)
    assert (status, orjson.loads(body)) == (200, {"accepted": 1, "rejected": []}), body
    run_workers(r)
    stored = inbound(api, params["messageid"])
    assert stored["text"] == text and stored["dataCoding"] == coding


def test_a_url_over_max_url_bytes_is_a_json_414_and_quarantined(gunicorn, r):
    target = f"/infobip/mo?token={TOKEN}&sender={SENDER}&text=" + "a" * (64 * 1024)
    status, headers, body = gunicorn.request("GET", target)
    assert status == 414 and headers["content-type"] == "application/json", body
    assert orjson.loads(body)["error"] == "uri_too_long"
    (entry,) = quarantined(r)
    assert entry["reason"] == "URL too long"
    assert dict(entry["query"])["text"] == "a" * (64 * 1024)  # as far as it was read: all of it
    assert "token" not in dict(entry["query"])


@pytest.mark.parametrize("send", [
    lambda mo: mo.get(sender=SENDER, text="hi", messageid="a\u0000b"),
    lambda mo: mo.post(orjson.dumps({"results": [{"messageId": "a\u0000b", "from": SENDER, "text": "hi"}]}),
                       "application/json"),
], ids=["forward", "pull shape"])
def test_control_characters_in_an_mo_message_id_are_refused(send, mo, r):
    resp = send(mo)
    assert resp.status_code == 400, resp.json
    assert "Control characters are not allowed here." in json.dumps(resp.json["details"])
    assert len(quarantined(r)) == 1


# --- declared charsets (issue 19) ------------------------------------------------------------


def test_a_form_in_a_declared_latin_1_is_decoded_by_it(mo, work, api):
    resp = mo.post(f"sender={SENDER}&messageid=cafe-1&text=Caf%E9+cr%E8me", f"{FORM}; charset=ISO-8859-1")
    assert resp.json == {"accepted": 1, "rejected": []}
    work()
    got = inbound(api, "cafe-1")
    assert (got["text"], got["keyword"], got["cleanText"]) == ("Café crème", "CAFÉ", "crème")
    assert got["warnings"] == [] and got["binary"] is None


@pytest.mark.parametrize("body, content_type", [
    (f'{{"sender": "{SENDER}", "messageid": "cafe-2", "text": "Café crème"}}',
     "application/json; charset=latin-1"),
    (f'<?xml version="1.0" encoding="UTF-8"?><moRequest><sender>{SENDER}</sender>'
     "<messageid>cafe-2</messageid><text>Café crème</text></moRequest>",
     "application/xml; charset=ISO-8859-1"),
], ids=["JSON", "XML whose declaration is wrong"])
def test_a_json_or_xml_body_in_a_declared_charset_is_decoded_by_it(body, content_type, mo, work, api):
    resp = mo.post(body.encode("latin-1"), content_type)
    assert resp.json == {"accepted": 1, "rejected": []}
    work()
    assert inbound(api, "cafe-2")["text"] == "Café crème"


def test_form_bytes_the_charset_cannot_decode_are_kept_in_binary_with_a_warning(mo, work, api):
    """They were silently replaced with U+FFFD: `Caf� cr�me`, keyword `CAF�`."""
    resp = mo.post(f"sender={SENDER}&messageid=cafe-3&text=Caf%E9+cr\xe8me".encode("latin-1"), FORM)  # UTF-8
    assert resp.json == {"accepted": 1, "rejected": []}
    work()
    got = inbound(api, "cafe-3")
    assert got["binary"] == "Caf\xe9 cr\xe8me".encode("latin-1").hex()
    assert got["text"] == "Caf\ufffd cr\ufffdme"
    assert got["warnings"] == [
        "text has bytes its charset cannot decode, shown as U+FFFD; binary has them as sent"]


def test_a_sender_the_charset_cannot_decode_is_400_with_the_raw_body_quarantined(mo, r):
    body = b"sender=385%FF&text=hi"
    resp = mo.post(body, f"{FORM}; charset=utf-8")
    assert resp.status_code == 400 and "sender is not valid utf-8" in resp.json["message"]
    [entry] = quarantined(r)
    assert entry["body"] == body.decode()


def test_a_utf8_byte_order_mark_before_json_is_ignored(mo, work, api):
    body = b"\xef\xbb\xbf" + orjson.dumps({"sender": SENDER, "messageid": "bom-1", "text": "Привет"})
    assert mo.post(body, "application/json").json == {"accepted": 1, "rejected": []}
    work()
    assert inbound(api, "bom-1")["text"] == "Привет"


def test_an_unknown_charset_is_415_and_quarantined(mo, r):
    resp = mo.post(b'{"sender": "1", "text": "x"}', "application/json; charset=no-such-charset")
    assert resp.status_code == 415
    assert len(quarantined(r)) == 1
