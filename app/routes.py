"""The routes file (`ROUTES_FILE`, SPEC §4): who gets which event, and where MO messages go.

The file is read with PyYAML's composer, not `yaml.safe_load`, because nodes keep their line:
a bad file must stop start-up with a message naming the line ("routes.yml line 7: unknown key
'evnts' in consumer 'crm'"). Working on nodes has a second benefit: a scalar's text is kept as
written, so `receiver: 0041793026727` stays a string instead of becoming an integer.

Everything is checked once, at load time, so the delivery path never meets a bad pattern,
a missing consumer or a broken regex. Without a file, `Routes.default()` keeps the behaviour the
service had before routing existed: every event goes to the `sms-events` Redis Stream.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlsplit

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from app.errors import ConfigError
from app.events import EVENT_TYPES
from app.keys import EVENT_STREAM
from app.optout import section
from app.optout.section import OptOut

# Infobip's own retry cycle for notifyUrl (seed "Запуск цикла повторных попыток для Отчета о
# доставке"): retry n waits 1 min + 1 min * n^2, n = 0..19, at most 20 retries, the last one
# 41:30 h after the first. So 60, 120, 300, 600, 1020, ... seconds.
INFOBIP_RETRY_SCHEDULE: tuple[float, ...] = tuple(60.0 + 60.0 * n * n for n in range(20))

EVENT_PATTERNS = (*EVENT_TYPES, "dlr.*", "mo.*", "number.*", "contact.*", "*")
TOP_KEYS = ("consumers", "mo_routes", "optout")
CONSUMER_KEYS = ("name", "url", "secret", "events", "type", "stream", "maxlen", "retry_schedule",
                 "timeout", "headers")
ROUTE_KEYS = ("name", "keywords", "keyword_regex", "receiver", "default", "consumers", "reply")
# Keys that belong to one kind of consumer only: a stream with a `url` is a typo, not a wish.
ONLY_FOR = {"url": "http", "secret": "http", "timeout": "http", "headers": "http",
            "stream": "redis-stream", "maxlen": "redis-stream"}
# Headers we set ourselves; letting a consumer override them would break the signature.
RESERVED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type")
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # safe in Redis keys and log lines

Kind = Literal["http", "redis-stream"]


@dataclass(frozen=True)
class Consumer:
    """One downstream sink. `secret`, `url` and `headers` stay out of repr: repr ends up in logs."""

    name: str
    kind: Kind = "http"
    url: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    events: tuple[str, ...] = ()
    stream: str | None = None
    maxlen: int = 1_000_000
    retry_schedule: tuple[float, ...] = INFOBIP_RETRY_SCHEDULE
    timeout: float = 10.0
    headers: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def target(self) -> str:
        """Where events go, fit for logs: no userinfo, no query string (either may hold a token)."""
        if self.kind == "redis-stream":
            return f"stream:{self.stream}"
        parts = urlsplit(self.url or "")
        return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"


@dataclass(frozen=True)
class MoRoute:
    name: str
    keywords: frozenset[str] = frozenset()  # upper-cased
    keyword_regex: re.Pattern[str] | None = None  # compiled case-insensitive
    receiver: str | None = None  # without a leading "+"
    default: bool = False
    consumers: tuple[str, ...] = ()
    reply: str | None = None  # a template of REPLY_FIELDS; "" sends no reply


@dataclass(frozen=True)
class Routes:
    consumers: dict[str, Consumer]  # in file order
    mo_routes: tuple[MoRoute, ...] = ()
    optout: OptOut = field(default_factory=OptOut)
    optout_given: bool = False  # the file has an `optout` section (else the defaults apply)

    @classmethod
    def default(cls, maxlen: int = 1_000_000) -> Routes:
        """No file: every event to the `sms-events` stream, as before routing existed."""
        stream = Consumer(name=EVENT_STREAM, kind="redis-stream", stream=EVENT_STREAM,
                          events=("*",), maxlen=maxlen)
        return cls(consumers={stream.name: stream})


class _Reader:
    """Typed access to YAML nodes; every failure is a ConfigError naming source and line."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, node: Node, message: str) -> ConfigError:
        return ConfigError(f"{self.source} line {node.start_mark.line + 1}: {message}")

    def mapping(self, node: Node, what: str) -> dict[str, tuple[Node, Node]]:
        """key -> (key node, value node); duplicate keys are refused (YAML keeps the last)."""
        if not isinstance(node, MappingNode):
            raise self.fail(node, f"{what} must be a mapping")
        out: dict[str, tuple[Node, Node]] = {}
        for key, value in node.value:
            if not isinstance(key, ScalarNode):
                raise self.fail(key, f"{what} has a key that is not a plain name")
            if key.value in out:
                raise self.fail(key, f"duplicate key {key.value!r} in {what}")
            out[key.value] = (key, value)
        return out

    def known(self, fields: dict[str, tuple[Node, Node]], allowed: tuple[str, ...], what: str) -> None:
        for name, (key, _value) in fields.items():
            if name not in allowed:
                close = difflib.get_close_matches(name, allowed, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.fail(key, f"unknown key {name!r} in {what}{hint}")

    def sequence(self, node: Node, what: str, scalar_ok: bool = False) -> list[Node]:
        if scalar_ok and isinstance(node, ScalarNode) and not _is_null(node):
            return [node]  # `events: "*"` means `events: ["*"]`
        if not isinstance(node, SequenceNode):
            raise self.fail(node, f"{what} must be a list")
        return list(node.value)

    def text(self, node: Node, what: str) -> str:
        """A scalar's text as written (`0041...` stays a string); null and empty are refused."""
        if not isinstance(node, ScalarNode) or _is_null(node) or not node.value.strip():
            raise self.fail(node, f"{what} must be a non-empty text")
        return node.value.strip()

    def number(self, node: Node, what: str) -> float:
        if not isinstance(node, ScalarNode) or node.tag not in (_INT, _FLOAT):
            raise self.fail(node, f"{what} must be a number")
        value = float(SafeConstructor().construct_object(node))
        if not math.isfinite(value):
            raise self.fail(node, f"{what} must be a finite number")
        return value

    def flag(self, node: Node, what: str) -> bool:
        if not isinstance(node, ScalarNode) or node.tag != _BOOL:
            raise self.fail(node, f"{what} must be true or false")
        return bool(SafeConstructor().construct_object(node))


_INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("int", "float", "bool", "null"))


def _is_null(node: ScalarNode) -> bool:
    return node.tag == _NULL


def load_routes(path: str | Path) -> Routes:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read the routes file: {err}") from err
    return parse_routes(text, path.name)


def load_configured_routes(cfg: Mapping[str, Any]) -> Routes:
    """The routes file if there is one; else every event to the `sms-events` stream."""
    if cfg["ROUTES_PATH"]:
        return load_routes(cfg["ROUTES_PATH"])
    return Routes.default(maxlen=cfg["EVENT_STREAM_MAXLEN"])


def check_file(path: str | Path) -> str:
    """One line for a CLI or a start-up log; raises ConfigError like load_routes."""
    routes = load_routes(path)
    n, m = len(routes.consumers), len(routes.mo_routes)
    return (f"{Path(path).name}: {n} consumer{'s' * (n != 1)}, "
            f"{m} MO route{'s' * (m != 1)}" + (", an optout section" if routes.optout_given else ""))


def parse_routes(text: str, source_name: str) -> Routes:
    r = _Reader(source_name)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f" line {mark.line + 1}" if mark else ""
        context = err.context or ""  # e.g. where an unclosed quote was opened
        if context and err.context_mark and err.context_mark is not mark:
            context += f" at line {err.context_mark.line + 1}"
        detail = "; ".join(x for x in (err.problem, context) if x)
        raise ConfigError(f"{source_name}{where}: invalid YAML: {detail}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{source_name}: invalid YAML: {err}") from err
    if root is None:
        raise ConfigError(f"{source_name}: the file is empty (write `consumers: []` to deliver nothing)")
    top = r.mapping(root, "the routes file")
    r.known(top, TOP_KEYS, "the routes file")
    consumers: dict[str, Consumer] = {}
    if "consumers" in top:
        for index, node in enumerate(r.sequence(top["consumers"][1], "consumers"), start=1):
            consumer = _consumer(r, node, index)
            if consumer.name in consumers:
                raise r.fail(node, f"duplicate consumer name {consumer.name!r}")
            consumers[consumer.name] = consumer
    routes: list[MoRoute] = []
    if "mo_routes" in top:
        nodes = r.sequence(top["mo_routes"][1], "mo_routes")
        for index, node in enumerate(nodes, start=1):
            route = _route(r, node, index, consumers, {x.name for x in routes})
            if route.default and any(x.default for x in routes):
                raise r.fail(node, "more than one default route")
            if routes and routes[-1].default:
                raise r.fail(nodes[index - 2], "the default route must be the last MO route "
                                               f"(route {route.name!r} follows it)")
            routes.append(route)
    optout = section.parse(r, top["optout"][1]) if "optout" in top else OptOut()
    return Routes(consumers=consumers, mo_routes=tuple(routes), optout=optout, optout_given="optout" in top)


def _consumer(r: _Reader, node: Node, index: int) -> Consumer:
    fields = r.mapping(node, f"consumer #{index}")
    if "name" not in fields:
        raise r.fail(node, f"consumer #{index} has no name")
    name = r.text(fields["name"][1], "a consumer name")
    if not NAME_RE.fullmatch(name):
        raise r.fail(fields["name"][1], f"consumer name {name!r}: use letters, digits, '_', '.', '-'")
    what = f"consumer {name!r}"
    r.known(fields, CONSUMER_KEYS, what)
    kind = r.text(fields["type"][1], f"type of {what}") if "type" in fields else "http"
    if kind not in ("http", "redis-stream"):
        raise r.fail(fields["type"][1], f"{what}: unknown type {kind!r} (http or redis-stream)")
    if kind == "http" and "url" not in fields:
        raise r.fail(node, f"{what} needs a url (HTTP) or type: redis-stream with a stream")
    if kind == "redis-stream" and "stream" not in fields:
        raise r.fail(node, f"{what} is type: redis-stream but names no stream")
    for key, only in ONLY_FOR.items():
        if key in fields and only != kind:
            raise r.fail(fields[key][0], f"{what}: {key!r} applies only to {only} consumers")
    get = {k: v for k, (_key, v) in fields.items()}
    return Consumer(
        name=name,
        kind=cast(Kind, kind),  # checked above
        url=_url(r, get["url"], what) if "url" in get else None,
        secret=_secret(r, get["secret"], what) if "secret" in get else None,
        events=_events(r, get["events"], what) if "events" in get else (),
        stream=r.text(get["stream"], f"stream of {what}") if "stream" in get else None,
        maxlen=_maxlen(r, get["maxlen"], what) if "maxlen" in get else 1_000_000,
        retry_schedule=(_schedule(r, get["retry_schedule"], what) if "retry_schedule" in get
                        else INFOBIP_RETRY_SCHEDULE),
        timeout=_timeout(r, get["timeout"], what) if "timeout" in get else 10.0,
        headers=_headers(r, get["headers"], what) if "headers" in get else {},
    )


def _url(r: _Reader, node: Node, what: str) -> str:
    url = r.text(node, f"url of {what}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  # raises ValueError on a bad port
    except ValueError as err:
        raise r.fail(node, f"{what}: the url is not a valid URL") from err
    if parts.scheme not in ("http", "https"):
        got = f"not {parts.scheme!r}" if parts.scheme else "it has none"
        raise r.fail(node, f"{what}: the url scheme must be http or https ({got})")
    if not parts.hostname:
        raise r.fail(node, f"{what}: the url has no host")
    return url


def _secret(r: _Reader, node: Node, what: str) -> str:
    # Never echo the value: the error would carry the secret into logs.
    secret = r.text(node, f"secret of {what}")
    body = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
    except (binascii.Error, ValueError) as err:
        raise r.fail(node, f"{what}: the secret must be whsec_ followed by base64") from err
    if not secret.startswith("whsec_") or not key:
        raise r.fail(node, f"{what}: the secret must be whsec_ followed by base64")
    return secret


def _events(r: _Reader, node: Node, what: str) -> tuple[str, ...]:
    events: list[str] = []
    for item in r.sequence(node, f"events of {what}", scalar_ok=True):
        pattern = r.text(item, f"an event of {what}")
        if pattern not in EVENT_PATTERNS:
            raise r.fail(item, f"{what}: unknown event {pattern!r} (one of {', '.join(EVENT_PATTERNS)})")
        if pattern not in events:
            events.append(pattern)
    return tuple(events)


def _schedule(r: _Reader, node: Node, what: str) -> tuple[float, ...]:
    items = node.value if isinstance(node, SequenceNode) else None
    if not items:
        raise r.fail(node, f"{what}: retry_schedule must be a non-empty list of seconds")
    waits = tuple(r.number(item, f"a retry_schedule entry of {what}") for item in items)
    for item, wait in zip(items, waits, strict=True):
        if wait < 0:
            raise r.fail(item, f"{what}: retry_schedule entries must not be negative")
    return waits


def _timeout(r: _Reader, node: Node, what: str) -> float:
    timeout = r.number(node, f"timeout of {what}")
    if timeout <= 0:
        raise r.fail(node, f"{what}: timeout must be a positive number of seconds")
    return timeout


def _maxlen(r: _Reader, node: Node, what: str) -> int:
    maxlen = r.number(node, f"maxlen of {what}")
    if maxlen < 1 or maxlen != int(maxlen):
        raise r.fail(node, f"{what}: maxlen must be a positive whole number")
    return int(maxlen)


def _headers(r: _Reader, node: Node, what: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, (key, value) in r.mapping(node, f"headers of {what}").items():
        if name.lower() in RESERVED_HEADERS or not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
            raise r.fail(key, f"{what}: header {name!r} cannot be set here")
        text = r.text(value, f"header {name!r} of {what}")
        if "\r" in text or "\n" in text:
            raise r.fail(value, f"{what}: header {name!r} must be one line")
        headers[name] = text
    return headers


def _route(r: _Reader, node: Node, index: int, consumers: dict[str, Consumer],
           taken: set[str]) -> MoRoute:
    fields = r.mapping(node, f"MO route #{index}")
    get = {k: v for k, (_key, v) in fields.items()}
    given = r.text(get["name"], f"name of MO route #{index}") if "name" in get else None
    r.known(fields, ROUTE_KEYS, f"MO route {given!r}" if given else f"MO route #{index}")
    default = r.flag(get["default"], f"default of MO route #{index}") if "default" in get else False
    keywords: list[str] = []
    for item in r.sequence(get["keywords"], "keywords", scalar_ok=True) if "keywords" in get else ():
        keyword = r.text(item, "a keyword").upper()
        if any(ch.isspace() for ch in keyword):
            raise r.fail(item, f"keyword {keyword!r} has a space; the keyword is the text's first word")
        if keyword not in keywords:
            keywords.append(keyword)
    regex = None
    if "keyword_regex" in get:
        source = r.text(get["keyword_regex"], "keyword_regex")
        try:
            regex = re.compile(source, re.IGNORECASE)
        except re.error as err:
            raise r.fail(get["keyword_regex"], f"bad keyword_regex {source!r}: {err}") from err
    if default and (keywords or regex or "receiver" in get):
        raise r.fail(node, "a default route takes every MO left: no keywords, keyword_regex or "
                           "receiver (use keyword_regex: '.*' with a receiver for a per-number catch-all)")
    if not (default or keywords or regex):
        raise r.fail(node, f"MO route #{index} needs keywords, keyword_regex or default: true")
    names: list[str] = []
    for item in r.sequence(get["consumers"], "consumers", scalar_ok=True) if "consumers" in get else ():
        name = r.text(item, "a consumer name")
        if name not in consumers:
            raise r.fail(item, f"MO route #{index} names consumer {name!r}, which is not defined")
        if name not in names:
            names.append(name)
    name = given or ("default" if default else keywords[0].lower() if keywords
                     else f"route-{index}")
    if given and given in taken:
        raise r.fail(get["name"], f"duplicate MO route name {given!r}")
    if name in taken:
        name = f"{name}-{index}"
    receiver = r.text(get["receiver"], "receiver").lstrip("+") if "receiver" in get else None
    reply = section.reply_text(r, get["reply"], f"reply of MO route {name!r}") if "reply" in get else None
    return MoRoute(name=name, keywords=frozenset(keywords), keyword_regex=regex,
                   receiver=receiver, default=default, consumers=tuple(names), reply=reply)


def match_mo_route(routes: Routes, keyword: str, receiver: str | None) -> MoRoute | None:
    """The first route that takes this MO, in file order; the default route, when present, is last."""
    word = (keyword or "").strip()
    number = (receiver or "").strip().lstrip("+")
    for route in routes.mo_routes:
        if route.default:
            return route
        if route.receiver is not None and route.receiver != number:
            continue
        if word.upper() in route.keywords or (route.keyword_regex and route.keyword_regex.search(word)):
            return route
    return None


def _subscribed(patterns: tuple[str, ...], event_type: str) -> bool:
    return any(p == "*" or p == event_type or (p.endswith(".*") and event_type.startswith(p[:-1]))
               for p in patterns)


def consumers_for(routes: Routes, event_type: str, route: MoRoute | None) -> list[Consumer]:
    """Subscribers of the type plus the MO route's consumers: each once, in file order."""
    named = set(route.consumers) if route else set()
    return [c for c in routes.consumers.values() if c.name in named or _subscribed(c.events, event_type)]


if __name__ == "__main__":  # `python -m app.routes FILE`: check a file without starting the app
    import sys

    if len(sys.argv) != 2:
        sys.exit("usage: python -m app.routes FILE")
    try:
        print(check_file(sys.argv[1]))
    except (ConfigError, OSError) as err:
        sys.exit(f"routes check failed: {getattr(err, 'message', err)}")
