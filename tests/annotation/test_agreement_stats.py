"""The agreement statistics against the reference packages (random data with missing values, ties and
unequal numbers of raters per pair), against cases worked out by hand, and the rater flags on planted
raters. No database: annotation.agreement works on arrays."""

from __future__ import annotations

import ast
import itertools
import math
from pathlib import Path

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from annotation.agreement import report
from annotation.agreement import statistics as ag
from tests.test_boundaries import modules_after

A, B, TIE = report.A, report.B, report.TIE


def random_judgments(
    seed: int, *, items: int = 80, raters: int = 9, fixed: int | None = None, levels: int = 0
):
    """(item, rater, choice, strength) for random items, each judged by a random subset of raters (1 to 6,
    or exactly ``fixed``), with ties; raters lean towards a per-item truth so agreement is not zero."""
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(items):
        k = fixed or int(rng.integers(1, 7))
        truth = rng.choice(3, p=[0.45, 0.4, 0.15])
        for rater in rng.choice(raters, size=k, replace=False):
            choice = truth if rng.random() < 0.6 else rng.integers(3)
            strength = 0 if choice == TIE or not levels else int(rng.integers(1, levels + 1))
            rows.append((item, int(rater), int(choice), strength))
    arr = np.array(rows, dtype=np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]


def reliability(item, rater, value, items, raters):
    """The krippendorff package's layout: raters x items, nan where a rater did not judge the item."""
    data = np.full((raters, items), np.nan)
    data[rater, item] = value
    return data


SEEDS = [0, 1, 2, 3]


@pytest.mark.parametrize("seed", SEEDS)
def test_percent_agreement_is_the_agreeing_share_of_all_pairs_of_judgments(seed):
    item, _, choice, _ = random_judgments(seed)
    agreeing = total = 0
    for i in np.unique(item):
        for x, y in itertools.combinations(choice[item == i], 2):
            total += 1
            agreeing += x == y
    counts = ag.count_table(item, choice, item.max() + 1, 3)
    assert ag.percent_agreement(counts) == pytest.approx(agreeing / total, abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_krippendorff_alpha_nominal_matches_the_krippendorff_package(seed):
    item, rater, choice, _ = random_judgments(seed)
    counts = ag.count_table(item, choice, item.max() + 1, 3)
    expected = krippendorff.alpha(
        reliability_data=reliability(item, rater, choice, item.max() + 1, 9),
        level_of_measurement="nominal",
        value_domain=[0, 1, 2],
    )
    assert ag.krippendorff_alpha(counts) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_krippendorff_alpha_ordinal_on_the_signed_strength_scale_matches_the_package(seed):
    levels = 3
    item, rater, choice, strength = random_judgments(seed, levels=levels)
    signed = np.where(choice == A, strength, np.where(choice == B, -strength, 0))
    counts = ag.count_table(item, signed + levels, item.max() + 1, 2 * levels + 1)
    expected = krippendorff.alpha(
        reliability_data=reliability(item, rater, signed, item.max() + 1, 9),
        level_of_measurement="ordinal",
        value_domain=list(range(-levels, levels + 1)),
    )
    assert ag.krippendorff_alpha(counts, "ordinal") == pytest.approx(expected, abs=1e-9)
    # and the report uses that scale
    figures = report.agreement_figures(arrays(item, rater, choice, strength=strength), strength_levels=levels)
    assert figures.krippendorff_alpha_ordinal == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_fleiss_kappa_matches_statsmodels_when_every_pair_has_the_same_raters(seed):
    item, _, choice, _ = random_judgments(seed, fixed=4)
    counts = ag.count_table(item, choice, item.max() + 1, 3)
    assert ag.fleiss_kappa(counts) == pytest.approx(statsmodels_fleiss_kappa(counts), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_fleiss_kappa_with_unequal_raters_is_the_per_item_form_of_the_docstring(seed):
    item, _, choice, _ = random_judgments(seed)
    counts = ag.count_table(item, choice, item.max() + 1, 3)
    rows = [row for row in counts.tolist() if sum(row) >= 2]
    observed = sum(sum(c * (c - 1) for c in row) / (sum(row) * (sum(row) - 1)) for row in rows) / len(rows)
    totals = [sum(row[c] for row in rows) for c in range(3)]
    chance = sum((t / sum(totals)) ** 2 for t in totals)
    assert ag.fleiss_kappa(counts) == pytest.approx((observed - chance) / (1 - chance), abs=1e-12)


@pytest.mark.parametrize("seed", SEEDS)
def test_cohen_kappa_of_every_rater_pair_matches_scikit_learn(seed):
    item, rater, choice, _ = random_judgments(seed, items=150, raters=6)
    first, second, shared, kappas = ag.cohen_kappas(item, rater, choice, min_shared=10)
    expected = {}
    for r1, r2 in itertools.combinations(range(6), 2):
        common = sorted(set(item[rater == r1]) & set(item[rater == r2]))
        if len(common) < 10:
            continue
        y1 = [choice[(item == i) & (rater == r1)][0] for i in common]
        y2 = [choice[(item == i) & (rater == r2)][0] for i in common]
        expected[(r1, r2)] = (len(common), cohen_kappa_score(y1, y2, labels=[0, 1, 2]))
    got = {(int(a), int(b)): (int(n), k) for a, b, n, k in zip(first, second, shared, kappas, strict=True)}
    assert got.keys() == expected.keys() and len(got) >= 5
    for key, (n, kappa) in expected.items():
        assert got[key][0] == n
        assert got[key][1] == pytest.approx(kappa, abs=1e-9)


def test_judgment_pairs_lists_every_two_judgments_of_an_item_once():
    item = np.array([3, 1, 3, 3, 0, 1, 2], dtype=np.int64)
    first, second = ag.judgment_pairs(item)
    found = sorted(tuple(sorted(p)) for p in zip(first.tolist(), second.tolist(), strict=True))
    assert found == [(0, 2), (0, 3), (1, 5), (2, 3)]


def arrays(item, rater, choice, *, strength=None, shown_left=None, time_ms=None, longer=None, gold=None):
    n, items = len(item), int(item.max()) + 1
    return report.JudgmentArrays(
        pair=np.asarray(item, dtype=np.int64),
        rater=np.asarray(rater, dtype=np.int64),
        choice=np.asarray(choice, dtype=np.int64),
        strength=np.zeros(n, np.int64) if strength is None else np.asarray(strength, np.int64),
        shown_left=np.full(n, -1, np.int64) if shown_left is None else np.asarray(shown_left, np.int64),
        time_ms=np.full(n, -1, np.int64) if time_ms is None else np.asarray(time_ms, np.int64),
        day=np.zeros(n, np.int64),
        pair_longer=np.full(items, -1, np.int64) if longer is None else np.asarray(longer, np.int64),
        pair_gold=np.full(items, -1, np.int64) if gold is None else np.asarray(gold, np.int64),
        n_raters=int(rater.max()) + 1,
    )


def by_hand(table):
    """Three raters (columns) on four pairs (rows), as arrays."""
    item = np.repeat(np.arange(len(table)), 3)
    rater = np.tile(np.arange(3), len(table))
    choice = np.array([c for row in table for c in row])
    return item, rater, choice


def test_three_raters_four_pairs_worked_out_by_hand():
    item, rater, choice = by_hand([[A, A, A], [A, A, B], [B, B, B], [A, B, B]])
    f = report.agreement_figures(arrays(item, rater, choice), min_shared=1)
    # 12 pairs of judgments (3 per pair), agreeing: 3 + 1 + 3 + 1.
    assert f.percent_agreement == pytest.approx(8 / 12)
    # P_i = 1, 1/3, 1, 1/3 (mean 2/3); a and b each half of the judgments, chance 1/2.
    assert f.fleiss_kappa == pytest.approx((2 / 3 - 1 / 2) / (1 / 2))
    # Coincidences aa 4, ab 2, ba 2, bb 4; n_a = n_b = 6: alpha = 1 - 11 * 4 / (144 - 72).
    assert f.krippendorff_alpha == pytest.approx(1 - 11 * 4 / 72)
    # Rater pairs: (0, 1) po 3/4 pe 1/2 -> 0.5; (0, 2) po 1/2 pe 3/8 -> 0.2; (1, 2) po 3/4 pe 1/2 -> 0.5.
    assert f.cohen_kappa == pytest.approx((0.5 + 0.2 + 0.5) / 3)
    assert f.cohen_kappa_rater_pairs == 3
    assert (f.pairs, f.judgments, f.raters) == (4, 12, 3)
    assert f.ceiling_accuracy == pytest.approx((1 + math.sqrt(2 * 8 / 12 - 1)) / 2)
    # Rater 0 shares 8 pairs of judgments with the others: agrees with rater 1 on 3 and rater 2 on 2.
    assert f.per_rater[0].agreement == pytest.approx(5 / 8)
    # Leave-one-out: rater 0's others are (a, a), (a, b) no majority, (b, b), (b, b): right on 2 of 3.
    assert (f.per_rater[0].majority_agreement, f.per_rater[0].majority_judgments) == (pytest.approx(2 / 3), 3)


def test_three_raters_four_pairs_with_ties_worked_out_by_hand():
    item, rater, choice = by_hand([[A, A, TIE], [TIE, TIE, TIE], [B, A, B], [A, B, TIE]])
    f = report.agreement_figures(arrays(item, rater, choice), min_shared=1)
    assert f.percent_agreement == pytest.approx(5 / 12)  # 1 + 3 + 1 + 0 of 12
    # P_i = 1/3, 1, 1/3, 0; category shares 4/12, 3/12, 5/12: chance 50/144.
    assert f.fleiss_kappa == pytest.approx((5 / 12 - 50 / 144) / (1 - 50 / 144))
    # Off-diagonal coincidences 2 + 0 + 2 + 3 = 7; n_c = 4, 3, 5: alpha = 1 - 11 * 7 / (144 - 50).
    assert f.krippendorff_alpha == pytest.approx(1 - 77 / 94)
    # Raters 0 and 1: a/a, tie/tie, b/a, a/b: po 1/2, marginals (2, 1, 1) both: pe 6/16 -> 0.2.
    first, second, _, kappas = ag.cohen_kappas(item, rater, choice, min_shared=1)
    assert kappas[(first == 0) & (second == 1)][0] == pytest.approx(0.2)
    assert f.ceiling_accuracy != f.ceiling_accuracy  # nan: below 50% agreement the model has no answer


def test_pairs_with_one_judgment_carry_no_agreement():
    item = np.array([0, 1, 1, 2], dtype=np.int64)
    rater = np.array([0, 0, 1, 1], dtype=np.int64)
    choice = np.array([A, B, B, A], dtype=np.int64)
    f = report.agreement_figures(arrays(item, rater, choice))
    assert (f.pairs, f.judgments, f.judgments_total, f.percent_agreement) == (1, 2, 4, 1.0)
    assert math.isnan(f.krippendorff_alpha)  # one category in use: alpha is undefined, not 1
    empty = report.agreement_figures(arrays(item[:1], rater[:1], choice[:1]))
    assert empty.pairs == 0 and math.isnan(empty.percent_agreement) and math.isnan(empty.cohen_kappa)


def test_the_ceiling_accuracy():
    assert ag.ceiling_accuracy(1.0) == 1.0
    assert ag.ceiling_accuracy(0.5) == 0.5
    # InstructGPT's ~73% agreement: a perfect model is right on ~84% of single judgments.
    assert ag.ceiling_accuracy(0.73) == pytest.approx(0.8391, abs=1e-4)
    q = ag.ceiling_accuracy(0.8)
    assert q**2 + (1 - q) ** 2 == pytest.approx(0.8)  # the model it inverts
    assert math.isnan(ag.ceiling_accuracy(0.4))


def test_the_profile_bootstrap_agrees_with_resampling_the_pairs():
    item, _, choice, _ = random_judgments(5, items=120)
    counts = ag.count_table(item, choice, item.max() + 1, 3)
    fast = ag.bootstrap_intervals(counts, n_boot=4000, seed=1)
    rated = counts[counts.sum(axis=1) >= 2]
    rng = np.random.default_rng(2)
    slow = {"percent_agreement": [], "krippendorff_alpha": []}
    for _ in range(4000):
        sample = rated[rng.integers(len(rated), size=len(rated))]
        slow["percent_agreement"].append(ag.percent_agreement(sample))
        slow["krippendorff_alpha"].append(ag.krippendorff_alpha(sample))
    for name, values in slow.items():
        low, high = np.percentile(values, [2.5, 97.5])
        assert fast[name][0] == pytest.approx(low, abs=0.02)
        assert fast[name][1] == pytest.approx(high, abs=0.02)
    point = ag.percent_agreement(counts)
    assert fast["percent_agreement"][0] < point < fast["percent_agreement"][1]
    assert ag.bootstrap_intervals(counts, n_boot=500, seed=1) == ag.bootstrap_intervals(
        counts, n_boot=500, seed=1
    )


def planted():
    """Eight raters on 60 pairs with a known better response (the shorter one on half the pairs):
    five careful raters right 90% of the time, one who always picks the left side, one who always
    picks the longer response, one who answers in under a second."""
    rng = np.random.default_rng(7)
    n_pairs, rows = 60, []
    truth = rng.integers(2, size=n_pairs)
    longer = np.where(np.arange(n_pairs) % 2 == 0, truth, 1 - truth)  # longer is right half the time
    for p in range(n_pairs):
        for r in range(8):
            left = int(rng.integers(2))
            if r == 5:
                choice = left
            elif r == 6:
                choice = int(longer[p])
            else:
                choice = int(truth[p]) if rng.random() < 0.9 else 1 - int(truth[p])
            time_ms = 800 if r == 7 else int(rng.integers(8000, 60000))
            rows.append((p, r, choice, left, time_ms))
    item, rater, choice, left, time_ms = np.array(rows).T
    gold = np.full(n_pairs, -1)
    gold[:8] = truth[:8]
    return arrays(item, rater, choice, shown_left=left, time_ms=time_ms, longer=longer, gold=gold)


def test_planted_raters_get_their_flags_and_careful_ones_none():
    f = report.agreement_figures(planted(), very_fast_ms=3000)
    flags = {r.rater: {code for code, _ in r.flags} for r in f.per_rater}
    assert "side_bias" in flags[5]
    assert "length_bias" in flags[6]
    assert "too_fast" in flags[7]
    assert all(flags[r] == set() for r in range(5)), flags
    assert "side_bias" not in flags[6] and "length_bias" not in flags[5]
    reason = dict(f.per_rater[5].flags)["side_bias"]
    assert "left side in 100% of 60" in reason
    assert f.per_rater[0].gold_judgments == 8 and f.per_rater[0].gold_accuracy >= 0.5
    assert f.per_rater[7].median_time_ms == 800 and f.per_rater[7].very_fast_share == 1.0
    # Without a threshold, nobody is too fast.
    assert not any(
        code == "too_fast" for r in report.agreement_figures(planted()).per_rater for code, _ in r.flags
    )


def test_a_rater_who_gets_gold_wrong_is_flagged():
    data = planted()
    wrong = (data.rater == 0) & (data.pair_gold[data.pair] >= 0)
    choice = np.where(wrong, 1 - data.pair_gold[data.pair], data.choice)
    f = report.agreement_figures(
        report.JudgmentArrays(**{**data.__dict__, "choice": choice}), very_fast_ms=3000
    )
    assert f.per_rater[0].gold_accuracy == 0.0
    assert [code for code, _ in f.per_rater[0].flags] == ["low_gold_accuracy"]


def test_the_binomial_test_is_scipys():
    from scipy.stats import binomtest

    cases = [(0, 1), (1, 1), (0, 10), (3, 10), (5, 10), (7, 10), (10, 10), (4, 9), (5, 9), (50, 60), (31, 61)]
    got = ag.binomial_p_values([k for k, _ in cases], [n for _, n in cases])
    for (k, n), p in zip(cases, got, strict=True):
        assert p == pytest.approx(binomtest(k, n, 0.5).pvalue, rel=1e-9, abs=1e-15), (k, n)
    assert np.isnan(ag.binomial_p_values([0], [0])[0])


def test_per_rater_medians_and_dense_indexes_match_numpy():
    rng = np.random.default_rng(4)
    group = rng.integers(6, size=500)
    values = rng.integers(0, 90_000, size=500)
    medians = report._medians(group, values, 8)
    for g in range(6):
        assert medians[g] == np.median(values[group == g])
    assert np.isnan(medians[6:]).all()
    for sample in (rng.integers(10**12, size=50), rng.integers(100, size=1000), np.zeros(0, np.int64)):
        distinct, index = ag.dense_index(sample)
        expected, inverse = np.unique(sample, return_inverse=True)
        assert np.array_equal(distinct, expected) and np.array_equal(index, inverse.reshape(-1))


def test_the_majority_of_the_others_is_the_rule_of_the_exports_and_the_trainer():
    from rm_training.votes import Votes

    rows = list(itertools.product(range(4), repeat=3))
    got = ag.strict_majority(np.array(rows, dtype=np.int64))
    for (a, b, tie), majority in zip(rows, got, strict=True):
        expected = Votes(a=a, b=b, tie=tie).majority()
        assert (report.CATEGORIES[majority] if majority >= 0 else None) == expected, (a, b, tie)


def test_gold_pairs_count_for_gold_accuracy_only():
    """Every rater sees every gold pair: pooled, those pairs would swamp the inter-rater figures."""
    # Three raters disagreeing on two regular pairs; all three right on three gold pairs.
    item, rater, choice = by_hand([[A, A, B], [B, A, B], [A, A, A], [B, B, B], [A, A, A]])
    gold = np.array([-1, -1, A, B, A])
    f = report.agreement_figures(arrays(item, rater, choice, gold=gold), min_shared=1)
    regular = report.agreement_figures(arrays(item[:6], rater[:6], choice[:6]), min_shared=1)
    assert f.percent_agreement == regular.percent_agreement == pytest.approx(2 / 6)
    assert f.krippendorff_alpha == regular.krippendorff_alpha
    assert f.fleiss_kappa == regular.fleiss_kappa
    assert f.percent_agreement_interval == regular.percent_agreement_interval
    assert f.decisive_agreement == regular.decisive_agreement
    assert (f.pairs, f.judgments, f.raters, f.judgments_total) == (2, 6, 3, 15)
    assert [r.agreement_pairs for r in f.per_rater] == [r.agreement_pairs for r in regular.per_rater]
    assert [r.majority_judgments for r in f.per_rater] == [0, 1, 1]  # the others' majority: regular pairs
    assert [(r.gold_accuracy, r.gold_judgments) for r in f.per_rater] == [(1.0, 3)] * 3


def test_the_ceiling_is_on_decisive_judgments_as_the_reward_models_accuracy():
    from rm_training.data import rater_agreement

    # Pair 0: a, a, tie; pair 1: b, tie, tie; pair 2: a, b, a; pair 3: tie, tie, tie.
    item, rater, choice = by_hand([[A, A, TIE], [B, TIE, TIE], [A, B, A], [TIE, TIE, TIE]])
    f = report.agreement_figures(arrays(item, rater, choice), min_shared=1)
    assert f.percent_agreement == pytest.approx((1 + 1 + 1 + 3) / 12)  # a / b / tie, as the issue defines
    # Decisive only: pair 0 (a, a) 2 of 2 ordered pairs agree; pair 2 (a, b, a) 2 of 6; the rest < 2.
    assert f.decisive_agreement == pytest.approx(4 / 8)
    assert f.ceiling_accuracy == pytest.approx(ag.ceiling_accuracy(4 / 8))

    class Comparison:  # what rm_training.data.rater_agreement reads
        def __init__(self, chosen, rejected):
            self.votes_chosen, self.votes_rejected = chosen, rejected
            self.decisive_votes = chosen + rejected

    assert f.decisive_agreement == pytest.approx(
        rater_agreement([Comparison(2, 0), Comparison(1, 0), Comparison(2, 1), Comparison(0, 0)])
    )
    ties = report.agreement_figures(arrays(*by_hand([[TIE, TIE, TIE]] * 4)), min_shared=1)
    assert ties.percent_agreement == 1.0
    assert math.isnan(ties.decisive_agreement) and math.isnan(ties.ceiling_accuracy)
    assert all(math.isnan(v) for v in ties.ceiling_accuracy_interval)


def test_ordinal_alpha_says_how_many_judgments_it_used():
    # Strength on a 1..2 scale: pair 1's b has none, pair 2's a has 3 (above the scale): both left out.
    item, rater, choice = by_hand([[A, A, B], [B, B, TIE], [A, A, A]])
    strength = np.array([1, 2, 1, 0, 2, 0, 2, 3, 1])
    f = report.agreement_figures(arrays(item, rater, choice, strength=strength), strength_levels=2)
    assert f.krippendorff_alpha_ordinal_judgments == 7
    assert report.agreement_figures(arrays(item, rater, choice)).krippendorff_alpha_ordinal_judgments == 0


def test_cohen_kappa_counts_rater_pairs_sharing_enough_pairs_and_those_with_a_kappa():
    item, rater, choice = by_hand([[TIE, TIE, TIE]] * 12)  # three rater pairs share 12 pairs, all ties
    f = report.agreement_figures(arrays(item, rater, choice))
    assert (f.cohen_kappa_rater_pairs, f.cohen_kappa_defined_pairs) == (3, 0)
    assert math.isnan(f.cohen_kappa)


def test_a_rater_who_always_picks_the_shorter_response_is_flagged_too():
    data = planted()
    shorter = 1 - data.pair_longer[data.pair]
    choice = np.where(data.rater == 6, shorter, data.choice)
    f = report.agreement_figures(report.JudgmentArrays(**{**data.__dict__, "choice": choice}))
    reason = dict(f.per_rater[6].flags)["length_bias"]
    assert "longer response in 0% of 60" in reason
    assert all("length_bias" not in dict(f.per_rater[r].flags) for r in range(6))


def test_the_statistics_import_numpy_and_scipy_only_and_the_report_no_django():
    # The statistics stand on arrays alone, with no report (the leaderboard's will sit beside them).
    tree = ast.parse(Path(ag.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    # A relative import (".report") counts as "": the statistics know nothing else of the app.
    imported |= {"." * n.level + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert {name.split(".")[0] for name in imported} == {"__future__", "math", "numpy", "scipy"}
    report_imports = modules_after("import annotation.agreement.report")
    assert "numpy" in report_imports and "django" not in report_imports
