"""Dataset snapshots and the periodic export: a file only when there is something new, and the file is
exactly what the judgments export endpoint streams for the same filters."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.selectors.exports import ExportFilter
from reward_models import files, services
from reward_models.models import DatasetSnapshot, SnapshotReason

from .conftest import judge


@pytest.fixture
def project(make_project, make_pairs):
    project = make_project("snap", judgments_per_pair=2)
    make_pairs(project, 5)
    return project


@pytest.fixture
def staff(admin_user, api):
    return api(admin_user)


def endpoint_bytes(staff, query: str = "") -> bytes:
    response = staff.get(f"/api/v1/projects/snap/export/judgments.jsonl{query}")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


@pytest.mark.django_db
def test_the_periodic_export_writes_a_snapshot_only_when_there_are_new_judgments(project, make_rater, staff):
    rater = make_rater(project)
    assert services.snapshots_export_all() == []  # no judgments yet: nothing to write
    judge(project, rater, "left", rationale="<script>alert(1)</script>\nline two")
    judge(project, rater, "right")
    [first] = services.snapshots_export_all()
    assert first.reason == SnapshotReason.PERIODIC and (first.rows, first.pairs) == (2, 2)
    assert services.snapshots_export_all() == []  # nothing new since
    judge(project, make_rater(project), "tie")
    [second] = services.snapshots_export_all()
    assert second.rows == 3 and second.last_judgment_id > first.last_judgment_id
    assert DatasetSnapshot.objects.count() == 2
    content = files.absolute(second.file).read_bytes()
    assert content == endpoint_bytes(staff)
    assert second.sha256 == hashlib.sha256(content).hexdigest() and second.size_bytes == len(content)
    # the older snapshot still holds what it held
    assert files.absolute(first.file).read_bytes().count(b"\n") == 2


@pytest.mark.django_db
def test_a_snapshot_with_filters_equals_the_endpoint_with_the_same_filters(project, make_rater, staff):
    raters = [make_rater(project) for _ in range(2)]
    for rater in raters:
        for choice in ("left", "right", "tie"):
            judge(project, rater, choice)
    since = timezone.now() - timedelta(hours=1)
    filters = ExportFilter(since=since, min_votes=2)
    snapshot = services.snapshot_create(project=project, filters=filters)
    query = f"?since={since.isoformat().replace('+00:00', 'Z')}&min_votes=2"
    assert files.absolute(snapshot.file).read_bytes() == endpoint_bytes(staff, query)
    assert snapshot.rows == 6 and snapshot.min_votes == 2
    assert services.snapshot_filters(snapshot) == filters
    # only_if_new compares with the last snapshot of the same filters
    assert services.snapshot_create(project=project, filters=filters, only_if_new=True) is None
    assert services.snapshot_create(project=project, only_if_new=True) is not None


@pytest.mark.django_db
def test_snapshot_files_are_outside_anything_served(project, make_rater, runs_dir):
    from django.conf import settings

    judge(project, make_rater(project), "left")
    snapshot = services.snapshot_create(project=project)
    path = files.absolute(snapshot.file)
    assert path.is_relative_to(runs_dir)
    assert not path.is_relative_to(settings.STATIC_ROOT)
    with pytest.raises(ValueError):
        files.absolute("../../etc/passwd")


@pytest.mark.django_db
def test_a_runs_snapshot_carries_each_judgments_arm_and_propensity_to_the_trainer(project, make_rater):
    """Planted as the engine writes them: the trainer reads them from the snapshot, pair by pair."""
    from annotation.models import Arm, Assignment
    from rm_training.data import read_data

    raters = [make_rater(project) for _ in range(2)]
    for rater in raters:
        judge(project, rater, "left")
    first, second = Assignment.objects.filter(judgment__isnull=False).order_by("id")
    Assignment.objects.filter(pk=first.pk).update(arm=Arm.UNCERTAINTY, propensity=0.75)
    Assignment.objects.filter(pk=second.pk).update(arm=Arm.RANDOM, propensity=0.125)
    snapshot = services.snapshot_create(project=project, reason=SnapshotReason.RUN)
    # ties="half": a pair stays whichever side each rater chose (sides are shown at random)
    comparisons = read_data(files.absolute(snapshot.file), ties="half").comparisons
    carried = {(c.arms, c.propensities) for c in comparisons}
    if first.pair_id == second.pair_id:
        assert carried == {(("uncertainty", "random"), (0.75, 0.125))}
    else:
        assert carried == {(("uncertainty",), (0.75,)), (("random",), (0.125,))}
