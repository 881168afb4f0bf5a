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


def _without_evaluation(run: TrainingRun) -> TrainingRun:
    """The run as one that held out no pairs records it: no eval pairs, every held-out figure n/a."""
    run.metrics = {**run.metrics, "eval_accuracy": None, "counts": {**run.metrics["counts"], "eval_pairs": 0}}
    run.save(update_fields=["metrics"])
    return run


def test_a_run_without_held_out_pairs_activates_only_with_a_stated_reason(trained_run, operator):
    run = _without_evaluation(trained_run)
    page = reverse("admin:reward_models_trainingrun_change", args=[run.pk])
    html = operator.get(page).content.decode()
    assert 'id="run-no-evaluation"' in html and "held out no pairs" in html
    assert 'name="force_reason"' in html and 'aria-required="true"' in html
    activate = reverse("admin:reward_models_trainingrun_activate", args=[run.pk])
    html = operator.post(activate, {"force_reason": "  "}, follow=True).content.decode()
    assert "held out no pairs, so its accuracy is unknown; it is not activated" in html
    assert not ActiveModel.objects.exists()
    html = operator.post(activate, {"force_reason": "smoke test of /score"}, follow=True).content.decode()
    assert "now scores for project trained" in html
    assert "activated without a held-out evaluation: smoke test of /score" in html
    assert ActiveModel.objects.get().forced_reason == "smoke test of /score"


def test_the_api_refuses_a_run_without_evaluation_409_unless_forced(trained_run, api, admin_user):
    run = _without_evaluation(trained_run)
    staff = api(admin_user)
    url = f"/api/v1/training-runs/{run.pk}/activate/"
    refused = staff.post(url)
    assert refused.status_code == 409 and refused.data["code"] == "no_evaluation"
    assert "held out no pairs" in refused.data["detail"]
    assert staff.post(url, {"force_reason": 3}, format="json").status_code == 400  # typed: a string
    assert staff.post(url, {"force_reason": "x" * 1001}, format="json").status_code == 400
    forced = staff.post(url, {"force_reason": "demo only"}, format="json")
    assert forced.status_code == 200 and forced.data["forced_reason"] == "demo only"
    assert ActiveModel.objects.get().forced_reason == "demo only"


def test_a_run_with_n_a_accuracy_is_refused_too_and_a_normal_run_keeps_no_reason(
    trained_run, api, admin_user
):
    staff = api(admin_user)
    url = f"/api/v1/training-runs/{trained_run.pk}/activate/"
    accuracy = trained_run.metrics["eval_accuracy"]
    trained_run.metrics = {**trained_run.metrics, "eval_accuracy": None}
    trained_run.save(update_fields=["metrics"])
    refused = staff.post(url)
    assert refused.status_code == 409 and "has no held-out accuracy" in refused.data["detail"]
    trained_run.metrics = {**trained_run.metrics, "eval_accuracy": accuracy}
    trained_run.save(update_fields=["metrics"])
    done = staff.post(url, {"force_reason": "not needed"}, format="json")
    assert done.status_code == 200 and done.data["forced_reason"] == ""


def test_a_reason_that_the_database_cannot_store_is_refused_in_words(trained_run, operator, api, admin_user):
    # A NUL in the admin form's reason (a raw POST) reached PostgreSQL's text column: an error page.
    run = _without_evaluation(trained_run)
    activate = reverse("admin:reward_models_trainingrun_activate", args=[run.pk])
    html = operator.post(activate, {"force_reason": "smoke\x00test"}, follow=True).content.decode()
    assert "NUL" in html and not ActiveModel.objects.exists()
    url = f"/api/v1/training-runs/{run.pk}/activate/"
    refused = api(admin_user).post(url, {"force_reason": "smoke\x00test"}, format="json")
    assert refused.status_code == 400 and not ActiveModel.objects.exists()
    shown = "<b>staging</b> only"
    operator.post(activate, {"force_reason": shown}, follow=True)
    html = operator.get(reverse("admin:reward_models_trainingrun_change", args=[run.pk])).content.decode()
    assert "&lt;b&gt;staging&lt;/b&gt; only" in html and shown not in html
