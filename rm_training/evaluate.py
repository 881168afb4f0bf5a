"""Held-out metrics of a reward model: loss, accuracy (overall, unanimous, split, per judgment),
calibration and the spread of the rewards.

Equal scores count half in every accuracy: a model that cannot tell two responses apart is right half
the time in expectation, so a constant model scores exactly 0.5, never 0 or 1. Pairs judged a tie are left
out of the pair accuracies (neither side is right) but their decisive votes count in judgment accuracy.

Whether two scores are equal is decided on the model's inputs, not on floats: a pair whose two sides
encode to the same tokens (an uncased tokenizer folds their only difference away, or truncation cuts it
off) is a tie in score, its margin exactly 0, even when batching with different padding makes the two
rewards differ in the eighth decimal.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel

from . import jsonl
from .data import Comparison, DataError, rater_agreement, read_data
from .loss import bradley_terry_loss
from .model import TrainedModel, load_trained, rewards_from
from .propensity import ARMS, DEFAULT_ARM, draws_weight, ipw_mean, pair_arm
from .tokenization import EncodedPair, EncodedSequence, PairEncoder

ECE_BINS = 10

logger = logging.getLogger("rm_training")


@torch.no_grad()
def compute_rewards(
    model: PreTrainedModel,
    encoder: PairEncoder,
    sequences: Sequence[EncodedSequence],
    *,
    batch_size: int,
    device: torch.device,
) -> torch.Tensor:
    """Raw reward logits in the order given, batched longest first to pad little.

    Always in float32 (no autocast), so that metrics, ``eval`` and scoring give the scores that the saved
    weights give in plain transformers, on any machine.
    """
    was_training = model.training
    model.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i].input_ids), reverse=True)
    rewards = torch.empty(len(sequences), dtype=torch.float32)
    try:
        for start in range(0, len(order), batch_size):
            indices = order[start : start + batch_size]
            inputs = encoder.pad([sequences[i] for i in indices])
            rewards[indices] = rewards_from(model, {k: v.to(device) for k, v in inputs.items()}).float().cpu()
    finally:
        model.train(was_training)
    return rewards


def evaluate_pairs(
    model: PreTrainedModel,
    encoder: PairEncoder,
    pairs: Sequence[EncodedPair],
    *,
    batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Score both sides of every pair and compute :func:`reward_metrics`; a pair whose sides encode
    the same is a tie in score."""
    sequences = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    rewards = compute_rewards(model, encoder, sequences, batch_size=batch_size, device=device)
    return reward_metrics(
        [p.comparison for p in pairs],
        rewards[: len(pairs)],
        rewards[len(pairs) :],
        identical=[p.identical for p in pairs],
    )


def _credit(z: torch.Tensor) -> torch.Tensor:
    """1 when the chosen side scores higher, 0.5 when the scores are equal, 0 when lower."""
    return (z > 0).float() + 0.5 * (z == 0).float()


def _mean(values: torch.Tensor, mask: torch.Tensor) -> float | None:
    return float(values[mask].double().mean()) if bool(mask.any()) else None


def reward_metrics(
    comparisons: Sequence[Comparison],
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    *,
    identical: Sequence[bool] | None = None,
) -> dict[str, Any]:
    """Metrics from the rewards of each pair's chosen and rejected response.

    ``identical[i]``: pair i's two sides are the same model input, so its rewards are equal whatever the
    floats say; its rejected reward is taken to be its chosen one.

    - ``loss``: the Bradley-Terry loss towards the data's targets (vote shares, ties at 0.5), weighted
      by votes, without margin or centering, so that it compares across loss options.
    - ``accuracy``: share of non-tie pairs whose chosen response scores higher (equal: half).
    - ``accuracy_unanimous`` / ``accuracy_split``: the same over pairs with two or more votes that were
      all for one side, or not; None when there are none.
    - ``judgment_accuracy``: share of individual decisive judgments (a or b) the model agrees with; it
      compares with ``rater_agreement``, the share of pairs of judgments on a pair that agree.
    - ``ece``: expected calibration error of the model's confidence max(p, 1 - p), p = sigmoid(r_c - r_r),
      against the vote share of the side it favours, in 10 equal bins over [0.5, 1].
    - ``calibration``: those bins, each ``{"lower", "upper", "pairs", "confidence", "observed"}`` (the
      last two None for an empty bin), for a reliability diagram.
    - ``length_baseline_accuracy``: the accuracy, on the same pairs, of always preferring the longer
      response (in characters; equal lengths count half). A model no better than this has learned length.
    - ``by_arm``: per active-selection arm (:func:`rm_training.propensity.pair_arm`: "uncertainty",
      "random", or "default" for the default order and imported judgments), ``{"pairs", "accuracy"}``
      over the pairs of that arm (accuracy as above, None when all of them are ties); an arm without pairs
      is absent.
    - ``accuracy_ipw``: the accuracy over the pairs that active selection chose (those with a propensity),
      corrected by inverse propensity (:func:`rm_training.propensity.ipw_mean`, self-normalised, each pair
      weighted by the sum of 1/propensity over its judgments): an estimate of the accuracy on pairs drawn
      uniformly from the candidates, ``{"accuracy", "standard_error", "pairs", "effective_pairs"}``. Absent
      when no non-tie pair has a propensity: not measured.
    """
    n = len(comparisons)
    if n == 0:
        raise ValueError("no pairs to evaluate")
    r_chosen, r_rejected = r_chosen.float(), r_rejected.float()
    same = (
        torch.zeros(n, dtype=torch.bool)
        if identical is None
        else torch.tensor(list(identical), dtype=torch.bool)
    )
    r_rejected = torch.where(same, r_chosen, r_rejected)
    z = r_chosen - r_rejected
    target = torch.tensor([c.target for c in comparisons])
    weight = torch.tensor([c.weight for c in comparisons])
    tie = torch.tensor([c.tie for c in comparisons])
    result = bradley_terry_loss(r_chosen, r_rejected, target=target, tie=tie, weight=weight)

    credit = _credit(z)
    total_votes = torch.tensor([c.decisive_votes + c.votes_tie for c in comparisons])
    minority = torch.tensor([c.votes_rejected + c.votes_tie for c in comparisons])
    decisive = ~tie
    several = decisive & (total_votes >= 2)

    votes_chosen = torch.tensor([c.votes_chosen for c in comparisons], dtype=torch.float32)
    votes_rejected = torch.tensor([c.votes_rejected for c in comparisons], dtype=torch.float32)
    judgments = float((votes_chosen + votes_rejected).sum())
    agreeing = float((votes_chosen * credit + votes_rejected * _credit(-z)).sum())

    probability = result.prob_chosen
    favours_chosen = probability >= 0.5
    confidence = torch.where(favours_chosen, probability, 1 - probability)
    observed = torch.where(favours_chosen, target, 1 - target)
    bins = torch.clamp(((confidence - 0.5) * 2 * ECE_BINS).long(), max=ECE_BINS - 1)
    calibration: list[dict[str, Any]] = []
    for b in range(ECE_BINS):
        members = bins == b
        count = int(members.sum())
        calibration.append(
            {
                "lower": 0.5 + b / (2 * ECE_BINS),
                "upper": 0.5 + (b + 1) / (2 * ECE_BINS),
                "pairs": count,
                "confidence": float(confidence[members].double().mean()) if count else None,
                "observed": float(observed[members].double().mean()) if count else None,
            }
        )
    ece = sum(
        entry["pairs"] / n * abs(entry["confidence"] - entry["observed"])
        for entry in calibration
        if entry["pairs"]
    )
    longer = torch.tensor([float(len(c.chosen) - len(c.rejected)) for c in comparisons])
    rewards = torch.cat([r_chosen, r_rejected])
    selection = _selection_metrics(comparisons, credit, decisive)
    return {
        "loss": float(result.loss),
        "accuracy": _mean(credit, decisive),
        "accuracy_unanimous": _mean(credit, several & (minority == 0)),
        "accuracy_split": _mean(credit, several & (minority > 0)),
        "judgment_accuracy": agreeing / judgments if judgments else None,
        "rater_agreement": rater_agreement(comparisons),
        "ece": ece,
        "calibration": calibration,
        "length_baseline_accuracy": _mean(_credit(longer), decisive),
        "reward_mean": float(rewards.mean()),
        "reward_std": float(rewards.std(unbiased=False)),
        "mean_margin": float(z.mean()),
        "pairs": n,
        "pairs_unanimous": int((several & (minority == 0)).sum()),
        "pairs_split": int((several & (minority > 0)).sum()),
        "judgments": int(judgments),
        "pairs_identical_tokens": int(same.sum()),
        **selection,
    }


def _selection_metrics(
    comparisons: Sequence[Comparison], credit: torch.Tensor, decisive: torch.Tensor
) -> dict[str, Any]:
    """``by_arm`` and, when measured, ``accuracy_ipw`` of :func:`reward_metrics`."""
    arms = [pair_arm(c.arms) for c in comparisons]
    by_arm = {}
    for arm in (*ARMS, DEFAULT_ARM):
        members = torch.tensor([a == arm for a in arms])
        if bool(members.any()):
            by_arm[arm] = {"pairs": int(members.sum()), "accuracy": _mean(credit, members & decisive)}
    credits, counted = credit.tolist(), decisive.tolist()
    chosen = [i for i in range(len(comparisons)) if counted[i]]
    estimate = ipw_mean(
        [credits[i] for i in chosen], [draws_weight(comparisons[i].propensities) for i in chosen]
    )
    if estimate is None:
        return {"by_arm": by_arm}
    return {
        "by_arm": by_arm,
        "accuracy_ipw": {
            "accuracy": estimate.estimate,
            "standard_error": estimate.standard_error,
            "pairs": estimate.pairs,
            "effective_pairs": estimate.effective_pairs,
        },
    }


def evaluate_model_dir(
    model_dir: str | Path,
    data_path: str | Path,
    *,
    batch_size: int = 64,
    device: str = "auto",
    max_length: int | None = None,
) -> dict[str, Any]:
    """Metrics of a trained model directory on every pair of a preferences or judgments file, or on
    every row of a file in RewardBench 2's form (one chosen response and several rejected ones:
    :func:`evaluate_best_of`).

    The data is read with the options the model was trained with (votes, ties), from its saved config.
    Pairs with the same text on both sides are dropped and counted (``pairs_identical_text``), as are
    those the votes rule leaves out (``pairs_left_out_by_votes``); pairs whose sides encode the same
    are scored as ties and counted (``pairs_identical_tokens``).
    """
    trained = load_trained(model_dir, device, max_length=max_length)
    if _is_best_of(data_path):
        return evaluate_best_of(trained, read_best_of(data_path), batch_size=batch_size)
    config, encoder = trained.config, trained.encoder
    data = read_data(data_path, use_votes=config.use_votes, ties=config.ties)
    pairs = encoder.encode_pairs(data.usable(data_path))
    metrics = evaluate_pairs(trained.model, encoder, pairs, batch_size=batch_size, device=trained.device)
    metrics["pairs_truncated"] = sum(p.truncated for p in pairs)
    metrics["pairs_with_messages_dropped"] = sum(p.messages_dropped > 0 for p in pairs)
    metrics["messages_dropped"] = sum(p.messages_dropped for p in pairs)
    metrics["pairs_identical_text"] = data.identical
    metrics["pairs_left_out_by_votes"] = data.left_out
    if data.identical:
        logger.warning(
            "%d pair(s) with the same text on both sides dropped: nothing to prefer", data.identical
        )
    if metrics["pairs_identical_tokens"]:
        logger.warning(
            "%d pair(s) encode to the same tokens on both sides (the tokenizer folds case, or max_length %d "
            "cuts off the difference): scored as ties",
            metrics["pairs_identical_tokens"],
            encoder.max_length,
        )
    return metrics


@dataclass(frozen=True)
class BestOf:
    """A row in RewardBench 2's form: one chosen response and several rejected ones to the same prompt."""

    prompt: str
    chosen: str
    rejected: list[str]
    subset: str | None


@dataclass(frozen=True)
class BestOfRows:
    rows: list[BestOf]
    several_chosen: int  # rows with more than one chosen response (RewardBench 2's Ties), not read


def _first_row(path: str | Path) -> Any:
    try:
        with Path(path).open("rb") as stream:
            return next((line.value for line in jsonl.read_lines(stream) if line.error is None), None)
    except OSError:
        return None  # read_data names the problem in its words


def _is_best_of(path: str | Path) -> bool:
    """Whether a data file is in RewardBench 2's form: its first row's ``rejected`` is a list of responses
    (a TRL conversational row's ``rejected`` is a list too, of messages: objects, not strings)."""
    first = _first_row(path)
    rejected = first.get("rejected") if isinstance(first, dict) else None
    return isinstance(rejected, list) and not any(isinstance(item, dict) for item in rejected)


def read_best_of(path: str | Path) -> BestOfRows:
    """Rows of ``{"prompt", "chosen": str or [str], "rejected": [str, ...], "subset"?}``, RewardBench 2's
    form. A row with several chosen responses (its Ties subset, scored there by another rule) is counted
    and left out; any other row that is not of this form is a DataError naming its line."""
    rows: list[BestOf] = []
    several = 0
    with Path(path).open("rb") as stream:
        for line in jsonl.read_lines(stream):
            number = line.number
            if line.error is not None:
                raise DataError(line.error, line=number, field=line.field, path=path)
            row = line.value
            if not isinstance(row, dict):
                raise DataError("a row must be a JSON object", line=number, path=path)
            chosen = row.get("chosen")
            chosen = [chosen] if isinstance(chosen, str) else chosen
            if not isinstance(chosen, list) or not chosen or not all(isinstance(c, str) for c in chosen):
                raise DataError(
                    "must be a string or a non-empty list of strings", field="chosen", line=number, path=path
                )
            rejected = row.get("rejected")
            if (
                not isinstance(rejected, list)
                or not rejected
                or not all(isinstance(r, str) for r in rejected)
            ):
                raise DataError(
                    "must be a non-empty list of strings", field="rejected", line=number, path=path
                )
            prompt, subset = row.get("prompt", ""), row.get("subset")
            if not isinstance(prompt, str):
                raise DataError("must be a string", field="prompt", line=number, path=path)
            if subset is not None and not isinstance(subset, str):
                raise DataError("must be a string", field="subset", line=number, path=path)
            if len(chosen) > 1:
                several += 1
                continue
            rows.append(BestOf(prompt, chosen[0], rejected, subset))
    if not rows:
        raise DataError("no row with one chosen response to evaluate", path=path)
    return BestOfRows(rows, several)


def evaluate_best_of(trained: TrainedModel, data: BestOfRows, *, batch_size: int) -> dict[str, Any]:
    """Accuracy as RewardBench 2 counts it: a row is right when its chosen response scores above every
    rejected one. A chosen score equal to the best rejected ones gets 1/(k+1) for k of them tied with it,
    as a random pick among the equals would (equal scores count half in a pair, as everywhere here).
    ``random_baseline``: the accuracy of a constant model, the mean of 1/(1 + rejected) over the rows."""
    prompts = [row.prompt for row in data.rows for _ in range(1 + len(row.rejected))]
    responses = [text for row in data.rows for text in (row.chosen, *row.rejected)]
    sequences = trained.encoder.encode(prompts, responses)
    rewards = compute_rewards(
        trained.model, trained.encoder, sequences, batch_size=batch_size, device=trained.device
    ).tolist()
    credits: list[float] = []
    start = 0
    for row in data.rows:
        chosen, *rejected = rewards[start : start + 1 + len(row.rejected)]
        start += 1 + len(row.rejected)
        best = max(rejected)
        credits.append(
            1.0 if chosen > best else 1.0 / (1 + rejected.count(chosen)) if chosen == best else 0.0
        )
    subsets: dict[str, list[float]] = {}
    for row, credit in zip(data.rows, credits, strict=True):
        if row.subset is not None:
            subsets.setdefault(row.subset, []).append(credit)
    return {
        "format": "best_of",
        "accuracy": sum(credits) / len(credits),
        "random_baseline": sum(1 / (1 + len(row.rejected)) for row in data.rows) / len(data.rows),
        "rows": len(data.rows),
        "rejected_per_row": sum(len(row.rejected) for row in data.rows) / len(data.rows),
        "rows_several_chosen_left_out": data.several_chosen,
        "responses_truncated": sum(s.prompt_truncated or s.response_truncated for s in sequences),
        "subsets": {
            name: {"accuracy": sum(values) / len(values), "rows": len(values)}
            for name, values in sorted(subsets.items())
        },
    }


SCORE_CHECK_FILENAME = "score_check.json"
SCORE_CHECK_PAIRS = 4


def score_check_items(
    model: PreTrainedModel,
    encoder: PairEncoder,
    pairs: Sequence[EncodedPair],
    *,
    device: torch.device,
) -> list[dict[str, Any]]:
    """The rewards the trained model gives, as it is in memory, to both responses of a few pairs
    (held-out ones first), encoded as scoring encodes them: what :func:`write_score_check` records."""
    chosen = [p.comparison for p in pairs[:SCORE_CHECK_PAIRS]]
    prompts = [c.conversation for c in chosen for _ in (0, 1)]
    responses = [text for c in chosen for text in (c.chosen, c.rejected)]
    sequences = encoder.encode(prompts, responses)
    rewards = compute_rewards(model, encoder, sequences, batch_size=len(sequences) or 1, device=device)
    return [
        {"prompt": prompt, "response": response, "score": float(score)}
        for prompt, response, score in zip(prompts, responses, rewards.tolist(), strict=True)
    ]


def write_score_check(directory: str | Path, items: list[dict[str, Any]]) -> Path:
    """Record the rewards of :func:`score_check_items`. Whoever loads the saved directory can score them
    again and compare (:func:`score_check`): a reward head lost or re-initialised on save shows."""
    path = Path(directory) / SCORE_CHECK_FILENAME
    path.write_text(json.dumps(items, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


def score_check(scorer: Any, directory: str | Path, *, tolerance: float = 1e-3) -> list[str]:
    """Score the recorded responses with ``scorer`` (a :class:`rm_training.scoring.RewardScorer` of the
    directory) and return one line per response whose score moved by more than ``tolerance`` (absolute,
    or relative to the score's size); empty when the saved model gives what the run gave."""
    items = json.loads((Path(directory) / SCORE_CHECK_FILENAME).read_text(encoding="utf-8"))
    scores = scorer.score_pairs([i["prompt"] for i in items], [i["response"] for i in items])
    problems = []
    for index, (item, score) in enumerate(zip(items, scores, strict=True)):
        if abs(score - item["score"]) > tolerance * max(1.0, abs(item["score"])):
            problems.append(
                f"response {index}: the saved model scores {score:.6f}, the run scored {item['score']:.6f}"
            )
    return problems
