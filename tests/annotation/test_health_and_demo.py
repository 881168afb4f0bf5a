"""The health check against the real database and Redis broker, and the demo command."""

from __future__ import annotations

import io
import logging

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from annotation import services
from annotation.models import Pair, Project
from config.celery import app as celery_app


def test_healthz_reports_database_and_broker(client, db):
    assert celery_app.conf.broker_url.startswith("redis://")
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_healthz_fails_when_the_broker_is_down(client, db, monkeypatch):
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:9/0")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"].startswith("error")
    assert response.json()["database"] == "ok"


def test_healthz_logs_an_outage_once_not_once_per_probe(client, db, monkeypatch, caplog):
    assert client.get("/healthz").status_code == 200  # healthy to begin with, whatever ran before
    caplog.clear()
    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://127.0.0.1:9/0")
    with caplog.at_level(logging.INFO):
        assert [client.get("/healthz").status_code for _ in range(3)] == [503, 503, 503]
        monkeypatch.undo()
        assert client.get("/healthz").status_code == 200
    said = [(r.name, r.levelname, r.getMessage().split(":")[0]) for r in caplog.records]
    assert said == [("config.health", "WARNING", "unhealthy"), ("config.health", "INFO", "healthy again")]


def _logins(output: str) -> dict[str, str]:
    rows = [line.split() for line in output.splitlines() if "username:" in line]
    return {row[row.index("username:") + 1]: row[row.index("password:") + 1] for row in rows}


def test_demo_builds_a_project_with_the_seed_prompts_and_working_logins(db):
    out = io.StringIO()
    call_command("demo", stdout=out)
    project = Project.objects.get(slug="demo")
    prompts = set(Pair.objects.filter(project=project).values_list("prompt", flat=True))
    assert {
        "Explain why the sky is blue to a 5-year-old.",
        "What is the capital of France?",
        "Tell me a fun fact about penguins.",
    } <= prompts
    logins = _logins(out.getvalue())
    users = get_user_model().objects
    assert users.get(username="demo-admin").check_password(logins["demo-admin"])
    assert users.get(username="demo-admin").is_staff
    rater = users.get(username="demo-rater")
    assert rater.check_password(logins["demo-rater"]) and not rater.is_staff
    assert services.assignment_next(project=project, user=rater) is not None


def test_demo_runs_again_without_duplicating_pairs(db):
    call_command("demo", stdout=io.StringIO())
    count = Pair.objects.count()
    out = io.StringIO()
    call_command("demo", stdout=out)
    assert Pair.objects.count() == count
    assert f"0 pairs added, {count} already there" in out.getvalue()


def test_demo_admin_and_rater_each_get_their_own_password_and_both_log_in(client, db):
    """Whoever is handed the rater's login must not hold the admin's."""
    out = io.StringIO()
    call_command("demo", stdout=out)
    logins = _logins(out.getvalue())
    assert set(logins) == {"demo-admin", "demo-rater"}
    assert logins["demo-admin"] != logins["demo-rater"]
    assert len(logins["demo-admin"]) >= 16 and len(logins["demo-rater"]) >= 12
    users = get_user_model().objects
    assert not users.get(username="demo-admin").check_password(logins["demo-rater"])
    assert not users.get(username="demo-rater").check_password(logins["demo-admin"])
    for username, password in logins.items():
        assert client.login(username=username, password=password), username
        client.logout()
    # The admin's login opens the admin pages.
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "demo-admin", "password": logins["demo-admin"]}
    )
    assert response.status_code == 302 and response["Location"] == "/admin/"
    # Every run makes new ones: a password printed by an earlier start stops working.
    again = io.StringIO()
    call_command("demo", stdout=again)
    assert not users.get(username="demo-admin").check_password(logins["demo-admin"])
    assert _logins(again.getvalue())["demo-admin"] != logins["demo-admin"]


def test_demo_takes_each_password_on_its_own(db):
    out = io.StringIO()
    call_command("demo", password="rater-pass-123", admin_password="admin-pass-456", stdout=out)
    assert _logins(out.getvalue()) == {"demo-admin": "admin-pass-456", "demo-rater": "rater-pass-123"}


def test_demo_beside_a_lookalike_of_its_users_says_so_and_changes_nobody(db):
    # scripts/start runs the demo at every start: a user renamed "Demo-Admin" in the admin made it stop
    # with "Database error: IntegrityError ... check that the database is running and migrated".
    other = get_user_model().objects.create_user("Demo-Admin", password="theirs-9-long")
    with pytest.raises(CommandError, match="'Demo-Admin' already exists"):
        call_command("demo", stdout=io.StringIO())
    other.refresh_from_db()
    assert not other.is_staff and other.check_password("theirs-9-long")
