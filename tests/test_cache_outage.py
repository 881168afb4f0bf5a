"""The site without its cache: a Redis server of the test's own is the cache, then it is stopped. Logins
(the login page, the admin's, the token endpoint), rating with a session or a token, and the agreement
figures (endpoint and dashboard) must go on, computed from the database, with one warning per outage."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import redis
from django.core.cache import cache
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.models import Judgment

PASSWORD = "correct-horse-9"


@pytest.fixture
def stop_cache(own_redis, settings) -> Callable[[], None]:
    """The cache on our own Redis, shown to work; the test calls the result to stop that Redis."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": own_redis.url,
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    cache.set("alive", 1)
    assert cache.get("alive") == 1

    def stop() -> None:
        own_redis.stop()
        with pytest.raises(redis.ConnectionError):
            cache.get("alive")

    return stop


@pytest.fixture
def world(make_project, make_pairs, make_rater, make_user):
    project = make_project("outage", judgments_per_pair=3)
    make_pairs(project, 4)
    staff = make_user("boss", staff=True, password=PASSWORD)
    staff.is_superuser = True  # the dashboard is the admin's
    staff.save()
    return {"project": project, "staff": staff, "raters": [make_rater(project) for _ in range(3)]}


def _rate_one(client: APIClient) -> None:
    served = client.post("/api/v1/projects/outage/next/")
    assert served.status_code == 200, served.content
    judged = client.post(
        f"/api/v1/assignments/{served.json()['assignment']}/judgment/", {"choice": "left"}, format="json"
    )
    assert judged.status_code == 201, judged.content


def test_logins_work_and_refuse_wrong_passwords_without_the_cache(world, stop_cache, api):
    stop_cache()
    page = Client()
    wrong = page.post("/login/", {"username": "boss", "password": "guess"})
    assert wrong.status_code == 200 and "correct username and password" in wrong.content.decode()
    assert page.post("/login/", {"username": "boss", "password": PASSWORD}).status_code == 302

    admin = Client()
    assert (
        admin.post("/admin/login/?next=/admin/", {"username": "boss", "password": "guess"}).status_code == 200
    )
    logged_in = admin.post("/admin/login/?next=/admin/", {"username": "boss", "password": PASSWORD})
    assert logged_in.status_code == 302 and admin.get("/admin/").status_code == 200

    refused = api().post("/api/v1/auth/token/", {"username": "boss", "password": "guess"}, format="json")
    assert refused.status_code == 400 and refused.json()["code"] == "invalid_credentials"
    token = api().post("/api/v1/auth/token/", {"username": "boss", "password": PASSWORD}, format="json")
    assert token.status_code == 200 and token.json()["token"]


def test_rating_with_a_token_or_a_session_goes_on_without_the_cache(world, stop_cache, api):
    by_token = api(world["raters"][0])
    by_session = APIClient()
    assert by_session.login(username=world["raters"][1].username, password=PASSWORD)
    stop_cache()
    _rate_one(by_token)
    _rate_one(by_session)
    assert Judgment.objects.count() == 2


def test_the_agreement_figures_are_the_same_without_the_cache_and_warned_once(world, stop_cache, api, caplog):
    for rater in world["raters"]:
        _rate_one(api(rater))
    staff = api(world["staff"])
    cached = staff.get("/api/v1/projects/outage/agreement/").json()
    stop_cache()
    with caplog.at_level(logging.WARNING, logger="web.cache"):
        first = staff.get("/api/v1/projects/outage/agreement/")
        second = staff.get("/api/v1/projects/outage/agreement/")
        dashboard = Client()
        dashboard.force_login(world["staff"])
        page = dashboard.get(reverse("admin:annotation_project_agreement", args=[world["project"].pk]))
    assert first.status_code == 200 and second.status_code == 200 and page.status_code == 200
    computed = first.json()
    assert computed.pop("computed_at") >= cached.pop("computed_at")
    assert computed == cached and computed["judgments_total"] == 3
    assert "Judgments per day" in page.content.decode()
    outages = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(outages) == 1, [r.getMessage() for r in caplog.records]
