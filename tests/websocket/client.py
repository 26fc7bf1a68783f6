#!/usr/bin/env python3
"""A WebSocket client for rsp's tests (the `websockets` library).

    client.py URL SCENARIO

Scenarios: echo (1,000 messages echoed in order), big (one 10 MB message
echoed intact), slow (reads the 20 MB /push stream with pauses), close
(the client closes; the close handshake completes), bye (the server
closes with 4000). Prints "ok ..." and exits 0, or fails with a traceback.
"""
import asyncio
import hashlib
import os
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


async def main():
    url, scenario = sys.argv[1], sys.argv[2]
    async with connect(url, max_size=None, open_timeout=10) as connection:
        if scenario == "echo":
            for index in range(1000):
                await connection.send(f"message {index}")
                reply = await connection.recv()
                assert reply == f"message {index}", reply
            print("ok 1000 echoed")
        elif scenario == "big":
            message = os.urandom(10 * 1024 * 1024)
            await connection.send(message)
            reply = await connection.recv()
            assert hashlib.sha256(reply).digest() == hashlib.sha256(message).digest()
            print(f"ok {len(reply)} bytes echoed intact")
        elif scenario == "slow":
            received = 0
            chunk = bytes(range(256)) * 400
            for index in range(200):
                message = await connection.recv()
                assert message[:4] == index.to_bytes(4, "big") and message[4:] == chunk
                received += len(message)
                await asyncio.sleep(0.01)
            try:
                await connection.recv()
                raise AssertionError("more than 200 messages")
            except ConnectionClosed as closed:
                assert closed.rcvd.code == 1000, closed
            print(f"ok {received} bytes read slowly")
        elif scenario == "close":
            await connection.send("hello")
            assert await connection.recv() == "hello"
            await connection.close(1000, "client done")
            assert connection.close_code == 1000, connection.close_code
            print("ok closed by the client")
        elif scenario == "bye":
            await connection.send("bye")
            try:
                await connection.recv()
                raise AssertionError("no close")
            except ConnectionClosed as closed:
                assert closed.rcvd.code == 4000 and closed.rcvd.reason == "server says bye", closed
            print("ok closed by the server with 4000")
        else:
            raise SystemExit(f"unknown scenario {scenario}")


asyncio.run(main())
