"""What a training run measured, as the typed object that ``metrics.json`` is written from and read into.

Imports nothing heavy, like :mod:`rm_training.config`: the web process reads a finished run's metrics
without importing torch. The held-out figures are None when the run held nothing out (or, for the split
and per-judgment ones, when the held-out pairs have no such votes).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict

METRICS_FILENAME = "metrics.json"
# Figures whose key is left out of metrics.json when they were not measured (readers test for the key).
_ABSENT_WHEN_NONE = ("eval_by_arm", "eval_accuracy_ipw")


class LogEntry(TypedDict):
    """The training loss every ``logging_steps`` optimizer steps (and at the last)."""

    step: int
    epoch: int
    loss: float
    learning_rate: float


class EpochSummary(TypedDict):
    """One epoch: the mean training loss over its steps, and the held-out figures when there are any."""

    epoch: int
    train_loss: float
    eval_loss: NotRequired[float]
    eval_accuracy: NotRequired[float | None]
    pairs_per_second: float
    # Later: the speed of rm_training.throughput, up to this epoch's end (mfu and peak memory None on CPUs).
    tokens_per_second: NotRequired[float]
    mfu: NotRequired[float | None]
    peak_memory_bytes: NotRequired[int | None]


@dataclass
class Counts:
    """How many pairs went where. Every pair of the data is trained on, held out, or counted as left out
    here. The fields with defaults came later: a metrics.json written before them reads as zeros."""

    train_pairs: int  # trained on: the training split less its pairs that encode the same on both sides
    train_tokens: int
    eval_pairs: int
    pairs_truncated: int  # over train and eval
    responses_truncated: int  # of those, pairs with a response cut
    eval_pairs_unanimous: int
    eval_pairs_split: int
    eval_judgments: int
    # Left out when the data was read: no side with a strict majority (rm_training.votes).
    pairs_left_out_by_votes: int = 0
    # Dropped when the data was read: the same text on both sides, so nothing to prefer.
    pairs_identical_text: int = 0
    # Left out when the data was read: a reviewer left the pair out of training (the export's left_out).
    pairs_left_out_by_review: int = 0
    # Both sides encode to the same tokens (an uncased tokenizer, or truncation at max_length): the
    # model cannot tell them apart. Left out of training (their gradient is zero); scored as ties held out.
    train_pairs_identical_tokens: int = 0
    eval_pairs_identical_tokens: int = 0
    # Conversations cut by whole turns to fit max_length (over train and eval; counted in pairs_truncated
    # too), and the messages they lost in all.
    pairs_with_messages_dropped: int = 0
    messages_dropped: int = 0


@dataclass
class DatasetSummary:
    pairs: int  # usable pairs: those read less the ones counted as left out or dropped in Counts
    train: int  # the training split, before its pairs that encode the same on both sides are left out
    eval: int
    sha256: str  # rm_training.data.dataset_digest of every pair, so a run names the data it saw


@dataclass
class TrainingMetrics:
    """Final metrics of a run; the held-out ones are those of :func:`rm_training.evaluate.reward_metrics`
    after the last epoch. The field order is the order of the keys in ``metrics.json``."""

    eval_accuracy: float | None
    eval_loss: float | None
    train_loss: float  # mean over the last epoch's steps
    accuracy_unanimous: float | None
    accuracy_split: float | None
    judgment_accuracy: float | None
    rater_agreement: float | None
    ece: float | None
    reward_mean: float | None
    reward_std: float | None
    counts: Counts
    dataset: DatasetSummary
    steps: int
    train_pairs_per_second: float | None
    train_seconds: float
    runtime_seconds: float
    processes: int
    device: str  # the device type: "cpu", "cuda"
    history: list[EpochSummary]
    log: list[LogEntry]
    # Later fields, with defaults so that an older metrics.json still reads.
    # Accuracy of always preferring the longer response on the same held-out pairs.
    length_baseline_accuracy: float | None = None
    # Reliability bins of rm_training.evaluate.reward_metrics: {"lower", "upper", "pairs", "confidence",
    # "observed"}.
    calibration: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    bf16: bool | None = None  # whether training ran under bf16 autocast
    # rm_training.throughput: real (unpadded) tokens trained on per second; model FLOPs utilisation
    # (None on CPUs and unknown GPUs); the most accelerator memory held on rank 0 (None on CPUs).
    train_tokens_per_second: float | None = None
    mfu: float | None = None
    peak_memory_bytes: int | None = None
    batch_size: int | None = None  # pairs per optimizer step the run used (config.min_steps may halve it)
    parameters: int | None = None  # of the model
    trainable_parameters: int | None = None  # of those, trained (LoRA: the adapters and the head)
    # Active selection (rm_training.evaluate.reward_metrics' by_arm and accuracy_ipw): the held-out
    # {"pairs", "accuracy"} per arm ("uncertainty", "random", "default"; an arm without held-out pairs is
    # absent), and the accuracy on the held-out pairs active selection chose, corrected by inverse
    # propensity: {"accuracy", "standard_error", "pairs", "effective_pairs"}. Not measured (nothing held
    # out; no held-out pair with a propensity): the key is absent from metrics.json, not null.
    eval_by_arm: dict[str, dict[str, Any]] | None = None
    eval_accuracy_ipw: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        for key in _ABSENT_WHEN_NONE:
            if values[key] is None:
                del values[key]
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainingMetrics:
        return cls(
            **{
                **values,
                "counts": Counts(**values["counts"]),
                "dataset": DatasetSummary(**values["dataset"]),
            }
        )

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / METRICS_FILENAME
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TrainingMetrics:
        return cls.from_dict(json.loads((Path(directory) / METRICS_FILENAME).read_text(encoding="utf-8")))
