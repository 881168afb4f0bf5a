"""The training-run admin pages in a real Chromium: the progress bar follows the run's row as the worker
writes it, the page moves on to the finished run's charts by itself, the "Train reward model" form shows
its errors per field, and hostile text runs nothing, all under the site's Content-Security-Policy."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Project
from reward_models.models import RunStatus, TrainingRun
from tests.pages.conftest import Tab

pytestmark = pytest.mark.browser

HOSTILE = '<script>window.pwned("name")</script><img src=x onerror="pwned(1)">'
HISTORY = [{"step": s, "epoch": 1, "loss": 0.7 - 0.03 * s, "learning_rate": 1e-4} for s in range(1, 11)]
METRICS = {
    "eval_accuracy": 0.75,
    "length_baseline_accuracy": 0.6,
    "accuracy_unanimous": 0.9,
    "accuracy_split": 0.55,
    "ece": 0.05,
    "calibration": [
        {"lower": 0.5, "upper": 0.75, "pairs": 4, "confidence": 0.62, "observed": 0.7},
        {"lower": 0.75, "upper": 1.0, "pairs": 4, "confidence": 0.85, "observed": 0.8},
    ],
}


@pytest.fixture
def superuser(admin_user):
    admin_user.is_superuser = True
    admin_user.save()
    return admin_user


def _project(make_project) -> Project:
    project = make_project("runs")
    Project.objects.filter(pk=project.pk).update(name=HOSTILE)
    return project


def _bar(t: Tab) -> float:
    return float(t.page.evaluate("document.getElementById('run-progress').value"))


def _wait_for_bar(t: Tab, above: float) -> None:
    # A function, not an expression string: Playwright evals a string, which the page's CSP refuses.
    t.page.wait_for_function(
        "(v) => document.getElementById('run-progress').value > v", arg=above, timeout=5_000
    )


def _charts_loaded(t: Tab) -> int:
    """How many chart images the browser decoded (an SVG it could not draw has no width)."""
    return int(
        t.page.evaluate(
            "Array.from(document.querySelectorAll('img.chart'))"
            ".filter(function (img) { return img.complete && img.naturalWidth > 0; }).length"
        )
    )


def test_the_progress_bar_moves_with_the_row_and_the_finished_run_shows_its_charts(
    tab, superuser, make_project
):
    project = _project(make_project)
    run = TrainingRun.objects.create(
        project=project,
        config={"epochs": 1, "base_model": HOSTILE},
        status=RunStatus.RUNNING,
        progress=0.1,
        current={"step": 1, "total_steps": 10, "epoch": 1, "loss": 0.67},
        history=HISTORY[:1],
        started_at=timezone.now() - timedelta(seconds=30),
        heartbeat_at=timezone.now(),
        device="cpu",
    )
    t = tab()
    t.login_as(superuser)
    t.goto(f"/admin/reward_models/trainingrun/{run.pk}/change/")
    assert _bar(t) == pytest.approx(0.1)
    assert t.page.inner_text("#run-status") == "Running"
    assert _charts_loaded(t) == 1  # the loss curve

    # The worker writes the row; the page follows without a reload.
    TrainingRun.objects.filter(pk=run.pk).update(
        progress=0.6, current={"step": 6, "total_steps": 10, "epoch": 1, "loss": 0.52}, history=HISTORY[:6]
    )
    _wait_for_bar(t, 0.55)
    assert t.page.inner_text("#run-progress-text") == "60%"
    assert t.page.inner_text("#run-step") == "step 6 of 10, epoch 1, loss 0.5200"
    t.page.evaluate("document.body.setAttribute('data-same-page', '1')")

    TrainingRun.objects.filter(pk=run.pk).update(progress=0.9, current={"step": 9, "total_steps": 10})
    _wait_for_bar(t, 0.85)
    # Still the same document: the bar moved in place.
    assert t.page.evaluate("document.body.getAttribute('data-same-page')") == "1"

    # The run ends: the page loads again by itself, with the finished run's figures and charts.
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED,
        progress=1.0,
        finished_at=timezone.now(),
        metrics=METRICS,
        history=HISTORY,
        epochs=[
            {"epoch": 1, "train_loss": 0.62, "eval_loss": 0.58, "eval_accuracy": 0.68},
            {"epoch": 2, "train_loss": 0.55, "eval_loss": 0.5, "eval_accuracy": 0.75},
        ],
        human_agreement={"percent_agreement": 0.8, "ceiling_accuracy": 0.9},
    )
    t.page.wait_for_selector("#run-status:has-text('Succeeded')", timeout=5_000)
    assert _bar(t) == 1.0
    t.page.wait_for_function(
        "(n) => Array.from(document.querySelectorAll('img.chart')).filter((i) => i.complete).length === n",
        arg=5,
    )
    assert _charts_loaded(t) == 5  # loss, loss by epoch, accuracy, comparison, calibration
    assert t.page.locator("#run-activate").count() == 1
    assert t.page.locator("#run-cancel").count() == 0
    # Hostile names are text on the page.
    assert HOSTILE in t.page.inner_text("#run-status-title")
    t.screenshot("training-run-succeeded")
    t.assert_clean()


def test_an_open_run_page_follows_the_sends_and_turns_late_when_the_heartbeat_stops(
    tab, superuser, make_project, settings
):
    settings.PAIRWISE_RUN_HEARTBEAT_SECONDS = 10
    settings.PAIRWISE_RUN_LOST_AFTER_SECONDS = 60
    first_send = timezone.now().replace(microsecond=0) - timedelta(minutes=5)
    run = TrainingRun.objects.create(
        project=_project(make_project), config={"epochs": 1}, sent_at=first_send, send_count=1
    )
    t = tab()
    t.login_as(superuser)
    t.goto(f"/admin/reward_models/trainingrun/{run.pk}/change/")
    assert t.page.inner_text("#run-sent") == f"{first_send:%Y-%m-%d %H:%M:%S} UTC"
    t.page.evaluate("document.body.setAttribute('data-same-page', '1')")

    # Beat sends the queued run again: the row says so without a reload.
    TrainingRun.objects.filter(pk=run.pk).update(sent_at=timezone.now(), send_count=2)
    t.page.wait_for_selector("#run-sent:has-text('its message was lost (2 sends in all)')", timeout=5_000)
    assert t.page.evaluate("document.body.getAttribute('data-same-page')") == "1"

    # A worker takes it (the page loads again, running), then stops writing its heartbeat.
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.RUNNING, started_at=timezone.now(), heartbeat_at=timezone.now(), worker_host=HOSTILE
    )
    t.page.wait_for_selector("#run-status:has-text('Running')", timeout=5_000)
    t.page.evaluate("document.body.setAttribute('data-same-page', '2')")
    assert t.page.locator("#run-silent").is_hidden()
    heartbeat = timezone.now().replace(microsecond=0) - timedelta(seconds=45)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=heartbeat)
    t.page.wait_for_selector("#run-silent", timeout=5_000)
    note = t.page.inner_text("#run-silent")
    deadline = heartbeat + timedelta(seconds=60)
    assert note.startswith(f"No heartbeat from {HOSTILE} for 4")
    assert note.endswith(
        f"s: the worker may be lost; the run will be marked failed within a minute after "
        f"{deadline:%H:%M:%S} UTC if none comes."
    )
    assert t.page.inner_text("#run-heartbeat") == f"{heartbeat:%Y-%m-%d %H:%M:%S} UTC"
    assert t.page.evaluate("document.body.getAttribute('data-same-page')") == "2"
    t.screenshot("training-run-late")

    # The heartbeat comes back: the note goes, still without a reload.
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
    t.page.wait_for_selector("#run-silent", state="hidden", timeout=5_000)
    assert t.page.evaluate("document.body.getAttribute('data-same-page')") == "2"
    t.assert_clean()


def test_a_failed_run_shows_its_error_and_does_not_poll(tab, superuser, make_project):
    project = _project(make_project)
    run = TrainingRun.objects.create(
        project=project,
        config={"epochs": 1},
        status=RunStatus.FAILED,
        progress=0.3,
        error=f"worker lost: {HOSTILE}",
        started_at=timezone.now() - timedelta(seconds=30),
        finished_at=timezone.now(),
    )
    t = tab()
    t.login_as(superuser)
    requests: list[str] = []
    t.page.on("request", lambda r: requests.append(r.url))
    t.goto(f"/admin/reward_models/trainingrun/{run.pk}/change/")
    assert t.page.inner_text("#run-error") == f"worker lost: {HOSTILE}"
    t.page.wait_for_timeout(1_500)
    assert not [url for url in requests if "/progress/" in url]
    t.screenshot("training-run-failed")
    t.assert_clean()


def test_the_train_button_leads_to_a_form_with_errors_per_field(tab, superuser, make_project):
    project = _project(make_project)
    t = tab()
    t.login_as(superuser)
    t.goto(f"/admin/annotation/project/{project.pk}/change/")
    t.page.click("#train-reward-model")
    t.page.wait_for_selector("#train-submit")
    t.page.fill("#id_epochs", "0")
    t.page.fill("#id_learning_rate", "-1")
    t.page.click("#train-submit")
    t.page.wait_for_selector(".field-epochs .errorlist")
    assert t.page.inner_text(".field-epochs .errorlist") == "epochs must be at least 1"
    assert t.page.inner_text(".field-learning_rate .errorlist") == "learning_rate must be positive"
    assert t.page.locator(".form-row.errors").count() == 2
    assert not TrainingRun.objects.exists()
    t.screenshot("train-reward-model-errors")
    t.assert_clean()


def test_every_field_of_a_running_run_is_live_and_a_new_one_needs_no_script(
    tab, superuser, make_project, monkeypatch
):
    """Duration, heartbeat, worker and the rest follow the row without a reload; a field the server adds to
    "live" (as a new figure would be) reaches an element of its name with nothing in the script."""
    from reward_models import admin_views

    started = timezone.now() - timedelta(seconds=100)
    run = TrainingRun.objects.create(
        project=_project(make_project),
        config={"epochs": 1},
        status=RunStatus.RUNNING,
        started_at=started,
        heartbeat_at=started,
        worker_host="gpu-1",
        device="cpu",
    )
    real = admin_views.progress_state

    def with_a_new_figure(run: TrainingRun) -> dict:
        state = real(run)
        state["live"]["tokens_per_second"] = f"{run.pk * 1000} tokens/s"
        return state

    monkeypatch.setattr(admin_views, "progress_state", with_a_new_figure)
    t = tab()
    t.login_as(superuser)
    t.goto(f"/admin/reward_models/trainingrun/{run.pk}/change/")
    first = int(t.page.inner_text("#run-duration").split()[0])
    assert 100 <= first < 110
    t.page.evaluate(
        "() => { const s = document.createElement('span'); s.id = 'tps'; s.setAttribute('data-live', "
        "'tokens_per_second'); document.querySelector('.run-facts td').appendChild(s); }"
    )
    beat = timezone.now().replace(microsecond=0)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=beat, worker_host="gpu-2", device="cuda")
    t.page.wait_for_selector("#run-worker:has-text('gpu-2 · device cuda')", timeout=5_000)
    assert t.page.inner_text("#run-heartbeat") == f"{beat:%Y-%m-%d %H:%M:%S} UTC"
    t.page.wait_for_function(
        "(n) => parseInt(document.getElementById('run-duration').textContent, 10) > n",
        arg=first,
        timeout=5_000,
    )
    assert t.page.inner_text("#tps") == f"{run.pk * 1000} tokens/s"
    t.assert_clean()
