#!/usr/bin/env bash
# User-space instructions per request of one wizgy build, counted by valgrind's callgrind: a
# figure that repeats within ~1 % from run to run, where req/s on this VM moves by 5-10 %.
# It is how issue #5's fifth pass found and checked its changes (the environ, allocations).
#
#   bench/callgrind.sh APP [SOFILE]       e.g. bench/callgrind.sh hello:app /tmp/a.so
#
# The app (MODULE:CALLABLE in bench/apps) is served in-process by wizgy.serve() (one worker,
# no supervisor) under callgrind with instrumentation off; after a warm-up, instrumentation is
# switched on for BENCH_DURATION seconds (default 6) of wrk -t1 -c16 (WRKARGS adds options),
# then the counts are dumped. Prints instructions per request and leaves the profile in
# bench/results/callgrind/ for `callgrind_annotate --inclusive=yes FILE`. Kernel time is not
# counted (valgrind sees user space only), and threads run one at a time under valgrind, so
# compare builds with this and confirm with bench/compare.sh. Needs valgrind (Debian package).
# BENCH_CLIENT=h2 drives HTTP/2 (h2c) instead: h2load -c16 -m10 (Debian's nghttp2-client).
# Only 127.0.0.1; the server is stopped by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
app=$1
so=${2:-}
duration=${BENCH_DURATION:-6}
port=${BENCH_PORT:-8161}
py="$root/.venv/bin/python"
out_dir="$root/bench/results/callgrind"
mkdir -p "$out_dir"
command -v valgrind >/dev/null || { echo "callgrind.sh: valgrind is not installed" >&2; exit 2; }

suffix=$("$py" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
installed="$root/python/wizgy/_native$suffix"
saved=""
if [ -n "$so" ]; then
    saved=$(mktemp)
    cp "$installed" "$saved"
    cp "$so" "$installed"
fi
label=$(basename "${so:-current}" .so)-${app%%:*}
profile="$out_dir/$label.out"
pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -INT "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$profile".[0-9]*  # the dump valgrind writes at exit (counting was off)
    if [ -n "$saved" ]; then
        cp "$saved" "$installed"
        rm -f "$saved"
    fi
}
trap cleanup EXIT

rm -f "$out_dir/$label".out*
cd "$here/apps"
valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$profile.%p" \
    "$py" -c "
import importlib, sys, wizgy
module, _, name = sys.argv[1].partition(':')
wizgy.serve(getattr(importlib.import_module(module), name), bind=sys.argv[2], log_level='warning')
" "$app" "127.0.0.1:$port" >"$out_dir/$label.log" 2>&1 &
pid=$!
for _ in $(seq 300); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && break
    sleep 0.2
done
load() {
    if [ "${BENCH_CLIENT:-}" = h2 ]; then
        timeout $(($1 + 30)) h2load -c16 -m10 -D"$1" "http://127.0.0.1:$port/"
    else
        # shellcheck disable=SC2086
        timeout $(($1 + 30)) wrk -t1 -c16 -d"$1s" ${WRKARGS:-} "http://127.0.0.1:$port/"
    fi
}
load 2 >/dev/null
callgrind_control -i on "$pid" >/dev/null 2>&1
result=$(load "$duration")
callgrind_control -i off "$pid" >/dev/null 2>&1
callgrind_control -d "$pid" >/dev/null 2>&1
if [ "${BENCH_CLIENT:-}" = h2 ]; then
    label="$label-h2"
    requests=$(echo "$result" | awk '/^requests:/{print $8}')
else
    requests=$(echo "$result" | awk '/requests in/{print $1}')
fi
dump=$(ls -t "$profile".*.1 | head -1)
mv "$dump" "$profile"
instructions=$(grep '^totals:' "$profile" | tail -1 | cut -d' ' -f2)
echo "$label: $requests requests, $((instructions / requests)) instructions per request ($profile)"
