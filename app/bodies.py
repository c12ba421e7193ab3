"""Request bodies from slow or vanishing clients: bounded waits, no held resources.

- A body that stops arriving is cut off: ``408`` after ``BODY_TIMEOUT`` idle seconds.
  Under the gevent worker a slow upload costs a greenlet, not a thread, so a client may
  send slowly for as long as it keeps sending; one that stops altogether would otherwise
  hold its connection (and its spool) forever. Every read of the body waits at most that
  long for the next bytes (a socket timeout set only around body reads). The connection
  is then shut for reading, so once the problem is sent gunicorn meets the end of the
  stream and closes it (it ignores an application's ``Connection: close``, and would
  otherwise wait, with no time limit, to discard the rest of the body).
- A body that ends before its ``Content-Length`` (the client went away) is an error,
  never a shorter body: gunicorn marks its input terminated, so werkzeug does not check.
- A body without ``Content-Length`` (sent chunked) is held to the request's
  ``max_content_length`` like one that says its length: past the limit is a ``413``.
  werkzeug's own stream stops reading at the limit and reports the end of the body, so a
  longer body was cut there and processed (``BoundedStream``, on every request through
  ``BodyRequest``).
- Bodies are read before the request touches the database (``read_first``): a slow
  client must not hold one of the few pooled connections while it sends. Endpoints that
  stream their body (imports) release the connection themselves before reading it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

from flask import Flask, Request, current_app, request
from werkzeug.exceptions import ClientDisconnected, RequestEntityTooLarge, RequestTimeout
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream

STREAMED = "streams_body"  # a view attribute: this endpoint reads its body as a stream


class TimedInput:
    """``wsgi.input`` whose reads give up after ``seconds`` without a byte."""

    def __init__(
        self, stream: Any, sock: socket.socket, seconds: float, length: int | None
    ) -> None:
        self._stream, self._sock, self._seconds = stream, sock, seconds
        self._length, self._received = length, 0

    def _call(self, read: Callable[..., Any], *args: Any) -> Any:
        previous = self._sock.gettimeout()
        self._sock.settimeout(self._seconds)
        try:
            data = read(*args)
        except TimeoutError as exc:
            self._sock.shutdown(socket.SHUT_RD)
            raise RequestTimeout(
                f"The request body stopped arriving: nothing came for {self._seconds:g} s."
            ) from exc
        except OSError as exc:  # gunicorn's NoMoreData: a chunked body cut short
            raise ClientDisconnected("The request body ended before it was complete.") from exc
        finally:
            self._sock.settimeout(previous)
        self._received += sum(map(len, data)) if isinstance(data, list) else len(data)
        if not data and self._length is not None and self._received < self._length:
            raise ClientDisconnected(
                f"The request body ended after {self._received} of its "
                f"{self._length} bytes (Content-Length)."
            )
        return data

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
        length = environ.get("CONTENT_LENGTH", "")
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if sock is None or not (chunked or length not in ("", "0")):
            return self.app(environ, start_response)
        environ["wsgi.input"] = TimedInput(
            environ["wsgi.input"], sock, self.seconds, int(length) if length.isdigit() else None
        )
        return self.app(environ, start_response)


class BoundedStream(LimitedStream):
    """A body of unknown length held to ``limit`` bytes: one byte more is a ``413``.

    One byte past the limit is read to tell a body of exactly ``limit`` bytes (accepted)
    from a longer one (refused, never cut at the limit).
    """

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(stream, limit + 1, is_max=True)
        self.maximum = limit

    def readinto(self, buffer: Any) -> int:  # type: ignore[override]
        size = super().readinto(buffer) or 0
        if self._pos > self.maximum:
            raise RequestEntityTooLarge()
        return size


class BodyRequest(Request):
    """Flask's request, whose body stream never cuts a chunked body at the limit."""

    @cached_property
    def stream(self) -> IO[bytes]:
        limit = self.max_content_length
        terminated = "wsgi.input_terminated" in self.environ  # the server ends the body
        if limit is not None and self.content_length is None and terminated and not self.shallow:
            return BoundedStream(self.environ["wsgi.input"], limit)  # type: ignore[return-value]
        return super().stream


def streams_body(func: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that reads its own body as a stream (and releases the database first)."""
    setattr(func, STREAMED, True)
    return func


def _handler() -> Any:
    view = current_app.view_functions.get(request.endpoint or "")
    return getattr(getattr(view, "view_class", None), request.method.lower(), None) or view


def read_first() -> None:
    """``before_request``: take the whole (small) body now, before any database access."""
    handler = _handler()
    if handler is not None and not getattr(handler, STREAMED, False):
        request.get_data(cache=True)


def init_app(app: Flask) -> None:
    app.request_class = BodyRequest
    app.wsgi_app = BodyTimeout(  # type: ignore[method-assign]
        app.wsgi_app, app.config["SETTINGS"].body_timeout
    )
    app.before_request(read_first)
