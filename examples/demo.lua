-- Used by scripts/demo.sh: two python3 http.server backends, round robin,
-- and a /ping answered by rsp itself.
-- HTTP/1.1, and HTTP/2 with prior knowledge (curl --http2-prior-knowledge, h2load)
listen = { { addr = "127.0.0.1:8080", http2 = true } }
admin = "127.0.0.1:9901"   -- http://127.0.0.1:9901/stats

pools = {
  default = { servers = { "127.0.0.1:8081", "127.0.0.1:8082" } },
}

function route(req)
  if req.path == "/ping" then
    return { status = 200, body = "pong\n", headers = { ["Content-Type"] = "text/plain" } }
  end
  return "default"
end
