"""The routes file's `optout` section and `reply:` on MO routes (SPEC §11): defaults, every way
a bad section stops start-up naming its line (in `flask routes-check` and in create_app), and
how reply texts are filled in."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import create_app
from app.errors import ConfigError
from app.optout.section import OptOut, fill_reply, keyword_of
from app.routes import load_routes, parse_routes
from tests.test_routes import test_bad_file_names_its_line as names_its_line

GOOD = """\
consumers:
  - {name: crm, url: "http://127.0.0.1:9/crm", events: ["contact.*"]}
mo_routes:
  - keywords: [WIN]
    consumers: [crm]
    reply: "Thanks {from}, your entry {cleanText} to {to} is in ({keyword})."
  - default: true
    reply: ""
optout:
  stop_keywords: [STOP, STOPALL, Arret]
  help_reply: "Help for {to}: reply STOP to stop."
  replies_per_sender_per_hour: 2
"""


def test_defaults_are_specs_without_a_section() -> None:
    routes = parse_routes("consumers: []\n", "routes.yml")
    assert routes.optout == OptOut() and not routes.optout_given
    assert routes.optout.stop_keywords == {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
    assert routes.optout.start_keywords == {"START", "YES", "UNSTOP"}
    assert routes.optout.help_keywords == {"HELP", "INFO"}
    assert routes.optout.replies_per_sender_per_hour == 5
    assert routes.optout.stop_reply.startswith("You are unsubscribed")


def test_a_section_overrides_what_it_names_and_keeps_the_other_defaults() -> None:
    routes = parse_routes(GOOD, "routes.yml")
    optout = routes.optout
    assert optout.stop_keywords == {"STOP", "STOPALL", "ARRET"}
    assert optout.start_keywords == OptOut().start_keywords
    assert optout.help_reply == "Help for {to}: reply STOP to stop."
    assert optout.replies_per_sender_per_hour == 2
    assert routes.mo_routes[0].reply.startswith("Thanks {from}") and routes.mo_routes[1].reply == ""
    assert routes.optout_given


@pytest.mark.parametrize(("keyword", "kind"), [
    ("STOP", "stop"), ("stop", "stop"), ("Stop.", "stop"), ("STOPALL", "stop"), ("start!", "start"),
    ("info", "help"), ("STOPP", None), ("", None), (None, None),
])
def test_keyword_kinds(keyword: str | None, kind: str | None) -> None:
    assert OptOut().kind(keyword) == kind


def test_a_default_keyword_given_to_another_list_moves_there() -> None:
    optout = parse_routes("optout:\n  help_keywords: [HELP, END]\n", "r.yml").optout
    assert optout.kind("END") == "help" and "END" not in optout.stop_keywords


def test_fill_reply() -> None:
    data = {"keyword": "WIN", "cleanText": "42", "from": "38598111", "to": "41793026727", "text": "x"}
    assert fill_reply("{keyword}:{cleanText} {from}->{to} {{x}}", data) == "WIN:42 38598111->41793026727 {x}"
    assert fill_reply("{cleanText}", {"cleanText": None}) == ""
    assert keyword_of(" stop! ") == "STOP"


BAD = {
    "unknown key in the section": """
        optout:
          stop_keyword: [STOP]  # <- here
        """,
    "section not a mapping": """
        optout: [STOP]  # <- here
        """,
    "keyword in two lists": """
        optout:
          stop_keywords: [STOP]
          start_keywords:
            - START
            - stop  # <- here
        """,
    "keyword with a space": """
        optout:
          stop_keywords: ["opt out"]  # <- here
        """,
    "unknown placeholder in an optout reply": """
        optout:
          stop_reply: "Bye {sender}"  # <- here
        """,
    "lone brace": """
        optout:
          help_reply: "Reply {STOP"  # <- here
        """,
    "cap not a number": """
        optout:
          replies_per_sender_per_hour: many  # <- here
        """,
    "negative cap": """
        optout:
          replies_per_sender_per_hour: -1  # <- here
        """,
    "fractional cap": """
        optout:
          replies_per_sender_per_hour: 1.5  # <- here
        """,
    "reply as a list": """
        optout:
          start_reply: [a, b]  # <- here
        """,
    "unknown placeholder in a route reply": """
        mo_routes:
          - keywords: [WIN]
            reply: "Hi {name}"  # <- here
        """,
    "attribute placeholder in a route reply": """
        mo_routes:
          - keywords: [WIN]
            reply: "Hi {from.upper}"  # <- here
        """,
    "empty placeholder in a route reply": """
        mo_routes:
          - default: true
            reply: "Hi {}"  # <- here
        """,
}


@pytest.mark.parametrize("text", BAD.values(), ids=BAD.keys())
def test_bad_section_names_its_line(text: str) -> None:
    names_its_line(text)  # tests/test_routes.py's check: the `# <- here` line is the one named


def test_unknown_placeholder_message_says_what_is_allowed() -> None:
    with pytest.raises(ConfigError, match=r"unknown placeholder \{sender\}; use \{keyword\}, \{cleanText\}"):
        parse_routes("optout:\n  stop_reply: 'Bye {sender}'\n", "routes.yml")


def test_routes_check_and_start_up(config, r, tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "routes.yml"
    path.write_text(GOOD, encoding="utf-8")
    app = create_app({**config, "ROUTES_FILE": str(path)})
    result = app.test_cli_runner().invoke(args=["routes-check", str(path)])
    assert result.exit_code == 0
    assert result.output.strip() == "routes.yml: 1 consumer, 2 MO routes, an optout section"
    path.write_text(GOOD.replace("help_reply:", "help_replies:"), encoding="utf-8")
    result = app.test_cli_runner().invoke(args=["routes-check", str(path)])
    assert result.exit_code != 0
    assert "routes.yml line 11: unknown key 'help_replies' in the optout section" in result.output
    with pytest.raises(ConfigError, match=r"^routes\.yml line 11: "):
        create_app({**config, "ROUTES_FILE": str(path)})


def test_the_example_routes_file_shows_the_defaults() -> None:
    """deploy/routes.example.yml documents the section: it must say what the defaults are."""
    routes = load_routes(Path(__file__).resolve().parents[1] / "deploy" / "routes.example.yml")
    assert routes.optout_given and routes.optout == OptOut()
