#!/usr/bin/env bash
# Runs 1,000,000 requests through rsp in front of nginx (half keep-alive, half
# not) while another client keeps aborting large downloads mid-response, and
# compares rsp's RSS after the first 100,000 requests with its RSS at the end.
# Installs nginx and ab when missing. Exit 1 if RSS grew by more than 5 %.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/nginx-backend.sh
head -c 10000000 /dev/zero > "$work/www/big.bin"
start_nginx 18090
printf 'listen = "127.0.0.1:18091"\nbackends = { "127.0.0.1:18090" }\n' > "$work/rsp.lua"
RUST_LOG=error ./target/release/rsp "$work/rsp.lua" &
rsp_pid=$!
pids+=("$rsp_pid")
sleep 0.5
rss() { awk '/VmRSS/ {print $2}' "/proc/$rsp_pid/status"; }

# Aborting client: asks for 10 MB and hangs up after the first few KB.
python3 - <<'PY' &
import socket, time
end = time.time() + 600
while time.time() < end:
    try:
        s = socket.create_connection(("127.0.0.1", 18091))
        s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(8192)
        s.close()
    except OSError:
        time.sleep(0.01)
PY
pids+=($!)

failed=0
run() { # flags: 50,000 requests
    local out
    out=$(ab -q "$@" -n 50000 -c 50 http://127.0.0.1:18091/ 2>&1)
    failed=$((failed + $(awk '/Failed requests/ {print $3}' <<<"$out")))
}
# Every step of 100,000 mixes both paths, keep-alive and not.
step() { run -k; run; }
step
after_first=$(rss)
echo "RSS after the first 100,000 requests: $after_first KiB"
for round in 2 3 4 5 6 7 8 9 10; do
    step
    echo "RSS after $((round * 100000)) requests: $(rss) KiB"
done
at_end=$(rss)
echo "failed requests: $failed"
awk -v a="$after_first" -v b="$at_end" 'BEGIN { growth = (b - a) * 100 / a; printf "growth from 100,000 to 1,000,000 requests: %.1f %%\n", growth; exit (growth > 5) }'
