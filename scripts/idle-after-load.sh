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
for tool in haproxy wrk; do
    if ! command -v "$tool" >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy wrk >/dev/null
    fi
done
# nginx and the release build, $work/www, `pids` and the cleanup on exit.
source scripts/nginx-backend.sh
head -c 1000000 /dev/urandom > "$work/www/1m.bin"
head -c 10000000 /dev/urandom > "$work/www/10m.bin"
ulimit -n "$(ulimit -Hn)"
backend=$((20000 + RANDOM % 10000)); proxy=$((backend + 1))
start_nginx "$backend"
cat > "$work/rsp.lua" <<CONF
listen = "127.0.0.1:$proxy"
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
  bind 127.0.0.1:$proxy
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
        fresh=$(rss "$pid") || { cat "$work/$name.log" >&2; exit 1; }
        if [ "$state" = loaded ]; then
            wrk -t2 -c50 -d5s "http://127.0.0.1:$proxy/1m.bin" >/dev/null
            wrk -t2 -c50 -d5s "http://127.0.0.1:$proxy/10m.bin" >/dev/null
            sleep 1.5
        fi
        line=$(python3 scripts/idle-clients.py "$proxy" "$clients" "$pid" "$name")
        with=$(sed 's/.*KiB before, \([0-9]*\) KiB with them.*/\1/' <<<"$line")
        echo "$state: $line; $(( (with - fresh) * 1024 / clients )) bytes per client over the fresh RSS ($fresh KiB)"
        kill "$pid"; wait "$pid" 2>/dev/null || true
    done
done
