"""The routes file's `optout` section and reply texts (SPEC §11): what STOP, START and HELP are,
what each answers, and the per-sender reply cap.

app/routes.py reads the file and hands this module the section's YAML node (`parse`) and each
MO route's `reply:` (`reply_text`); workers/optout.py applies the result. Kept here so the
whole of §11's configuration reads in one place, next to the code that uses it.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from yaml.nodes import Node, ScalarNode

if TYPE_CHECKING:  # the reader lives in app/routes.py, which imports this module
    from app.routes import _Reader as Reader


# SPEC §11: the `optout` section, with its defaults. A reply text may name these fields of the MO.
REPLY_FIELDS = ("keyword", "cleanText", "from", "to")


@dataclass(frozen=True)
class OptOut:
    stop_keywords: frozenset[str] = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
    start_keywords: frozenset[str] = frozenset({"START", "YES", "UNSTOP"})
    help_keywords: frozenset[str] = frozenset({"HELP", "INFO"})
    stop_reply: str = "You are unsubscribed and will receive no more messages. Reply START to resubscribe."
    start_reply: str = "You are subscribed again. Reply STOP to unsubscribe."
    help_reply: str = "Reply STOP to unsubscribe."
    replies_per_sender_per_hour: int = 5

    def kind(self, keyword: str) -> str | None:
        """"stop", "start", "help" or None for an MO's keyword ("Stop." counts as STOP)."""
        word = keyword_of(keyword)
        for kind in ("stop", "start", "help"):
            if word in getattr(self, f"{kind}_keywords"):
                return kind
        return None


OPTOUT_KEYS = tuple(OptOut.__dataclass_fields__)


def keyword_of(keyword: str | None) -> str:
    """The keyword as lists hold it: upper-case, without the punctuation people add ("Stop!")."""
    return (keyword or "").strip().strip(".,;:!?\"'()").upper()


def fill_reply(template: str, data: Mapping[str, Any]) -> str:
    """A reply text with the MO's fields filled in (the template was checked at load time)."""
    return template.format_map({name: data.get(name) or "" for name in REPLY_FIELDS})


def reply_text(r: Reader, node: Node, what: str) -> str:
    """A reply text; "" (or null) sends no reply. Placeholders must be fields of REPLY_FIELDS."""
    if not isinstance(node, ScalarNode):
        raise r.fail(node, f"{what} must be a text")
    text = "" if node.tag == "tag:yaml.org,2002:null" else node.value
    hint = "use " + ", ".join(f"{{{name}}}" for name in REPLY_FIELDS) + " (write {{ or }} for a brace)"
    try:
        names = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as err:  # a lone "{" or "}"
        raise r.fail(node, f"{what}: {err}; {hint}") from err
    for name in names:
        if name not in REPLY_FIELDS:
            raise r.fail(node, f"{what}: unknown placeholder {{{name}}}; {hint}")
    return text


def parse(r: Reader, node: Node) -> OptOut:
    """The `optout` section (SPEC §11): keywords, reply texts and the reply cap; defaults for
    what it leaves out. A keyword in two lists is refused: which action would it take?"""
    fields = r.mapping(node, "the optout section")
    r.known(fields, OPTOUT_KEYS, "the optout section")
    values: dict[str, Any] = {}
    owner: dict[str, str] = {}
    for name, (_key, value) in fields.items():
        if name.endswith("_keywords"):
            words: set[str] = set()
            for item in r.sequence(value, name, scalar_ok=True):
                word = keyword_of(r.text(item, f"a keyword of {name}"))
                if not word or any(ch.isspace() for ch in word):
                    raise r.fail(item, f"{name}: {item.value!r} is not one word")
                if owner.get(word, name) != name:
                    raise r.fail(item, f"keyword {word!r} is in both {owner[word]} and {name}")
                owner[word] = name
                words.add(word)
            values[name] = frozenset(words)
        elif name.endswith("_reply"):
            values[name] = reply_text(r, value, f"optout {name}")
        else:
            cap = r.number(value, name)
            if cap < 0 or cap != int(cap):
                raise r.fail(value, f"{name} must be a whole number, 0 or more")
            values[name] = int(cap)
    for name in ("stop_keywords", "start_keywords", "help_keywords"):
        if name not in values:  # the defaults, less any word the file gave to another list
            values[name] = getattr(OptOut(), name) - owner.keys()
    return OptOut(**values)
