"""A callback receiver that costs next to nothing: `python -m bench.receiver --port N`.

Answers every POST with 200 and counts it (and the distinct task ids it names); `GET /count`
returns the counts as JSON, `POST /reset` zeroes them. Binds 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

MAX_BODY = 1 << 20


class Counts:
    def __init__(self) -> None:
        self.posts = 0
        self.tasks: set[str] = set()

    def as_json(self) -> bytes:
        return json.dumps({"posts": self.posts, "tasks": len(self.tasks)}).encode()


def _response(status: str, body: bytes = b"") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\nContent-Type: application/json\r\n"
    return head.encode() + b"\r\n" + body


async def _serve(
    counts: Counts, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        for _ in range(10_000):  # requests on one connection
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = [*lines[0].split(" "), "", ""][:2]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = min(int(value.strip() or 0), MAX_BODY)
            body = await reader.readexactly(length) if length else b""
            if method == "POST" and path == "/reset":
                counts.posts, counts.tasks = 0, set()
                writer.write(_response("200 OK"))
            elif method == "POST":
                counts.posts += 1
                with contextlib.suppress(ValueError, AttributeError):
                    counts.tasks.add(str(json.loads(body).get("task_id")))
                writer.write(_response("200 OK"))
            elif method == "GET" and path == "/count":
                writer.write(_response("200 OK", counts.as_json()))
            else:
                writer.write(_response("404 Not Found"))
            await writer.drain()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


async def main(port: int) -> None:
    counts = Counts()
    server = await asyncio.start_server(
        lambda r, w: _serve(counts, r, w), host="127.0.0.1", port=port, backlog=512
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
