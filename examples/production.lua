-- A config for running rsp as a service (examples/rsp.service reads it from
-- /etc/rsp/rsp.lua): nginx or gunicorn behind, an access log for logrotate,
-- the admin port on loopback, health checks, and timeouts spelled out.
listen = { "0.0.0.0:80" }

-- Stats page, metrics and drain API: http://127.0.0.1:9901/stats
-- (a non-loopback address needs admin = { addr = "...", public = true,
-- token_file = "admin.token" }; changes need the header X-Rsp-Admin: 1).
admin = "127.0.0.1:9901"

access_log = "/var/log/rsp/access.log"   -- "-" for stdout
access_log_format = "combined"           -- or "json"

-- rsp is the edge: clients' X-Forwarded-* are replaced. List the load
-- balancers in front of rsp, if any, so theirs are kept and extended.
forwarded_headers = {
  x_forwarded_for = true,
  x_forwarded_proto = true,
  x_forwarded_host = true,
  forwarded = false,
  trusted_proxies = { "10.0.0.0/8" },
}

pools = {
  web = {
    servers = { "127.0.0.1:8081", "127.0.0.1:8082" },   -- nginx workers, gunicorn, ...
    health = { path = "/", interval_ms = 2000, timeout_ms = 1000, rise = 2, fall = 3 },
  },
}

timeouts = {
  connect = 3000,
  client_header = 10000,
  client_idle = 60000,
  backend_response = 60000,
  idle = 60000,
}
shutdown_timeout_ms = 30000   -- keep below the unit's TimeoutStopSec
max_connections = 20000

function route(req)
  if req.path == "/healthz" then
    return { status = 200, body = "ok\n" }
  end
  return "web"
end
