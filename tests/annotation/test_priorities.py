"""The pairs' priorities (annotation.services.priorities): written in one statement per batch, on the
project's pairs only, within bounds, and cleared."""

from __future__ import annotations

import math

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import Pair
from annotation.services import priorities
from web.errors import Invalid

pytestmark = pytest.mark.django_db


def test_priorities_are_written_on_the_projects_pairs_only(make_project, make_pairs):
    project, other = make_project(), make_project()
    make_pairs(project, 3)
    make_pairs(other, 1)
    ours = list(Pair.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    theirs = Pair.objects.get(project=other).pk
    now = timezone.now()
    written = services.pair_priorities_set(
        project=project, priorities={ours[0]: 1.0, ours[1]: 0.25, theirs: 0.5, 10**12: 0.5}, now=now
    )
    assert written == 2
    assert dict(Pair.objects.filter(project=project).values_list("id", "priority")) == {
        ours[0]: 1.0,
        ours[1]: 0.25,
        ours[2]: None,
    }
    assert Pair.objects.get(pk=theirs).priority is None
    project.refresh_from_db()
    other.refresh_from_db()
    assert project.priorities_at == now and other.priorities_at is None


@pytest.mark.parametrize("value", [-0.01, 1.0000001, math.nan, math.inf, "0.5", True, None])
def test_a_priority_out_of_bounds_writes_nothing(make_project, make_pairs, value):
    project = make_project()
    make_pairs(project, 2)
    first, second = Pair.objects.filter(project=project).order_by("id").values_list("id", flat=True)
    with pytest.raises(Invalid) as refused:
        services.pair_priorities_set(
            project=project, priorities={first: 0.5, second: value}, now=timezone.now()
        )
    assert f"pair {second}" in refused.value.detail
    assert not Pair.objects.filter(project=project, priority__isnull=False).exists()
    project.refresh_from_db()
    assert project.priorities_at is None


def test_one_statement_per_batch(make_project, make_pairs, monkeypatch, django_assert_num_queries):
    project = make_project()
    make_pairs(project, 7)
    ids = list(Pair.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    monkeypatch.setattr(priorities, "BATCH_PAIRS", 3)
    # savepoint, 3 UPDATEs (3 + 3 + 1 pairs), the project's priorities_at, release
    with django_assert_num_queries(6):
        written = services.pair_priorities_set(
            project=project, priorities={pk: i / 10 for i, pk in enumerate(ids)}, now=timezone.now()
        )
    assert written == 7
    assert sorted(Pair.objects.filter(project=project).values_list("priority", flat=True)) == [
        pytest.approx(i / 10) for i in range(7)
    ]
    # Nothing to write: the stamp only (the model scored no open pair: its priorities are still its own).
    with django_assert_num_queries(3):
        assert services.pair_priorities_set(project=project, priorities={}, now=timezone.now()) == 0


def test_clearing_takes_every_priority_off_and_the_stamp(make_project, make_pairs, django_assert_num_queries):
    project, other = make_project(), make_project()
    make_pairs(project, 3)
    make_pairs(other, 2)
    now = timezone.now()
    for p in (project, other):
        ids = Pair.objects.filter(project=p).values_list("id", flat=True)
        services.pair_priorities_set(project=p, priorities=dict.fromkeys(ids, 0.5), now=now)
    # the stamp; a batch: savepoint, its pairs' ids (along (project, id)), their update, release; the
    # last look: savepoint, no id, release
    with django_assert_num_queries(8):
        assert services.pair_priorities_clear(project=project) == 3
    assert not Pair.objects.filter(project=project, priority__isnull=False).exists()
    assert Pair.objects.filter(project=other, priority=0.5).count() == 2
    project.refresh_from_db()
    other.refresh_from_db()
    assert project.priorities_at is None and other.priorities_at == now
