"""Training end to end on tiny models: a step in the right direction, a planted preference learned,
save/load/score, cancellation and progress."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rm_training.config import TrainingConfig
from rm_training.data import Comparison
from rm_training.loss import bradley_terry_loss
from rm_training.metrics import TrainingMetrics
from rm_training.model import load_reward_model, load_tokenizer, rewards_from
from rm_training.scoring import RewardScorer
from rm_training.tokenization import PairEncoder
from rm_training.train import TrainingCancelled, train

from .conftest import marker_comparisons


def test_one_gradient_step_raises_the_chosen_reward_over_the_rejected(tiny_bert_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_bert_dir))
    torch.manual_seed(0)
    model = load_reward_model(str(tiny_bert_dir), tokenizer)
    encoder = PairEncoder(tokenizer, max_length=48)
    pairs = encoder.encode_pairs(marker_comparisons(8))
    inputs = encoder.collate(pairs).inputs
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)

    rewards = rewards_from(model, inputs)
    before = (rewards[:8] - rewards[8:]).detach()
    bradley_terry_loss(rewards[:8], rewards[8:]).loss.backward()
    optimizer.step()
    with torch.no_grad():
        rewards = rewards_from(model, inputs)
    after = rewards[:8] - rewards[8:]
    assert after.mean().item() > before.mean().item()


def test_a_tiny_model_learns_a_planted_preference(fast_config: TrainingConfig, tmp_path: Path) -> None:
    metrics = train(fast_config, examples=marker_comparisons(400), output_dir=tmp_path / "model")
    assert metrics["eval_accuracy"] >= 0.95
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert metrics["counts"]["train_pairs"] + metrics["counts"]["eval_pairs"] == 400
    saved = json.loads((tmp_path / "model" / "metrics.json").read_text())
    for key in (
        "eval_accuracy",
        "eval_loss",
        "train_loss",
        "accuracy_unanimous",
        "accuracy_split",
        "judgment_accuracy",
        "ece",
        "reward_mean",
        "reward_std",
        "counts",
        "history",
    ):
        assert key in saved
    # metrics.json is the typed object train() returned, and reads back into it.
    assert saved == metrics
    assert TrainingMetrics.load(tmp_path / "model").to_dict() == metrics


def test_saved_model_loads_and_scores_as_it_trained(fast_config: TrainingConfig, tmp_path: Path) -> None:
    config = TrainingConfig.from_dict(fast_config.to_dict() | {"epochs": 1})
    output = tmp_path / "model"
    train(config, examples=marker_comparisons(64), output_dir=output)
    # Every file readable as the umask allows, the weights too (safetensors writes its file 0600).
    umask = os.umask(0)
    os.umask(umask)
    assert {stat.S_IMODE(p.stat().st_mode) for p in output.iterdir()} == {0o666 & ~umask}

    prompt, responses = "question 1 river", ["an excellent answer", "a plain answer", "blue"]
    scores = RewardScorer(output, device="cpu").score(prompt, responses)
    assert scores == RewardScorer(output, device="cpu").score(prompt, responses)

    # The directory is a plain transformers model: the same scores from the same token ids.
    model = AutoModelForSequenceClassification.from_pretrained(output, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(output, local_files_only=True)
    assert model.config.num_labels == 1
    with torch.no_grad():
        logits = model(**tokenizer([prompt] * 3, responses, padding=True, return_tensors="pt")).logits[:, 0]
    torch.testing.assert_close(logits, torch.tensor(scores), rtol=1e-5, atol=1e-5)

    assert TrainingConfig.load(output) == config
    card = (output / "README.md").read_text()
    assert "Results" in card and "learning_rate" in card


def test_same_seed_same_model(fast_config: TrainingConfig, tmp_path: Path) -> None:
    config = TrainingConfig.from_dict(fast_config.to_dict() | {"epochs": 1})
    first = train(config, examples=marker_comparisons(48), output_dir=tmp_path / "a")
    second = train(config, examples=marker_comparisons(48), output_dir=tmp_path / "b")
    assert [entry["loss"] for entry in first["log"]] == [entry["loss"] for entry in second["log"]]
    assert first["eval_loss"] == second["eval_loss"]


def test_should_stop_cancels_cleanly_and_writes_nothing(fast_config: TrainingConfig, tmp_path: Path) -> None:
    reports: list[tuple[float, dict[str, Any]]] = []
    with pytest.raises(TrainingCancelled):
        train(
            fast_config,
            examples=marker_comparisons(96),
            output_dir=tmp_path / "model",
            on_progress=lambda fraction, info: reports.append((fraction, info)),
            should_stop=lambda: len(reports) >= 2,
        )
    assert [info["step"] for _, info in reports] == [1, 2]
    assert not (tmp_path / "model").exists()


def test_progress_rises_to_one(fast_config: TrainingConfig, tmp_path: Path) -> None:
    config = TrainingConfig.from_dict(fast_config.to_dict() | {"epochs": 2})
    fractions: list[float] = []
    metrics = train(
        config,
        examples=marker_comparisons(48),
        output_dir=tmp_path / "model",
        on_progress=lambda fraction, info: fractions.append(fraction),
    )
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert len(metrics["history"]) == 2


def test_a_decoder_with_pad_equal_to_eos_trains(
    fast_config: TrainingConfig, tiny_gpt2_dir: Path, tmp_path: Path
) -> None:
    config = dataclasses.replace(fast_config, base_model=str(tiny_gpt2_dir), epochs=2)
    metrics = train(config, examples=marker_comparisons(160), output_dir=tmp_path / "model")
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    scores = RewardScorer(tmp_path / "model", device="cpu").score(
        "question", ["river excellent", "river stone"]
    )
    assert scores[0] != scores[1]


def test_loss_options_accumulation_and_checkpointing_train_together(
    fast_config: TrainingConfig, tmp_path: Path
) -> None:
    config = TrainingConfig.from_dict(
        fast_config.to_dict()
        | {
            "epochs": 2,
            "gradient_accumulation_steps": 2,
            "gradient_checkpointing": True,
            "margin_scale": 0.5,
            "center_rewards_coefficient": 0.01,
        }
    )
    examples = [
        Comparison(
            **{
                **vars(c),
                "margin": 2.0,
                "weight": 3.0,
                "target": 2 / 3,
                "votes_chosen": 2,
                "votes_rejected": 1,
            }
        )
        for c in marker_comparisons(96)
    ]
    metrics = train(config, examples=examples, output_dir=tmp_path / "model")
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert metrics["accuracy_split"] is not None and metrics["judgment_accuracy"] is not None
