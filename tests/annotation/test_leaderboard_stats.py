"""annotation.leaderboard against scikit-learn's logistic regression (Chatbot Arena's method) on the same
battles, and its rules: ties as half, a model that only wins, degenerate inputs, seeded intervals, ranks,
style control."""

from __future__ import annotations

import math
import random
import re

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from annotation import leaderboard as lb

MODELS = ("m0", "m1", "m2", "m3", "m4", "m5")


def battles_from_rows(a, b, outcome, models=MODELS, style_a=None, style_b=None) -> lb.Battles:
    """One pair per battle (the simplest layout; the selector's pairs may carry several judgments)."""
    n = len(a)
    return lb.Battles(
        pair=np.arange(n),
        outcome=np.asarray(outcome, dtype=np.int64),
        pair_model_a=np.asarray(a, dtype=np.int64),
        pair_model_b=np.asarray(b, dtype=np.int64),
        models=tuple(models),
        pair_style_a=None if style_a is None else np.asarray(style_a, dtype=np.int64),
        pair_style_b=None if style_b is None else np.asarray(style_b, dtype=np.int64),
    )


def sklearn_theta(a, b, outcome, n_models, covariates=None):
    """Chatbot Arena's fit: x = e_a - e_b (and the covariates), y = a won, a tie as two half-weight rows
    (one won, one lost), no intercept, the same L2 penalty as ours (C = 1 / RIDGE)."""
    a, b, outcome = (np.asarray(v) for v in (a, b, outcome))
    n = len(a)
    x = np.zeros((n, n_models))
    x[np.arange(n), a] += 1
    x[np.arange(n), b] -= 1
    if covariates is not None:
        x = np.hstack([x, covariates])
    tie = outcome == lb.TIE
    rows = np.vstack([x, x[tie]])
    y = np.r_[(outcome == lb.A) | tie, np.zeros(tie.sum(), dtype=bool)].astype(int)
    weight = np.r_[np.where(tie, 0.5, 1.0), np.full(tie.sum(), 0.5)]
    model = LogisticRegression(
        fit_intercept=False, C=1 / lb.RIDGE, solver="newton-cholesky", tol=1e-12, max_iter=1000
    )
    model.fit(rows, y, sample_weight=weight)
    return model.coef_[0]


def log_strength(ratings):
    """Our ratings back on the natural log-strength scale, anchored as they were."""
    return (np.asarray(ratings) - lb.INITIAL_RATING) / lb.SCALE


def random_battles(n, seed=0, n_models=6, tie_share=0.2):
    rng = np.random.default_rng(seed)
    strength = np.linspace(-1, 1.5, n_models)
    a = rng.integers(n_models, size=n)
    b = (a + rng.integers(1, n_models, size=n)) % n_models
    p = 1 / (1 + np.exp(-(strength[a] - strength[b])))
    outcome = np.where(rng.random(n) < p, lb.A, lb.B)
    outcome[rng.random(n) < tie_share] = lb.TIE
    return a, b, outcome


@pytest.mark.parametrize("reference", [None, "m2"])
def test_ratings_equal_a_scikit_learn_fit_on_the_same_battles(reference):
    a, b, outcome = random_battles(400)
    board = lb.leaderboard(battles_from_rows(a, b, outcome), reference=reference, rounds=0)
    theta = sklearn_theta(a, b, outcome, len(MODELS))
    anchor = theta[MODELS.index(reference)] if reference else theta.mean()
    np.testing.assert_allclose(log_strength(board.ratings.rating), theta - anchor, rtol=0, atol=1e-6)
    if reference:
        assert board.ratings.rating[MODELS.index(reference)] == pytest.approx(1000)
    else:
        assert board.ratings.rating.mean() == pytest.approx(1000)


def test_ratings_do_not_depend_on_which_side_a_model_was_shown():
    a, b, outcome = random_battles(300, seed=4)
    swapped_outcome = np.where(outcome == lb.TIE, lb.TIE, 1 - outcome)
    one = lb.leaderboard(battles_from_rows(a, b, outcome), rounds=0)
    other = lb.leaderboard(battles_from_rows(b, a, swapped_outcome), rounds=0)
    np.testing.assert_allclose(one.ratings.rating, other.ratings.rating, atol=1e-9)


def test_a_tie_counts_as_half_a_win_each_way():
    # m0 against m1: 3 wins, 1 loss, 4 ties: a score of 3 + 4/2 = 5 of 8.
    a = [0] * 8
    b = [1] * 8
    outcome = [lb.A] * 3 + [lb.B] + [lb.TIE] * 4
    board = lb.leaderboard(battles_from_rows(a, b, outcome, models=("m0", "m1")), rounds=0)
    assert board.win_rate[0, 1] == pytest.approx(5 / 8)
    assert board.win_rate[1, 0] == pytest.approx(3 / 8)
    assert (board.wins.tolist(), board.losses.tolist(), board.ties.tolist()) == ([3, 1], [1, 3], [4, 4])
    theta = sklearn_theta(a, b, outcome, 2)
    np.testing.assert_allclose(log_strength(board.ratings.rating), theta - theta.mean(), atol=1e-6)
    # The same score as 5 wins and 3 losses: the same ratings (ties are half a win, not a third outcome).
    decisive = lb.leaderboard(battles_from_rows(a, b, [lb.A] * 5 + [lb.B] * 3, models=("m0", "m1")), rounds=0)
    np.testing.assert_allclose(board.ratings.rating, decisive.ratings.rating, atol=1e-9)


def test_all_ties_rate_every_model_alike():
    a, b, _ = random_battles(60, seed=2, n_models=3)
    board = lb.leaderboard(battles_from_rows(a, b, [lb.TIE] * 60, models=MODELS[:3]), rounds=50)
    np.testing.assert_allclose(board.ratings.rating, 1000, atol=1e-9)
    assert board.ratings.rank.tolist() == [1, 1, 1]
    assert board.ties.sum() == 120


def test_a_model_that_only_wins_gets_a_finite_rating_above_the_rest():
    a, b, outcome = random_battles(300, seed=5, n_models=5)
    # m5 plays everyone and wins every time, from either side.
    n = 40
    opponents = np.arange(n) % 5
    a = np.r_[a, np.where(np.arange(n) % 2, 5, opponents)]
    b = np.r_[b, np.where(np.arange(n) % 2, opponents, 5)]
    outcome = np.r_[outcome, np.where(np.arange(n) % 2, lb.A, lb.B)]
    board = lb.leaderboard(battles_from_rows(a, b, outcome), rounds=100)
    ratings = board.ratings.rating
    assert np.isfinite(ratings).all() and np.isfinite(board.ratings.upper).all()
    assert ratings.argmax() == 5 and board.losses[5] == 0
    theta = sklearn_theta(a, b, outcome, len(MODELS))
    np.testing.assert_allclose(log_strength(ratings), theta - theta.mean(), atol=1e-6)


def test_a_model_that_only_loses_gets_a_finite_rating_below_the_rest():
    a = [0, 1, 2, 0, 1, 2]
    b = [1, 2, 0, 3, 3, 3]
    outcome = [lb.A, lb.B, lb.TIE, lb.A, lb.A, lb.A]
    board = lb.leaderboard(battles_from_rows(a, b, outcome, models=MODELS[:4]), rounds=20)
    assert np.isfinite(board.ratings.rating).all() and board.ratings.rating.argmin() == 3
    theta = sklearn_theta(a, b, outcome, 4)
    np.testing.assert_allclose(log_strength(board.ratings.rating), theta - theta.mean(), atol=1e-6)


def test_one_model_and_no_battles():
    none = lb.leaderboard(battles_from_rows([], [], [], models=()), rounds=100)
    assert none.models == () and none.n_battles == 0 and none.rounds == 0
    # A model met only by itself: no battle, so no rating, and it cannot be the reference.
    alone = lb.leaderboard(battles_from_rows([0, 0], [0, 0], [lb.A, lb.TIE], models=("solo",)), rounds=100)
    assert alone.models == () and alone.n_battles == 0 and alone.win_rate.shape == (0, 0)
    with pytest.raises(ValueError):
        lb.leaderboard(battles_from_rows([0], [0], [lb.A], models=("solo",)), reference="solo")
    # A model that no judgment names (an idle one) is left off the board.
    pair = lb.leaderboard(battles_from_rows([0, 2], [2, 0], [lb.A, lb.TIE], models=("x", "idle", "z")))
    assert pair.models == ("x", "z") and pair.battles.tolist() == [2, 2]
    assert pair.ratings.rating[0] > pair.ratings.rating[1]
    assert math.isnan(pair.win_rate[0, 0]) and pair.win_rate[0, 1] == pytest.approx(0.75)


def test_intervals_are_reproducible_for_a_seed_and_hold_the_rating():
    battles = battles_from_rows(*random_battles(500, seed=7))
    first = lb.leaderboard(battles, rounds=200, seed=11)
    again = lb.leaderboard(battles, rounds=200, seed=11)
    other = lb.leaderboard(battles, rounds=200, seed=12)
    np.testing.assert_array_equal(first.ratings.lower, again.ratings.lower)
    np.testing.assert_array_equal(first.ratings.upper, again.ratings.upper)
    assert not np.array_equal(first.ratings.lower, other.ratings.lower)
    assert (first.ratings.lower < first.ratings.rating).all()
    assert (first.ratings.rating < first.ratings.upper).all()
    # Ten times the battles: narrower intervals.
    wide = first.ratings.upper - first.ratings.lower
    many = lb.leaderboard(battles_from_rows(*random_battles(5000, seed=7)), rounds=200, seed=11)
    assert ((many.ratings.upper - many.ratings.lower) < wide).all()


def test_bootstrap_spread_matches_resampling_the_judgments():
    """The multinomial draw of category counts is the row bootstrap: the spread of the ratings over
    rounds matches that of refits on resampled rows (within the Monte Carlo error)."""
    a, b, outcome = random_battles(300, seed=8, n_models=3)
    battles = battles_from_rows(a, b, outcome, models=MODELS[:3])
    board = lb.leaderboard(battles, rounds=400, seed=1)
    rng = np.random.default_rng(99)
    refits = []
    for _ in range(400):
        rows = rng.integers(len(a), size=len(a))
        refit = lb.leaderboard(
            battles_from_rows(a[rows], b[rows], outcome[rows], models=MODELS[:3]), rounds=0
        )
        refits.append(refit.ratings.rating)
    ours = board.ratings.upper - board.ratings.lower
    theirs = np.diff(np.quantile(refits, [0.025, 0.975], axis=0), axis=0)[0]
    np.testing.assert_allclose(ours, theirs, rtol=0.2)


def test_ranks_share_where_intervals_overlap():
    estimate = np.array([1100.0, 1090.0, 1000.0, 900.0])
    replicates = np.array([[1120, 1080, 1010, 890], [1080, 1100, 990, 910]], dtype=float)
    ratings = lb._ratings(estimate, replicates)
    # m0 and m1 overlap: both rank 1; m2 is below both; m3 below all three.
    assert ratings.rank.tolist() == [1, 1, 3, 4]
    assert ratings.rank_worst.tolist() == [2, 2, 3, 4]


def test_predicted_win_follows_the_ratings():
    board = lb.leaderboard(battles_from_rows(*random_battles(400, seed=3)), rounds=0)
    diff = board.ratings.rating[0] - board.ratings.rating[4]
    assert board.predicted_win[0, 4] == pytest.approx(1 / (1 + 10 ** (-diff / 400)))
    assert board.predicted_win[0, 4] + board.predicted_win[4, 0] == pytest.approx(1)


def test_response_style_counts_fastchat_markdown_outside_code():
    text = (
        "# Title\n## Part\n#no header\n- one\n* two\n  3. three\n**bold** and __also__ and **not\nbold**\n"
        "```\n# not a header\n- not a list\n```\n"
    )
    assert lb.response_style(text) == (len(text), 2, 3, 2)
    assert lb.response_style("") == (0, 0, 0, 0)


def fastchat_counts(text):
    """FastChat's (arena-hard-auto's) markdown counts as it writes them: headers h1 to h6, ordered and
    unordered list items, ** and __ bold, after taking out the code blocks' content (not its other
    occurrences in the text, as FastChat's str.replace of the content would)."""
    prose = re.sub("```([^`]*)```", "``````", text)
    headers = sum(len(re.findall(rf"^#{{{n}}}\s", prose, re.MULTILINE)) for n in range(1, 7))
    lists = len(re.findall(r"^\s*\d+\.\s", prose, re.MULTILINE)) + len(
        re.findall(r"^\s*[-*+]\s", prose, re.MULTILINE)
    )
    bold = len(re.findall(r"\*\*[^*\n]+\*\*", prose)) + len(re.findall(r"__[^_\n]+__", prose))
    return headers, lists, bold


def test_response_style_counts_as_fastchat_on_generated_markdown():
    rng = random.Random(0)
    pieces = ["#", "##", "#######", " ", "\n", "\n\n", "\t", "-", "*", "+", "1.", "12.", "**", "__", "x",
              "word", "```", "`", "_", "\r\n"]  # fmt: skip
    for _ in range(3000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 30)))
        assert lb.response_style(text)[1:] == fastchat_counts(text), repr(text)


def planted_length_battles(n=3000, seed=0):
    """Three equally good models; m0 writes longer, and raters choose the longer response 80% of the
    time whoever wrote it."""
    rng = np.random.default_rng(seed)
    a = rng.integers(3, size=n)
    b = (a + rng.integers(1, 3, size=n)) % 3

    def length(model):
        return np.where(model == 0, rng.integers(300, 1200, size=n), rng.integers(50, 700, size=n))

    length_a, length_b = length(a), length(b)
    longer_a = length_a > length_b
    outcome = np.where(rng.random(n) < 0.8, np.where(longer_a, lb.A, lb.B), np.where(longer_a, lb.B, lb.A))
    zeros = np.zeros(n, dtype=np.int64)
    style_a = np.stack([length_a, zeros, rng.integers(0, 3, size=n), zeros], axis=1)
    style_b = np.stack([length_b, zeros, rng.integers(0, 3, size=n), zeros], axis=1)
    return a, b, outcome, style_a, style_b


def test_style_control_takes_away_a_win_by_length():
    a, b, outcome, style_a, style_b = planted_length_battles()
    board = lb.leaderboard(
        battles_from_rows(a, b, outcome, models=MODELS[:3], style_a=style_a, style_b=style_b), rounds=200
    )
    plain, styled = board.ratings, board.style
    assert styled is not None and board.style_coefficients is not None
    # Plainly, m0 is far ahead; controlled for length, it is where the others are.
    assert plain.rating[0] - plain.rating[1:].max() > 100
    assert abs(styled.rating[0] - styled.rating[1:].mean()) < 25
    assert styled.rank.tolist() == [1, 1, 1]
    assert board.style_coefficients[0] > 100  # length: strongly preferred
    assert abs(board.style_coefficients[2]) < 25  # list items: random, no effect


def test_style_fit_equals_a_scikit_learn_fit_with_the_covariates():
    a, b, outcome, style_a, style_b = planted_length_battles(n=600, seed=3)
    outcome[::7] = lb.TIE
    board = lb.leaderboard(
        battles_from_rows(a, b, outcome, models=MODELS[:3], style_a=style_a, style_b=style_b),
        rounds=0,
        reference="m1",
    )
    # FastChat's normalisation, per battle row: (a - b) / (a + b + 1), standardised.
    ratio = (style_a - style_b) / (style_a + style_b + 1)
    std = ratio.std(axis=0)
    covariates = np.where(std > 0, (ratio - ratio.mean(axis=0)) / np.where(std > 0, std, 1), 0)
    coef = sklearn_theta(a, b, outcome, 3, covariates)
    assert board.style is not None and board.style_coefficients is not None
    np.testing.assert_allclose(log_strength(board.style.rating), coef[:3] - coef[1], atol=1e-6)
    np.testing.assert_allclose(board.style_coefficients / lb.SCALE, coef[3:], atol=1e-6)


def test_style_intervals_are_reproducible_for_a_seed():
    a, b, outcome, style_a, style_b = planted_length_battles(n=500, seed=1)
    battles = battles_from_rows(a, b, outcome, models=MODELS[:3], style_a=style_a, style_b=style_b)
    one, two = (lb.leaderboard(battles, rounds=100, seed=5) for _ in range(2))
    assert one.style is not None and two.style is not None
    np.testing.assert_array_equal(one.style.lower, two.style.lower)
    assert (one.style.lower < one.style.rating).all() and (one.style.rating < one.style.upper).all()


def test_the_penalty_is_small_where_the_plain_maximum_exists():
    """Against scikit-learn without a penalty, on battles where every model won and lost: within a
    rating point (the penalty only matters for a model that never won or never lost)."""
    a, b, outcome = random_battles(2000, seed=9)
    board = lb.leaderboard(battles_from_rows(a, b, outcome), rounds=0)
    tie = outcome == lb.TIE
    x = np.zeros((len(a), len(MODELS)))
    x[np.arange(len(a)), a] += 1
    x[np.arange(len(a)), b] -= 1
    rows = np.vstack([x, x[tie]])
    y = np.r_[(outcome == lb.A) | tie, np.zeros(tie.sum(), dtype=bool)].astype(int)
    weight = np.r_[np.where(tie, 0.5, 1.0), np.full(tie.sum(), 0.5)]
    # Without a penalty the strengths are defined up to a constant: model 0's column goes (θ0 = 0).
    plain = LogisticRegression(fit_intercept=False, C=np.inf, solver="newton-cholesky", tol=1e-12)
    theta = np.r_[0.0, plain.fit(rows[:, 1:], y, sample_weight=weight).coef_[0]]
    unpenalised = lb.INITIAL_RATING + lb.SCALE * (theta - theta.mean())
    np.testing.assert_allclose(board.ratings.rating, unpenalised, atol=1.0)
    assert np.abs(board.ratings.rating - unpenalised).max() > 1e-6  # the penalty is there, and small
