#!/usr/bin/env bash
# rsp beside HAProxy and nginx, on this machine, in one run.
#
#   scripts/bench.sh [ROUNDS]         throughput (default 5 interleaved rounds)
#   scripts/bench.sh memory [N]       RSS of N idle keep-alive clients (default 10000)
#
# One nginx worker is the backend (a 600-byte page, 100 KB, 1 MB and 10 MB
# files). In
# front of it, on loopback: rsp (one worker), HAProxy (nbthread 1, http-reuse
# always) and nginx as a proxy (one worker, upstream keepalive); and rsp with
# two workers, to show how it scales (this machine has 2 cores, shared with
# the load generator and the backend).
# Each round runs every test against every target in turn; the report takes
# medians. The one-worker proxies all run pinned to CPU 1 (BENCH_PIN=0 turns
# that off), the same for each: unpinned, where the scheduler happened to
# put the three busy processes moved results by 10% from run to run.
# Results go to bench-results/ as a Markdown table, the raw CSV and an SVG
# chart. Installs nginx, haproxy, ab and wrk when missing.
# BENCH_BASELINE=PATH adds the rsp binary at PATH (one worker, pinned like
# the others) as target "rsp-before", so a change is measured against the
# code before it in the same run.
# BENCH_RSP_SETTINGS: more config lines for every rsp (for trying a setting).
# BENCH_SHAPING=1 adds target "rsp-shaping": one-worker rsp whose route()
# sets one request header and whose respond() sets one response header, so
# what the hooks cost shows as rsp-shaping/rsp in the same run.
# BENCH_LIMITED=1 adds target "rsp-limited": one-worker rsp whose route()
# asks a per-IP rate limit (rsp.limit, set high enough to refuse nothing).
# BENCH_SHARED=1 adds target "rsp-shared": rsp-limited's per-IP limit,
# shared through a local redis-server (sync_ms 50), and says how many
# commands Redis processed per second while the rounds ran.
# BENCH_CACHE=1 adds the caches, each answering from what it stored (the
# backend's files, which say no freshness, kept an hour): "rsp-cache"
# (one-worker rsp, cache = { default_ttl = 3600 }), "varnish" (Debian's
# varnishd, -s malloc,256m, one thread pool, default_ttl 3600) and
# "nginx-cache" (one worker, proxy_cache in memory-backed tmpfs,
# proxy_cache_valid 1h); each warmed before the rounds. The report adds
# rsp-cache against the faster of the two. Installs varnish when missing.
# BENCH_COMPRESS=1 adds "rsp-gzip" (one-worker rsp, compress at gzip level
# 5) and "nginx-gzip" (the nginx proxy with gzip on, level 5), and the test
# wrk-gzip (100 KB of text, Accept-Encoding: gzip), which only they run, and
# they only it.
# BENCH_TESTS chooses the tests (default all): ab ab-k wrk wrk-100k (100
# clients), wrk-1m wrk-10m (10 clients, large bodies), tls-handshake (ab
# over https without keep-alive: a full handshake per request) and tls-k
# (wrk over https, keep-alive). The TLS tests use one certificate for every
# proxy: BENCH_TLS_KEY=rsa (RSA-2048, the default) or ecdsa (P-256).
# The h2 tests speak HTTP/2 over TLS to the proxies (ALPN h2, the same
# certificate; the backend stays HTTP/1.1): h2 and h2-100k (h2load with 100
# clients of 10 streams each, the small page and 100 KB: BENCH_H2_REQUESTS
# requests, default 100000, and BENCH_H2_LARGE_REQUESTS for 100 KB, default
# a tenth of them) and h2-idle (bytes of proxy RSS per idle HTTP/2
# connection, BENCH_H2_IDLE of them, default 1000, by
# scripts/idle-h2-clients.py: once, before the rounds, while the processes
# are fresh). BENCH_TESTS="h2 h2-100k h2-idle" runs only them. Installs
# h2load (nghttp2-client) and Python's h2 when missing.
# BENCH_PORT (default 18080): the backend's port; the proxies listen on
# ports up to 27 above it (HTTP on BENCH_PORT + 1 to 7, TLS 10 above, h2 20
# above), for a machine where those are taken.
# RSP_BINARY: the rsp to measure (default target/release/rsp, under
# CARGO_TARGET_DIR when that is set; scripts/nginx-backend.sh builds it).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=throughput
if [ "${1:-}" = memory ]; then
    mode=memory
    shift
fi
rounds=${1:-5}
idle=${1:-10000}
requests=${BENCH_REQUESTS:-100000}
concurrency=${BENCH_CONCURRENCY:-100}
seconds=${BENCH_SECONDS:-5}
tests=${BENCH_TESTS:-ab ab-k wrk wrk-100k wrk-1m wrk-10m tls-handshake tls-k h2 h2-100k h2-idle}
tls_requests=${BENCH_TLS_REQUESTS:-5000}
h2_requests=${BENCH_H2_REQUESTS:-100000}
h2_large_requests=${BENCH_H2_LARGE_REQUESTS:-$((h2_requests / 10))}
h2_idle=${BENCH_H2_IDLE:-1000}
rsp_binary=${RSP_BINARY:-${CARGO_TARGET_DIR:-target}/release/rsp}
base=${BENCH_PORT:-18080}
large_concurrency=${BENCH_LARGE_CONCURRENCY:-10}
pin=()
if [ "${BENCH_PIN:-1}" != 0 ] && [ "$(nproc)" -gt 1 ]; then
    pin=(taskset -c 1)
fi

for tool in nginx haproxy ab wrk curl python3; do
    if ! command -v "$tool" >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy apache2-utils wrk curl python3 >/dev/null
        break
    fi
done
if ! command -v h2load >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client >/dev/null
fi
python3 -c 'import h2' 2>/dev/null || python3 -m pip install -q h2
# haproxy's package starts a system instance; it is not ours to measure.
systemctl stop haproxy 2>/dev/null || true
source scripts/nginx-backend.sh
head -c 102400 /dev/urandom > "$work/www/100k.bin"
head -c 1048576 /dev/urandom > "$work/www/1m.bin"
head -c 10485760 /dev/urandom > "$work/www/10m.bin"
# 100 KB of text, as compressible as a page.
python3 -c "import sys; sys.stdout.write(''.join('line %d of a page of text, as a site sends\n' % n for n in range(2400))[:102400])" > "$work/www/100k.txt"
# One certificate for every proxy's TLS listener.
mkdir -p "$work/tls"
case ${BENCH_TLS_KEY:-rsa} in
    rsa) key_options=(-newkey rsa:2048) ;;
    ecdsa) key_options=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1) ;;
    *) echo "bench.sh: BENCH_TLS_KEY is rsa or ecdsa" >&2; exit 2 ;;
esac
openssl req -x509 "${key_options[@]}" -nodes -days 2 -subj /CN=bench.example \
    -keyout "$work/tls/key.pem" -out "$work/tls/cert.pem" 2>/dev/null
cat "$work/tls/cert.pem" "$work/tls/key.pem" > "$work/tls/combined.pem"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
# HAProxy reserves two descriptors per connection up front.
haproxy_maxconn=$(( ($(ulimit -n) - 200) / 2 ))

start_nginx $base

start_rsp() { # PORT WORKERS [BINARY [MORE SETTINGS]]; TLS on PORT + 10, TLS for h2 on PORT + 20
    # Both TLS listeners offer h2 and http/1.1 over ALPN (rsp's default):
    # PORT + 20 is the h2 tests' port, as it is for the other proxies.
    # Settings with pools of their own name the backend there.
    local backends_line="backends = { \"127.0.0.1:$base\" }"
    [[ "${4:-}" == *"pools = "* ]] && backends_line=""
    cat > "$work/rsp-$1.lua" <<CONF
listen = {
  "127.0.0.1:$1",
  { addr = "127.0.0.1:$(($1 + 10))", tls = { cert = "$work/tls/cert.pem", key = "$work/tls/key.pem" } },
  { addr = "127.0.0.1:$(($1 + 20))", tls = { cert = "$work/tls/cert.pem", key = "$work/tls/key.pem" } },
}
$backends_line
max_connections = 60000
workers = $2
${BENCH_RSP_SETTINGS:-}
${4:-}
CONF
    local run=()
    [ "$2" = 1 ] && run=("${pin[@]}")
    RUST_LOG=warn "${run[@]}" "${3:-$rsp_binary}" "$work/rsp-$1.lua" &
    pids+=($!)
}
start_rsp $((base + 1)) 1
rsp_pid=${pids[-1]}
start_rsp $((base + 4)) 2
rsp2_pid=${pids[-1]}
if [ -n "${BENCH_BASELINE:-}" ]; then
    start_rsp $((base + 5)) 1 "$BENCH_BASELINE"
    before_pid=${pids[-1]}
fi
if [ "${BENCH_SHAPING:-0}" = 1 ]; then
    start_rsp $((base + 6)) 1 "$rsp_binary" '
function route(req)
  req:set_header("X-Tenant", "bench")
  return "default"
end
function respond(req, res)
  res:set_header("Strict-Transport-Security", "max-age=63072000")
end'
    shaping_pid=${pids[-1]}
fi
if [ "${BENCH_LIMITED:-0}" = 1 ]; then
    start_rsp $((base + 7)) 1 "$rsp_binary" '
limits = { per_ip = { rate = 1000000000, per = "second", burst = 1000000000 } }
function route(req)
  local ok, retry_after = rsp.limit("per_ip", req.client_ip)
  if not ok then return { status = 429, headers = { ["Retry-After"] = retry_after } } end
  return "default"
end'
    limited_pid=${pids[-1]}
fi
if [ "${BENCH_SHARED:-0}" = 1 ]; then
    command -v redis-server >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }
    redis_port=$((base + 40))
    redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --daemonize no >/dev/null 2>&1 &
    pids+=($!)
    sleep 0.3
    start_rsp $((base + 8)) 1 "$rsp_binary" "
redis = { servers = { \"127.0.0.1:$redis_port\" } }
limits = { per_ip = { rate = 1000000000, per = \"second\", burst = 1000000000, shared = true, sync_ms = 50 } }
function route(req)
  local ok, retry_after = rsp.limit(\"per_ip\", req.client_ip)
  if not ok then return { status = 429, headers = { [\"Retry-After\"] = retry_after } } end
  return \"default\"
end"
    shared_pid=${pids[-1]}
fi

if [ "${BENCH_CACHE:-0}" = 1 ]; then
    command -v varnishd >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq varnish >/dev/null; }
    systemctl stop varnish 2>/dev/null || true
    start_rsp $((base + 30)) 1 "$rsp_binary" '
cache = { memory = "256m", default_ttl = 3600 }
pools = { default = { servers = { "127.0.0.1:'"$base"'" }, cache = true } }'
    cache_pid=${pids[-1]}
    mkdir -p "$work/varnish"
    cat > "$work/varnish/default.vcl" <<CONF
vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "$base"; }
CONF
    "${pin[@]}" varnishd -n "$work/varnish" -a "127.0.0.1:$((base + 31))" -f "$work/varnish/default.vcl" \
        -s malloc,256m -p thread_pools=1 -p default_ttl=3600 -P "$work/varnish/varnishd.pid" >/dev/null
    sleep 1
    pids+=("$(cat "$work/varnish/varnishd.pid")")
    # The process that serves (and spends the CPU) is the manager's child.
    varnish_pid=$(pgrep -P "$(cat "$work/varnish/varnishd.pid")" | head -1)
    mkdir -p "$work/cache" "$work/nginx-cache"
    cat > "$work/nginx-cache/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx-cache/nginx.pid;
error_log $work/nginx-cache/error.log;
events { worker_connections 60000; }
http {
    access_log off;
    keepalive_requests 1000000;
    proxy_cache_path $work/cache keys_zone=bench:10m max_size=256m;
    upstream backend { server 127.0.0.1:$base; keepalive 128; }
    server {
        listen 127.0.0.1:$((base + 32));
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1h;
        }
    }
}
CONF
    "${pin[@]}" nginx -c "$work/nginx-cache/nginx.conf"
    sleep 0.5
    pids+=("$(cat "$work/nginx-cache/nginx.pid")")
    nginx_cache_pid=$(pgrep -P "$(cat "$work/nginx-cache/nginx.pid")" | head -1)
    for port in $((base + 30)) $((base + 31)) $((base + 32)); do
        for path in / /100k.bin; do
            curl -s -o /dev/null "http://127.0.0.1:$port$path"
            curl -s -o /dev/null "http://127.0.0.1:$port$path"
        done
    done
    hits=$(curl -s -D - -o /dev/null "http://127.0.0.1:$((base + 30))/" | tr -d '\r' | awk -F': ' 'tolower($1) == "cache-status" {print $2}')
    [ "$hits" = "rsp; hit" ] || { echo "bench.sh: rsp-cache answered Cache-Status '$hits'" >&2; exit 1; }
fi

if [ "${BENCH_COMPRESS:-0}" = 1 ]; then
    start_rsp $((base + 33)) 1 "$rsp_binary" 'compress = { types = { "text/*" }, gzip_level = 5 }'
    gzip_pid=${pids[-1]}
    mkdir -p "$work/nginx-gzip"
    cat > "$work/nginx-gzip/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx-gzip/nginx.pid;
error_log $work/nginx-gzip/error.log;
events { worker_connections 60000; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$base; keepalive 128; }
    gzip on; gzip_comp_level 5; gzip_types text/plain; gzip_proxied any; gzip_min_length 1024;
    server {
        listen 127.0.0.1:$((base + 34));
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
    "${pin[@]}" nginx -c "$work/nginx-gzip/nginx.conf"
    sleep 0.5
    pids+=("$(cat "$work/nginx-gzip/nginx.pid")")
    nginx_gzip_pid=$(pgrep -P "$(cat "$work/nginx-gzip/nginx.pid")" | head -1)
    for port in $((base + 33)) $((base + 34)); do
        coding=$(curl -s -H 'Accept-Encoding: gzip' -D - -o /dev/null "http://127.0.0.1:$port/100k.txt" | tr -d '\r' | awk -F': ' 'tolower($1) == "content-encoding" {print $2}')
        [ "$coding" = gzip ] || { echo "bench.sh: $port did not gzip 100k.txt ('$coding')" >&2; exit 1; }
    done
    [[ " $tests " == *" wrk-gzip "* ]] || tests="$tests wrk-gzip"
fi

cat > "$work/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn $haproxy_maxconn
    pidfile $work/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    http-reuse always
    option http-keep-alive
frontend bench
    bind 127.0.0.1:$((base + 2))
    bind 127.0.0.1:$((base + 12)) ssl crt $work/tls/combined.pem
    bind 127.0.0.1:$((base + 22)) ssl crt $work/tls/combined.pem alpn h2,http/1.1
    default_backend nginx
backend nginx
    server s1 127.0.0.1:$base
CONF
"${pin[@]}" haproxy -f "$work/haproxy.cfg" -D
haproxy_pid=$(cat "$work/haproxy.pid")
pids+=("$haproxy_pid")

mkdir -p "$work/proxy"
# nginx turns HTTP/2 on with `http2 on;` from 1.25.1, on the listen line before.
nginx_version=$(nginx -v 2>&1 | sed 's,.*/,,')
if [ "$(printf '%s\n' 1.25.1 "$nginx_version" | sort -V | head -1)" = 1.25.1 ]; then
    nginx_h2_listen="listen 127.0.0.1:$((base + 23)) ssl; http2 on;"
else
    nginx_h2_listen="listen 127.0.0.1:$((base + 23)) ssl http2;"
fi
cat > "$work/proxy/nginx.conf" <<CONF
worker_processes 1;
pid $work/proxy/nginx.pid;
error_log $work/proxy/error.log;
events { worker_connections 60000; }
http {
    access_log off;
    keepalive_requests 1000000;
    upstream backend { server 127.0.0.1:$base; keepalive 128; }
    server {
        listen 127.0.0.1:$((base + 3));
        listen 127.0.0.1:$((base + 13)) ssl;
        $nginx_h2_listen
        ssl_certificate $work/tls/cert.pem;
        ssl_certificate_key $work/tls/key.pem;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
"${pin[@]}" nginx -c "$work/proxy/nginx.conf"
sleep 0.5
pids+=("$(cat "$work/proxy/nginx.pid")")
nginx_proxy_pid=$(pgrep -P "$(cat "$work/proxy/nginx.pid")" | head -1)
backend_pid=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)

ports=($((base + 1)) $((base + 2)) $((base + 3)) $((base + 4)))
[ -n "${BENCH_BASELINE:-}" ] && ports+=($((base + 5)))
[ "${BENCH_SHAPING:-0}" = 1 ] && ports+=($((base + 6)))
[ "${BENCH_LIMITED:-0}" = 1 ] && ports+=($((base + 7)))
[ "${BENCH_SHARED:-0}" = 1 ] && ports+=($((base + 8)))
for port in "${ports[@]}"; do
    curl -sk -o /dev/null "https://127.0.0.1:$((port + 10))/" || { echo "bench.sh: no TLS on $((port + 10))" >&2; exit 1; }
    status=$(curl -sk --http2 -o /dev/null -w '%{http_version} %{http_code} %{size_download}' "https://127.0.0.1:$((port + 20))/" || true)
    if [ "$port" = $((base + 5)) ] && [ "$status" = "1.1 200 600" ]; then
        echo "bench.sh: BENCH_BASELINE has no HTTP/2: no h2 tests for rsp-before" >&2
        before_h2=0
    else
        [ "$status" = "2 200 600" ] || { echo "bench.sh: HTTP/2 on $((port + 20)) answered '$status'" >&2; exit 1; }
    fi
    status=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/")
    [ "$status" = "200 600" ] || { echo "bench.sh: the proxy on $port answered '$status'" >&2; exit 1; }
done

# name port pid (the process whose CPU and memory are the proxy's)
targets=("nginx-direct $base -" "rsp $((base + 1)) $rsp_pid" "haproxy $((base + 2)) $haproxy_pid" "nginx-proxy $((base + 3)) $nginx_proxy_pid" "rsp-2-workers $((base + 4)) $rsp2_pid")
[ -n "${BENCH_BASELINE:-}" ] && targets+=("rsp-before $((base + 5)) $before_pid")
[ "${BENCH_SHAPING:-0}" = 1 ] && targets+=("rsp-shaping $((base + 6)) $shaping_pid")
[ "${BENCH_LIMITED:-0}" = 1 ] && targets+=("rsp-limited $((base + 7)) $limited_pid")
[ "${BENCH_SHARED:-0}" = 1 ] && targets+=("rsp-shared $((base + 8)) $shared_pid")
if [ "${BENCH_COMPRESS:-0}" = 1 ]; then
    targets+=("rsp-gzip $((base + 33)) $gzip_pid" "nginx-gzip $((base + 34)) $nginx_gzip_pid")
fi
if [ "${BENCH_CACHE:-0}" = 1 ]; then
    targets+=("rsp-cache $((base + 30)) $cache_pid" "varnish $((base + 31)) $varnish_pid" "nginx-cache $((base + 32)) $nginx_cache_pid")
fi

cpu_ticks() { # PID: user+sys clock ticks of the process and its threads
    awk '{print $14 + $15}' "/proc/$1/stat"
}
sys_ticks() { # PID: its system (kernel) clock ticks
    awk '{print $15}' "/proc/$1/stat"
}
machine_busy_ticks() { # every CPU's non-idle time
    awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat
}
peak_rss_kib() { # PID
    awk '/VmHWM/ {print $2}' "/proc/$1/status"
}

if [ "$mode" = memory ]; then
    # rsp, HAProxy and the nginx proxy, each holding $idle idle clients.
    for target in "${targets[@]:1:3}"; do
        read -r name port pid <<<"$target"
        count=$idle
        if [ "$name" = haproxy ] && [ "$count" -gt $((haproxy_maxconn - 50)) ]; then
            count=$((haproxy_maxconn - 50))
            echo "haproxy: $count clients (its maxconn is $haproxy_maxconn under this machine's limit of $(ulimit -n) descriptors)" >&2
        fi
        python3 scripts/idle-clients.py "$port" "$count" "$pid" "$name"
    done
    exit 0
fi

mkdir -p bench-results
stamp=$(date -u +%Y%m%d-%H%M%S)
raw="bench-results/$stamp.csv"
echo "round,test,target,requests_per_second,mean_latency_ms,p99_latency_ms,cpu_us_per_request,machine_cpu_us_per_request,peak_rss_kib,failed,idle_bytes_per_connection" > "$raw"
ticks_per_second=$(getconf CLK_TCK)

run_one() { # round test target port pid
    local round=$1 test=$2 name=$3 port=$4 pid=$5 url out rps mean p99 failed count asked
    local tls_port=$((port + 10)) h2_port=$((port + 20))
    local before=0 after=0 machine_before machine_after
    [ "$pid" != - ] && before=$(cpu_ticks "$pid") sys_before=$(sys_ticks "$pid")
    machine_before=$(machine_busy_ticks)
    case $test in
        ab) url="http://127.0.0.1:$port/"
            out=$(ab -q -n "$requests" -c "$concurrency" "$url" 2>&1) ;;
        ab-k) url="http://127.0.0.1:$port/"
            out=$(ab -q -k -n "$requests" -c "$concurrency" "$url" 2>&1) ;;
        wrk) url="http://127.0.0.1:$port/"
            out=$(wrk -t 1 -c "$concurrency" -d "${seconds}s" --latency "$url" 2>&1) ;;
        wrk-100k) url="http://127.0.0.1:$port/100k.bin"
            out=$(wrk -t 1 -c "$concurrency" -d "${seconds}s" --latency "$url" 2>&1) ;;
        wrk-gzip) url="http://127.0.0.1:$port/100k.txt"
            out=$(wrk -t 1 -c "$concurrency" -d "${seconds}s" --latency -H 'Accept-Encoding: gzip' "$url" 2>&1) ;;
        wrk-1m|wrk-10m) url="http://127.0.0.1:$port/${test#wrk-}.bin"
            out=$(wrk -t 1 -c "$large_concurrency" -d "${seconds}s" --latency "$url" 2>&1) ;;
        tls-handshake) url="https://127.0.0.1:$tls_port/"
            out=$(ab -q -n "$tls_requests" -c "$concurrency" "$url" 2>&1) ;;
        tls-k) url="https://127.0.0.1:$tls_port/"
            out=$(wrk -t 1 -c "$concurrency" -d "${seconds}s" --latency "$url" 2>&1) ;;
        h2) url="https://127.0.0.1:$h2_port/" asked=$h2_requests
            out=$(h2load -c "$concurrency" -m 10 -n "$asked" "$url" 2>&1 || true) ;;
        h2-100k) url="https://127.0.0.1:$h2_port/100k.bin" asked=$h2_large_requests
            out=$(h2load -c "$concurrency" -m 10 -n "$asked" "$url" 2>&1 || true) ;;
    esac
    [ "$pid" != - ] && after=$(cpu_ticks "$pid") sys_after=$(sys_ticks "$pid")
    machine_after=$(machine_busy_ticks)
    case $test in
        ab*|tls-handshake)
            rps=$(awk '/Requests per second/ {print $4}' <<<"$out")
            # "Time per request ... (mean)" is per concurrent request: the latency.
            mean=$(awk '/Time per request/ && /\(mean\)/ {print $4; exit}' <<<"$out")
            p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
            failed=$(awk '/Failed requests/ {f=$3} /Non-2xx/ {n=$3} END {print f + n}' <<<"$out")
            count=$(awk '/Complete requests/ {print $3}' <<<"$out") ;;
        wrk*|tls-k)
            rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
            mean=$(awk '$1 == "Latency" {print $2; exit}' <<<"$out" | python3 scripts/bench_report.py --ms)
            p99=$(awk '$1 == "99%" {print $2}' <<<"$out" | python3 scripts/bench_report.py --ms)
            failed=$(awk '/Non-2xx/ {n=$4} /Socket errors/ {e=$4+$6+$8+$10} END {print n + e}' <<<"$out")
            count=$(awk '/requests in/ {print $1}' <<<"$out") ;;
        h2*)
            rps=$(awk '/^finished in/ {print $4}' <<<"$out")
            # h2load gives min, max, mean and sd, no percentiles.
            mean=$(awk '/^time for request:/ {print $6}' <<<"$out" | python3 scripts/bench_report.py --ms 2>/dev/null || echo -)
            p99=-
            # Every request asked for that got no 2xx answer.
            count=$(awk '/^status codes:/ {print $3}' <<<"$out")
            if ! grep -q '^Application protocol: h2$' <<<"$out"; then
                echo "bench.sh: $name did not speak h2 to h2load:" >&2
                tail -5 <<<"$out" >&2
                count=0
            fi
            failed=$((asked - ${count:-0})) ;;
    esac
    local cpu=- rss=- kernel=- machine
    machine=$(awk -v t=$((machine_after - machine_before)) -v hz="$ticks_per_second" -v n="$count" 'BEGIN {if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "-"}')
    if [ "$pid" != - ]; then
        cpu=$(awk -v t=$((after - before)) -v hz="$ticks_per_second" -v n="$count" 'BEGIN {if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "-"}')
        rss=$(peak_rss_kib "$pid")
        # The share of the proxy's CPU spent in the kernel (its sockets):
        # shown in the round lines, to tell what a proxy's own code costs.
        kernel=$(awk -v s=$((sys_after - sys_before)) -v t=$((after - before)) 'BEGIN {if (t > 0) printf "%d%%", 100 * s / t; else print "-"}')
    fi
    echo "$round,$test,$name,$rps,$mean,$p99,$cpu,$machine,$rss,${failed:-0}," >> "$raw"
    printf '  round %s %-9s %-13s %10s req/s  mean %7s ms  p99 %7s ms  cpu %6s us/req (kernel %4s)  machine %6s us/req  failed %s\n' \
        "$round" "$test" "$name" "$rps" "$mean" "$p99" "$cpu" "$kernel" "$machine" "${failed:-0}" >&2
}

echo "bench: $rounds rounds of $tests; ab -n $requests -c $concurrency, wrk -c $concurrency ${seconds}s, large bodies -c $large_concurrency, TLS key ${BENCH_TLS_KEY:-rsa}, h2load -c $concurrency -m 10 -n $h2_requests (100 KB: $h2_large_requests)" >&2
if [[ " $tests " == *" h2-idle "* ]]; then
    # Once, first: the processes are fresh, so the memory that idle
    # connections take is not memory earlier load left free.
    for target in "${targets[@]}"; do
        read -r name port pid <<<"$target"
        case $name in rsp|haproxy|nginx-proxy) ;; rsp-before) [ "${before_h2:-1}" = 1 ] || continue ;; *) continue ;; esac
        out=$(python3 scripts/idle-h2-clients.py "$((port + 20))" "$h2_idle" "$pid" "$name")
        echo "  $out" >&2
        bytes=$(awk '{for (i = 2; i <= NF; i++) if ($i == "bytes" && $(i + 1) == "per") print $(i - 1)}' <<<"$out")
        echo "1,h2-idle,$name,,,,,,$(peak_rss_kib "$pid"),0,$bytes" >> "$raw"
    done
fi
for round in $(seq 1 "$rounds"); do
    for test in $tests; do
        [ "$test" = h2-idle ] && continue
        for target in "${targets[@]}"; do
            read -r name port pid <<<"$target"
            # nginx serving directly, and the caches, have no TLS listener.
            case $name in nginx-direct|rsp-cache|varnish|nginx-cache) [[ $test == tls-* || $test == h2* ]] && continue ;; esac
            # The gzip targets run the gzip test, and only they do.
            case $name in rsp-gzip|nginx-gzip) [ "$test" = wrk-gzip ] || continue ;; *) [ "$test" = wrk-gzip ] && continue ;; esac
            [ "$name" = rsp-before ] && [ "${before_h2:-1}" = 0 ] && [[ $test == h2* ]] && continue
            run_one "$round" "$test" "$name" "$port" "$pid"
        done
    done
done
if [ "${BENCH_SHARED:-0}" = 1 ]; then
    commands=$(redis-cli -p "$redis_port" INFO stats | tr -d '\r' | awk -F: '/^total_commands_processed/ {print $2}')
    uptime=$(redis-cli -p "$redis_port" INFO server | tr -d '\r' | awk -F: '/^uptime_in_seconds/ {print $2}')
    echo "bench: rsp-shared's Redis processed $commands commands in ${uptime}s (about $((commands / (uptime > 0 ? uptime : 1)))/s)" >&2
fi
pinned="proxies unpinned"
[ ${#pin[@]} -gt 0 ] && pinned="one-worker proxies pinned to CPU 1"
h2_note=""
[[ " $tests " == *" h2-idle "* ]] && h2_note=" h2-idle: $h2_idle idle HTTP/2 connections over TLS, once, before the rounds."
python3 scripts/bench_report.py "$raw" "$(nproc) cores, $pinned, $(uname -r); nginx $(nginx -v 2>&1 | cut -d/ -f2), $(haproxy -v | head -1 | cut -d' ' -f1-3), $(h2load --version | head -1).$h2_note"
