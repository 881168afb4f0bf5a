"""Dataset snapshots, training runs and the active model of each project.

A run's row is its whole story: the typed config it ran with (rm_training.TrainingConfig as JSON), the
snapshot it trained on, its progress and per-step history while it runs, its metrics, error and timings
after, and where (host, device) it ran. Files (snapshots, models) live under settings.PAIRWISE_RUNS_DIR,
never under a served folder; the rows hold paths relative to it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Pair, Project


class SnapshotReason(models.TextChoices):
    PERIODIC = "periodic", "Periodic export"
    RUN = "run", "For a training run"
    MANUAL = "manual", "By hand"


class DatasetSnapshot(models.Model):
    """The judgments of a project, as judgments.jsonl of the export API for the same filters, frozen in a
    file, so a run names exactly what it trained on (and its sha256 proves it)."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="snapshots")
    # The export filters (annotation.selectors.ExportFilter); all empty: every judgment.
    since = models.DateTimeField(null=True, blank=True)
    until = models.DateTimeField(null=True, blank=True)
    min_votes = models.PositiveIntegerField(null=True, blank=True)
    reason = models.CharField(max_length=10, choices=SnapshotReason.choices, default=SnapshotReason.MANUAL)
    file = models.CharField(max_length=500, help_text="Path relative to PAIRWISE_RUNS_DIR.")
    rows = models.PositiveIntegerField(help_text="Judgments in the file.")
    pairs = models.PositiveIntegerField(help_text="Distinct pairs among them.")
    size_bytes = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64, help_text="sha256 of the file's bytes.")
    # The newest judgment in the file: the periodic export writes a new snapshot only when a judgment of
    # the project is newer (by id) than this, so nothing new means no new file.
    last_judgment_id = models.BigIntegerField(null=True, blank=True)
    # The project's data version when the file was written (annotation.selectors.project_data_version):
    # a correction, a pair left out or put back change the file without a new judgment, and every such
    # write bumps the version, so a snapshot of an older version is stale. Null: written before it was kept.
    data_version = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="snapshot_project_created")]

    def __str__(self) -> str:
        return f"{self.project.slug} snapshot {self.pk} ({self.rows} judgments)"


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


FINISHED_STATUSES = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


class TrainingRun(models.Model):
    """One training of a reward model on a snapshot. queued -> running -> succeeded | failed | cancelled;
    a queued run may also be cancelled directly. Only reward_models.runner moves a run out of queued."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    # Written by the worker when the run starts (unless the run was created with one).
    snapshot = models.ForeignKey(
        DatasetSnapshot, null=True, blank=True, on_delete=models.PROTECT, related_name="runs"
    )
    config = models.JSONField(help_text="rm_training.TrainingConfig.to_dict() of the run.")
    status = models.CharField(max_length=10, choices=RunStatus.choices, default=RunStatus.QUEUED)
    progress = models.FloatField(default=0.0, help_text="0 to 1.")
    # {"step", "total_steps", "epoch", "loss", "learning_rate"} of the latest step while running.
    current = models.JSONField(default=dict, blank=True)
    # The final metrics (rm_training.metrics.TrainingMetrics.to_dict()) once succeeded.
    metrics = models.JSONField(default=dict, blank=True)
    # Curves: one {"step", "epoch", "loss", "learning_rate"} per optimizer step (thinned past
    # reward_models.runner.HISTORY_LIMIT entries) and one {"epoch", "train_loss", "eval_loss",
    # "eval_accuracy", ...} per epoch.
    history = models.JSONField(default=list, blank=True)
    epochs = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    # The project's rater agreement on the snapshot (annotation.selectors.agreement's report as a dict);
    # null until that is computed.
    human_agreement = models.JSONField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # The worker writes it every few seconds while the run is running; the reaper fails runs whose
    # heartbeat stopped (the worker was lost).
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # Written when the run's message goes to the training queue (services.runs_resend sends again one the
    # broker lost).
    sent_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its message last went to the training queue; null while the broker could not "
        "take it.",
    )
    send_count = models.PositiveIntegerField(
        default=0,
        help_text="How many times its message went to the training queue: more than once when the broker "
        "lost it and it was sent again.",
    )
    output_dir = models.CharField(max_length=500, blank=True, help_text="Relative to PAIRWISE_RUNS_DIR.")
    worker_host = models.CharField(max_length=255, blank=True)
    device = models.CharField(max_length=100, blank=True, help_text='"cpu", "cuda", "cuda x 4", ...')
    bf16 = models.BooleanField(null=True, blank=True, help_text="Whether training ran in bf16 autocast.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["project", "-created_at"], name="run_project_created"),
            models.Index(fields=["status", "heartbeat_at"], name="run_status_heartbeat"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=RunStatus.values), name="run_status_valid"),
            models.CheckConstraint(condition=Q(progress__gte=0, progress__lte=1), name="run_progress_range"),
            # A finished run has its end time: the run list sorts and filters on it.
            models.CheckConstraint(
                condition=~Q(status__in=FINISHED_STATUSES) | Q(finished_at__isnull=False),
                name="run_finished_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} run {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_STATUSES


class ActiveModel(models.Model):
    """The run whose model scores for a project (POST /api/v1/score/). One per project, by the key."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="active_model")
    # PROTECT: the run's directory is in use; deactivate (or activate another) before deleting the run.
    run = models.ForeignKey(TrainingRun, on_delete=models.PROTECT, related_name="activations")
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    activated_at = models.DateTimeField(auto_now=True)
    # Why a run without a held-out evaluation was activated anyway (training_run_activate); empty otherwise.
    forced_reason = models.TextField(blank=True, default="")

    def __str__(self) -> str:
        return f"{self.project.slug}: run {self.run_id}"


class AutoTrainPolicy(models.Model):
    """When to start a run by itself for a project: after N new judgments, or every so many hours when
    there are new ones. Off by default; checked by the beat task reward_models.tasks.auto_train."""

    project = models.OneToOneField(Project, on_delete=models.CASCADE, related_name="auto_train_policy")
    enabled = models.BooleanField(default=False)
    after_new_judgments = models.PositiveIntegerField(
        null=True, blank=True, help_text="Start a run once this many judgments arrived since the last run."
    )
    every_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Start a run when this many hours passed since the last one and there are new judgments.",
    )
    config = models.JSONField(
        default=dict, blank=True, help_text="TrainingConfig fields of the runs it starts (others default)."
    )
    last_started_at = models.DateTimeField(null=True, blank=True)
    # The newest judgment (by id) when it last started a run: judgments past it are new.
    last_judgment_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "auto-train policies"
        constraints = [
            models.CheckConstraint(
                condition=Q(after_new_judgments__isnull=True) | Q(after_new_judgments__gte=1),
                name="autotrain_after_positive",
                violation_error_message="New judgments must be 1 or more (leave it empty: no such trigger).",
            ),
            models.CheckConstraint(
                condition=Q(every_hours__isnull=True) | Q(every_hours__gte=1),
                name="autotrain_every_positive",
                violation_error_message="Hours must be 1 or more (leave it empty for no such trigger).",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} auto-train ({'on' if self.enabled else 'off'})"


class PairScore(models.Model):
    """A model's score of a pair: what a run's reward model says of response A against response B. Written
    by reward_models.services.pair_scores (once per pair and run: a pair's texts never change), read by the
    review queue and by active selection."""

    pair = models.ForeignKey(Pair, on_delete=models.CASCADE, related_name="model_scores")
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="pair_scores")
    # reward(prompt, response_a) - reward(prompt, response_b), the model's raw logits.
    reward_difference = models.FloatField()
    # sigmoid(reward_difference): the Bradley-Terry probability that A is preferred.
    probability_a = models.FloatField()
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "pair"], name="pair_score_unique"),
            models.CheckConstraint(
                condition=Q(probability_a__gte=0, probability_a__lte=1), name="pair_score_probability_range"
            ),
        ]

    def __str__(self) -> str:
        return f"pair {self.pair_id} by run {self.run_id}: {self.probability_a:.3f}"


class ScoringStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class PairScoring(models.Model):
    """One scoring of a project's judged pairs by a run's model (the review queue's "Score now"): its
    progress while the worker scores, and how it ended. The task takes its id; a message delivered twice
    finds it no longer queued."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pair_scorings")
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="pair_scorings")
    status = models.CharField(max_length=10, choices=ScoringStatus.choices, default=ScoringStatus.QUEUED)
    # Pairs to score (those without a score by the run when it started) and scored so far.
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written with each batch: a queued or running scoring not updated for long is lost (a new one may
    # start).
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="pair_scoring_project")]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ScoringStatus.values), name="pair_scoring_status"),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} scoring {self.pk} ({self.status})"


class PriorityStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # The project's active model or its selection changed before the round wrote: it wrote nothing.
    SUPERSEDED = "superseded", "Superseded"


class PriorityRound(models.Model):
    """One round of the priorities of a project under uncertainty selection (reward_models.services.
    priorities): its active run's model scores the open regular pairs that carry no priority yet (all of
    them when the pairs carry another run's), and their priorities are written. The task takes its id; a
    message delivered twice finds it no longer queued. The latest succeeded round names the run whose
    priorities the pairs carry, while the project's priorities_at is set."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="priority_rounds")
    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="priority_rounds")
    status = models.CharField(max_length=10, choices=PriorityStatus.choices, default=PriorityStatus.QUEUED)
    # Whether it replaced the pairs' priorities (they came from another run, or none were written), or
    # added those of the pairs that had none.
    replaced = models.BooleanField(default=False)
    # Pairs to score (those without a score by the run) and scored so far; priorities written at the end.
    total = models.PositiveIntegerField(default=0)
    done = models.PositiveIntegerField(default=0)
    written = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    # Written with each batch: a queued or running round not updated for long is lost (the next starts).
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="priority_round_project")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=PriorityStatus.values), name="priority_round_status"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.project.slug} priorities by run {self.run_id} ({self.status})"
