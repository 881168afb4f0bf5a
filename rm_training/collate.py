"""Padding-free batches: the sequences of a micro-batch end to end in one row, for decoder models whose
attention keeps packed sequences apart (:func:`rm_training.model.check_padding_free`).

Built on what the encoder gives (each sequence's token ids; its reward is read at its last token, as the
padded head reads it), so that packing knows nothing of how text became tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def packed_inputs(sequences: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    """Model inputs for ``sequences`` in one row: ``input_ids`` and ``position_ids`` of shape [1, total
    tokens], the position ids restarting at 0 at each sequence (which is how flash-attention and
    transformers' masks tell the sequences apart: no attention mask is passed), and ``sequence_ends``,
    the index of each sequence's last token, where its reward is read
    (:func:`rm_training.model.rewards_from`)."""
    if not sequences or any(len(ids) == 0 for ids in sequences):
        raise ValueError("packing needs at least one sequence, none of them empty")
    lengths = torch.tensor([len(ids) for ids in sequences])
    input_ids = torch.tensor([token for ids in sequences for token in ids], dtype=torch.long)
    starts = torch.cumsum(lengths, 0) - lengths
    position_ids = torch.arange(int(lengths.sum())) - torch.repeat_interleave(starts, lengths)
    return {
        "input_ids": input_ids.unsqueeze(0),
        "position_ids": position_ids.unsqueeze(0),
        "sequence_ends": starts + lengths - 1,
    }
