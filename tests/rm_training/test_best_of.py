"""``eval`` on files in RewardBench 2's form: one chosen response and several rejected ones per row; a row is
right when the chosen scores above every rejected one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rm_training.cli import main
from rm_training.config import TrainingConfig
from rm_training.data import DataError
from rm_training.evaluate import evaluate_model_dir
from rm_training.scoring import RewardScorer
from rm_training.train import train

from .conftest import MARKER, marker_comparisons, write_jsonl


@pytest.fixture(scope="module")
def marker_model(tiny_bert_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("best-of") / "model"
    config = TrainingConfig(
        base_model=str(tiny_bert_dir),
        max_length=48,
        epochs=3,
        batch_size=16,
        min_steps=0,
        learning_rate=3e-3,
        eval_fraction=0.2,
        device="cpu",
        bf16=False,
    )
    train(config, examples=marker_comparisons(96), output_dir=output)
    return output


def best_of_rows(n: int) -> list[dict[str, object]]:
    """Rows whose chosen response holds the marker word, and three rejected ones that do not."""
    rows = []
    for i, comparison in enumerate(marker_comparisons(n, seed=7)):
        rejected = [comparison.rejected, comparison.chosen.replace(MARKER, "river"), "the small table"]
        rows.append(
            {
                "prompt": comparison.prompt,
                "chosen": [comparison.chosen],
                "rejected": rejected,
                "subset": "odd" if i % 2 else "even",
            }
        )
    return rows


def test_a_row_is_right_when_the_chosen_scores_above_every_rejected(
    marker_model: Path, tmp_path: Path
) -> None:
    rows = best_of_rows(20)
    data = write_jsonl(tmp_path / "rb2.jsonl", rows)
    metrics = evaluate_model_dir(marker_model, data, device="cpu")

    scorer = RewardScorer(marker_model, device="cpu")
    right = []
    for row in rows:
        chosen, *rejected = scorer.score(row["prompt"], [*row["chosen"], *row["rejected"]])  # type: ignore[list-item]
        right.append(chosen > max(rejected))
    assert metrics["format"] == "best_of" and metrics["rows"] == 20
    assert metrics["accuracy"] == pytest.approx(sum(right) / 20)
    assert metrics["accuracy"] > metrics["random_baseline"] == 0.25
    assert metrics["subsets"]["even"]["rows"] == 10
    assert metrics["subsets"]["odd"]["accuracy"] == pytest.approx(sum(right[1::2]) / 10)


def test_a_chosen_tied_with_the_best_rejected_gets_its_share_and_several_chosen_are_left_out(
    marker_model: Path, tmp_path: Path
) -> None:
    rows = [
        # The same text twice among the rejected: three equal scores at the top, a third of a right answer.
        {"prompt": "p", "chosen": "a river story", "rejected": ["a river story", "a river story"]},
        {"prompt": "p", "chosen": ["one", "two"], "rejected": ["three"]},  # RewardBench 2's Ties: not read
    ]
    metrics = evaluate_model_dir(marker_model, write_jsonl(tmp_path / "rb2.jsonl", rows), device="cpu")
    assert metrics["accuracy"] == pytest.approx(1 / 3)
    assert metrics["rows"] == 1 and metrics["rows_several_chosen_left_out"] == 1


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (
            {"prompt": "p", "chosen": "a", "rejected": []},
            "line 2: rejected: must be a non-empty list of strings",
        ),
        (
            {"prompt": "p", "chosen": 3, "rejected": ["b"]},
            "line 2: chosen: must be a string or a non-empty list of strings",
        ),
        ({"prompt": 1, "chosen": "a", "rejected": ["b"]}, "line 2: prompt: must be a string"),
        # an empty list is a list of strings: the message must say what is wrong with it
        (
            {"prompt": "p", "chosen": [], "rejected": ["b"]},
            "line 2: chosen: must be a string or a non-empty list",
        ),
        # a subset that is no string was dropped without a word: the row counted in no subset
        ({"prompt": "p", "chosen": "a", "rejected": ["b"], "subset": 5}, "line 2: subset: must be a string"),
    ],
)
def test_a_bad_row_is_refused_naming_its_line(
    marker_model: Path, tmp_path: Path, row: dict[str, object], message: str
) -> None:
    data = write_jsonl(tmp_path / "rb2.jsonl", [{"prompt": "p", "chosen": "a", "rejected": ["b", "c"]}, row])
    with pytest.raises(DataError, match=message):
        evaluate_model_dir(marker_model, data, device="cpu")


def test_the_cli_evaluates_such_a_file(
    marker_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_jsonl(tmp_path / "rb2.jsonl", best_of_rows(4))
    assert main(["eval", "--model", str(marker_model), "--data", str(data), "--device", "cpu", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["format"] == "best_of" and printed["rows"] == 4
