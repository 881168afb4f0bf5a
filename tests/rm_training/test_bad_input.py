"""Issue 7 on the trainer's side: every bad input gets a clear answer and nothing is lost.

Each kind of bad input is tried with several inputs through the command line (``rm_training.cli.main``):
the answer is exit status 2 and one line on stderr (``error: ...``), and nothing is written.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from rm_training import output as output_module
from rm_training import train as train_module
from rm_training.cli import main
from rm_training.config import CONFIG_FILENAME, TrainingConfig
from rm_training.data import Comparison
from rm_training.errors import InputError
from rm_training.evaluate import evaluate_pairs
from rm_training.metrics import TrainingMetrics
from rm_training.model import (
    DEFAULT_BASE_MODEL,
    load_reward_model,
    load_tokenizer,
    load_trained,
    position_limit,
    resolve_base_model,
)
from rm_training.output import written_whole
from rm_training.scoring import RewardScorer
from rm_training.tokenization import PairEncoder
from rm_training.train import train

from .conftest import marker_comparisons, write_jsonl


def marker_rows(n: int, *, seed: int = 0) -> list[dict[str, Any]]:
    return [
        {"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected}
        for c in marker_comparisons(n, seed=seed)
    ]


def case_only_rows(n: int) -> list[dict[str, Any]]:
    """Pairs whose sides differ only in letter case: one input to the uncased tokenizer of the tests."""
    return [{"prompt": f"question {i}", "chosen": "YES, it is.", "rejected": "yes, it is."} for i in range(n)]


@pytest.fixture
def train_args(tiny_bert_dir: Path) -> list[str]:
    """Options that train the tiny BERT (128 positions) in about a second."""
    return [
        "--base-model",
        str(tiny_bert_dir),
        "--max-length",
        "48",
        "--batch-size",
        "8",
        "--epochs",
        "1",
        "--learning-rate",
        "3e-3",
        "--device",
        "cpu",
        "--no-progress-bar",
    ]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """The exit status and the non-blank lines on stderr of one command."""
    code = main(argv)
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def assert_refused(code: int, lines: list[str], *expected: str) -> None:
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    for text in expected:
        assert text in lines[0]


def assert_nothing_written(output: Path) -> None:
    assert not output.exists()
    assert not [p for p in output.parent.iterdir() if p.name.startswith(f".{output.name}.")]


# --- 1. values the parser cannot hold, and rows of the wrong type ---


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'{"prompt": "\xff", "chosen": "x", "rejected": "y"}', "not UTF-8 text"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "margin": NaN}', "NaN is not a JSON number"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "margin": Infinity}', "Infinity is not a JSON"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "margin": -1e999}', "too large"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "votes": {"a": ' + b"7" * 4400 + b"}}", "digits"),
        (b'{"prompt": "p", "chosen": "\\u0000", "rejected": "y"}', "chosen: the text holds a NUL"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "\\udc80": 1}', "the key holds a lone UTF-16"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "m": ' + b"[" * 70 + b"]" * 70 + b"}", "nested"),
        (b"[1, 2]", "a row must be a JSON object"),
        (
            b'{"prompt": "p", "chosen": "x", "rejected": "y", "votes": {"a": true}}',
            "votes.a: must be a whole",
        ),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "votes": {"a": -3}}', "votes.a: must be a whole"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "votes": {"a": 2.5}}', "votes.a: must be a whole"),
        (b'{"prompt": "p", "chosen": "x", "rejected": "y", "margin": "high"}', "margin: must be a number"),
        (b'{"prompt": 42, "chosen": "x", "rejected": "y"}', "prompt: must be a string"),
        (b'{"prompt": "p", "chosen": ["x"], "rejected": "y"}', "chosen: must be a string"),
        (b'{"prompt": "p", "chosen": "x"}', "rejected: missing"),
    ],
)
def test_a_bad_line_of_data_is_one_line_naming_file_and_line(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str], line: bytes, expected: str
) -> None:
    data = tmp_path / "prefs.jsonl"
    data.write_bytes(b'{"prompt": "p0", "chosen": "x", "rejected": "y"}\n' + line + b"\n")
    output = tmp_path / "model"
    code, lines = run(["train", "--data", str(data), "--output", str(output), *train_args], capsys)
    assert_refused(code, lines, f"error: {data}: line 2: ", expected)
    assert_nothing_written(output)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"strength": "strong"}, "line 2: strength: must be a number"),
        ({"strength": False}, "line 2: strength: must be a number"),
        ({"choice": "left"}, "line 2: choice: must be 'a', 'b' or 'tie'"),
        ({"response_b": None}, "line 2: response_b: must be a string, not null"),
    ],
)
def test_a_bad_judgments_row_is_one_line_naming_its_line(
    tmp_path: Path,
    train_args: list[str],
    capsys: pytest.CaptureFixture[str],
    change: dict[str, Any],
    expected: str,
) -> None:
    row = {"pair_id": 1, "prompt": "p", "response_a": "x", "response_b": "y", "choice": "a", "strength": 2}
    data = write_jsonl(tmp_path / "judgments.jsonl", [row, row | change])
    output = tmp_path / "model"
    code, lines = run(["train", "--data", str(data), "--output", str(output), *train_args], capsys)
    assert_refused(code, lines, f"{data}: {expected}")
    assert_nothing_written(output)


def test_eval_refuses_bad_data_in_the_same_words(
    tmp_path: Path, trained_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "heldout.jsonl"
    data.write_bytes(b'{"prompt": "p", "chosen": "x", "rejected": "y", "votes": {"a": 1, "b": NaN}}\n')
    code, lines = run(["eval", "--model", str(trained_dir), "--data", str(data)], capsys)
    assert_refused(code, lines, f"error: {data}: line 1: NaN is not a JSON number")


# --- 2. empty responses ---


def test_a_file_with_empty_responses_trains(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        *marker_rows(14),
        {"prompt": "what is it?", "chosen": "a river", "rejected": ""},
        {"prompt": "say something", "chosen": "", "rejected": "stone stone stone"},
    ]
    data = write_jsonl(tmp_path / "prefs.jsonl", rows)
    output = tmp_path / "model"
    code, _ = run(["train", "--data", str(data), "--output", str(output), *train_args], capsys)
    assert code == 0
    assert TrainingMetrics.load(output).dataset.pairs == 16


# --- 3. pairs with no usable difference ---


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        (
            [{"prompt": "p", "chosen": "same", "rejected": "same"}],
            "no usable pairs in 1 row: 1 with the same text",
        ),
        (
            [{"prompt": "p", "chosen": "", "rejected": ""}] * 3,
            "no usable pairs in 3 rows: 3 with the same text",
        ),
        (case_only_rows(6), "no pairs to train on"),
        (case_only_rows(1), "no pairs to train on"),
    ],
)
def test_a_file_left_with_no_usable_pairs_is_refused(
    tmp_path: Path,
    train_args: list[str],
    capsys: pytest.CaptureFixture[str],
    rows: list[dict[str, Any]],
    expected: str,
) -> None:
    data = write_jsonl(tmp_path / "prefs.jsonl", rows)
    output = tmp_path / "model"
    code, lines = run(
        ["train", "--data", str(data), "--output", str(output), *train_args, "--eval-fraction", "0.5"], capsys
    )
    assert_refused(code, lines, f"error: {data}: {expected}")
    assert_nothing_written(output)


def test_pairs_without_a_usable_difference_are_left_out_of_training_counted_and_reported(
    fast_config: TrainingConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = [
        *marker_rows(60),
        *case_only_rows(6),
        {"prompt": "same text", "chosen": "river", "rejected": "river"},
        {"prompt": "same text 2", "chosen": "", "rejected": ""},
        {"prompt": "no majority", "chosen": "x", "rejected": "y", "votes": {"a": 1, "b": 1}},
    ]
    data = write_jsonl(tmp_path / "prefs.jsonl", rows)
    config = TrainingConfig.from_dict(fast_config.to_dict() | {"epochs": 1, "eval_fraction": 0.5})
    with caplog.at_level("INFO", logger="rm_training"):
        metrics = train(config, data_path=data, output_dir=tmp_path / "model")
    counts, dataset = metrics["counts"], metrics["dataset"]
    assert (counts["pairs_identical_text"], counts["pairs_left_out_by_votes"]) == (2, 1)
    assert counts["train_pairs_identical_tokens"] + counts["eval_pairs_identical_tokens"] == 6
    assert counts["train_pairs_identical_tokens"] > 0 and counts["eval_pairs_identical_tokens"] > 0
    assert dataset["pairs"] == 66 and dataset["train"] + dataset["eval"] == 66
    assert counts["train_pairs"] == dataset["train"] - counts["train_pairs_identical_tokens"]
    assert "6 pair(s) encode to the same tokens" in caplog.text
    assert "2 pair(s) with the same text on both sides dropped" in caplog.text
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"{counts['train_pairs_identical_tokens']} left out of training" in card
    assert "2 with the same text on both sides" in card


def test_eval_scores_case_only_pairs_as_ties(
    tmp_path: Path, trained_dir: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # Prompts of different lengths, evaluated three sequences at a time: the two sides of a pair are
    # padded differently, which moves their floats apart; the inputs decide, not the floats.
    rows = [
        {"prompt": "question " + "river " * i, "chosen": "YES, it is.", "rejected": "yes, it is."}
        for i in range(6)
    ]
    data = write_jsonl(tmp_path / "case.jsonl", rows)
    with caplog.at_level("WARNING", logger="rm_training"):
        code = main(["eval", "--model", str(trained_dir), "--data", str(data), "--json", "--batch-size", "3"])
    assert code == 0
    metrics = json.loads(capsys.readouterr().out)
    assert (metrics["accuracy"], metrics["mean_margin"], metrics["pairs_identical_tokens"]) == (0.5, 0.0, 6)
    assert metrics["loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert "6 pair(s) encode to the same tokens" in caplog.text


def test_float_noise_between_identical_inputs_does_not_decide_a_pair() -> None:
    """On MiniLM, three sequences a batch, the two sides of these pairs come out up to 1e-8 apart (their
    batches pad them differently); each pair is still a tie: accuracy 0.5 and loss log 2, exactly."""
    base = resolve_base_model(DEFAULT_BASE_MODEL)
    tokenizer = load_tokenizer(base)
    torch.manual_seed(0)
    model = load_reward_model(base, tokenizer).eval()
    encoder = PairEncoder(tokenizer, 128)
    comparisons = [
        Comparison(prompt="question " + "river " * (3 * i), chosen="YES, it is.", rejected="yes, it is.")
        for i in range(6)
    ]
    pairs = encoder.encode_pairs(comparisons)
    metrics = evaluate_pairs(model, encoder, pairs, batch_size=3, device=torch.device("cpu"))
    assert (metrics["accuracy"], metrics["judgment_accuracy"], metrics["mean_margin"]) == (0.5, 0.5, 0.0)
    assert metrics["loss"] == pytest.approx(math.log(2), abs=1e-7)
    assert metrics["pairs_identical_tokens"] == 6


# --- 4. settings checked against what they drive ---


@pytest.mark.parametrize("max_length", ["129", "600", "100000"])
def test_a_max_length_past_the_models_positions_is_refused_at_start(
    tmp_path: Path, train_args: list[str], capsys: pytest.CaptureFixture[str], max_length: str
) -> None:
    data = write_jsonl(tmp_path / "prefs.jsonl", marker_rows(16))
    output = tmp_path / "model"
    code, lines = run(
        ["train", "--data", str(data), "--output", str(output), *train_args, "--max-length", max_length],
        capsys,
    )
    assert_refused(
        code, lines, f"max_length {max_length} is more than", "128 tokens", "max_position_embeddings"
    )
    assert_nothing_written(output)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--learning-rate", "inf"], "learning_rate must be a finite number"),
        (["--learning-rate", "nan"], "learning_rate must be a finite number"),
        (["--learning-rate=-1e-3"], "learning_rate must be positive"),
        (["--eval-fraction", "1"], "eval_fraction must be in [0, 1)"),
        (["--eval-fraction", "nan"], "eval_fraction must be a finite number"),
        (["--epochs", "0"], "epochs must be at least 1"),
        (["--batch-size", "0"], "batch_size must be at least 1"),
        (["--batch-size", "2", "--gradient-accumulation-steps", "4"], "batch_size must be at least gradient"),
        (["--max-grad-norm", "inf"], "max_grad_norm must be a finite number"),
        (["--seed", "-5"], "seed must be in"),
        (["--device", "banana"], "device must be"),
        (["--device", "cuda:99"], "cuda:99"),
        (["--max-length", "4"], "max_length must be at least 8"),
    ],
)
def test_every_bad_setting_is_one_line(
    tmp_path: Path,
    train_args: list[str],
    capsys: pytest.CaptureFixture[str],
    options: list[str],
    expected: str,
) -> None:
    data = write_jsonl(tmp_path / "prefs.jsonl", marker_rows(16))
    output = tmp_path / "model"
    code, lines = run(["train", "--data", str(data), "--output", str(output), *train_args, *options], capsys)
    assert_refused(code, lines, expected)
    assert_nothing_written(output)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the answer on a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_one_line(
    tmp_path: Path, train_args: list[str], trained_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "prefs.jsonl", marker_rows(16))
    code, lines = run(
        ["train", "--data", str(data), "--output", str(tmp_path / "m"), *train_args, "--device", "cuda"],
        capsys,
    )
    assert_refused(code, lines, "torch sees no CUDA device")
    code, lines = run(["eval", "--model", str(trained_dir), "--data", str(data), "--device", "cuda"], capsys)
    assert_refused(code, lines, "torch sees no CUDA device")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"epochs": NaN}', "NaN is not a JSON number"),
        (b"[1, 2]", "a training config is a JSON object"),
        (b'{"epoch": 2}', "unknown training config field(s): epoch"),
        (b'{"seed": 2.5}', "seed must be an integer"),
        (b'{"ties": "sometimes"}', "ties must be 'drop' or 'half'"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(
    tmp_path: Path,
    train_args: list[str],
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    expected: str,
) -> None:
    data = write_jsonl(tmp_path / "prefs.jsonl", marker_rows(16))
    config_file = tmp_path / "config.json"
    config_file.write_bytes(content)
    output = tmp_path / "model"
    argv = ["train", "--data", str(data), "--output", str(output), "--config", str(config_file), *train_args]
    code, lines = run(argv, capsys)
    assert_refused(code, lines, expected)
    assert_nothing_written(output)


def test_position_limit_takes_the_smaller_of_config_and_tokenizer() -> None:
    class Config:
        max_position_embeddings = 514

    class Tokenizer:
        model_max_length = 512

    class Unlimited:
        model_max_length = int(1e30)

    assert position_limit(Config(), Tokenizer()) == (512, "model_max_length of its tokenizer")  # type: ignore[arg-type]
    assert position_limit(Config(), Unlimited()) == (514, "max_position_embeddings in its config.json")  # type: ignore[arg-type]
    assert position_limit(object(), Unlimited()) is None  # type: ignore[arg-type]


def test_scoring_a_long_input_never_crashes(
    trained_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    long_response = " ".join(["river"] * 2000)
    assert len(RewardScorer(trained_dir, device="cpu").score("q", [long_response, "stone"])) == 2

    # A directory whose config says more than the model takes (written before the check): encoded to
    # the model's 128 positions, with a warning, instead of an index error at the first long input.
    edited = tmp_path / "edited"
    shutil.copytree(trained_dir, edited)
    config = json.loads((edited / CONFIG_FILENAME).read_text())
    (edited / CONFIG_FILENAME).write_text(json.dumps(config | {"max_length": 600}))
    with caplog.at_level("WARNING", logger="rm_training"):
        scorer = RewardScorer(edited, device="cpu")
    assert scorer.encoder.max_length == 128 and "encoding to 128 tokens" in caplog.text
    assert len(scorer.score("q", [long_response, "stone"])) == 2
    with pytest.raises(InputError, match="max_length 600 is more than"):
        load_trained(trained_dir, "cpu", max_length=600)


# --- 7. commands fail clearly ---


@pytest.fixture(scope="module")
def trained_dir(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("bad-input") / "model"
    config = TrainingConfig(
        base_model=str(tiny_bert_dir),
        max_length=48,
        epochs=1,
        batch_size=8,
        learning_rate=3e-3,
        eval_fraction=0.0,
        device="cpu",
        bf16=False,
    )
    train(config, examples=marker_comparisons(16), output_dir=directory)
    return directory


def broken_models(root: Path, tiny_bert_dir: Path) -> dict[str, tuple[str, str]]:
    """Base models that cannot be loaded, each with what its one line must say."""
    a_file = root / "weights.bin"
    a_file.write_bytes(b"\0" * 16)
    no_config = root / "no-config"
    no_config.mkdir()
    (no_config / "vocab.txt").write_text("x\n")
    no_weights = root / "no-weights"
    no_weights.mkdir()
    shutil.copy(tiny_bert_dir / "config.json", no_weights)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_bert_dir / name, no_weights)
    bad_json = root / "bad-json"
    shutil.copytree(tiny_bert_dir, bad_json)
    (bad_json / "config.json").write_text("{not json")
    truncated = root / "truncated"
    shutil.copytree(tiny_bert_dir, truncated)
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    no_tokenizer = root / "no-tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_bert_dir / name, no_tokenizer)
    other_weights = root / "gpt2-weights"
    shutil.copytree(tiny_bert_dir, other_weights)
    # A checkpoint of another architecture (GPT-2's names) under the BERT config: it loads without an error.
    save_file({"h.0.attn.c_attn.weight": torch.zeros(32, 96)}, other_weights / "model.safetensors")
    return {
        "hub": (
            "foo/bar",
            "base model 'foo/bar' is neither a local directory nor in the local Hugging Face",
        ),
        "relative": ("./nope", "no model directory ./nope"),
        "nested": (str(root / "a" / "b" / "c"), "no model directory"),
        "file": (str(a_file), "is a file, not a model directory"),
        "no config": (str(no_config), "is not a model directory (it has no config.json)"),
        "no weights": (str(no_weights), "cannot load the weights of"),
        "bad json": (str(bad_json), "cannot load the"),
        "truncated": (str(truncated), "cannot load the weights of"),
        "no tokenizer": (str(no_tokenizer), "the tokenizer knows no words, only its 5 special token(s)"),
        "other architecture": (
            str(other_weights),
            "weight(s) of its BertForSequenceClassification are not in its checkpoint and would train "
            "from random values (bert.embeddings.LayerNorm.bias, bert.embeddings.LayerNorm.weight, "
            "bert.embeddings.position_embeddings.weight, ...); it holds 1 weight(s) that this one has no "
            "place for (h.0.attn.c_attn.weight, ...): is it a checkpoint of another architecture?",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "hub",
        "relative",
        "nested",
        "file",
        "no config",
        "no weights",
        "bad json",
        "truncated",
        "no tokenizer",
        "other architecture",
    ],
)
def test_a_base_model_that_cannot_be_loaded_is_one_line(
    tmp_path: Path,
    tiny_bert_dir: Path,
    train_args: list[str],
    capsys: pytest.CaptureFixture[str],
    case: str,
) -> None:
    base, expected = broken_models(tmp_path, tiny_bert_dir)[case]
    data = write_jsonl(tmp_path / "prefs.jsonl", marker_rows(16))
    output = tmp_path / "model"
    argv = ["train", "--data", str(data), "--output", str(output), *train_args, "--base-model", base]
    code, lines = run(argv, capsys)
    assert_refused(code, lines, expected)
    assert "huggingface.co" not in lines[0]
    assert_nothing_written(output)


def test_a_hub_name_in_the_local_cache_is_used_without_the_network(
    tmp_path: Path, tiny_bert_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub.constants

    snapshot = tmp_path / "hub" / "models--someone--tiny-bert" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_bert_dir, snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_base_model("someone/tiny-bert") == str(snapshot)
    with pytest.raises(InputError, match="neither a local directory nor in the local Hugging Face cache"):
        resolve_base_model("someone/other")


@pytest.mark.parametrize("kind", ["missing", "file", "base model", "bad config", "truncated weights"])
def test_eval_and_score_with_a_model_that_is_not_a_trained_directory_are_one_line(
    tmp_path: Path,
    tiny_bert_dir: Path,
    trained_dir: Path,
    capsys: pytest.CaptureFixture[str],
    kind: str,
) -> None:
    model = tmp_path / "model"
    expected = {
        "missing": "is not a directory",
        "file": "is not a directory",
        "base model": "is not a trained reward model (it has no training_config.json)",
        "bad config": "training_config.json: unknown training config field(s): colour",
        "truncated weights": "cannot load the weights of",
    }[kind]
    if kind == "file":
        model.write_text("x")
    elif kind == "base model":
        shutil.copytree(tiny_bert_dir, model)
    elif kind in ("bad config", "truncated weights"):
        shutil.copytree(trained_dir, model)
        if kind == "bad config":
            (model / CONFIG_FILENAME).write_text('{"colour": "red"}')
        else:
            (model / "model.safetensors").write_bytes(b"\0" * 64)
    data = write_jsonl(tmp_path / "prefs.jsonl", marker_rows(4))
    code, lines = run(["eval", "--model", str(model), "--data", str(data)], capsys)
    assert_refused(code, lines, expected)
    code, lines = run(["score", "--model", str(model), "--prompt", "p", "--response", "r"], capsys)
    assert_refused(code, lines, expected)


def test_score_refuses_text_that_is_not_unicode(
    trained_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What Python makes of a command-line argument that is not UTF-8: a lone surrogate.
    code, lines = run(
        ["score", "--model", str(trained_dir), "--prompt", "p", "--response", "ok", "--response", "\udcff"],
        capsys,
    )
    assert_refused(code, lines, "--response 2: the text holds a lone UTF-16 surrogate")


@pytest.mark.parametrize("command", ["eval", "score"])
def test_a_batch_size_below_one_is_a_usage_error(
    trained_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    extra = (
        ["--data", str(tmp_path / "x.jsonl")] if command == "eval" else ["--prompt", "p", "--response", "r"]
    )
    with pytest.raises(SystemExit) as raised:
        main([command, "--model", str(trained_dir), *extra, "--batch-size", "0"])
    assert raised.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err


def test_an_output_that_cannot_take_the_model_is_refused_before_training(
    tmp_path: Path, train_args: list[str], trained_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "prefs.jsonl", marker_rows(16))
    a_file = tmp_path / "afile"
    a_file.write_text("keep me")
    not_empty = tmp_path / "notes"
    not_empty.mkdir()
    (not_empty / "todo.txt").write_text("keep me")
    holds_data = tmp_path / "run"
    shutil.copytree(trained_dir, holds_data)
    shutil.copy(data, holds_data / "prefs.jsonl")
    cases = [
        (a_file, [], "is a file, not a directory"),
        (a_file / "model", [], "is a file, not a directory"),
        (not_empty, [], "is not empty: pass --overwrite"),
        (not_empty, ["--overwrite"], "holds files that train did not write"),
        (holds_data, ["--overwrite"], "which this run reads"),
    ]
    for output, extra, expected in cases:
        data_path = holds_data / "prefs.jsonl" if output == holds_data else data
        argv = ["train", "--data", str(data_path), "--output", str(output), *train_args, *extra]
        code, lines = run(argv, capsys)
        assert_refused(code, lines, expected)
    assert a_file.read_text() == "keep me"
    assert [p.name for p in not_empty.iterdir()] == ["todo.txt"]
    assert (holds_data / "prefs.jsonl").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_overwrite_replaces_a_trained_model_whole(
    tmp_path: Path, train_args: list[str], trained_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "model"
    shutil.copytree(trained_dir, output)
    data = write_jsonl(tmp_path / "prefs.jsonl", marker_rows(16, seed=3))
    args = ["train", "--data", str(data), "--output", str(output), *train_args, "--overwrite", "--seed", "3"]
    code, _ = run(args, capsys)
    assert code == 0
    assert TrainingConfig.load(output).seed == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    # A file no model holds is never deleted, --overwrite or not: the new model is kept beside instead.
    (output / "stale.txt").write_text("notes of a person")
    code, err = run([*args[:-1], "4"], capsys)
    assert code == 2 and "would not replace (stale.txt)" in err[-1]
    assert (output / "stale.txt").exists() and TrainingConfig.load(output).seed == 3
    (kept,) = tmp_path.glob("model.new-*")
    assert TrainingConfig.load(kept).seed == 4


def test_a_run_that_fails_while_writing_leaves_the_old_model_whole(
    tmp_path: Path, train_args: list[str], trained_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "model"
    shutil.copytree(trained_dir, output)
    before = {p.name: p.read_bytes() for p in output.iterdir()}

    def crash(directory: Path, **_: object) -> Path:
        raise RuntimeError("the machine went away while writing")

    monkeypatch.setattr(train_module, "write_model_card", crash)
    data = write_jsonl(tmp_path / "prefs.jsonl", marker_rows(16, seed=3))
    with pytest.raises(RuntimeError):
        main(["train", "--data", str(data), "--output", str(output), *train_args, "--overwrite"])
    assert {p.name: p.read_bytes() for p in output.iterdir()} == before
    with pytest.raises(RuntimeError):
        main(["train", "--data", str(data), "--output", str(tmp_path / "new"), *train_args])
    assert_nothing_written(tmp_path / "new")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_full_disk_while_writing_is_one_line_naming_the_output(
    tmp_path: Path, train_args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def disk_full(directory: Path, **_: object) -> Path:
        # What a write to a full disk raises: errno 28, and no file name (write() does not know it).
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(train_module, "write_model_card", disk_full)
    data = write_jsonl(tmp_path / "prefs.jsonl", marker_rows(16))
    output = tmp_path / "model"
    code, lines = run(["train", "--data", str(data), "--output", str(output), *train_args], capsys)
    assert code == 2  # after the epoch's line, the one line of the error
    assert lines[-1] == f"error: [Errno 28] writing the model: No space left on device: '{output}'"
    assert_nothing_written(output)


def test_what_a_killed_writer_left_beside_the_output_is_removed_by_the_next_write(tmp_path: Path) -> None:
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    host, gone = socket.gethostname(), int(exited.stdout)
    left = {
        "killed": tmp_path / f".out.partial-{host}-{gone}-0badc0de",
        "writing now": tmp_path / f".out.partial-{host}-{os.getpid()}-0badc0de",
        "other machine": tmp_path / f".out.partial-another-host-{gone}-0badc0de",
    }
    for directory in left.values():
        directory.mkdir()
        (directory / "model.safetensors").write_bytes(b"half")
    with written_whole(tmp_path / "out") as staging:
        (staging / "a").write_text("1")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["out", left["writing now"].name, left["other machine"].name]
    )


def test_written_whole_swaps_in_a_complete_directory_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out"
    with written_whole(target) as staging:
        (staging / "a").write_text("1")
        assert not target.exists()
    assert [p.name for p in target.iterdir()] == ["a"]
    with pytest.raises(KeyboardInterrupt), written_whole(target) as staging:
        (staging / "b").write_text("2")
        raise KeyboardInterrupt
    assert [p.name for p in target.iterdir()] == ["a"]
    with written_whole(target, overwrite=True) as staging:
        (staging / "a").write_text("3")
    assert [(p.name, p.read_text()) for p in target.iterdir()] == [("a", "3")]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert output_module.check_output_dir(tmp_path / "new" / "deeper", overwrite=False) is None


def test_files_that_appear_in_the_output_during_a_run_are_never_deleted(tmp_path):
    """The output is checked again when the model is swapped in: a folder that became non-empty (or, with
    overwrite, holds files a model would not replace) is left as it is, and the new model kept beside."""

    output = tmp_path / "model"
    with pytest.raises(InputError, match="no longer empty"), written_whole(output) as staging:
        (staging / "config.json").write_text("{}")
        output.mkdir()
        (output / "my_notes.txt").write_text("keep me")
    assert (output / "my_notes.txt").read_text() == "keep me"
    (kept,) = tmp_path.glob("model.new-*")
    assert (kept / "config.json").exists()

    (output / "config.json").write_text("old")
    refused = pytest.raises(InputError, match=r"would not replace \(my_notes\.txt\)")
    with refused, written_whole(output, overwrite=True) as staging:
        (staging / "config.json").write_text("{}")
    assert (output / "my_notes.txt").exists() and (output / "config.json").read_text() == "old"

    (output / "my_notes.txt").unlink()
    with written_whole(output, overwrite=True) as staging:
        (staging / "config.json").write_text("new")
    assert (output / "config.json").read_text() == "new"


def test_an_output_that_is_a_symlink_is_refused_before_any_work(tmp_path):

    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(InputError, match="symbolic link"):
        output_module.check_output_dir(tmp_path / "link", overwrite=False)


def test_a_run_that_diverges_stops_with_one_line_and_saves_nothing(fast_config, tmp_path, capsys):

    config = dataclasses.replace(fast_config, learning_rate=1e30)
    with pytest.raises(InputError, match=r"training diverged at step .*lower learning_rate"):
        train(config, examples=marker_comparisons(80), output_dir=tmp_path / "model")
    assert not (tmp_path / "model").exists()
    assert not list(tmp_path.glob(".model.*"))


def test_the_saved_files_follow_the_umask_even_those_written_0600(tmp_path: Path) -> None:
    import os
    import stat
    import tempfile

    previous = os.umask(0o022)
    try:
        with written_whole(tmp_path / "out") as staging:
            handle, private = tempfile.mkstemp(dir=staging)  # 0600, as safetensors writes its file
            os.close(handle)
            (staging / "plain.json").write_text("{}")
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out").iterdir()}
    finally:
        os.umask(previous)
    assert modes == {Path(private).name: 0o644, "plain.json": 0o644}
