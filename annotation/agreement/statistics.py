"""The agreement statistics on plain numpy arrays: no ORM, no report (annotation.agreement.report
assembles these into the project's figures and flags its raters).

A *count table* has one row per item (a pair) and one column per category: how many judgments of the item
chose it. The pooled figures (percent agreement, Fleiss' kappa, Krippendorff's alpha) are sums over those
rows, so they take milliseconds on a million judgments, and their bootstrap resamples the few distinct
rows ("profiles") instead of the items themselves.

Each figure is checked against a well-kept package (scikit-learn's cohen_kappa_score, statsmodels'
fleiss_kappa, the krippendorff package, scipy's binomtest) in tests/annotation/test_agreement_stats.py;
the packages are not used here because the per-rater-pair kappas and the bootstrap would call them tens of
thousands of times.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

MIN_SHARED_PAIRS = 10  # rater pairs need this many pairs in common for Cohen's kappa

CEILING_ASSUMPTION = (
    "Estimate: assumes every rater picks the truly better response with the same probability q, "
    "independently, so that two raters agree with probability q² + (1 - q)² = p; "
    "then q = (1 + sqrt(2p - 1)) / 2 is the accuracy a perfect reward model would reach against single "
    "judgments. p is the agreement among decisive judgments (a or b; ties left out, as in the reward "
    "model's accuracy), over regular pairs (gold pairs left out)."
)


# Pooled figures from count tables (pairs x categories)


def count_table(item: IntArray, category: IntArray, n_items: int, n_categories: int) -> IntArray:
    """How many judgments of each item chose each category."""
    flat = np.bincount(item * n_categories + category, minlength=n_items * n_categories)
    return flat.reshape(n_items, n_categories).astype(np.int64)


def dense_index(values: IntArray) -> tuple[IntArray, IntArray]:
    """The distinct values in order and each value's index among them, like
    ``np.unique(values, return_inverse=True)``; by a lookup table, without sorting, when the values span
    a range not much larger than their number (ids, days, rater pairs)."""
    if not len(values):
        return values[:0], values[:0]
    low, high = int(values.min()), int(values.max())
    if high - low > 4 * len(values) + (1 << 20):
        distinct, index = np.unique(values, return_inverse=True)
        return distinct, index.reshape(-1)
    present = np.zeros(high - low + 1, dtype=bool)
    present[values - low] = True
    position = np.cumsum(present) - 1
    return np.flatnonzero(present) + low, position[values - low]


def _rated(counts: IntArray) -> IntArray:
    """The rows with two or more judgments: the only ones that carry agreement."""
    return counts[counts.sum(axis=1) >= 2]


def percent_agreement(counts: IntArray) -> float:
    """Agreeing share of all pairs of judgments made on the same item (by distinct raters, as the
    database ensures): sum of C(n_ic, 2) over sum of C(n_i, 2)."""
    counts = _rated(counts)
    n = counts.sum(axis=1)
    pairs = float((n * (n - 1)).sum())
    return float((counts * (counts - 1)).sum()) / pairs if pairs else math.nan


def fleiss_kappa(counts: IntArray) -> float:
    """Fleiss' kappa over the items with two or more judgments.

    With different numbers of raters per item this is the usual extension of Fleiss (1971): each item's
    observed agreement P_i = sum_c n_ic (n_ic - 1) / (n_i (n_i - 1)) over its own n_i raters, averaged
    with equal weight per item; chance agreement is sum_c p_c^2 with p_c the share of all judgments in
    category c. With the same number of raters on every item it is exactly statsmodels' fleiss_kappa.
    """
    counts = _rated(counts)
    if not len(counts):
        return math.nan
    n = counts.sum(axis=1).astype(np.float64)
    observed = float(((counts * (counts - 1)).sum(axis=1) / (n * (n - 1))).mean())
    shares = counts.sum(axis=0) / n.sum()
    chance = float((shares**2).sum())
    return (observed - chance) / (1 - chance) if chance < 1 else math.nan


def _coincidences(counts: IntArray) -> FloatArray:
    """Krippendorff's coincidence matrix of each item: (n_uc n_uk - [c = k] n_uc) / (m_u - 1)."""
    counts = _rated(counts).astype(np.float64)
    m = counts.sum(axis=1)
    outer = counts[:, :, None] * counts[:, None, :]
    diagonal = np.eye(counts.shape[1])[None, :, :] * counts[:, :, None]
    return (outer - diagonal) / (m - 1)[:, None, None]


def _distances(n_c: FloatArray, level: str) -> FloatArray:
    """Squared distances between categories: nominal, or ordinal (categories in their order)."""
    size = len(n_c)
    if level == "nominal":
        return 1.0 - np.eye(size)
    if level != "ordinal":
        raise ValueError(f"level must be nominal or ordinal, not {level!r}")
    # delta_ck = (sum of n_g for g from c to k) - (n_c + n_k) / 2, squared.
    cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
    low = np.minimum.outer(np.arange(size), np.arange(size))
    high = np.maximum.outer(np.arange(size), np.arange(size))
    between = cumulative[high + 1] - cumulative[low]
    return np.asarray((between - (n_c[:, None] + n_c[None, :]) / 2) ** 2)


def _alpha_from_coincidence(o: FloatArray, level: str) -> float:
    n_c = o.sum(axis=1)
    n = n_c.sum()
    delta = _distances(n_c, level)
    expected = float((np.outer(n_c, n_c) * delta).sum())
    if n <= 1 or expected == 0:
        return math.nan  # one category only: agreement cannot be told from chance
    return 1.0 - (n - 1) * float((o * delta).sum()) / expected


def krippendorff_alpha(counts: IntArray, level: str = "nominal") -> float:
    """Krippendorff's alpha from a count table (columns in order for ``level="ordinal"``)."""
    counts = _rated(counts).astype(np.float64)
    # The items' coincidence matrices summed, as one product: sum_u n_u n_u^T / (m_u - 1), less the
    # diagonal sum_u n_u / (m_u - 1).
    scaled = counts / (counts.sum(axis=1) - 1)[:, None]
    o = scaled.T @ counts - np.diag(scaled.sum(axis=0))
    return _alpha_from_coincidence(o, level)


def cohen_kappas(
    item: IntArray,
    rater: IntArray,
    choice: IntArray,
    *,
    n_categories: int = 3,
    min_shared: int = MIN_SHARED_PAIRS,
    pairs: tuple[IntArray, IntArray] | None = None,
) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
    """Cohen's kappa of every two raters sharing at least ``min_shared`` items: (rater, other rater with
    a larger index, shared items, kappa). Kappa is nan where both raters used one category only.
    ``pairs``: judgment_pairs(item), when the caller has it already."""
    first, second = pairs if pairs is not None else judgment_pairs(item)
    low = np.minimum(rater[first], rater[second])
    high = np.maximum(rater[first], rater[second])
    # Orient each judgment pair as (lower rater, higher rater) so one rater is always the table's rows.
    swap = rater[first] > rater[second]
    row = np.where(swap, choice[second], choice[first])
    column = np.where(swap, choice[first], choice[second])
    keys, which = dense_index(low * (int(rater.max(initial=0)) + 1) + high)
    squares = n_categories * n_categories
    tables = np.bincount(which * squares + row * n_categories + column, minlength=len(keys) * squares)
    tables = tables.reshape(len(keys), n_categories, n_categories).astype(np.float64)
    shared = tables.sum(axis=(1, 2))
    keep = shared >= min_shared
    tables, shared = tables[keep], shared[keep]
    observed = np.trace(tables, axis1=1, axis2=2) / shared
    chance = (tables.sum(axis=2) * tables.sum(axis=1)).sum(axis=1) / shared**2
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = np.where(chance < 1, (observed - chance) / (1 - chance), np.nan)
    base = int(rater.max(initial=0)) + 1
    return keys[keep] // base, keys[keep] % base, shared.astype(np.int64), kappa


def judgment_pairs(item: IntArray) -> tuple[IntArray, IntArray]:
    """Every two judgments on the same item, as two index arrays (each unordered pair once)."""
    order = np.argsort(item, kind="stable")
    sorted_items = item[order]
    firsts, seconds = [], []
    offset = 1
    while offset < len(order):
        same = np.flatnonzero(sorted_items[:-offset] == sorted_items[offset:])
        if not len(same):
            break  # sorted: no item has more than `offset` judgments
        firsts.append(order[same])
        seconds.append(order[same + offset])
        offset += 1
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(firsts) if firsts else empty), (np.concatenate(seconds) if seconds else empty)


def strict_majority(counts: IntArray) -> IntArray:
    """Each row's category with strictly more votes than every other, -1 when the top is shared or there
    are no votes: rm_training.votes.Votes.majority (the rule of the exports and the trainer) on arrays."""
    top = counts.max(axis=1)
    single = (top > 0) & ((counts == top[:, None]).sum(axis=1) == 1)
    return np.where(single, counts.argmax(axis=1), -1)


# Uncertainty


def bootstrap_intervals(
    counts: IntArray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals over items for percent agreement and nominal alpha (seeded).

    Resampling items with replacement draws each distinct count row ("profile") a multinomial number of
    times, so a replicate is one multinomial draw over the profiles: the same distribution as resampling
    the items, at a cost that does not grow with the number of items.
    """
    counts = _rated(counts)
    if not len(counts):
        return {"percent_agreement": (math.nan, math.nan), "krippendorff_alpha": (math.nan, math.nan)}
    base = int(counts.max()) + 1
    if base ** counts.shape[1] < 2**62:
        # Each row as one integer (its counts as digits in base max + 1): no sort of whole rows.
        digits = base ** np.arange(counts.shape[1], dtype=np.int64)
        keys, which = dense_index(counts @ digits)
        frequency = np.bincount(which)
        profiles = (keys[:, None] // digits[None, :]) % base
    else:
        profiles, frequency = np.unique(counts, axis=0, return_counts=True)
    n = profiles.sum(axis=1)
    agreeing = (profiles * (profiles - 1)).sum(axis=1).astype(np.float64)
    possible = (n * (n - 1)).astype(np.float64)
    coincidence = _coincidences(profiles).reshape(len(profiles), -1)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(len(counts), frequency / frequency.sum(), size=n_boot).astype(np.float64)
    percent = (weights @ agreeing) / (weights @ possible)
    o = (weights @ coincidence).reshape(n_boot, counts.shape[1], counts.shape[1])
    n_c = o.sum(axis=2)
    total = n_c.sum(axis=1)
    disagreeing = o.sum(axis=(1, 2)) - np.trace(o, axis1=1, axis2=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = 1 - (total - 1) * disagreeing / (total**2 - (n_c**2).sum(axis=1))
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]

    def interval(values: FloatArray) -> tuple[float, float]:
        finite = values[np.isfinite(values)]
        if not len(finite):
            return (math.nan, math.nan)
        low, high = np.percentile(finite, tails)
        return (float(low), float(high))

    return {"percent_agreement": interval(percent), "krippendorff_alpha": interval(alpha)}


def ceiling_accuracy(percent: float) -> float:
    """The accuracy a perfect reward model could reach against single judgments, under CEILING_ASSUMPTION;
    nan below 50% agreement, where the model has no solution."""
    if not math.isfinite(percent) or percent < 0.5:
        return math.nan
    return (1 + math.sqrt(2 * percent - 1)) / 2


def binomial_p_values(successes: npt.ArrayLike, trials: npt.ArrayLike) -> FloatArray:
    """Two-sided exact binomial test against 1/2, for many counts at once (nan without trials).

    The same p-value as scipy.stats.binomtest(k, n, 0.5): the distribution is symmetric, so the outcomes
    at most as likely as k are those at least as far from n / 2, and p = 2 P(X <= min(k, n - k)), at most 1.
    """
    from scipy.special import bdtr  # lazily: only the dashboard and the API need scipy

    k = np.asarray(successes, dtype=np.int64)
    n = np.asarray(trials, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        p = np.minimum(1.0, 2 * bdtr(np.minimum(k, n - k), n, 0.5))
    return np.where(n > 0, p, np.nan)
