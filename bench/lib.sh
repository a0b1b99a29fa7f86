# Sourced by compare.sh, mixed.sh and ops_cost.sh: a wizgy server from this checkout started on
# core 0 and stopped by its PID, and builds under test swapped into the editable install.
# Expects $here (bench/) and $root (the checkout) to be set.
py="$root/.venv/bin/python"

# Builds under test are copied over python/wizgy's native module; the one that was there is put
# back when the script exits.
swap_builds() {
    so=$(ls "$root"/python/wizgy/_native.cpython-311-*.so)
    saved=$(mktemp)
    cp "$so" "$saved"
    trap 'cp "$saved" "$so"; rm -f "$saved"' EXIT
}

# use_build SPEC: SPEC is SOFILE, then options of its own after commas (SOFILE,--inline,off).
# Installs SOFILE and leaves the options in build_args.
use_build() {
    local file=${1%%,*}
    build_args=()
    if [ "$file" != "$1" ]; then IFS=, read -r -a build_args <<<"${1#*,}"; fi
    cp "$file" "$so"
}

# start_wizgy PORT APP ARGS...: serves APP (MODULE:CALLABLE in bench/apps) on 127.0.0.1:PORT,
# pinned to core 0, and waits (at most 10 s) until it answers. Sets server_pid.
start_wizgy() {
    local port=$1 app=$2
    shift 2
    (cd "$here/apps" && exec taskset -c 0 "$py" -m wizgy --bind "127.0.0.1:$port" "$@" "$app") \
        >/dev/null 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        curl -s -o /dev/null "http://127.0.0.1:$port/" && break
        sleep 0.1
    done
}

# stop_wizgy: SIGINT, at most 5 s for the graceful stop, then SIGKILL; by PID.
stop_wizgy() {
    kill -INT "$server_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
}
