"""Scoring with a trained reward model: batched raw logits for (prompt, response) lists; a prompt is a text
or a conversation (rm_training.conversation), encoded as training encodes it (rm_training.tokenization)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .evaluate import compute_rewards
from .model import load_trained
from .tokenization import Prompt


class RewardScorer:
    """Loads a trained model directory once and scores responses with it.

    The inputs are encoded as in training (same format, same truncation, the run's max_length), so a
    score here is the reward the model was trained to give.
    """

    def __init__(self, model_dir: str | Path, *, device: str = "auto", batch_size: int = 32) -> None:
        self.trained = load_trained(model_dir, device)
        self.config, self.model, self.encoder = self.trained.config, self.trained.model, self.trained.encoder
        self.device = self.trained.device
        self.batch_size = batch_size

    def score(self, prompt: Prompt, responses: Sequence[str]) -> list[float]:
        """Rewards of several responses to one prompt, in order."""
        return self.score_pairs([prompt] * len(responses), responses)

    def score_pairs(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> list[float]:
        """Rewards of (prompts[i], responses[i]) for every i."""
        if len(prompts) != len(responses):
            raise ValueError("prompts and responses must have the same length")
        if not responses:
            return []
        sequences = self.encoder.encode(prompts, responses)
        rewards = compute_rewards(
            self.model,
            self.encoder,
            sequences,
            batch_size=self.batch_size,
            device=self.device,
        )
        return rewards.tolist()
