#!/usr/bin/env bash
# Renders rsp's /stats page in headless Chromium after some real traffic:
# rsp in front of nginx (two ports), a dead server, one server drained.
# Installs nginx, ab and chromium when missing. Usage:
#   scripts/stats-screenshot.sh [OUTPUT.png]     (default docs/stats.png)
set -euo pipefail
cd "$(dirname "$0")/.."
output=$(realpath -m "${1:-docs/stats.png}")
mkdir -p "$(dirname "$output")"
if ! command -v chromium >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
source scripts/nginx-backend.sh
start_nginx 18080 18082
cat > "$work/rsp.lua" <<CONF
listen = "127.0.0.1:18081"
admin = "127.0.0.1:19901"
pools = {
  web = {
    servers = { "127.0.0.1:18080", { addr = "127.0.0.1:18082", weight = 2 }, "127.0.0.1:18089" },
    health = { interval_ms = 500, fall = 1 },
  },
  api = { servers = { "127.0.0.1:18082", { addr = "127.0.0.1:18080", backup = true } }, balance = "leastconn" },
}
function route(req)
  if req.path:sub(1, 5) == "/api/" then return "api" end
  return "web"
end
CONF
RUST_LOG=warn ./target/release/rsp "$work/rsp.lua" &
pids+=($!)
sleep 1
ab -q -k -n 20000 -c 20 http://127.0.0.1:18081/ >/dev/null
ab -q -n 2000 -c 10 http://127.0.0.1:18081/missing >/dev/null || true
ab -q -n 3000 -c 10 http://127.0.0.1:18081/api/ >/dev/null || true
curl -s -X POST -H "X-Rsp-Admin: 1" http://127.0.0.1:19901/pools/web/servers/127.0.0.1:18080/drain
ab -q -n 1000 -c 10 http://127.0.0.1:18081/ >/dev/null

profile=$(mktemp -d)
# The flags keep Chromium from reaching for the network at start.
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --hide-scrollbars --user-data-dir="$profile" --window-size=1500,520 \
    --screenshot="$output" http://127.0.0.1:19901/stats 2>/dev/null
rm -rf "$profile"
echo "stats page rendered to $output"
