"""A really trained (tiny) run through its admin page: the model card the trainer wrote, the figures it
measured, and Activate, which checks the saved model and makes it the project's scoring model."""

from __future__ import annotations

from dataclasses import replace

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from reward_models import files
from reward_models.models import ActiveModel, RunStatus, TrainingRun
from rm_training.config import TrainingConfig
from rm_training.train import train
from tests.rm_training.conftest import marker_comparisons

pytestmark = pytest.mark.django_db


@pytest.fixture
def trained_run(make_project, tiny_bert_dir):
    project = make_project("trained")
    run = TrainingRun.objects.create(project=project, config={})
    run.output_dir = f"runs/{run.pk}/model"
    config = TrainingConfig(
        base_model=str(tiny_bert_dir),
        max_length=48,
        batch_size=8,
        learning_rate=3e-3,
        device="cpu",
        bf16=False,
    )
    metrics = train(
        replace(config, epochs=2), examples=marker_comparisons(24), output_dir=files.absolute(run.output_dir)
    )
    run.status, run.finished_at, run.progress = RunStatus.SUCCEEDED, timezone.now(), 1.0
    run.metrics, run.epochs, run.config = metrics, metrics["history"], config.to_dict()
    run.save()
    return run


@pytest.fixture
def operator(make_user):
    user = make_user("operator", staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_trainingrun", "change_trainingrun"])
    )
    client = Client()
    client.force_login(user)
    return client


def test_a_trained_run_shows_its_model_card_and_activates_from_its_page(trained_run, operator):
    page = reverse("admin:reward_models_trainingrun_change", args=[trained_run.pk])
    html = operator.get(page).content.decode()
    assert 'id="model-card"' in html and "# Reward model" in html and "Bradley-Terry" in html
    accuracy = trained_run.metrics["eval_accuracy"]
    assert f"{100 * accuracy:.1f}%" in html
    assert html.count("data:image/svg+xml;base64,") >= 4  # loss, by epoch (two), comparison; calibration too
    assert 'id="run-activate"' in html

    response = operator.post(
        reverse("admin:reward_models_trainingrun_activate", args=[trained_run.pk]), follow=True
    )
    html = response.content.decode()
    assert f"Run {trained_run.pk}&#x27;s model now scores for project trained." in html
    assert "the project's active model" in html and 'id="run-activate"' not in html
    active = ActiveModel.objects.get(project=trained_run.project)
    assert active.run_id == trained_run.pk and active.activated_by is not None
