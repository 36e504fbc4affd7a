# chatd: `make serve` sets up and serves the default model; `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install llama-build serve test lint format bench bench-gateway clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP) llama-build

# a GPU (or other) build of llama.cpp: `make serve LLAMA_CMAKE_ARGS="-DGGML_CUDA=on"`;
# rebuilt when the arguments change, remembered in .venv/.llama-cmake-args
llama-build: $(STAMP)
ifneq ($(LLAMA_CMAKE_ARGS),)
	test "$$(cat $(VENV)/.llama-cmake-args 2>/dev/null)" = "$(LLAMA_CMAKE_ARGS)" || { \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(BIN)/python -m pip install --force-reinstall --no-deps --no-binary llama-cpp-python \
	  "llama-cpp-python==$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')" \
	  && echo "$(LLAMA_CMAKE_ARGS)" > $(VENV)/.llama-cmake-args; }
endif

serve: install
	$(BIN)/chatd serve $(ARGS)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

format: install
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: install lint
	bash scripts/cli-tools.sh
	PYTHON=$(BIN)/python bash scripts/llama_server.sh >/dev/null
	CHATD_TEST_LLAMA_SERVER="$$(PYTHON=$(BIN)/python bash scripts/llama_server.sh)" \
	CHATD_TEST_PG_URL="$$(bash scripts/postgres.sh start)" \
	CHATD_TEST_REDIS_URL="$$(bash scripts/redis.sh start)" \
	CHATD_TEST_CHROMIUM="$$(bash scripts/chromium.sh)" \
	$(BIN)/python -m pytest $(PYTEST_ARGS)

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
