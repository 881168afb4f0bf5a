"""Fixtures shared by the whole suite: projects, pairs, raters and API clients on a real PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from annotation import services
from annotation.models import Project
from tests.servers import RedisServer

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _empty_cache() -> None:
    """Each test starts with an empty cache (throttle counts included)."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def make_user(db: Any) -> Callable[..., Any]:
    def make(username: str | None = None, *, staff: bool = False, password: str = "correct-horse-9") -> Any:
        username = username or f"user{next(_counter)}"
        return get_user_model().objects.create_user(
            username=username, password=password, is_staff=staff, email=f"{username}@example.org"
        )

    return make


@pytest.fixture
def admin_user(make_user: Callable[..., Any]) -> Any:
    return make_user("admin", staff=True)


@pytest.fixture
def superuser_client(client: Any, admin_user: Any) -> Any:
    """The test client logged in as a superuser: every admin page."""
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    return client


@pytest.fixture
def make_project(db: Any) -> Callable[..., Project]:
    def make(slug: str | None = None, **settings: Any) -> Project:
        slug = slug or f"project-{next(_counter)}"
        return Project.objects.create(slug=slug, name=slug.replace("-", " ").title(), **settings)

    return make


@pytest.fixture
def make_pairs() -> Callable[..., Any]:
    """Import n pairs into a project through the same service the API uses."""

    def make(project: Project, n: int, *, gold: str | None = None, prefix: str = "p") -> Any:
        items = [
            {
                "external_id": f"{prefix}{i}",
                "prompt": f"Prompt {prefix}{i}",
                "response_a": f"Answer A to {prefix}{i}",
                "response_b": f"Answer B to {prefix}{i}",
                **({"gold": gold} if gold else {}),
            }
            for i in range(n)
        ]
        return services.pairs_import(project=project, items=items)

    return make


@pytest.fixture
def make_rater(make_user: Callable[..., Any]) -> Callable[..., Any]:
    """A user who is a rater in the given projects."""

    def make(*projects: Project, username: str | None = None) -> Any:
        user = make_user(username)
        for project in projects:
            services.project_raters_add(project=project, usernames=[user.username])
        return user

    return make


@pytest.fixture
def api() -> Callable[[Any], APIClient]:
    """An API client logged in with a token, as a script would be (or anonymous with None)."""

    def client(user: Any | None = None) -> APIClient:
        from rest_framework.authtoken.models import Token

        c = APIClient()
        if user is not None:
            token, _ = Token.objects.get_or_create(user=user)
            c.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
        return c

    return client


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of this test's own, without persistence, stopped at the end whatever the test did."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
