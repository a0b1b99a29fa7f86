#!/usr/bin/env bash
# Interleaved A/B of wizgy builds on one workload: the quick check behind each optimization of
# issue #5 (the full side-by-side run is run.sh).
#
#   bench/compare.sh APP ROUNDS LABEL=SOFILE ... [-- WIZGY_ARGS...]
#   e.g. make build; cp python/wizgy/_native.cpython-311-x86_64-linux-gnu.so /tmp/a.so
#        (change, make build again) ...            /tmp/b.so
#        bench/compare.sh hello:app 4 before=/tmp/a.so after=/tmp/b.so
#   A build may carry options of its own after commas, for an A/B of one build's settings:
#        bench/compare.sh hello:app 5 off=/tmp/a.so,--inline,off auto=/tmp/a.so
#
# Each round starts the server once per build (1 worker, defaults, pinned to core 0), warms up
# 1 s, then runs wrk (-t1 -c64, pinned to core 1) for BENCH_DURATION seconds (default 3) while
# `perf stat` counts the worker's CPU time, context switches and system calls. Prints, per
# build, medians (and min-max) of req/s, server CPU per request, context switches, syscalls and page faults
# per request, and wrk's p99 latency.
# APP is MODULE:CALLABLE in bench/apps. WRKARGS adds wrk options (e.g. -s bench/lua/post.lua).
# The build under test is copied over the editable install in python/wizgy/, and the build
# that was there is put back at the end. Only 127.0.0.1; every process is stopped by PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
app=$1
rounds=$2
shift 2
builds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    builds+=("$1")
    shift
done
[ "${1:-}" = "--" ] && shift
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
swap_builds
port=${BENCH_PORT:-8119}
duration=${BENCH_DURATION:-3}
events=task-clock,context-switches,raw_syscalls:sys_enter,page-faults
out=$(mktemp)

run_one() {
    local label=$1
    use_build "$2"
    shift 2
    start_wizgy "$port" "$app" "${build_args[@]}" "$@"
    local worker
    worker=$(ss -ltnpH "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
    taskset -c 1 timeout 20 wrk -t1 -c64 -d1s ${WRKARGS:-} "http://127.0.0.1:$port/" >/dev/null
    local stat
    stat=$(mktemp)
    taskset -c 1 timeout $((duration + 10)) wrk -t1 -c64 -d"${duration}s" --latency ${WRKARGS:-} \
        "http://127.0.0.1:$port/" >"$stat.wrk" &
    local wrk=$!
    perf stat -x, -e "$events" -p "$worker" -o "$stat" -- sleep "$duration" 2>/dev/null || true
    wait "$wrk" || true
    stop_wizgy
    local rps p99
    rps=$(awk '/Requests\/sec/{print $2}' "$stat.wrk")
    # wrk prints the 99th percentile as e.g. "99%    1.87ms" (us, ms or s): in ms here.
    p99=$(awk '$1 == "99%" {v = $2; u = v; gsub(/[0-9.]/, "", u); sub(/[a-z]+$/, "", v);
        print (u == "us" ? v / 1000 : (u == "s" ? v * 1000 : v))}' "$stat.wrk")
    awk -F, -v label="$label" -v rps="$rps" -v p99="${p99:-0}" -v d="$duration" '
        $3 == "task-clock" {cpu = $1}
        $3 == "context-switches" {cs = $1}
        $3 == "raw_syscalls:sys_enter" {sc = $1}
        $3 == "page-faults" {pf = $1}
        END {n = rps * d; if (n > 0) printf "%s %.0f %.2f %.3f %.2f %.2f %.3f\n", label, rps, cpu * 1000 / n, cs / n, sc / n, p99, pf / n}
    ' "$stat" | tee -a "$out"
    rm -f "$stat" "$stat.wrk"
}

echo "label req/s cpu_us/req switches/req syscalls/req p99_ms faults/req"
for _ in $(seq "$rounds"); do
    for build in "${builds[@]}"; do
        run_one "${build%%=*}" "${build#*=}" "$@"
    done
done
echo "--- medians"
python3 - "$out" <<'EOF'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    label, *values = line.split()
    rows.setdefault(label, []).append([float(v) for v in values])
for label, runs in rows.items():
    cols = list(zip(*runs))
    med = [statistics.median(col) for col in cols]
    print(f"{label}: {med[0]:.0f} req/s ({min(cols[0]):.0f}-{max(cols[0]):.0f}), "
          f"{med[1]:.2f} us CPU/req ({min(cols[1]):.2f}-{max(cols[1]):.2f}), "
          f"{med[2]:.3f} switches/req, {med[3]:.2f} syscalls/req, p99 {med[4]:.2f} ms, "
          f"{med[5]:.3f} page faults/req (n={len(runs)}; median, min-max)")
EOF
rm -f "$out"
