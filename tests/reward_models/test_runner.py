"""The worker's side of a run without a worker process: what a second delivery, a finished run and an
empty project come to. (The trainer's child process is exercised in tests/e2e.)"""

from __future__ import annotations

import io
import math

import pytest
from django.utils import timezone

from reward_models import files, runner
from reward_models.models import DatasetSnapshot, RunStatus, TrainingRun
from reward_models.runner import run_training
from rm_training import progress

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("status", [RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.CANCELLED])
def test_a_run_that_is_not_queued_is_left_alone(make_project, status):
    started = timezone.now()
    run = TrainingRun.objects.create(
        project=make_project(),
        config={},
        status=status,
        started_at=started,
        finished_at=None if status == RunStatus.RUNNING else started,
    )
    assert run_training(run.pk) == "skipped"
    run.refresh_from_db()
    assert run.status == status and run.started_at == started and run.snapshot is None


def test_an_unknown_run_is_skipped():
    assert run_training(987654321) == "skipped"


def test_a_project_without_judgments_fails_with_one_line(make_project):
    run = TrainingRun.objects.create(project=make_project("empty"), config={})
    assert run_training(run.pk) == RunStatus.FAILED
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert run.error == "project 'empty' has no judgments to train on"
    assert run.snapshot is not None and run.snapshot.rows == 0
    assert run.started_at <= run.finished_at and run.worker_host


def test_runs_share_the_latest_snapshot_until_a_judgment_is_added(make_project, judged):
    from reward_models.runner import _snapshot

    project = judged(make_project("reuse"))
    first, second = (TrainingRun.objects.create(project=project, config={}) for _ in range(2))
    snapshot = _snapshot(first)
    assert _snapshot(second) == snapshot and DatasetSnapshot.objects.count() == 1
    judged(project)
    third = TrainingRun.objects.create(project=project, config={})
    newer = _snapshot(third)
    assert newer != snapshot and newer.rows == snapshot.rows + 1
    files.absolute(newer.file).unlink()  # a snapshot whose file is gone is not reused
    assert _snapshot(TrainingRun.objects.create(project=project, config={})) not in (snapshot, newer)


def test_runs_failing_at_once_do_not_each_write_a_snapshot(make_project):
    project = make_project("empty2")
    runs = [TrainingRun.objects.create(project=project, config={}) for _ in range(3)]
    assert [run_training(run.pk) for run in runs] == [RunStatus.FAILED] * 3
    assert DatasetSnapshot.objects.filter(project=project).count() == 1


def test_the_run_records_the_celery_node_name_as_its_worker(make_project):
    from reward_models import tasks

    run = TrainingRun.objects.create(project=make_project("node"), config={})
    tasks.training_run_execute.push_request(hostname="celery@gpu-box-2")
    try:
        assert tasks.training_run_execute.run(run.pk) == RunStatus.FAILED  # no judgments, fails at once
    finally:
        tasks.training_run_execute.pop_request()
    run.refresh_from_db()
    assert run.worker_host == "celery@gpu-box-2"


def test_the_row_takes_the_trainers_events_as_they_are_read_from_its_stdout():
    stream = io.StringIO()
    for event in [
        progress.Start(device="cuda", bf16=True, processes=2, pid=1),
        progress.Step(fraction=0.5, step=1, total_steps=2, epoch=1, loss=math.nan, learning_rate=1e-3),
        progress.Epoch(fraction=1.0, epoch=1, train_loss=0.5, pairs_per_second=9.0),
    ]:
        progress.emit(stream, event)
    state = runner._RowState(run_id=0)
    for line in ["loading weights\n", *stream.getvalue().splitlines(keepends=True)]:
        state.apply(progress.parse(line))
    step = {"step": 1, "epoch": 1, "loss": None, "learning_rate": 1e-3}
    assert state.changes == {
        "device": "cuda x 2",
        "bf16": True,
        "current": {**step, "total_steps": 2},
        "progress": 0.5,
        "history": [step],
        "epochs": [{"epoch": 1, "train_loss": 0.5, "pairs_per_second": 9.0}],  # no held-out pairs, no figures
    }
