-- Traffic shaped in one file: security headers on every answer, a styled
-- error page, an A/B split by cookie with a rewritten path, a canary by
-- header, and retries of a busy server. `rsp --check examples/shaping.lua`
-- lists the hooks it defines.

listen = "127.0.0.1:8080"

pools = {
  web = {
    servers = { "127.0.0.1:8081", "127.0.0.1:8082" },
    -- Idempotent requests without a body go to the other server after
    -- these (3 tries at most: `retries = 2` is the default).
    retry_on = { 502, 504, "reset", "timeout" },
  },
  canary = { servers = { "127.0.0.1:8083" } },
}

local error_page = [[<!doctype html>
<title>Back in a moment</title>
<h1>We'll be right back</h1>
<p>The site is being updated. Please try again in a few seconds.</p>
]]

function route(req)
  req.ctx.started = rsp.now()
  -- A canary by header: testers opt in with `X-Canary: 1`.
  if req:header("X-Canary") == "1" then
    req:set_header("X-Variant", "canary")
    return "canary"
  end
  -- An A/B split by cookie: group B is served from /b/... of the same app.
  local cookie = req:header("Cookie") or ""
  if cookie:find("ab=b", 1, true) then
    req:set_path("/b" .. req.path)
    req:set_header("X-Variant", "b")
  end
  req:add_header("Via", "1.1 rsp")
  return "web"
end

-- Security headers on every answer, rsp's own included.
local security = {
  ["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains",
  ["X-Content-Type-Options"] = "nosniff",
  ["X-Frame-Options"] = "DENY",
  ["Referrer-Policy"] = "strict-origin-when-cross-origin",
}

function respond(req, res)
  for name, value in pairs(security) do
    res:set_header(name, value)
  end
  res:del_header("Server")
  res:del_header("X-Powered-By")
  -- A backend that says it is busy: try the other one.
  if res.status == 503 and res.source == "backend" then
    return "retry"
  end
  -- A styled page instead of a bare 502 or 504. A returned table is the
  -- whole answer, so it names every header it wants.
  if res.status == 502 or res.status == 504 then
    local headers = { ["Content-Type"] = "text/html; charset=utf-8", ["Retry-After"] = "5" }
    for name, value in pairs(security) do
      headers[name] = value
    end
    return { status = res.status, body = error_page, headers = headers }
  end
end

function log(req, res)
  -- Slow or cut-short exchanges, to rsp's standard error.
  local took = rsp.now() - req.ctx.started
  if took > 1000 or not res.completed then
    io.stderr:write(string.format("slow or cut: %s %s -> %d after %d ms (%s)\n",
      req.method, req.path, res.status, took, tostring(res.server)))
  end
end
