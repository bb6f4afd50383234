# Two commands a newcomer needs: `make run` and `make test`. Both build the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test test-faults fuzz lint clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## Start embedded Redis (unless REDIS_URL is set), web, worker and scheduler; print the Infobip URLs.
run: install
	$(PY) -m tools.run

## Lint, then the suite against a real Redis the suite starts itself, with a short fuzz run
## (hypothesis profile "ci"). The fault tests are `make test-faults`; `.ci/run` runs both.
test: install lint
	$(PY) -m pytest -q -m "not faults"

## Real gunicorn, rq workers, redis-server and a consumer, killed under load (docs/RELIABILITY.md).
test-faults: install
	$(PY) -m pytest -q -m faults

## The long fuzz run, over 100,000 generated inputs (HYPOTHESIS_PROFILE=long unless set otherwise).
fuzz: install
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-long} $(PY) -m pytest -q tests/test_fuzz.py --hypothesis-show-statistics

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis
