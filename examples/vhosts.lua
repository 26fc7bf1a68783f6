-- Routing by Host and path to several pools, with a local answer.
listen = { "127.0.0.1:8080", "[::1]:8080" }

pools = {
  web  = { servers = { "127.0.0.1:8081", "127.0.0.1:8082" } },
  apps = { servers = { "127.0.0.1:9001" } },
  api  = { servers = { "127.0.0.1:9002" } },
}

buffer_bytes = 64 * 1024
max_header_bytes = 32 * 1024

function route(req)
  -- req.host is already lower-cased and has no port.
  if req.host == "apps.example.com" then
    return "apps"
  end
  if req.path == "/ping" then
    return { status = 200, body = "pong\n", headers = { ["Content-Type"] = "text/plain" } }
  end
  if req.path:sub(1, 5) == "/api/" or req:header("Accept") == "application/json" then
    return "api"
  end
  return "web"
end
