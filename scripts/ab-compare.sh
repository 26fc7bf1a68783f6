#!/usr/bin/env bash
# Two rsp binaries on one test, in alternating rounds, each pinned to CPU 1
# in front of one nginx worker: for telling a regression from the noise of
# a full scripts/bench.sh run.
#
#   scripts/ab-compare.sh OLD_BINARY NEW_BINARY PATH [ROUNDS]
#   PATH: / (600 bytes), /100k.bin, /1m.bin or /10m.bin
#   CONNECTIONS=N (default 100) wrk connections
#   OLD_SETTINGS, NEW_SETTINGS: more config lines for each (e.g. buffer_bytes = 262144)
set -euo pipefail
old=$1 new=$2 path=$3 rounds=${4:-4}
work=$(mktemp -d); chmod 755 $work; mkdir -p $work/www
head -c 102400 /dev/urandom > $work/www/100k.bin; head -c 600 /dev/zero | tr '\0' x > $work/www/index.html
head -c 1048576 /dev/urandom > $work/www/1m.bin
head -c 10485760 /dev/urandom > $work/www/10m.bin
cat > $work/nginx.conf <<CONF
worker_processes 1; pid $work/nginx.pid; error_log $work/e.log; events { worker_connections 8192; }
http { access_log off; keepalive_requests 1000000; server { listen 127.0.0.1:28080; root $work/www; } }
CONF
nginx -c $work/nginx.conf
for port in 28081 28082; do printf 'listen = "127.0.0.1:%s"\nbackends = { "127.0.0.1:28080" }\nmax_connections = 60000\n' $port > $work/$port.lua; done
echo "${OLD_SETTINGS:-}" >> $work/28081.lua
echo "${NEW_SETTINGS:-}" >> $work/28082.lua
RUST_LOG=warn taskset -c 1 $old $work/28081.lua & p1=$!
RUST_LOG=warn taskset -c 1 $new $work/28082.lua & p2=$!
sleep 0.5
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
for r in $(seq 1 $rounds); do
  for t in "old 28081 $p1" "new 28082 $p2"; do
    read name port pid <<<"$t"
    b=$(ticks $pid)
    out=$(wrk -t1 -c"${CONNECTIONS:-100}" -d5s --latency http://127.0.0.1:$port$path 2>&1)
    a=$(ticks $pid)
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out"); n=$(awk '/requests in/ {print $1}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    echo "$r $name $rps req/s cpu $(awk -v t=$((a-b)) -v n=$n 'BEGIN{printf "%.2f", t/100*1e6/n}') us/req p99 $p99"
  done
done
kill $p1 $p2; kill "$(cat $work/nginx.pid)"; rm -rf "$work"
