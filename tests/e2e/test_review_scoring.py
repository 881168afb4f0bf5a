"""The review queue's scoring through a real Celery worker on the training queue: "Score now" through the
API, the worker scoring every judged pair with the active model (the tiny one, trained here), the scores
equal to the saved model's, and the queue built from them."""

from __future__ import annotations

import pytest

from reward_models import files
from reward_models.models import ActiveModel, PairScore, PairScoring, ScoringStatus
from rm_training.scoring import RewardScorer
from tests.reward_models.test_pair_scores import marker_project, trained_run

from .conftest import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_score_now_scores_every_judged_pair_on_the_worker(
    training_worker, e2e_settings, tiny_bert_dir, make_project, admin_user, api
):
    project = marker_project(make_project)
    run = trained_run(project, tiny_bert_dir)
    ActiveModel.objects.create(project=project, run=run)
    staff = api(admin_user)
    started = staff.post(f"/api/v1/projects/{project.slug}/review/scoring/")
    assert started.status_code == 202 and started.data["status"] == "queued"
    job = wait_for(
        lambda: PairScoring.objects.filter(pk=started.data["id"], status__in=["succeeded", "failed"]).first(),
        what="the scoring to end",
    )
    assert job.status == ScoringStatus.SUCCEEDED, job.error
    assert (job.total, job.done) == (10, 10)
    state = staff.get(f"/api/v1/projects/{project.slug}/review/scoring/")
    assert state.data["status"] == "succeeded" and state.data["done"] == 10
    direct = RewardScorer(files.absolute(run.output_dir), device="cpu")
    for score in PairScore.objects.filter(run=run).select_related("pair"):
        reward_a, reward_b = direct.score(score.pair.prompt, [score.pair.response_a, score.pair.response_b])
        assert score.reward_difference == pytest.approx(reward_a - reward_b, abs=1e-5)
    queue = staff.get(f"/api/v1/projects/{project.slug}/review/")
    assert queue.status_code == 200 and queue.data["model"] == run.pk
    probabilities = [row["probability"] for row in queue.data["results"]]
    assert len(probabilities) == 10 and probabilities == sorted(probabilities)
