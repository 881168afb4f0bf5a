"""Sharded training (FSDP2, ``torch.distributed.fsdp.fully_shard``) for models that do not fit one GPU,
and the consolidated state dict that rank 0 saves. DDP (in rm_training.train) stays the path for models
that fit: it is simpler and, with the whole model on each GPU, faster.

Every process must call these together: they communicate.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from transformers import PreTrainedModel


def shard(model: PreTrainedModel, *, bf16: bool) -> PreTrainedModel:
    """Shard ``model`` in place over the processes: each transformer block (the classes the model names
    in ``_no_split_modules``) is one FSDP unit, gathered for its forward and backward and freed after, and
    the rest (embeddings, final norm, the reward head) is the root unit. With ``bf16`` the gathered
    weights are bf16 and gradients are reduced in float32; the sharded weights and AdamW's state stay
    float32."""
    blocks = set(getattr(model, "_no_split_modules", None) or ())
    if not blocks:
        raise ValueError(
            f"{type(model).__name__} names no transformer blocks (_no_split_modules) to shard by"
        )
    policy = (
        MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        if bf16
        else MixedPrecisionPolicy()
    )
    for module in model.modules():
        if type(module).__name__ in blocks:
            fully_shard(module, mp_policy=policy)
    fully_shard(model, mp_policy=policy)
    return model


def full_state_dict(model: torch.nn.Module) -> dict[str, Any]:
    """The whole model's weights on rank 0's CPU (an empty dict elsewhere), gathered a tensor at a time
    so that no GPU holds the whole model."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
