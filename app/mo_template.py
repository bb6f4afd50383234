"""`MO_URL_TEMPLATE` inverted: from the URL Infobip called back to the MO fields (SPEC §2.2).

The operator configures at Infobip a URL with placeholders (`%sender%`, `%text%`, ...); Infobip
fills them in. We read the same template and undo the substitution, so the operator can paste
any URL they already use. Rules, checked once at start-up (`parse` raises ConfigError):

- Placeholders go in query values (`?who=%sender%`) or path segments (`/mo/%receiver%`), matched
  case-insensitively; each at most once; `%text%` or `%bin%` (or both) must be there.
- One segment or value may hold literal text around a placeholder (`id-%messageid%`) or several
  placeholders with literal text between them (`%receiver%-%sender%`). Such a piece is split
  left to right: every placeholder but the last ends at the first occurrence of the separator
  after it, the last takes the rest. So put the one that may contain the separator (the text)
  last, or better, in a query value of its own.
- Path placeholders are matched from the END of the request path: the template's segments from
  the first one holding a placeholder are laid over the request's last segments. Literal
  segments before it are the operator's public prefix, which a proxy may rewrite or extend; the
  Flask route fixes how our own path starts. The path arrives URL-decoded, so a value holding
  `/` cannot sit in a path segment: another reason to keep the text in the query.
- Literal query parameters of the template (`output=xml`, `token=...`) are not data. Request
  parameter names match the template's case-insensitively.

Error messages show the template with its password and literal query values masked, because a
template may carry credentials (`https://user:pass@host/...?token=...`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote, unquote_plus, urlsplit

from app.errors import ConfigError, InvalidPayload

FIELDS = ("sender", "receiver", "text", "bin", "datetime", "messageid", "datacoding", "esmclass")
_PLACEHOLDER = re.compile(r"%([A-Za-z]+)%")
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")


class Piece(NamedTuple):
    """One path segment or query value of the template: the fields it holds, in order, as a regex."""

    fields: tuple[str, ...]
    regex: re.Pattern[str]


@dataclass(frozen=True)
class Template:
    """A parsed template. Build with `parse` or `default`; then `extract` per request."""

    source: str  # masked as in error messages, so a repr in a log leaks nothing
    path_tail: tuple[Piece, ...] = ()
    query: tuple[tuple[str, Piece], ...] = ()  # (lower-cased parameter name, piece)

    @classmethod
    def default(cls) -> Template:
        """No MO_URL_TEMPLATE: each field comes from the parameter of its own name."""
        return cls.parse(cls.paste_url("/infobip/mo"))

    @classmethod
    def paste_url(cls, base_url: str) -> str:
        """The template to paste into Infobip so that `default()` reads every field."""
        joiner = "&" if "?" in base_url else "?"
        return base_url + joiner + "&".join(f"{name}=%{name}%" for name in FIELDS)

    @classmethod
    def parse(cls, url_template: str) -> Template:
        """Check a template and compile it; every mistake is a ConfigError naming it."""
        where = f"in MO_URL_TEMPLATE {_masked(url_template)!r}"
        if not url_template.strip():
            raise ConfigError("MO_URL_TEMPLATE is empty")
        try:
            parts = urlsplit(url_template.strip())
        except ValueError as err:
            raise ConfigError(f"MO_URL_TEMPLATE is not a URL: {err}") from err
        for label, text in (("scheme", parts.scheme), ("host", parts.netloc), ("fragment", parts.fragment)):
            if _PLACEHOLDER.search(text):
                raise ConfigError(f"a placeholder in the {label} cannot be read back {where}")
        seen: set[str] = set()
        segments = parts.path.split("/")
        first = next((i for i, s in enumerate(segments) if _PLACEHOLDER.search(s)), len(segments))
        tail = tuple(_piece(s, unquote, seen, where) for s in segments[first:])
        query: dict[str, Piece] = {}
        for pair in filter(None, parts.query.split("&")):
            raw_name, _, raw_value = pair.partition("=")
            if _PLACEHOLDER.search(raw_name):
                raise ConfigError(f"a placeholder in the parameter name {raw_name!r} {where}")
            if not _PLACEHOLDER.search(raw_value):  # a literal (output=xml, token=...): not data
                if _STRAY_PERCENT.search(raw_value):  # a mistyped placeholder; the value is not echoed
                    raise ConfigError(f"parameter {raw_name!r} has a '%' that is neither a placeholder "
                                      f"nor a %XX escape {where}")
                continue
            piece = _piece(raw_value, unquote_plus, seen, where)
            name = unquote_plus(raw_name).lower()
            if name in query:
                raise ConfigError(f"parameter {name!r} holds placeholders twice {where}")
            query[name] = piece
        if not seen & {"text", "bin"}:
            raise ConfigError(f"neither %text% nor %bin% {where}: the message body would be lost")
        return cls(_masked(url_template), tail, tuple(query.items()))

    def extract(self, path: str, query: Mapping[str, str]) -> dict[str, str]:
        """Request path (URL-decoded) and query/form args -> {canonical field: value}.

        A parameter that is absent leaves its fields out; a path or value that does not fit the
        template's literal text is an InvalidPayload.
        """
        out: dict[str, str] = {}
        if self.path_tail:
            segments = (path[1:] if path.startswith("/") else path).split("/")
            if len(segments) < len(self.path_tail):
                raise InvalidPayload(f"path {path!r} is shorter than the MO URL template's path")
            for piece, segment in zip(self.path_tail, segments[-len(self.path_tail) :], strict=True):
                out.update(_match(piece, segment, f"path segment {segment!r}"))
        args = _lower_keys(query)
        for name, piece in self.query:
            if name in args:
                out.update(_match(piece, args[name], f"parameter {name!r}"))
        return out


def _piece(raw: str, decode: Callable[[str], str], seen: set[str], where: str) -> Piece:
    """Compile one segment or value. Literal text is URL-decoded, as the request's will be."""
    fields: list[str] = []
    pattern: list[str] = []
    pos = 0
    for found in _PLACEHOLDER.finditer(raw):
        name = found.group(1).lower()
        if name not in FIELDS:
            raise ConfigError(f"unknown placeholder %{found.group(1)}% {where}; known: {', '.join(FIELDS)}")
        if name in seen:
            raise ConfigError(f"placeholder %{name}% is used twice {where}")
        literal = raw[pos : found.start()]
        if fields and not literal:
            raise ConfigError(
                f"%{fields[-1]}% and %{name}% touch {where}: put literal text between them or the "
                "value cannot be split"
            )
        _check_literal(literal, where)
        pattern.append(re.escape(decode(literal)))
        pattern.append("(.*?)")
        fields.append(name)
        seen.add(name)
        pos = found.end()
    _check_literal(raw[pos:], where)
    pattern.append(re.escape(decode(raw[pos:])))
    if fields:
        pattern[-2] = "(.*)"  # the last placeholder takes the rest
    return Piece(tuple(fields), re.compile("".join(pattern), re.DOTALL))


def _check_literal(literal: str, where: str) -> None:
    """A '%' that is no %XX escape is most likely a mistyped placeholder (`%sender`)."""
    if _STRAY_PERCENT.search(literal):
        raise ConfigError(f"a '%' that is neither a placeholder nor a %XX escape near {literal!r} {where}")


def _match(piece: Piece, value: str, what: str) -> dict[str, str]:
    found = piece.regex.fullmatch(value)
    if found is None:
        raise InvalidPayload(f"{what} does not fit the MO URL template")
    return dict(zip(piece.fields, found.groups(), strict=True))


def _lower_keys(query: Mapping[str, str]) -> dict[str, str]:
    """Case-insensitive names; when both `Sender` and `sender` come, the first one wins."""
    out: dict[str, str] = {}
    for key in query:
        out.setdefault(key.lower(), query[key])
    return out


def _masked(url_template: str) -> str:
    """The template for an error message: no password, no literal query values (tokens)."""
    try:
        parts = urlsplit(url_template)
    except ValueError:
        return "(not a URL)"
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    pairs = []
    for pair in parts.query.split("&") if parts.query else []:
        name, eq, value = pair.partition("=")
        pairs.append(pair if _PLACEHOLDER.search(value) or not eq else f"{name}=***")
    return parts._replace(netloc=netloc, query="&".join(pairs)).geturl()
