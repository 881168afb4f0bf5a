"""Votes on a pair to one comparison: the rule that the trainer, the preferences export and the agreement
figures share. Plain Python: no Django, no torch (the web process imports it).

The rule, stated once:

- The vocabulary of a judgment is ``a``, ``b`` or ``tie`` (:data:`CHOICES`).
- ``ties="drop"`` (the default, and what the preferences export does): a pair counts when one side, a or
  b, has strictly more votes than each of the other two categories. A pair whose top is shared
  ({a: 1, b: 1}, {a: 2, tie: 2}) or whose most-voted category is tie ({a: 1, tie: 2}) is left out. The
  pair's target is the winner's share of the decisive votes, weighted by those votes; tie votes are ignored.
- ``ties="half"``: a tie vote counts half for each side. A pair whose a and b votes are equal (all-tie
  pairs too) trains towards 0.5; otherwise the side with more votes is chosen, with target
  (winner + ties / 2) / all votes.
- ``use_votes=False``: the same pairs, each as one unit with target 1 (0.5 for a tie example).

Inverse-propensity weights (the trainer's ``--ipw``), when a pair's judgments were served by active
selection: each judgment's assignment logged the probability ``p`` that its pair was the one chosen.
Judgment by judgment the weight would be ``1/p`` (1 for a judgment without a propensity: default order,
imported). Aggregated, the pair keeps its target (the vote share above: every vote has the same say in
*what* the pair teaches, since a propensity says how the pair came to be asked, not how far a vote is to
be believed) and its weight is multiplied by :func:`ipw_factor`, the mean of ``1/p`` over the pair's
judgments. With votes and no tie votes that makes the pair's weight exactly the sum of its judgments'
``1/p``, as if each judgment were an example weighted by its inverse propensity, with the label of each
replaced by the pair's vote share (the same expected gradient, less variance than letting one rarely
chosen vote outweigh the others in the target). Tie votes count in the mean like the others: the
propensity is the pair's, whatever the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

CHOICES = ("a", "b", "tie")
SIDES = ("a", "b")

Side = Literal["a", "b"]
TiePolicy = Literal["drop", "half"]


def ipw_factor(propensities: Sequence[float | None]) -> float:
    """What ``--ipw`` multiplies a pair's weight by: the mean over its judgments of 1/propensity, a judgment
    without a propensity counting 1 (see the module docstring); 1 for a pair without judgments listed."""
    if not propensities:
        return 1.0
    return sum(1.0 if p is None else 1.0 / p for p in propensities) / len(propensities)


@dataclass(frozen=True)
class Votes:
    """How many judgments of a pair chose a, b and tie."""

    a: int = 0
    b: int = 0
    tie: int = 0

    @property
    def total(self) -> int:
        return self.a + self.b + self.tie

    def majority(self) -> str | None:
        """The choice with strictly more votes than each other choice; None when the top is shared."""
        counts = {"a": self.a, "b": self.b, "tie": self.tie}
        top = max(counts.values())
        leaders = [choice for choice, n in counts.items() if n == top]
        return leaders[0] if top > 0 and len(leaders) == 1 else None


@dataclass(frozen=True)
class Outcome:
    """A pair's votes as one training example, oriented so that ``chosen`` is the side they favour."""

    chosen: Side  # for a tie example (``tie``), "a" by convention
    tie: bool  # the votes favour neither side: the example trains towards 0.5
    target: float  # probability that chosen is preferred, which the loss trains towards
    weight: float  # how many votes the example stands for (1 without use_votes)
    votes_chosen: int
    votes_rejected: int
    votes_tie: int

    @property
    def rejected(self) -> Side:
        return "b" if self.chosen == "a" else "a"

    @property
    def agreement(self) -> float:
        """Share of all the pair's votes that went to the chosen side (the export's ``agreement``)."""
        total = self.votes_chosen + self.votes_rejected + self.votes_tie
        return self.votes_chosen / total if total else 0.0


def outcome(votes: Votes, *, ties: TiePolicy = "drop", use_votes: bool = True) -> Outcome | None:
    """The example a pair's votes make under the rule above, or None when the pair is left out."""
    if ties == "drop":
        winner = votes.majority()
        if winner not in SIDES:
            return None
        chosen: Side = "a" if winner == "a" else "b"
        won, lost = (votes.a, votes.b) if chosen == "a" else (votes.b, votes.a)
        target, weight = (won / (won + lost), float(won + lost)) if use_votes else (1.0, 1.0)
        return Outcome(chosen, False, target, weight, won, lost, votes.tie)
    if votes.total == 0:
        return None
    is_tie = votes.a == votes.b
    chosen = "b" if votes.b > votes.a else "a"
    won, lost = (votes.a, votes.b) if chosen == "a" else (votes.b, votes.a)
    share = (won + votes.tie / 2) / votes.total if use_votes else 1.0
    target = 0.5 if is_tie else share
    weight = float(votes.total) if use_votes else 1.0
    return Outcome(chosen, is_tie, target, weight, won, lost, votes.tie)


def preference_row(
    *, prompt: str, response_a: str, response_b: str, votes: Votes, strength: float | None = None
) -> dict[str, object] | None:
    """A pair as a row of the preferences file (TRL's prompt/chosen/rejected, plus votes, agreement and
    the chosen side's mean strength), or None when the rule leaves it out. The trainer reads such rows back
    to the same example.

    Not "margin": TRL's RewardTrainer reads a column of that name as a logit margin to subtract, and fails
    on the nulls of pairs without strength. The trainer here takes ``strength`` as its margin.
    """
    result = outcome(votes, ties="drop")
    if result is None:
        return None
    texts = {"a": response_a, "b": response_b}
    return {
        "prompt": prompt,
        "chosen": texts[result.chosen],
        "rejected": texts[result.rejected],
        "votes": {"a": votes.a, "b": votes.b, "tie": votes.tie},
        "agreement": round(result.agreement, 3),
        "strength": strength,
    }
