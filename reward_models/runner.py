"""A training run, in the worker: claim it, snapshot its data, run the trainer in a child process, and write
the child's progress, a heartbeat, and the outcome to the run's row.

The child is ``python -m rm_training train --progress-jsonl`` (under ``torchrun`` for several GPUs): the
same entry point as by hand, its progress as the typed events of rm_training.progress (JSON lines on its
stdout), a failure as their error event, whose one line becomes the run's error. One mechanism then gives
cancel (SIGTERM: the trainer stops at the next step and writes nothing), crash isolation (a segfault or an
out-of-memory kill ends the child, not the worker), GPU memory release (the child's exit), and multi-GPU.
The worker's own loop writes the heartbeat every PAIRWISE_RUN_HEARTBEAT_SECONDS whatever the child does,
so a stale heartbeat means the worker itself is gone (the reaper then fails the run).

A run asked to cancel ends ``cancelled``, however the trainer ended: stopped at a step as asked, killed by
the SIGTERM before it could catch it, or finished before the signal reached it (its model is then
deleted: a cancelled run has none, so nothing of it can be activated), even when the cancel comes after the
trainer's last event (the cancel service answered 200 then, and this worker's last write settles it).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone

from rm_training import progress
from rm_training.output import remove_leftovers

from . import files
from .models import DatasetSnapshot, RunStatus, SnapshotReason, TrainingRun
from .services import snapshot_create, snapshot_human_agreement
from .services.pair_scores import one_line

logger = logging.getLogger("reward_models")

# Step entries kept on the row for the curves: past this many, every other one is dropped and only every
# 2nd (then 4th, ...) step recorded, so a long run's row stays small and its curve evenly sampled.
HISTORY_LIMIT = 1000
# The row is written at most this often while steps stream in (and at every epoch and the end).
WRITE_EVERY_SECONDS = 1.0
# After SIGTERM, how long the trainer may take to reach its next step before it is killed.
STOP_GRACE_SECONDS = 120


def run_training(run_id: int, *, worker: str | None = None) -> str:
    """Train run ``run_id`` if it is queued; returns the status it ended in, or "skipped" when it was not
    queued (a message delivered twice, a run cancelled while queued). ``worker`` is recorded as the run's
    worker_host: the Celery node name (``celery@host``, or the ``-n`` given), which tells apart two workers
    on one machine; the bare host name when there is none."""
    run = _claim(run_id, worker or socket.gethostname())
    if run is None:
        logger.info("run %s is not queued; nothing to do", run_id)
        return "skipped"
    try:
        return _execute(run)
    except NoData as error:
        return _finish(run_id, RunStatus.FAILED, error=str(error))
    except Exception as error:
        logger.exception("run %s failed", run_id)
        return _finish(run_id, RunStatus.FAILED, error=one_line(f"{type(error).__name__}: {error}"))


def _claim(run_id: int, worker: str) -> TrainingRun | None:
    """queued -> running under the row lock: of two deliveries of the same run, one finds it running."""
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.QUEUED:
            return None
        now = timezone.now()
        run.status = RunStatus.RUNNING
        run.started_at = run.heartbeat_at = now
        run.worker_host = worker[:255]
        run.output_dir = f"{files.run_dir(run.pk)}/model"
        run.save(update_fields=["status", "started_at", "heartbeat_at", "worker_host", "output_dir"])
    return run


def _execute(run: TrainingRun) -> str:
    with _beating(run.pk):  # a large project's snapshot can take minutes
        snapshot = run.snapshot or _snapshot(run)
    # The report is JSON-safe already (NaN and infinity as null).
    TrainingRun.objects.filter(pk=run.pk).update(human_agreement=snapshot_human_agreement(snapshot))
    folder = files.absolute(files.run_dir(run.pk))
    folder.mkdir(parents=True, exist_ok=True)
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(run.config, indent=2) + "\n", encoding="utf-8")
    command = [
        *trainer_command(),
        "--data",
        str(files.absolute(snapshot.file)),
        "--output",
        str(files.absolute(run.output_dir)),
        "--config",
        str(config_path),
        "--progress-jsonl",
    ]
    log_path = folder / "train.log"
    with log_path.open("w", encoding="utf-8") as log:
        child = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            errors="replace",
            env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"},
            preexec_fn=_stop_with_parent if sys.platform.startswith("linux") else None,
        )
        try:
            outcome = _supervise(run.pk, child)
        finally:
            if child.poll() is None:
                child.kill()
                child.wait()
            # What a trainer killed in the middle of its save (SIGKILL, out of memory) could not remove.
            remove_leftovers(files.absolute(run.output_dir))
    status = _conclude(run.pk, child.returncode, outcome, log_path)
    if status == RunStatus.CANCELLED:
        shutil.rmtree(files.absolute(run.output_dir), ignore_errors=True)
    return status


def trainer_command() -> list[str]:
    """The trainer's entry point; ``torchrun --nproc-per-node N`` when the worker trains on N GPUs."""
    processes = settings.PAIRWISE_TRAINING_PROCESSES
    if processes > 1:
        return [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                "-m", "rm_training", "train"]  # fmt: skip
    return [sys.executable, "-m", "rm_training", "train"]


def _snapshot(run: TrainingRun) -> DatasetSnapshot:
    # The project's latest snapshot when no judgment was added since (runs started one after another, or
    # failing at once, share one file), else a new one.
    snapshot = snapshot_create(project=run.project, reason=SnapshotReason.RUN, reuse=True)
    assert snapshot is not None  # only_if_new is off: always a snapshot
    TrainingRun.objects.filter(pk=run.pk).update(snapshot=snapshot)
    if snapshot.rows == 0:
        raise NoData(f"project {run.project.slug!r} has no judgments to train on")
    return snapshot


@contextlib.contextmanager
def _beating(run_id: int) -> Iterator[None]:
    """The heartbeat from a thread of its own while this one does something long without the trainer."""
    done = threading.Event()

    def beat() -> None:
        try:
            while not done.wait(settings.PAIRWISE_RUN_HEARTBEAT_SECONDS):
                TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
                    heartbeat_at=timezone.now()
                )
        finally:
            connections.close_all()  # this thread's own connection

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


class NoData(Exception):
    """The project has nothing to train on: the run fails with this one line."""


class _Outcome:
    def __init__(self) -> None:
        self.metrics: dict[str, Any] | None = None
        self.error: str | None = None  # the trainer's own one-line error, from its error event
        self.cancel_sent = False


def _supervise(run_id: int, child: subprocess.Popen[str]) -> _Outcome:
    """Read the child's events until it closes stdout, writing them and the heartbeat to the row, and
    stopping the child when the run is asked to cancel."""
    assert child.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(child.stdout, lines), daemon=True).start()
    outcome = _Outcome()
    state = _RowState(run_id)
    heartbeat = settings.PAIRWISE_RUN_HEARTBEAT_SECONDS
    signalled_at: float | None = None
    finished = False
    while not finished:
        try:
            line = lines.get(timeout=min(heartbeat, WRITE_EVERY_SECONDS))
        except queue.Empty:
            line = ""
        if line is None:
            finished = True
        elif line:
            event = progress.parse(line)
            state.apply(event)
            match event:
                case progress.Done(metrics=metrics):
                    outcome.metrics = metrics
                case progress.Error(message=message):
                    outcome.error = message
        cancel_requested = state.write(force=finished)
        if cancel_requested and signalled_at is None:
            logger.info("run %s: cancel requested, stopping the trainer", run_id)
            child.send_signal(signal.SIGTERM)
            signalled_at = time.monotonic()
            outcome.cancel_sent = True
        elif signalled_at is not None and time.monotonic() - signalled_at > STOP_GRACE_SECONDS:
            child.kill()
    child.wait()
    return outcome


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


class _RowState:
    """What the row will say: progress, the latest step, the curves; written at most once a second (and
    whenever the heartbeat is due), in one UPDATE that also reads back whether a cancel was asked."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.changes: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []
        self.stride = 1
        self.written_at = 0.0
        self.urgent = False

    def apply(self, event: progress.Event | None) -> None:
        # progress.parse gives no NaN or infinity (null instead), which PostgreSQL's jsonb would refuse.
        match event:
            case progress.Start():
                processes = event.processes or 1
                self.changes["device"] = event.device if processes == 1 else f"{event.device} x {processes}"
                self.changes["bf16"] = event.bf16
                self.urgent = True
            case progress.Step():
                step = {
                    "step": event.step,
                    "epoch": event.epoch,
                    "loss": event.loss,
                    "learning_rate": event.learning_rate,
                }
                self.changes["current"] = {**step, "total_steps": event.total_steps}
                self.changes["progress"] = min(1.0, max(0.0, event.fraction))
                if event.step % self.stride == 0:
                    self.history.append(step)
                    if len(self.history) > HISTORY_LIMIT:
                        self.stride *= 2
                        self.history = [h for h in self.history if h["step"] % self.stride == 0]
                self.changes["history"] = self.history
            case progress.Epoch():
                self.epochs.append(event.summary())
                self.changes["epochs"] = self.epochs
                self.urgent = True

    def write(self, *, force: bool = False) -> bool:
        """Write what changed and the heartbeat when due; True when the run was asked to cancel."""
        now = time.monotonic()
        due = now - self.written_at >= min(WRITE_EVERY_SECONDS, settings.PAIRWISE_RUN_HEARTBEAT_SECONDS)
        if not (force or self.urgent or (due and self.changes) or now - self.written_at >= _heartbeat()):
            return False
        # A run no longer running (the reaper failed it while this worker stalled) is not written over.
        running = TrainingRun.objects.filter(pk=self.run_id, status=RunStatus.RUNNING)
        values = {"heartbeat_at": timezone.now(), **self.changes}
        # The usual case, no cancel asked, is one statement; a cancel (or a run no longer running) is found
        # by that statement matching nothing, and the row is then written as before.
        cancel = not running.filter(cancel_requested_at__isnull=True).update(**values)
        if cancel:
            running.update(**values)
        self.changes = {}
        self.urgent = False
        self.written_at = now
        return cancel


def _heartbeat() -> float:
    return float(settings.PAIRWISE_RUN_HEARTBEAT_SECONDS)


def _conclude(run_id: int, returncode: int, outcome: _Outcome, log_path: Path) -> str:
    if outcome.cancel_sent:
        return _finish(run_id, RunStatus.CANCELLED)
    if returncode == 0 and outcome.metrics is not None:
        return _finish(run_id, RunStatus.SUCCEEDED, metrics=outcome.metrics)
    return _finish(run_id, RunStatus.FAILED, error=_failure(returncode, outcome.error, log_path))


def _failure(returncode: int, error: str | None, log_path: Path) -> str:
    """The trainer's error event: its line alone when the trainer refused what it was given, after how it
    ended for a fault of the trainer. Without one (killed by a signal, out of memory, a segfault), how it
    ended and the last line of its log."""
    if error is not None and returncode == progress.INPUT_ERROR_STATUS:
        return one_line(error)
    if returncode < 0:
        how = f"the trainer was killed by {signal.Signals(-returncode).name}"
        if returncode == -signal.SIGKILL:
            how += " (out of memory?)"
    elif returncode == progress.CANCELLED_STATUS:
        how = "the trainer was stopped by a signal from outside the run (the worker shutting down?)"
    else:
        how = f"the trainer exited with status {returncode}"
    if error is not None:
        return one_line(f"{how}: {error}")
    # The log's last line is context, not the cause (often a progress line): it is labelled as such.
    lines = [line.strip() for line in _tail(log_path).splitlines() if line.strip()]
    return one_line(f"{how}; the last line of its log: {lines[-1]}" if lines else how)


def _tail(path: Path, size: int = 16_384) -> str:
    with path.open("rb") as log:
        log.seek(max(0, path.stat().st_size - size))
        return log.read().decode("utf-8", errors="replace")


def _finish(run_id: int, status: str, *, metrics: dict[str, Any] | None = None, error: str = "") -> str:
    """End a running run in ``status``, or ``cancelled`` when it was asked to cancel, however late; returns
    the status it ends in. A run the reaper already failed keeps its reason."""
    now = timezone.now()
    running = TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING)
    changes: dict[str, Any] = {"status": status, "finished_at": now, "error": error}
    if status == RunStatus.SUCCEEDED:
        changes |= {"progress": 1.0, "metrics": metrics or {}}
    # One statement, which waits for the cancel service's row lock: a cancel lands before it (and the run
    # ends cancelled below) or finds the run finished (409), never answered 200 for a run that succeeds.
    if status != RunStatus.CANCELLED and running.filter(cancel_requested_at__isnull=True).update(**changes):
        return status
    if running.update(status=RunStatus.CANCELLED, finished_at=now, error=""):
        return RunStatus.CANCELLED
    return TrainingRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or status


def _stop_with_parent() -> None:
    """In the child, before exec: SIGTERM when the worker dies (even by SIGKILL), so the trainer stops at
    its next step instead of training on for nobody, holding the GPU."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
