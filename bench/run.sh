#!/usr/bin/env bash
# wizgy's side-by-side benchmark (issue #5): installs the peers into bench/.venv, builds wizgy
# from this checkout and the Rust-only ceiling server, runs bench/bench.py (every workload x
# server x worker count, interleaved) and writes docs/benchmarks.md + docs/benchmarks.png.
#
# Knobs (environment): BENCH_DURATION (s per wrk run, default 5), BENCH_ROUNDS (default 5),
# BENCH_WORKLOADS / BENCH_SERVERS (comma lists, default all), BENCH_SKIP_INSTALL=1 (reuse the
# venv as it is; wizgy is still rebuilt from the checkout), BENCH_PYTHON (default python3).
# Everything listens on 127.0.0.1 only; every server is stopped by its PID.
set -euo pipefail

BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$BENCH/.." && pwd)"
VENV="$BENCH/.venv"
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --quiet --disable-pip-version-check)
export CARGO_TARGET_DIR="$BENCH/target"
LOG="$BENCH/results/install.log"
mkdir -p "$BENCH/results"
: >"$LOG"
start_ts=$(date +%s)

say() { printf '[bench] %s\n' "$*" >&2; }

# --- system packages: wrk (load generator) and libev-dev (bjoern builds against it) ----------
need_apt=()
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)
dpkg -s libev-dev >/dev/null 2>&1 || need_apt+=(libev-dev)
command -v nginx >/dev/null 2>&1 || need_apt+=(nginx-light) # the static workloads
command -v h2load >/dev/null 2>&1 || need_apt+=(nghttp2-client) # the HTTP/2 workloads
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl) # the TLS workloads' certificate
if ((${#need_apt[@]})); then
    say "apt-get install ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    timeout 300 $SUDO apt-get update -qq >>"$LOG" 2>&1 || true
    timeout 600 $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >>"$LOG" 2>&1
fi
command -v taskset >/dev/null || { say "taskset (util-linux) is required"; exit 1; }

# --- the venv and the peers, exactly as shared/PEERS.md says ----------------------------------
if [ ! -x "$PY" ]; then
    say "creating $VENV"
    "${BENCH_PYTHON:-python3}" -m venv "$VENV"
fi
NOTES="$BENCH/results/install-notes.txt"
if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
    : >"$NOTES"
    say "installing peers into $VENV (log: $LOG)"
    timeout 300 "${PIP[@]}" --upgrade pip wheel >>"$LOG" 2>&1
    # setuptools<81 first: fastwsgi 0.0.9 imports pkg_resources.
    timeout 300 "${PIP[@]}" "setuptools<81" >>"$LOG" 2>&1
    for pkg in granian gunicorn waitress bjoern fastwsgi uwsgi pyruvate flask django matplotlib; do
        if ! timeout 600 "${PIP[@]}" "$pkg" >>"$LOG" 2>&1; then
            say "could not install $pkg (see $LOG)"
            echo "$pkg: pip install failed (see bench/results/install.log)" >>"$NOTES"
        fi
    done
    # meinheld 1.0.2 pins a greenlet that does not build on 3.11+: current greenlet, then --no-deps.
    if ! { timeout 300 "${PIP[@]}" greenlet >>"$LOG" 2>&1 &&
        timeout 300 "${PIP[@]}" --no-deps meinheld >>"$LOG" 2>&1 &&
        "$PY" -c "import meinheld.server" >>"$LOG" 2>&1; }; then
        say "meinheld did not build or import: skipped"
        echo "meinheld: did not build or import with a current greenlet; skipped" >>"$NOTES"
        "$PY" -m pip uninstall -y -q meinheld >>"$LOG" 2>&1 || true
    fi
fi

# --- wizgy from this checkout (never a published wheel) ---------------------------------------
say "building wizgy from $ROOT (release)"
timeout 1200 "${PIP[@]}" --no-deps --force-reinstall "$ROOT" >>"$LOG" 2>&1 || {
    say "building wizgy failed; tail of $LOG:"
    tail -30 "$LOG" >&2
    exit 1
}

# --- the Rust-only ceiling: hyper 1.x, tokio current-thread, no Python -------------------------
say "building bench/ceiling"
timeout 900 cargo build --quiet --release --manifest-path "$BENCH/ceiling/Cargo.toml" >>"$LOG" 2>&1 || {
    say "building bench/ceiling failed; tail of $LOG:"
    tail -30 "$LOG" >&2
    exit 1
}
export BENCH_CEILING_BIN="$CARGO_TARGET_DIR/release/wizgy-bench-ceiling"

# --- run, then report ---------------------------------------------------------------------------
export BENCH_INSTALL_SECONDS=$(($(date +%s) - start_ts))
# The exact command recorded in the report.
export BENCH_COMMAND="${BENCH_COMMAND:-$(
    for v in BENCH_DURATION BENCH_ROUNDS BENCH_WORKLOADS BENCH_SERVERS BENCH_RESULTS; do
        [ -n "${!v:-}" ] && printf '%s=%q ' "$v" "${!v}"
    done
    printf 'bench/run.sh'
)}"
cd "$BENCH"
# The driver (and its /proc sampler) stays on the client core, away from the server.
# Run in the background and wait, so a TERM/INT to this script reaches the driver, which then
# stops the server it is measuring (by PID) before exiting.
taskset -c 1 "$PY" "$BENCH/bench.py" &
driver=$!
trap 'kill -TERM "$driver" 2>/dev/null || true' TERM INT
rc=0
wait "$driver" || rc=$?
if [ "$rc" -gt 128 ] && kill -0 "$driver" 2>/dev/null; then
    wait "$driver" || true # interrupted: let the driver stop its server first
fi
[ "$rc" -eq 0 ] || { say "bench.py failed ($rc)"; exit 1; }
trap - TERM INT
"$PY" "$BENCH/report.py" "$BENCH/results/${BENCH_RESULTS:-results.json}"
say "done in $(($(date +%s) - start_ts)) s: docs/benchmarks.md, docs/benchmarks.png, bench/results/results.json"
