#!/usr/bin/env bash
# What the operations surface costs on hello-world (issue 21): req/s with nothing on, with
# --metrics-bind, and with --access-log FILE --access-log-format json, in interleaved rounds.
#
#   bench/ops_cost.sh [ROUNDS]      (default 5; BENCH_DURATION seconds per run, default 5)
#
# Each run starts one server (1 worker, pinned to core 0), warms it up for 1 s, then runs wrk
# (-t1 -c64, pinned to core 1). Prints each run, then per variant the median req/s, the spread
# (min-max) and the median's ratio to the baseline. Only 127.0.0.1; every process is stopped
# by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rounds=${1:-5}
duration=${BENCH_DURATION:-5}
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
port=${BENCH_PORT:-8121}
mport=$((port + 1))
logdir=$(mktemp -d)
out=$(mktemp)
trap 'rm -rf "$logdir" "$out"' EXIT

run_one() {
    local label=$1
    shift
    start_wizgy "$port" hello:app "$@"
    taskset -c 1 timeout 20 wrk -t1 -c64 -d1s "http://127.0.0.1:$port/" >/dev/null
    local rps
    rps=$(taskset -c 1 timeout $((duration + 10)) wrk -t1 -c64 -d"${duration}s" \
        "http://127.0.0.1:$port/" | awk '/Requests\/sec/{print $2}')
    stop_wizgy
    rm -f "$logdir/access.log"
    echo "$label $rps" | tee -a "$out"
}

for round in $(seq "$rounds"); do
    echo "# round $round"
    run_one base
    run_one metrics --metrics-bind "127.0.0.1:$mport"
    run_one json --access-log "$logdir/access.log" --access-log-format json
    run_one gunicorn_format --access-log "$logdir/access.log"
done

echo "# variant median min max ratio_to_base"
awk '{v[$1] = v[$1] " " $2} END {for (k in v) print k, v[k]}' "$out" | while read -r label values; do
    sorted=$(echo "$values" | tr ' ' '\n' | sort -n)
    n=$(echo "$sorted" | wc -l)
    median=$(echo "$sorted" | awk -v n="$n" 'NR == int((n + 1) / 2) {print}')
    echo "$label $median $(echo "$sorted" | head -1) $(echo "$sorted" | tail -1)"
done | sort >"$out.sum"
base=$(awk '$1 == "base" {print $2}' "$out.sum")
awk -v base="$base" '{printf "%s %.0f %.0f %.0f %.3f\n", $1, $2, $3, $4, $2 / base}' "$out.sum"
rm -f "$out.sum"
