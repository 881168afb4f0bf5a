"""A queued run survives its message: the fault campaign's case, on a real worker. The training worker is
down, a run is queued, Redis restarts without persistence and loses the message; the resend sends it
again and a worker trains it, and a second delivery of it does nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest

from reward_models import services, tasks
from reward_models.models import RunStatus

from .conftest import wait_for
from .test_training_path import FAST, _finished, _judged_project

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_run_whose_message_redis_lost_is_sent_again_and_trained_once(
    own_redis, broker_at, start_worker, settings, e2e_settings, tiny_bert_dir, make_project
):
    broker_at(own_redis.url)
    project = _judged_project(make_project, n_pairs=16)
    run = services.training_run_create(project=project, config={"base_model": str(tiny_bert_dir), **FAST})
    assert own_redis.waiting() == 1  # sent on commit; no worker yet
    own_redis.restart()
    assert own_redis.waiting() == 0
    assert services.runs_resend(resend_after=timedelta(0)) == 1
    assert own_redis.waiting() == 1

    settings.CELERY_BROKER_URL = own_redis.url  # the worker's broker
    worker = start_worker("training")
    try:
        finished = wait_for(lambda: _finished(run.pk), what="the resent run")
        assert finished.status == RunStatus.SUCCEEDED, finished.error
        assert finished.send_count == 2
        tasks.training_run_execute.apply_async((run.pk,))  # one more delivery of the same run
        worker.wait_for_log(f"run {run.pk} is not queued; nothing to do")
        assert own_redis.waiting() == 0
    finally:
        worker.stop()
