-- rsp in place of the Varnish in front of an application: the seed's
-- stack (rsp -> Varnish -> nginx) rebuilt as rsp (with its cache) -> nginx.
-- README, "Caching".
listen = "0.0.0.0:80"
admin = "127.0.0.1:9901"          -- POST /cache/purge {"prefix": "www.example.com/blog/"}
workers = 1                       -- one cache; with more workers, each has its own share

cache = {
  memory = "256m",                -- heads, bodies and index, every worker together
  max_object = "4m",              -- larger responses pass through unstored
  default_ttl = 0,                -- only what the application says is fresh is kept
  serve_stale_on_error = true,    -- the site stays up while the application is down
}

pools = {
  app = { servers = { "127.0.0.1:8080" }, cache = true,
          health = { path = "/healthz", interval_ms = 2000 } },
}

function route(req)
  -- Logged-in users and the API are never served from the cache.
  if req.path:sub(1, 5) == "/api/" or req:header("Cookie") then
    req:no_cache()
  end
  return "app"
end

function respond(req, res)
  -- Static files the application sends without freshness: an hour.
  if res.status == 200 and not res:header("Cache-Control")
     and (req.path:match("%.css$") or req.path:match("%.js$") or req.path:match("%.png$")) then
    res.ttl = 3600
  end
end
