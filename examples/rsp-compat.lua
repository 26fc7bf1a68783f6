-- The original C rsp's sample config format, still accepted.
listenPort = "8000"
backendAddress = "127.0.0.1"
backendPort = "80"
