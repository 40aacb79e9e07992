# Timoner: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= .timoner
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: run test lint install system bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(STAMP) system

# The pod network needs iproute2 (`ip`) and nftables (`nft`); the service proxy benchmark (and its test)
# wrk. As root they are installed when missing. Without root pods share the host's network
# (docs/NETWORKING.md), so nothing is needed.
system:
	@if [ "$$(id -u)" = 0 ]; then \
		command -v ip >/dev/null && command -v nft >/dev/null && command -v wrk >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 nftables wrk >/dev/null); \
	fi

run: install
	$(BIN)/timoner up --data-dir $(DATA_DIR)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

test: install lint
	$(BIN)/python -m pytest -n 2 -q --durations=15

bench: install
	@command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	@command -v etcd >/dev/null || (apt-get update && apt-get install -y etcd-server)
	$(BIN)/python bench/api.py $(BENCH_ARGS)
	$(BIN)/python bench/pod_startup.py $(POD_BENCH_ARGS)
	$(BIN)/python bench/controllers.py $(CONTROLLERS_BENCH_ARGS)
	$(BIN)/python bench/service_proxy.py $(PROXY_BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache
