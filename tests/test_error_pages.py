"""The site's error pages (400, 403, 404, 500, and the CSRF refusal) say what happened and give a way back,
home for everyone and the admin for staff, and echo nothing of the request or the error."""

from __future__ import annotations

import sys

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory

from config import errors

SECRET = "<script>leak()</script>"


@pytest.fixture(autouse=True)
def production(settings):
    settings.DEBUG = False  # Django's error pages are its debug pages otherwise


def _ways_back(page: str) -> set[str]:
    return {name for name in ("error-home", "error-admin", "error-login") if f'id="{name}"' in page}


def test_404_gives_a_way_home_and_staff_the_admin(client, make_user, admin_user):
    answer = client.get(f"/no/such/{SECRET}/page/")
    page = answer.content.decode()
    assert answer.status_code == 404 and "Page not found" in page
    assert _ways_back(page) == {"error-home", "error-login"}
    assert 'href="/"' in page and "leak()" not in page and "/no/such" not in page
    client.force_login(make_user("rater-1"))
    assert _ways_back(client.get("/no/such/page/").content.decode()) == {"error-home"}
    client.force_login(admin_user)
    assert _ways_back(client.get("/no/such/page/").content.decode()) == {"error-home", "error-admin"}


def test_a_project_the_rater_does_not_rate_is_a_404_with_a_way_back(client, make_project, make_user):
    make_project("secret-project")
    client.force_login(make_user("outsider"))
    answer = client.get("/projects/secret-project/rate/")
    assert answer.status_code in (403, 404)
    assert "error-home" in answer.content.decode()


@pytest.mark.django_db
def test_403_and_400_and_500_pages_have_a_way_back_and_no_detail():
    request = RequestFactory().get("/projects/x/rate/")
    from django.contrib.auth.models import AnonymousUser

    request.user = AnonymousUser()
    forbidden = errors.permission_denied(request, PermissionDenied(SECRET)).content.decode()
    assert "Not allowed" in forbidden and "error-home" in forbidden and "leak()" not in forbidden
    bad = errors.bad_request(request, ValueError(SECRET)).content.decode()
    assert "Bad request" in bad and "error-home" in bad and "leak()" not in bad
    try:
        raise RuntimeError(SECRET)
    except RuntimeError:
        assert sys.exc_info()[1] is not None
        answer = errors.server_error(request)
    page = answer.content.decode()
    assert answer.status_code == 500 and "Something went wrong" in page and "error-home" in page
    assert "leak()" not in page and "RuntimeError" not in page and "Traceback" not in page


def test_a_form_without_its_csrf_token_says_the_form_expired(make_user):
    client = Client(enforce_csrf_checks=True)
    answer = client.post("/login/", {"username": "a", "password": "b"})
    page = answer.content.decode()
    assert answer.status_code == 403 and "The form expired" in page and "error-home" in page
    assert "CSRF cookie not set" not in page  # Django's reason is for the log, not the page


def test_api_errors_stay_json(client):
    answer = client.get("/api/v1/no-such-endpoint/")
    assert answer.status_code == 404 and answer["Content-Type"].startswith("application/json")
