"""The shipped gunicorn settings (config/gunicorn.py): an export streams to a slow client for longer than the
worker timeout and arrives whole, and workers die with their master, so a new master binds the port at once.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.db import connection
from rest_framework.authtoken.models import Token

from annotation import services
from tests.servers import ROOT, gunicorn, wait_until

pytestmark = pytest.mark.slow

PAIRS = 80
PROMPT_CHARS = 200_000  # 80 judgments of 200 kB: 16 MB, four times what the kernel buffers for a socket


@pytest.fixture
def export(transactional_db: Any, make_project: Any, admin_user: Any) -> tuple[str, str]:
    """A project whose judgments export is 16 MB, committed for the server's own connection: (path, token)."""
    project = make_project()
    prompt = "x" * PROMPT_CHARS
    items = [
        {"external_id": f"p{i}", "prompt": prompt, "response_a": "a", "response_b": "b"} for i in range(PAIRS)
    ]
    services.pairs_import(project=project, items=items)
    services.judgments_import(
        project=project, items=[{"pair": f"p{i}", "rater": "r", "choice": "a"} for i in range(PAIRS)]
    )
    path = f"/api/v1/projects/{project.slug}/export/judgments.jsonl"
    return path, Token.objects.create(user=admin_user).key


@pytest.fixture
def env() -> dict[str, str]:
    db = connection.settings_dict
    url = f"postgres://{quote(db['USER'], safe='')}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "DATABASE_URL": url}


def _open_export(port: int, path: str, token: str) -> http.client.HTTPResponse:
    """The export's response, on a connection whose receive buffer is small: the server cannot write far
    ahead of what the client has read, so it is still sending while the client reads slowly."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.sock = sock
    conn.request("GET", path, headers={"Authorization": f"Token {token}"})
    response = conn.getresponse()
    assert response.status == 200
    return response


def test_an_export_to_a_slow_client_outlasts_the_worker_timeout(export, env, tmp_path):
    path, token = export
    with gunicorn(env, tmp_path / "web.log", "--workers", "1", "--timeout", "2") as web:
        response = _open_export(web.port, path, token)
        started, body = time.monotonic(), bytearray()
        while chunk := response.read(64 * 1024):  # at 2.5 MB/s: about 6.5 s for the 16 MB
            body += chunk
            time.sleep(max(0.0, started + len(body) / 2.5e6 - time.monotonic()))
        assert time.monotonic() - started > 5
        assert "WORKER TIMEOUT" not in web.log_text()
    rows = [json.loads(line) for line in body.decode().splitlines()]
    assert len(rows) == PAIRS and all(len(row["prompt"]) == PROMPT_CHARS for row in rows)


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie that its new parent has not reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_workers_die_with_their_master_and_a_new_master_binds_its_port(export, env, tmp_path):
    path, token = export
    with gunicorn(env, tmp_path / "first.log", "--workers", "2") as first:
        wait_until(lambda: len(first.workers()) == 2, "two workers")
        workers = first.workers()
        # A response in flight: its worker is busy sending, as an orphan would go on doing.
        in_flight = _open_export(first.port, path, token)
        in_flight.read(64 * 1024)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
        wait_until(lambda: all(_gone(pid) for pid in workers), "the workers to die with their master", 3)
        with gunicorn(env, tmp_path / "second.log", "--workers", "1", port=first.port) as second:
            assert "Connection in use" not in second.log_text()
            conn = http.client.HTTPConnection("127.0.0.1", second.port, timeout=30)
            conn.request("GET", "/healthz")
            assert conn.getresponse().status == 200
        in_flight.close()


def test_the_shipped_commands_use_the_settings():
    """scripts/start, the compose file and the image run gunicorn with the settings tested above."""
    for shipped in ("scripts/start", "docker/compose.yml", "docker/Dockerfile"):
        assert "config/gunicorn.py" in (ROOT / shipped).read_text(), shipped
