# The two commands a person needs: `make run` and `make test`.
# Everything they need is installed by these targets; downloads are cached
# under ~/.cache (pip, Maven, Go) and ~/.cache/taskforce (services).
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell sha256sum pyproject.toml | cut -c1-12)
FLASK   := $(BIN)/flask --app wsgi

.PHONY: install services run test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

services: $(STAMP)
	$(BIN)/python scripts/services.py install

## run: the product on http://127.0.0.1:5000 with embedded defaults and a local Neo4j
run: services
	$(BIN)/python scripts/services.py start --dev
	$(FLASK) db upgrade
	$(FLASK) accounts seed-demo
	$(FLASK) run --host 127.0.0.1 --port 5000

## test: every real service started on 127.0.0.1, then the whole suite
test: services lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check taskforce config scripts tests

bench: services
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	-$(BIN)/python scripts/services.py stop --dev
	rm -rf $(VENV) .pytest_cache
