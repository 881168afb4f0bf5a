"""Comparison data: the preferences and judgments JSONL of API.md read into one kind of example, and
the held-out split by prompt.

Judgments become weighted votes, not one example per judgment. A pair judged 2 to 1 is one
:class:`Comparison` whose chosen side is the majority, with ``target`` 2/3 (the vote share) and
``weight`` 3 (the votes). Its loss, weight x BT(target), equals the sum of the three per-judgment losses
exactly (-2 log s(z) - log s(-z) = 3 x [-(2/3) log s(z) - (1/3) log s(-z)]), so training sees the same
gradient, at one forward pass per pair instead of three, never with the same pair twice in a batch, and the
vote share is kept for calibration and for accuracy against individual judgments. A rater counts once per
pair: a judgments file with the same (pair, rater) on two rows is refused, naming both lines, as the
judgments import refuses it (which of the two is the rater's judgment cannot be told from the file).

Files are read by :mod:`rm_training.jsonl`, the one reader of the API and the commands, and every field
is checked for type; the first problem is a :class:`DataError` whose one line names the file, the line and
the field. A response may be empty (real data has empty responses). A pair whose two responses are the same
text has nothing to prefer: it is dropped, and counted in :class:`ComparisonData` with the pairs that the
votes rule leaves out, so that no pair disappears without a number saying so.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import conversation, jsonl
from .conversation import Message
from .errors import InputError
from .propensity import ARMS
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
    # A conversation's messages (rm_training.conversation), ``prompt`` being their text rendering; None
    # for a plain prompt.
    messages: list[Message] | None = None
    # Active selection, per judgment of the pair in the file's order (a judgments file's ``arm`` and
    # ``propensity``): the arm that chose the pair and the probability it was chosen, None where a judgment
    # has none. Both empty when no judgment of the pair has either (the default order, a preferences file),
    # so that such data compares and digests as it did before active selection.
    arms: tuple[str | None, ...] = ()
    propensities: tuple[float | None, ...] = ()

    @property
    def decisive_votes(self) -> int:
        return self.votes_chosen + self.votes_rejected

    @property
    def conversation(self) -> str | list[Message]:
        """The prompt as the encoder takes it: the messages of a conversation, else the text."""
        return self.prompt if self.messages is None else self.messages


class DataError(InputError):
    """A data file the trainer cannot use. The message is one line that names the file and the line (and
    the field) when there is one: ``prefs.jsonl: line 3: votes.a: must be ...``."""

    def __init__(
        self,
        message: str,
        *,
        line: int | None = None,
        field: str | None = None,
        path: str | Path | None = None,
    ) -> None:
        self.message, self.line, self.field, self.path = message, line, field, path
        where = [str(path)] if path is not None else []
        if line is not None:
            where.append(f"line {line}")
        if field:
            where.append(field)
        super().__init__(": ".join([*where, message]))

    def in_file(self, path: str | Path) -> DataError:
        return DataError(self.message, line=self.line, field=self.field, path=path)


@dataclass(frozen=True)
class ComparisonData:
    """The comparisons a file makes, and what became of its other pairs, so that none is lost unseen."""

    comparisons: list[Comparison]
    rows: int
    # Pairs the votes rule (rm_training.votes) leaves out: no side with a strict majority, or no votes.
    left_out: int = 0
    # Pairs whose two responses are the same text: there is nothing to prefer, so they are dropped.
    identical: int = 0
    # Pairs a reviewer left out of training (the judgments export's rows with ``left_out: true``).
    left_out_by_review: int = 0

    def usable(self, source: str | Path | None = None) -> list[Comparison]:
        """The comparisons; a DataError that says where the pairs went when there are none."""
        if self.comparisons:
            return self.comparisons
        if not self.rows:
            raise DataError("no pairs", path=source)
        rows = "1 row" if self.rows == 1 else f"{self.rows} rows"
        losses = [
            f"{count} {what}"
            for count, what in (
                (self.left_out, "left out by the votes rule (no side with a strict majority)"),
                (self.identical, "with the same text on both sides"),
                (self.left_out_by_review, "left out of training by a reviewer"),
            )
            if count
        ]
        raise DataError(f"no usable pairs in {rows}: " + ("; ".join(losses) or "none"), path=source)


# Vote counts are at most a PostgreSQL integer, as the judgments they count; beyond it a weight stops
# being an exact float (and past 1e308 stops being one at all).
MAX_VOTES = 2**31 - 1
_CHUNK_BYTES = 1 << 16


def read_data(path: str | Path, *, use_votes: bool = True, ties: TiePolicy = "drop") -> ComparisonData:
    """Read a preferences or a judgments JSONL file (told apart by the first row's fields).

    Every problem is a :class:`DataError` naming the file and the first bad line: text the project's one
    reader (:mod:`rm_training.jsonl`) refuses, and rows whose fields have the wrong type.
    """
    rows = _read_jsonl(Path(path))
    if not rows:
        raise DataError("no rows: the file is empty", path=path)
    number, first = rows[0]
    try:
        if "chosen" in first:
            return _from_preferences(rows, use_votes=use_votes, ties=ties)
        if "choice" in first:
            return _from_judgments(rows, use_votes=use_votes, ties=ties)
    except DataError as error:
        raise error.in_file(path) from None
    raise DataError(
        "neither a preferences row (prompt, chosen, rejected) "
        "nor a judgments row (pair_id, response_a, response_b, choice)",
        line=number,
        path=path,
    )


def read_comparisons(
    path: str | Path, *, use_votes: bool = True, ties: TiePolicy = "drop"
) -> list[Comparison]:
    """The comparisons of :func:`read_data`, without the counts of the pairs left out."""
    return read_data(path, use_votes=use_votes, ties=ties).comparisons


def _read_jsonl(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number, row) of every non-blank line, read by rm_training.jsonl so that the trainer refuses
    what the API and the commands refuse, in the same words."""
    rows: list[tuple[int, dict[str, Any]]] = []
    try:
        with path.open("rb") as stream:
            for line in jsonl.read_lines(iter(lambda: stream.read(_CHUNK_BYTES), b"")):
                if line.error is not None:
                    raise DataError(line.error, line=line.number, field=line.field, path=path)
                if not isinstance(line.value, dict):
                    raise DataError(
                        f"a row must be a JSON object, not {_kind(line.value)}", line=line.number, path=path
                    )
                rows.append((line.number, line.value))
    except IsADirectoryError:
        raise DataError("a directory, not a JSON Lines file", path=path) from None
    except FileNotFoundError:
        raise DataError("no such file", path=path) from None
    except OSError as error:
        raise DataError(f"cannot be read: {error.strerror or error}", path=path) from None
    return rows


def _kind(value: Any) -> str:
    """What a JSON value is, for a message, without echoing a long value into it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        text = repr(value)
        return f"the number {text if len(text) <= 20 else text[:17] + '...'}"
    if isinstance(value, str):
        return repr(value) if len(value) <= 20 else repr(value[:17]) + "..."
    return "a list" if isinstance(value, list) else "an object"


def _text(row: dict[str, Any], key: str, number: int, *, optional: bool = False) -> str:
    """A string field. Empty is allowed (real data has empty responses); missing is allowed only for an
    optional field (the prompt), and null counts as missing there."""
    if key not in row or (optional and row[key] is None):
        if optional:
            return ""
        raise DataError("missing", line=number, field=key)
    value = row[key]
    if not isinstance(value, str):
        raise DataError(f"must be a string, not {_kind(value)}", line=number, field=key)
    return value


def _number(row: dict[str, Any], key: str, number: int) -> float | None:
    """An optional non-negative number (a margin, a strength); None when absent or null."""
    value = row.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"must be a number, not {_kind(value)}", line=number, field=key)
    try:
        result = float(value)
    except OverflowError:
        raise DataError("is too large for a number", line=number, field=key) from None
    # The reader refuses NaN and infinities in files; rows built in Python reach here too.
    if not math.isfinite(result) or result < 0:
        raise DataError(f"must be a finite number of at least 0, not {_kind(value)}", line=number, field=key)
    return result


def _votes(row: dict[str, Any], number: int) -> Votes:
    """A preferences row's vote counts; a row without them is one vote for chosen."""
    raw = row.get("votes")
    if raw is None:
        return Votes(a=1)
    if not isinstance(raw, dict):
        raise DataError(
            f"must be an object of counts a, b, tie, not {_kind(raw)}", line=number, field="votes"
        )
    unknown = sorted(set(raw) - set(CHOICES))
    if unknown:
        raise DataError(
            f"unknown choice {_kind(unknown[0])}: the counts are a, b and tie", line=number, field="votes"
        )
    counts: dict[str, int] = {}
    for choice in CHOICES:
        value = raw.get(choice, 0)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VOTES:
            raise DataError(
                f"must be a whole number from 0 to {MAX_VOTES}, not {_kind(value)}",
                line=number,
                field=f"votes.{choice}",
            )
        counts[choice] = value
    return Votes(**counts)


def _identity(
    row: dict[str, Any], number: int, *, keys: Sequence[str] = ("pair_id", "external_id")
) -> str | None:
    """The first id of ``keys`` given (the pair's: pair_id, else external_id); None when none is given (or
    all are empty)."""
    identity = None
    for key in keys:
        value = row.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise DataError(f"must be a string or an integer, not {_kind(value)}", line=number, field=key)
        if identity is None and value != "":
            identity = str(value)
    return identity


def _comparison(
    *,
    prompt: str,
    messages: list[Message] | None,
    text_a: str,
    text_b: str,
    votes: Votes,
    margins: dict[str, float | None],
    pair_id: str | None,
    use_votes: bool,
    ties: TiePolicy,
    selections: Sequence[tuple[str | None, float | None]] = (),
) -> Comparison | None:
    """Orient a pair by its votes (rm_training.votes, the one rule); None when it is left out."""
    result = outcome(votes, ties=ties, use_votes=use_votes)
    if result is None:
        return None
    chosen, rejected = (text_a, text_b) if result.chosen == "a" else (text_b, text_a)
    return Comparison(
        prompt=prompt,
        messages=messages,
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
        **_selections(selections),
    )


def _selections(selections: Sequence[tuple[str | None, float | None]]) -> dict[str, Any]:
    """Comparison's ``arms`` and ``propensities`` of a pair's (arm, propensity) per judgment: both empty when
    no judgment has either."""
    if all(arm is None and propensity is None for arm, propensity in selections):
        return {}
    return {
        "arms": tuple(arm for arm, _ in selections),
        "propensities": tuple(propensity for _, propensity in selections),
    }


# The smallest propensity read: 1/p weighs a pair (in float32 in the loss, squared in float64 in the
# held-out standard error and the effective number of pairs), so a smaller one would make them inf or NaN
# (1e-200 crashed the trainer). The engine's smallest is epsilon / candidates, chosen with probability
# epsilon: far above this for any epsilon that ever draws.
MIN_PROPENSITY = 1e-30


def _selection(row: dict[str, Any], number: int) -> tuple[str | None, float | None]:
    """A judgments row's ``arm`` and ``propensity`` (both optional: files from before active selection,
    or from elsewhere, have neither)."""
    arm = row.get("arm")
    if arm is not None and arm not in ARMS:
        raise DataError(
            f"must be 'uncertainty', 'random' or null, not {_kind(arm)}", line=number, field="arm"
        )
    propensity = row.get("propensity")
    if propensity is None:
        return arm, None
    if isinstance(propensity, bool) or not isinstance(propensity, int | float):
        raise DataError(f"must be a number, not {_kind(propensity)}", line=number, field="propensity")
    # The reader refuses NaN in files; rows built in Python reach here too (NaN fails both comparisons).
    if not 0 < propensity <= 1:
        raise DataError(
            f"must be a probability greater than 0 and at most 1, not {_kind(propensity)}",
            line=number,
            field="propensity",
        )
    if propensity < MIN_PROPENSITY:
        raise DataError(
            f"must be at least {MIN_PROPENSITY:g} (its inverse weighs the pair, and a larger one overflows "
            f"the weights' arithmetic), not {_kind(propensity)}",
            line=number,
            field="propensity",
        )
    return arm, float(propensity)


def comparisons_from_preferences(
    rows: Sequence[tuple[int, dict[str, Any]]], *, use_votes: bool = True, ties: TiePolicy = "drop"
) -> list[Comparison]:
    """Rows of the preferences export (or any TRL-style prompt/chosen/rejected file).

    ``votes`` and ``margin`` are optional; a row without votes is one vote for chosen. A row whose two
    responses are the same text is dropped (see :class:`ComparisonData`)."""
    return _from_preferences(rows, use_votes=use_votes, ties=ties).comparisons


def _from_preferences(
    rows: Sequence[tuple[int, dict[str, Any]]], *, use_votes: bool, ties: TiePolicy
) -> ComparisonData:
    comparisons = []
    left_out = identical = 0
    for number, row in rows:
        prompt, messages, chosen, rejected = _preference_texts(row, number)
        votes = _votes(row, number)
        # A TRL-style file's "margin", else the chosen side's mean "strength" of Pairwise's export.
        margin = _number(row, "margin", number)
        if margin is None:
            margin = _number(row, "strength", number)
        pair_id = _identity(row, number)
        if chosen == rejected:
            identical += 1
            continue
        # The export orients rows so that chosen is the majority, whichever of a/b it was.
        comparison = _comparison(
            prompt=prompt,
            messages=messages,
            text_a=chosen,
            text_b=rejected,
            votes=Votes(a=max(votes.a, votes.b), b=min(votes.a, votes.b), tie=votes.tie),
            margins={"a": margin, "b": None},
            pair_id=pair_id,
            use_votes=use_votes,
            ties=ties,
        )
        if comparison is None:
            left_out += 1
        else:
            comparisons.append(comparison)
    return ComparisonData(comparisons, rows=len(rows), left_out=left_out, identical=identical)


def _preference_texts(row: dict[str, Any], number: int) -> tuple[str, list[Message] | None, str, str]:
    """(prompt text, messages or None, chosen, rejected) of a preferences row: TRL's standard row (all
    text), or its conversational rows (prompt as messages with one assistant message per side, or no prompt
    and each side a whole conversation), read by rm_training.conversation as the import reads them."""
    if not any(isinstance(row.get(key), list) for key in ("prompt", "chosen", "rejected")):
        prompt = _text(row, "prompt", number, optional=True)
        return prompt, None, _text(row, "chosen", number), _text(row, "rejected", number)
    try:
        value, chosen, rejected = conversation.pair_from_row(row, "trl")
    except conversation.RowError as error:
        field, message = error.problems[0]
        raise DataError(message, line=number, field=field or None) from None
    prompt, messages = _conversation(value, number, "prompt")
    return prompt, messages, chosen, rejected


def _conversation(value: Any, number: int, field: str) -> tuple[str, list[Message] | None]:
    """A prompt checked by rm_training.conversation's rules: (its text, its messages or None)."""
    problems = conversation.prompt_problems(value)
    if problems:
        path, message = problems[0]
        raise DataError(message, line=number, field=f"{field}.{path}" if path else field)
    return conversation.normalize(value)


def comparisons_from_judgments(
    rows: Sequence[tuple[int, dict[str, Any]]], *, use_votes: bool = True, ties: TiePolicy = "drop"
) -> list[Comparison]:
    """Rows of the judgments export, one per judgment, grouped into one comparison per pair. A pair whose
    two responses are the same text is dropped (see :class:`ComparisonData`)."""
    return _from_judgments(rows, use_votes=use_votes, ties=ties).comparisons


def _from_judgments(
    rows: Sequence[tuple[int, dict[str, Any]]], *, use_votes: bool, ties: TiePolicy
) -> ComparisonData:
    pairs: dict[str, dict[str, Any]] = {}
    votes: dict[str, dict[str, int]] = defaultdict(lambda: {"a": 0, "b": 0, "tie": 0})
    strengths: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"a": [], "b": []})
    selections: dict[str, list[tuple[str | None, float | None]]] = defaultdict(list)
    judged: dict[tuple[str, str], int] = {}  # (pair, rater) -> its line
    left_out_by_review: set[str] = set()
    for number, row in rows:
        prompt = _text(row, "prompt", number, optional=True)
        messages = None
        if row.get("messages") is not None:
            # The judgments export's conversation: its messages are the prompt, "prompt" their rendering.
            prompt, messages = _conversation(row["messages"], number, "messages")
        text_a, text_b = _text(row, "response_a", number), _text(row, "response_b", number)
        choice = row.get("choice")
        if not isinstance(choice, str) or choice not in CHOICES:
            raise DataError(f"must be 'a', 'b' or 'tie', not {_kind(choice)}", line=number, field="choice")
        strength = _number(row, "strength", number)
        selection = _selection(row, number)
        identity = _identity(row, number)
        key = _digest([prompt, text_a, text_b]) if identity is None else identity
        pair = pairs.setdefault(
            key, {"prompt": prompt, "messages": messages, "a": text_a, "b": text_b, "line": number}
        )
        if (pair["prompt"], pair["messages"], pair["a"], pair["b"]) != (prompt, messages, text_a, text_b):
            # Two texts under one id: which one the votes were for cannot be told, so neither is guessed.
            raise DataError(
                f"pair {_kind(key)} has a different prompt or responses than on line {pair['line']}",
                line=number,
            )
        rater = _identity(row, number, keys=("rater",))
        if rater is not None:
            first = judged.setdefault((key, rater), number)
            if first != number:
                raise DataError(
                    f"rater {_kind(rater)} judged pair {_kind(key)} already on line {first}: a rater counts "
                    "once per pair",
                    line=number,
                )
        reviewed = row.get("left_out", False)
        if not isinstance(reviewed, bool):
            raise DataError(f"must be true or false, not {_kind(reviewed)}", line=number, field="left_out")
        if reviewed:
            # A reviewer left the pair out of training (its rows stay in the export, marked so).
            left_out_by_review.add(key)
            continue
        votes[key][choice] += 1
        selections[key].append(selection)
        if choice != "tie" and strength is not None:
            strengths[key][choice].append(strength)
    comparisons = []
    left_out = identical = 0
    for key, pair in pairs.items():
        if key in left_out_by_review:
            continue
        if pair["a"] == pair["b"]:
            identical += 1
            continue
        comparison = _comparison(
            prompt=pair["prompt"],
            messages=pair["messages"],
            text_a=pair["a"],
            text_b=pair["b"],
            votes=Votes(**votes[key]),
            # The margin of the side the votes favour: the mean strength its judgments gave.
            margins={side: sum(s) / len(s) if s else None for side, s in strengths[key].items()},
            pair_id=key,
            use_votes=use_votes,
            ties=ties,
            selections=selections[key],
        )
        if comparison is None:
            left_out += 1
        else:
            comparisons.append(comparison)
    return ComparisonData(
        comparisons,
        rows=len(rows),
        left_out=left_out,
        identical=identical,
        left_out_by_review=len(left_out_by_review),
    )


def drop_identical(comparisons: Sequence[Comparison]) -> tuple[list[Comparison], int]:
    """The comparisons whose two responses differ as text, and how many did not: for examples given in
    Python, which :func:`read_data` has not sorted."""
    kept = [c for c in comparisons if c.chosen != c.rejected]
    return kept, len(comparisons) - len(kept)


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
    return _digest([json.dumps(_digested(c), sort_keys=True) for c in comparisons])


def _digested(comparison: Comparison) -> dict[str, Any]:
    """A comparison's fields; without messages for a plain prompt (and without arms and propensities when
    it has none), so that data without conversations (or active selection) has the digest it had before
    they existed."""
    fields = asdict(comparison)
    if fields["messages"] is None:
        del fields["messages"]
    for key in ("arms", "propensities"):  # empty without active selection
        if not fields[key]:
            del fields[key]
    return fields


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
