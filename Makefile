.PHONY: run test test-durations bootstrap lint fuzz acceptance bench bench-ingest bench-tiles bench-suite bench-soak bench-bulk bench-rights bench-assets

bootstrap:
	@./scripts/bootstrap.sh

run: bootstrap
	.venv/bin/terracat serve

# The checks CI runs first: lint, format, types (pyproject.toml [tool.mypy] names the files).
lint: bootstrap
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy

# Three test processes (pytest-xdist), whole modules each, so module fixtures start once: the
# suite waits on PostgreSQL, servers and subprocesses more than it computes. On 2 cores, 2026-12-06,
# pytest: 520, 526 and 541 s with 2 processes (63 % of the cores busy); 467, 527 and 535 s with 3;
# 486 s with 4 (one machine whose speed moved by a third within the hour). Modules are queued
# longest first (tests/schedule.py, from tests/durations.json; `make test-durations` renews it).
TEST_WORKERS ?= 3
PYTEST = .venv/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: lint
	$(PYTEST) $(PYTEST_ARGS)

test-durations: bootstrap
	TERRACAT_TEST_DURATIONS=write $(PYTEST) $(PYTEST_ARGS)

# Real web clients on a real server, too slow for `make test`: stac-browser (built once into
# var/stac-browser by scripts/stac-browser.sh) served from another origin and driven by headless
# Chromium (tests/acceptance/test_stac_browser.py).
acceptance: bootstrap
	./scripts/stac-browser.sh
	TERRACAT_ACCEPTANCE=1 .venv/bin/python -m pytest -p no:cacheprovider -s tests/acceptance $(PYTEST_ARGS)

# schemathesis on every operation, as tests/server/test_fuzz.py in the suite but with the
# coverage phase (each parameter's boundary and invalid values) and FUZZ_EXAMPLES per phase.
FUZZ_EXAMPLES ?= 100
fuzz: bootstrap
	TERRACAT_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) TERRACAT_FUZZ_PHASES=examples,coverage,fuzzing \
		.venv/bin/python -m pytest -p no:cacheprovider tests/server/test_fuzz.py $(PYTEST_ARGS)

bench: bootstrap
	.venv/bin/python -m pip install -q -c requirements.lock -e '.[bench]'
	.venv/bin/python -m bench.search $(BENCH_ARGS)

bench-ingest: bootstrap
	.venv/bin/python -m pip install -q -c requirements.lock -e '.[bench]'
	.venv/bin/python -m bench.ingest $(BENCH_ARGS)

bench-tiles: bootstrap
	.venv/bin/python -m pip install -q -c requirements.lock -e '.[bench]'
	.venv/bin/python -m bench.tiles $(BENCH_ARGS)

# Memory of an API worker under many clients for minutes (issue 13): RSS over time.
bench-soak: bootstrap
	.venv/bin/python -m bench.soak $(BENCH_ARGS)

# The suite's own cost (CPU, wall, per test); BENCH_ARGS='--clone 95c6831 --clone HEAD' compares.
bench-suite: bootstrap
	.venv/bin/python -m bench.suite $(BENCH_ARGS)

# Bulk load through the API against pypgstac's loader (issue 14): items per second, one run.
bench-bulk: bootstrap
	.venv/bin/python -m pip install -q -c requirements.lock -e '.[bench]'
	.venv/bin/python -m bench.bulk $(BENCH_ARGS)

# Asset downloads with Range (issue 16): MB/s and server RSS, Terracat against a static file
# server (local folder) and against the object store itself (S3, moto).
bench-assets: bootstrap
	.venv/bin/python -m pip install -q -c requirements.lock -e '.[bench]'
	.venv/bin/python -m bench.assets $(BENCH_ARGS)

# Searches of an account that reads 10 of 100 collections against the admin, and the cost of
# a token per request (issue 15). One run, figures only.
bench-rights: bootstrap
	.venv/bin/python -m pip install -q -c requirements.lock -e '.[bench]'
	.venv/bin/python -m bench.rights $(BENCH_ARGS)
