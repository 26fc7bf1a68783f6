#!/usr/bin/env python3
"""A WebSocket server for rsp's tests (the `websockets` library).

    echo_server.py PORT

Paths: /echo echoes every message; /push sends 200 messages of 100 KB as
fast as the connection takes them, then closes; /bye echoes until it gets
"bye", then closes with code 4000. Prints "ready" once listening.
"""
import asyncio
import sys

from websockets.asyncio.server import serve


async def handler(connection):
    path = connection.request.path
    if path == "/push":
        chunk = bytes(range(256)) * 400
        for index in range(200):
            await connection.send(index.to_bytes(4, "big") + chunk)
        await connection.close(1000, "pushed")
        return
    async for message in connection:
        if path == "/bye" and message == "bye":
            await connection.close(4000, "server says bye")
            return
        await connection.send(message)


async def main():
    port = int(sys.argv[1])
    async with serve(handler, "127.0.0.1", port, max_size=None):
        print("ready", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
