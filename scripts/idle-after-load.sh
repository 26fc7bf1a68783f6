#!/bin/bash
# What 5,000 idle keep-alive clients cost rsp and HAProxy, on a fresh
# process and on one that has just carried 50 clients of 1 MB and then
# 10 MB answers (wrk -c50, 5 s each): whether a burst leaves memory held.
#
#   scripts/idle-after-load.sh [CLIENTS]
#
# nginx serves the files behind both; one worker (one thread) each. Prints,
# for each proxy and state, idle-clients.py's line, and the cost counted
# from the fresh process's RSS (what the load left, plus the clients).
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-5000}
cargo build --release --quiet
work=$(mktemp -d); chmod 755 "$work"; mkdir -p "$work/www"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
head -c 600 /dev/zero | tr '\0' x > "$work/www/index.html"
head -c 1000000 /dev/urandom > "$work/www/1m.bin"
head -c 10000000 /dev/urandom > "$work/www/10m.bin"
ulimit -n "$(ulimit -Hn)"
backend=$((20000 + RANDOM % 10000)); port=$((backend + 1))
cat > "$work/nginx.conf" <<CONF
worker_processes 1; pid $work/nginx.pid; error_log $work/nginx.log;
events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; server { listen 127.0.0.1:$backend; root $work/www; } }
CONF
nginx -c "$work/nginx.conf"
cat > "$work/rsp.lua" <<CONF
listen = "127.0.0.1:$port"
backends = { "127.0.0.1:$backend" }
max_connections = $((clients + 1000))
CONF
cat > "$work/haproxy.cfg" <<CONF
global
  maxconn $((clients + 1000))
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend f
  bind 127.0.0.1:$port
  default_backend b
backend b
  server s1 127.0.0.1:$backend
CONF
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
for name in rsp haproxy; do
    for state in fresh loaded; do
        case $name in
            rsp) target/release/rsp "$work/rsp.lua" 2>"$work/rsp.log" & ;;
            haproxy) haproxy -db -f "$work/haproxy.cfg" 2>"$work/haproxy.log" & ;;
        esac
        pid=$!; pids+=("$pid")
        sleep 0.5
        fresh=$(rss "$pid")
        if [ "$state" = loaded ]; then
            wrk -t2 -c50 -d5s "http://127.0.0.1:$port/1m.bin" >/dev/null
            wrk -t2 -c50 -d5s "http://127.0.0.1:$port/10m.bin" >/dev/null
            sleep 1.5
        fi
        line=$(python3 scripts/idle-clients.py "$port" "$clients" "$pid" "$name")
        with=$(sed 's/.*KiB before, \([0-9]*\) KiB with them.*/\1/' <<<"$line")
        echo "$state: $line; $(( (with - fresh) * 1024 / clients )) bytes per client over the fresh RSS ($fresh KiB)"
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
done
