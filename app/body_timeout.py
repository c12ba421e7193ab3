"""Cut off a request body that stops arriving: ``408`` after ``BODY_TIMEOUT`` idle seconds.

Under the gevent worker a slow upload costs a greenlet, not a thread, so a client may
send slowly for as long as it keeps sending; one that stops sending altogether would
otherwise hold its connection (and its upload spool) forever. Every read of the body
waits at most ``seconds`` for the next bytes (a socket timeout on the client's
connection, set only around body reads); then the request fails with a ``408`` problem
and the connection is closed, since the rest of the body was never read.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from werkzeug.exceptions import RequestTimeout


class TimedInput:
    """``wsgi.input`` whose reads give up after ``seconds`` without a byte."""

    def __init__(self, stream: Any, sock: socket.socket, seconds: float) -> None:
        self._stream, self._sock, self._seconds = stream, sock, seconds
        self.timed_out = False

    def _call(self, read: Callable[..., Any], *args: Any) -> Any:
        previous = self._sock.gettimeout()
        self._sock.settimeout(self._seconds)
        try:
            return read(*args)
        except TimeoutError as exc:
            self.timed_out = True
            raise RequestTimeout(
                f"The request body stopped arriving: nothing came for {self._seconds:g} s."
            ) from exc
        finally:
            self._sock.settimeout(previous)

    def read(self, size: int | None = -1) -> bytes:
        return self._call(self._stream.read, size)

    def readline(self, size: int | None = -1) -> bytes:
        return self._call(self._stream.readline, size)

    def readlines(self, hint: int | None = -1) -> list[bytes]:
        return self._call(self._stream.readlines, hint)

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class BodyTimeout:
    """WSGI middleware installing ``TimedInput`` on requests that carry a body."""

    def __init__(self, app: Callable[..., Iterable[bytes]], seconds: float) -> None:
        self.app, self.seconds = app, seconds

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        sock = environ.get("gunicorn.socket")
        has_body = environ.get("CONTENT_LENGTH", "0") not in ("", "0") or (
            "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        )
        if sock is None or not has_body:
            return self.app(environ, start_response)
        timed = environ["wsgi.input"] = TimedInput(environ["wsgi.input"], sock, self.seconds)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if timed.timed_out:  # the unread rest of the body makes the connection unusable
                headers = [(k, v) for k, v in headers if k.lower() != "connection"]
                headers.append(("Connection", "close"))
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
