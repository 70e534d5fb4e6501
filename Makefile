# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
FLASK  := $(BIN)/flask --app wsgi
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: run test lint worker bench bench-e2e clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/activate
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

## run: install, migrate, create the first admin if none, serve on http://$(HOST):$(PORT)
run: export BULKIMPORT_BASE_URL ?= http://$(HOST):$(PORT)
run: $(VENV)/.installed
	$(FLASK) db upgrade
	$(FLASK) ensure-admin
	$(FLASK) run --host $(HOST) --port $(PORT)

## test: install what the tests need, lint, and run the whole suite
test: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache

## worker: an RQ worker for mail and imports, in the app (needs Redis); the app's own sweep
## schedules retries, so RQ's scheduler (a child process a killed worker would leave behind) is not run
worker: $(VENV)/.installed
	$(BIN)/rq worker --url "$${BULKIMPORT_REDIS_URL:?set BULKIMPORT_REDIS_URL}" \
		--worker-class bulkimport.worker.Worker \
		--serializer rq.serializers.JSONSerializer mail imports

## bench: speed and memory figures, as ratios to raw floors measured in the same run
bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench

## bench-e2e: 100,000 rows end to end on PostgreSQL (BULKIMPORT_BENCH_DATABASE_URL) and Redis
bench-e2e: $(VENV)/.installed-dev
	$(BIN)/python -m bench.e2e

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
