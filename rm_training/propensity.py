"""Active selection's arms and inverse-propensity estimates, on plain numbers: the held-out evaluation reads
them, and so can anything else without torch (no Django, no torch).

Every judgment served under active selection carries its arm ("uncertainty" or "random") and the
probability that its pair was the one chosen, given the rule and the candidates at that moment (the
judgments export's ``arm`` and ``propensity``). Judgments of the default order and imported ones have
neither; their pairs are the "default" arm here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

ARMS = ("uncertainty", "random")
# The arm of a pair whose first judgment has none: the default order, or imported.
DEFAULT_ARM = "default"


def pair_arm(arms: Sequence[str | None]) -> str:
    """A pair's arm: the arm of its first judgment (in the file's order, the export's judgment id order),
    the selection that brought the pair into the data; later judgments that came from another arm (the
    pair was still open and was chosen again, by the other rule) do not move it, so that every pair
    counts under one arm and the arms' pairs add up to all pairs. ``DEFAULT_ARM`` without one."""
    return arms[0] if arms and arms[0] is not None else DEFAULT_ARM


@dataclass(frozen=True)
class IpwEstimate:
    """The self-normalised (Hajek) inverse-propensity estimate of a mean over the candidate pool."""

    estimate: float
    # Linearised (delta-method) standard error with pairs as the units, times sqrt(n / (n - 1)); None for
    # a single pair.
    standard_error: float | None
    pairs: int
    # Kish's effective number of pairs, (sum w)^2 / sum w^2: how many equally weighted pairs the
    # estimate is worth.
    effective_pairs: float


def effective_count(weights: Sequence[float]) -> float:
    """Kish's effective number of units, (sum w)^2 / sum w^2: how many equally weighted units the weights
    are worth (0 for none)."""
    squares = sum(w * w for w in weights)
    return sum(weights) ** 2 / squares if squares else 0.0


def draws_weight(propensities: Sequence[float | None]) -> float:
    """A pair's weight in the estimate: the sum of 1/p over its judgments that have a propensity, each
    judgment one draw of the pair by the selection rule (Hansen-Hurwitz: a pair chosen twice stands for
    twice the candidates); 0 when none has one (the pair was not drawn by the rule)."""
    return sum(1.0 / p for p in propensities if p is not None)


def ipw_mean(values: Sequence[float], weights: Sequence[float]) -> IpwEstimate | None:
    """sum(w x value) / sum(w) over the units with a positive weight, with its standard error
    sqrt(n / (n - 1) x sum(w^2 (value - estimate)^2)) / sum(w); None when no unit has a weight.

    With ``weights`` from :func:`draws_weight` and a pair's correctness as its value, this estimates the
    accuracy the model would have on pairs drawn uniformly from the candidates the selections drew from,
    however unevenly the rule drew them. Self-normalised rather than the plain Horvitz-Thompson sum, which
    needs the number of candidates: slightly biased for few pairs (order 1/n), with much less variance
    when a few weights are large.
    """
    units = [(v, w) for v, w in zip(values, weights, strict=True) if w > 0]
    if not units:
        return None
    total = sum(w for _, w in units)
    estimate = sum(w * v for v, w in units) / total
    n = len(units)
    spread = sum(w * w * (v - estimate) ** 2 for v, w in units)
    error = math.sqrt(n / (n - 1) * spread) / total if n > 1 else None
    return IpwEstimate(
        estimate=estimate,
        standard_error=error,
        pairs=n,
        effective_pairs=effective_count([w for _, w in units]),
    )
