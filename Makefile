# wizgy developer tasks. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-installed

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP) ## create .venv with the build, test and lint tools

build: $(STAMP) ## build the native module (release) and install wizgy into .venv
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH $(VENV)/bin/maturin develop --release --quiet

run: build ## serve examples/hello.py on http://127.0.0.1:8000
	$(VENV)/bin/wizgy --bind 127.0.0.1:8000 --access-log - --chdir examples hello:app

sysdeps: ## install the Debian packages the suite drives (nginx, haproxy, chromium, systemd); no-op when present
	scripts/system-deps.sh

# Wheels: manylinux_2_17 (glibc 2.17+: RHEL/CentOS 7 and every later distribution), linked
# against that old glibc by zig (PyPI's ziglang) from this newer host. One abi3 wheel for
# CPython 3.10 and later, one cp39 wheel (pyo3's limited API lacks UTF-8 views of str before
# 3.10); ARCHITECTURE.md, "Wheels", has the measurements. Their own target dir: zig's C compiler
# is not the host's, so sharing target/ would rebuild aws-lc-sys on every switch with `make build`.
WHEEL_DIR := target/wheels
PYENV_VERSIONS := $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions
MATURIN_WHEEL := PATH=$(abspath $(VENV))/bin:$$PATH CARGO_TARGET_DIR=target/wheel \
	$(VENV)/bin/maturin build --release --strip --zig --compatibility manylinux2014 --out $(WHEEL_DIR)

wheel: $(STAMP) ## manylinux_2_17 wheels (abi3 for 3.10+, cp39) and the sdist -> target/wheels
	$(PY) -m pip install --quiet -r requirements-wheel.txt
	mkdir -p $(WHEEL_DIR) && rm -f $(WHEEL_DIR)/wizgy-*
	$(MATURIN_WHEEL) --features pyo3/abi3-py310 -i $(PY)
	py39=$$(ls -d $(PYENV_VERSIONS)/3.9.*/bin/python 2>/dev/null | sort -V | tail -1); \
	[ -n "$$py39" ] || py39=$$(command -v python3.9) || { echo "wheel: CPython 3.9 not found (pyenv or PATH)" >&2; exit 1; }; \
	$(MATURIN_WHEEL) -i "$$py39"
	$(VENV)/bin/maturin sdist --out $(WHEEL_DIR) 2>&1 | grep -v -e 'manifest has no' -e 'package-metadata' -e '^  |$$' -e '^From .cargo package'
	for w in $(WHEEL_DIR)/*.whl; do $(VENV)/bin/auditwheel show "$$w" | tr -s ' \n' ' ' | grep -o 'consistent with the following platform tag: "[^"]*"'; done
	ls -l $(WHEEL_DIR)

test: build sysdeps ## run every test: Rust unit tests, then the pytest suite against the real server
	cargo test --workspace --quiet
	$(PY) -m pytest -q tests

test-versions: ## run the framework-free suite on CPython 3.9 and 3.13 too (pyenv)
	scripts/test-versions.sh

lint: $(STAMP) ## cargo fmt --check, clippy -D warnings, ruff
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(VENV)/bin/ruff check python tests examples scripts bench
	$(VENV)/bin/ruff format --check python tests examples scripts bench

bench: ## side-by-side benchmark vs peer servers -> docs/benchmarks.md (~1 h; see bench/README.md)
	bench/run.sh

FUZZ_SECONDS ?= 120
FUZZ_ENV := CARGO_TARGET_DIR=/tmp/wizgy-fuzz-target RUSTC_BOOTSTRAP=1
FUZZ_CORPUS := /tmp/wizgy-fuzz-corpus

fuzz: ## run each cargo-fuzz target for FUZZ_SECONDS (installs cargo-fuzz if missing)
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	mkdir -p $(FUZZ_CORPUS)/head $(FUZZ_CORPUS)/chunked $(FUZZ_CORPUS)/proxy_protocol $(FUZZ_CORPUS)/static_path $(FUZZ_CORPUS)/range
	cd fuzz && $(FUZZ_ENV) cargo fuzz run head $(FUZZ_CORPUS)/head corpus/head -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && $(FUZZ_ENV) cargo fuzz run chunked $(FUZZ_CORPUS)/chunked corpus/chunked -- -max_total_time=$(FUZZ_SECONDS) -max_len=16384
	cd fuzz && $(FUZZ_ENV) cargo fuzz run proxy_protocol $(FUZZ_CORPUS)/proxy_protocol corpus/proxy_protocol -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && $(FUZZ_ENV) cargo fuzz run static_path $(FUZZ_CORPUS)/static_path corpus/static_path -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && $(FUZZ_ENV) cargo fuzz run range $(FUZZ_CORPUS)/range corpus/range -- -max_total_time=$(FUZZ_SECONDS)

docs: build ## regenerate docs/options.md from the option declarations
	$(PY) scripts/gen_options.py

fmt: $(STAMP) ## format Rust and Python sources
	cargo fmt --all
	$(VENV)/bin/ruff format python tests examples scripts bench
	$(VENV)/bin/ruff check --fix python tests examples scripts bench

.PHONY: help venv build wheel run test test-versions lint bench fuzz docs fmt
