"""Bad requests under /api/: each gets a JSON answer in the error shape, and none of them stores anything.

Wrong URLs (no trailing slash, unknown paths, ids the routes do not take), wrong methods, wrong media
types, server errors, unknown fields, bodies that are not objects, bad usernames. Django's own pages
stay outside /api/.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.conf import urls as django_urls
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import path, resolve
from rest_framework.authtoken.models import Token
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from annotation import services
from annotation.models import Assignment, AssignmentStatus, Judgment, Membership, Pair, Project, Rater
from config import urls as root_urls
from web.errors import Invalid

# Test-only routes that fail on purpose, mounted beside the real ones by WITH_FAILING_ROUTES. Django
# looks its error handlers up on the root URLconf, so this module names the same ones.


def _boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("A bug, on purpose.")


def _forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied("Not for you.")


class _BoomApiView(APIView):
    permission_classes: list[type] = []

    def post(self, request: Request) -> Response:
        raise RuntimeError("A bug in a DRF view, on purpose.")


# As Django resolves them: the root URLconf's, else its own defaults.
handler400 = getattr(root_urls, "handler400", django_urls.handler400)
handler403 = getattr(root_urls, "handler403", django_urls.handler403)
handler404 = getattr(root_urls, "handler404", django_urls.handler404)
handler500 = getattr(root_urls, "handler500", django_urls.handler500)
urlpatterns = [
    path("api/v1/test-boom/", _boom),
    path("api/v1/test-boom-drf/", _BoomApiView.as_view()),
    path("api/v1/test-forbidden/", _forbidden),
    path("test-boom/", _boom),
    path("test-forbidden/", _forbidden),
    *root_urls.urlpatterns,
]
WITH_FAILING_ROUTES = pytest.mark.urls(__name__)


# A world with something in every table a bad request could write to.


@pytest.fixture
def world(admin_user, make_project, make_pairs, make_rater, api) -> dict[str, Any]:
    project = make_project("edge", judgments_per_pair=2)
    make_pairs(project, 3)
    rater = make_rater(project, username="rita")
    served = services.assignment_next(project=project, user=rater)
    assert served is not None
    make_rater(username="outsider")
    return {"staff": api(admin_user), "rater": api(rater), "assignment": served.assignment.pk}


def _stored() -> dict[str, Any]:
    """Everything a request could have written, to compare before and after."""
    return {
        "users": sorted(get_user_model().objects.values_list("username", "is_staff", "email", "password")),
        "raters": Rater.objects.count(),
        "tokens": Token.objects.count(),
        "projects": list(Project.objects.order_by("slug").values()),
        "memberships": sorted(Membership.objects.values_list("project_id", "user_id")),
        "pairs": list(Pair.objects.order_by("pk").values()),
        "assignments": list(Assignment.objects.order_by("pk").values()),
        "judgments": Judgment.objects.count(),
    }


def _assert_json_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    assert not response.content.lstrip().startswith(b"<")
    body = response.json()
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert body.get("code") == code, body
    return body


def _caller(world: dict[str, Any], url: str) -> APIClient:
    """Who may call the URL: anyone for a token, the assignment's rater for rating, staff otherwise."""
    if "/auth/" in url:
        return APIClient()
    return world["rater"] if "/assignments/" in url else world["staff"]


def _send(client: APIClient, method: str, url: str, body: Any = None) -> Any:
    if body is None:
        return getattr(client, method)(url)
    return getattr(client, method)(url, body, format="json")


# Every route and method, with a body its caller could send successfully (see the first test): a bad
# request that went through anyway would store something. {a} is the rater's assignment.
ROUTES: list[tuple[str, str, Any]] = [
    ("post", "/api/v1/auth/token/", {"username": "admin", "password": "correct-horse-9"}),
    ("post", "/api/v1/raters/", {"username": "new-rater", "password": "a-long-passphrase-9"}),
    ("get", "/api/v1/projects/", None),
    ("post", "/api/v1/projects/", {"slug": "new", "name": "New"}),
    ("get", "/api/v1/projects/edge/", None),
    ("patch", "/api/v1/projects/edge/", {"name": "Renamed"}),
    ("get", "/api/v1/projects/edge/raters/", None),
    ("post", "/api/v1/projects/edge/raters/", {"usernames": ["outsider"]}),
    ("delete", "/api/v1/projects/edge/raters/rita/", None),
    ("get", "/api/v1/projects/edge/pairs/", None),
    ("post", "/api/v1/projects/edge/pairs/", [{"prompt": "P", "response_a": "A", "response_b": "B"}]),
    ("post", "/api/v1/projects/edge/next/", None),
    ("post", "/api/v1/assignments/{a}/judgment/", {"choice": "left"}),
    ("post", "/api/v1/assignments/{a}/skip/", {"reason": "Unsure"}),
    ("get", "/api/schema/", None),
    ("get", "/api/docs/", None),
]
URLS = list(dict.fromkeys(url for _, url, _ in ROUTES))

# The endpoints that take a JSON object: the serializers that must refuse what they do not know.
OBJECT_ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    (method, url, body) for method, url, body in ROUTES if isinstance(body, dict)
]


@pytest.mark.parametrize(("method", "url", "body"), ROUTES)
def test_each_route_takes_its_body_from_its_caller(world, method, url, body):
    # So that "nothing stored" below means the refusal, not a body that would have failed anyway.
    response = _send(_caller(world, url), method, url.format(a=world["assignment"]), body)
    assert 200 <= response.status_code < 300, response.content[:300]


# 1. No trailing slash: a JSON 404 naming the URL with the slash, never a redirect that drops the body.


@pytest.mark.parametrize(("method", "url", "body"), ROUTES)
def test_a_missing_trailing_slash_is_a_json_404_naming_the_right_url(world, method, url, body):
    bare = url.format(a=world["assignment"]).rstrip("/")
    before = _stored()
    response = _send(world["staff"], method, bare, body)
    error = _assert_json_error(response, 404, "not_found")
    assert error["detail"] == (
        f"No endpoint {method.upper()} {bare}; did you mean {bare}/ (with the trailing slash)?"
    )
    assert _stored() == before


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("method", ["get", "post", "put", "patch", "delete"])
def test_any_method_without_the_slash_gets_the_same_answer_even_anonymously(world, url, method):
    bare = url.format(a=world["assignment"]).rstrip("/")
    before = _stored()
    error = _assert_json_error(getattr(APIClient(), method)(bare), 404, "not_found")
    assert f"did you mean {bare}/ (with the trailing slash)?" in error["detail"]
    assert _stored() == before


def test_the_query_string_does_not_hide_the_missing_slash(world):
    error = _assert_json_error(world["staff"].get("/api/v1/projects?limit=5"), 404, "not_found")
    assert error["detail"].endswith("did you mean /api/v1/projects/ (with the trailing slash)?")


def test_the_missing_slash_is_a_json_404_under_debug_too(world, settings):
    # Django's CommonMiddleware raised a RuntimeError here (an HTML 500) under DEBUG.
    settings.DEBUG = True
    before = _stored()
    response = world["staff"].post("/api/v1/projects", {"slug": "new", "name": "New"}, format="json")
    _assert_json_error(response, 404, "not_found")
    _assert_json_error(world["staff"].get("/api/v1/no-such-thing/"), 404, "not_found")
    assert _stored() == before


def test_outside_the_api_django_still_redirects_to_the_slash(db):
    response = APIClient().get("/admin")
    assert response.status_code == 301 and response["Location"] == "/admin/"


# 2. Unknown paths and ids the routes do not take: a JSON 404, for every method.

UNKNOWN_PATHS = [
    "/api/",
    "/api/v1/",
    "/api/v2/projects/",
    "/api/v1/nope/",
    "/api/v1/project/",
    "/api/v1/projects/edge/unknown/",
    "/api/v1/projects/edge/exports/judgments.jsonl",
    "/api/v1/projects/not%20a%20slug/",
    "/api/v1/assignments/",
    "/api/v1/assignments/-1/judgment/",
    "/api/v1/assignments/-1/skip/",
    "/api/v1/assignments/abc/judgment/",
    "/api/v1/assignments/abc/skip/",
    "/api/v1/assignments/1.5/judgment/",
    "/api/v1/assignments/1e3/skip/",
    "/api/v1/assignments/%00/skip/",
    "/api/v1/assignments/{a}/",
    "/api/v1/assignments/{a}/judge/",
]


@pytest.mark.parametrize("url", UNKNOWN_PATHS)
@pytest.mark.parametrize("method", ["get", "post", "patch", "delete"])
def test_an_unknown_path_is_a_json_404_that_names_it(world, url, method):
    url = url.format(a=world["assignment"])
    before = _stored()
    response = _send(world["staff"], method, url, {"choice": "left"} if method != "get" else None)
    error = _assert_json_error(response, 404, "not_found")
    assert error["detail"].startswith(f"No endpoint {method.upper()} /api/")
    assert "did you mean" not in error["detail"]
    assert _stored() == before


@pytest.mark.parametrize("assignment_id", ["0", "99999999999999999999", "9223372036854775808", "-0"])
@pytest.mark.parametrize("action", [("judgment", {"choice": "left"}), ("skip", {"reason": "x"})])
def test_ids_that_match_the_route_but_no_assignment_are_a_json_404(world, assignment_id, action):
    # The int converter takes any run of digits: ids beyond the database's bigint reach the service,
    # which must find nothing rather than fail. "-0" is not digits at all.
    name, body = action
    before = _stored()
    response = world["rater"].post(f"/api/v1/assignments/{assignment_id}/{name}/", body, format="json")
    _assert_json_error(response, 404, "not_found")
    assert _stored() == before


def test_the_rater_s_own_assignment_is_untouched_by_a_negative_id(world):
    assignment = world["assignment"]
    response = world["rater"].post(f"/api/v1/assignments/-{assignment}/judgment/", {"choice": "left"})
    _assert_json_error(response, 404, "not_found")
    assert Assignment.objects.get(pk=assignment).status == AssignmentStatus.ACTIVE
    assert not Judgment.objects.exists()


def test_outside_the_api_an_unknown_path_is_django_s_html_page(db):
    response = APIClient().get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


# 3. A wrong method: a JSON 405.

WRONG_METHODS = [
    ("get", "/api/v1/auth/token/"),
    ("put", "/api/v1/raters/"),
    ("delete", "/api/v1/projects/"),
    ("put", "/api/v1/projects/edge/"),
    ("delete", "/api/v1/projects/edge/"),
    ("patch", "/api/v1/projects/edge/raters/"),
    ("get", "/api/v1/projects/edge/raters/rita/"),
    ("delete", "/api/v1/projects/edge/pairs/"),
    ("get", "/api/v1/projects/edge/next/"),
    ("get", "/api/v1/assignments/{a}/judgment/"),
    ("put", "/api/v1/assignments/{a}/judgment/"),
    ("delete", "/api/v1/assignments/{a}/skip/"),
]


@pytest.mark.parametrize(("method", "url"), WRONG_METHODS)
def test_a_wrong_method_is_a_json_405(world, method, url):
    before = _stored()
    response = _send(world["staff"], method, url.format(a=world["assignment"]), {"name": "x"})
    error = _assert_json_error(response, 405, "method_not_allowed")
    assert method.upper() in error["detail"]
    assert _stored() == before


# 4. Server errors and Django's own refusals: JSON under /api/, Django's pages elsewhere.


@WITH_FAILING_ROUTES
@pytest.mark.parametrize(
    ("method", "url"), [("get", "/api/v1/test-boom/"), ("post", "/api/v1/test-boom-drf/")]
)
def test_a_server_error_under_the_api_is_a_json_500(world, method, url):
    client = world["staff"]
    client.raise_request_exception = False
    before = _stored()
    error = _assert_json_error(getattr(client, method)(url), 500, "server_error")
    assert "A bug" not in error["detail"]  # the traceback is for the log, not the caller
    assert _stored() == before


@WITH_FAILING_ROUTES
def test_a_server_error_outside_the_api_is_django_s_page(db):
    client = APIClient()
    client.raise_request_exception = False
    response = client.get("/test-boom/")
    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


@WITH_FAILING_ROUTES
def test_django_s_permission_denied_is_a_json_403_under_the_api_only(db):
    _assert_json_error(APIClient().get("/api/v1/test-forbidden/"), 403, "permission_denied")
    assert APIClient().get("/test-forbidden/")["Content-Type"].startswith("text/html")


def test_a_refused_user_agent_is_a_json_403(world, settings):
    settings.DISALLOWED_USER_AGENTS = [re.compile("BadBot")]
    response = world["staff"].get("/api/v1/projects/", HTTP_USER_AGENT="BadBot/1.0")
    _assert_json_error(response, 403, "permission_denied")


@pytest.mark.parametrize("url", ["/api/v1/projects/", "/api/v1/nope", "/api/v1/auth/token/"])
def test_a_disallowed_host_is_a_json_400(world, url):
    response = world["staff"].post(
        url, {"slug": "new", "name": "New"}, format="json", HTTP_HOST="evil.example"
    )
    _assert_json_error(response, 400, "bad_request")
    assert not Project.objects.filter(slug="new").exists()


# 5. An unsupported media type: a 415 naming the types the endpoint takes.


def _accepted(parser_classes: Any) -> str:
    return ", ".join(dict.fromkeys(parser.media_type for parser in parser_classes))


@pytest.mark.parametrize(("method", "url", "body"), [r for r in ROUTES if r[2] is not None])
@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8", "application/xml"])
def test_an_unsupported_media_type_is_a_415_that_names_the_accepted_ones(
    world, method, url, body, content_type
):
    url = url.format(a=world["assignment"])
    before = _stored()
    response = getattr(world["staff"], method)(url, '{"name": "x"}', content_type=content_type)
    error = _assert_json_error(response, 415, "unsupported_media_type")
    parsers = resolve(url).func.cls.parser_classes  # type: ignore[attr-defined]
    sent = content_type.split(";")[0]
    assert error["detail"] == f'Unsupported media type "{sent}". Send one of: {_accepted(parsers)}.'
    assert _stored() == before


def test_the_415_lists_json_and_json_lines(world):
    response = world["staff"].post("/api/v1/projects/edge/pairs/", "x", content_type="text/csv")
    error = _assert_json_error(response, 415, "unsupported_media_type")
    assert "application/json" in error["detail"] and "application/x-ndjson" in error["detail"]
    token = APIClient().post("/api/v1/auth/token/", "x", content_type="text/csv").json()
    assert "application/x-www-form-urlencoded" in token["detail"]


def test_a_body_without_a_content_type_is_a_415_that_says_so(world):
    before = _stored()
    response = world["staff"].generic(
        "POST", "/api/v1/projects/", b'{"slug": "new", "name": "New"}', content_type=""
    )
    error = _assert_json_error(response, 415, "unsupported_media_type")
    assert error["detail"].startswith("No Content-Type header. Send one of: application/json")
    assert _stored() == before


# 6. Unknown fields: refused by name, never dropped.

UNKNOWN_FIELDS: list[tuple[str, str, dict[str, Any], str]] = [
    ("post", "/api/v1/auth/token/", {"username": "admin", "password": "correct-horse-9"}, "remember_me"),
    ("post", "/api/v1/raters/", {"username": "new-rater", "password": "a-long-passphrase-9"}, "is_staff"),
    ("post", "/api/v1/raters/", {"username": "new-rater", "password": "a-long-passphrase-9"}, "mail"),
    ("post", "/api/v1/projects/", {"slug": "new", "name": "New"}, "judgements_per_pair"),
    ("post", "/api/v1/projects/", {"slug": "new", "name": "New"}, "id"),
    ("patch", "/api/v1/projects/edge/", {}, "judgements_per_pair"),
    ("patch", "/api/v1/projects/edge/", {"name": "Renamed"}, "allow_ties"),
    ("patch", "/api/v1/projects/edge/", {"name": "Renamed"}, "rater_group"),
    ("post", "/api/v1/projects/edge/raters/", {"usernames": ["outsider"]}, "username"),
    ("post", "/api/v1/assignments/{a}/judgment/", {"choice": "left"}, "strenght"),
    ("post", "/api/v1/assignments/{a}/judgment/", {"choice": "left"}, "assignment"),
    ("post", "/api/v1/assignments/{a}/skip/", {"reason": "Unsure"}, "reasons"),
    ("post", "/api/v1/assignments/{a}/skip/", {}, "status"),
]


@pytest.mark.parametrize(("method", "url", "body", "unknown"), UNKNOWN_FIELDS)
def test_an_unknown_field_is_a_400_that_names_it_and_stores_nothing(world, method, url, body, unknown):
    client = _caller(world, url)
    before = _stored()
    response = getattr(client, method)(url.format(a=world["assignment"]), {**body, unknown: 5}, format="json")
    error = _assert_json_error(response, 400, "invalid")
    assert len(error["errors"]) == 1
    [item] = error["errors"]
    assert item["field"] == unknown
    assert item["message"].startswith("Unknown field; allowed: ")
    assert _stored() == before


def test_the_judgements_typo_lists_the_allowed_fields(world):
    response = world["staff"].post(
        "/api/v1/projects/", {"slug": "new", "name": "New", "judgements_per_pair": 5}, format="json"
    )
    error = _assert_json_error(response, 400, "invalid")
    message = error["errors"][0]["message"]
    allowed = ["slug", "name", *services.PROJECT_SETTINGS]
    assert message == f"Unknown field; allowed: {', '.join(dict.fromkeys(allowed))}."
    assert "created_at" not in message  # known, but not something a caller sets
    assert not Project.objects.filter(slug="new").exists()


def test_unknown_fields_are_listed_beside_the_errors_of_known_ones(world):
    response = world["staff"].post(
        "/api/v1/projects/", {"slug": "not a slug", "nam": "New", "judgements_per_pair": 5}, format="json"
    )
    fields = {item["field"] for item in _assert_json_error(response, 400, "invalid")["errors"]}
    assert fields == {"slug", "name", "nam", "judgements_per_pair"}


def test_read_only_fields_are_known_and_ignored(world):
    # A client may send back what it read: created_at is accepted and left as it was.
    client = world["staff"]
    project = client.get("/api/v1/projects/edge/").json()
    response = client.patch(
        "/api/v1/projects/edge/",
        {**project, "name": "Renamed", "created_at": "2000-01-01T00:00:00Z"},
        format="json",
    )
    assert response.status_code == 200, response.json()
    assert response.json()["name"] == "Renamed"
    assert response.json()["created_at"] == project["created_at"]


def test_a_form_post_for_a_token_also_refuses_unknown_fields_but_not_django_s_csrf_field(world):
    form = "application/x-www-form-urlencoded"
    response = APIClient().post(
        "/api/v1/auth/token/", "username=admin&password=correct-horse-9&remember=1", content_type=form
    )
    assert _assert_json_error(response, 400, "invalid")["errors"][0]["field"] == "remember"
    response = APIClient().post(
        "/api/v1/auth/token/",
        "username=admin&password=correct-horse-9&csrfmiddlewaretoken=x",
        content_type=form,
    )
    assert response.status_code == 200 and response.json()["token"]


def test_pair_import_refuses_unknown_fields_too(world):
    before = _stored()
    for body in (
        {"pairs": [{"prompt": "P", "response_a": "A", "response_b": "B"}], "dry_run": True},
        [{"prompt": "P", "reponse_a": "A", "response_b": "B"}],
    ):
        response = world["staff"].post("/api/v1/projects/edge/pairs/", body, format="json")
        _assert_json_error(response, 400, "invalid")
    assert _stored() == before


# 7. A body that is not a JSON object where one is expected: a 400, never a 500.

NOT_OBJECTS = [[], [1, 2], [{"choice": "left"}], "left", 5, 1.5, True, None]


@pytest.mark.parametrize(("method", "url", "body"), OBJECT_ENDPOINTS)
@pytest.mark.parametrize("not_an_object", NOT_OBJECTS, ids=repr)
def test_a_body_that_is_not_an_object_is_a_400(world, method, url, body, not_an_object):
    client = _caller(world, url)
    client.raise_request_exception = False
    before = _stored()
    response = getattr(client, method)(
        url.format(a=world["assignment"]), json.dumps(not_an_object), content_type="application/json"
    )
    error = _assert_json_error(response, 400, "invalid")
    assert error["errors"] and error["errors"][0]["field"] is None
    assert _stored() == before


def test_the_not_an_object_message_speaks_json(world):
    response = world["staff"].post("/api/v1/projects/", [1, 2], format="json")
    message = _assert_json_error(response, 400, "invalid")["errors"][0]["message"]
    assert message.startswith("The body must be a JSON object with fields slug, name, ")
    assert message.endswith("; got an array.")


# The token endpoint takes JSON and forms only: JSON Lines there is a 415, tested above.
@pytest.mark.parametrize(("method", "url", "body"), [e for e in OBJECT_ENDPOINTS if "/auth/" not in e[1]])
def test_json_lines_where_an_object_is_expected_is_a_400(world, method, url, body):
    client = _caller(world, url)
    before = _stored()
    lines = json.dumps(body) + "\n" + json.dumps(body) + "\n"
    response = getattr(client, method)(
        url.format(a=world["assignment"]), lines, content_type="application/x-ndjson"
    )
    _assert_json_error(response, 400, "invalid")
    assert _stored() == before


# 8. Usernames: Django's own rules, in the service that every door calls.


def _fullwidth(text: str) -> str:
    """The fullwidth forms of ASCII letters, which Django's NFKC normalisation turns back into ASCII."""
    return "".join(chr(ord(letter) + 0xFEE0) for letter in text)


BAD_USERNAMES = [
    "a b",
    "x/y",
    "a" * 151,
    "<script>",
    "tab\there",
    "semi;colon",
    "quote'",
    _fullwidth("u") * 151,
]


@pytest.mark.parametrize("username", BAD_USERNAMES, ids=lambda name: repr(name[:12]))
def test_the_api_refuses_a_bad_username(world, username):
    before = _stored()
    response = world["staff"].post(
        "/api/v1/raters/", {"username": username, "password": "a-long-passphrase-9"}, format="json"
    )
    error = _assert_json_error(response, 400, "invalid")
    assert [item["field"] for item in error["errors"]] == ["username"]
    assert _stored() == before


@pytest.mark.parametrize("username", BAD_USERNAMES, ids=lambda name: repr(name[:12]))
def test_the_service_refuses_a_bad_username(db, username):
    # The admin and scripts call the service without the API's serializer: the rule lives here.
    with pytest.raises(Invalid) as raised:
        services.rater_create(username=username, password="a-long-passphrase-9")
    assert [error["field"] for error in raised.value.errors] == ["username"]
    assert not get_user_model().objects.exists()


def test_the_service_lists_the_username_and_password_errors_together(db):
    with pytest.raises(Invalid) as raised:
        services.rater_create(username="a b", password="1")
    assert {error["field"] for error in raised.value.errors} == {"username", "password"}


def test_a_username_that_normalises_to_a_taken_one_is_a_400_not_a_500(world):
    # create_user stores the NFKC form: fullwidth "outsider" is "outsider", who exists. Checked on the
    # name as given, the duplicate got past the check and the database refused it: a 500.
    before = _stored()
    response = world["staff"].post(
        "/api/v1/raters/",
        {"username": _fullwidth("outsider"), "password": "a-long-passphrase-9"},
        format="json",
    )
    error = _assert_json_error(response, 400, "invalid")
    assert error["errors"] == [{"field": "username", "message": "A user named 'outsider' already exists."}]
    assert _stored() == before


@pytest.mark.parametrize("username", ["first.last", "a+b@example.org", "under_score-1", "jürgen", "a" * 150])
def test_usernames_django_allows_are_accepted(world, username):
    response = world["staff"].post(
        "/api/v1/raters/", {"username": username, "password": "a-long-passphrase-9"}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert get_user_model().objects.filter(username=username).exists()


@pytest.mark.django_db
def test_a_negative_zero_share_is_answered_as_the_zero_stored(api, admin_user, make_project):
    """-0.0 is a valid JSON number in range; PostgreSQL stores 0, and the PATCH's answer said -0.0 (the
    value as parsed) while every later GET said 0.0."""
    project = make_project()
    staff = api(admin_user)
    body = {"selection_epsilon": -0.0, "gold_fraction": -0.0}
    answer = staff.patch(f"/api/v1/projects/{project.slug}/", body, format="json")
    assert answer.status_code == 200, answer.content
    assert b"-0.0" not in answer.content
    assert answer.json()["selection_epsilon"] == 0.0 and answer.json()["gold_fraction"] == 0.0
    assert b"-0.0" not in staff.get(f"/api/v1/projects/{project.slug}/").content
