"""Runs and snapshots through the services: creation, validation, cancel, the reaper, activation refusals."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from reward_models import services
from reward_models.models import RunStatus, TrainingRun
from web.errors import Conflict, Invalid


@pytest.fixture
def project(make_project, judged):
    return judged(make_project())


@pytest.mark.django_db
def test_a_new_run_is_queued_with_the_whole_config(project):
    run = services.training_run_create(project=project, config={"epochs": 2, "learning_rate": 1e-4})
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED
    assert run.config["epochs"] == 2 and run.config["learning_rate"] == 1e-4
    assert run.config["batch_size"] == 32  # the default, recorded
    assert run.config["progress_bar"] is False


@pytest.mark.django_db
def test_bad_settings_are_refused_field_by_field(project):
    with pytest.raises(Invalid) as refused:
        services.training_run_create(
            project=project, config={"epochs": 0, "learning_rate": -1, "colour": "red", "device": "cuda"}
        )
    fields = {error["field"] for error in refused.value.errors}
    assert fields == {"device"}  # the worker's own setting is refused before the rest is read
    with pytest.raises(Invalid) as refused:
        services.training_run_create(project=project, config={"epochs": 0, "learning_rate": -1})
    assert {e["field"] for e in refused.value.errors} == {"epochs", "learning_rate"}
    with pytest.raises(Invalid) as refused:
        services.training_run_create(project=project, config={"colour": "red", "epochs": "2"})
    assert {e["field"] for e in refused.value.errors} == {"colour", "epochs"}
    assert not TrainingRun.objects.exists()


@pytest.mark.django_db
def test_cancelling_a_queued_run_ends_it_and_a_finished_one_is_a_conflict(project):
    run = services.training_run_create(project=project, config={})
    cancelled = services.training_run_cancel(run=run)
    assert cancelled.status == RunStatus.CANCELLED and cancelled.finished_at is not None
    with pytest.raises(Conflict):
        services.training_run_cancel(run=run)


@pytest.mark.django_db
def test_cancelling_a_running_run_asks_its_worker_to_stop(project):
    run = TrainingRun.objects.create(project=project, config={}, status=RunStatus.RUNNING)
    asked = services.training_run_cancel(run=run)
    assert asked.status == RunStatus.RUNNING and asked.cancel_requested_at is not None


@pytest.mark.django_db
def test_the_reaper_fails_only_runs_whose_heartbeat_stopped(project):
    now = timezone.now()
    lost = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.RUNNING, heartbeat_at=now - timedelta(minutes=10)
    )
    alive = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.RUNNING, heartbeat_at=now - timedelta(seconds=5)
    )
    assert services.runs_reap(lost_after=timedelta(minutes=5)) == 1
    lost.refresh_from_db()
    alive.refresh_from_db()
    assert lost.status == RunStatus.FAILED and lost.error.startswith("worker lost")
    assert alive.status == RunStatus.RUNNING


@pytest.mark.django_db
def test_a_run_asked_to_cancel_whose_worker_died_is_reaped_as_cancelled(project):
    now = timezone.now()
    run = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.RUNNING, heartbeat_at=now - timedelta(minutes=10)
    )
    services.training_run_cancel(run=run)  # answered 200: the worker is asked to stop, but it is gone
    assert services.runs_reap(lost_after=timedelta(minutes=5)) == 1
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.error.startswith("worker lost")


@pytest.mark.django_db
def test_only_a_succeeded_run_can_be_activated(project):
    run = services.training_run_create(project=project, config={})
    with pytest.raises(Conflict):
        services.training_run_activate(run=run)


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_submissions_of_the_same_run_queue_one(make_project, judged):
    import threading

    from django.db import connection

    project = judged(make_project("race"))
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def submit() -> None:
        try:
            barrier.wait()
            outcomes.append(services.training_run_create(project=project, config={"epochs": 2}))
        except Conflict as refused:
            outcomes.append(refused)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    [run] = [o for o in outcomes if isinstance(o, TrainingRun)]
    [refused] = [o for o in outcomes if isinstance(o, Conflict)]
    assert refused.code == "duplicate_run" and f"Run {run.pk}" in refused.detail
    assert TrainingRun.objects.filter(project=project).count() == 1
