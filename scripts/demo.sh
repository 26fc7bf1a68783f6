#!/usr/bin/env bash
# Runs rsp in front of two real web servers (python3 -m http.server on
# 127.0.0.1:8081 and :8082) with examples/demo.lua on 127.0.0.1:8080.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v python3 >/dev/null || { echo "demo.sh needs python3" >&2; exit 1; }
cargo build --release --quiet

site=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$site"
}
trap cleanup EXIT INT TERM

for port in 8081 8082; do
    mkdir -p "$site/$port"
    echo "hello from the backend on port $port" > "$site/$port/index.html"
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$site/$port" >/dev/null 2>&1 &
    pids+=($!)
done
sleep 0.5
for pid in "${pids[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "demo.sh: a backend could not start; are ports 8081 and 8082 free?" >&2; exit 1; }
done

cat <<'TEXT'
rsp is starting on http://127.0.0.1:8080/ in front of two python3 http.server backends.
Try, from another terminal:
  curl http://127.0.0.1:8080/          # answered by 8081 and 8082 in turn
  curl http://127.0.0.1:8080/ping      # answered by rsp itself (route() in examples/demo.lua)
  curl --http2-prior-knowledge http://127.0.0.1:8080/   # the same over HTTP/2 (h2c)
  open http://127.0.0.1:9901/stats     # the stats page; /metrics for Prometheus
  ab -n 10000 -c 50 http://127.0.0.1:8080/
  ab -k -n 10000 -c 50 http://127.0.0.1:8080/
  h2load -n 10000 -c 10 -m 10 http://127.0.0.1:8080/   # HTTP/2, 10 streams a connection
Ctrl-C stops rsp and the backends.
TEXT
./target/release/rsp examples/demo.lua &
pids+=($!)
wait "${pids[-1]}"
