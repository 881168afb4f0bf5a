"""Request bodies sent chunked (no Content-Length): read whole under gunicorn, refused over the byte limit
(413) and where the server cannot say where the body ends (411); never read as an empty body."""

from __future__ import annotations

import http.client
import io
import json
import os
import time
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from annotation.models import Pair
from tests.servers import gunicorn
from web import chunked
from web.chunked import ChunkedBodies


def _call(environ: dict[str, Any]) -> tuple[str, bytes, dict[str, Any] | None]:
    """The status, the body and the environ the wrapped app saw (None when it was not called)."""
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env, body=env["wsgi.input"].read(int(env.get("CONTENT_LENGTH") or 0)))
        start_response("200 OK", [])
        return [b"ok"]

    answer: list[str] = []
    body = b"".join(ChunkedBodies(app)(environ, lambda status, headers: answer.append(status)))
    return answer[0], body, seen or None


def _chunked(body: bytes, *, terminated: bool = True) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "POST",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": terminated,
    }


def test_a_chunked_body_reaches_the_app_whole_with_its_length(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1_000_000
    body = b"x" * 200_000  # several reads
    status, _, seen = _call(_chunked(body))
    assert status == "200 OK"
    assert seen is not None and seen["body"] == body and seen["CONTENT_LENGTH"] == str(len(body))


def test_a_chunked_body_over_the_limit_is_413_before_the_app_runs(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    status, body, seen = _call(_chunked(b"x" * 1025))
    assert status.startswith("413") and seen is None
    assert json.loads(body) == {
        "detail": "The request body is over the limit of 1024 bytes. Split it.",
        "code": "too_large",
    }
    assert _call(_chunked(b"x" * 1024))[0] == "200 OK"  # at the limit


def test_a_chunked_body_a_server_cannot_delimit_is_411_not_an_empty_body():
    status, body, seen = _call(_chunked(b'{"pairs": []}', terminated=False))
    assert status.startswith("411") and seen is None
    assert json.loads(body)["code"] == "length_required"


class _Slow(io.RawIOBase):
    """A chunked body arriving slowly, or a client that fell silent (the socket's timeout)."""

    def __init__(self, *, pause: float = 0.0, silent: bool = False) -> None:
        self.pause, self.silent = pause, silent

    def read(self, size: int = -1) -> bytes:
        if self.silent:
            raise TimeoutError("timed out")  # what socket.recv raises past the socket's timeout
        time.sleep(self.pause)
        return b"x" * 100


def test_a_chunked_body_still_arriving_after_the_deadline_is_408(monkeypatch):
    monkeypatch.setattr(chunked, "READ_SECONDS", 0.3)
    environ = {**_chunked(b""), "wsgi.input": _Slow(pause=0.1)}
    status, body, seen = _call(environ)
    assert status.startswith("408") and seen is None
    assert json.loads(body)["code"] == "timeout"


def test_a_chunked_body_whose_client_fell_silent_is_408():
    status, body, seen = _call({**_chunked(b""), "wsgi.input": _Slow(silent=True)})
    assert status.startswith("408") and seen is None
    assert json.loads(body)["code"] == "timeout"


def test_the_shipped_server_times_out_a_silent_client():
    """config/gunicorn.py gives each request's socket an idle timeout, as the sync workers' timeout did."""
    import socket

    from config import gunicorn as shipped

    class Request:
        unreader = type("Unreader", (), {"sock": socket.socket()})()

    request = Request()
    try:
        shipped.pre_request(None, request)
        assert request.unreader.sock.gettimeout() == shipped.CLIENT_IDLE_SECONDS
    finally:
        request.unreader.sock.close()


def test_a_body_with_a_length_passes_untouched():
    environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "2", "wsgi.input": io.BytesIO(b"ab")}
    status, _, seen = _call(environ)
    assert status == "200 OK" and seen is not None and seen["body"] == b"ab"


@pytest.mark.slow
def test_a_chunked_import_through_gunicorn_stores_its_pairs(
    transactional_db, make_project, admin_user, tmp_path
):
    project = make_project("chunked")
    token = Token.objects.create(user=admin_user).key
    db = connection.settings_dict
    url = f"postgres://{quote(db['USER'], safe='')}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "DATABASE_URL": url}
    pairs = [
        {"external_id": f"c{i}", "prompt": f"P{i}", "response_a": "a", "response_b": "b"} for i in range(3)
    ]
    body = json.dumps({"pairs": pairs}).encode()
    with gunicorn(env, tmp_path / "web.log", "--workers", "1") as web:
        conn = http.client.HTTPConnection("127.0.0.1", web.port, timeout=30)
        headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        # Sent as two chunks and no Content-Length, as a streaming client does.
        conn.request(
            "POST", f"/api/v1/projects/{project.slug}/pairs/", body=iter([body[:10], body[10:]]),
            headers=headers, encode_chunked=True,
        )  # fmt: skip
        response = conn.getresponse()
        assert response.status == 201, response.read()
    assert Pair.objects.filter(project=project).count() == 3
