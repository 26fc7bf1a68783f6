# Sourced by the benchmark scripts: installs nginx and ab when missing,
# builds rsp, and gives `start_nginx PORT` (one worker serving $work/www)
# with everything started cleaned up on exit.
if ! command -v nginx >/dev/null || ! command -v ab >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx apache2-utils >/dev/null
fi
cargo build --release --quiet

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
mkdir -p "$work/www"
head -c 600 /dev/zero | tr '\0' 'x' > "$work/www/index.html"

start_nginx() { # PORT
    cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { listen 127.0.0.1:$1; root $work/www; }
}
CONF
    nginx -c "$work/nginx.conf"
}
