#!/usr/bin/env bash
# The fast route's latency while slow requests hold app threads (issue 17): wrk keeps
# BENCH_SLOW (64) requests to /slow (10 ms sleeps) in flight while one client sends
# BENCH_FAST (2000) sequential keep-alive requests to /fast and times each. Prints the fast
# route's p50/p99/max and wrk's slow req/s, per build spec (as in compare.sh: LABEL=SOFILE with
# options after commas), over ROUNDS interleaved rounds.
#
#   bench/mixed.sh ROUNDS off=/tmp/a.so,--inline,off auto=/tmp/a.so
#
# Server on core 0, clients on core 1; only 127.0.0.1; the server is stopped by its PID.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
rounds=$1
shift
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
swap_builds
port=${BENCH_PORT:-8131}
slow=${BENCH_SLOW:-64}
fast=${BENCH_FAST:-2000}

one() {
    local label=$1
    use_build "$2"
    start_wizgy "$port" mixed:app "${build_args[@]}"
    taskset -c 1 timeout 60 wrk -t1 -c"$slow" -d30s "http://127.0.0.1:$port/slow" >/tmp/mixed.wrk &
    local wrk=$!
    sleep 1
    taskset -c 1 "$py" - "$port" "$fast" "$label" <<'PY'
import socket, statistics, sys, time
port, n, label = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
sock = socket.create_connection(("127.0.0.1", port), 5)
req = b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"
took = []
deadline = time.monotonic() + 20
for _ in range(n):
    if time.monotonic() > deadline:
        break
    t = time.perf_counter()
    sock.sendall(req)
    got = b""
    while not got.endswith(b"\r\n\r\nok"):
        chunk = sock.recv(4096)
        if not chunk:
            raise SystemExit("closed")
        got += chunk
    took.append((time.perf_counter() - t) * 1000)
took.sort()
q = lambda p: took[min(len(took) - 1, int(p * len(took)))]
print(f"{label} fast: n={len(took)} p50 {q(0.5):.2f} ms p99 {q(0.99):.2f} ms max {took[-1]:.2f} ms")
PY
    kill -INT "$wrk" 2>/dev/null || true
    wait "$wrk" 2>/dev/null || true
    echo "$label slow: $(awk '/Requests\/sec/{print $2}' /tmp/mixed.wrk) req/s"
    stop_wizgy
}

for _ in $(seq "$rounds"); do
    for build in "$@"; do
        one "${build%%=*}" "${build#*=}"
    done
done
