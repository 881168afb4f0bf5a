"""``python -m rm_training train | eval | score`` end to end, on a tiny model and a JSONL file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rm_training import progress
from rm_training.cli import main

from .conftest import marker_comparisons


@pytest.fixture
def preferences_file(tmp_path: Path) -> Path:
    path = tmp_path / "prefs.jsonl"
    rows = [
        {"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected, "pair_id": c.pair_id}
        for c in marker_comparisons(120)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def test_train_eval_and_score_from_the_command_line(
    tiny_bert_dir: Path, preferences_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "model"
    code = main(
        [
            "train",
            "--data",
            str(preferences_file),
            "--output",
            str(output),
            "--base-model",
            str(tiny_bert_dir),
            "--epochs",
            "2",
            "--max-length",
            "48",
            "--batch-size",
            "16",
            "--learning-rate",
            "3e-3",
            "--eval-fraction",
            "0.2",
            "--seed",
            "7",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"saved {output}")
    epoch_lines = [line for line in captured.err.splitlines() if line.startswith("epoch ")]
    assert [line.split()[1] for line in epoch_lines] == ["1/2", "2/2"]
    config = json.loads((output / "training_config.json").read_text())
    assert (config["seed"], config["epochs"], config["learning_rate"]) == (7, 2, 3e-3)

    assert main(["eval", "--model", str(output), "--data", str(preferences_file), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["pairs"] == 120 and 0.0 <= metrics["accuracy"] <= 1.0

    assert main(["eval", "--model", str(output), "--data", str(preferences_file)]) == 0
    assert "accuracy: " in capsys.readouterr().out

    # score through the module entry point, as a user runs it
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rm_training",
            "score",
            "--model",
            str(output),
            "--prompt",
            "question 3",
            "--response",
            "excellent river",
            "--response",
            "stone river",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        timeout=120,
    )
    scores = [float(line) for line in result.stdout.split()]
    assert len(scores) == 2


def test_a_bad_option_value_is_an_error_not_a_traceback(
    preferences_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["train", "--data", str(preferences_file), "--output", str(tmp_path / "m"), "--eval-fraction", "1.5"]
    )
    assert code == 2
    assert "eval_fraction" in capsys.readouterr().err


def test_with_progress_events_the_error_line_is_also_the_last_event(
    preferences_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "train",
            "--data",
            str(preferences_file),
            "--output",
            str(tmp_path / "m"),
            "--eval-fraction",
            "1.5",
            "--progress-jsonl",
        ]
    )
    assert code == progress.INPUT_ERROR_STATUS
    captured = capsys.readouterr()
    error = captured.err.strip().splitlines()[-1]
    assert error.startswith("error: ") and "eval_fraction" in error
    assert progress.parse(captured.out.splitlines()[-1]) == progress.Error(error.removeprefix("error: "))


def test_a_fault_of_the_trainer_is_an_error_event_and_still_a_traceback(
    preferences_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from rm_training import train

    def crash(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the trainer's own fault")

    monkeypatch.setattr(train, "train", crash)
    arguments = ["train", "--data", str(preferences_file), "--output", str(tmp_path / "m"), "--device", "cpu"]
    with pytest.raises(RuntimeError, match="the trainer's own fault"):
        main([*arguments, "--progress-jsonl"])
    events = [progress.parse(line) for line in capsys.readouterr().out.splitlines()]
    assert isinstance(events[0], progress.Start)
    assert events[-1] == progress.Error("RuntimeError: the trainer's own fault")


@pytest.mark.parametrize(
    ("argv", "expected", "hint"),
    [
        (
            ["train", "--data", "d.jsonl", "--output", "m", "--epochs", "many"],
            "error: argument --epochs: invalid int value: 'many'",
            "python -m rm_training train --help",
        ),
        (
            ["train", "--data", "d.jsonl"],
            "error: the following arguments are required: --output",
            "python -m rm_training train --help",
        ),
        (["tune"], "error: argument command: invalid choice: 'tune'", "python -m rm_training --help"),
    ],
)
def test_a_usage_error_is_one_line_with_a_hint_to_help(
    argv: list[str], expected: str, hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == progress.INPUT_ERROR_STATUS
    (line,) = capsys.readouterr().err.splitlines()  # not the usage block
    assert line.startswith(expected) and line.endswith(f" (see {hint})")


def test_under_torchrun_an_error_is_printed_once_not_once_per_process(tmp_path: Path) -> None:
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this Python")
    for options, expected in [
        (["--eval-fraction", "1.5"], "error: eval_fraction"),  # found by the trainer
        (["--epochs", "many"], "error: argument --epochs"),  # found by argparse
    ]:
        result = subprocess.run(
            [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "rm_training", "train",
             "--data", str(tmp_path / "d.jsonl"), "--output", str(tmp_path / "m"), *options],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        )  # fmt: skip
        assert result.returncode != 0
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and errors[0].startswith(expected), result.stderr[-2000:]
