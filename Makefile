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

test: build ## run every test: Rust unit tests, then the pytest suite against the real server
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
	mkdir -p $(FUZZ_CORPUS)/head $(FUZZ_CORPUS)/chunked $(FUZZ_CORPUS)/proxy_protocol
	cd fuzz && $(FUZZ_ENV) cargo fuzz run head $(FUZZ_CORPUS)/head corpus/head -- -max_total_time=$(FUZZ_SECONDS)
	cd fuzz && $(FUZZ_ENV) cargo fuzz run chunked $(FUZZ_CORPUS)/chunked corpus/chunked -- -max_total_time=$(FUZZ_SECONDS) -max_len=16384
	cd fuzz && $(FUZZ_ENV) cargo fuzz run proxy_protocol $(FUZZ_CORPUS)/proxy_protocol corpus/proxy_protocol -- -max_total_time=$(FUZZ_SECONDS)

docs: build ## regenerate docs/options.md from the option declarations
	$(PY) scripts/gen_options.py

fmt: $(STAMP) ## format Rust and Python sources
	cargo fmt --all
	$(VENV)/bin/ruff format python tests examples scripts bench
	$(VENV)/bin/ruff check --fix python tests examples scripts bench

.PHONY: help venv build run test test-versions lint bench fuzz docs fmt
