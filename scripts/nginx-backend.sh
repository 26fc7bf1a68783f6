# Sourced by the benchmark scripts: installs nginx and ab when missing,
# builds rsp, and gives `start_nginx PORT...` (one worker serving $work/www
# on each port)
# with everything started cleaned up on exit.
if ! command -v nginx >/dev/null || ! command -v ab >/dev/null || ! command -v curl >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx apache2-utils curl >/dev/null
fi
cargo build --release --quiet

work=$(mktemp -d)
# nginx's workers run as www-data: mktemp's 0700 would turn every page into a 403.
chmod 755 "$work"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM
mkdir -p "$work/www"
head -c 600 /dev/zero | tr '\0' 'x' > "$work/www/index.html"

start_nginx() { # PORT...
    local listens=""
    for port in "$@"; do listens+="listen 127.0.0.1:$port; "; done
    cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    server { $listens root $work/www; }
}
CONF
    nginx -c "$work/nginx.conf"
    local port status
    for port in "$@"; do
        status=$(curl -s -o /dev/null -w '%{http_code} %{size_download}' "http://127.0.0.1:$port/")
        [ "$status" = "200 600" ] || { echo "nginx on $port answered '$status', not the 600-byte page" >&2; exit 1; }
    done
}
