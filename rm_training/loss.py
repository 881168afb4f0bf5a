"""The Bradley-Terry loss, the one function that training, evaluation and the tests all use.

P(chosen preferred) = sigmoid(r_chosen - r_rejected); the loss is its negative log, averaged over the
batch. The options generalise it without changing that default: a soft ``target`` (a vote share, 0.5 for
a tie), a Llama 2 ``margin``, per-example ``weight`` and reward centering.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F


class BradleyTerryLoss(NamedTuple):
    loss: torch.Tensor  # scalar, backpropagated: the weighted batch mean, or a share of it (normalizer)
    per_example: torch.Tensor  # [batch]
    prob_chosen: torch.Tensor  # [batch]: sigmoid(r_chosen - r_rejected), without the margin


def bradley_terry_loss(
    r_chosen: torch.Tensor,
    r_rejected: torch.Tensor,
    *,
    margin: torch.Tensor | None = None,
    tie: torch.Tensor | None = None,
    target: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    centering: float = 0.0,
    normalizer: torch.Tensor | float | None = None,
) -> BradleyTerryLoss:
    """-[t log s(z - m) + (1 - t) log s(-z)] + centering (r_c + r_r)^2, with z = r_chosen - r_rejected.

    With the defaults (t = 1, m = 0, no centering) this is exactly -log sigmoid(r_chosen - r_rejected).
    ``tie`` marks pairs judged equal: their target becomes 0.5 and their margin 0, so the loss pulls their
    rewards together. ``margin`` applies to the chosen side only (as in Llama 2: the winner must win by
    that much); a minority of votes for rejected keeps the plain term.

    The batch loss is sum(weight x per_example) / normalizer: with the default normalizer (the sum of the
    weights, one per example by default) the weighted mean. A micro-batch passes the weight of its whole
    global batch instead, so that its loss is its share of the global batch's weighted mean and the
    shares add up to that mean. Works on logits in any float dtype; computes in float32 so that bf16
    autocast does not round the loss.
    """
    r_chosen, r_rejected = r_chosen.float(), r_rejected.float()
    z = r_chosen - r_rejected
    t = torch.ones_like(z) if target is None else target.to(z)
    m = torch.zeros_like(z) if margin is None else margin.to(z)
    if tie is not None:
        tie = tie.to(device=z.device, dtype=torch.bool)
        t = torch.where(tie, torch.full_like(t, 0.5), t)
        m = torch.where(tie, torch.zeros_like(m), m)
    # logsigmoid is the stable form of log(sigmoid(x)) for large |x|.
    per_example = -(t * F.logsigmoid(z - m) + (1.0 - t) * F.logsigmoid(-z))
    if centering:
        per_example = per_example + centering * (r_chosen + r_rejected) ** 2
    w = torch.ones_like(z) if weight is None else weight.to(z)
    loss = (w * per_example).sum() / (w.sum() if normalizer is None else normalizer)
    return BradleyTerryLoss(loss=loss, per_example=per_example, prob_chosen=torch.sigmoid(z))
