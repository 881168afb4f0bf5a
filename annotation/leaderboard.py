"""The leaderboard statistics of a project's models on plain numpy arrays (no ORM; the rows come from
annotation.selectors.leaderboard): Bradley-Terry ratings, their bootstrap intervals and rank ranges, the
style-controlled ratings, and the win-rate and predicted-win matrices.

Chatbot Arena's method, with its choices: one judgment is one battle, a tie counts as half a win each way,
and the ratings are the maximum-likelihood Bradley-Terry log-strengths θ (P(i beats j) =
sigmoid(θi - θj)) on an Elo-like scale: 1000 + 400 / ln 10 · (θ - anchor), the anchor being a reference
model's θ or the mean.

One rule of our own, stated: the fit carries a small L2 penalty RIDGE / 2 · ||θ||² (a Gaussian prior of
standard deviation 10 on each natural log-strength, about 1,737 rating points). Without it a model that
only won (or only lost) has no maximum, its θ grows without end; with it the fit always exists, a model
that only won lands far above the rest but finite, and on thousands of battles the penalty moves a
rating by far less than its interval. The penalty keeps the mean θ at 0 (the likelihood depends on
differences only). Tests check every fit against scikit-learn's LogisticRegression with the same penalty
(C = 1 / RIDGE, fit_intercept=False, ties as two half-weight rows).

The bootstrap resamples judgments: a judgment enters the fit only through its (model, model, outcome)
category, so drawing N judgments with replacement is drawing the category counts from a multinomial, and
every round is fitted at once by a batched Newton method on the model pairs' counts: 1,000 rounds on a
million judgments take about as long as one pass over them.

Style control (Chatbot Arena, 2024): the same fit with covariates per battle, each the difference of a
response feature between a and b, as FastChat computes them: (a - b) / (a + b + 1), then standardised
over the battles. Features: length, markdown headers, list items, bold spans (:func:`response_style`).
Its intervals are the normal approximation the bootstrap converges to (the sandwich covariance
H⁻¹ J H⁻¹ of the fit, drawn with the same seed), because a bootstrap of this fit would refit every
distinct pair in every round.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from annotation.agreement.statistics import dense_index

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]

A, B, TIE = 0, 1, 2
SCALE = 400 / math.log(10)  # rating points per unit of natural log-strength
INITIAL_RATING = 1000.0
RIDGE = 0.01
INTERVAL_LEVEL = 0.95
STYLE_FEATURES = ("length", "headers", "list_items", "bold")
_NEWTON_TOLERANCE = 1e-10
_BOOTSTRAP_TOLERANCE = 1e-7  # a bootstrap round's θ to 2e-5 rating points: one Newton step fewer
_NEWTON_STEPS = 200
_MAX_STEP = 5.0  # a Newton step moves no θ by more than this: logistic Newton from 0 can overshoot

# FastChat's markdown counts (arena-hard-auto's add_markdown_info.py: headers ^#{1,6}\s, list items
# ^\s*\d+\.\s and ^\s*[-*+]\s, bold \*\*[^*\n]+\*\* and __[^_\n]+__, multiline, code blocks' content
# removed first), each anchored on a newline put before the text instead of ^: a pattern that starts
# with a literal is searched for that literal, several times faster than trying ^ at every position, and
# the trailing \s as a lookahead keeps the next line's start for the next match, as ^ would find it. The
# tests check the counts against FastChat's patterns on generated texts.
_CODE_BLOCK = re.compile(r"```[^`]*```")
_HEADER = re.compile(r"\n#{1,6}(?=\s)")
_LIST_ITEM = re.compile(r"\n\s*(?:\d+\.|[-*+])(?=\s)")
_BOLD_STARS = re.compile(r"\*\*[^*\n]+\*\*")
_BOLD_UNDERSCORES = re.compile(r"__[^_\n]+__")


def response_style(text: str) -> tuple[int, int, int, int]:
    """A response's style figures, in STYLE_FEATURES order: its length in characters (FastChat counts
    tokens; characters need no tokenizer, and the feature is a ratio of the two lengths), and its markdown
    headers, list items and bold spans outside code blocks."""
    # As FastChat: a code block's content goes, its fences stay.
    prose = "\n" + (_CODE_BLOCK.sub("``````", text) if "```" in text else text)
    return (
        len(text),
        len(_HEADER.findall(prose)) if "#" in prose else 0,
        len(_LIST_ITEM.findall(prose)),
        (len(_BOLD_STARS.findall(prose)) if "**" in prose else 0)
        + (len(_BOLD_UNDERSCORES.findall(prose)) if "__" in prose else 0),
    )


@dataclass(frozen=True)
class Battles:
    """The judgments as battles: one entry per judgment, and per pair its models (and style figures)."""

    pair: IntArray  # per judgment: index into the pair arrays
    outcome: IntArray  # per judgment: A (model a won), B or TIE
    pair_model_a: IntArray  # per pair: index into models
    pair_model_b: IntArray
    models: tuple[str, ...]
    pair_style_a: IntArray | None = None  # per pair: (pairs, 4) response_style of a; None: no style fit
    pair_style_b: IntArray | None = None


@dataclass(frozen=True)
class Ratings:
    """One fit's ratings with intervals and ranks, by model index."""

    rating: FloatArray
    lower: FloatArray
    upper: FloatArray
    rank: IntArray  # 1 + models whose lower bound is above this one's upper bound (Chatbot Arena)
    rank_worst: IntArray  # models whose upper bound reaches this one's lower bound (itself included)


@dataclass(frozen=True)
class Leaderboard:
    models: tuple[str, ...]
    battles: IntArray  # per model
    wins: IntArray
    losses: IntArray
    ties: IntArray
    ratings: Ratings
    style: Ratings | None  # style-controlled, when asked and there are battles
    style_coefficients: FloatArray | None  # per STYLE_FEATURES, in rating points per standard deviation
    win_rate: FloatArray  # [i, j]: i's share of its battles with j (ties half), nan without battles
    predicted_win: FloatArray  # [i, j]: sigmoid(θi - θj) of the plain fit
    n_battles: int
    reference: str | None
    rounds: int
    seed: int


def _counts_by_model_pair(
    model_lo: IntArray, model_hi: IntArray, score: FloatArray, weight: FloatArray, n_models: int
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """The distinct model pairs (lo < hi) and per pair the battles and lo's score (wins + ties / 2), from
    categories sorted by model pair; ``weight`` may be (rounds, categories): every bootstrap round at once."""
    key = model_lo * n_models + model_hi
    if not len(key):
        rounds = np.atleast_2d(weight).shape[0]
        return key, key, np.zeros((rounds, 0)), np.zeros((rounds, 0))
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    weight2 = np.atleast_2d(weight)
    battles = np.add.reduceat(weight2, starts, axis=1)
    scores = np.add.reduceat(weight2 * score, starts, axis=1)
    return model_lo[starts], model_hi[starts], battles, scores


def fit_pairs(
    lo: IntArray,
    hi: IntArray,
    battles: FloatArray,
    scores: FloatArray,
    n_models: int,
    start: FloatArray | None = None,
    tolerance: float = _NEWTON_TOLERANCE,
) -> FloatArray:
    """The penalised maximum-likelihood θ (rounds, models) from each model pair's battles and lo's score
    (rounds, pairs; each model pair once): Newton's method on every round at once, from ``start`` (the
    full data's θ for the bootstrap rounds: fewer steps) or from 0."""
    rounds = battles.shape[0]
    theta = np.zeros((rounds, n_models))
    if start is not None:
        theta += start
    incidence = np.zeros((len(lo), n_models))  # +1 at lo, -1 at hi: the gradient is residual @ incidence
    incidence[np.arange(len(lo)), lo] = 1
    incidence[np.arange(len(lo)), hi] = -1
    ridge = np.eye(n_models) * RIDGE
    off_diagonal = np.r_[lo * n_models + hi, hi * n_models + lo]
    for _ in range(_NEWTON_STEPS):
        p = _sigmoid(theta[:, lo] - theta[:, hi])
        gradient = (scores - battles * p) @ incidence - RIDGE * theta
        curvature = battles * p * (1 - p)
        # The Laplacian of the model pairs weighted by curvature: each pair once, so its two off-diagonal
        # entries are set, not summed; a model's diagonal entry is the sum over its pairs.
        hessian = np.zeros((rounds, n_models * n_models))
        hessian[:, off_diagonal] = -np.hstack([curvature, curvature])
        hessian = hessian.reshape(rounds, n_models, n_models) + ridge
        hessian[:, np.arange(n_models), np.arange(n_models)] += curvature @ np.abs(incidence)
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        step = np.clip(step, -_MAX_STEP, _MAX_STEP)
        theta += step
        if np.abs(step).max(initial=0.0) < tolerance:
            break
    return theta


def _sigmoid(x: FloatArray) -> FloatArray:
    return 0.5 * (1 + np.tanh(0.5 * x))  # no overflow warning for large |x|


def _anchored(theta: FloatArray, reference: int | None) -> FloatArray:
    """Ratings from θ (rounds, models): the reference model or the mean at INITIAL_RATING."""
    if not theta.shape[-1]:
        return theta
    anchor = theta[..., [reference]] if reference is not None else theta.mean(axis=-1, keepdims=True)
    return INITIAL_RATING + SCALE * (theta - anchor)


def _ratings(estimate: FloatArray, replicates: FloatArray) -> Ratings:
    """The point ratings with percentile intervals and rank ranges from replicate ratings (rounds, models);
    without replicates the interval is the point and ranks follow the points."""
    if len(replicates):
        tail = (1 - INTERVAL_LEVEL) / 2
        lower, upper = np.quantile(replicates, [tail, 1 - tail], axis=0)
    else:
        lower = upper = estimate
    above = lower[None, :] > upper[:, None]  # [i, j]: j's lower bound above i's upper bound
    below = upper[None, :] < lower[:, None]
    n = len(estimate)
    return Ratings(
        rating=estimate,
        lower=lower,
        upper=upper,
        rank=1 + above.sum(axis=1),
        rank_worst=n - below.sum(axis=1),
    )


def _categories(battles: Battles) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """The distinct (model lo, model hi, outcome) categories with lo < hi, lo's score in each (1, 0, 1/2)
    and their judgment counts; self-battles (a model against itself) are left out."""
    a = battles.pair_model_a[battles.pair]
    b = battles.pair_model_b[battles.pair]
    keep = a != b
    a, b, outcome = a[keep], b[keep], battles.outcome[keep]
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    # The outcome from lo's side: a swapped pair swaps who won.
    won = np.where(outcome == TIE, TIE, np.where(a == lo, outcome, 1 - outcome))
    m = len(battles.models)
    distinct, index = dense_index((lo * m + hi) * 3 + won)
    counts = np.bincount(index, minlength=len(distinct))
    won_d = distinct % 3
    pairs = distinct // 3
    score = np.where(won_d == A, 1.0, np.where(won_d == B, 0.0, 0.5))
    return pairs // m, pairs % m, score, counts.astype(np.float64)


def leaderboard(
    battles: Battles,
    *,
    reference: str | None = None,
    rounds: int = 1000,
    seed: int = 0,
    style: bool = True,
) -> Leaderboard:
    """Every figure of the leaderboard, of the models with battles. ``reference``: the model anchored at
    1000 (else the mean; ValueError if it has no battles); ``rounds`` bootstrap rounds seeded with
    ``seed``; ``style``: also the style-controlled fit (needs the pairs' style figures)."""
    battles = _with_battles_only(battles)
    n_models = len(battles.models)
    if reference is not None and reference not in battles.models:
        raise ValueError(f"{reference!r} has no battles")
    ref = battles.models.index(reference) if reference is not None else None
    lo, hi, score, counts = _categories(battles)
    n_battles = int(counts.sum())

    per_model = np.zeros((3, n_models))  # wins, losses, ties
    np.add.at(per_model[0], lo, counts * (score == 1))
    np.add.at(per_model[0], hi, counts * (score == 0))
    np.add.at(per_model[1], lo, counts * (score == 0))
    np.add.at(per_model[1], hi, counts * (score == 1))
    np.add.at(per_model[2], lo, counts * (score == 0.5))
    np.add.at(per_model[2], hi, counts * (score == 0.5))
    wins, losses, ties = per_model.astype(np.int64)

    pair_lo, pair_hi, pair_battles, pair_scores = _counts_by_model_pair(lo, hi, score, counts, n_models)
    theta = fit_pairs(pair_lo, pair_hi, pair_battles, pair_scores, n_models)[0]
    replicates = np.zeros((0, n_models))
    if rounds > 0 and n_battles > 0:
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(n_battles, counts / n_battles, size=rounds).astype(np.float64)
        _, _, boot_battles, boot_scores = _counts_by_model_pair(lo, hi, score, draws, n_models)
        theta_rounds = fit_pairs(
            pair_lo, pair_hi, boot_battles, boot_scores, n_models, start=theta, tolerance=_BOOTSTRAP_TOLERANCE
        )
        replicates = _anchored(theta_rounds, ref)
    ratings = _ratings(_anchored(theta, ref), replicates)

    win_rate = np.full((n_models, n_models), np.nan)
    played = pair_battles[0] > 0
    win_rate[pair_lo[played], pair_hi[played]] = pair_scores[0][played] / pair_battles[0][played]
    win_rate[pair_hi[played], pair_lo[played]] = 1 - win_rate[pair_lo[played], pair_hi[played]]
    predicted = _sigmoid(theta[:, None] - theta[None, :])
    np.fill_diagonal(predicted, np.nan)

    style_ratings, coefficients = None, None
    if style and battles.pair_style_a is not None and n_battles > 0:
        style_ratings, coefficients = _style_fit(battles, ref, rounds=rounds, seed=seed)
    return Leaderboard(
        models=battles.models,
        battles=wins + losses + ties,
        wins=wins,
        losses=losses,
        ties=ties,
        ratings=ratings,
        style=style_ratings,
        style_coefficients=coefficients,
        win_rate=win_rate,
        predicted_win=predicted,
        n_battles=n_battles,
        reference=reference,
        rounds=rounds if n_battles else 0,
        seed=seed,
    )


def _with_battles_only(battles: Battles) -> Battles:
    """The battles with the models numbered anew, leaving out those without a battle (a model with no
    battle has no rating: the penalty alone would put it at the mean)."""
    a = battles.pair_model_a[battles.pair]
    b = battles.pair_model_b[battles.pair]
    played = a != b
    present = np.zeros(len(battles.models), dtype=bool)
    present[a[played]] = True
    present[b[played]] = True
    if present.all():
        return battles
    number = np.cumsum(present) - 1  # a pair of a model without battles has no battle: any number does
    return replace(
        battles,
        pair_model_a=number[battles.pair_model_a],
        pair_model_b=number[battles.pair_model_b],
        models=tuple(name for name, kept in zip(battles.models, present, strict=True) if kept),
    )


# Style control


def style_covariates(style_a: FloatArray, style_b: FloatArray, weight: FloatArray) -> FloatArray:
    """FastChat's style covariates: (a - b) / (a + b + 1) per feature, standardised over the battles
    (``weight``: how many battles have each row); a feature constant over the battles gives zeros."""
    ratio = (style_a - style_b) / (style_a + style_b + 1)
    total = weight.sum()
    mean = (weight[:, None] * ratio).sum(axis=0) / total
    std = np.sqrt((weight[:, None] * (ratio - mean) ** 2).sum(axis=0) / total)
    scaled = np.zeros_like(ratio)
    varies = std > 1e-12
    scaled[:, varies] = (ratio[:, varies] - mean[varies]) / std[varies]
    return scaled


@dataclass(frozen=True)
class StyleDesign:
    """The style fit's distinct (pair, outcome) rows: models, a's score, covariates and judgment counts."""

    model_a: IntArray
    model_b: IntArray
    score: FloatArray
    covariates: FloatArray  # (rows, len(STYLE_FEATURES))
    counts: FloatArray
    n_models: int


def style_design(battles: Battles) -> StyleDesign:
    assert battles.pair_style_a is not None and battles.pair_style_b is not None
    key = battles.pair * 3 + battles.outcome
    distinct, counts = np.unique(key, return_counts=True)
    pair, outcome = distinct // 3, distinct % 3
    a, b = battles.pair_model_a[pair], battles.pair_model_b[pair]
    keep = a != b
    pair, outcome, a, b, weight = pair[keep], outcome[keep], a[keep], b[keep], counts[keep].astype(np.float64)
    covariates = style_covariates(
        battles.pair_style_a[pair].astype(np.float64), battles.pair_style_b[pair].astype(np.float64), weight
    )
    score = np.where(outcome == A, 1.0, np.where(outcome == B, 0.0, 0.5))
    return StyleDesign(a, b, score, covariates, weight, len(battles.models))


def _gram(design: StyleDesign, row_weight: FloatArray) -> FloatArray:
    """Σ row_weight · x xᵀ over the rows, x = (e_a - e_b, covariates): the Hessian's shape."""
    m, s = design.n_models, design.covariates.shape[1]
    a, b, z = design.model_a, design.model_b, design.covariates
    gram = np.zeros((m + s, m + s))
    block = np.bincount(a * m + b, row_weight, minlength=m * m).reshape(m, m)
    gram[:m, :m] = np.diag(block.sum(axis=0) + block.sum(axis=1)) - block - block.T
    weighted = row_weight[:, None] * z
    cross = np.zeros((m, s))
    for k in range(s):
        cross[:, k] = np.bincount(a, weighted[:, k], minlength=m) - np.bincount(
            b, weighted[:, k], minlength=m
        )
    gram[:m, m:] = cross
    gram[m:, :m] = cross.T
    gram[m:, m:] = z.T @ weighted
    return gram


def fit_style(design: StyleDesign) -> tuple[FloatArray, FloatArray]:
    """The penalised maximum-likelihood θ and style coefficients, by Newton's method, and the Hessian of
    the penalised negative log-likelihood there."""
    m, s = design.n_models, design.covariates.shape[1]
    a, b, z = design.model_a, design.model_b, design.covariates
    beta = np.zeros(m + s)
    hessian = np.eye(m + s) * RIDGE
    for _ in range(_NEWTON_STEPS):
        p = _sigmoid(beta[a] - beta[b] + z @ beta[m:])
        residual = design.counts * (design.score - p)
        gradient = -RIDGE * beta
        gradient[:m] += np.bincount(a, residual, minlength=m) - np.bincount(b, residual, minlength=m)
        gradient[m:] += z.T @ residual
        hessian = _gram(design, design.counts * p * (1 - p)) + np.eye(m + s) * RIDGE
        step = np.clip(np.linalg.solve(hessian, gradient), -_MAX_STEP, _MAX_STEP)
        beta += step
        if np.abs(step).max(initial=0.0) < _NEWTON_TOLERANCE:
            break
    return beta, hessian


def _style_fit(
    battles: Battles, reference: int | None, *, rounds: int, seed: int
) -> tuple[Ratings, FloatArray]:
    design = style_design(battles)
    m = design.n_models
    beta, hessian = fit_style(design)
    replicates = np.zeros((0, m))
    if rounds > 0:
        p = _sigmoid(beta[design.model_a] - beta[design.model_b] + design.covariates @ beta[m:])
        # J: the judgments' score outer products; each judgment of a row scores (y - p) x.
        information = _gram(design, design.counts * (design.score - p) ** 2)
        inverse = np.linalg.inv(hessian)
        covariance = inverse @ information @ inverse
        draws = np.random.default_rng(seed).multivariate_normal(
            beta, (covariance + covariance.T) / 2, size=rounds, method="eigh"
        )
        replicates = _anchored(draws[:, :m], reference)
    return _ratings(_anchored(beta[:m], reference), replicates), SCALE * beta[m:]
