"""Exact SQL statements behind the rating path: a change that adds one fails here and must say why.

Each test lists its statements. Inside a test the transaction of transaction.atomic is a savepoint
(SAVEPOINT ... RELEASE), counted here; in production it is BEGIN ... COMMIT, which Django does not count.
On PostgreSQL a new pair is claimed by pairwise_claim() (migration 0005): one statement, whatever the number
of candidates it probes inside the database, under uncertainty selection too (migration 0014).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from annotation.models import Assignment, Judgment, Pair, Project

NEXT = "/api/v1/projects/q/next/"


@pytest.fixture(params=["random", "uncertainty"])
def rating(request, make_project, make_pairs, make_rater, api) -> Any:
    """Quota 3, five pairs; another rater holds pair 1, and our rater has a token and a rater row. Under
    the default order, and under uncertainty selection (priorities written, a random share of 0.5): its
    count of the candidates and its random arm run inside pairwise_claim(), no statement more."""
    project = make_project("q", judgments_per_pair=3)
    make_pairs(project, 5)
    if request.param == "uncertainty":
        for priority, pair in enumerate(Pair.objects.filter(project=project)):
            Pair.objects.filter(pk=pair.pk).update(priority=priority / 10)
        Project.objects.filter(pk=project.pk).update(
            selection="uncertainty", selection_epsilon=0.5, priorities_at=timezone.now()
        )
    api(make_rater(project)).post(NEXT)
    client = api(make_rater(project))
    assert client.post(NEXT).status_code == 200
    return client


def test_next_while_holding_an_assignment(rating, django_assert_num_queries):
    # 1 token and user, 2 project visible to the caller (which also settles "may rate"), 3 SAVEPOINT,
    # 4 rater row locked with the id of their open assignment, 5 that assignment with its pair, 6 RELEASE,
    # 7 progress (judgments done, open pairs, open pairs the rater finished: one statement reading the
    # counters, the rater's row and the project's shards)
    with django_assert_num_queries(7):
        assert rating.post(NEXT).status_code == 200


def test_next_claiming_a_new_pair(rating, django_assert_num_queries):
    assignment = rating.post(NEXT).json()["assignment"]
    rating.post(f"/api/v1/assignments/{assignment}/judgment/", {"choice": "left"}, format="json")
    # 1 token and user, 2 project, 3 SAVEPOINT, 4 rater locked (no open assignment),
    # 5 pairwise_claim(): candidates probed, locked, recounted, the assignment inserted, with its pair and
    # the rater's progress, 6 RELEASE
    with django_assert_num_queries(6):
        assert rating.post(NEXT).status_code == 200
    assert Assignment.objects.filter(status="active").count() == 2
    assert Assignment.objects.filter(arm__isnull=False).exists() == (
        Project.objects.get().selection == "uncertainty"
    )


def test_judgment(rating, django_assert_num_queries):
    assignment = rating.post(NEXT).json()["assignment"]
    # 1 token and user, 2 SAVEPOINT, 3 the caller's assignment with project and pair, pair and assignment
    # rows locked, "may rate" read along, 4 INSERT judgment + UPDATE assignment + UPDATE the pair's
    # judgment_count + the counters (the rater's progress row, the other finishers' rows when the pair
    # closes, the rater's shard of the project's counters): one statement, 5 RELEASE
    with django_assert_num_queries(5):
        response = rating.post(
            f"/api/v1/assignments/{assignment}/judgment/", {"choice": "left"}, format="json"
        )
    assert response.status_code == 201 and Judgment.objects.count() == 1


def test_judgment_with_next(rating, django_assert_num_queries):
    assignment = rating.post(NEXT).json()["assignment"]
    # One transaction: 1 token and user, 2 SAVEPOINT, 3 the assignment read with its project, pair and
    # rater, and the rater's, pair's and assignment's rows locked, 4 the judgment's writes (with the
    # counters, as in test_judgment),
    # 5 pairwise_claim() (it looks for an open assignment of the rater first) with the pair and progress,
    # 6 RELEASE
    with django_assert_num_queries(6):
        response = rating.post(
            f"/api/v1/assignments/{assignment}/judgment/", {"choice": "left", "next": True}, format="json"
        )
    assert response.status_code == 201 and Judgment.objects.count() == 1
    assert response.json()["next"]["assignment"] != assignment


def test_skip(rating, django_assert_num_queries):
    assignment = rating.post(NEXT).json()["assignment"]
    # 1 token and user, 2 SAVEPOINT, 3 the caller's assignment read, pair and assignment locked,
    # 4 UPDATE assignment, with the rater's progress row (an open pair finished) in the same statement,
    # 5 RELEASE
    with django_assert_num_queries(5):
        response = rating.post(f"/api/v1/assignments/{assignment}/skip/", {"reason": "x"}, format="json")
    assert response.status_code == 200 and Assignment.objects.get(pk=assignment).status == "skipped"


def test_skip_with_next(rating, django_assert_num_queries):
    assignment = rating.post(NEXT).json()["assignment"]
    # 1 token and user, 2 SAVEPOINT, 3 assignment read and locked (rater, pair, assignment),
    # 4 UPDATE assignment with the rater's progress row, 5 pairwise_claim() with the pair and progress,
    # 6 RELEASE
    with django_assert_num_queries(6):
        response = rating.post(
            f"/api/v1/assignments/{assignment}/skip/", {"reason": "x", "next": True}, format="json"
        )
    assert response.status_code == 200 and response.json()["next"]["assignment"] != assignment


def test_correction(rating, django_assert_num_queries):
    assignment = rating.post(NEXT).json()["assignment"]
    judged = rating.post(f"/api/v1/assignments/{assignment}/judgment/", {"choice": "left"}, format="json")
    url = f"/api/v1/judgments/{judged.json()['judgment']}/correction/"
    # 1 token and user, 2 SAVEPOINT, 3 the caller's judgment with its project, assignment and pair, its row
    # locked, "may rate" read along, 4 its last revision (when the answer it replaces was given),
    # 5 INSERT the revision, 6 UPDATE the judgment, 7 the project's data version up (its counter shard: the
    # agreement report's cache check), 8 RELEASE, 9 its revisions for the answer
    with django_assert_num_queries(9):
        response = rating.post(url, {"choice": "right"}, format="json")
    assert response.status_code == 200 and len(response.json()["revisions"]) == 1
    # The same answer again (a double submit): read and locked, nothing written
    # 1 token and user, 2 SAVEPOINT, 3 the judgment locked, 4 RELEASE, 5 its revisions
    with django_assert_num_queries(5):
        assert rating.post(url, {"choice": "right"}, format="json").status_code == 200


def test_my_judgments(rating, django_assert_num_queries):
    for _ in range(3):
        assignment = rating.post(NEXT).json()["assignment"]
        rating.post(f"/api/v1/assignments/{assignment}/judgment/", {"choice": "left"}, format="json")
    # 1 token and user, 2 project visible to the caller, 3 a page of judgments with their pairs (and project),
    # 4 their revisions (one query for the page)
    with django_assert_num_queries(4):
        response = rating.get("/api/v1/projects/q/my-judgments/")
    assert len(response.json()["results"]) == 3
