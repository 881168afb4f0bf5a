"""The run's typed config: validation, round trips, and an import light enough for the web process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rm_training.config import GROUPS, MAX_SEED, ConfigError, TrainingConfig
from rm_training.errors import InputError


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
        ({"epochs": "3"}, "epochs must be an integer"),
        ({"use_votes": 1}, "use_votes must be true or false"),
        ({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
        ({"learning_rate": 0}, "learning_rate must be positive"),
        ({"max_grad_norm": float("inf")}, "max_grad_norm must be a finite number"),
        ({"weight_decay": float("nan")}, "weight_decay must be a finite number"),
        ({"eval_fraction": float("nan")}, "eval_fraction must be a finite number"),
        ({"eval_fraction": -0.1}, r"eval_fraction must be in \[0, 1\)"),
        ({"warmup_ratio": 1.5}, "warmup_ratio must be in"),
        ({"margin_scale": float("-inf")}, "margin_scale must be a finite number"),
        ({"batch_size": 0}, "batch_size must be at least 1"),
        ({"batch_size": 2, "gradient_accumulation_steps": 4}, "batch_size must be at least gradient_acc"),
        ({"max_length": 4}, "max_length must be at least 8"),
        ({"seed": -1}, "seed must be in"),
        ({"seed": 2**64}, "seed must be in"),
        ({"device": "banana"}, "device must be 'auto', 'cpu'"),
        ({"device": "cuda:x"}, "device must be"),
        ({"base_model": "  "}, "base_model must not be empty"),
        ({"base_model": "m" * 501}, "base_model must be at most 500 characters"),
        ({"epochs": 10_001}, "epochs must be at most 10000"),
        ({"batch_size": 10**9}, "batch_size must be at most 1000000"),
        ({"eval_batch_size": 10**9}, "eval_batch_size must be at most 1000000"),
        ({"logging_steps": 10**30}, "logging_steps must be at most 1000000"),
        ({"weight_decay": 1.5}, r"weight_decay must be in \[0, 1\]"),
        ({"lora_r": -1}, "lora_r must be in"),
        ({"lora_r": 4097}, r"lora_r must be in \[0, 4096\]"),
        ({"lora_r": 1.5}, "lora_r must be an integer"),
        ({"lora_alpha": 0}, "lora_alpha must be at least 1"),
        ({"lora_dropout": 1.0}, r"lora_dropout must be in \[0, 1\)"),
        ({"lora_target_modules": "q_proj, v_proj"}, "lora_target_modules must be empty or module names"),
        ({"lora_target_modules": "q_proj,"}, "lora_target_modules must be empty or module names"),
        ({"lora_target_modules": "x" * 501}, "lora_target_modules must be at most 500 characters"),
        ({"padding_free": "yes"}, "padding_free must be true or false"),
        ({"fsdp": 1}, "fsdp must be true or false"),
        ({"fsdp": True, "lora_r": 8}, "fsdp cannot be combined with LoRA"),
        ({"min_steps": -1}, "min_steps must be in"),
        ({"max_grad_norm": 1e300}, r"max_grad_norm must be in \[0, 1000000\]"),
        ({"margin_scale": 101}, r"margin_scale must be in \[0, 100\]"),
        ({"center_rewards_coefficient": 1e9}, r"center_rewards_coefficient must be in \[0, 100\]"),
        ({"epochs": None}, "epochs must be an integer, not null"),
        ({"bf16": "yes"}, 'bf16 must be true or false, not "yes"'),
    ],
)
def test_bad_values_are_refused_loudly(values: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message) as raised:
        TrainingConfig.from_dict(values)
    assert "\n" not in str(raised.value)


def test_every_bad_field_is_named_once_in_one_line() -> None:
    with pytest.raises(InputError) as raised:
        TrainingConfig.from_dict({"epochs": 0, "max_grad_norm": float("nan"), "seed": -1})
    assert str(raised.value) == (
        f"epochs must be at least 1; max_grad_norm must be a finite number; seed must be in [0, {MAX_SEED}]"
    )


def test_the_error_holds_each_field_at_fault_with_its_message() -> None:
    with pytest.raises(ConfigError) as raised:
        TrainingConfig.from_dict({"epochs": 0, "colour": "red", "ties": "maybe", "seed": "1"})
    assert raised.value.errors == [
        ("colour", "is not a training setting"),
        ("ties", "must be 'drop' or 'half'"),
        ("epochs", "must be at least 1"),
        ("seed", 'must be an integer, not "1"'),
    ]
    assert str(raised.value) == (
        "unknown training config field(s): colour; ties must be 'drop' or 'half'; epochs must be at least 1; "
        'seed must be an integer, not "1"'
    )


def test_two_fields_are_related_once_each_is_right_alone() -> None:
    with pytest.raises(ConfigError) as raised:
        TrainingConfig.from_dict({"batch_size": 2, "gradient_accumulation_steps": 4})
    assert raised.value.errors == [("batch_size", "must be at least gradient_accumulation_steps")]
    with pytest.raises(ConfigError) as raised:
        TrainingConfig.from_dict({"batch_size": 2, "gradient_accumulation_steps": 0})
    assert raised.value.errors == [("gradient_accumulation_steps", "must be at least 1")]


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "mps"])
def test_device_names_are_accepted(device: str) -> None:
    assert TrainingConfig(device=device).device == device


def test_an_integer_learning_rate_from_json_is_accepted() -> None:
    assert TrainingConfig.from_dict({"learning_rate": 1}).learning_rate == 1.0


def test_importing_the_config_does_not_import_torch() -> None:
    code = "import sys, rm_training, rm_training.config; sys.exit('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 0, "rm_training.config imported torch"
