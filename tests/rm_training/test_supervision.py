"""What a supervising process (the Celery worker) needs of the trainer: progress as JSON lines, a clean
stop on SIGTERM, the device and bf16 recorded, the length baseline and calibration bins, and the scores
that let whoever loads the saved model check it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from rm_training.data import Comparison
from rm_training.evaluate import SCORE_CHECK_FILENAME, reward_metrics, score_check
from rm_training.metrics import TrainingMetrics
from rm_training.progress import CANCELLED_STATUS
from rm_training.scoring import RewardScorer

from .conftest import marker_comparisons, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def test_the_length_baseline_prefers_the_longer_response_and_ties_count_half() -> None:
    comparisons = [
        Comparison(prompt="p", chosen="a much longer answer", rejected="short"),
        Comparison(prompt="p", chosen="short", rejected="a much longer answer"),
        Comparison(prompt="p", chosen="same", rejected="size"),
        Comparison(prompt="p", chosen="long chosen", rejected="x"),
    ]
    metrics = reward_metrics(comparisons, torch.zeros(4), torch.zeros(4))
    assert metrics["length_baseline_accuracy"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)


def test_calibration_bins_cover_every_pair_and_give_the_ece() -> None:
    comparisons = [Comparison(prompt="p", chosen=f"c{i}", rejected=f"r{i}") for i in range(6)]
    r_chosen = torch.tensor([0.1, 0.2, 3.0, 3.0, -2.0, 0.0])
    metrics = reward_metrics(comparisons, r_chosen, torch.zeros(6))
    bins = metrics["calibration"]
    assert len(bins) == 10 and bins[0]["lower"] == 0.5 and bins[-1]["upper"] == pytest.approx(1.0)
    assert sum(b["pairs"] for b in bins) == 6
    ece = sum(b["pairs"] / 6 * abs(b["confidence"] - b["observed"]) for b in bins if b["pairs"])
    assert metrics["ece"] == pytest.approx(ece)
    assert all(b["confidence"] is None for b in bins if not b["pairs"])


def _train_command(data: Path, output: Path, base: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rm_training",
        "train",
        "--data",
        str(data),
        "--output",
        str(output),
        "--base-model",
        str(base),
        "--max-length",
        "48",
        "--batch-size",
        "8",
        "--learning-rate",
        "3e-3",
        "--eval-fraction",
        "0.25",
        "--device",
        "cpu",
        "--no-bf16",
        "--progress-jsonl",
        *extra,
    ]


@pytest.fixture
def data_file(tmp_path: Path) -> Path:
    rows = [{"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected} for c in marker_comparisons(64)]
    return write_jsonl(tmp_path / "prefs.jsonl", rows)


def test_progress_is_a_stream_of_json_lines_ending_in_the_metrics(
    tiny_bert_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "model"
    result = subprocess.run(
        _train_command(data_file, output, tiny_bert_dir, "--epochs", "2"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]  # nothing but JSON on stdout
    kinds = [e["event"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[0]["device"] == "cpu" and events[0]["bf16"] is False and events[0]["processes"] == 1
    steps = [e for e in events if e["event"] == "step"]
    assert [s["step"] for s in steps] == list(range(1, steps[-1]["total_steps"] + 1))
    assert steps[-1]["fraction"] == 1.0
    assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2]
    done = events[-1]["metrics"]
    assert done == json.loads((output / "metrics.json").read_text())
    assert 0 <= done["length_baseline_accuracy"] <= 1 and len(done["calibration"]) == 10
    assert done["bf16"] is False and done["device"] == "cpu"
    assert result.stderr.strip().splitlines()[-1].startswith(f"saved {output}")


def test_the_saved_model_gives_the_scores_the_run_recorded_and_a_lost_head_shows(
    tiny_bert_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "model"
    subprocess.run(
        _train_command(data_file, output, tiny_bert_dir, "--epochs", "1"), cwd=ROOT, check=True, timeout=300
    )
    recorded = json.loads((output / SCORE_CHECK_FILENAME).read_text())
    assert len(recorded) == 8 and len({item["score"] for item in recorded}) > 1
    scorer = RewardScorer(output, device="cpu")
    assert score_check(scorer, output) == []
    with torch.no_grad():  # what a save that drops the reward head looks like once loaded
        scorer.model.classifier.weight.normal_()
    assert len(score_check(scorer, output)) >= 1
    assert TrainingMetrics.load(output).calibration


def test_sigterm_stops_the_run_at_the_next_step_and_writes_nothing(
    tiny_bert_dir: Path, data_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "model"
    child = subprocess.Popen(
        _train_command(data_file, output, tiny_bert_dir, "--epochs", "500"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert child.stdout is not None
        for line in child.stdout:
            if json.loads(line)["event"] == "step":
                break
        child.send_signal(signal.SIGTERM)
        rest, errors = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == CANCELLED_STATUS, errors
    assert json.loads(rest.splitlines()[-1])["event"] == "cancelled"
    assert "stopped by SIGTERM" in errors
    assert not output.exists() or not any(output.iterdir())


# The trainer's command line, SIGTERM arriving as the first of torch or transformers starts to import: the
# seconds after start in which a cancel used to kill the trainer before its stop handler was installed.
SIGNALLED_WHILE_IMPORTING = """
import os, signal, sys

class SignalOnImport:
    def find_spec(self, name, path=None, target=None):
        if name in ("torch", "transformers"):
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGTERM)
        return None

sys.meta_path.insert(0, SignalOnImport())
from rm_training import cli
sys.exit(cli.main(["train", *sys.argv[1:]]))
"""

# The trainer's command line, SIGTERM arriving once a function of the training module (argv[1]) returns.
SIGNALLED_AFTER = """
import os, signal, sys
from rm_training import cli, train

function = getattr(train, sys.argv[1])

def then_signal(*args, **kwargs):
    result = function(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    return result

setattr(train, sys.argv[1], then_signal)
sys.exit(cli.main(["train", *sys.argv[2:]]))
"""


@pytest.mark.parametrize(
    ("script", "when", "message"),
    [
        (SIGNALLED_WHILE_IMPORTING, [], "stopped before the weights were loaded"),
        # one epoch: its evaluation is the last one, after the last step
        (SIGNALLED_AFTER, ["evaluate_pairs"], "stopped after the last step (6 of 6), before saving"),
        # the model card is the last file the save writes before the model takes the output's place
        (SIGNALLED_AFTER, ["write_model_card"], "stopped while saving"),
    ],
    ids=["while importing", "during the last evaluation", "during the save"],
)
def test_a_sigterm_at_the_edges_of_a_run_ends_it_cancelled_with_nothing_saved(
    tiny_bert_dir: Path, data_file: Path, tmp_path: Path, script: str, when: list[str], message: str
) -> None:
    output = tmp_path / "model"
    command = _train_command(data_file, output, tiny_bert_dir, "--epochs", "1")
    result = subprocess.run(
        [sys.executable, "-c", script, *when, *command[4:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == CANCELLED_STATUS, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1] == {"event": "cancelled", "message": events[-1]["message"]}
    assert events[-1]["message"].startswith(message)
    assert "done" not in [e["event"] for e in events]
    assert f"stopped by SIGTERM: {message}" in result.stderr
    assert not output.exists() and not list(tmp_path.glob(".model.*"))  # nor a hidden half-written one


def test_older_metrics_files_still_read(tmp_path: Path) -> None:
    metrics = TrainingMetrics.from_dict(
        {
            k: v
            for k, v in _a_metrics_dict().items()
            if k not in ("length_baseline_accuracy", "calibration", "bf16")
        }
    )
    assert metrics.calibration == [] and metrics.bf16 is None
    assert replace(metrics, bf16=True).to_dict()["bf16"] is True


def _a_metrics_dict() -> dict:
    counts = dict.fromkeys(
        (
            "train_pairs",
            "train_tokens",
            "eval_pairs",
            "pairs_truncated",
            "responses_truncated",
            "eval_pairs_unanimous",
            "eval_pairs_split",
            "eval_judgments",
        ),
        0,
    )
    return {
        **dict.fromkeys(
            (
                "eval_accuracy",
                "eval_loss",
                "accuracy_unanimous",
                "accuracy_split",
                "judgment_accuracy",
                "rater_agreement",
                "ece",
                "reward_mean",
                "reward_std",
                "train_pairs_per_second",
            )
        ),
        "train_loss": 0.5,
        "counts": counts,
        "dataset": {"pairs": 0, "train": 0, "eval": 0, "sha256": ""},
        "steps": 0,
        "train_seconds": 0.0,
        "runtime_seconds": 0.0,
        "processes": 1,
        "device": "cpu",
        "history": [],
        "log": [],
    }
