"""Usernames are one name whatever their case: the database refuses a look-alike, every creation path says
so in words, and look-alikes made before are reported by `manage.py check`, never merged."""

from __future__ import annotations

import importlib
from io import StringIO

import pytest
from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from annotation import services
from web.errors import Invalid
from web.usernames import INDEX_NAME

migration = importlib.import_module("web.migrations.0002_username_case_insensitive")


def _without_index() -> None:
    with connection.cursor() as cursor:
        cursor.execute(f'DROP INDEX "{INDEX_NAME}"')


def test_the_database_refuses_a_username_that_differs_only_in_case(db):
    User.objects.create_user("rater2")
    with pytest.raises(IntegrityError), transaction.atomic():
        User.objects.create_user("Rater2")


def test_rater_creation_refuses_a_lookalike_in_words(db, api, admin_user):
    services.rater_create(username="rater2", password="correct-horse-9")
    with pytest.raises(Invalid) as refused:
        services.rater_create(username="RATER2", password="correct-horse-9")
    assert refused.value.errors == [
        {
            "field": "username",
            "message": "A user named 'rater2' already exists; usernames that differ only in case are the "
            "same name. Choose another.",
        }
    ]
    answer = api(admin_user).post(
        "/api/v1/raters/", {"username": "Rater2", "password": "correct-horse-9"}, format="json"
    )
    assert answer.status_code == 400 and "differ only in case" in answer.json()["errors"][0]["message"]
    assert User.objects.filter(username__iexact="rater2").count() == 1


def test_the_admin_user_forms_refuse_a_lookalike(client, admin_user):
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    other = User.objects.create_user("Alice")
    page = client.post(
        reverse("admin:auth_user_add"),
        {
            "username": "alice",
            "password1": "correct-horse-9",
            "password2": "correct-horse-9",
            "usable_password": "true",
        },
    )
    assert page.status_code == 200 and "differ only in case" in page.content.decode()
    bob = User.objects.create_user("bob")
    change = client.get(reverse("admin:auth_user_change", args=[bob.pk]))
    form = change.context["adminform"].form
    data = {
        k: v for k, v in form.initial.items() if v is not None and k not in ("groups", "user_permissions")
    }
    data |= {"username": "ALICE", "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    data.pop("date_joined", None)
    data.pop("last_login", None)
    page = client.post(reverse("admin:auth_user_change", args=[bob.pk]), data)
    assert page.status_code == 200 and "differ only in case" in page.content.decode()
    assert User.objects.get(pk=bob.pk).username == "bob" and User.objects.get(pk=other.pk).username == "Alice"


def test_check_lists_lookalikes_made_before_the_index(db):
    _without_index()
    User.objects.create_user("rater2")
    User.objects.create_user("Rater2")
    User.objects.create_user("someone")
    out = StringIO()
    call_command("check", stdout=out, stderr=out)
    assert "web.W001" in out.getvalue() and "'Rater2', 'rater2'" in out.getvalue()
    assert "someone" not in out.getvalue()
    assert User.objects.count() == 3  # nothing merged


def test_the_migration_stops_on_lookalikes_naming_them_and_runs_once_they_are_renamed(db):
    _without_index()
    User.objects.create_user("rater2")
    clash = User.objects.create_user("Rater2")
    stops = pytest.raises(CommandError, match=r"differ only in case exist \(Rater2, rater2\)")
    with stops, connection.schema_editor() as editor:
        migration.create_index(apps, editor)
    clash.username = "rater2-b"
    clash.save()
    with connection.schema_editor() as editor:
        migration.create_index(apps, editor)
    with pytest.raises(IntegrityError), transaction.atomic():
        get_user_model().objects.create_user("RATER2")


# A look-alike in case; one in full width, which is stored NFKC-normalised.
@pytest.mark.parametrize("typed", ["Rater2", "\uff52\uff41\uff54\uff45\uff52\uff12"])
def test_createsuperuser_refuses_a_lookalike_in_words(db, monkeypatch, typed):
    # The README's first admin comes from this command; Django's own check compares the name as typed
    # and exactly, so a look-alike reached the unique index and was reported as a database outage.
    User.objects.create_user("rater2")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "correct-horse-9")
    with pytest.raises(CommandError, match="rater2") as refused:
        call_command("createsuperuser", interactive=False, username=typed, email="a@example.com")
    assert "already exists" in str(refused.value)
    assert list(User.objects.values_list("username", flat=True)) == ["rater2"]


def test_manage_py_reports_a_refused_row_as_refused_data_not_as_a_database_outage(db, monkeypatch, capsys):
    # Any command that breaks a rule of the database (here the look-alike index from `manage.py shell`)
    # was told to check that the database is running and migrated.
    import manage

    User.objects.create_user("rater2")
    code = "from django.contrib.auth.models import User; User.objects.create_user('RATER2')"
    monkeypatch.setattr("sys.argv", ["manage.py", "shell", "-c", code])
    with pytest.raises(SystemExit) as stopped, transaction.atomic():
        manage.main()
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("Database error: IntegrityError: duplicate key") and INDEX_NAME in err
    assert "refused the data" in err and "running and migrated" not in err


@pytest.mark.parametrize("typed", ["Rater7", "rater7", "RATER7"])
def test_a_user_logs_in_whatever_the_case_they_type(db, client, typed):
    """One name whatever the case: the login page and the API's token endpoint find the account."""
    from rest_framework.test import APIClient

    User.objects.create_user("Rater7", password="long enough password 7")
    response = client.post(reverse("login"), {"username": typed, "password": "long enough password 7"})
    assert response.status_code == 302, response.content[:300]
    assert client.session["_auth_user_id"] == str(User.objects.get(username="Rater7").pk)
    token = APIClient().post(
        "/api/v1/auth/token/", {"username": typed, "password": "long enough password 7"}, format="json"
    )
    assert token.status_code == 200 and token.json()["token"]
    wrong = APIClient().post(
        "/api/v1/auth/token/", {"username": typed, "password": "not the password"}, format="json"
    )
    assert wrong.status_code == 400


def test_project_raters_are_added_and_removed_by_their_name_in_any_case(db, api, admin_user, make_project):
    """One name whatever the case: adding `RD` to a project adds the user `rd` (as logging in as `RD`
    does), and the removal endpoint finds them the same way."""
    from annotation.models import Membership

    project = make_project()
    User.objects.create_user("rd", password="long enough password 7")
    client = api(admin_user)
    added = client.post(f"/api/v1/projects/{project.slug}/raters/", {"usernames": ["RD"]}, format="json")
    assert added.status_code == 200, added.content
    assert added.json() == {"added": ["rd"]}
    again = client.post(
        f"/api/v1/projects/{project.slug}/raters/", {"usernames": ["rd", "Rd"]}, format="json"
    )
    assert again.status_code == 200 and again.json() == {"added": []}
    assert Membership.objects.filter(project=project, user__username="rd").count() == 1
    removed = client.delete(f"/api/v1/projects/{project.slug}/raters/rD/")
    assert removed.status_code in (200, 204), removed.content
    assert not Membership.objects.filter(project=project).exists()
