-- The smallest useful config: one backend behind rsp.
listen = "127.0.0.1:8080"
backends = { "127.0.0.1:8081" }
