"""Request bodies as the app reads them (web.bodies): sent chunked (no Content-Length), read whole under
gunicorn, refused over the byte limit (413) and where the server cannot say where the body ends (411),
never read as an empty body; cut before their end (their Content-Length, their last chunk), refused with
400 and nothing stored, never read as a shorter body."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from annotation.models import Judgment, Pair
from tests.servers import Gunicorn, gunicorn
from web import bodies
from web.bodies import BodyIncomplete, RequestBodies


def _call(environ: dict[str, Any]) -> tuple[str, bytes, dict[str, Any] | None]:
    """The status, the body and the environ the wrapped app saw (None when it was not called)."""
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env, body=env["wsgi.input"].read(int(env.get("CONTENT_LENGTH") or 0)))
        start_response("200 OK", [])
        return [b"ok"]

    answer: list[str] = []
    body = b"".join(RequestBodies(app)(environ, lambda status, headers: answer.append(status)))
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
    monkeypatch.setattr(bodies, "READ_SECONDS", 0.3)
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


def test_a_body_with_a_length_passes_whole_by_read_and_by_readline():
    body = b'{"a": 1}\n{"b": 2}\n'
    environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body)}
    RequestBodies(lambda env, start_response: [])(environ, lambda *a: None)
    stream = environ["wsgi.input"]
    assert stream.readline() == b'{"a": 1}\n' and stream.read(3) == b'{"b' and stream.read() == b'": 2}\n'
    assert stream.read() == b"" and stream.readline() == b""


@pytest.mark.parametrize("reads", ["read", "read(size)", "readline"])
def test_a_body_that_ends_before_its_length_raises_on_the_read_that_finds_the_end(reads):
    environ = {"REQUEST_METHOD": "POST", "CONTENT_LENGTH": "20", "wsgi.input": io.BytesIO(b"line 1\nline")}
    RequestBodies(lambda env, start_response: [])(environ, lambda *a: None)
    stream = environ["wsgi.input"]
    with pytest.raises(BodyIncomplete) as refused:
        if reads == "read":
            stream.read()
        elif reads == "read(size)":
            assert stream.read(7) == b"line 1\n"
            stream.read(13)
        else:
            assert stream.readline() == b"line 1\n"
            stream.readline()
    assert refused.value.status == 400 and refused.value.code == "body_incomplete"
    assert refused.value.detail == (
        "The request body ended after 11 of its 20 bytes (Content-Length); nothing was stored. Send it again."
    )


def test_a_form_post_cut_before_its_length_is_400_not_a_shorter_form(db):
    """Pages read bodies through the same stream: the login form's CSRF check reads the form first, and
    found a shorter one (no token: 403) before the stream said the body was cut."""
    from django.core.wsgi import get_wsgi_application

    secret = "a" * 32
    body = f"csrfmiddlewaretoken={secret}&username=admin&password=correct-horse-9".encode()
    environ = {
        "REQUEST_METHOD": "POST", "PATH_INFO": "/login/", "SERVER_NAME": "testserver", "SERVER_PORT": "80",
        "wsgi.url_scheme": "http", "HTTP_COOKIE": f"csrftoken={secret}", "wsgi.input": io.BytesIO(body[:30]),
        "CONTENT_TYPE": "application/x-www-form-urlencoded", "CONTENT_LENGTH": str(len(body)),
    }  # fmt: skip
    answer: list[str] = []
    RequestBodies(get_wsgi_application())(environ, lambda status, headers: answer.append(status))
    assert answer == ["400 Bad Request"]


@pytest.fixture
def served(transactional_db, admin_user, tmp_path) -> Iterator[tuple[Gunicorn, str]]:
    """gunicorn with config/gunicorn.py on the test database, and a staff token."""
    token = Token.objects.create(user=admin_user).key
    db = connection.settings_dict
    url = f"postgres://{quote(db['USER'], safe='')}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "DATABASE_URL": url}
    with gunicorn(env, tmp_path / "web.log", "--workers", "1") as web:
        yield web, token


@pytest.mark.slow
def test_a_chunked_import_through_gunicorn_stores_its_pairs(served, make_project):
    web, token = served
    project = make_project("chunked")
    pairs = [
        {"external_id": f"c{i}", "prompt": f"P{i}", "response_a": "a", "response_b": "b"} for i in range(3)
    ]
    body = json.dumps({"pairs": pairs}).encode()
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


def _send_cut(port: int, path: str, token: str, head: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """POST head and body on a raw socket, then shut its write side, as a client whose upload broke off
    does; the status and JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {token}\r\n"
            f"Content-Type: application/x-ndjson\r\n{head}Connection: close\r\n\r\n".encode()
            + body
        )
        sock.shutdown(socket.SHUT_WR)
        response = http.client.HTTPResponse(sock)
        response.begin()
        return response.status, json.loads(response.read())


def _lines(kind: str, n: int) -> bytes:
    if kind == "pairs":
        items = [
            {"external_id": f"c{i}", "prompt": f"P{i}", "response_a": "a", "response_b": "b"}
            for i in range(n)
        ]
    else:
        items = [{"pair": "p0", "rater": f"r{i}", "choice": "a"} for i in range(n)]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["pairs", "judgments"])
def test_an_import_cut_before_its_content_length_stores_nothing_and_says_so(
    served, make_project, make_pairs, kind
):
    """500 whole lines of a body that declared twice as many bytes, then the client shuts its write side:
    gunicorn and Django read it as a shorter body without an error, which the import stored (201)."""
    web, token = served
    project = make_project("cut")
    make_pairs(project, 1)  # p0, which the judgments name
    path = f"/api/v1/projects/{project.slug}/{'pairs' if kind == 'pairs' else 'judgments/import'}/"
    sent = _lines(kind, 500)
    declared = 2 * len(sent)
    status, answer = _send_cut(web.port, path, token, f"Content-Length: {declared}\r\n", sent)
    assert (status, answer) == (400, {
        "detail": f"The request body ended after {len(sent)} of its {declared} bytes (Content-Length); "
        "nothing was stored. Send it again.",
        "code": "body_incomplete",
    })  # fmt: skip
    assert Pair.objects.filter(project=project).count() == 1 and not Judgment.objects.exists()
    # The same lines, whole, are stored: the refusal was the cut's.
    whole = _send_cut(web.port, path, token, f"Content-Length: {len(sent)}\r\n", sent)
    assert whole[0] == 201, whole


@pytest.mark.slow
def test_a_chunked_import_cut_before_its_last_chunk_stores_nothing_and_says_so(served, make_project):
    web, token = served
    project = make_project("cut")
    sent = _lines("pairs", 500)
    status, answer = _send_cut(
        web.port, f"/api/v1/projects/{project.slug}/pairs/", token, "Transfer-Encoding: chunked\r\n",
        b"%x\r\n%s\r\n" % (len(sent), sent),  # no final 0-chunk
    )  # fmt: skip
    assert (status, answer["code"]) == (400, "body_incomplete"), answer
    assert not Pair.objects.filter(project=project).exists()
