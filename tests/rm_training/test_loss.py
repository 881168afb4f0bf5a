"""The Bradley-Terry loss: the seed's worked example, and each option against its definition."""

from __future__ import annotations

import math

import pytest
import torch

from rm_training.loss import bradley_terry_loss

# The seed's batch (../shared/seed/000_85d392814092a005.txt): logits (r_A, r_B) and the human's choice.
SEED_LOGITS = [(0.8, 2.1), (1.8, 1.2), (1.5, 2.5)]
SEED_CHOICES = ["B", "A", "B"]


def seed_batch() -> tuple[torch.Tensor, torch.Tensor]:
    chosen = [b if choice == "B" else a for (a, b), choice in zip(SEED_LOGITS, SEED_CHOICES, strict=True)]
    rejected = [a if choice == "B" else b for (a, b), choice in zip(SEED_LOGITS, SEED_CHOICES, strict=True)]
    return torch.tensor(chosen), torch.tensor(rejected)


def test_seed_worked_example_through_the_training_loss() -> None:
    """The seed's batch, digit for digit where its arithmetic holds.

    Two of the seed's printed figures are slips, which this test pins down rather than copies:
    - example 1: sigmoid(1.3) = 1 / 1.27253 = 0.7858 (the seed prints 0.7856) and -log(0.7858) = 0.2410
      (it prints 0.2416, which is not the log of either figure);
    - example 2: A was chosen and the model scores A higher (1.8 > 1.2), so P(A preferred) =
      sigmoid(1.8 - 1.2) = sigmoid(0.6) = 0.6457 and the loss is 0.4375. The seed computes sigmoid(-0.6)
      (the probability of the rejected side) and then drops the "1 +" of its own formula:
      1 / (1 + e^0.6) = 0.3543, not 1 / 1.8221 = 0.5488; its 0.6006 is about -log(0.5487) = 0.6002.
    So the batch loss is (0.2410 + 0.4375 + 0.3133) / 3 = 0.3306, not 0.3852.
    Example 3 matches the seed exactly: 0.7311 and 0.3133.
    """
    r_chosen, r_rejected = seed_batch()
    result = bradley_terry_loss(r_chosen, r_rejected)

    assert [round(p, 4) for p in result.prob_chosen.tolist()] == [0.7858, 0.6457, 0.7311]
    assert [round(x, 4) for x in result.per_example.tolist()] == [0.2410, 0.4375, 0.3133]
    assert round(result.loss.item(), 4) == 0.3306
    # The batch loss is the mean of the per-example losses (-log sigmoid of the difference).
    assert result.loss.item() == pytest.approx(result.per_example.mean().item())
    # The seed's example-2 figure is the "1 +"-less slip, not the loss of either orientation.
    assert 1 / math.exp(0.6) == pytest.approx(0.5487, abs=2e-4)
    assert round(1 / (1 + math.exp(0.6)), 4) == 0.3543


def test_seed_example_3_matches_the_seed_digit_for_digit() -> None:
    result = bradley_terry_loss(torch.tensor([2.5]), torch.tensor([1.5]))
    assert round(result.prob_chosen.item(), 4) == 0.7311
    assert round(result.per_example.item(), 4) == 0.3133


def test_default_loss_is_minus_log_sigmoid_of_the_difference() -> None:
    r_chosen, r_rejected = torch.randn(64) * 5, torch.randn(64) * 5
    result = bradley_terry_loss(r_chosen, r_rejected)
    expected = -torch.log(torch.sigmoid(r_chosen - r_rejected))
    torch.testing.assert_close(result.per_example, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(result.loss, expected.mean(), rtol=1e-4, atol=1e-5)


def test_loss_stays_finite_for_large_wrong_margins() -> None:
    result = bradley_terry_loss(torch.tensor([-200.0]), torch.tensor([200.0]))
    assert result.loss.item() == pytest.approx(400.0)


def test_vote_share_with_weight_equals_one_example_per_judgment() -> None:
    """Why judgments become weighted votes: 2 votes to 1 as target 2/3, weight 3 is the same loss
    (and so the same gradient) as the three judgments as separate examples."""
    r_a, r_b = torch.tensor([0.7], requires_grad=True), torch.tensor([-0.4], requires_grad=True)
    votes = bradley_terry_loss(r_a, r_b, target=torch.tensor([2 / 3]), weight=torch.tensor([3.0]))
    (votes.loss * 3).backward()
    grad_votes = (r_a.grad.clone(), r_b.grad.clone())  # type: ignore[union-attr]
    r_a.grad, r_b.grad = None, None
    per_judgment = bradley_terry_loss(torch.cat([r_a, r_a, r_b]), torch.cat([r_b, r_b, r_a]))
    (per_judgment.loss * 3).backward()
    assert (votes.loss * 3).item() == pytest.approx((per_judgment.loss * 3).item(), rel=1e-6)
    torch.testing.assert_close(grad_votes, (r_a.grad, r_b.grad))


def test_a_tie_is_a_half_target_that_pulls_rewards_together() -> None:
    r_chosen = torch.tensor([1.0, 0.0], requires_grad=True)
    r_rejected = torch.tensor([0.0, 0.0])
    result = bradley_terry_loss(
        r_chosen, r_rejected, tie=torch.tensor([True, True]), margin=torch.tensor([5.0, 5.0])
    )
    # At equal rewards the tie loss is log 2 and flat; a gap is pushed back (margins do not apply to ties).
    assert result.per_example[1].item() == pytest.approx(math.log(2))
    result.loss.backward()
    assert r_chosen.grad is not None
    assert r_chosen.grad[0].item() > 0 and r_chosen.grad[1].item() == pytest.approx(0.0)


def test_margin_asks_the_winner_to_win_by_that_much() -> None:
    r_chosen, r_rejected = torch.tensor([1.0]), torch.tensor([0.0])
    plain = bradley_terry_loss(r_chosen, r_rejected)
    with_margin = bradley_terry_loss(r_chosen, r_rejected, margin=torch.tensor([1.0]))
    assert with_margin.loss.item() == pytest.approx(math.log(2))  # -log sigmoid(1 - 1)
    assert with_margin.loss.item() > plain.loss.item()
    # The reported probability is the model's, without the margin.
    assert with_margin.prob_chosen.item() == pytest.approx(plain.prob_chosen.item())


def test_centering_adds_coefficient_times_mean_squared_reward_sum() -> None:
    r_chosen, r_rejected = torch.tensor([2.0, 1.0]), torch.tensor([1.0, -3.0])
    plain = bradley_terry_loss(r_chosen, r_rejected)
    centred = bradley_terry_loss(r_chosen, r_rejected, centering=0.01)
    expected = plain.loss + 0.01 * ((r_chosen + r_rejected) ** 2).mean()
    assert centred.loss.item() == pytest.approx(expected.item())


def test_weights_give_a_weighted_mean() -> None:
    r_chosen, r_rejected = torch.tensor([1.0, -1.0]), torch.tensor([0.0, 0.0])
    result = bradley_terry_loss(r_chosen, r_rejected, weight=torch.tensor([3.0, 1.0]))
    expected = (3 * result.per_example[0] + result.per_example[1]) / 4
    assert result.loss.item() == pytest.approx(expected.item())


def test_micro_batch_losses_over_the_global_weight_add_up_to_the_batch_loss() -> None:
    """What gradient accumulation relies on: each micro-batch's loss with the global batch's weight as
    normalizer is its share of the weighted mean, so the shares (and their gradients) sum to the whole."""
    r_chosen = torch.tensor([1.0, -0.5, 0.3, 2.0, -1.0], requires_grad=True)
    r_rejected = torch.tensor([0.0, 0.5, 0.1, -1.0, 0.2])
    target = torch.tensor([1.0, 2 / 3, 1.0, 0.5, 1.0])
    weight = torch.tensor([1.0, 3.0, 1.0, 2.0, 4.0])
    whole = bradley_terry_loss(r_chosen, r_rejected, target=target, weight=weight, centering=0.01)
    whole.loss.backward()
    grad_whole = r_chosen.grad.clone()  # type: ignore[union-attr]
    r_chosen.grad = None

    global_weight = float(weight.sum())
    shares = [
        bradley_terry_loss(
            r_chosen[part],
            r_rejected[part],
            target=target[part],
            weight=weight[part],
            centering=0.01,
            normalizer=global_weight,
        ).loss
        for part in (slice(0, 2), slice(2, 5))
    ]
    assert shares[0].item() == pytest.approx((weight[:2] * whole.per_example[:2]).sum().item() / 11)
    total = shares[0] + shares[1]
    total.backward()
    assert total.item() == pytest.approx(whole.loss.item())
    torch.testing.assert_close(r_chosen.grad, grad_whole)
