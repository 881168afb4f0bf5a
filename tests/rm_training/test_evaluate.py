"""Held-out metrics from literal rewards: how equal scores count, unanimous vs split, per judgment, ECE."""

from __future__ import annotations

import math

import pytest
import torch

from rm_training.data import Comparison
from rm_training.evaluate import reward_metrics


def pair(votes_chosen: int = 1, votes_rejected: int = 0, votes_tie: int = 0, tie: bool = False) -> Comparison:
    total = votes_chosen + votes_rejected
    return Comparison(
        prompt="p",
        chosen="c",
        rejected="r",
        target=0.5 if tie else votes_chosen / total,
        weight=float(total),
        tie=tie,
        votes_chosen=votes_chosen,
        votes_rejected=votes_rejected,
        votes_tie=votes_tie,
    )


def test_equal_scores_count_half() -> None:
    comparisons = [pair(), pair(), pair()]
    metrics = reward_metrics(comparisons, torch.tensor([1.0, 0.0, 0.5]), torch.tensor([0.0, 1.0, 0.5]))
    assert metrics["accuracy"] == pytest.approx(0.5)
    constant = reward_metrics(comparisons, torch.zeros(3), torch.zeros(3))
    assert constant["accuracy"] == 0.5 and constant["judgment_accuracy"] == 0.5


def test_unanimous_split_and_individual_judgment_accuracy() -> None:
    comparisons = [pair(3, 0), pair(2, 1), pair(2, 1), pair(1, 1, tie=True)]
    r_chosen = torch.tensor([1.0, 1.0, -1.0, 1.0])
    r_rejected = torch.zeros(4)
    metrics = reward_metrics(comparisons, r_chosen, r_rejected)
    assert metrics["accuracy"] == pytest.approx(2 / 3)  # the tie is nobody's to win
    assert metrics["accuracy_unanimous"] == 1.0
    assert metrics["accuracy_split"] == 0.5
    # Judgments agreed with: 3 + 2 + 1 (the minority of the wrongly ranked pair) + 1 of the tied pair's two.
    assert metrics["judgment_accuracy"] == pytest.approx(7 / 11)
    assert (metrics["pairs_unanimous"], metrics["pairs_split"], metrics["judgments"]) == (1, 2, 11)


def test_calibration_error_is_zero_when_confidence_matches_the_vote_share() -> None:
    share = 0.75
    z = torch.log(torch.tensor(share / (1 - share)))
    comparisons = [pair(3, 1)] * 4
    metrics = reward_metrics(comparisons, z.repeat(4), torch.zeros(4))
    assert metrics["ece"] == pytest.approx(0.0, abs=1e-6)
    overconfident = reward_metrics(comparisons, torch.full((4,), 10.0), torch.zeros(4))
    assert overconfident["ece"] == pytest.approx(0.25, abs=1e-3)


def test_reward_mean_and_spread_cover_both_sides() -> None:
    metrics = reward_metrics([pair(), pair()], torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -3.0]))
    assert metrics["reward_mean"] == 0.0
    assert metrics["reward_std"] == pytest.approx(
        torch.tensor([1.0, 3.0, -1.0, -3.0]).std(unbiased=False).item()
    )


@pytest.mark.parametrize("noise", [1e-8, -1e-8, 3e-7, 0.0])
def test_pairs_whose_sides_are_the_same_input_are_ties_whatever_the_floats_say(noise: float) -> None:
    """Batched padding can make two identical inputs differ in the eighth decimal; they are still a tie."""
    comparisons = [pair(), pair(), pair(2, 1), pair()]
    r_chosen = torch.tensor([0.3, -1.0, 2.0, 1.0])
    r_rejected = torch.tensor([0.3 + noise, -1.0 - noise, 2.0 + noise, 0.0])
    metrics = reward_metrics(comparisons, r_chosen, r_rejected, identical=[True, True, True, False])
    # Three ties at half credit and one right: 2.5 / 4, the same for every noise.
    assert metrics["accuracy"] == pytest.approx(2.5 / 4)
    assert metrics["mean_margin"] == pytest.approx(1.0 / 4)
    assert metrics["pairs_identical_tokens"] == 3
    # Judgments: 1 + 1 + (2 + 1) at half credit, and 1 agreed with: 3.5 of 6.
    assert metrics["judgment_accuracy"] == pytest.approx(3.5 / 6)
    only_ties = reward_metrics(comparisons[:2], r_chosen[:2], r_rejected[:2], identical=[True, True])
    assert only_ties["accuracy"] == 0.5
    assert only_ties["loss"] == pytest.approx(math.log(2), abs=1e-7)


def test_without_the_inputs_equal_floats_still_count_half_and_unequal_ones_do_not() -> None:
    metrics = reward_metrics([pair(), pair()], torch.tensor([1.0, 1.0]), torch.tensor([1.0, 1.0 + 1e-6]))
    assert metrics["accuracy"] == pytest.approx(0.25)
    assert metrics["pairs_identical_tokens"] == 0
