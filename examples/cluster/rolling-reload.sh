#!/usr/bin/env bash
# Rolls a new config across rsp instances, one at a time: copy, check,
# reload, confirm the instance still answers, then the next. Stops at the
# first instance that refuses the config, so at most one runs anything new.
#   examples/cluster/rolling-reload.sh CONFIG.lua host1 host2 ...
set -euo pipefail
config=$1
shift
for host in "$@"; do
    echo "== $host"
    scp -q "$config" "$host:/etc/rsp/rsp.lua.new"
    ssh "$host" 'rsp --check /etc/rsp/rsp.lua.new && mv /etc/rsp/rsp.lua.new /etc/rsp/rsp.lua && systemctl reload rsp'
    sleep 2
    ssh "$host" 'curl --silent --fail --max-time 2 --output /dev/null http://127.0.0.1/healthz' \
        || { echo "$host does not answer after the reload; stopping" >&2; exit 1; }
done
echo "all instances reloaded"
