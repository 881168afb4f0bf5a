"""Request bodies as the app reads them, for every endpoint: whole, or refused before anything is stored.

A body with a Content-Length that ends before that length (the client closed or half-closed its socket
early) would reach the app as a shorter body, without an error: Django's LimitedStream, like gunicorn's
reader, returns what arrived. A JSON Lines import cut after its 500th line would store 500 items. Here its
stream raises BodyIncomplete on the read that finds the end: 400 ``body_incomplete`` from the API, 400 from
Django elsewhere, before any view stores anything (every view reads its body before it writes).

Django reads ``CONTENT_LENGTH`` bytes of a body and takes a missing length for an empty body, so a chunked
body (``Transfer-Encoding: chunked``, no Content-Length) arrived as "no items" and nothing said why.
gunicorn hands the app a stream that ends where the body ends (``wsgi.input_terminated``): such a body is
read here, up to the request byte limit (``PAIRWISE_MAX_REQUEST_BYTES``), and passed on with its length.
A server that cannot say where a chunked body ends gets 411, a body over the limit 413, one cut before its
last chunk 400, and one still arriving after READ_SECONDS (checked between reads of 8 KiB) or whose client
fell silent (config/gunicorn.py's socket timeout) 408, in the API's error shape, before the app runs. A
client that trickles a few bytes at a time can still hold a thread for long: in production a buffering
reverse proxy receives bodies first (README: Running in production).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest

from web.errors import ServiceError

_BLOCK = 1 << 13
# The longest a chunked body may take to arrive: 50 MiB at under 1 MB/s still makes it.
READ_SECONDS = 60.0

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class BodyIncomplete(ServiceError, BadRequest):
    """A request body that ended before its Content-Length. A ServiceError for the API's exception handler
    (400 in the error shape), a BadRequest for Django's (a 400 page); not an OSError, which Django's
    request.read would turn into UnreadablePostError, a 500."""

    def __init__(self, received: int, length: int) -> None:
        super().__init__(
            f"The request body ended after {received} of its {length} bytes (Content-Length); nothing was "
            "stored. Send it again.",
            code="body_incomplete",
        )


class RequestBodies:
    """WSGI middleware around the Django application (config/wsgi.py)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not chunked or environ.get("CONTENT_LENGTH"):
            length = _content_length(environ)
            if length:
                environ["wsgi.input"] = _WholeBody(environ["wsgi.input"], length)
            return self.app(environ, start_response)
        if not environ.get("wsgi.input_terminated"):
            return _error(
                start_response,
                "411 Length Required",
                "This server cannot read a chunked request body: send it with a Content-Length.",
                "length_required",
            )
        limit: int = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # always set (config/settings.py)
        try:
            body = _read(environ["wsgi.input"], limit, deadline=time.monotonic() + READ_SECONDS)
        except TimeoutError:  # a socket's timeout too
            return _error(
                start_response,
                "408 Request Timeout",
                f"The request body did not arrive within {READ_SECONDS:g} s.",
                "timeout",
            )
        except OSError:  # gunicorn's NoMoreData: the client closed before the last chunk
            return _error(
                start_response,
                "400 Bad Request",
                "The request body ended before its last chunk; nothing was stored. Send it again.",
                "body_incomplete",
            )
        if len(body) > limit:
            return _error(
                start_response,
                "413 Request Entity Too Large",
                f"The request body is over the limit of {limit} bytes. Split it.",
                "too_large",
            )
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _content_length(environ: dict[str, Any]) -> int:
    """The body's length as Django reads it (WSGIRequest): none, or not a number, is 0."""
    try:
        return max(int(environ.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


class _WholeBody:
    """A body's stream that gives its Content-Length bytes or raises BodyIncomplete: a read that wants
    more than the stream still has finds its end early. Django reads through read and readline
    (LimitedStream), which never ask past the length."""

    def __init__(self, stream: Any, length: int) -> None:
        self.stream, self.length, self.received = stream, length, 0

    def _wanted(self, size: int | None) -> int:
        left = self.length - self.received
        return left if size is None or size < 0 else min(size, left)

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._wanted(size)
        parts: list[bytes] = []
        got = 0
        while got < wanted:  # a stream may give less than asked before its end (a socket does)
            block = self.stream.read(wanted - got)
            if not block:
                raise BodyIncomplete(self.received + got, self.length)
            parts.append(block)
            got += len(block)
        self.received += got
        return b"".join(parts)

    def readline(self, size: int | None = -1) -> bytes:
        wanted = self._wanted(size)
        if wanted == 0:
            return b""
        line = self.stream.readline(wanted)
        self.received += len(line)
        if len(line) < wanted and not line.endswith(b"\n"):  # neither a whole line nor all it asked for
            raise BodyIncomplete(self.received, self.length)
        return line

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")


def _read(stream: Any, limit: int, *, deadline: float) -> bytes:
    """The whole body, or the first limit + 1 bytes of one that is longer; TimeoutError past the deadline
    (a socket timeout, an OSError, comes through as it is)."""
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        if time.monotonic() > deadline:
            raise TimeoutError
        block = stream.read(min(_BLOCK, limit + 1 - size))
        if not block:
            break
        parts.append(block)
        size += len(block)
    return b"".join(parts)


def _error(start_response: StartResponse, status: str, detail: str, code: str) -> list[bytes]:
    body = json.dumps({"detail": detail, "code": code}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
