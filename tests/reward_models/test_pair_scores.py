"""Per-pair model scores: pair_scores_compute scores through the run's model what it has not scored yet,
the scoring row's life (queued, running, succeeded or failed; a second delivery does nothing), and the
snapshot a leave-out makes stale."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from django.utils import timezone

from annotation import services as annotation_services
from annotation.models import Pair
from reward_models import files, services
from reward_models.models import ActiveModel, PairScore, PairScoring, RunStatus, ScoringStatus, TrainingRun
from reward_models.services.pair_scores import probability
from rm_training.config import CONFIG_FILENAME, TrainingConfig
from rm_training.scoring import RewardScorer
from rm_training.train import train
from tests.rm_training.conftest import MARKER, marker_comparisons

pytestmark = pytest.mark.django_db


def marker_project(make_project, n: int = 12, judged: int = 10):
    """Pairs whose response A carries the marker word in even ones; the first `judged` judged for it."""
    project = make_project(judgments_per_pair=1)
    items = []
    for i, c in enumerate(marker_comparisons(n, seed=5)):
        a, b = (c.chosen, c.rejected) if i % 2 == 0 else (c.rejected, c.chosen)
        items.append({"external_id": f"m{i}", "prompt": c.prompt, "response_a": a, "response_b": b})
    annotation_services.pairs_import(project=project, items=items)
    judgments = [
        {"pair": item["external_id"], "rater": "r0", "choice": "a" if MARKER in item["response_a"] else "b"}
        for item in items[:judged]
    ]
    annotation_services.judgments_import(project=project, items=judgments)
    return project


def trained_run(project, base_dir) -> TrainingRun:
    run = TrainingRun.objects.create(project=project, config={})
    run.output_dir = f"runs/{run.pk}/model"
    config = TrainingConfig(
        base_model=str(base_dir), max_length=48, batch_size=8, learning_rate=3e-3, device="cpu"
    )
    train(
        replace(config, bf16=False),
        examples=marker_comparisons(24),
        output_dir=files.absolute(run.output_dir),
    )
    run.status, run.finished_at = RunStatus.SUCCEEDED, timezone.now()
    run.save()
    return run


def test_probability_is_the_sigmoid_without_overflow():
    assert probability(0.0) == 0.5
    assert probability(2.0) == pytest.approx(1 / (1 + math.exp(-2.0)))
    assert probability(-800.0) == 0.0 and probability(800.0) == 1.0


def test_scores_are_the_models_and_only_new_pairs_are_scored(make_project, tiny_bert_dir):
    project = marker_project(make_project)
    run = trained_run(project, tiny_bert_dir)
    seen = []
    assert (
        services.pair_scores_compute(run=run, progress=lambda done, total: seen.append((done, total))) == 10
    )
    assert seen == [(0, 10), (10, 10)]
    direct = RewardScorer(files.absolute(run.output_dir), device="cpu")
    for score in PairScore.objects.filter(run=run).select_related("pair"):
        pair = score.pair
        reward_a, reward_b = direct.score(pair.prompt, [pair.response_a, pair.response_b])
        assert score.reward_difference == pytest.approx(reward_a - reward_b, abs=1e-5)
        assert score.probability_a == pytest.approx(probability(reward_a - reward_b), abs=1e-6)
    computed = dict(PairScore.objects.filter(run=run).values_list("pair_id", "computed_at"))
    # Nothing new: nothing scored again. A newly judged pair: that one only.
    assert services.pair_scores_compute(run=run) == 0
    annotation_services.judgments_import(
        project=project, items=[{"pair": "m10", "rater": "r0", "choice": "a"}]
    )
    assert services.pair_scores_compute(run=run) == 1
    assert (
        dict(
            PairScore.objects.filter(run=run)
            .exclude(pair__external_id="m10")
            .values_list("pair_id", "computed_at")
        )
        == computed
    )
    # Any set of pairs, open ones too (active selection's use): the one unjudged pair.
    assert services.pair_scores_compute(run=run, pairs=Pair.objects.filter(project=project)) == 1
    assert PairScore.objects.filter(run=run).count() == 12


def test_a_scoring_runs_once_and_records_its_progress_and_end(make_project, tiny_bert_dir, admin_user):
    project = marker_project(make_project)
    with pytest.raises(Exception, match="no active model"):
        services.pair_scoring_start(project=project, created_by=admin_user)
    run = trained_run(project, tiny_bert_dir)
    ActiveModel.objects.create(project=project, run=run)
    job = services.pair_scoring_start(project=project, created_by=admin_user)
    assert services.pair_scoring_start(project=project, created_by=admin_user).pk == job.pk  # one at a time
    assert services.pair_scoring_execute(job.pk) == ScoringStatus.SUCCEEDED
    assert services.pair_scoring_execute(job.pk) == "skipped"  # delivered twice
    job.refresh_from_db()
    assert (job.status, job.total, job.done, job.run_id) == (ScoringStatus.SUCCEEDED, 10, 10, run.pk)
    assert job.started_at and job.finished_at
    assert PairScore.objects.filter(run=run).count() == 10
    # A model that no longer loads: the scoring fails with the reason, nothing is half written.
    (files.absolute(run.output_dir) / CONFIG_FILENAME).unlink()
    failed = services.pair_scoring_start(project=project, created_by=admin_user)
    assert failed.pk != job.pk
    annotation_services.judgments_import(
        project=project, items=[{"pair": "m11", "rater": "r0", "choice": "a"}]
    )
    assert services.pair_scoring_execute(failed.pk) == ScoringStatus.FAILED
    failed.refresh_from_db()
    assert "is not available" in failed.error and PairScore.objects.filter(run=run).count() == 10


def test_a_lost_scoring_is_replaced_by_the_next_start(make_project, admin_user):
    project = make_project()
    run = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.SUCCEEDED, finished_at=timezone.now()
    )
    ActiveModel.objects.create(project=project, run=run)
    lost = services.pair_scoring_start(project=project, created_by=admin_user)
    PairScoring.objects.filter(pk=lost.pk).update(
        updated_at=timezone.now() - services.pair_scores.STALE_AFTER * 2
    )
    fresh = services.pair_scoring_start(project=project, created_by=admin_user)
    lost.refresh_from_db()
    assert fresh.pk != lost.pk and lost.status == ScoringStatus.FAILED and lost.error.startswith("lost")


def test_leaving_a_pair_out_makes_the_latest_snapshot_stale(make_project, admin_user):
    project = make_project(judgments_per_pair=1)
    annotation_services.pairs_import(
        project=project,
        items=[
            {"external_id": f"s{i}", "prompt": "Q", "response_a": f"A{i}", "response_b": "B"}
            for i in range(2)
        ],
    )
    annotation_services.judgments_import(
        project=project, items=[{"pair": f"s{i}", "rater": "r", "choice": "a"} for i in range(2)]
    )
    first = services.snapshot_create(project=project)
    assert services.snapshot_create(project=project, reuse=True).pk == first.pk
    pair = Pair.objects.get(external_id="s1")
    annotation_services.pair_leave_out(project=project, pair_id=pair.pk, by=admin_user, reason="noise")
    second = services.snapshot_create(project=project, reuse=True)
    assert second.pk != first.pk and second.rows == first.rows
    text = files.absolute(second.file).read_text()
    assert text.count('"left_out":true') == 1 and text.count('"left_out":false') == 1
    assert services.snapshot_create(project=project, only_if_new=True) is None
    # Put back, then another pair left out: as many pairs left out as in the second file, a new file.
    annotation_services.pair_put_back(project=project, pair_id=pair.pk, by=admin_user, reason="a slip")
    other = Pair.objects.get(external_id="s0")
    annotation_services.pair_leave_out(project=project, pair_id=other.pk, by=admin_user, reason="noise")
    third = services.snapshot_create(project=project, reuse=True)
    assert third.pk != second.pk
    lines = [json.loads(line) for line in files.absolute(third.file).read_text().splitlines()]
    assert {line["external_id"]: line["left_out"] for line in lines} == {"s0": True, "s1": False}


@pytest.mark.django_db
def test_a_corrected_judgment_makes_the_latest_snapshot_stale(make_project, make_pairs, make_rater):
    """A correction changes a judgment in place (no new judgment, no new id): the next run must not train
    on the file written before it."""
    project = make_project(judgments_per_pair=1, correction_seconds=600)
    make_pairs(project, 1)
    rater = make_rater(project)
    served = annotation_services.assignment_next(project=project, user=rater)
    judgment = annotation_services.judgment_record(
        assignment_id=served.assignment.pk, user=rater, choice="left"
    )
    first = services.snapshot_create(project=project)
    annotation_services.judgment_correct(judgment_id=judgment.pk, user=rater, choice="right")
    second = services.snapshot_create(project=project, reuse=True)
    assert second.pk != first.pk
    [before] = [json.loads(line) for line in files.absolute(first.file).read_text().splitlines()]
    [after] = [json.loads(line) for line in files.absolute(second.file).read_text().splitlines()]
    assert before["choice"] != after["choice"]
    assert services.snapshot_create(project=project, only_if_new=True) is None
