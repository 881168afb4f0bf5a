"""The training-run pages of the admin: the run page (progress, curves, figures, model card), its progress
as JSON for the page's poller, cancel and activate, the "Train reward model" form, the snapshot
download, and a project's review queue (with "Score now" and the reviewer's actions). reward_models.admin
routes here through the admin site (staff only) after checking the model permission each needs; writes
call reward_models.services (and annotation.services for the review actions).

Every text shown here (model names, errors, the model card, settings) may hold model output or markup: the
templates escape it, and the charts get it as plain text (annotation.charts). A run's metrics
come from a JSON column: any figure may be missing or of the wrong type, and shows as "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone

from annotation import services as annotation_services
from annotation.charts import as_img, bar_chart, line_chart
from annotation.models import MAX_EXTRA_JUDGMENTS, MAX_REVIEW_REASON, Project, ReviewAction
from web.errors import ServiceError

from . import files, selectors, services
from .admin_forms import TrainRunForm
from .models import DatasetSnapshot, RunStatus, ScoringStatus, TrainingRun
from .services.pair_scores import STALE_AFTER

MODEL_CARD_FILENAME = "README.md"  # written by rm_training.model_card into the model's directory
MODEL_CARD_MAX_BYTES = 256 * 1024
POLL_MILLISECONDS = 1000


def number(value: Any) -> float | None:
    """A finite real number from a JSON figure, else None (missing, null, text, NaN, a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def share(value: Any) -> float | None:
    """An accuracy or agreement figure: a number in [0, 1], else None (a figure out of range is not one)."""
    value = number(value)
    return value if value is not None and 0.0 <= value <= 1.0 else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def progress_state(run: TrainingRun) -> dict[str, Any]:
    """What the run page's poller reads: where the run is, in a few fields, and ``live``: every text of the
    page that changes while the run runs, by name, as the page shows it. The template draws each from the
    same dict (an element with ``data-live="name"``), and the script puts each new text into the elements
    of its name, so a new figure is one entry here and one element there, nothing in the script."""
    current = _dict(run.current)
    late = lateness(run)
    progress = number(run.progress) or 0.0
    return {
        "id": run.pk,
        "status": run.status,
        "status_label": RunStatus(run.status).label if run.status in RunStatus.values else run.status,
        "progress": progress,
        "step": number(current.get("step")),
        "total_steps": number(current.get("total_steps")),
        "epoch": number(current.get("epoch")),
        "loss": number(current.get("loss")),
        "cancel_requested": run.cancel_requested_at is not None,
        "finished": run.is_finished,
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
        "heartbeat_silence": late[0] if late else None,
        "lost_at": late[1].isoformat() if late else None,
        "live": {
            "progress_text": f"{round(min(1.0, max(0.0, progress)) * 100)}%",
            "step": step_text(current),
            "late_note": late_note(run, *late) if late else "",
            "sent": sent_text(run),
            "started": _utc(run.started_at) if run.started_at else "not yet",
            "finished": _utc(run.finished_at) if run.finished_at else "not yet",
            "duration": duration_text(run),
            "heartbeat": _utc(run.heartbeat_at) if run.heartbeat_at else "none",
            "worker": worker_text(run),
        },
    }


def step_text(current: dict[str, Any]) -> str:
    step = number(current.get("step"))
    if step is None:
        return ""
    text = f"step {step:.0f}"
    total, epoch, loss = (number(current.get(key)) for key in ("total_steps", "epoch", "loss"))
    if total:
        text += f" of {total:.0f}"
    if epoch is not None:
        text += f", epoch {epoch:.0f}"
    if loss is not None:
        text += f", loss {loss:.4f}"
    return text


def duration_text(run: TrainingRun) -> str:
    """Seconds since the run started: to its end once finished, to now while it runs."""
    if run.started_at is None:
        return "n/a"
    end = run.finished_at or (timezone.now() if not run.is_finished else run.heartbeat_at)
    return f"{(end - run.started_at).total_seconds():.0f} s" if end else "n/a"


def worker_text(run: TrainingRun) -> str:
    text = f"{run.worker_host or 'n/a'} · device {run.device or 'n/a'}"
    return text if run.bf16 is None else f"{text} · bf16 {'on' if run.bf16 else 'off'}"


def _utc(moment: datetime, form: str = "%Y-%m-%d %H:%M:%S") -> str:
    return f"{moment.astimezone(UTC):{form}} UTC"


def late_note(run: TrainingRun, silence: int, lost_at: datetime) -> str:
    """What the page says of a run whose heartbeat is late. The reaper fails the run at its first round
    (beat, every minute) after lost_at, hence "within a minute after"."""
    worker = run.worker_host or "the worker"
    when = _utc(lost_at, "%H:%M:%S")
    if timezone.now() < lost_at:
        then = f"the run will be marked failed within a minute after {when} if none comes"
    else:
        limit = settings.PAIRWISE_RUN_LOST_AFTER_SECONDS
        then = f"its {limit} s limit passed at {when}: the reaper's next round marks the run failed"
    return f"No heartbeat from {worker} for {silence} s: the worker may be lost; {then}."


def sent_text(run: TrainingRun) -> str:
    """The run page's "Sent to the workers" row: when the run's message last went to the training queue."""
    if run.sent_at is None:
        if run.is_finished:
            return "never"
        return "not yet: the broker could not take it; it is sent once the broker is back"
    if run.send_count > 1:
        return f"sent again {_utc(run.sent_at)}: its message was lost ({run.send_count} sends in all)"
    return _utc(run.sent_at)


def figures(run: TrainingRun) -> dict[str, float | None]:
    """The accuracy figures of the page, each None when the run did not record it."""
    metrics = _dict(run.metrics)
    agreement = _dict(run.human_agreement)
    return {
        "eval_accuracy": share(metrics.get("eval_accuracy")),
        "length_baseline_accuracy": share(metrics.get("length_baseline_accuracy")),
        "human_agreement": share(agreement.get("percent_agreement")),
        "ceiling_accuracy": share(agreement.get("ceiling_accuracy")),
        "rater_agreement_eval": share(metrics.get("rater_agreement")),
        "accuracy_unanimous": share(metrics.get("accuracy_unanimous")),
        "accuracy_split": share(metrics.get("accuracy_split")),
        "judgment_accuracy": share(metrics.get("judgment_accuracy")),
        "ece": number(metrics.get("ece")),
        "eval_loss": number(metrics.get("eval_loss")),
        "train_loss": number(metrics.get("train_loss")),
    }


FIGURE_LABELS = (
    ("eval_accuracy", "Reward model, held-out accuracy", "Equal scores count half."),
    (
        "human_agreement",
        "Raters agree (the project's snapshot)",
        "Share of judgment pairs on a pair that agree.",
    ),
    ("ceiling_accuracy", "Ceiling (estimate)", "The best accuracy the raters' agreement allows."),
    ("rater_agreement_eval", "Raters agree (held-out pairs)", "On the same held-out pairs as the model."),
    (
        "length_baseline_accuracy",
        "Always prefer the longer response",
        "On the same held-out pairs: a model no better than this has learned length.",
    ),
    ("accuracy_unanimous", "Accuracy on unanimous pairs", "Held-out pairs whose raters all agreed."),
    ("accuracy_split", "Accuracy on split pairs", "Held-out pairs whose raters disagreed."),
    ("judgment_accuracy", "Accuracy against each judgment", "Every held-out judgment counted once."),
    ("ece", "Expected calibration error", "Lower is better; 0 is perfectly calibrated."),
    ("eval_loss", "Held-out loss", ""),
    ("train_loss", "Training loss (last epoch)", ""),
)
LOSSES = ("ece", "eval_loss", "train_loss")


def training_facts(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """The run page's rows on how a finished run trained: its optimizer steps (a small data set's batch
    is halved for them: rm_training's min_steps) and its speed (rm_training.throughput)."""
    steps, batch = number(metrics.get("steps")), number(metrics.get("batch_size"))
    if steps is None:
        return []
    tokens, mfu, memory = (
        number(metrics.get(key)) for key in ("train_tokens_per_second", "mfu", "peak_memory_bytes")
    )
    return [
        ("Optimizer steps", f"{steps:.0f}" + (f" of {batch:.0f} pairs each" if batch is not None else "")),
        ("Tokens per second", "n/a" if tokens is None else f"{tokens:,.0f}"),
        (
            "Model FLOPs utilisation",
            "n/a (not measured on this device)" if mfu is None else f"{100 * mfu:.1f}%",
        ),
        ("Peak GPU memory", "n/a" if memory is None else f"{memory / 2**30:.1f} GiB"),
    ]


def figure_rows(shown: dict[str, float | None]) -> list[tuple[str, str, str]]:
    """(label, value as text, what it means) of each figure; accuracies as percentages, "n/a" when missing."""
    rows = []
    for key, label, meaning in FIGURE_LABELS:
        value = shown[key]
        if value is None:
            text = "n/a"
        elif key in LOSSES:
            text = f"{value:.4f}"
        else:
            text = f"{100 * value:.1f}%"
        rows.append((label, text, meaning))
    return rows


def _points(rows: Iterable[dict[str, Any]], x: str, y: str) -> list[tuple[float, float]]:
    pairs = ((number(row.get(x)), number(row.get(y))) for row in rows)
    return [(a, b) for a, b in pairs if a is not None and b is not None]


def charts(run: TrainingRun, shown: dict[str, float | None]) -> dict[str, str]:
    """The run's charts as <img> tags; a chart whose data the run lacks is left out, except the loss curve
    (the page's first chart, "No data yet" until the first step)."""
    epochs = _dicts(run.epochs) or _dicts(_dict(run.metrics).get("history"))
    references = {
        label: value
        for label, value in (
            ("raters agree", shown["human_agreement"]),
            ("ceiling (estimate)", shown["ceiling_accuracy"]),
            ("always the longer response", shown["length_baseline_accuracy"]),
        )
        if value is not None
    }
    drawn: dict[str, str] = {}
    loss = {
        "training loss (per step)": _points(_dicts(run.history), "step", "loss"),
    }
    drawn["loss"] = as_img(
        line_chart(loss, title="Training loss", x_label="optimizer step", y_label="loss"),
        alt="Training loss by optimizer step",
    )
    # By-epoch curves from two epochs on: one epoch is a single point, which the bars below show better.
    if len(epochs) >= 2:
        epoch_loss = {
            "training loss": _points(epochs, "epoch", "train_loss"),
            "held-out loss": _points(epochs, "epoch", "eval_loss"),
        }
        if any(epoch_loss.values()):
            drawn["epoch_loss"] = as_img(
                line_chart(epoch_loss, title="Loss by epoch", x_label="epoch", y_label="loss"),
                alt="Training and held-out loss by epoch",
            )
        accuracy = _points(epochs, "epoch", "eval_accuracy")
        if accuracy:
            drawn["accuracy"] = as_img(
                line_chart(
                    {"held-out accuracy": accuracy},
                    title="Held-out accuracy by epoch",
                    x_label="epoch",
                    y_label="accuracy",
                    reference_lines=references,
                    y_limits=(0.0, 1.05),
                ),
                alt="Held-out accuracy by epoch, against the raters, the ceiling and longer responses",
            )
    bars = [
        (label, value)
        for label, value in (
            ("model", shown["eval_accuracy"]),
            ("unanimous", shown["accuracy_unanimous"]),
            ("split", shown["accuracy_split"]),
            ("longer wins", shown["length_baseline_accuracy"]),
            ("raters agree", shown["human_agreement"]),
            ("ceiling", shown["ceiling_accuracy"]),
        )
        if value is not None
    ]
    if bars:
        drawn["comparison"] = as_img(
            bar_chart(
                bars,
                title="Held-out accuracy: the model (all, unanimous, split pairs) and references",
                x_label="",
                y_label="share",
                y_limits=(0.0, 1.1),
            ),
            alt="; ".join(f"{label}: {value:.3f}" for label, value in bars),
        )
    bins = [b for b in _dicts(_dict(run.metrics).get("calibration")) if (number(b.get("pairs")) or 0) > 0]
    calibration = _points(bins, "confidence", "observed")
    if calibration:
        drawn["calibration"] = as_img(
            line_chart(
                {"reward model": calibration, "perfectly calibrated": [(0.5, 0.5), (1.0, 1.0)]},
                title="Calibration (reliability)",
                x_label="confidence, max(p, 1 - p)",
                y_label="observed accuracy",
                y_limits=(0.0, 1.05),
            ),
            alt="Reliability chart: the model's confidence against its observed accuracy, per bin",
        )
    return drawn


def model_card(run: TrainingRun) -> str | None:
    """The model's README.md as text (cut at MODEL_CARD_MAX_BYTES), or None when there is none."""
    if not run.output_dir:
        return None
    try:
        path = files.absolute(run.output_dir) / MODEL_CARD_FILENAME
        with path.open("rb") as card:
            raw = card.read(MODEL_CARD_MAX_BYTES + 1)
    except (OSError, ValueError):
        return None
    text = raw[:MODEL_CARD_MAX_BYTES].decode("utf-8", errors="replace").replace("\x00", "")
    return text + ("\n[cut: the card is longer]" if len(raw) > MODEL_CARD_MAX_BYTES else "")


def project_reward_model(project: Project) -> dict[str, Any] | None:
    """The reward model to show beside a project's agreement (the agreement dashboard's summary, registered
    by reward_models.apps): its active model's run, else its latest succeeded run, as {"eval_accuracy",
    "run_id", "url"}; None when neither exists or the run recorded no held-out accuracy.
    Two queries at most."""
    active = selectors.active_run_id(project=project)
    runs = TrainingRun.objects.filter(project=project, status=RunStatus.SUCCEEDED)
    run = runs.filter(pk=active).first() if active is not None else None
    run = run or runs.order_by("-finished_at", "-id").first()
    accuracy = share(_dict(run.metrics).get("eval_accuracy")) if run is not None else None
    if run is None or accuracy is None:
        return None
    url = reverse("admin:reward_models_trainingrun_change", args=[run.pk])
    return {"eval_accuracy": accuracy, "run_id": run.pk, "url": url}


ARMS = ("uncertainty", "random", "default")


def project_selection(project: Project) -> dict[str, Any]:
    """What reward_models knows of a project's uncertainty selection, for the agreement dashboard's arms
    (registered by reward_models.apps): {"active_run_id", "active_run_url" (None without an active model),
    "priorities_run_id" (the run whose priorities the pairs carry, or None), "round" (the latest priority
    round as {"status", "done", "total", "error"}, or None), "eval_by_arm" ({arm: {"pairs", "accuracy"}},
    None where the active run's metrics do not measure it), "eval_accuracy_ipw" (the metrics'
    {"accuracy", "standard_error", "pairs", "effective_pairs"}, checked, or None)}. Three queries at
    most."""
    from .models import ActiveModel, PriorityRound
    from .services.priorities import priorities_run_id

    active = ActiveModel.objects.select_related("run").filter(project=project).first()
    metrics = _dict(active.run.metrics) if active is not None else {}
    by_arm = _dict(metrics.get("eval_by_arm"))
    eval_by_arm = {}
    for arm in ARMS:
        entry = _dict(by_arm.get(arm))
        pairs = entry.get("pairs")
        counted = isinstance(pairs, int) and not isinstance(pairs, bool) and pairs >= 0
        eval_by_arm[arm] = {"pairs": pairs if counted else None, "accuracy": share(entry.get("accuracy"))}
    latest = (
        PriorityRound.objects.filter(project=project)
        .order_by("-created_at", "-id")
        .values("status", "done", "total", "error")
        .first()
    )
    return {
        "active_run_id": active.run_id if active is not None else None,
        "active_run_url": reverse("admin:reward_models_trainingrun_change", args=[active.run_id])
        if active is not None
        else None,
        "priorities_run_id": priorities_run_id(project),
        "round": latest,
        "eval_by_arm": eval_by_arm,
        "eval_accuracy_ipw": _ipw_figure(metrics.get("eval_accuracy_ipw")),
    }


def _ipw_figure(value: Any) -> dict[str, Any] | None:
    """The run's eval_accuracy_ipw (rm_training.evaluate: {"accuracy", "standard_error", "pairs",
    "effective_pairs"}) with each figure checked, or None when the accuracy is not one (not measured)."""
    figure = _dict(value)
    accuracy = share(figure.get("accuracy"))
    if accuracy is None:
        return None
    error = number(figure.get("standard_error"))
    pairs, effective = number(figure.get("pairs")), number(figure.get("effective_pairs"))
    return {
        "accuracy": accuracy,
        "standard_error": error if error is not None and error >= 0 else None,
        "pairs": int(pairs) if pairs is not None and pairs >= 0 else None,
        "effective_pairs": effective if effective is not None and effective >= 0 else None,
    }


def lateness(run: TrainingRun) -> tuple[int, datetime] | None:
    """(seconds since the last heartbeat, when the reaper may fail the run) of a running run whose heartbeat
    is more than three heartbeats old (its worker may be lost), else None. The reaper fails it once the
    heartbeat is PAIRWISE_RUN_LOST_AFTER_SECONDS old."""
    if run.status != RunStatus.RUNNING or run.heartbeat_at is None:
        return None
    silent = (timezone.now() - run.heartbeat_at).total_seconds()
    if silent <= 3 * settings.PAIRWISE_RUN_HEARTBEAT_SECONDS:
        return None
    return int(silent), run.heartbeat_at + timedelta(seconds=settings.PAIRWISE_RUN_LOST_AFTER_SECONDS)


def run_page(
    request: HttpRequest, run: TrainingRun, *, context: dict[str, Any], can_change: bool
) -> HttpResponse:
    shown = figures(run)
    metrics = _dict(run.metrics)
    active_id, forced_reason = selectors.active_run(project=run.project) or (None, "")
    running = run.status in (RunStatus.QUEUED, RunStatus.RUNNING)
    context = {
        **context,
        "title": f"Training run {run.pk}",
        "run": run,
        "state": progress_state(run),
        "figures": figure_rows(shown) if any(value is not None for value in shown.values()) else [],
        "charts": charts(run, shown),
        "epochs": _dicts(run.epochs),
        "config": sorted(_dict(run.config).items()),
        "dataset": _dict(metrics.get("dataset")),
        "counts": sorted(_dict(metrics.get("counts")).items()),
        "training_facts": training_facts(metrics),
        "agreement_note": _dict(run.human_agreement).get("ceiling_accuracy_note"),
        "model_card": model_card(run) if run.status == RunStatus.SUCCEEDED else None,
        "is_active": active_id == run.pk,
        "forced_reason": forced_reason if active_id == run.pk else "",
        "held_out_missing": services.held_out_missing(run) if run.status == RunStatus.SUCCEEDED else None,
        "force_reason_max": services.FORCE_REASON_MAX,
        "can_cancel": can_change and running and run.cancel_requested_at is None,
        "can_activate": can_change and run.status == RunStatus.SUCCEEDED and active_id != run.pk,
        "poll": running,
        "poll_ms": POLL_MILLISECONDS,
        "progress_url": reverse("admin:reward_models_trainingrun_progress", args=[run.pk]),
        "review_url": reverse("admin:reward_models_review", args=[run.project_id]),
    }
    return TemplateResponse(request, "admin/reward_models/trainingrun/run_page.html", context)


def run_progress(run: TrainingRun) -> JsonResponse:
    response = JsonResponse(progress_state(run))
    response["Cache-Control"] = "no-store"
    return response


def _back(run: TrainingRun) -> HttpResponse:
    return redirect("admin:reward_models_trainingrun_change", run.pk)


def run_cancel(request: HttpRequest, run: TrainingRun) -> HttpResponse:
    try:
        cancelled = services.training_run_cancel(run=run)
    except ServiceError as refused:
        messages.error(request, refused.detail)
    else:
        if cancelled.status == RunStatus.CANCELLED:
            messages.success(request, f"Run {run.pk} was cancelled.")
        else:
            messages.success(
                request, f"Run {run.pk} was asked to stop; its worker stops it at the next step."
            )
    return _back(run)


def run_activate(request: HttpRequest, run: TrainingRun) -> HttpResponse:
    try:
        services.training_run_activate(
            run=run, activated_by=request.user, force_reason=request.POST.get("force_reason", "")
        )
    except ServiceError as refused:
        messages.error(request, refused.detail)
    else:
        messages.success(request, f"Run {run.pk}'s model now scores for project {run.project.slug}.")
    return _back(run)


def train(request: HttpRequest, project: Project, *, context: dict[str, Any]) -> HttpResponse:
    form = TrainRunForm(request.POST if request.method == "POST" else None, project=project)
    if request.method == "POST" and form.is_valid():
        assert form.config is not None
        try:
            run = services.training_run_create(
                project=project,
                config=form.config,
                created_by=request.user,
                snapshot=form.cleaned_data.get("snapshot"),
            )
        except ServiceError as refused:
            form.add_error(None, refused.detail)
        else:
            messages.success(request, f"Run {run.pk} is queued for the training workers.")
            return _back(run)
    context = {
        **context,
        "title": f"Train a reward model on {project.slug}",
        "project": project,
        "form": form,
        "judgments": project.judgments.count(),
    }
    return TemplateResponse(request, "admin/reward_models/train_form.html", context)


def snapshot_download(snapshot: DatasetSnapshot) -> FileResponse:
    """The snapshot's file, streamed (FileResponse reads it in blocks)."""
    try:
        handle = files.absolute(snapshot.file).open("rb")
    except (OSError, ValueError):
        raise Http404(f"Snapshot {snapshot.pk}'s file is missing.") from None
    return FileResponse(
        handle,
        as_attachment=True,
        filename=f"{snapshot.project.slug}-snapshot-{snapshot.pk}.jsonl",
        content_type="application/jsonl",
    )


# The review queue


REVIEW_PAGE_SIZE = 25
# While a scoring is queued or running the page reloads itself this often to show its progress.
REVIEW_REFRESH_SECONDS = 5


def review_page(
    request: HttpRequest, project: Project, *, context: dict[str, Any], can_score: bool, can_act: bool
) -> HttpResponse:
    """The project's review queue: judged pairs ranked where the active model doubts the human majority
    most, with their votes and raters (pseudonyms), the latest scoring's progress and "Score now", and
    the actions, and the pairs left out of training, to put back. Queries: the active run, the latest
    scoring, the page's count and rows, their judgments (whatever the number of judgments), the left-out
    pairs' count and rows."""
    run_id = selectors.active_run_id(project=project)
    scoring = selectors.latest_scoring(project=project)
    page = None
    if run_id is not None:
        paginator = Paginator(selectors.review_queue(project=project, run_id=run_id), REVIEW_PAGE_SIZE)
        page = paginator.get_page(request.GET.get("page"))
    judgments = selectors.review_votes(pair.pk for pair in page or [])
    rows = [(pair, judgments[pair.pk]) for pair in page or []]
    left_out_total, left_out = selectors.left_out_pairs(project=project)
    unfinished = scoring is not None and scoring.status in (ScoringStatus.QUEUED, ScoringStatus.RUNNING)
    # A scoring whose row has not moved for STALE_AFTER is lost (its worker died): the page stops reloading
    # and says so; "Score now" starts another (the service marks the lost one failed then).
    lost = unfinished and scoring is not None and scoring.updated_at < timezone.now() - STALE_AFTER
    in_flight = unfinished and not lost
    context = {
        **context,
        "title": f"Review queue of {project.slug}",
        "project": project,
        "run_id": run_id,
        "scoring": scoring,
        "scoring_current": scoring is not None and scoring.run_id == run_id,
        "in_flight": in_flight,
        "lost": lost,
        "refresh_seconds": REVIEW_REFRESH_SECONDS if in_flight else None,
        "page": page,
        "rows": rows,
        "first_rank": page.start_index() if page is not None else 0,
        "can_score": can_score and run_id is not None,
        "can_act": can_act,
        "max_extra": MAX_EXTRA_JUDGMENTS,
        "max_reason": MAX_REVIEW_REASON,
        "left_out": left_out,
        "left_out_total": left_out_total,
    }
    return TemplateResponse(request, "admin/reward_models/review_queue.html", context)


def _review_back(project: Project, request: HttpRequest) -> HttpResponse:
    url = reverse("admin:reward_models_review", args=[project.pk])
    page = request.POST.get("page", "")
    return redirect(f"{url}?page={page}" if page.isdigit() else url)


def review_score(request: HttpRequest, project: Project) -> HttpResponse:
    try:
        scoring = services.pair_scoring_start(project=project, created_by=request.user)
    except ServiceError as refused:
        messages.error(request, refused.detail)
    else:
        messages.success(
            request, f"Scoring {scoring.pk} of {project.slug}'s judged pairs is {scoring.status}."
        )
    return _review_back(project, request)


def _form_k(raw: str) -> int | None:
    """The form's k: None when it is no number (the service then asks for it). ASCII digits only: "²" is a
    digit to str.isdigit() but not to int(), and int() refuses more than 4300 digits; a k that long is out
    of range anyway, so the service says so."""
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()):
        return None
    return int(raw) if len(raw) <= 9 else 10**9


def review_act(request: HttpRequest, project: Project, pair_id: int) -> HttpResponse:
    """One action from the queue's form: the same services, and the same checks, as the API's."""
    try:
        k = _form_k(request.POST.get("k", ""))
        annotation_services.pair_review_act(
            project=project,
            pair_id=pair_id,
            action=request.POST.get("action", ""),
            by=request.user,
            reason=request.POST.get("reason", ""),
            # The form sends its k with every button; only "more votes" reads it.
            k=k if request.POST.get("action") == ReviewAction.MORE_VOTES else None,
        )
    except ServiceError as refused:
        details = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in getattr(refused, "errors", []))
        messages.error(request, f"Pair {pair_id}: {refused.detail}" + (f" ({details})" if details else ""))
    else:
        label = ReviewAction(request.POST["action"]).label.lower()
        messages.success(request, f"Pair {pair_id}: {label}, recorded.")
    return _review_back(project, request)
