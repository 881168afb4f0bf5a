"""Comparison data: the preferences and judgments JSONL of API.md read into one kind of example, and
the held-out split by prompt.

Judgments become weighted votes, not one example per judgment. A pair judged 2 to 1 is one
:class:`Comparison` whose chosen side is the majority, with ``target`` 2/3 (the vote share) and
``weight`` 3 (the votes). Its loss, weight x BT(target), equals the sum of the three per-judgment losses
exactly (-2 log s(z) - log s(-z) = 3 x [-(2/3) log s(z) - (1/3) log s(-z)]), so training sees the same
gradient, at one forward pass per pair instead of three, never with the same pair twice in a batch, and the
vote share is kept for calibration and for accuracy against individual judgments.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .votes import CHOICES, TiePolicy, Votes, outcome


@dataclass(frozen=True)
class Comparison:
    """One pair of responses to a prompt, oriented so that ``chosen`` is the side the votes favour."""

    prompt: str
    chosen: str
    rejected: str
    # Probability that chosen is preferred, which the loss trains towards: 1.0 for a plain preference,
    # the vote share with votes, 0.5 for a tie.
    target: float = 1.0
    # Relative weight in the loss (the number of votes the target stands for).
    weight: float = 1.0
    # Strength of the preference for chosen (the Llama 2 margin), when the data has one.
    margin: float | None = None
    tie: bool = False
    votes_chosen: int = 1
    votes_rejected: int = 0
    votes_tie: int = 0
    pair_id: str | None = None

    @property
    def decisive_votes(self) -> int:
        return self.votes_chosen + self.votes_rejected


class DataError(ValueError):
    """The input file is not in either of the formats of API.md; the message names the line."""


def read_comparisons(
    path: str | Path, *, use_votes: bool = True, ties: TiePolicy = "drop"
) -> list[Comparison]:
    """Read a preferences or a judgments JSONL file (told apart by the first row's fields)."""
    rows = list(_read_jsonl(Path(path)))
    if not rows:
        raise DataError(f"{path}: no rows")
    first = rows[0][1]
    if "chosen" in first:
        return comparisons_from_preferences(rows, use_votes=use_votes, ties=ties)
    if "choice" in first:
        return comparisons_from_judgments(rows, use_votes=use_votes, ties=ties)
    raise DataError(
        f"{path}:{rows[0][0]}: neither a preferences row (prompt, chosen, rejected) "
        "nor a judgments row (pair_id, response_a, response_b, choice)"
    )


def _read_jsonl(path: Path) -> Iterable[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: not JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{number}: a row must be a JSON object")
            yield number, row


def _text(row: dict[str, Any], key: str, number: int, *, required: bool = True) -> str:
    value = row.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise DataError(f"line {number}: '{key}' must be a non-empty string")
    return value


def _comparison(
    *,
    prompt: str,
    text_a: str,
    text_b: str,
    votes: Votes,
    margins: dict[str, float | None],
    pair_id: str | None,
    use_votes: bool,
    ties: TiePolicy,
) -> Comparison | None:
    """Orient a pair by its votes (rm_training.votes, the one rule); None when it is left out."""
    result = outcome(votes, ties=ties, use_votes=use_votes)
    if result is None:
        return None
    chosen, rejected = (text_a, text_b) if result.chosen == "a" else (text_b, text_a)
    return Comparison(
        prompt=prompt,
        chosen=chosen,
        rejected=rejected,
        target=result.target,
        weight=result.weight,
        margin=None if result.tie else margins[result.chosen],
        tie=result.tie,
        votes_chosen=result.votes_chosen,
        votes_rejected=result.votes_rejected,
        votes_tie=result.votes_tie,
        pair_id=pair_id,
    )


def comparisons_from_preferences(
    rows: Sequence[tuple[int, dict[str, Any]]], *, use_votes: bool = True, ties: TiePolicy = "drop"
) -> list[Comparison]:
    """Rows of the preferences export (or any TRL-style prompt/chosen/rejected file).

    ``votes`` and ``margin`` are optional; a row without votes is one vote for chosen.
    """
    comparisons = []
    for number, row in rows:
        prompt = _text(row, "prompt", number, required=False)
        chosen, rejected = _text(row, "chosen", number), _text(row, "rejected", number)
        votes = row.get("votes") or {"a": 1, "b": 0, "tie": 0}
        if not isinstance(votes, dict) or not all(
            isinstance(votes.get(k, 0), int) and votes.get(k, 0) >= 0 for k in CHOICES
        ):
            raise DataError(f"line {number}: 'votes' must be an object of non-negative counts a, b, tie")
        # The export orients rows so that chosen is the majority, whichever of a/b it was.
        high, low = max(votes.get("a", 0), votes.get("b", 0)), min(votes.get("a", 0), votes.get("b", 0))
        margin = row.get("margin")
        if margin is not None and not isinstance(margin, int | float):
            raise DataError(f"line {number}: 'margin' must be a number")
        pair_id = row.get("pair_id", row.get("external_id"))
        comparison = _comparison(
            prompt=prompt,
            text_a=chosen,
            text_b=rejected,
            votes=Votes(a=high, b=low, tie=votes.get("tie", 0)),
            margins={"a": None if margin is None else float(margin), "b": None},
            pair_id=None if pair_id is None else str(pair_id),
            use_votes=use_votes,
            ties=ties,
        )
        if comparison is not None:
            comparisons.append(comparison)
    return comparisons


def comparisons_from_judgments(
    rows: Sequence[tuple[int, dict[str, Any]]], *, use_votes: bool = True, ties: TiePolicy = "drop"
) -> list[Comparison]:
    """Rows of the judgments export, one per judgment, grouped into one comparison per pair."""
    pairs: dict[str, dict[str, Any]] = {}
    votes: dict[str, dict[str, int]] = defaultdict(lambda: {"a": 0, "b": 0, "tie": 0})
    strengths: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"a": [], "b": []})
    for number, row in rows:
        prompt = _text(row, "prompt", number, required=False)
        text_a, text_b = _text(row, "response_a", number), _text(row, "response_b", number)
        choice = row.get("choice")
        if choice not in CHOICES:
            raise DataError(f"line {number}: 'choice' must be 'a', 'b' or 'tie'")
        identity = row.get("pair_id", row.get("external_id"))
        key = _digest([prompt, text_a, text_b]) if identity in (None, "") else str(identity)
        pairs.setdefault(key, {"prompt": prompt, "a": text_a, "b": text_b})
        votes[key][choice] += 1
        strength = row.get("strength")
        if choice != "tie" and isinstance(strength, int | float) and not isinstance(strength, bool):
            strengths[key][choice].append(float(strength))
    comparisons = []
    for key, pair in pairs.items():
        comparison = _comparison(
            prompt=pair["prompt"],
            text_a=pair["a"],
            text_b=pair["b"],
            votes=Votes(**votes[key]),
            # The margin of the side the votes favour: the mean strength its judgments gave.
            margins={side: sum(s) / len(s) if s else None for side, s in strengths[key].items()},
            pair_id=key,
            use_votes=use_votes,
            ties=ties,
        )
        if comparison is not None:
            comparisons.append(comparison)
    return comparisons


def split_by_prompt(
    comparisons: Sequence[Comparison], *, eval_fraction: float, seed: int
) -> tuple[list[Comparison], list[Comparison]]:
    """Hold out whole prompts, so that no prompt is on both sides, about eval_fraction of the pairs.

    Prompts are ordered by a seeded hash of their text, so the split depends on the seed and on the
    data, not on the order of the rows. With two or more prompts and a positive fraction, each side
    gets at least one prompt.
    """
    if eval_fraction <= 0:
        return list(comparisons), []
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for index, comparison in enumerate(comparisons):
        by_prompt[comparison.prompt].append(index)
    prompts = sorted(by_prompt, key=lambda prompt: _digest([str(seed), prompt]))
    wanted = eval_fraction * len(comparisons)
    held_out: set[str] = set()
    held_pairs = 0
    for prompt in prompts[:-1]:  # the last prompt always trains
        if held_out and held_pairs + len(by_prompt[prompt]) / 2 > wanted:
            break
        held_out.add(prompt)
        held_pairs += len(by_prompt[prompt])
    train = [c for c in comparisons if c.prompt not in held_out]
    held = [c for c in comparisons if c.prompt in held_out]
    return train, held


def dataset_digest(comparisons: Iterable[Comparison]) -> str:
    """A sha256 of the examples as training sees them, to tell whether two runs had the same data."""
    return _digest([json.dumps(asdict(c), sort_keys=True) for c in comparisons])


def _digest(parts: Sequence[str]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode("utf-8"))
        hasher.update(b"\0")
    return hasher.hexdigest()


def rater_agreement(comparisons: Iterable[Comparison]) -> float | None:
    """Share of ordered pairs of decisive judgments on the same pair that agree (pairs with 2+ of them).

    This is the human figure that accuracy against individual judgments compares with.
    """
    agreeing = total = 0
    for c in comparisons:
        n = c.decisive_votes
        if n >= 2:
            agreeing += c.votes_chosen * (c.votes_chosen - 1) + c.votes_rejected * (c.votes_rejected - 1)
            total += n * (n - 1)
    return agreeing / total if total else None
