-- One rsp of several (examples/cluster/README in the main README,
-- "Past one machine"). Every instance runs this same file: same pools,
-- weights, route() and timeouts, so any instance answers any client the
-- same way, and hash routing sends a key to the same server everywhere.
listen = { "0.0.0.0:80" }
admin = "127.0.0.1:9901"           -- per instance; drain on each one
access_log = "/var/log/rsp/access.log"
workers = "auto"

-- The addresses of the load balancer or the peer instances in front, if
-- any, so their X-Forwarded-For is kept.
forwarded_headers = { trusted_proxies = { "10.0.0.0/8" } }

-- The Redis every instance shares its rate limits and live maps through (README, "Past
-- one machine"). Plain TCP; put a password in a file readable by rsp
-- alone and name it with password_file = "/etc/rsp/redis.pass".
redis = { servers = { "10.0.3.31:6379", "10.0.3.32:6379" }, db = 0, prefix = "rsp:", timeout_ms = 200 }

-- 100 requests a second per client address across all instances, not per
-- instance; each instance alone if Redis is lost ("local"), at its share
-- of four instances.
limits = {
  per_ip = { rate = 100, per = "second", burst = 50, shared = true, sync_ms = 50,
             on_error = "local", instances = 4 },
}

-- Hosts moved to their own server, changed on any instance's admin port
-- (PUT /maps/apps/HOST) and followed by all of them; the file is this
-- instance's copy, served when it starts without Redis.
maps = { apps = { file = "/var/lib/rsp/apps.map", shared = true } }

pools = {
  web = {
    servers = {
      { addr = "10.0.1.11:8080", weight = 2 },
      { addr = "10.0.1.12:8080", weight = 2 },
      { addr = "10.0.1.13:8080", weight = 1, backup = true },
    },
    health = { path = "/healthz", interval_ms = 2000, timeout_ms = 1000, rise = 2, fall = 3 },
  },
  sessions = {
    balance = "hash",
    servers = { "10.0.2.21:8080", "10.0.2.22:8080", "10.0.2.23:8080" },
  },
}

function route(req)
  if req.path == "/healthz" then
    -- For DNS health checks and keepalived: this instance is up.
    return { status = 200, body = "ok\n" }
  end
  local ok, retry_after = rsp.limit("per_ip", req.client_ip)
  if not ok then
    return { status = 429, headers = { ["Retry-After"] = retry_after } }
  end
  local moved = rsp.map("apps"):get(req.host)
  if moved then
    return moved
  end
  if req.path:sub(1, 5) == "/app/" then
    return "sessions", req:header("Cookie")
  end
  return "web"
end
