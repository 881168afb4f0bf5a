"""Ids in URLs and forms past a bigint (2**63 - 1) or not in ASCII digits: no match, 404, never a 500 (on
SQLite the driver raised OverflowError for a huge id that reached the database)."""

from __future__ import annotations

import pytest
from django.urls import Resolver404, resolve

from web.ids import MAX_ID, parse_id

HUGE = str(MAX_ID + 1)  # 9223372036854775808


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1", 1), (str(MAX_ID), MAX_ID), (HUGE, None), ("0", None), ("01", None), ("²", None), ("\u0661", None)],
)
def test_an_id_is_a_positive_bigint_in_ascii_digits(text, expected):
    assert parse_id(text) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/assignments/{}/judgment/",
        "/api/v1/assignments/{}/skip/",
        "/api/v1/training-runs/{}/",
        "/api/v1/training-runs/{}/cancel/",
        "/api/v1/training-runs/{}/activate/",
    ],
)
def test_no_route_takes_an_id_past_a_bigint(path):
    assert resolve(path.format(MAX_ID)).kwargs  # the largest id still routes
    with pytest.raises(Resolver404):
        resolve(path.format(HUGE))


@pytest.mark.django_db
def test_a_huge_id_is_a_404_in_the_error_shape(admin_user, api):
    answer = api(admin_user).post(f"/api/v1/assignments/{HUGE}/judgment/", {"choice": "left"}, format="json")
    assert answer.status_code == 404 and "detail" in answer.json()


@pytest.mark.django_db
def test_the_rating_form_refuses_a_huge_assignment_id(client, make_project, make_rater, make_pairs):
    project = make_project("huge")
    make_pairs(project, 1)
    client.force_login(make_rater(project))
    response = client.post(f"/projects/{project.slug}/rate/", {"assignment": HUGE, "choice": "left"})
    assert response.status_code < 500
