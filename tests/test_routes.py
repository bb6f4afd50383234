"""The routes file (SPEC §4): every way a bad file stops start-up, with the line it names, and
how consumers and MO routes are chosen for an event.

Each bad file marks the line the error must name with `# <- here`, so the expected line number
is read from the case itself instead of being counted by hand.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from app.errors import ConfigError
from app.routes import (
    INFOBIP_RETRY_SCHEDULE,
    Consumer,
    Routes,
    check_file,
    consumers_for,
    load_routes,
    match_mo_route,
    parse_routes,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

# SPEC §4's example, completed: the secret is a real one and the three consumers its MO routes
# name are defined (the SPEC leaves both out for brevity).
SPEC_EXAMPLE = f"""\
consumers:
  - name: crm
    url: https://crm.internal/sms-events
    secret: {SECRET}          # Standard Webhooks secret (base64 after the whsec_ prefix)
    events: [dlr.final, dlr.intermediate]
  - name: stream
    type: redis-stream
    stream: sms-events
    events: ["*"]
  - name: optout
    url: https://optout.internal/mo
  - name: contest
    url: https://contest.internal/mo
  - name: inbox
    url: https://inbox.internal/mo
mo_routes:
  - keywords: [STOP, UNSUBSCRIBE]
    consumers: [optout]
  - receiver: "41793026727"
    keyword_regex: "^WIN[0-9]*$"
    consumers: [contest]
  - default: true
    consumers: [inbox]
"""


@pytest.fixture
def spec_routes() -> Routes:
    return parse_routes(SPEC_EXAMPLE, "routes.yml")


def _marked_line(text: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), start=1) if "# <- here" in line)


BAD_FILES = {
    "unknown top-level key": """
        consumer:  # <- here
          - {name: a, url: "http://a/"}
        """,
    "unknown consumer key": """
        consumers:
          - name: crm
            url: https://crm.internal/
            evnts: [dlr.final]  # <- here
        """,
    "unknown route key": """
        consumers: [{name: a, url: "http://a/"}]
        mo_routes:
          - keywords: [STOP]
            consumer: [a]  # <- here
        """,
    "duplicate consumer name": """
        consumers:
          - {name: a, url: "http://a/"}
          - {name: a, url: "http://b/"}  # <- here
        """,
    "duplicate key in one mapping": """
        consumers:
          - name: a
            url: "http://a/"
            url: "http://b/"  # <- here
        """,
    "consumer without a name": """
        consumers:
          - url: "http://a/"  # <- here
        """,
    "consumer name with a space": """
        consumers:
          - name: my crm  # <- here
            url: "http://a/"
        """,
    "http consumer without url": """
        consumers:
          - name: crm  # <- here
            events: ["*"]
        """,
    "redis-stream consumer without stream": """
        consumers:
          - name: s  # <- here
            type: redis-stream
        """,
    "unknown consumer type": """
        consumers:
          - name: s
            type: kafka  # <- here
            url: "http://a/"
        """,
    "url on a redis-stream consumer": """
        consumers:
          - name: s
            type: redis-stream
            stream: sms-events
            url: "http://a/"  # <- here
        """,
    "stream on an http consumer": """
        consumers:
          - name: s
            url: "http://a/"
            stream: sms-events  # <- here
        """,
    "bad url scheme": """
        consumers:
          - name: a
            url: ftp://files.internal/events  # <- here
        """,
    "url without scheme": """
        consumers:
          - name: a
            url: crm.internal/events  # <- here
        """,
    "url without host": """
        consumers:
          - name: a
            url: "http:///events"  # <- here
        """,
    "secret without whsec_ prefix": """
        consumers:
          - name: a
            url: "http://a/"
            secret: MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw  # <- here
        """,
    "secret that is not base64": """
        consumers:
          - name: a
            url: "http://a/"
            secret: whsec_not*base64!  # <- here
        """,
    "empty secret after the prefix": """
        consumers:
          - name: a
            url: "http://a/"
            secret: whsec_  # <- here
        """,
    "unknown event pattern": """
        consumers:
          - name: a
            url: "http://a/"
            events:
              - dlr.final
              - dlr.finall  # <- here
        """,
    "event family without .*": """
        consumers:
          - name: a
            url: "http://a/"
            events: [mo]  # <- here
        """,
    "retry_schedule empty": """
        consumers:
          - name: a
            url: "http://a/"
            retry_schedule: []  # <- here
        """,
    "retry_schedule not a list": """
        consumers:
          - name: a
            url: "http://a/"
            retry_schedule: 60  # <- here
        """,
    "retry_schedule negative entry": """
        consumers:
          - name: a
            url: "http://a/"
            retry_schedule:
              - 60
              - -5  # <- here
        """,
    "retry_schedule text entry": """
        consumers:
          - name: a
            url: "http://a/"
            retry_schedule: [60, 5m]  # <- here
        """,
    "timeout zero": """
        consumers:
          - name: a
            url: "http://a/"
            timeout: 0  # <- here
        """,
    "timeout negative": """
        consumers:
          - name: a
            url: "http://a/"
            timeout: -1.5  # <- here
        """,
    "timeout text": """
        consumers:
          - name: a
            url: "http://a/"
            timeout: ten  # <- here
        """,
    "maxlen zero": """
        consumers:
          - name: s
            type: redis-stream
            stream: x
            maxlen: 0  # <- here
        """,
    "reserved header": """
        consumers:
          - name: a
            url: "http://a/"
            headers:
              webhook-signature: v1,forged  # <- here
        """,
    "route names a missing consumer": """
        consumers: [{name: a, url: "http://a/"}]
        mo_routes:
          - keywords: [STOP]
            consumers:
              - a
              - optout  # <- here
        """,
    "bad regex": """
        consumers: [{name: a, url: "http://a/"}]
        mo_routes:
          - keyword_regex: "^WIN[0-9*$"  # <- here
            consumers: [a]
        """,
    "route with no keywords, regex or default": """
        consumers: [{name: a, url: "http://a/"}]
        mo_routes:
          - receiver: "41793026727"  # <- here
            consumers: [a]
        """,
    "keyword with a space": """
        consumers: [{name: a, url: "http://a/"}]
        mo_routes:
          - keywords: [STOP, "STOP ALL"]  # <- here
            consumers: [a]
        """,
    "default route with keywords": """
        consumers: [{name: a, url: "http://a/"}]
        mo_routes:
          - default: true  # <- here
            keywords: [STOP]
            consumers: [a]
        """,
    "default that is not a boolean": """
        consumers: [{name: a, url: "http://a/"}]
        mo_routes:
          - default: sometimes  # <- here
            consumers: [a]
        """,
    "more than one default route": """
        consumers: [{name: a, url: "http://a/"}]
        mo_routes:
          - keywords: [STOP]
            consumers: [a]
          - default: true
            consumers: [a]
          - default: true  # <- here
            consumers: [a]
        """,
    "default route not last": """
        consumers: [{name: a, url: "http://a/"}]
        mo_routes:
          - default: true  # <- here
            consumers: [a]
          - keywords: [STOP]
            consumers: [a]
        """,
    "duplicate route name": """
        consumers: [{name: a, url: "http://a/"}]
        mo_routes:
          - {name: stop, keywords: [STOP], consumers: [a]}
          - {name: stop, keywords: [HALT], consumers: [a]}  # <- here
        """,
    "consumers not a list": """
        consumers:
          name: a  # <- here
        """,
    "invalid YAML indentation": """
        consumers:
          - name: a
           url: "http://a/"  # <- here
        """,
    "two YAML documents": """
        consumers: []
        ---  # <- here
        mo_routes: []
        """,
}


@pytest.mark.parametrize("text", BAD_FILES.values(), ids=BAD_FILES.keys())
def test_bad_file_names_its_line(text: str) -> None:
    text = textwrap.dedent(text).lstrip("\n")
    with pytest.raises(ConfigError) as caught:
        parse_routes(text, "routes.yml")
    assert str(caught.value).startswith(f"routes.yml line {_marked_line(text)}: "), str(caught.value)


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("evnts", "unknown key 'evnts' in consumer 'crm' (did you mean 'events'?)"),
        ("colour", "unknown key 'colour' in consumer 'crm'"),
    ],
)
def test_unknown_key_message_names_key_and_consumer(key: str, fragment: str) -> None:
    text = f"consumers:\n  - name: crm\n    url: https://crm.internal/\n    {key}: [dlr.final]\n"
    with pytest.raises(ConfigError, match=r"^routes\.yml line 4: ") as caught:
        parse_routes(text, "routes.yml")
    assert fragment in str(caught.value)


def test_unclosed_quote_names_where_it_opened() -> None:
    text = 'consumers:\n  - name: a\n    url: "http://a/\n  - name: b\n'
    with pytest.raises(ConfigError, match=r"^routes\.yml line 5: .*quoted scalar at line 3"):
        parse_routes(text, "routes.yml")


def test_secret_never_appears_in_an_error() -> None:
    secret = "whsec_c2VjcmV0LXNoaGg*"  # invalid on purpose
    with pytest.raises(ConfigError) as caught:
        parse_routes(f"consumers:\n  - name: a\n    url: http://a/\n    secret: {secret}\n", "r.yml")
    assert "c2VjcmV0" not in str(caught.value)


def test_empty_file_is_an_error() -> None:
    with pytest.raises(ConfigError, match="empty"):
        parse_routes("# nothing here\n", "routes.yml")


def test_consumers_empty_list_delivers_nothing() -> None:
    routes = parse_routes("consumers: []\n", "routes.yml")
    assert routes.consumers == {} and routes.mo_routes == ()
    assert consumers_for(routes, "dlr.final", None) == []


def test_spec_example_parses(spec_routes: Routes) -> None:
    crm, stream = spec_routes.consumers["crm"], spec_routes.consumers["stream"]
    assert list(spec_routes.consumers) == ["crm", "stream", "optout", "contest", "inbox"]
    assert (crm.kind, crm.url, crm.secret, crm.events) == (
        "http", "https://crm.internal/sms-events", SECRET, ("dlr.final", "dlr.intermediate"))
    assert (crm.retry_schedule, crm.timeout, crm.headers) == (INFOBIP_RETRY_SCHEDULE, 10.0, {})
    assert (stream.kind, stream.stream, stream.events, stream.maxlen) == (
        "redis-stream", "sms-events", ("*",), 1_000_000)
    assert [r.name for r in spec_routes.mo_routes] == ["stop", "route-2", "default"]
    stop, contest, default = spec_routes.mo_routes
    assert stop.keywords == frozenset({"STOP", "UNSUBSCRIBE"}) and stop.consumers == ("optout",)
    assert contest.receiver == "41793026727" and contest.keyword_regex is not None
    assert default.default and default.consumers == ("inbox",)


def test_consumer_options_are_read() -> None:
    routes = parse_routes(textwrap.dedent("""\
        consumers:
          - name: fast
            url: http://user:pw@fast.internal:8080/hook?token=t0k
            timeout: 2.5
            retry_schedule: [0, 1.5, 30]
            headers: {X-Tenant: acme, X-Shard: 7}
            events: dlr.*
          - name: archive
            type: redis-stream
            stream: archive
            maxlen: 5000
            events: ["*"]
        mo_routes:
          - name: winners
            receiver: 0041793026727
            keyword_regex: "^WIN"
            consumers: fast
        """), "routes.yml")
    fast, archive = routes.consumers["fast"], routes.consumers["archive"]
    assert (fast.timeout, fast.retry_schedule, fast.events) == (2.5, (0.0, 1.5, 30.0), ("dlr.*",))
    assert fast.headers == {"X-Tenant": "acme", "X-Shard": "7"}
    assert fast.target == "http://fast.internal:8080/hook"  # no userinfo, no query: fit for logs
    assert archive.maxlen == 5000 and archive.target == "stream:archive"
    route = routes.mo_routes[0]
    assert (route.name, route.receiver, route.consumers) == ("winners", "0041793026727", ("fast",))


def test_repr_hides_secret_url_and_headers(spec_routes: Routes) -> None:
    text = repr(spec_routes)
    assert SECRET not in text and "crm.internal" not in text


def test_default_routes_equal_the_single_stream() -> None:
    routes = Routes.default()
    assert list(routes.consumers) == ["sms-events"] and routes.mo_routes == ()
    stream = routes.consumers["sms-events"]
    assert (stream.kind, stream.stream, stream.events) == ("redis-stream", "sms-events", ("*",))
    for event_type in ("dlr.final", "dlr.intermediate", "mo.received"):
        assert consumers_for(routes, event_type, match_mo_route(routes, "HI", "1")) == [stream]


def test_infobip_retry_schedule_follows_the_seed_formula() -> None:
    assert INFOBIP_RETRY_SCHEDULE[:5] == (60, 120, 300, 600, 1020)
    assert len(INFOBIP_RETRY_SCHEDULE) == 20
    # Seed: "the last attempt will be made 41:30 hours after the first".
    assert sum(INFOBIP_RETRY_SCHEDULE) == (41 * 60 + 30) * 60


@pytest.mark.parametrize(
    ("keyword", "receiver", "route"),
    [
        ("STOP", "1", "stop"),
        ("stop", "1", "stop"),
        ("Unsubscribe", None, "stop"),
        (" stop ", "41793026727", "stop"),
        ("WIN", "41793026727", "route-2"),
        ("win42", "41793026727", "route-2"),
        ("WIN42", "+41793026727", "route-2"),
        ("WIN42", "41793026728", "default"),  # regex route is for one receiver only
        ("WIN42", None, "default"),
        ("WINNER", "41793026727", "default"),  # the regex is anchored as written
        ("HELLO", "41793026727", "default"),
        ("", None, "default"),
    ],
)
def test_match_mo_route(spec_routes: Routes, keyword: str, receiver: str | None, route: str) -> None:
    found = match_mo_route(spec_routes, keyword, receiver)
    assert found is not None and found.name == route


def test_no_default_route_means_no_route() -> None:
    routes = parse_routes(
        "consumers: [{name: a, url: 'http://a/'}]\nmo_routes:\n  - {keywords: [STOP], consumers: [a]}\n",
        "routes.yml",
    )
    assert match_mo_route(routes, "HELLO", "1") is None
    assert match_mo_route(routes, "stop", "1").name == "stop"  # type: ignore[union-attr]


def test_unanchored_regex_searches_as_written() -> None:
    routes = parse_routes(
        "consumers: [{name: a, url: 'http://a/'}]\nmo_routes:\n  - {keyword_regex: 'WIN', consumers: [a]}\n",
        "routes.yml",
    )
    assert match_mo_route(routes, "BIGWINNER", None) is not None


EVENTS_FILE = """\
consumers:
  - {name: finals, url: "http://a/", events: [dlr.final]}
  - {name: progress, url: "http://a/", events: [dlr.intermediate]}
  - {name: reports, url: "http://a/", events: ["dlr.*"]}
  - {name: inbound, url: "http://a/", events: [mo.received]}
  - {name: mo-all, url: "http://a/", events: ["mo.*"]}
  - {name: archive, type: redis-stream, stream: archive, events: ["*"]}
  - {name: optout, url: "http://a/"}
  - {name: contest, url: "http://a/", events: [mo.received]}
mo_routes:
  - {keywords: [STOP], consumers: [optout]}
  - {keywords: [WIN], consumers: [contest, optout]}
"""


@pytest.mark.parametrize(
    ("event_type", "keyword", "expected"),
    [
        ("dlr.final", None, ["finals", "reports", "archive"]),
        ("dlr.intermediate", None, ["progress", "reports", "archive"]),
        ("mo.received", "HELLO", ["inbound", "mo-all", "archive", "contest"]),
        ("mo.received", "STOP", ["inbound", "mo-all", "archive", "optout", "contest"]),
        # contest is named by its events and by the route: it still gets the event once.
        ("mo.received", "WIN", ["inbound", "mo-all", "archive", "optout", "contest"]),
    ],
)
def test_consumers_for(event_type: str, keyword: str | None, expected: list[str]) -> None:
    routes = parse_routes(EVENTS_FILE, "routes.yml")
    route = match_mo_route(routes, keyword, "1") if keyword else None
    assert [c.name for c in consumers_for(routes, event_type, route)] == expected


def test_load_and_check_file(tmp_path: Path) -> None:
    path = tmp_path / "routes.yml"
    path.write_text(SPEC_EXAMPLE, encoding="utf-8")
    assert load_routes(path) == parse_routes(SPEC_EXAMPLE, "routes.yml")
    assert check_file(path) == "routes.yml: 5 consumers, 3 MO routes"
    path.write_text("consumers:\n  - {name: a, url: 'http://a/', timeout: 0}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^routes\.yml line 2: "):
        check_file(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_routes(tmp_path / "nope.yml")


def test_consumer_is_frozen() -> None:
    consumer = Consumer(name="a", url="http://a/")
    with pytest.raises(AttributeError):
        consumer.name = "b"  # type: ignore[misc]
