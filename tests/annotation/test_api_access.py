"""The REST API's doors: tokens, who may call what (anonymous 401, rater 403/404), raters, projects."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.utils import timezone
from rest_framework.test import APIClient

from annotation.models import Membership, Project

# Every endpoint of this slice, with a body that would be accepted from staff.
ENDPOINTS = [
    ("post", "/api/v1/raters/", {"username": "new-rater", "password": "a-long-passphrase-9"}),
    ("get", "/api/v1/projects/", None),
    ("post", "/api/v1/projects/", {"slug": "new", "name": "New"}),
    ("get", "/api/v1/projects/{slug}/", None),
    ("patch", "/api/v1/projects/{slug}/", {"name": "Renamed"}),
    ("get", "/api/v1/projects/{slug}/raters/", None),
    ("post", "/api/v1/projects/{slug}/raters/", {"usernames": ["admin"]}),
    ("delete", "/api/v1/projects/{slug}/raters/someone/", None),
    ("get", "/api/v1/projects/{slug}/pairs/", None),
    ("post", "/api/v1/projects/{slug}/pairs/", []),
    ("post", "/api/v1/projects/{slug}/next/", None),
    ("post", "/api/v1/assignments/1/judgment/", {"choice": "left"}),
    ("post", "/api/v1/assignments/1/skip/", {}),
    ("get", "/api/schema/", None),
    ("get", "/api/docs/", None),
]

STAFF_ONLY = [
    ("post", "/api/v1/raters/", {"username": "new-rater", "password": "a-long-passphrase-9"}),
    ("post", "/api/v1/projects/", {"slug": "new", "name": "New"}),
    ("patch", "/api/v1/projects/{slug}/", {"name": "Renamed"}),
    ("get", "/api/v1/projects/{slug}/raters/", None),
    ("post", "/api/v1/projects/{slug}/raters/", {"usernames": ["admin"]}),
    ("delete", "/api/v1/projects/{slug}/raters/someone/", None),
    ("get", "/api/v1/projects/{slug}/pairs/", None),
    ("post", "/api/v1/projects/{slug}/pairs/", []),
]


def _call(client: APIClient, method: str, url: str, body: object, slug: str):
    return getattr(client, method)(url.format(slug=slug), body, format="json")


# Tokens


def test_token_endpoint_exchanges_credentials_for_a_working_token(make_user):
    make_user("alice", password="correct-horse-9")
    client = APIClient()
    response = client.post(
        "/api/v1/auth/token/", {"username": "alice", "password": "correct-horse-9"}, format="json"
    )
    assert response.status_code == 200
    token = response.json()["token"]
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/projects/").status_code == 200
    # Asking again gives the same token: scripts may log in as often as they like.
    again = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": "correct-horse-9"}, format="json"
    )
    assert again.json()["token"] == token


def test_token_endpoint_takes_a_plain_form_post_too(make_user):
    make_user("alice", password="correct-horse-9")
    response = APIClient().post(
        "/api/v1/auth/token/",
        "username=alice&password=correct-horse-9",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200 and response.json()["token"]


def test_token_endpoint_refuses_a_wrong_password(make_user):
    make_user("alice", password="correct-horse-9")
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": "wrong"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_credentials"
    assert "token" not in response.json()


def test_token_endpoint_refuses_an_inactive_user(make_user):
    user = make_user("alice", password="correct-horse-9")
    user.is_active = False
    user.save()
    response = APIClient().post(
        "/api/v1/auth/token/", {"username": "alice", "password": "correct-horse-9"}, format="json"
    )
    assert response.status_code == 400


def test_token_endpoint_lists_missing_fields(db):
    response = APIClient().post("/api/v1/auth/token/", {"username": "alice"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid"
    assert [e["field"] for e in body["errors"]] == ["password"]


def test_token_endpoint_ignores_a_stale_token_header(make_user):
    make_user("alice", password="correct-horse-9")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.post(
        "/api/v1/auth/token/", {"username": "alice", "password": "correct-horse-9"}, format="json"
    )
    assert response.status_code == 200


def test_a_bad_token_is_refused_with_401(db):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = client.get("/api/v1/projects/")
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


# Roles


@pytest.mark.parametrize(("method", "url", "body"), ENDPOINTS)
def test_anonymous_callers_get_401_everywhere(make_project, method, url, body):
    project = make_project()
    response = _call(APIClient(), method, url, body, project.slug)
    assert response.status_code == 401
    if url.startswith("/api/v1/"):
        assert response.json()["code"] == "not_authenticated"
        assert response["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(("method", "url", "body"), STAFF_ONLY)
def test_raters_get_403_on_staff_endpoints(make_project, make_rater, api, method, url, body):
    project = make_project()
    rater = make_rater(project)
    response = _call(api(rater), method, url, body, project.slug)
    assert response.status_code == 403
    assert response.json() == {"detail": "Only staff may do this.", "code": "permission_denied"}


def test_session_login_works_for_the_browser(make_user, make_project):
    make_project("visible")
    make_user("boss", staff=True, password="correct-horse-9")
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="boss", password="correct-horse-9")
    response = client.get("/api/v1/projects/")
    assert response.status_code == 200
    assert [p["slug"] for p in response.json()] == ["visible"]
    # Writes over a session need the CSRF token, as any browser form does.
    assert client.post("/api/v1/projects/", {"slug": "x", "name": "X"}, format="json").status_code == 403


# Raters


def test_staff_creates_a_rater_account_that_can_get_a_token(admin_user, api):
    response = api(admin_user).post(
        "/api/v1/raters/",
        {"username": "rita", "password": "a-long-passphrase-9", "email": "rita@example.org"},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert body["username"] == "rita" and isinstance(body["id"], int)
    login = APIClient().post(
        "/api/v1/auth/token/", {"username": "rita", "password": "a-long-passphrase-9"}, format="json"
    )
    assert login.status_code == 200


def test_creating_a_rater_refuses_a_taken_username_and_a_weak_password(admin_user, make_user, api):
    make_user("rita")
    response = api(admin_user).post("/api/v1/raters/", {"username": "rita", "password": "123"}, format="json")
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"username", "password"}


def test_creating_a_rater_requires_a_username_and_password(admin_user, api):
    response = api(admin_user).post("/api/v1/raters/", {"email": "not-an-email"}, format="json")
    assert response.status_code == 400
    assert {e["field"] for e in response.json()["errors"]} == {"username", "password", "email"}


def test_staff_adds_raters_to_a_project_and_lists_their_progress(admin_user, make_project, make_user, api):
    project = make_project()
    make_user("rita")
    make_user("ravi")
    client = api(admin_user)
    url = f"/api/v1/projects/{project.slug}/raters/"
    response = client.post(url, {"usernames": ["rita", "ravi"]}, format="json")
    assert response.status_code == 200
    assert sorted(response.json()["added"]) == ["ravi", "rita"]
    # Adding again is harmless and says nothing new was added.
    assert client.post(url, {"usernames": ["rita"]}, format="json").json() == {"added": []}

    listed = client.get(url)
    assert listed.status_code == 200
    rows = listed.json()
    assert [r["username"] for r in rows] == ["ravi", "rita"]
    assert rows[0]["judgments"] == 0 and rows[0]["holding_assignment"] is False
    assert rows[0]["last_judgment_at"] is None


def test_adding_unknown_usernames_adds_nobody(admin_user, make_project, make_user, api):
    project = make_project()
    make_user("rita")
    response = api(admin_user).post(
        f"/api/v1/projects/{project.slug}/raters/", {"usernames": ["rita", "ghost"]}, format="json"
    )
    assert response.status_code == 400
    assert "ghost" in response.json()["errors"][0]["message"]
    assert not Membership.objects.filter(project=project).exists()


def test_adding_raters_needs_a_non_empty_list(admin_user, make_project, api):
    project = make_project()
    response = api(admin_user).post(
        f"/api/v1/projects/{project.slug}/raters/", {"usernames": []}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "usernames"


def test_staff_removes_a_rater_who_then_cannot_see_the_project(admin_user, make_project, make_rater, api):
    project = make_project()
    rater = make_rater(project, username="rita")
    assert api(rater).get(f"/api/v1/projects/{project.slug}/").status_code == 200
    response = api(admin_user).delete(f"/api/v1/projects/{project.slug}/raters/rita/")
    assert response.status_code == 204
    assert api(rater).get(f"/api/v1/projects/{project.slug}/").status_code == 404
    again = api(admin_user).delete(f"/api/v1/projects/{project.slug}/raters/rita/")
    assert again.status_code == 404
    assert again.json()["code"] == "not_found"


def test_rater_endpoints_on_an_unknown_project_are_404(admin_user, api):
    response = api(admin_user).get("/api/v1/projects/nope/raters/")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


# Projects


def test_staff_creates_a_project_with_its_settings(admin_user, api):
    body = {
        "slug": "helpfulness-v1",
        "name": "Helpfulness",
        "instructions": "Pick the *more helpful* one.",
        "judgments_per_pair": 5,
        "allow_tie": False,
        "strength_levels": 3,
        "rationale": "required",
        "lease_seconds": 600,
        "gold_fraction": 0.1,
        "very_fast_ms": 1500,
        "correction_seconds": 30,
        "selection": "uncertainty",
        "selection_epsilon": 0.25,
    }
    response = api(admin_user).post("/api/v1/projects/", body, format="json")
    assert response.status_code == 201
    # No model has scored the new project's pairs: it serves the default order for now.
    expected = {**body, "selection_in_effect": "random"}
    assert {k: v for k, v in response.json().items() if k != "created_at"} == expected
    project = Project.objects.get(slug="helpfulness-v1")
    assert (project.judgments_per_pair, project.strength_levels, project.rationale) == (5, 3, "required")


def test_a_new_project_takes_the_defaults(admin_user, api):
    response = api(admin_user).post("/api/v1/projects/", {"slug": "p", "name": "P"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert (
        body["judgments_per_pair"] == 3 and body["rationale"] == "optional" and body["lease_seconds"] == 900
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("judgments_per_pair", 0),
        ("strength_levels", 11),
        ("strength_levels", -1),
        ("rationale", "sometimes"),
        ("lease_seconds", 9),
        ("gold_fraction", 1.5),
        ("gold_fraction", -0.1),
        ("very_fast_ms", -1),
        ("very_fast_ms", 600_001),
        ("correction_seconds", -1),
        ("correction_seconds", 86_401),
        ("correction_seconds", "60"),
        ("selection", "greedy"),
        ("selection_epsilon", 1.5),
        ("selection_epsilon", -0.1),
        ("slug", "not a slug"),
        ("name", ""),
    ],
)
def test_creating_a_project_refuses_out_of_range_settings(admin_user, api, field, value):
    body = {"slug": "p", "name": "P", field: value}
    response = api(admin_user).post("/api/v1/projects/", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert [e["field"] for e in response.json()["errors"]] == [field]
    assert not Project.objects.exists()


def test_selection_in_effect_is_uncertainty_once_priorities_exist_and_is_read_only(
    admin_user, make_project, api
):
    project = make_project("active", selection="uncertainty")
    client = api(admin_user)
    assert client.get("/api/v1/projects/active/").json()["selection_in_effect"] == "random"
    project.priorities_at = timezone.now()
    project.save(update_fields=["priorities_at"])
    assert client.get("/api/v1/projects/active/").json()["selection_in_effect"] == "uncertainty"
    response = client.patch("/api/v1/projects/active/", {"selection": "random"}, format="json")
    assert response.status_code == 200 and response.json()["selection_in_effect"] == "random"
    # Sent back as read, it is known and ignored, like created_at.
    response = client.patch("/api/v1/projects/active/", {"selection_in_effect": "uncertainty"}, format="json")
    assert response.status_code == 200 and response.json()["selection_in_effect"] == "random"


def test_a_taken_slug_is_400(admin_user, make_project, api):
    make_project("taken")
    response = api(admin_user).post("/api/v1/projects/", {"slug": "taken", "name": "T"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "slug"


def test_projects_list_shows_raters_only_their_projects(admin_user, make_project, make_rater, api):
    mine = make_project("mine")
    make_project("other")
    rater = make_rater(mine)
    assert [p["slug"] for p in api(rater).get("/api/v1/projects/").json()] == ["mine"]
    assert [p["slug"] for p in api(admin_user).get("/api/v1/projects/").json()] == ["mine", "other"]


def test_a_rater_reads_their_project_but_gets_404_on_others(make_project, make_rater, api):
    mine = make_project("mine", instructions="Be fair.")
    make_project("other")
    client = api(make_rater(mine))
    response = client.get("/api/v1/projects/mine/")
    assert response.status_code == 200
    assert response.json()["instructions"] == "Be fair."
    other = client.get("/api/v1/projects/other/")
    missing = client.get("/api/v1/projects/nope/")
    # The same answer as for a project that does not exist: no existence leak.
    assert (other.status_code, other.json()["code"]) == (missing.status_code, missing.json()["code"])
    assert other.status_code == 404 and other.json()["code"] == "not_found"


def test_staff_changes_project_settings(admin_user, make_project, api):
    project = make_project("p", judgments_per_pair=3)
    response = api(admin_user).patch(
        "/api/v1/projects/p/", {"judgments_per_pair": 5, "allow_tie": False}, format="json"
    )
    assert response.status_code == 200
    assert response.json()["judgments_per_pair"] == 5
    project.refresh_from_db()
    assert (project.judgments_per_pair, project.allow_tie, project.name) == (5, False, "P")


def test_patching_a_project_validates_like_creating_one(admin_user, make_project, api):
    project = make_project("p")
    response = api(admin_user).patch("/api/v1/projects/p/", {"gold_fraction": 2}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "gold_fraction"
    project.refresh_from_db()
    assert project.gold_fraction == 0.0


def test_a_project_slug_cannot_change(admin_user, make_project, api):
    make_project("p")
    response = api(admin_user).patch("/api/v1/projects/p/", {"slug": "q"}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "slug"
    assert Project.objects.filter(slug="p").exists()


def test_a_rater_cannot_change_their_project(make_project, make_rater, api):
    project = make_project("p")
    response = api(make_rater(project)).patch("/api/v1/projects/p/", {"name": "Mine now"}, format="json")
    assert response.status_code == 403
    project.refresh_from_db()
    assert project.name == "P"


# Errors


def test_malformed_json_is_a_400_with_a_code(admin_user, api):
    response = api(admin_user).post("/api/v1/projects/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


def test_an_unsupported_media_type_is_415(admin_user, api):
    response = api(admin_user).post("/api/v1/projects/", "slug=x", content_type="text/plain")
    assert response.status_code == 415
    assert response.json()["code"] == "unsupported_media_type"


def test_a_wrong_method_is_405_with_a_code(admin_user, api):
    response = api(admin_user).delete("/api/v1/projects/")
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


# Schema


def test_staff_get_the_openapi_schema(admin_user, api):
    response = api(admin_user).get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json()
    assert "/api/v1/projects/{slug}/next/" in schema["paths"]
    assert "/api/v1/assignments/{assignment_id}/judgment/" in schema["paths"]


@pytest.mark.parametrize("url", ["/api/schema/", "/api/schema/?format=yaml", "/api/docs/"])
def test_an_anonymous_schema_or_docs_request_gets_its_401_as_json_in_the_error_shape(db, url):
    response = APIClient().get(url)
    assert response.status_code == 401 and response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }
    assert response["WWW-Authenticate"] == "Token"


def test_the_schema_builds_without_warnings(db, tmp_path):
    # A warning means an endpoint the generator had to guess at: its documented shape would be wrong.
    call_command("spectacular", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/v1/projects/{slug}/pairs/" in (tmp_path / "schema.yml").read_text()
