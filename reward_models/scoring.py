"""Scoring with a project's active model in the web process: loaded lazily (torch is imported only then),
kept until another model is activated, up to PAIRWISE_SCORE_MAX_RESPONSES responses in one batched
forward pass.

Every request reads which run is active (one query), so an activation made through any web process is
used by all of them from their next request; the model of a run is loaded once per process. Every request
also checks that the run's directory is still there (two stat calls), so a model deleted or moved on disk is
the same 409 ``model_unavailable`` on every worker, whether or not it had the model in memory.

Texts are limited in characters (PAIRWISE_SCORE_MAX_TEXT_CHARS each, PAIRWISE_SCORE_MAX_REQUEST_CHARS in
all, 413 above): rm_training cuts each text to what its max_length can use before tokenizing, so the cost
of a text within the limits is bounded, and the limits bound the request's memory.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from django.conf import settings

from annotation.models import Project
from rm_training.config import CONFIG_FILENAME
from rm_training.conversation import Message, render
from web.errors import Conflict, TooLarge

from . import files
from .models import ActiveModel, TrainingRun

if TYPE_CHECKING:
    from rm_training.scoring import RewardScorer

_lock = threading.Lock()
# project id -> (run id, its scorer): one model per project per process.
_scorers: dict[int, tuple[int, RewardScorer]] = {}


def _unavailable(run: TrainingRun, why: str) -> Conflict:
    return Conflict(f"Run {run.pk}'s model is not available: {why}.", code="model_unavailable")


def scorer_for(run: TrainingRun) -> RewardScorer:
    """The run's model, loaded on first use and kept while it is its project's model.

    Conflict ``model_unavailable`` (naming the run) when its directory is gone or does not load, on every
    call: a cached model whose directory was removed is dropped, not used."""
    directory = files.absolute(run.output_dir) if run.output_dir else None
    if directory is None or not (directory / CONFIG_FILENAME).is_file():
        _forget(run)
        raise _unavailable(run, f"its directory {run.output_dir or '(none)'} is missing or incomplete")
    with _lock:
        cached = _scorers.get(run.project_id)
        if cached is not None and cached[0] == run.pk:
            return cached[1]
        from rm_training.errors import InputError
        from rm_training.scoring import RewardScorer

        try:
            scorer = RewardScorer(
                directory,
                device=settings.PAIRWISE_SCORE_DEVICE,
                batch_size=settings.PAIRWISE_SCORE_MAX_RESPONSES,
            )
        except (InputError, OSError, ValueError) as error:
            raise _unavailable(run, f"it does not load ({str(error).splitlines()[0]})") from None
        # Replacing the entry drops the previous model of the project (and its memory) here.
        _scorers[run.project_id] = (run.pk, scorer)
        return scorer


def check_saved_model(run: TrainingRun) -> None:
    """Load the run's saved directory and score the responses it recorded at the end of training (with
    the model as it was in memory); Conflict when it does not load or scores differently, as a reward
    head lost or re-initialised on save would."""
    from rm_training.evaluate import SCORE_CHECK_FILENAME, score_check

    directory = files.absolute(run.output_dir) if run.output_dir else None
    if directory is None or not (directory / SCORE_CHECK_FILENAME).is_file():
        raise Conflict(
            f"Run {run.pk} has no saved model with recorded scores to check.", code="model_missing"
        )
    try:
        scorer = scorer_for(run)
        problems = score_check(scorer, directory)
    except Exception as error:  # any failure to load is the answer here, not a 500
        _forget(run)
        raise Conflict(
            f"Run {run.pk}'s saved model does not load: {type(error).__name__}: {error}",
            code="model_check_failed",
        ) from None
    if problems:
        _forget(run)
        raise Conflict(
            f"Run {run.pk}'s saved model does not give the scores the run recorded: " + "; ".join(problems),
            code="model_check_failed",
        )


def _forget(run: TrainingRun) -> None:
    with _lock:
        if _scorers.get(run.project_id, (None,))[0] == run.pk:
            del _scorers[run.project_id]


def score(
    *, project: Project, prompt: str | list[Message], responses: Sequence[str]
) -> tuple[int, list[float]]:
    """Raw reward logits of each response to the prompt (a text or a checked conversation,
    rm_training.conversation) with the project's active model: (run id, scores). A conversation's
    characters are those of its text rendering.

    More than PAIRWISE_SCORE_MAX_RESPONSES responses, a text over PAIRWISE_SCORE_MAX_TEXT_CHARS characters
    or more than PAIRWISE_SCORE_MAX_REQUEST_CHARS in all: TooLarge (413); no active model: Conflict (409).
    """
    limit = settings.PAIRWISE_SCORE_MAX_RESPONSES
    if len(responses) > limit:
        raise TooLarge(f"{len(responses)} responses in one request; the limit is {limit}.")
    text_limit = settings.PAIRWISE_SCORE_MAX_TEXT_CHARS
    prompt_text = render(prompt)
    for name, text in [("prompt", prompt_text), *((f"responses[{i}]", r) for i, r in enumerate(responses))]:
        if len(text) > text_limit:
            raise TooLarge(
                f"{name} has {len(text)} characters; the limit is {text_limit} characters per text "
                "(PAIRWISE_SCORE_MAX_TEXT_CHARS)."
            )
    total, request_limit = (
        len(prompt_text) + sum(len(r) for r in responses),
        settings.PAIRWISE_SCORE_MAX_REQUEST_CHARS,
    )
    if total > request_limit:
        raise TooLarge(
            f"The prompt and responses have {total} characters in all; the limit is {request_limit} "
            "characters per request (PAIRWISE_SCORE_MAX_REQUEST_CHARS)."
        )
    active = ActiveModel.objects.select_related("run").filter(project=project).first()
    if active is None:
        raise Conflict(
            f"Project {project.slug!r} has no active model: activate a succeeded training run first.",
            code="no_active_model",
        )
    if not responses:
        return active.run_id, []
    return active.run_id, scorer_for(active.run).score(prompt, list(responses))
