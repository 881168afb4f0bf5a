"""One loader for a trained directory: evaluation and scoring both go through it, give the scores plain
transformers gives, and a directory that training did not write is a one-line error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rm_training import evaluate, model, scoring
from rm_training.cli import main
from rm_training.config import TrainingConfig
from rm_training.evaluate import evaluate_model_dir
from rm_training.model import TrainedModel, load_reward_model, load_tokenizer, load_trained
from rm_training.scoring import RewardScorer

from .conftest import marker_comparisons


@pytest.fixture(scope="module")
def trained_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What training writes, without the training: a reward head on the tiny BERT, its tokenizer, a config."""
    directory = tmp_path_factory.mktemp("trained")
    tokenizer = load_tokenizer(str(tiny_bert_dir))
    torch.manual_seed(1)
    load_reward_model(str(tiny_bert_dir), tokenizer).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    TrainingConfig(base_model=str(tiny_bert_dir), max_length=48, device="cpu").save(directory)
    return directory


def plain_transformers_rewards(directory: Path, prompts: list[str], responses: list[str]) -> torch.Tensor:
    reward_model = AutoModelForSequenceClassification.from_pretrained(directory, local_files_only=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    with torch.no_grad():
        inputs = tokenizer(prompts, responses, padding=True, return_tensors="pt")
        return reward_model(**inputs).logits[:, 0]


def test_load_trained_gives_the_run_config_and_an_eval_mode_model(trained_dir: Path) -> None:
    trained = load_trained(trained_dir, "cpu")
    assert isinstance(trained, TrainedModel)
    assert trained.config == TrainingConfig.load(trained_dir)
    assert trained.encoder.max_length == 48 and not trained.model.training
    assert trained.device == torch.device("cpu")
    assert load_trained(trained_dir, torch.device("cpu"), max_length=32).encoder.max_length == 32


def test_scoring_and_evaluation_go_through_the_one_loader_and_agree_with_transformers(
    trained_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded: list[Path] = []

    def spy(model_dir: str | Path, *args: object, **kwargs: object) -> TrainedModel:
        loaded.append(Path(model_dir))
        return model.load_trained(model_dir, *args, **kwargs)

    monkeypatch.setattr(scoring, "load_trained", spy)
    monkeypatch.setattr(evaluate, "load_trained", spy)

    prompt, responses = "question 2 river", ["an excellent answer", "a plain answer", "blue stone"]
    scores = RewardScorer(trained_dir, device="cpu").score(prompt, responses)
    expected = plain_transformers_rewards(trained_dir, [prompt] * 3, responses)
    torch.testing.assert_close(torch.tensor(scores), expected, rtol=1e-5, atol=1e-5)

    comparisons = marker_comparisons(6)
    data = tmp_path / "prefs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected}) + "\n"
            for c in comparisons
        ),
        encoding="utf-8",
    )
    metrics = evaluate_model_dir(trained_dir, data, device="cpu")
    prompts = [c.prompt for c in comparisons] * 2
    sides = [c.chosen for c in comparisons] + [c.rejected for c in comparisons]
    rewards = plain_transformers_rewards(trained_dir, prompts, sides)
    assert metrics["pairs"] == 6
    assert metrics["reward_mean"] == pytest.approx(rewards.mean().item(), abs=1e-5)
    assert metrics["mean_margin"] == pytest.approx((rewards[:6] - rewards[6:]).mean().item(), abs=1e-5)

    assert loaded == [trained_dir, trained_dir]


def test_a_directory_that_training_did_not_write_is_a_one_line_error(
    tiny_bert_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for directory, words in ((tmp_path / "missing", "not a directory"), (tiny_bert_dir, "training_config")):
        with pytest.raises(ValueError, match=words) as raised:
            load_trained(directory, "cpu")
        assert "\n" not in str(raised.value)
        with pytest.raises(ValueError, match=words):
            RewardScorer(directory, device="cpu")

    assert main(["score", "--model", str(tmp_path / "missing"), "--prompt", "p", "--response", "r"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
