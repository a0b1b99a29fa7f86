#!/usr/bin/env bash
# Static files, wizgy beside nginx: the static-small (1 KiB, keep-alive) and static-big (10 MiB)
# workloads of issue #18, and an app request with and without static mounts.
#
#   bench/static.sh                 # 2 rounds of 5 s per run
#   ROUNDS=3 DURATION=5 bench/static.sh
#
# Each server (its whole process tree) runs on core 0, wrk -t1 -c64 on core 1. Reported per run:
# req/s and req/s per server core (requests / CPU seconds of the server's processes, from
# /proc/PID/task/*/stat). nginx is Debian's nginx-light, one worker, sendfile on, tcp_nopush on,
# no gzip_static, access log off; wizgy runs bench/apps/hello.py with --static. Needs wrk and
# nginx (apt-get install wrk nginx-light) and wizgy built into .venv (make build). Every process
# is stopped by PID; every wrk run is bounded by timeout. `make bench` runs the same workloads
# beside granian and uWSGI (bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-5}
WORK=$(mktemp -d /tmp/wizgy-static-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

chmod 755 "$WORK" # nginx's worker runs as another user: it must read the files
mkdir -p "$WORK/root" "$WORK/nginx"
head -c 1024 /dev/urandom >"$WORK/root/small.png"
head -c 1024 /dev/urandom >"$WORK/root/small.css"
head -c $((10 << 20)) /dev/urandom >"$WORK/root/big.bin"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
error_log $WORK/nginx/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types { text/css css; image/png png; application/octet-stream bin; }
  client_body_temp_path $WORK/nginx/body;
  proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi;
  uwsgi_temp_path $WORK/nginx/uwsgi;
  scgi_temp_path $WORK/nginx/scgi;
  server { listen 127.0.0.1:18781; root $WORK/root; }
}
EOF

# The process tree of $1: itself and its children (a supervisor and its worker).
tree() { echo "$1" $(cat /proc/"$1"/task/*/children 2>/dev/null); }
cpu_ticks() {
    local total=0 task fields
    for pid in "$@"; do
        for task in /proc/"$pid"/task/*; do
            read -ra fields <<<"$(sed 's/.*) //' "$task/stat")"
            total=$((total + fields[11] + fields[12]))
        done
    done
    echo "$total"
}
wait_up() {
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$1/" && return 0
        sleep 0.1
    done
    echo "server on port $1 did not come up" >&2
    return 1
}
measure() { # name port path pids...
    local name=$1 port=$2 path=$3
    shift 3
    timeout 20 taskset -c 1 wrk -t1 -c64 -d1s "http://127.0.0.1:$port$path" >/dev/null
    local before after out reqs rps
    before=$(cpu_ticks "$@")
    out=$(timeout $((DURATION + 15)) taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port$path")
    after=$(cpu_ticks "$@")
    if grep -q "Non-2xx" <<<"$out"; then
        echo "$name: error responses, not measured: $(grep Non-2xx <<<"$out")" >&2
        return 1
    fi
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    printf '%-34s %10s req/s %10s req/s per server core\n' "$name" "$rps" \
        "$(python3 -c "t=$after-$before; print(round($reqs*100/t) if t else 'n/a')")"
}

taskset -c 0 nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
PIDS+=($!)
HELLO=(--chdir bench/apps hello:app)
taskset -c 0 .venv/bin/python -m wizgy --bind 127.0.0.1:18782 --static "/=$WORK/root" "${HELLO[@]}" &
PIDS+=($!)
taskset -c 0 .venv/bin/python -m wizgy --bind 127.0.0.1:18783 --static "/static=$WORK/root" \
    --static "/media=$WORK/root" "${HELLO[@]}" &
PIDS+=($!)
taskset -c 0 .venv/bin/python -m wizgy --bind 127.0.0.1:18784 "${HELLO[@]}" &
PIDS+=($!)
for port in 18781 18782 18783 18784; do wait_up $port; done
NGINX=$(tree "${PIDS[0]}")
WIZGY=$(tree "${PIDS[1]}")
MOUNTS=$(tree "${PIDS[2]}")
PLAIN=$(tree "${PIDS[3]}")
for round in $(seq "$ROUNDS"); do
    echo "round $round"
    for file in small.png small.css big.bin; do
        measure "nginx /$file" 18781 "/$file" $NGINX
        measure "wizgy /$file" 18782 "/$file" $WIZGY
    done
    measure "wizgy hello, mounts /static /media" 18783 /hello $MOUNTS
    measure "wizgy hello, no mounts" 18784 /hello $PLAIN
done
