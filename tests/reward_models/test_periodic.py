"""What beat does: the auto-train policy (off by default, held back only by a run in flight), the schedules
in the database that admins edit, and which tasks acknowledge late and where they are routed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.beat import Scheduler
from config.celery import app
from reward_models import services, tasks
from reward_models.models import AutoTrainPolicy, RunStatus, TrainingRun

from .conftest import judge

pytestmark = pytest.mark.django_db


@pytest.fixture
def project(make_project, make_pairs):
    project = make_project("auto", judgments_per_pair=3)
    make_pairs(project, 6)
    return project


def test_auto_train_is_off_by_default_and_starts_after_n_new_judgments(project, make_rater):
    raters = [make_rater(project) for _ in range(2)]
    for rater in raters:
        judge(project, rater, "left")
    assert services.auto_train_check() == []  # no policy
    policy = AutoTrainPolicy.objects.create(project=project, after_new_judgments=3, config={"epochs": 2})
    assert not policy.enabled
    assert services.auto_train_check() == []
    policy.enabled = True
    policy.save()
    assert services.auto_train_check() == []  # 2 new judgments of the 3 asked
    judge(project, raters[0], "right")
    [run] = services.auto_train_check()
    assert run.status == RunStatus.QUEUED and run.config["epochs"] == 2
    assert services.auto_train_check() == []  # a run is queued
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.SUCCEEDED, finished_at=timezone.now())
    assert services.auto_train_check() == []  # nothing new since
    for rater in raters:
        judge(project, rater, "tie")
    judge(project, make_rater(project), "left")
    assert len(services.auto_train_check()) == 1


def test_auto_train_on_a_schedule_needs_new_judgments(project, make_rater):
    policy = AutoTrainPolicy.objects.create(project=project, enabled=True, every_hours=6)
    assert services.auto_train_check() == []  # nothing judged yet
    judge(project, make_rater(project), "left")
    [run] = services.auto_train_check()
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, finished_at=timezone.now())
    for _ in range(2):  # three votes on a side each: a strict majority, whichever sides they took
        judge(project, make_rater(project), "left")
    assert services.auto_train_check() == []  # six hours have not passed
    AutoTrainPolicy.objects.filter(pk=policy.pk).update(last_started_at=timezone.now() - timedelta(hours=7))
    assert len(services.auto_train_check()) == 1


def test_auto_train_waits_for_a_run_in_flight_but_not_for_one_whose_message_is_lost(
    project, make_rater, own_redis, broker_at
):
    broker_at(own_redis.url)
    AutoTrainPolicy.objects.create(project=project, enabled=True, after_new_judgments=1)
    judge(project, make_rater(project), "left")
    stuck = TrainingRun.objects.create(
        project=project, config={}, send_count=1, sent_at=timezone.now() - timedelta(minutes=10)
    )
    tasks.training_run_execute.apply_async((stuck.pk,))
    assert services.auto_train_check() == []  # its message waits for a worker
    own_redis.restart()  # without persistence: the message is gone, the run stuck
    [run] = services.auto_train_check()
    assert run.status == RunStatus.QUEUED and run.pk != stuck.pk
    judge(project, make_rater(project), "left")
    assert services.auto_train_check() == []  # the new run: queued a moment ago


# Committed: beat's scheduler commits and closes old connections itself.
@pytest.mark.django_db(transaction=True)
def test_beat_writes_its_schedules_once_and_keeps_an_admins_changes():
    Scheduler(app=app, lazy=True).setup_schedule()  # beat starts
    names = set(PeriodicTask.objects.values_list("name", flat=True))
    assert {
        "export-snapshots",
        "auto-train",
        "reap-lost-runs",
        "resend-lost-runs",
        "refresh-priorities",
        "expire-stale-leases",
    } <= names
    export = PeriodicTask.objects.get(name="export-snapshots")
    assert export.task == "reward_models.tasks.snapshots_export"
    # An admin makes the export daily and turns the reaper off.
    daily, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.DAYS)
    PeriodicTask.objects.filter(name="export-snapshots").update(interval=daily)
    PeriodicTask.objects.filter(name="reap-lost-runs").update(enabled=False)
    Scheduler(app=app, lazy=True).setup_schedule()  # beat restarts
    assert PeriodicTask.objects.get(name="export-snapshots").interval == daily
    assert PeriodicTask.objects.get(name="reap-lost-runs").enabled is False


def test_training_has_its_own_queue_and_is_redelivery_safe():
    assert app.amqp.router.route({}, tasks.training_run_execute.name)["queue"].name == "training"
    assert app.amqp.router.route({}, tasks.snapshots_export.name)["queue"].name == "celery"
    # Late acknowledgement only because a second delivery finds the run no longer queued (the runner's
    # row lock); tests/e2e shows it on a real worker.
    assert tasks.training_run_execute.acks_late is True
    assert app.conf.task_acks_late is False and app.conf.worker_prefetch_multiplier == 1
