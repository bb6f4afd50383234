# Two commands a newcomer needs: `make run` and `make test`. Both build the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test lint clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## Start embedded Redis (unless REDIS_URL is set), web, worker and scheduler; print the Infobip URLs.
run: install
	$(PY) -m tools.run

## Lint, then the whole suite against a real Redis the suite starts itself.
test: install lint
	$(PY) -m pytest -q

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
