"""Active selection's priorities through a real Celery worker on the training queue: activating a model
of a project under uncertainty selection (through the API) sends a round that the worker runs, writing the
model's uncertainty on every open regular pair."""

from __future__ import annotations

import pytest

from annotation.models import Pair, Project, Selection
from reward_models.models import PairScore, PriorityRound, PriorityStatus
from reward_models.services.priorities import priority
from tests.reward_models.test_pair_scores import marker_project, trained_run

from .conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_an_activation_writes_the_models_priorities_on_the_worker(
    training_worker, e2e_settings, tiny_bert_dir, make_project, admin_user, api
):
    project = marker_project(make_project, n=12, judged=4)  # m4 to m11 open
    Project.objects.filter(pk=project.pk).update(selection=Selection.UNCERTAINTY)
    run = trained_run(project, tiny_bert_dir)
    activated = api(admin_user).post(
        f"/api/v1/training-runs/{run.pk}/activate/", {"force_reason": "tiny test model"}, format="json"
    )
    assert activated.status_code == 200, activated.data
    job = wait_for(
        lambda: PriorityRound.objects.filter(project=project, status__in=["succeeded", "failed"]).first(),
        what="the priority round to end",
    )
    assert job.status == PriorityStatus.SUCCEEDED, job.error
    assert (job.run_id, job.total, job.written) == (run.pk, 8, 8)
    scores = dict(PairScore.objects.filter(run=run).values_list("pair_id", "probability_a"))
    written = dict(Pair.objects.filter(project=project, priority__isnull=False).values_list("id", "priority"))
    assert written == pytest.approx({pair_id: priority(p) for pair_id, p in scores.items()})
    assert len(written) == 8
    project.refresh_from_db()
    assert project.priorities_at is not None
