#!/usr/bin/env bash
# ab through rsp in front of nginx, beside ab straight at the same nginx.
# Installs nginx and ab (apache2-utils) when missing. Usage:
#   scripts/ab-nginx.sh [REQUESTS] [CONCURRENCY]
# Prints requests/s and failed requests for each run and the rsp/nginx ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
requests=${1:-100000}
concurrency=${2:-100}

source scripts/nginx-backend.sh
start_nginx 18080
cat > "$work/rsp.lua" <<CONF
listen = "127.0.0.1:18081"
backends = { "127.0.0.1:18080" }
CONF
RUST_LOG=warn ./target/release/rsp "$work/rsp.lua" &
pids+=($!)
sleep 0.5

run() { # name url flags...
    local name=$1 url=$2
    shift 2
    local out
    out=$(ab -q "$@" -n "$requests" -c "$concurrency" "$url" 2>&1)
    local rps failed non2xx
    rps=$(awk '/Requests per second/ {print $4}' <<<"$out")
    failed=$(awk '/Failed requests/ {print $3}' <<<"$out")
    non2xx=$(awk '/Non-2xx responses/ {print $3}' <<<"$out")
    printf '%-22s %12s req/s   failed %s   non-2xx %s\n' "$name" "$rps" "$failed" "${non2xx:-0}" >&2
    echo "$rps"
}
echo "ab -n $requests -c $concurrency, 600-byte page, nginx with 1 worker, rsp with 1 thread" >&2
for keep in "" "-k"; do
    direct=$(run "nginx ${keep:-}" http://127.0.0.1:18080/ $keep)
    proxied=$(run "rsp -> nginx ${keep:-}" http://127.0.0.1:18081/ $keep)
    awk -v p="$proxied" -v d="$direct" -v k="${keep:-no -k}" 'BEGIN {printf "ratio rsp/nginx (%s): %.2f\n", k, p / d}'
done
