"""Request bodies sent with ``Transfer-Encoding: chunked`` (no Content-Length), made readable under WSGI.

Django reads ``CONTENT_LENGTH`` bytes of a body and takes a missing length for an empty body, so a chunked
import arrived as "no items" and nothing said why. gunicorn hands the app a stream that ends where the body
ends (``wsgi.input_terminated``): such a body is read here, up to the request byte limit
(``PAIRWISE_MAX_REQUEST_BYTES``), and passed on with its length. A server that cannot say where a chunked
body ends gets 411, and a body over the limit 413, in the API's error shape, before the app runs.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings

_BLOCK = 1 << 16

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
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        body = _read(environ["wsgi.input"], limit)
        if limit is not None and len(body) > limit:
            return _error(
                start_response,
                "413 Request Entity Too Large",
                f"The request body is over the limit of {limit} bytes. Split it.",
                "too_large",
            )
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.app(environ, start_response)


def _read(stream: Any, limit: int | None) -> bytes:
    """The whole body, or the first limit + 1 bytes of one that is longer."""
    parts: list[bytes] = []
    size = 0
    while limit is None or size <= limit:
        block = stream.read(_BLOCK if limit is None else min(_BLOCK, limit + 1 - size))
        if not block:
            break
        parts.append(block)
        size += len(block)
    return b"".join(parts)


def _error(start_response: StartResponse, status: str, detail: str, code: str) -> list[bytes]:
    body = json.dumps({"detail": detail, "code": code}).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
