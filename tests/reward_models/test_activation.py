"""Activation checks the saved model (it loads and gives the run's recorded scores), and /score uses the
active model, loaded once per process and replaced when another run is activated."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from django.utils import timezone
from transformers import AutoModelForSequenceClassification

from reward_models import files, scoring
from reward_models.models import ActiveModel, RunStatus, TrainingRun
from rm_training.config import TrainingConfig
from rm_training.scoring import RewardScorer
from rm_training.train import train
from tests.rm_training.conftest import marker_comparisons

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_trained_run(make_project, tiny_bert_dir):
    project = make_project("act")

    def make(seed: int = 0) -> TrainingRun:
        run = TrainingRun.objects.create(project=project, config={})
        run.output_dir = f"runs/{run.pk}/model"
        config = TrainingConfig(
            base_model=str(tiny_bert_dir), max_length=48, batch_size=8, learning_rate=3e-3, device="cpu"
        )
        metrics = train(
            replace(config, seed=seed, bf16=False),
            examples=marker_comparisons(24),
            output_dir=files.absolute(run.output_dir),
        )
        run.status, run.finished_at, run.metrics = RunStatus.SUCCEEDED, timezone.now(), metrics
        run.save()
        return run

    return make


@pytest.fixture
def staff(admin_user, api):
    return api(admin_user)


def test_activation_checks_the_saved_model_and_score_uses_it(make_trained_run, staff):
    first, second = make_trained_run(seed=1), make_trained_run(seed=2)
    assert staff.post(f"/api/v1/training-runs/{first.pk}/activate/").status_code == 200
    body = {"project": "act", "prompt": "question river", "responses": ["the excellent stone", "a stone"]}
    scored = staff.post("/api/v1/score/", body, format="json")
    assert scored.status_code == 200 and scored.data["model"] == first.pk
    direct = RewardScorer(files.absolute(first.output_dir), device="cpu")
    direct_scores = direct.score(body["prompt"], body["responses"])
    assert scored.data["scores"] == pytest.approx(direct_scores, abs=1e-6)
    loaded = scoring._scorers[first.project_id][1]
    staff.post("/api/v1/score/", body, format="json")
    assert scoring._scorers[first.project_id][1] is loaded  # kept, not loaded again

    assert staff.post(f"/api/v1/training-runs/{second.pk}/activate/").status_code == 200
    rescored = staff.post("/api/v1/score/", body, format="json")
    assert rescored.data["model"] == second.pk and rescored.data["scores"] != scored.data["scores"]
    assert ActiveModel.objects.get().run_id == second.pk
    sixty_four = staff.post("/api/v1/score/", {**body, "responses": ["a stone"] * 64}, format="json")
    assert sixty_four.status_code == 200 and len(set(sixty_four.data["scores"])) == 1


def test_a_model_whose_reward_head_was_lost_on_save_is_not_activated(make_trained_run, staff):
    run = make_trained_run()
    directory = files.absolute(run.output_dir)
    model = AutoModelForSequenceClassification.from_pretrained(directory)
    with torch.no_grad():
        model.classifier.weight.normal_()  # a head re-initialised, as a save that drops it would give
    model.save_pretrained(directory)
    refused = staff.post(f"/api/v1/training-runs/{run.pk}/activate/")
    assert refused.status_code == 409 and refused.data["code"] == "model_check_failed"
    assert "does not give the scores the run recorded" in refused.data["detail"]
    assert not ActiveModel.objects.exists()
    assert run.project_id not in scoring._scorers


def test_a_saved_model_that_does_not_load_is_not_activated(make_trained_run, staff):
    run = make_trained_run()
    (files.absolute(run.output_dir) / "config.json").write_text("{not json")
    refused = staff.post(f"/api/v1/training-runs/{run.pk}/activate/")
    assert refused.status_code == 409 and "does not load" in refused.data["detail"]


def test_score_answers_409_model_unavailable_when_the_directory_is_gone(make_trained_run, staff):
    run = make_trained_run()
    assert staff.post(f"/api/v1/training-runs/{run.pk}/activate/").status_code == 200
    body = {"project": "act", "prompt": "question", "responses": ["an excellent answer"]}
    assert staff.post("/api/v1/score/", body, format="json").status_code == 200  # now cached here
    directory = files.absolute(run.output_dir)
    directory.rename(directory.with_name("moved"))
    for _ in ("cached", "not cached"):  # the first call finds it cached, and drops it
        gone = staff.post("/api/v1/score/", body, format="json")
        assert gone.status_code == 409 and gone.data["code"] == "model_unavailable"
        assert f"Run {run.pk}" in gone.data["detail"]
    assert run.project_id not in scoring._scorers
    directory.with_name("moved").rename(directory)
    assert staff.post("/api/v1/score/", body, format="json").status_code == 200


def test_score_answers_409_model_unavailable_when_the_directory_does_not_load(make_trained_run, staff):
    run = make_trained_run()
    assert staff.post(f"/api/v1/training-runs/{run.pk}/activate/").status_code == 200
    scoring._scorers.clear()  # another worker, without the model in memory
    (files.absolute(run.output_dir) / "training_config.json").write_text("{not json")
    body = {"project": "act", "prompt": "question", "responses": ["an excellent answer"]}
    broken = staff.post("/api/v1/score/", body, format="json")
    assert broken.status_code == 409 and broken.data["code"] == "model_unavailable"
    assert f"Run {run.pk}" in broken.data["detail"]
