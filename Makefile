# Two commands matter: `make demo` and `make test`. Everything else supports them.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch; on machines where PyPI's default wheel is a CUDA build, point pip
# at a CPU wheel (see docs/development.md), e.g. make TORCH_SPEC=/path/to/torch-cpu.whl
TORCH_SPEC ?= torch==2.13.0
FASHION_MNIST_DIR ?= /usr/share/datasets/fashion-mnist
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint typecheck unit e2e system fashion-mnist deb clean

setup: $(STAMP)

$(STAMP): shared/pyproject.toml coordinator/pyproject.toml edge_agent/pyproject.toml requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e "shared[train,hub]" -e "coordinator[postgres]" -e edge_agent -r requirements-dev.txt
	@touch $@

fashion-mnist:
	@if [ -f "$(FASHION_MNIST_DIR)/train-images-idx3-ubyte.gz" ]; then \
		true; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Debian's dataset-fashion-mnist ..."; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null \
		|| { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null; }; \
	else \
		echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist' (or make demo FASHION_MNIST_DIR=/path/to/idx-files)"; \
		exit 1; \
	fi

demo: setup fashion-mnist
	$(BIN)/fl-coordinator demo --data-dir "$(FASHION_MNIST_DIR)"

lint: setup
	$(BIN)/ruff check shared/src coordinator/src edge_agent/src packaging tests bench
	$(BIN)/ruff format --check shared/src coordinator/src edge_agent/src packaging tests bench

typecheck: setup
	$(BIN)/mypy shared/src coordinator/src edge_agent/src packaging/build_deb.py

unit: setup
	$(BIN)/python -m pytest -m "not e2e and not system"

e2e: setup fashion-mnist
	$(BIN)/python -m pytest -m e2e

# The system tests (build the .debs, lintian, install them in Debian roots, boot them under
# systemd-nspawn, a 3-container fleet, deploy/ansible over SSH to a 4-container fleet, arm64
# under qemu; root only) are mostly package, disk and waiting: they run beside lint, typecheck
# and the unit tests, their output collected in test-artifacts/. The end-to-end tests, whose
# processes race real clocks, run afterwards on a quiet machine. (Running the outcome-only e2e
# files beside the system tests was measured: the 2 cores are saturated, so the system tests
# took 190 s longer and the whole run was no faster, 2133 s against 2067 s.)
SYSTEM_LOG := test-artifacts/system-tests.log

test: setup fashion-mnist
	@mkdir -p test-artifacts
	@echo "system tests run alongside lint, typecheck and the unit tests; their output: $(SYSTEM_LOG)"
	@$(BIN)/python -m pytest -m system > $(SYSTEM_LOG) 2>&1 & system=$$!; \
	$(MAKE) --no-print-directory lint typecheck && \
	$(BIN)/python -m pytest -m "not e2e and not system"; unit=$$?; \
	wait $$system; status=$$?; \
	echo "=== system tests ($(SYSTEM_LOG)) ==="; cat $(SYSTEM_LOG); \
	test $$unit -eq 0 -a $$status -eq 0
	$(BIN)/python -m pytest -m e2e

system: setup
	$(BIN)/python -m pytest -m system

# Debian packages into dist/deb/: fl-edge-agent (amd64, arm64) and fl-coordinator (amd64), each a
# venv in /opt for Debian bookworm's python3.11 (docs/packaging.md). Downloaded wheels are cached
# in build/deb-cache/, so a second build runs offline. DEB_FLAGS: e.g. fl-edge-agent --arch arm64.
deb: setup
	$(BIN)/python packaging/build_deb.py $(DEB_FLAGS)

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
