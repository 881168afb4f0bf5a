"""Exact SQL statements behind the rating path: a change that adds one fails here and must say why.

Each test lists its statements. Inside a test the transaction of transaction.atomic is a savepoint
(SAVEPOINT ... RELEASE), counted here; in production it is BEGIN ... COMMIT, which Django does not count.
"""

from __future__ import annotations

from typing import Any

import pytest

from annotation.models import Assignment, Judgment

NEXT = "/api/v1/projects/q/next/"


@pytest.fixture
def rating(make_project, make_pairs, make_rater, api) -> Any:
    """Quota 3, five pairs; another rater holds pair 1, and our rater has a token and a rater row."""
    project = make_project("q", judgments_per_pair=3)
    make_pairs(project, 5)
    api(make_rater(project)).post(NEXT)
    client = api(make_rater(project))
    assert client.post(NEXT).status_code == 200
    return client


def test_next_while_holding_an_assignment(rating, django_assert_num_queries):
    # 1 token and user, 2 project visible to the caller, 3 caller may rate (access.user_can_rate),
    # 4 SAVEPOINT, 5 rater row locked, 6 the active assignment with its pair, 7 RELEASE,
    # 8 judgments done, 9 open pairs, 10 open pairs the rater already had (progress)
    with django_assert_num_queries(10):
        assert rating.post(NEXT).status_code == 200


def test_next_claiming_a_new_pair(rating, django_assert_num_queries):
    assignment = rating.post(NEXT).json()["assignment"]
    rating.post(f"/api/v1/assignments/{assignment}/judgment/", {"choice": "left"}, format="json")
    # 1 token and user, 2 project, 3 may rate, 4 SAVEPOINT, 5 rater locked, 6 no active assignment,
    # 7-9 one candidate probe per judgment_count level (2, 1, 0) with FOR UPDATE SKIP LOCKED,
    # 10 places on the candidate counted again under its lock, 11 INSERT the assignment, 12 RELEASE,
    # 13-15 progress (judgments done, open pairs, open pairs the rater already had)
    with django_assert_num_queries(15):
        assert rating.post(NEXT).status_code == 200
    assert Assignment.objects.filter(status="active").count() == 2


def test_judgment(rating, django_assert_num_queries):
    assignment = rating.post(NEXT).json()["assignment"]
    # 1 token and user, 2 the caller's assignment with project and pair, 3 may rate, 4 SAVEPOINT,
    # 5 pair locked, 6 assignment locked, 7 INSERT judgment, 8 UPDATE assignment, 9 UPDATE the pair's
    # judgment_count, 10 RELEASE
    with django_assert_num_queries(10):
        response = rating.post(
            f"/api/v1/assignments/{assignment}/judgment/", {"choice": "left"}, format="json"
        )
    assert response.status_code == 201 and Judgment.objects.count() == 1


def test_skip(rating, django_assert_num_queries):
    assignment = rating.post(NEXT).json()["assignment"]
    # 1 token and user, 2 the caller's assignment, 3 SAVEPOINT, 4 pair locked, 5 assignment locked,
    # 6 UPDATE assignment, 7 RELEASE
    with django_assert_num_queries(7):
        response = rating.post(f"/api/v1/assignments/{assignment}/skip/", {"reason": "x"}, format="json")
    assert response.status_code == 200 and Assignment.objects.get(pk=assignment).status == "skipped"
