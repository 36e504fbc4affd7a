# chatd: `make serve` sets up and serves the default model; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install serve test lint format bench bench-gateway clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

serve: install
	$(BIN)/chatd serve $(ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: install lint
	PYTHON=$(BIN)/python bash scripts/llama_server.sh >/dev/null
	CHATD_TEST_LLAMA_SERVER="$$(PYTHON=$(BIN)/python bash scripts/llama_server.sh)" \
	CHATD_TEST_PG_URL="$$(bash scripts/postgres.sh start)" $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m pip install -q -r bench/requirements.txt
	$(BIN)/python -m bench $(ARGS)

# chatd vs LiteLLM proxy as gateways in front of an nginx mock (LiteLLM in its own venv)
bench-gateway: install
	command -v nginx >/dev/null || (apt-get update && apt-get install -y nginx-light)
	command -v redis-server >/dev/null || (apt-get update && apt-get install -y redis-server)
	$(BIN)/python -m pip install -q -r bench/requirements.txt
	$(BIN)/python -m bench gateway $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
