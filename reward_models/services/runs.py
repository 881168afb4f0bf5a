"""Training runs: create (queued, sent to the training queue on commit), resend, cancel, activate, reap.

Only reward_models.runner moves a run from queued to running and on to its end; these are the writes the
API, the admin, the command and beat make. The row is the record of a run and the broker only its
messenger: a queued run whose message the broker lost (or never took) is sent again by runs_resend.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone
from kombu.exceptions import OperationalError

from annotation.models import Choice, Judgment, Project
from rm_training.config import ConfigError, TrainingConfig
from rm_training.jsonl import text_problems
from web.errors import Conflict, Invalid
from web.statelog import StateLog

from ..models import ActiveModel, DatasetSnapshot, RunStatus, TrainingRun
from .priorities import priorities_refresh

# Set by the system, not by whoever starts a run: where it runs is the worker's business, and a bar on
# a worker's stderr is noise in its log.
SYSTEM_FIELDS = frozenset({"device", "progress_bar"})
# A run identical to one of the same project queued this recently is refused as a double submission
# (a form posted twice, a retried request).
DUPLICATE_WINDOW = timedelta(seconds=10)
# A run whose message is gone this many times is failed rather than sent again. Counted in sends, not in
# time queued: a run may rightly wait hours behind others, or for a worker to start, but then its message
# waits on the queue and it is never sent again. Five losses mean a broker that keeps losing messages or
# a worker that drops the task unread, which a sixth send will not change.
MAX_SENDS = 5

logger = logging.getLogger("reward_models")
# An outage of the broker is logged once (a warning), and its end once, rather than once per run.
_broker = StateLog(logger)


def training_config_build(values: Mapping[str, Any]) -> TrainingConfig:
    """A TrainingConfig from user-given fields, or Invalid naming each field at fault."""
    fixed = SYSTEM_FIELDS & set(values)
    if fixed:
        raise Invalid(
            "These fields are set by the worker, not per run.",
            errors=[{"field": name, "message": "is set by the worker"} for name in sorted(fixed)],
        )
    try:
        return TrainingConfig.from_dict(dict(values))
    except ConfigError as refused:
        errors = [{"field": name, "message": message} for name, message in refused.errors]
        raise Invalid("Invalid training settings.", errors=errors) from None


def user_settings() -> list[dict[str, Any]]:
    """TrainingConfig.describe() of the fields a user may set per run (all but SYSTEM_FIELDS)."""
    return [spec for spec in TrainingConfig.describe() if spec["name"] not in SYSTEM_FIELDS]


def training_run_create(
    *,
    project: Project,
    config: TrainingConfig | Mapping[str, Any],
    created_by: Any = None,
    snapshot: DatasetSnapshot | None = None,
) -> TrainingRun:
    """A queued run; its task goes to the `training` queue once the row is committed. A broker that cannot
    take it then does not undo the run: it stays queued, unsent, and runs_resend sends it once the broker is
    back.

    Without ``snapshot`` the worker snapshots every judgment of the project when the run starts.
    Refused (409) here rather than on the worker: a project with no pair the trainer could use
    (``no_usable_pairs``), and a run identical to one of the project queued in the last DUPLICATE_WINDOW
    (``duplicate_run``; the project row is locked, so two concurrent submissions serialise and the second
    sees the first). The base model and max_length are checked by the worker, which may be another machine
    with other models: their errors come back as the run's one-line error.
    """
    if not isinstance(config, TrainingConfig):
        config = training_config_build(config)
    if snapshot is not None and snapshot.project_id != project.pk:
        raise Invalid("The snapshot belongs to another project.", errors=[{"field": "snapshot"}])
    if snapshot is None:
        _check_usable_pairs(project, config)
    elif snapshot.rows == 0:
        raise Conflict(f"Snapshot {snapshot.pk} has no judgments to train on.", code="no_usable_pairs")
    values = config.to_dict() | {"progress_bar": False}
    with transaction.atomic():
        Project.objects.select_for_update(no_key=True).filter(pk=project.pk).first()
        duplicate = (
            TrainingRun.objects.filter(
                project=project,
                status=RunStatus.QUEUED,
                snapshot=snapshot,
                config=values,
                created_at__gte=timezone.now() - DUPLICATE_WINDOW,
            )
            .order_by("-id")
            .first()
        )
        if duplicate is not None:
            raise Conflict(
                f"Run {duplicate.pk} with the same settings was queued for {project.slug!r} "
                f"{int((timezone.now() - duplicate.created_at).total_seconds())} s ago; "
                "not queuing it twice.",
                code="duplicate_run",
                run=duplicate.pk,
            )
        run = TrainingRun.objects.create(
            project=project,
            snapshot=snapshot,
            config=values,
            created_by=created_by if getattr(created_by, "pk", None) else None,
        )
        transaction.on_commit(partial(_send, run.pk))
    return run


def _send(run_id: int) -> bool:
    """Put the run's message on the training queue and record when, and how many times; False (logged
    once while the broker stays unreachable) when the broker does not take it."""
    from .. import tasks  # the tasks module imports the services

    try:
        tasks.training_run_execute.apply_async((run_id,))
    except OperationalError as error:
        _broker.down(
            "the broker is unreachable (%s): queued runs stay queued and are sent when it is back", error
        )
        return False
    _broker.up("the broker is reachable again")
    TrainingRun.objects.filter(pk=run_id).update(sent_at=timezone.now(), send_count=F("send_count") + 1)
    return True


def training_messages_waiting() -> int | None:
    """Messages waiting on the training queue (not those a worker has taken), or None when the broker
    cannot be reached."""
    from .. import tasks

    app = tasks.training_run_execute.app
    queue = app.amqp.router.route({}, tasks.training_run_execute.name)["queue"].name
    with app.connection_for_write() as connection:
        try:
            connection.ensure_connection(max_retries=0)  # beat's next round tries again
            waiting = connection.default_channel.queue_declare(queue=queue).message_count
        except (OperationalError, *connection.connection_errors) as error:
            _broker.down(
                "the broker is unreachable (%s): queued runs stay queued and are sent when it is back", error
            )
            return None
    _broker.up("the broker is reachable again")
    return int(waiting)


def runs_lost(*, resend_after: timedelta | None = None) -> list[TrainingRun]:
    """The queued runs whose message is gone: last sent (or, never sent, created) more than
    ``resend_after`` ago, when the training queue holds fewer messages than there are queued runs.

    Messages carry no run a broker can be asked about, so the count decides: while every queued run may
    still have its message waiting (runs queued behind a long one, no worker started), none is lost and
    nothing is sent twice. Once some message is missing every due run is sent again; the ones whose
    message was there get a second delivery, which the runner's claim makes harmless. None is lost while
    the broker is unreachable: nothing could be sent.
    """
    if resend_after is None:
        resend_after = timedelta(seconds=settings.PAIRWISE_RUN_RESEND_AFTER_SECONDS)
    queued = TrainingRun.objects.filter(status=RunStatus.QUEUED)
    count = queued.count()
    if count == 0:
        return []
    waiting = training_messages_waiting()
    if waiting is None or waiting >= count:
        return []
    deadline = timezone.now() - resend_after
    return list(
        queued.alias(last_sent=Coalesce("sent_at", "created_at"))
        .filter(last_sent__lt=deadline)
        .order_by("pk")
    )


def runs_resend(*, resend_after: timedelta | None = None) -> int:
    """Send the lost queued runs (runs_lost) again; returns how many went. One sent MAX_SENDS times
    already is failed instead, with the reason in one line."""
    sent = 0
    for run in runs_lost(resend_after=resend_after):
        if run.send_count < MAX_SENDS:
            sent += _send(run.pk)
            continue
        last = f" (the last at {run.sent_at:%Y-%m-%d %H:%M:%S} UTC)" if run.sent_at else ""
        error = (
            f"no worker took the run: sent to the training queue {run.send_count} times{last}, its message "
            "gone each time (a broker that loses messages, or workers that drop the task: see their logs)"
        )
        # Only if no worker claimed it, and no other resend failed it, meanwhile.
        TrainingRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
            status=RunStatus.FAILED, finished_at=timezone.now(), error=error
        )
        logger.warning("run %s failed: %s", run.pk, error)
    return sent


def _check_usable_pairs(project: Project, config: TrainingConfig) -> None:
    """Conflict ``no_usable_pairs`` unless some judged pair would make a training example under the
    config's vote rule (rm_training.votes): with ties="drop" a pair whose a or b votes are a strict
    majority, with ties="half" any judged pair; in both its two responses must differ."""
    judged = Judgment.objects.filter(project=project, pair__left_out=False)
    if not judged.exists():
        raise Conflict(f"Project {project.slug!r} has no judgments to train on.", code="no_usable_pairs")
    pairs = (
        judged.exclude(pair__response_a=F("pair__response_b"))
        .values("pair_id")
        .annotate(
            a=Count("pk", filter=Q(choice=Choice.A)),
            b=Count("pk", filter=Q(choice=Choice.B)),
            tie=Count("pk", filter=Q(choice=Choice.TIE)),
        )
    )
    if config.ties == "drop":
        pairs = pairs.filter((Q(a__gt=F("b")) & Q(a__gt=F("tie"))) | (Q(b__gt=F("a")) & Q(b__gt=F("tie"))))
    if not pairs.exists():
        rule = "a strict majority for one side" if config.ties == "drop" else "responses that differ"
        raise Conflict(
            f"Project {project.slug!r} has no usable pairs to train on: none of its judged pairs has {rule} "
            f'(ties="{config.ties}").',
            code="no_usable_pairs",
        )


def training_run_cancel(*, run: TrainingRun) -> TrainingRun:
    """A queued run is cancelled at once; a running one is asked to stop, and its worker stops the trainer
    and marks it cancelled within seconds. A finished run: 409."""
    with transaction.atomic():
        locked = TrainingRun.objects.select_for_update().get(pk=run.pk)
        now = timezone.now()
        if locked.status == RunStatus.QUEUED:
            locked.status = RunStatus.CANCELLED
            locked.finished_at = now
            locked.cancel_requested_at = now
            locked.save(update_fields=["status", "finished_at", "cancel_requested_at"])
        elif locked.status == RunStatus.RUNNING:
            if locked.cancel_requested_at is None:
                locked.cancel_requested_at = now
                locked.save(update_fields=["cancel_requested_at"])
        else:
            raise Conflict(f"Run {run.pk} already {locked.status}.", code="run_finished")
    return locked


# Longest reason an admin may give for activating a run without a held-out evaluation.
FORCE_REASON_MAX = 1000


def held_out_missing(run: TrainingRun) -> str | None:
    """Why the run's accuracy is unknown (no held-out pairs, or a held-out accuracy of n/a), or None."""
    metrics = run.metrics if isinstance(run.metrics, dict) else {}
    counts = metrics.get("counts") if isinstance(metrics.get("counts"), dict) else {}
    eval_pairs = counts.get("eval_pairs") if isinstance(counts, dict) else None
    if not isinstance(eval_pairs, int) or eval_pairs <= 0:
        return "held out no pairs"
    if not isinstance(metrics.get("eval_accuracy"), int | float):
        return "has no held-out accuracy"
    return None


def training_run_activate(
    *, run: TrainingRun, activated_by: Any = None, force_reason: str = ""
) -> ActiveModel:
    """Make a succeeded run's model the project's scoring model, after checking its saved directory: it
    must load and give the scores the run recorded for a few held-out pairs at the end of training.

    A run without a held-out evaluation is refused (409 no_evaluation): nobody knows whether its model is
    any good. ``force_reason`` activates it anyway; the reason is kept on the activation and shown."""
    from .. import scoring  # imports torch when it loads the model, never at start-up

    if run.status != RunStatus.SUCCEEDED:
        raise Conflict(
            f"Run {run.pk} is {run.status}; only a succeeded run can be activated.", code="not_ready"
        )
    reason = force_reason.strip()
    if len(reason) > FORCE_REASON_MAX:
        raise Invalid(
            f"The reason is {len(reason)} characters long; at most {FORCE_REASON_MAX}.",
            errors=[{"field": "force_reason", "message": f"At most {FORCE_REASON_MAX} characters."}],
        )
    # A NUL (the admin form posts any character) would reach the text column as a server error.
    for _, problem in text_problems(reason):
        raise Invalid(
            f"The reason cannot be stored: {problem}.", errors=[{"field": "force_reason", "message": problem}]
        )
    missing = held_out_missing(run)
    if missing is not None and not reason:
        raise Conflict(
            f"Run {run.pk} {missing}, so its accuracy is unknown; it is not activated. Train with held-out "
            "pairs, or activate it anyway with a stated reason (force_reason).",
            code="no_evaluation",
        )
    scoring.check_saved_model(run)
    with transaction.atomic():
        by = activated_by if getattr(activated_by, "pk", None) else None
        forced = reason if missing is not None else ""
        active, _ = ActiveModel.objects.update_or_create(
            project_id=run.project_id, defaults={"run": run, "activated_by": by, "forced_reason": forced}
        )
        # Under uncertainty selection the new model's priorities are computed at once (a round sent on
        # commit), not at beat's next pass.
        priorities_refresh(project=run.project)
    return active


def runs_reap(*, lost_after: timedelta | None = None) -> int:
    """Fail the running runs whose heartbeat stopped ("worker lost"); returns how many.

    The worker writes the heartbeat every PAIRWISE_RUN_HEARTBEAT_SECONDS whatever the trainer does, so a
    stale one means the worker process is gone (killed, its machine lost), not a slow step. A run that was
    asked to cancel ends cancelled, as the answer to the cancel promised (the reason stays in its error).
    """
    lost_after = lost_after or timedelta(seconds=settings.PAIRWISE_RUN_LOST_AFTER_SECONDS)
    now = timezone.now()
    deadline = now - lost_after
    reaped = 0
    with transaction.atomic():
        stale = TrainingRun.objects.select_for_update(skip_locked=True).filter(
            status=RunStatus.RUNNING, heartbeat_at__lt=deadline
        )
        for run in stale:
            run.status = RunStatus.FAILED if run.cancel_requested_at is None else RunStatus.CANCELLED
            run.finished_at = now
            silent = int((now - run.heartbeat_at).total_seconds()) if run.heartbeat_at else 0
            run.error = (
                f"worker lost: no heartbeat from {run.worker_host or 'the worker'} "
                f"for {silent} s (limit {int(lost_after.total_seconds())} s)"
            )
            run.save(update_fields=["status", "finished_at", "error"])
            reaped += 1
    return reaped
