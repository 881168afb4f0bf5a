"""Active selection in the trainer: arm and propensity read from judgments files, the --ipw weights and
their loss on literal tensors, the held-out figures per arm, and the inverse-propensity accuracy checked
for bias against a planted pool over many simulated selections."""

from __future__ import annotations

import json
import math
import random
import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from rm_training.cli import main
from rm_training.config import TrainingConfig
from rm_training.data import Comparison, DataError, dataset_digest, read_data
from rm_training.evaluate import reward_metrics
from rm_training.loss import bradley_terry_loss
from rm_training.metrics import TrainingMetrics
from rm_training.propensity import ipw_mean, pair_arm
from rm_training.train import ipw_weighted, train
from rm_training.votes import ipw_factor

from .conftest import marker_comparisons, write_jsonl


def judgment(pair: str, rater: str, choice: str, arm: str | None = None, p: float | None = None) -> dict:
    row = {"pair_id": pair, "prompt": f"prompt {pair}", "response_a": "x", "response_b": "y"}
    return row | {"rater": rater, "choice": choice, "arm": arm, "propensity": p}


# --- reading ---------------------------------------------------------------------------------------------


def test_a_judgments_file_gives_each_pair_its_judgments_arms_and_propensities(tmp_path: Path) -> None:
    rows = [
        judgment("1", "r1", "a", "uncertainty", 0.5),
        judgment("1", "r2", "a", "random", 0.25),
        judgment("1", "r3", "tie"),  # default order: no propensity, counts 1
        judgment("2", "r1", "b"),
        judgment("2", "r2", "b"),
    ]
    data = read_data(write_jsonl(tmp_path / "j.jsonl", rows))
    first, second = data.comparisons
    assert first.arms == ("uncertainty", "random", None) and first.propensities == (0.5, 0.25, None)
    assert pair_arm(first.arms) == "uncertainty"
    # Two decisive votes (ties dropped), each judgment's 1/p averaged: 2 x (2 + 4 + 1) / 3.
    assert first.weight == 2.0 and ipw_factor(first.propensities) == pytest.approx(7 / 3)
    assert ipw_weighted([first])[0].weight == pytest.approx(14 / 3)
    assert ipw_weighted([first])[0].target == first.target == 1.0  # the vote share, not reweighted
    # A pair without arms reads as it did before active selection: same comparison, same digest.
    assert (second.arms, second.propensities, pair_arm(second.arms)) == ((), (), "default")
    without = [{k: v for k, v in row.items() if k not in ("arm", "propensity")} for row in rows[3:]]
    (old,) = read_data(write_jsonl(tmp_path / "old.jsonl", without)).comparisons
    assert old == second and dataset_digest([old]) == dataset_digest([second])
    assert ipw_weighted([second]) == [second]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("propensity", 0, "must be a probability greater than 0 and at most 1, not the number 0"),
        ("propensity", 1.5, "must be a probability greater than 0 and at most 1, not the number 1.5"),
        ("propensity", "0.5", "must be a number, not '0.5'"),
        # 1/p weighs the pair: 1e-200 overflowed the trainer's arithmetic (a traceback, not a message)
        (
            "propensity",
            1e-200,
            "must be at least 1e-30 (its inverse weighs the pair, and a larger one overflows the weights' "
            "arithmetic), not the number 1e-200",
        ),
        ("arm", "greedy", "must be 'uncertainty', 'random' or null, not 'greedy'"),
    ],
)
def test_a_bad_arm_or_propensity_is_refused_naming_the_line(
    tmp_path: Path, field: str, value: Any, message: str
) -> None:
    rows = [judgment("1", "r1", "a", "random", 0.5), judgment("1", "r2", "a", "random", 0.5)]
    rows[1][field] = value
    with pytest.raises(DataError) as refused:
        read_data(write_jsonl(tmp_path / "j.jsonl", rows))
    assert str(refused.value) == f"{tmp_path / 'j.jsonl'}: line 2: {field}: {message}"


# --- the weighted loss -----------------------------------------------------------------------------------


def test_the_ipw_loss_is_the_hand_computed_weighted_mean_of_minus_log_sigmoid() -> None:
    propensities = [(0.5,), (0.1,), ()]  # weights 2, 10 and 1 (no propensity)
    examples = [
        Comparison(prompt=f"p{i}", chosen="c", rejected="r", propensities=p)
        for i, p in enumerate(propensities)
    ]
    weights = torch.tensor([c.weight for c in ipw_weighted(examples)])
    assert weights.tolist() == [2.0, 10.0, 1.0]
    r_chosen, r_rejected = torch.tensor([1.0, 0.0, 2.5]), torch.tensor([0.0, 0.5, 0.5])
    loss = bradley_terry_loss(r_chosen, r_rejected, weight=weights).loss
    # -log sigmoid(z) = log(1 + e^-z) at z = 1, -0.5, 2, weighted 2, 10, 1 over their sum 13.
    by_hand = (2 * math.log1p(math.exp(-1)) + 10 * math.log1p(math.exp(0.5)) + math.log1p(math.exp(-2))) / 13
    assert float(loss) == pytest.approx(by_hand, rel=1e-6)
    # Equal propensities weigh every example alike: the plain mean, whatever the propensity.
    same = ipw_weighted([Comparison(prompt="p", chosen="c", rejected="r", propensities=(0.2,))] * 3)
    equal = bradley_terry_loss(r_chosen, r_rejected, weight=torch.tensor([c.weight for c in same])).loss
    plain = bradley_terry_loss(r_chosen, r_rejected).loss
    assert float(equal) == pytest.approx(float(plain), rel=1e-6)
    assert float(plain) == pytest.approx(
        (math.log1p(math.exp(-1)) + math.log1p(math.exp(0.5)) + math.log1p(math.exp(-2))) / 3, rel=1e-6
    )


# --- the held-out figures --------------------------------------------------------------------------------


def test_the_held_out_figures_split_by_arm_and_leave_ipw_out_when_nothing_was_chosen() -> None:
    examples = [
        Comparison(
            prompt="1", chosen="c", rejected="r", arms=("uncertainty", "random"), propensities=(0.8, 0.01)
        ),
        Comparison(prompt="2", chosen="c", rejected="r", arms=("random",), propensities=(0.01,)),
        Comparison(prompt="3", chosen="c", rejected="r"),
        Comparison(prompt="4", chosen="c", rejected="r"),
    ]
    margins = torch.tensor([1.0, -1.0, 1.0, 0.0])  # right, wrong, right, equal (half)
    metrics = reward_metrics(examples, margins, torch.zeros(4))
    assert metrics["by_arm"] == {
        "uncertainty": {"pairs": 1, "accuracy": 1.0},  # the arm of its first judgment
        "random": {"pairs": 1, "accuracy": 0.0},
        "default": {"pairs": 2, "accuracy": 0.75},
    }
    # Weights: 1/0.8 + 1/0.01 = 101.25 (two draws) and 100; self-normalised.
    ipw = metrics["accuracy_ipw"]
    assert ipw["accuracy"] == pytest.approx(101.25 / 201.25)
    expected = ipw_mean([1.0, 0.0], [101.25, 100.0])
    assert expected is not None and ipw["standard_error"] == pytest.approx(expected.standard_error)
    assert ipw["pairs"] == 2 and ipw["effective_pairs"] == pytest.approx(201.25**2 / (101.25**2 + 100**2))
    default_only = reward_metrics(examples[2:], margins[2:], torch.zeros(2))
    assert "accuracy_ipw" not in default_only and set(default_only["by_arm"]) == {"default"}


# Planted pool: a priority per pair (the model's uncertainty), and whether the model is right on it, less
# often the more uncertain the pair, so that the pairs uncertainty selection favours are the hard ones.
POOL, DRAWS, CANDIDATES, EPSILON, SEEDS = 200, 300, 20, 0.2, 200


def _planted_pool() -> tuple[list[float], list[bool]]:
    rng = random.Random(0)
    priority = [rng.random() for _ in range(POOL)]
    return priority, [rng.random() < 0.9 - 0.6 * p for p in priority]


def _selected(seed: int, priority: list[float], correct: list[bool]) -> dict[str, Any]:
    """One simulated selection: each draw, a random set of open candidates; epsilon-greedy on the
    priority, every draw logging the probability the rule gave its pair; then the held-out metrics of a
    model right exactly on the planted pairs."""
    rng = random.Random(seed)
    draws: dict[int, list[tuple[str, float]]] = {}
    for _ in range(DRAWS):
        candidates = rng.sample(range(POOL), CANDIDATES)
        top = max(candidates, key=priority.__getitem__)
        arm, pick = ("random", rng.choice(candidates)) if rng.random() < EPSILON else ("uncertainty", top)
        propensity = (1 - EPSILON) * (pick == top) + EPSILON / CANDIDATES
        draws.setdefault(pick, []).append((arm, propensity))
    examples = [
        Comparison(
            prompt=str(j),
            chosen="c",
            rejected="r",
            arms=tuple(arm for arm, _ in logged),
            propensities=tuple(p for _, p in logged),
        )
        for j, logged in draws.items()
    ]
    margins = torch.tensor([1.0 if correct[j] else -1.0 for j in draws])
    return reward_metrics(examples, margins, torch.zeros(len(examples)))


def test_the_ipw_accuracy_is_unbiased_on_a_planted_pool_where_the_naive_one_is_not() -> None:
    priority, correct = _planted_pool()
    truth = sum(correct) / POOL
    runs = [_selected(seed, priority, correct) for seed in range(SEEDS)]
    estimates = [run["accuracy_ipw"]["accuracy"] for run in runs]
    naive = [run["accuracy"] for run in runs]  # the plain accuracy on the chosen pairs
    error_of_mean = statistics.stdev(estimates) / math.sqrt(SEEDS)
    assert abs(statistics.mean(estimates) - truth) < 3 * error_of_mean
    # The naive figure is off by many of its own standard errors (the uncertain pairs are the hard ones).
    naive_error = statistics.stdev(naive) / math.sqrt(SEEDS)
    assert statistics.mean(naive) < truth - 10 * naive_error
    # The reported standard error is the spread the estimate really has over seeds, give or take.
    reported = statistics.mean(run["accuracy_ipw"]["standard_error"] for run in runs)
    assert 0.7 < reported / statistics.stdev(estimates) < 1.5


# --- training --------------------------------------------------------------------------------------------


def _selected_judgments(n: int) -> list[dict[str, Any]]:
    """marker_comparisons as judgments rows: chosen on side a, each pair once, a third of them chosen by
    the uncertainty arm (p 0.6), a third by the random arm (p 0.05), the rest in the default order."""
    rows = []
    for i, c in enumerate(marker_comparisons(n)):
        arm, p = [("uncertainty", 0.6), ("random", 0.05), (None, None)][i % 3]
        rows.append(
            {
                "pair_id": c.pair_id,
                "prompt": c.prompt,
                "response_a": c.chosen,
                "response_b": c.rejected,
                "rater": "r1",
                "choice": "a",
                "arm": arm,
                "propensity": p,
            }
        )
    return rows


def test_a_tiny_model_trains_with_ipw_and_lowers_its_loss(
    fast_config: TrainingConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "judgments.jsonl", _selected_judgments(240))
    config = tmp_path / "config.json"
    config.write_text(json.dumps(fast_config.to_dict()))
    output = tmp_path / "model"
    assert (
        main(["train", "--data", str(data), "--output", str(output), "--config", str(config), "--ipw"]) == 0
    )
    printed = capsys.readouterr()
    metrics = TrainingMetrics.load(output)
    assert TrainingConfig.load(output).ipw is True
    assert metrics.history[-1]["train_loss"] < metrics.history[0]["train_loss"]
    assert metrics.log[-1]["loss"] < metrics.log[0]["loss"]
    assert metrics.eval_by_arm is not None and set(metrics.eval_by_arm) == {
        "uncertainty",
        "random",
        "default",
    }
    assert sum(arm["pairs"] for arm in metrics.eval_by_arm.values()) == metrics.counts.eval_pairs
    assert metrics.eval_accuracy_ipw is not None
    assert metrics.eval_accuracy_ipw["pairs"] == sum(
        metrics.eval_by_arm[arm]["pairs"] for arm in ("uncertainty", "random")
    )
    assert f"eval_accuracy_ipw {metrics.eval_accuracy_ipw['accuracy']:.4f} (se " in printed.out
    card = (output / "README.md").read_text()
    assert "| accuracy on actively chosen pairs, inverse-propensity corrected (" in card
    assert "| accuracy on random pairs (" in card
    train_pairs = metrics.counts.train_pairs
    assert f"of {train_pairs} training pair(s) have propensities; weights from 1 to 20" in printed.err

    assert main(["eval", "--model", str(output), "--data", str(data)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("by_arm.random.accuracy: ") for line in lines)
    assert any(line.startswith("accuracy_ipw.standard_error: ") for line in lines)


def test_without_propensities_ipw_changes_nothing_and_the_ipw_keys_are_absent(
    fast_config: TrainingConfig, tmp_path: Path
) -> None:
    examples = marker_comparisons(120)
    config = TrainingConfig.from_dict(fast_config.to_dict() | {"epochs": 1})
    plain = train(config, examples=examples, output_dir=tmp_path / "plain")
    weighted = train(
        TrainingConfig.from_dict(config.to_dict() | {"ipw": True}),
        examples=examples,
        output_dir=tmp_path / "ipw",
    )
    assert [entry["loss"] for entry in weighted["log"]] == [entry["loss"] for entry in plain["log"]]
    assert "eval_accuracy_ipw" not in plain and set(plain["eval_by_arm"]) == {"default"}
    saved = json.loads((tmp_path / "plain" / "metrics.json").read_text())
    assert "eval_accuracy_ipw" not in saved and saved["eval_by_arm"] == plain["eval_by_arm"]
    nothing_held = train(
        TrainingConfig.from_dict(config.to_dict() | {"eval_fraction": 0}),
        examples=examples,
        output_dir=tmp_path / "none",
    )
    assert "eval_by_arm" not in nothing_held and "eval_accuracy_ipw" not in nothing_held
