"""A minimal HTTP/1.1 client on asyncio streams: one event loop holds hundreds of
connections at the cost of a few kilobytes each (no thread, no client library).

Enough of HTTP for the benchmark: keep-alive requests with a body given at once or
trickled, responses framed by ``Content-Length``, ``chunked`` or the connection's end,
and a chunked or unframed body read incrementally (event streams).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field


class HTTPError(Exception):
    """The connection broke, timed out or spoke something other than HTTP/1.1."""


@dataclass
class Response:
    status: int
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes = b""
    sent_at: float = 0.0  # time.time() when the request's last byte was written
    headers_at: float = 0.0  # time.time() when the status line and headers had arrived
    done_at: float = 0.0  # time.time() when the body had arrived
    extra: dict = field(default_factory=dict)


class Connection:
    """One keep-alive connection to ``host:port``, reopened when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    def head(self, method: str, path: str, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def send(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> float:
        """Write a request (opening the connection if needed); returns when it was sent."""
        await self.open()
        assert self.writer is not None
        if body:
            headers = {**headers, "Content-Length": str(len(body))}
        self.writer.write(self.head(method, path, headers) + body)
        await self.writer.drain()
        return time.time()

    async def read_head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        try:
            status_line = await self.reader.readuntil(b"\r\n")
            raw = await self.reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            raise HTTPError("connection closed before a response") from exc
        parts = status_line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise HTTPError(f"not an HTTP response: {status_line[:80]!r}")
        headers = {}
        for line in raw.decode("latin-1").split("\r\n"):
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    async def body_chunks(
        self, status: int, headers: dict[str, str], method: str = "GET"
    ) -> AsyncIterator[bytes]:
        """The response body as it arrives; the connection is closed after a body framed
        by the connection's end (or a ``Connection: close``)."""
        assert self.reader is not None
        reader = self.reader
        try:
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                pass
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                while True:
                    size_line = await reader.readuntil(b"\r\n")
                    size = int(size_line.split(b";")[0].strip() or b"0", 16)
                    if size == 0:
                        while (await reader.readuntil(b"\r\n")) != b"\r\n":
                            pass  # trailers
                        break
                    data = await reader.readexactly(size + 2)
                    yield data[:-2]
            elif "content-length" in headers:
                left = int(headers["content-length"])
                while left > 0:
                    data = await reader.read(min(left, 65536))
                    if not data:
                        raise HTTPError("connection closed inside a body")
                    left -= len(data)
                    yield data
            else:
                while data := await reader.read(65536):
                    yield data
                self.close()
                return
        except asyncio.IncompleteReadError as exc:
            self.close()
            raise HTTPError("connection closed inside a body") from exc
        if headers.get("connection", "").lower() == "close":
            self.close()

    async def request(
        self,
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
        timeout: float = 30.0,
    ) -> Response:
        """A whole request and response, within ``timeout`` seconds (else ``HTTPError``).

        A reused connection that the server had closed while idle fails before any byte
        of a response: the request is sent once more on a new connection, as clients do.
        """
        reused = self.writer is not None and not self.writer.is_closing()
        for attempt in (1, 2):
            try:
                return await asyncio.wait_for(
                    self._request(method, path, headers or {}, body), timeout
                )
            except HTTPError as exc:
                self.close()
                if not (reused and attempt == 1 and "before a response" in str(exc)):
                    raise
            except (TimeoutError, OSError) as exc:
                self.close()
                if isinstance(exc, TimeoutError):
                    raise HTTPError(f"no complete answer within {timeout} s") from exc
                if not (reused and attempt == 1 and isinstance(exc, ConnectionError)):
                    raise HTTPError(f"{type(exc).__name__}: {exc}") from exc
        raise HTTPError("unreachable")

    async def _request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Response:
        sent = await self.send(method, path, headers, body)
        status, head = await self.read_head()
        headers_at = time.time()
        data = b"".join([chunk async for chunk in self.body_chunks(status, head, method)])
        return Response(status, head, data, sent, headers_at, time.time())
