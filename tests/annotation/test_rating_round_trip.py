"""The one-round-trip rating loop (judgment with "next": true) under concurrency, over the API."""

from __future__ import annotations

from collections import Counter

import pytest
from rest_framework.test import APIClient

from annotation.models import Assignment, AssignmentStatus, Judgment, Pair

from .test_engine import in_parallel


def _rate_in_one_round_trip_each(token: str, slug: str) -> list[int]:
    """One `next`, then judgment-with-next until nothing is left; returns the pair ids judged."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    response = client.post(f"/api/v1/projects/{slug}/next/")
    served = response.json() if response.status_code == 200 else None
    judged = []
    while served is not None:
        choice = ("left", "right", "tie")[served["assignment"] % 3]
        response = client.post(
            f"/api/v1/assignments/{served['assignment']}/judgment/",
            {"choice": choice, "next": True},
            format="json",
        )
        assert response.status_code == 201, response.content
        judged.append(served["pair"])
        served = response.json()["next"]
    return judged


@pytest.mark.django_db(transaction=True)
def test_24_raters_in_one_round_trip_each_fill_every_pair_exactly_to_quota(
    make_project, make_pairs, make_rater
):
    from rest_framework.authtoken.models import Token

    project = make_project(judgments_per_pair=3)
    make_pairs(project, 40)
    tokens = [Token.objects.create(user=make_rater(project)).key for _ in range(24)]
    judged_by = in_parallel(_rate_in_one_round_trip_each, [(token, project.slug) for token in tokens])
    assert all(isinstance(judged, list) for judged in judged_by), judged_by

    per_pair = Counter(Judgment.objects.values_list("pair_id", flat=True))
    assert set(per_pair) == set(Pair.objects.values_list("pk", flat=True))
    assert set(per_pair.values()) == {3}
    assert max(Counter(Judgment.objects.values_list("pair_id", "rater_id")).values()) == 1
    assert sum(len(pairs) for pairs in judged_by) == Judgment.objects.count() == 120
    assert all(len(set(pairs)) == len(pairs) for pairs in judged_by)
    assert all(pair.judgment_count == 3 for pair in Pair.objects.all())
    assert not Assignment.objects.filter(status=AssignmentStatus.ACTIVE).exists()
    # Every judgment sits on a judged assignment of the same pair, rater and side.
    for judgment in Judgment.objects.select_related("assignment"):
        assert judgment.assignment.status == AssignmentStatus.JUDGED
        assert (judgment.assignment.pair_id, judgment.assignment.rater_id) == (
            judgment.pair_id,
            judgment.rater_id,
        )
        assert judgment.assignment.shown_left == judgment.shown_left


# The quickstart's SQLite claims with the ORM (no pairwise_claim there): the same loop, to the end.
SQLITE_LOOP = """
import json
from collections import Counter
from django.contrib.auth import get_user_model
from annotation import selectors, services
from annotation.models import Judgment, Pair, Project
project = Project.objects.create(slug="q", name="Q", judgments_per_pair=2)
services.pairs_import(project=project, items=[
    {"prompt": f"p{i}", "response_a": f"a{i}", "response_b": f"b{i}"} for i in range(3)])
users = [get_user_model().objects.create_user(username=f"u{i}") for i in range(3)]
services.project_raters_add(project=project, usernames=[u.username for u in users])
sides = []
for user in users:
    served = services.assignment_next(project=project, user=user)
    while served is not None:
        services.judgment_record(assignment_id=served.assignment.pk, user=user, choice="left")
        sides.append(served.assignment.shown_left)
        served = services.assignment_next(project=project, user=user)
rater = services.rater_get_or_create(user=users[0])
print(json.dumps({
    "per_pair": sorted(Counter(Judgment.objects.values_list("pair_id", flat=True)).values()),
    "counts": sorted(Pair.objects.values_list("judgment_count", flat=True)),
    "sides": dict(Counter(sides)),
    "progress": selectors.rater_progress(project=project, rater=rater),
}))
"""


def run_in_sqlite_quickstart(tmp_path, script: str) -> dict:
    """Run `script` in `manage.py shell` against a fresh SQLite database (the quickstart's), migrated
    first; returns the JSON object its last line prints."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'quickstart.sqlite3'}",
        "SECRET_KEY": "test-only",
        "PAIRWISE_VAR_DIR": str(tmp_path / "var"),
    }
    env.pop("REDIS_URL", None)
    manage = [sys.executable, str(Path(__file__).resolve().parents[2] / "manage.py")]
    subprocess.run([*manage, "migrate", "-v", "0"], env=env, check=True, timeout=300)
    done = subprocess.run(
        [*manage, "shell", "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_quickstarts_sqlite_rates_every_pair_to_quota(tmp_path):
    result = run_in_sqlite_quickstart(tmp_path, SQLITE_LOOP)
    assert result["per_pair"] == [2, 2, 2] and result["counts"] == [2, 2, 2]
    assert result["sides"] == {"a": 3, "b": 3}  # each pair shown once each way round
    assert result["progress"] == {"done": 3, "available": 0}  # the first rater judged every pair
