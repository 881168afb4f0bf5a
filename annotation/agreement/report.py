"""The agreement report: every figure of a project's judgments and the per-rater rows with their flags,
assembled from annotation.agreement.statistics (the rows come from annotation.selectors.agreement, one
array per column; no ORM here). Categories are a / b / tie (0, 1, 2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from .statistics import (
    MIN_SHARED_PAIRS,
    FloatArray,
    IntArray,
    _rated,
    binomial_p_values,
    bootstrap_intervals,
    ceiling_accuracy,
    cohen_kappas,
    count_table,
    dense_index,
    fleiss_kappa,
    judgment_pairs,
    krippendorff_alpha,
    percent_agreement,
    strict_majority,
)

A, B, TIE = 0, 1, 2
CATEGORIES = ("a", "b", "tie")

# Flags of the per-rater table: each rule is stated in the flag's reason, with the rater's own figures.
FLAG_GOLD_MIN = 5  # gold judgments before gold accuracy is judged
FLAG_GOLD_ACCURACY = 0.6
FLAG_SIDE_MIN = 10  # decisive judgments with known sides before a side bias is judged
FLAG_SIDE_P = 0.01
FLAG_SIDE_DEVIATION = 0.2  # |left rate - 0.5| at least this much, besides the test
FLAG_LONGER_MIN = 10
FLAG_LONGER_P = 0.01
FLAG_LONGER_RATE = 0.9  # and at most 1 - this: always the shorter is as suspicious
FLAG_FAST_MIN = 5  # timed judgments before speed is judged
FLAG_FAST_SHARE = 0.25
FLAG_MAJORITY_MIN = 10  # judgments where the others had a majority
FLAG_MAJORITY_AGREEMENT = 0.5


@dataclass(frozen=True)
class JudgmentArrays:
    """The columns the figures need, one entry per judgment (and per pair for the pair_ arrays)."""

    pair: IntArray  # index into the pair_ arrays
    rater: IntArray  # dense rater index, 0 .. n_raters - 1
    choice: IntArray  # A, B or TIE
    strength: IntArray  # 1 .. K, 0 when none
    shown_left: IntArray  # A or B shown on the left, -1 when unknown (imported)
    time_ms: IntArray  # time on task measured by the server, -1 when unknown
    day: IntArray  # days since 1970-01-01 (UTC) of the judgment
    pair_longer: IntArray  # per pair: A or B is the longer response, -1 when both are as long
    pair_gold: IntArray  # per pair: the gold answer (A, B, TIE), -1 when none
    n_raters: int

    def __post_init__(self) -> None:
        n = len(self.pair)
        columns = (self.rater, self.choice, self.strength, self.shown_left, self.time_ms, self.day)
        if any(len(c) != n for c in columns) or len(self.pair_longer) != len(self.pair_gold):
            raise ValueError("every judgment column must have one entry per judgment")

    def keep(self, mask: npt.NDArray[np.bool_]) -> JudgmentArrays:
        """The judgments where mask is true (the pair arrays and rater numbering stay)."""
        return JudgmentArrays(
            pair=self.pair[mask],
            rater=self.rater[mask],
            choice=self.choice[mask],
            strength=self.strength[mask],
            shown_left=self.shown_left[mask],
            time_ms=self.time_ms[mask],
            day=self.day[mask],
            pair_longer=self.pair_longer,
            pair_gold=self.pair_gold,
            n_raters=self.n_raters,
        )


@dataclass(frozen=True)
class RaterFigures:
    rater: int  # dense index in the arrays
    judgments: int
    agreement: float  # agreeing share of the pairs of judgments it shares with other raters
    agreement_pairs: int
    majority_agreement: float  # agrees with the strict majority of the others (leave-one-out)
    majority_judgments: int
    left_rate: float
    left_judgments: int
    left_p_value: float  # two-sided binomial test of left_rate against 0.5
    longer_rate: float  # decisive judgments that chose the longer response
    longer_judgments: int
    longer_p_value: float
    median_time_ms: float
    very_fast_share: float
    timed_judgments: int
    gold_accuracy: float
    gold_judgments: int
    flags: tuple[tuple[str, str], ...] = ()  # (code, reason)


@dataclass(frozen=True)
class AgreementFigures:
    pairs: int  # pairs with two or more judgments
    judgments: int  # judgments on those pairs
    raters: int  # raters with a judgment on those pairs
    judgments_total: int  # all judgments read (single-judgment pairs too)
    percent_agreement: float
    percent_agreement_interval: tuple[float, float]
    cohen_kappa: float
    cohen_kappa_rater_pairs: int  # rater pairs sharing min_shared pairs or more
    cohen_kappa_defined_pairs: int  # of which with a kappa (not both raters on one category only)
    fleiss_kappa: float
    krippendorff_alpha: float
    krippendorff_alpha_interval: tuple[float, float]
    krippendorff_alpha_ordinal: float | None  # None when the project records no strength
    krippendorff_alpha_ordinal_judgments: int  # the judgments it used (on the current strength scale)
    decisive_agreement: float  # percent agreement among decisive (a / b) judgments: the ceiling's basis
    decisive_agreement_interval: tuple[float, float]
    ceiling_accuracy: float
    ceiling_accuracy_interval: tuple[float, float]
    left_rate: float
    left_judgments: int
    left_p_value: float
    longer_rate: float
    longer_judgments: int
    judgments_per_day: tuple[tuple[int, int], ...]  # (days since 1970-01-01, judgments)
    per_rater: tuple[RaterFigures, ...] = field(default_factory=tuple)


def _share(hits: npt.NDArray[Any], totals: npt.NDArray[Any]) -> FloatArray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(totals > 0, hits / np.maximum(totals, 1), np.nan)


def _medians(group: IntArray, values: IntArray, n_groups: int) -> FloatArray:
    """The median of values in each group (nan for an empty group), from one sort."""
    if not len(values):
        return np.full(n_groups, np.nan)
    # One sort of group * span + value (non-negative values), cheaper than a lexsort of two columns.
    span = int(values.max()) + 1
    if (n_groups + 1) * span < 2**62:
        keys = np.sort(group * span + values)
        group, values = keys // span, (keys % span).astype(np.float64)
    else:
        order = np.lexsort((values, group))
        group, values = group[order], values[order].astype(np.float64)
    starts = np.searchsorted(group, np.arange(n_groups), side="left")
    ends = np.searchsorted(group, np.arange(n_groups), side="right")
    sizes = ends - starts
    medians = np.full(n_groups, np.nan)
    has = sizes > 0
    low = starts[has] + (sizes[has] - 1) // 2
    high = starts[has] + sizes[has] // 2
    medians[has] = (values[low] + values[high]) / 2
    return medians


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def _flags(r: RaterFigures, very_fast_ms: int) -> tuple[tuple[str, str], ...]:
    flags = []
    if r.gold_judgments >= FLAG_GOLD_MIN and r.gold_accuracy < FLAG_GOLD_ACCURACY:
        flags.append(
            (
                "low_gold_accuracy",
                f"Right on {_percent(r.gold_accuracy)} of {r.gold_judgments} gold pairs "
                f"(flagged below {_percent(FLAG_GOLD_ACCURACY)}).",
            )
        )
    if (
        r.left_judgments >= FLAG_SIDE_MIN
        and r.left_p_value < FLAG_SIDE_P
        and abs(r.left_rate - 0.5) >= FLAG_SIDE_DEVIATION
    ):
        flags.append(
            (
                "side_bias",
                f"Chose the left side in {_percent(r.left_rate)} of {r.left_judgments} decisive judgments "
                f"(binomial test against 50%: p = {r.left_p_value:.1g}; flagged when p < {FLAG_SIDE_P} and "
                f"the rate is {_percent(0.5 - FLAG_SIDE_DEVIATION)} or less, or "
                f"{_percent(0.5 + FLAG_SIDE_DEVIATION)} or more).",
            )
        )
    if (
        r.longer_judgments >= FLAG_LONGER_MIN
        and r.longer_p_value < FLAG_LONGER_P
        and abs(r.longer_rate - 0.5) >= FLAG_LONGER_RATE - 0.5
    ):
        flags.append(
            (
                "length_bias",
                f"Chose the longer response in {_percent(r.longer_rate)} of {r.longer_judgments} decisive "
                f"judgments (p = {r.longer_p_value:.1g} against 50%; flagged at "
                f"{_percent(1 - FLAG_LONGER_RATE)} or less, or {_percent(FLAG_LONGER_RATE)} or more).",
            )
        )
    if very_fast_ms > 0 and r.timed_judgments >= FLAG_FAST_MIN and r.very_fast_share >= FLAG_FAST_SHARE:
        flags.append(
            (
                "too_fast",
                f"{_percent(r.very_fast_share)} of {r.timed_judgments} timed judgments took under "
                f"{very_fast_ms / 1000:g} s (median {r.median_time_ms / 1000:.1f} s; flagged at "
                f"{_percent(FLAG_FAST_SHARE)} or more).",
            )
        )
    if r.majority_judgments >= FLAG_MAJORITY_MIN and r.majority_agreement < FLAG_MAJORITY_AGREEMENT:
        flags.append(
            (
                "low_majority_agreement",
                f"Agreed with the majority of the other raters on {_percent(r.majority_agreement)} of "
                f"{r.majority_judgments} pairs (flagged below {_percent(FLAG_MAJORITY_AGREEMENT)}).",
            )
        )
    return tuple(flags)


def agreement_figures(
    data: JudgmentArrays,
    *,
    strength_levels: int = 0,
    very_fast_ms: int = 0,
    min_shared: int = MIN_SHARED_PAIRS,
    n_boot: int = 2000,
    seed: int = 0,
) -> AgreementFigures:
    """Every figure of the report from the arrays.

    Gold pairs count for gold accuracy (and the side, length and time figures) only: every rater sees
    every gold pair, so pooled with the rest they would weigh ~n²/2 each and swamp the inter-rater
    figures. Those (percent agreement, kappas, alphas, intervals, ceiling, agreement with the others and
    with their majority) are over the regular pairs.
    """
    n_pairs, n_raters = len(data.pair_longer), data.n_raters
    regular = data.pair_gold[data.pair] < 0
    inter = data if regular.all() else data.keep(regular)  # the judgments on regular pairs
    counts = count_table(inter.pair, inter.choice, n_pairs, 3)
    per_pair = counts.sum(axis=1)
    on_shared = per_pair[inter.pair] >= 2
    # The pooled figures read only the pairs with two or more judgments (the others carry no agreement):
    # taken once here, not by each figure from every judged pair.
    rated = _rated(counts)
    percent = percent_agreement(rated)
    intervals = bootstrap_intervals(rated, n_boot=n_boot, seed=seed)
    low, high = intervals["percent_agreement"]
    # The ceiling is read beside a reward model's accuracy against decisive judgments (ties cannot be
    # predicted), so it comes from the agreement among decisive judgments: rm_training's rater_agreement.
    decisive_counts = rated[:, :TIE]
    decisive_percent = percent_agreement(decisive_counts)
    decisive_low, decisive_high = bootstrap_intervals(decisive_counts, n_boot=n_boot, seed=seed)[
        "percent_agreement"
    ]

    ordinal, ordinal_judgments = None, 0
    if strength_levels > 0:
        # The signed strength scale: b by K .. b by 1, tie, a by 1 .. a by K. Decisive judgments without
        # a strength on the current scale (imported ones may lack it; the scale may have shrunk) are left
        # out of this figure, and ordinal_judgments says how many it used.
        signed = np.where(inter.choice == A, inter.strength, np.where(inter.choice == B, -inter.strength, 0))
        known = (inter.choice == TIE) | ((inter.strength >= 1) & (inter.strength <= strength_levels))
        ordinal_counts = count_table(
            inter.pair[known], signed[known] + strength_levels, n_pairs, 2 * strength_levels + 1
        )
        ordinal = krippendorff_alpha(ordinal_counts, "ordinal")
        ordinal_judgments = int(_rated(ordinal_counts).sum())

    # Two judgments of one pair exist only on shared pairs.
    shared = np.flatnonzero(on_shared)
    first, second = (shared[side] for side in judgment_pairs(inter.pair[shared]))
    *_, kappas = cohen_kappas(
        inter.pair, inter.rater, inter.choice, min_shared=min_shared, pairs=(first, second)
    )
    finite_kappas = kappas[np.isfinite(kappas)]

    # Per rater: agreement on shared pairs, from every two judgments of the same pair.
    agree = (inter.choice[first] == inter.choice[second]).astype(np.float64)
    pair_totals = np.bincount(inter.rater[first], minlength=n_raters) + np.bincount(
        inter.rater[second], minlength=n_raters
    )
    pair_agreeing = np.bincount(inter.rater[first], agree, minlength=n_raters) + np.bincount(
        inter.rater[second], agree, minlength=n_raters
    )
    # Leave-one-out: the others' votes on the pair, and their strict majority if there is one (none on a
    # pair judged once).
    majority = np.full(len(inter.pair), -1)
    majority[shared] = strict_majority(
        counts[inter.pair[shared]] - np.eye(3, dtype=np.int64)[inter.choice[shared]]
    )
    has_majority = majority >= 0
    with_majority = np.bincount(inter.rater[has_majority], minlength=n_raters)
    majority_agreeing = np.bincount(
        inter.rater[has_majority],
        (majority == inter.choice)[has_majority].astype(np.float64),
        minlength=n_raters,
    )
    decisive = data.choice != TIE
    sided = decisive & (data.shown_left >= 0)
    chose_left = sided & (data.choice == data.shown_left)
    longer = data.pair_longer[data.pair]
    lengthed = decisive & (longer >= 0)
    chose_longer = lengthed & (data.choice == longer)
    timed = data.time_ms >= 0
    fast = timed & (data.time_ms < very_fast_ms)
    gold = data.pair_gold[data.pair]
    golded = gold >= 0

    def per_rater(mask: npt.NDArray[np.bool_]) -> IntArray:
        return np.bincount(data.rater[mask], minlength=n_raters)

    judgments = np.bincount(data.rater, minlength=n_raters)
    sided_n, left_n = per_rater(sided), per_rater(chose_left)
    lengthed_n, longer_n = per_rater(lengthed), per_rater(chose_longer)
    timed_n, fast_n = per_rater(timed), per_rater(fast)
    gold_n, gold_right = per_rater(golded), per_rater(golded & (data.choice == gold))
    medians = _medians(data.rater[timed], data.time_ms[timed], n_raters)
    left_p, longer_p = binomial_p_values(left_n, sided_n), binomial_p_values(longer_n, lengthed_n)
    columns = {
        "agreement": _share(pair_agreeing, pair_totals),
        "majority_agreement": _share(majority_agreeing, with_majority),
        "left_rate": _share(left_n, sided_n),
        "longer_rate": _share(longer_n, lengthed_n),
        "very_fast_share": _share(fast_n, timed_n),
        "gold_accuracy": _share(gold_right, gold_n),
    }
    raters = []
    for r in np.flatnonzero(judgments):
        figures = RaterFigures(
            rater=int(r),
            judgments=int(judgments[r]),
            agreement=float(columns["agreement"][r]),
            agreement_pairs=int(pair_totals[r]),
            majority_agreement=float(columns["majority_agreement"][r]),
            majority_judgments=int(with_majority[r]),
            left_rate=float(columns["left_rate"][r]),
            left_judgments=int(sided_n[r]),
            left_p_value=float(left_p[r]),
            longer_rate=float(columns["longer_rate"][r]),
            longer_judgments=int(lengthed_n[r]),
            longer_p_value=float(longer_p[r]),
            median_time_ms=float(medians[r]),
            very_fast_share=float(columns["very_fast_share"][r]) if very_fast_ms > 0 else math.nan,
            timed_judgments=int(timed_n[r]),
            gold_accuracy=float(columns["gold_accuracy"][r]),
            gold_judgments=int(gold_n[r]),
        )
        raters.append(replace(figures, flags=_flags(figures, very_fast_ms)))

    days, day_index = dense_index(data.day)
    per_day = np.bincount(day_index, minlength=len(days))
    left_total, sided_total = int(chose_left.sum()), int(sided.sum())
    return AgreementFigures(
        pairs=int((per_pair >= 2).sum()),
        judgments=int(on_shared.sum()),
        raters=int((np.bincount(inter.rater[on_shared], minlength=n_raters) > 0).sum()),
        judgments_total=len(data.pair),
        percent_agreement=percent,
        percent_agreement_interval=(low, high),
        cohen_kappa=float(finite_kappas.mean()) if len(finite_kappas) else math.nan,
        cohen_kappa_rater_pairs=len(kappas),
        cohen_kappa_defined_pairs=len(finite_kappas),
        fleiss_kappa=fleiss_kappa(rated),
        krippendorff_alpha=krippendorff_alpha(rated),
        krippendorff_alpha_interval=intervals["krippendorff_alpha"],
        krippendorff_alpha_ordinal=ordinal,
        krippendorff_alpha_ordinal_judgments=ordinal_judgments,
        decisive_agreement=decisive_percent,
        decisive_agreement_interval=(decisive_low, decisive_high),
        ceiling_accuracy=ceiling_accuracy(decisive_percent),
        # The ceiling grows with the agreement, so the interval's ends map to the ceiling's.
        ceiling_accuracy_interval=(ceiling_accuracy(decisive_low), ceiling_accuracy(decisive_high)),
        left_rate=left_total / sided_total if sided_total else math.nan,
        left_judgments=sided_total,
        left_p_value=float(binomial_p_values(left_total, sided_total)),
        longer_rate=float(chose_longer.sum() / lengthed.sum()) if lengthed.any() else math.nan,
        longer_judgments=int(lengthed.sum()),
        judgments_per_day=tuple((int(d), int(n)) for d, n in zip(days, per_day, strict=True)),
        per_rater=tuple(raters),
    )
