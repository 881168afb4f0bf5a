"""Judgment.pair_longer is the pair's longer response (Pair.longer) on every path a judgment is written by:
the engine (PostgreSQL's one statement and the quickstart's SQLite), the judgments import, and migration
0015 for the judgments that were there before it. The agreement report's length figures read it alone."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from annotation import services
from annotation.admin import PairAdmin
from annotation.models import Judgment, Pair

from .counters import assert_counters_equal_recount
from .test_rating_round_trip import run_in_sqlite_quickstart

# A longer, B longer, as long (the same length, different text).
ITEMS = [
    {"external_id": "a-longer", "prompt": "q1", "response_a": "a much longer answer", "response_b": "short"},
    {"external_id": "b-longer", "prompt": "q2", "response_a": "short", "response_b": "a much longer answer"},
    {"external_id": "as-long", "prompt": "q3", "response_a": "same", "response_b": "size"},
]
EXPECTED = {"a-longer": 0, "b-longer": 1, "as-long": -1}


def _copied(project) -> dict[str, list[int]]:
    rows = Judgment.objects.filter(project=project).values_list("pair__external_id", "pair_longer")
    copied: dict[str, list[int]] = {}
    for external_id, longer in rows:
        copied.setdefault(external_id, []).append(longer)
    return copied


def test_the_engine_and_the_import_copy_the_pairs_longer_response(make_project, make_rater):
    project = make_project(judgments_per_pair=2)
    services.pairs_import(project=project, items=ITEMS)
    assert dict(Pair.objects.filter(project=project).values_list("external_id", "longer")) == EXPECTED
    user = make_rater(project)
    found = services.assignment_next(project=project, user=user)
    while found is not None:  # judgment with next: the path the rating page takes
        _, found = services.judgment_record_and_next(
            assignment_id=found.assignment.pk, user=user, choice="left"
        )
    services.judgments_import(
        project=project, items=[{"pair": e, "rater": "elsewhere", "choice": "a"} for e in EXPECTED]
    )
    assert _copied(project) == {e: [longer, longer] for e, longer in EXPECTED.items()}


SQLITE_LONGER = f"""
import json
from django.contrib.auth import get_user_model
from annotation import services
from annotation.models import Judgment, Project
user = get_user_model().objects.create_user(username="u")
project = Project.objects.create(slug="q", name="Q", judgments_per_pair=1)
services.pairs_import(project=project, items={ITEMS!r})
services.project_raters_add(project=project, usernames=["u"])
while (found := services.assignment_next(project=project, user=user)) is not None:
    services.judgment_record(assignment_id=found.assignment.pk, user=user, choice="right")
print(json.dumps(dict(Judgment.objects.values_list("pair__external_id", "pair_longer"))))
"""


def test_the_quickstarts_sqlite_copies_the_pairs_longer_response(tmp_path):
    assert run_in_sqlite_quickstart(tmp_path, SQLITE_LONGER) == EXPECTED


@pytest.mark.django_db(transaction=True)
def test_migration_0015_gives_existing_judgments_their_pairs_longer_response():
    before, after = ("annotation", "0014_claim_active_selection"), ("annotation", "0015_judgment_pair_longer")
    executor = MigrationExecutor(connection)
    executor.migrate([before])
    apps = executor.loader.project_state([before]).apps
    project = apps.get_model("annotation", "Project").objects.create(slug="old", name="Old")
    rater = apps.get_model("annotation", "Rater").objects.create(imported_into=project, source_id="r")
    old_pair, old_judgment = apps.get_model("annotation", "Pair"), apps.get_model("annotation", "Judgment")
    for item in ITEMS:
        pair = old_pair.objects.create(project=project, content_sha256=item["external_id"], **item)
        old_judgment.objects.create(
            project=project, pair=pair, rater=rater, choice="a", created_at=timezone.now()
        )
    executor = MigrationExecutor(connection)
    executor.migrate([after])
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
    assert dict(Judgment.objects.values_list("pair__external_id", "pair_longer")) == EXPECTED


@pytest.mark.django_db(transaction=True)
def test_a_pair_judged_while_the_admin_edits_it_keeps_its_texts_and_its_counts(
    superuser_client, make_project, make_rater, monkeypatch
):
    """The admin's form read the pair unjudged; a rater judged it before the save: nothing is saved (its
    judgment's pair_longer stays true, its judgment count and the project's counters stay right), and the
    admin is told why."""
    project = make_project(judgments_per_pair=1)
    services.pairs_import(project=project, items=ITEMS[:1])
    pair = Pair.objects.get()
    rater = make_rater(project)
    save_model = PairAdmin.save_model

    def judged_meanwhile(self, request, obj, form, change):
        def judge():  # on its own connection: committed before the admin's save locks the pair
            try:
                found = services.assignment_next(project=project, user=rater)
                services.judgment_record(assignment_id=found.assignment.pk, user=rater, choice="left")
            finally:
                connection.close()

        thread = threading.Thread(target=judge)
        thread.start()
        thread.join()
        save_model(self, request, obj, form, change)

    monkeypatch.setattr(PairAdmin, "save_model", judged_meanwhile)
    url = reverse("admin:annotation_pair_change", args=[pair.pk])
    form = {
        "project": project.pk,
        "external_id": pair.external_id,
        "prompt": "rewritten",
        "response_a": "short",
        "response_b": "now the longer answer of the two",
        "metadata": "{}",
    }
    page = superuser_client.post(url, form, follow=True).content.decode()
    assert "was judged while you edited it" in page and "Nothing was saved" in page
    pair.refresh_from_db()
    assert (pair.prompt, pair.longer, pair.judgment_count) == ("q1", 0, 1)
    assert Judgment.objects.get().pair_longer == pair.longer
    assert_counters_equal_recount(project)
