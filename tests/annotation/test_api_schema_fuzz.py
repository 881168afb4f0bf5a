"""schemathesis against the API's own OpenAPI schema, as staff and as a rater: generated requests (valid
and not) never get a 5xx, and every response matches what the schema says. Bounded in examples so that
it takes a minute or two."""

from __future__ import annotations

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework.authtoken.models import Token

from annotation import services
from config.wsgi import application

schema = schemathesis.openapi.from_dict(SchemaGenerator().get_schema(request=None, public=True))
schema.app = application

CHECKS = [
    schemathesis.checks.not_a_server_error,
    schemathesis.checks.response_schema_conformance,
    schemathesis.checks.content_type_conformance,
]


@pytest.fixture(autouse=True)
def keep_the_test_connection():
    """Django closes the database connection when a request ends; its own test client stops that, and a
    plain WSGI call must too, or the test's transaction is lost after the first request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def tokens(make_project, make_pairs, make_rater, admin_user):
    project = make_project("demo", strength_levels=2)
    make_pairs(project, 5)
    rater = make_rater(project)
    services.assignment_next(project=project, user=rater)
    return {
        "staff": Token.objects.get_or_create(user=admin_user)[0].key,
        "rater": Token.objects.get_or_create(user=rater)[0].key,
    }


@pytest.mark.slow
@pytest.mark.parametrize("role", ["staff", "rater"])
@schema.parametrize()
@settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_5xx_and_no_response_outside_the_schema(case, tokens, role):
    case.call_and_validate(headers={"Authorization": f"Token {tokens[role]}"}, checks=CHECKS)
