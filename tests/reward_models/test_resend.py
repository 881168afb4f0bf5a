"""Queued runs are never lost: the row is the record, the broker only its messenger. A run whose message
the broker lost is sent again (and failed, with its reason, once that keeps happening); a run created
while the broker is down is queued and sent when the broker is back. On the test's own Redis, stopped and
restarted without persistence, as in the fault campaign."""

from __future__ import annotations

import base64
import json
import logging
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from reward_models import services
from reward_models.models import RunStatus, TrainingRun
from reward_models.services.runs import MAX_SENDS

RUNS = "/api/v1/training-runs/"


@pytest.fixture
def project(make_project, judged):
    return judged(make_project("resend"))


@pytest.fixture
def broker(own_redis, broker_at):
    """This process sends to the test's own Redis."""
    broker_at(own_redis.url)
    return own_redis


def queued_ids(broker) -> list[int]:
    """The run ids of the training messages waiting on the broker, oldest first."""
    messages = [json.loads(raw) for raw in reversed(broker.client().lrange("training", 0, -1))]
    assert {m["headers"]["task"] for m in messages} <= {"reward_models.tasks.training_run_execute"}
    return [json.loads(base64.b64decode(m["body"]))[0][0] for m in messages]


def sent_minutes_ago(run: TrainingRun, minutes: int) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(sent_at=timezone.now() - timedelta(minutes=minutes))


@pytest.mark.django_db
def test_a_queued_run_whose_message_is_gone_is_sent_again_and_its_page_says_when(
    project, broker, django_user_model, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        run = services.training_run_create(project=project, config={"epochs": 1})
    run.refresh_from_db()
    assert queued_ids(broker) == [run.pk] and run.send_count == 1 and run.sent_at is not None

    broker.restart()  # no persistence: the message is gone, the row still says queued
    assert queued_ids(broker) == []
    assert services.runs_resend() == 0  # sent a moment ago: not yet
    sent_minutes_ago(run, 5)
    assert services.runs_resend() == 1
    assert queued_ids(broker) == [run.pk]
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED and run.send_count == 2
    assert timezone.now() - run.sent_at < timedelta(seconds=10)

    client = Client()
    client.force_login(django_user_model.objects.create_superuser("root", "root@example.org", "pw"))
    page = client.get(reverse("admin:reward_models_trainingrun_change", args=[run.pk])).content.decode()
    shown = f"sent again {timezone.localtime(run.sent_at):%Y-%m-%d %H:%M:%S} UTC: its message was lost"
    assert shown in page and "(2 sends in all)" in page


@pytest.mark.django_db
def test_runs_whose_messages_wait_on_the_queue_are_not_sent_again(project, broker):
    waiting = [TrainingRun.objects.create(project=project, config={}, send_count=1) for _ in range(2)]
    for run in waiting:
        sent_minutes_ago(run, 60)
    assert services.runs_resend() == 2  # the queue is empty: both messages are gone
    for _ in range(3):
        # Behind a long run, or with no worker started: two runs, two messages, nothing sent twice.
        assert services.runs_resend(resend_after=timedelta(0)) == 0
    broker.client().rpop("training")  # the oldest message lost
    assert services.runs_resend(resend_after=timedelta(0)) == 2  # which one is unknown: both go
    assert queued_ids(broker) == [waiting[1].pk, waiting[0].pk, waiting[1].pk]
    assert services.runs_resend(resend_after=timedelta(0)) == 0


@pytest.mark.django_db
def test_a_run_never_taken_by_a_worker_fails_with_its_reason(project, broker):
    run = TrainingRun.objects.create(project=project, config={}, send_count=MAX_SENDS)
    sent_minutes_ago(run, 5)
    assert services.runs_resend() == 0
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert run.error.startswith(
        f"no worker took the run: sent to the training queue {MAX_SENDS} times (the last at "
    )
    assert "\n" not in run.error
    assert queued_ids(broker) == []


@pytest.mark.django_db
def test_nothing_is_sent_or_failed_while_the_broker_is_down(project, broker):
    run = TrainingRun.objects.create(project=project, config={}, send_count=MAX_SENDS)
    sent_minutes_ago(run, 60)
    broker.stop()
    assert services.runs_resend() == 0
    run.refresh_from_db()
    assert run.status == RunStatus.QUEUED


@pytest.mark.django_db(transaction=True)
def test_a_run_created_while_the_broker_is_down_is_201_queued_and_sent_when_it_is_back(
    project, broker, admin_user, api, caplog
):
    staff = api(admin_user)
    first = staff.post(RUNS, {"project": "resend", "epochs": 1}, format="json")
    assert first.status_code == 201 and first.data["send_count"] == 1 and first.data["sent_at"]
    broker.stop()
    caplog.set_level(logging.INFO, logger="reward_models")
    down = [staff.post(RUNS, {"project": "resend", "epochs": epochs}, format="json") for epochs in (2, 3)]
    for answer in down:
        assert answer.status_code == 201, answer.data
        assert answer.data["status"] == "queued" and answer.data["sent_at"] is None
        assert answer.data["send_count"] == 0
    unreachable = [r for r in caplog.records if "the broker is unreachable" in r.getMessage()]
    assert len(unreachable) == 1 and unreachable[0].levelname == "WARNING"  # once, not once per run

    broker.start()  # back, empty: the first run's message went with it
    assert services.runs_resend(resend_after=timedelta(0)) == 3
    assert sorted(queued_ids(broker)) == [first.data["id"], *(answer.data["id"] for answer in down)]
    counts = dict(TrainingRun.objects.values_list("pk", "send_count"))
    assert counts == {first.data["id"]: 2, down[0].data["id"]: 1, down[1].data["id"]: 1}
    assert any("the broker is reachable again" in r.getMessage() for r in caplog.records)
    detail = staff.get(f"{RUNS}{down[0].data['id']}/").data
    assert detail["send_count"] == 1 and detail["sent_at"] is not None


@pytest.mark.django_db(transaction=True)
def test_a_redis_that_hangs_holds_neither_a_run_creation_nor_the_health_check(
    project, broker, admin_user, api
):
    """SIGSTOP: the server still accepts connections (the kernel does) but answers nothing."""
    import os
    import signal
    import time

    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        answer = api(admin_user).post(RUNS, {"project": "resend"}, format="json")
        assert answer.status_code == 201 and answer.data["sent_at"] is None
        health = Client().get("/healthz")
        assert health.status_code == 503
        assert time.monotonic() - started < 15  # seconds, where it was held until Redis woke up
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)
