"""The run's typed config: validation, round trips, and an import light enough for the web process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rm_training.config import GROUPS, TrainingConfig


def test_config_round_trips_through_json(tmp_path: Path) -> None:
    config = TrainingConfig(epochs=3, learning_rate=1e-5, ties="half", seed=7)
    config.save(tmp_path)
    assert TrainingConfig.load(tmp_path) == config
    assert TrainingConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_every_field_has_a_group_and_a_help_text() -> None:
    for spec in TrainingConfig.describe():
        assert spec["group"] in GROUPS
        assert len(spec["help"]) > 10


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"learning_rat": 1e-5}, "unknown"),
        ({"eval_fraction": 1.0}, "eval_fraction"),
        ({"epochs": 0}, "epochs"),
        ({"ties": "maybe"}, "ties"),
        ({"epochs": "3"}, "epochs must be int"),
        ({"use_votes": 1}, "use_votes must be true or false"),
    ],
)
def test_bad_values_are_refused_loudly(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainingConfig.from_dict(values)


def test_an_integer_learning_rate_from_json_is_accepted() -> None:
    assert TrainingConfig.from_dict({"learning_rate": 1}).learning_rate == 1.0


def test_importing_the_config_does_not_import_torch() -> None:
    code = "import sys, rm_training, rm_training.config; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, "rm_training.config imported torch"
