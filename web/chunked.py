"""Request bodies sent with ``Transfer-Encoding: chunked`` (no Content-Length), made readable under WSGI.

Django reads ``CONTENT_LENGTH`` bytes of a body and takes a missing length for an empty body, so a chunked
import arrived as "no items" and nothing said why. gunicorn hands the app a stream that ends where the body
ends (``wsgi.input_terminated``): such a body is read here, up to the request byte limit
(``PAIRWISE_MAX_REQUEST_BYTES``), and passed on with its length. A server that cannot say where a chunked
body ends gets 411, a body over the limit 413, and one still arriving after READ_SECONDS (checked between
reads of 8 KiB) or whose client fell silent (config/gunicorn.py's socket timeout) 408, in the API's error
shape, before the app runs. A client that trickles a few bytes at a time can still hold a thread for long:
in production a buffering reverse proxy receives bodies first (README: Running in production).
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

_BLOCK = 1 << 13
# The longest a chunked body may take to arrive: 50 MiB at under 1 MB/s still makes it.
READ_SECONDS = 60.0

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class ChunkedBodies:
    """WSGI middleware around the Django application (config/wsgi.py)."""

    def __init__(self, app: WSGIApp) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if not chunked or environ.get("CONTENT_LENGTH"):
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
        except (OSError, TimeoutError):
            return _error(
                start_response,
                "408 Request Timeout",
                f"The request body did not arrive within {READ_SECONDS:g} s.",
                "timeout",
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
