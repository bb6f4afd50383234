"""app/cli.py `flask routes-check`, and start-up with a routes file (SPEC §4: a bad routes file
stops start-up with a message naming the line). The dead-letter and quarantine commands are
tested with their /api twins in tests/test_dlq.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app import create_app
from app.errors import ConfigError

GOOD = """\
consumers:
  - name: crm
    url: http://127.0.0.1:9/events
    events: [dlr.final]
  - name: stream
    type: redis-stream
    stream: sms-events
    events: ["*"]
mo_routes:
  - keywords: [STOP]
    consumers: [crm]
"""

BAD = """\
consumers:
  - name: crm
    url: http://127.0.0.1:9/events
    evnts: [dlr.final]
"""

BAD_ROUTE = """\
consumers:
  - name: crm
    url: http://127.0.0.1:9/events
mo_routes:
  - keywords: [STOP]
    consumers: [crm, nobody]
"""


def write(tmp_path: Path, text: str, name: str = "routes.yml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def invoke(app: Any, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=list(args))


def test_routes_check_summarizes_a_good_file(app, tmp_path):
    result = invoke(app, "routes-check", str(write(tmp_path, GOOD)))
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "routes.yml: 2 consumers, 1 MO route"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BAD, "routes.yml line 4: unknown key 'evnts' in consumer 'crm' (did you mean 'events'?)"),
        (BAD_ROUTE, "routes.yml line 6: MO route #1 names consumer 'nobody', which is not defined"),
        ("consumers: [\n", "routes.yml line 2: invalid YAML"),
        ("", "routes.yml: the file is empty"),
    ],
)
def test_routes_check_fails_on_a_bad_file_naming_the_line(app, tmp_path, text, message):
    result = invoke(app, "routes-check", str(write(tmp_path, text)))
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output


def test_routes_check_of_a_missing_file(app, tmp_path):
    result = invoke(app, "routes-check", str(tmp_path / "nope.yml"))
    assert result.exit_code != 0 and "cannot read the routes file" in result.output


def test_routes_check_defaults_to_the_configured_file(config, r, tmp_path, monkeypatch):
    monkeypatch.delenv("ROUTES_FILE", raising=False)
    path = write(tmp_path, GOOD, "configured.yml")
    result = invoke(create_app({**config, "ROUTES_FILE": str(path)}), "routes-check")
    assert result.exit_code == 0 and result.output.strip() == "configured.yml: 2 consumers, 1 MO route"


def test_routes_check_without_any_file(app, monkeypatch):
    app.config["ROUTES_PATH"] = None
    result = invoke(app, "routes-check")
    assert result.exit_code != 0 and "no routes file" in result.output


def test_a_bad_routes_file_stops_start_up_naming_the_line(config, r, tmp_path):
    path = write(tmp_path, BAD)
    with pytest.raises(ConfigError) as raised:
        create_app({**config, "ROUTES_FILE": str(path)})
    assert raised.value.message.startswith("routes.yml line 4: unknown key 'evnts'")


def test_a_missing_routes_file_stops_start_up(config, r, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        create_app({**config, "ROUTES_FILE": str(tmp_path / "nope.yml")})


def test_a_good_routes_file_is_what_the_app_serves(config, r, tmp_path):
    app = create_app({**config, "ROUTES_FILE": str(write(tmp_path, GOOD))})
    routes = app.extensions["routes"]
    assert list(routes.consumers) == ["crm", "stream"] and routes.mo_routes[0].name == "stop"
