"""A database outage is answered 503 with Retry-After, in the API's error shape and on the pages, and logged
once when it starts and once when it ends; a bug stays a 500. The outage is real: gunicorn on a PostgreSQL
cluster of the test's own, stopped and started again."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection, transaction
from rest_framework.test import APIClient

from tests.servers import ROOT, Gunicorn, PostgresCluster, gunicorn, postgres_cluster
from web.outages import RETRY_AFTER_SECONDS, is_database_outage

pytestmark = pytest.mark.slow


def _copy_schema(source: dict[str, Any], cluster: PostgresCluster) -> str:
    """The migrated test database's tables (no rows) in a new database of the cluster; a staff token there."""
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        conn.execute("CREATE DATABASE pairwise")
    dump = subprocess.run(
        ["pg_dump", "--schema-only", "--no-owner", "-h", source["HOST"], "-p", str(source["PORT"] or 5432),
         "-U", source["USER"], source["NAME"]],
        check=True, capture_output=True,
    )  # fmt: skip
    subprocess.run(
        ["psql", "-q", "-v", "ON_ERROR_STOP=1", cluster.url("pairwise")],
        input=dump.stdout,
        check=True,
        capture_output=True,
    )
    token = secrets.token_hex(20)
    with psycopg.connect(cluster.url("pairwise"), autocommit=True) as conn:
        user_id = conn.execute(
            "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email,"
            " is_staff, is_active, date_joined)"
            " VALUES ('!', false, 'staff', '', '', '', true, true, now()) RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute(
            "INSERT INTO authtoken_token (key, user_id, created) VALUES (%s, %s, now())", (token, user_id)
        )
    return token


@pytest.fixture
def server(db: Any, tmp_path: Path) -> Iterator[tuple[Gunicorn, str, Any]]:
    """gunicorn (one worker: one process logs) on a cluster of its own: (the server, a staff token, the
    cluster)."""
    source = dict(connection.settings_dict)
    with postgres_cluster() as cluster:
        token = _copy_schema(source, cluster)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.test_settings",
            "DATABASE_URL": cluster.url("pairwise"),
            "PYTHONPATH": str(ROOT),
        }
        with gunicorn(env, tmp_path / "web.log", "--workers", "1") as web:
            yield web, token, cluster


def _get(port: int, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.mark.django_db  # the test database, migrated: its tables are copied to the cluster
def test_an_outage_is_a_503_to_try_again_logged_once_and_recovers(server):
    web, token, cluster = server
    api = {"Authorization": f"Token {token}"}
    assert _get(web.port, "/api/v1/projects/", **api)[0] == 200

    cluster.stop()
    for _ in range(3):
        status, headers, body = _get(web.port, "/api/v1/projects/", **api)
        assert status == 503, body
        assert json.loads(body) == {
            "detail": "The database is unavailable; try again in a few seconds.",
            "code": "unavailable",
        }
        assert headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    # A page whose session must be read: its middleware, not a view, meets the outage.
    status, headers, body = _get(web.port, "/admin/", Cookie=f"sessionid={'x' * 32}")
    assert status == 503 and headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert headers["Content-Type"].startswith("text/html") and b"The database is unavailable" in body

    cluster.start()
    assert _get(web.port, "/api/v1/projects/", **api)[0] == 200
    log = web.log_text()
    assert log.count("Database unavailable") == 1, log
    assert "Database back after" in log and "4 requests were answered 503" in log, log
    assert "Traceback" not in log and "Service Unavailable" not in log, log


@pytest.mark.django_db(transaction=True)
def test_a_connection_the_server_ends_is_an_outage():
    """What the requests in flight meet when PostgreSQL shuts down: their session terminated (57P01)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    db = connection.settings_dict
    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname=db["NAME"]
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    try:
        with pytest.raises(OperationalError) as raised, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        assert is_database_outage(raised.value)
    finally:
        connection.close()


@pytest.mark.django_db
def test_a_query_bug_is_still_a_500_to_report(admin_user, monkeypatch):
    """An OperationalError that is no outage (here a cancelled statement) is answered as a bug."""
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(admin_user)
    with pytest.raises(OperationalError) as raised, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL statement_timeout = 1; SELECT pg_sleep(1)")
    cancelled = raised.value
    assert not is_database_outage(cancelled)

    def cancel(*args: Any, **kwargs: Any) -> Any:
        raise cancelled

    monkeypatch.setattr("annotation.api.views.ProjectListView.get", cancel)
    response = client.get("/api/v1/projects/")
    assert response.status_code == 500
    assert response.json()["code"] == "server_error"
