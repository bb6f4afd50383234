# Two commands a newcomer needs: `make run` and `make test`. Both build the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: install run simulate test test-faults fuzz lint clean bench bench-full bench-cluster bench-profile bench-cpu bench-instructions wrk valgrind
.PHONY: test-browser screenshots bench-dashboard chromedriver

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

## Start embedded Redis (unless REDIS_URL is set), web, worker and scheduler; print the Infobip URLs.
run: install
	$(PY) -m tools.run

## Realistic Infobip traffic against `make run` (ARGS="--messages 1000 --mo 50" to change it).
simulate: install
	DEV_MODE=1 $(VENV)/bin/flask simulate $(ARGS)

## Lint, then the suite against a real Redis the suite starts itself, with a short fuzz run
## (hypothesis profile "ci"). The fault tests are `make test-faults`; `.ci/run` runs both.
test: install lint
	$(PY) -m pytest -q -m "not faults and not browser"

## The same suite with the data plane on a real 3+3 Redis Cluster, RQ on one Redis (SPEC §12).
test-cluster: install
	$(PY) -m pytest -q -m "not faults and not browser" --redis=cluster

## Real gunicorn, rq workers, redis-server and a consumer, killed under load (docs/RELIABILITY.md).
test-faults: install
	$(PY) -m pytest -q -m faults

## The long fuzz run, over 100,000 generated inputs (HYPOTHESIS_PROFILE=long unless set otherwise).
fuzz: install
	HYPOTHESIS_PROFILE=$${HYPOTHESIS_PROFILE:-long} $(PY) -m pytest -q -s tests/test_fuzz.py --hypothesis-show-statistics

## Benchmarks (docs/BENCHMARKS.md): a short run of every bar, each printed as PASS/FAIL with its
## figure and baseline, results in var/bench/results.json. Under five minutes; not part of `make test`.
bench: install wrk
	$(PY) -m bench.run --plan short

## The full run: 1,000,000 reports (and 100,000 for the linearity ratio), longer measurements.
bench-full: install wrk
	$(PY) -m bench.run --plan full

## The campaign on a Redis Cluster (3 primaries + 3 replicas) against one Redis, 1,000,000 reports
## each, in one run (bench/cluster.py): 0 lost, 0 duplicates, <= 1 KB/message, >= 0.8x reports/s.
bench-cluster: install wrk
	$(PY) -m bench.run --plan full --only cluster

## py-spy profiles of ingest (a gunicorn worker under wrk) and of a drain job (var/bench/profile-*).
bench-profile: install wrk
	$(PY) -m pip install --quiet --disable-pip-version-check py-spy==0.4.3
	$(PY) -m bench.profile

## CPU per request by process (gunicorn, redis-server) and idle time: bare Flask, the references, ours.
bench-cpu: install wrk
	$(PY) -m bench.cpu

## Instructions per ingest request (bare Flask, one report, a bucket), counted by valgrind: the same
## figure on a quiet or a busy machine, for changes too small to see in requests/s.
bench-instructions: install valgrind
	$(PY) -m bench.instructions $(ARGS)

## Debian packages the benchmarks and browser tests run: installed when missing, as root; otherwise
## it says what to install. A command whose package has another name lists it in PACKAGES_<command>.
PACKAGES_chromedriver := chromium chromium-driver
wrk valgrind chromedriver:
	@command -v $@ >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && apt-get install -y -qq $(or $(PACKAGES_$@),$@); \
	  else \
	    echo "$@ is not installed and this is not a root Debian machine: install it (Debian: apt-get install $(or $(PACKAGES_$@),$@))" >&2; exit 1; \
	  fi; }

## --- Dashboard (SPEC §10) ---------------------------------------------------------------------
## The dashboard in Debian's headless Chromium (Selenium + chromium-driver) against real gunicorn,
## rq workers and Redis. Not part of `make test`. It writes nothing to the tree; `make screenshots`
## (or SCREENSHOTS=1 make test-browser) also rewrites docs/screenshots/ from the pages it visits.
test-browser: install chromedriver
	$(PY) -m pytest -q -m browser tests/browser

screenshots: install chromedriver
	SCREENSHOTS=1 $(PY) -m pytest -q -m browser tests/browser

## Each dashboard page's render time at 1,000,000 stored messages against 10,000, in one run.
bench-dashboard: install
	$(PY) -m bench.dashboard

lint: install
	$(PY) -m ruff check .

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis

# --- the fake Infobip (SPEC §9; tools/fake_infobip) ------------------------------------------
.PHONY: fake-infobip
## A local fake Infobip SMS API on 127.0.0.1:9090 (ARGS="--api-key K --notify-delay 2" to change it).
fake-infobip: install
	$(PY) -m tools.fake_infobip $(ARGS)
