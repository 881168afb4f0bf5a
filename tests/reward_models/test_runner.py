"""The worker's side of a run without a worker process: what a second delivery, a finished run and an
empty project come to, and how a trainer child that fails ends the run. (A whole run through a worker is
exercised in tests/e2e.)"""

from __future__ import annotations

import io
import math
import sys
from pathlib import Path

import pytest
from django.utils import timezone

from reward_models import files, runner
from reward_models.models import DatasetSnapshot, RunStatus, TrainingRun
from reward_models.runner import run_training
from rm_training import progress
from rm_training.config import TrainingConfig
from rm_training.data import read_data
from rm_training.errors import InputError

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


@pytest.fixture
def log_at_the_end(monkeypatch):
    """What the trainer's train.log held when the child ended; the file is deleted before the runner
    concludes, so that the run's error must come from the trainer's events, not from its log."""
    logs: list[str] = []
    conclude = runner._conclude

    def conclude_without_the_log(run_id, returncode, outcome, log_path):
        logs.append(log_path.read_text(encoding="utf-8"))
        log_path.unlink()
        return conclude(run_id, returncode, outcome, log_path)

    monkeypatch.setattr(runner, "_conclude", conclude_without_the_log)
    return logs


def _failed(run: TrainingRun) -> TrainingRun:
    assert run_training(run.pk) == RunStatus.FAILED
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    return run


def test_a_config_error_fails_the_run_with_the_trainers_one_line(make_project, judged, log_at_the_end):
    with pytest.raises(InputError) as refused:
        TrainingConfig.from_dict({"epochs": 0})
    run = _failed(TrainingRun.objects.create(project=judged(make_project()), config={"epochs": 0}))
    assert run.error == str(refused.value)
    assert f"error: {refused.value}" in log_at_the_end[0]  # what the runner used to scrape, gone by then


def test_a_data_error_fails_the_run_with_the_trainers_one_line(make_project, tiny_bert_dir, log_at_the_end):
    project = make_project()
    snapshot_file = files.absolute("snapshots/broken.jsonl")
    snapshot_file.parent.mkdir(parents=True, exist_ok=True)
    snapshot_file.write_text(
        '{"prompt": "p", "chosen": "a", "rejected": "b"}\n{"prompt": \n', encoding="utf-8"
    )
    with pytest.raises(InputError) as refused:
        read_data(str(snapshot_file))
    snapshot = DatasetSnapshot.objects.create(
        project=project, file="snapshots/broken.jsonl", rows=2, pairs=2, size_bytes=0, sha256="0" * 64
    )
    config = {"base_model": str(tiny_bert_dir), "max_length": 48, "device": "cpu"}
    run = _failed(TrainingRun.objects.create(project=project, config=config, snapshot=snapshot))
    assert run.error == str(refused.value) and "line 2" in run.error
    assert log_at_the_end[0].strip().splitlines()[-1] == f"error: {refused.value}"


# The trainer's command line with train() replaced by one that crashes after writing a misleading line.
CRASHING_TRAINER = """
import sys
from pathlib import Path
from rm_training import cli, train

def crash(*args, **kwargs):
    print("error: a line in the log that only looks like the trainer's error", file=sys.stderr)
    raise RuntimeError("the trainer's own fault")

train.train = crash
sys.exit(cli.main(["train", *sys.argv[1:]]))
"""


def test_a_crash_fails_the_run_with_its_exception_and_the_traceback_stays_in_the_log(
    make_project, judged, monkeypatch, log_at_the_end
):
    monkeypatch.setattr(runner, "trainer_command", lambda: [sys.executable, "-c", CRASHING_TRAINER])
    run = _failed(TrainingRun.objects.create(project=judged(make_project()), config={"device": "cpu"}))
    assert run.error == "the trainer exited with status 1: RuntimeError: the trainer's own fault"
    log = log_at_the_end[0]
    assert "Traceback (most recent call last)" in log and "error: a line in the log" in log


def test_a_trainer_killed_without_an_error_event_fails_with_how_it_ended_and_its_last_log_line(
    make_project, judged, monkeypatch
):
    killed = (
        "import os, signal, sys; print('error: loading shards', file=sys.stderr); os.kill(os.getpid(), 9)"
    )
    monkeypatch.setattr(runner, "trainer_command", lambda: [sys.executable, "-c", killed])
    run = _failed(TrainingRun.objects.create(project=judged(make_project()), config={}))
    # A log line that starts with "error: " is not taken for the trainer's error: only its event is.
    assert run.error == (
        "the trainer was killed by SIGKILL (out of memory?); the last line of its log: error: loading shards"
    )


def _ended(run: TrainingRun, status: str) -> TrainingRun:
    assert run_training(run.pk) == status
    run.refresh_from_db()
    assert run.status == status and run.finished_at is not None
    return run


def _model_dir(run: TrainingRun) -> Path:
    return files.absolute(files.run_dir(run.pk)) / "model"


def test_a_cancel_that_kills_the_trainer_before_it_catches_sigterm_ends_cancelled(
    make_project, judged, monkeypatch
):
    """A cancel asked as the run starts: the SIGTERM reaches a trainer still starting, whose default
    handler ends it."""
    run = TrainingRun.objects.create(project=judged(make_project()), config={})

    def command():
        TrainingRun.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now())
        return [sys.executable, "-c", "import time; time.sleep(60)"]

    monkeypatch.setattr(runner, "trainer_command", command)
    assert _ended(run, RunStatus.CANCELLED).error == ""


# A trainer past its last stop check: the SIGTERM changes nothing, and it saves its model and ends well.
FINISHING_TRAINER = """
import signal, sys, time
from pathlib import Path
from rm_training import progress

signal.signal(signal.SIGTERM, signal.SIG_IGN)
progress.emit(sys.stdout, progress.Start(device="cpu"))
time.sleep(0.5)
output = Path(sys.argv[sys.argv.index("--output") + 1])
output.mkdir(parents=True)
(output / "model.safetensors").write_bytes(b"weights")
progress.emit(sys.stdout, progress.Done(metrics={"eval_accuracy": 1.0}))
"""


def test_a_trainer_that_saves_its_model_after_the_cancel_was_sent_ends_cancelled_without_it(
    make_project, judged, monkeypatch
):
    run = TrainingRun.objects.create(project=judged(make_project()), config={})
    monkeypatch.setattr(runner, "trainer_command", lambda: [sys.executable, "-c", FINISHING_TRAINER])
    apply = runner._RowState.apply

    def cancel_at_start(state, event):
        if isinstance(event, progress.Start):
            TrainingRun.objects.filter(pk=run.pk).update(cancel_requested_at=timezone.now())
        apply(state, event)

    monkeypatch.setattr(runner._RowState, "apply", cancel_at_start)
    run = _ended(run, RunStatus.CANCELLED)
    assert run.metrics == {} and not _model_dir(run).exists()  # nothing of it to activate


def test_a_cancel_after_the_trainers_last_event_still_ends_the_run_cancelled(
    make_project, judged, monkeypatch
):
    """The cancel service answers 200 while the run is running, up to the worker's last write."""
    run = TrainingRun.objects.create(project=judged(make_project()), config={})
    monkeypatch.setattr(runner, "trainer_command", lambda: [sys.executable, "-c", FINISHING_TRAINER])
    conclude = runner._conclude

    def cancel_then_conclude(run_id, returncode, outcome, log_path):
        assert returncode == 0 and outcome.metrics and not outcome.cancel_sent
        TrainingRun.objects.filter(pk=run_id).update(cancel_requested_at=timezone.now())
        return conclude(run_id, returncode, outcome, log_path)

    monkeypatch.setattr(runner, "_conclude", cancel_then_conclude)
    run = _ended(run, RunStatus.CANCELLED)
    assert run.metrics == {} and not _model_dir(run).exists()


# A trainer killed in the middle of its save: it leaves the hidden directory it was writing the model into.
KILLED_WHILE_SAVING = """
import os, socket, sys
from pathlib import Path

output = Path(sys.argv[sys.argv.index("--output") + 1])
output.parent.mkdir(parents=True, exist_ok=True)
staging = output.parent / f".{output.name}.partial-{socket.gethostname()}-{os.getpid()}-0badc0de"
staging.mkdir()
(staging / "model.safetensors").write_bytes(b"half")
os.kill(os.getpid(), 9)
"""


def test_what_a_trainer_killed_while_saving_left_is_removed(make_project, judged, monkeypatch):
    run = TrainingRun.objects.create(project=judged(make_project()), config={})
    monkeypatch.setattr(runner, "trainer_command", lambda: [sys.executable, "-c", KILLED_WHILE_SAVING])
    run = _ended(run, RunStatus.FAILED)
    assert run.error.startswith("the trainer was killed by SIGKILL")
    assert not [p.name for p in _model_dir(run).parent.iterdir() if p.name.startswith(".")]
