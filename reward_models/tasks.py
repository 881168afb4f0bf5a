"""Celery adapters of the reward_models app: take ids, re-read rows, call a service or the runner.

Training goes to the `training` queue (settings.CELERY_TASK_ROUTES), one run at a time per worker (solo
pool, prefetch 1); everything else runs on the default queue.
"""

from __future__ import annotations

from celery import Task, shared_task

from . import services


# Late acknowledgement is safe here, and wanted: the runner moves the run from queued to running under a
# row lock, so a message delivered again (Redis's visibility timeout, a worker lost before it started the
# run) finds it running or finished and does nothing; one lost before the run started is run then.
@shared_task(name="reward_models.tasks.training_run_execute", acks_late=True, bind=True)
def training_run_execute(self: Task, run_id: int) -> str:
    from .runner import run_training

    # The node name (celery@host, or what -n gave): two workers on one machine are told apart.
    return run_training(run_id, worker=self.request.hostname)


# Late acknowledgement: a second pass writes a snapshot only if there is something new.
@shared_task(name="reward_models.tasks.snapshots_export", acks_late=True)
def snapshots_export() -> int:
    return len(services.snapshots_export_all())


@shared_task(name="reward_models.tasks.auto_train", acks_late=True)
def auto_train() -> int:
    return len(services.auto_train_check())


# Late acknowledgement: reaping twice fails nothing more.
@shared_task(name="reward_models.tasks.runs_reap", acks_late=True)
def runs_reap() -> int:
    return services.runs_reap()


# Late acknowledgement: a run sent twice is claimed once (training_run_execute above).
@shared_task(name="reward_models.tasks.runs_resend", acks_late=True)
def runs_resend() -> int:
    return services.runs_resend()


# On the training queue, where the workers hold the models and the GPU. Acknowledged on receipt: the
# scoring row is claimed under a lock, and a lost one is replaced from the review page ("Score now").
@shared_task(name="reward_models.tasks.pair_scoring_execute")
def pair_scoring_execute(job_id: int) -> str:
    return services.pair_scoring_execute(job_id)


# Beat's round (default queue): starts a priority round where a project under uncertainty selection has
# open pairs without a priority, clears the priorities where there is no active model. Late
# acknowledgement: a second pass finds the rounds in flight and starts nothing.
@shared_task(name="reward_models.tasks.priorities_refresh", acks_late=True)
def priorities_refresh() -> int:
    return len(services.priorities_refresh_all())


# On the training queue, where the workers hold the models. Acknowledged on receipt, as pair scorings: the
# round is claimed under a lock (a second delivery finds it running or finished and does nothing), and a
# lost one is replaced by the next refresh once stale.
@shared_task(name="reward_models.tasks.priority_round_execute")
def priority_round_execute(round_id: int) -> str:
    return services.priority_round_execute(round_id)
