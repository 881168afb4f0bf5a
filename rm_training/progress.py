"""The protocol between the trainer (``python -m rm_training train --progress-jsonl``) and whoever supervises
it (reward_models.runner): its events as types, one JSON line each on stdout, and its exit statuses.

Plain Python (no torch, no Django), so that the web process can read what the trainer writes.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TextIO

from .jsonl import finite_or_none

# Exit status of a run refused for what it was given (a data file, a setting, a model directory, an output
# path): it sent an Error event with the one-line reason, as argparse exits 2 for a bad option.
INPUT_ERROR_STATUS = 2
# Exit status of a run stopped by SIGTERM/SIGINT (or a supervisor's request): it wrote nothing.
CANCELLED_STATUS = 3


@dataclass(frozen=True)
class Start:
    """The run began: the device it trains on, whether in bf16, how many processes, the trainer's pid."""

    name: ClassVar[str] = "start"
    device: str = ""
    bf16: bool = False
    processes: int = 1
    pid: int | None = None


@dataclass(frozen=True)
class Step:
    """After every optimizer step: the fraction of the run done (0..1) and where the run is."""

    name: ClassVar[str] = "step"
    fraction: float = 0.0
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    loss: float | None = None
    learning_rate: float | None = None


@dataclass(frozen=True)
class Epoch:
    """After every epoch: its mean training loss and speed, and its held-out figures when it had held-out
    pairs (then eval_loss is a number; eval_accuracy may be None, every held-out pair a tie)."""

    name: ClassVar[str] = "epoch"
    fraction: float = 0.0
    epoch: int = 0
    train_loss: float | None = None
    eval_loss: float | None = None
    eval_accuracy: float | None = None
    pairs_per_second: float | None = None
    # rm_training.throughput's figures so far: real tokens/s, model FLOPs utilisation (None on CPUs), and
    # the peak accelerator memory in bytes (None on CPUs).
    tokens_per_second: float | None = None
    mfu: float | None = None
    peak_memory_bytes: int | None = None

    def summary(self) -> dict[str, Any]:
        """The epoch as rm_training.metrics.EpochSummary has it: the held-out figures only when there were
        held-out pairs, the speed figures when the trainer sent them."""
        summary: dict[str, Any] = {"epoch": self.epoch, "train_loss": self.train_loss}
        if self.eval_loss is not None:
            summary |= {"eval_loss": self.eval_loss, "eval_accuracy": self.eval_accuracy}
        summary["pairs_per_second"] = self.pairs_per_second
        if self.tokens_per_second is not None:  # a trainer from before the speed figures sends none
            summary |= {
                "tokens_per_second": self.tokens_per_second,
                "mfu": self.mfu,
                "peak_memory_bytes": self.peak_memory_bytes,
            }
        return summary


@dataclass(frozen=True)
class Done:
    """The model is written: the metrics that its metrics.json holds."""

    name: ClassVar[str] = "done"
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Cancelled:
    """The run stopped on a signal and wrote nothing; it exits with CANCELLED_STATUS."""

    name: ClassVar[str] = "cancelled"
    message: str = ""


@dataclass(frozen=True)
class Error:
    """The run failed: the trainer's one-line error, the last event before it exits. For what it was given
    (exit INPUT_ERROR_STATUS) the line says what to do; for a fault of the trainer it is the exception's
    type and message (the traceback goes to stderr)."""

    name: ClassVar[str] = "error"
    message: str = ""


Event = Start | Step | Epoch | Done | Cancelled | Error
EVENTS: dict[str, type[Event]] = {kind.name: kind for kind in typing.get_args(Event)}


def emit(stream: TextIO, event: Event) -> None:
    """Write the event as one JSON line and flush it, so that a supervisor reads it at once. A float that
    is not finite is written as null: the line is strict JSON."""
    fields = finite_or_none(dataclasses.asdict(event))
    stream.write(json.dumps({"event": event.name, **fields}, allow_nan=False) + "\n")
    stream.flush()


def _field_types(kind: type[Event]) -> dict[str, tuple[type, ...]]:
    """Each field's name and the JSON value types it takes: ``float | None`` takes a float, an integer
    (1 for 1.0) or null."""
    hints = typing.get_type_hints(kind)
    accepted: dict[str, tuple[type, ...]] = {}
    for item in dataclasses.fields(kind):
        hint = hints[item.name]
        members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        runtime = tuple(typing.get_origin(member) or member for member in members)
        accepted[item.name] = (*runtime, int) if float in runtime else runtime
    return accepted


_FIELD_TYPES = {kind: _field_types(kind) for kind in EVENTS.values()}


def parse(line: str) -> Event | None:
    """The event a line holds, or None for a line that is not one (a library writing to stdout, an event
    this side does not know). Unknown fields are ignored, and a field that is missing, or not of its type,
    takes its default, so a trainer one version apart still reads."""
    try:
        # A float that is not finite (NaN, as an older trainer wrote it, or 1e999) is null, as emit writes it.
        values = finite_or_none(json.loads(line))
    except ValueError:
        return None
    if not isinstance(values, dict) or not isinstance(values.get("event"), str):
        return None
    kind = EVENTS.get(values["event"])
    if kind is None:
        return None
    given: dict[str, Any] = {}
    for name, accepted in _FIELD_TYPES[kind].items():
        value = values.get(name)
        if name not in values or not isinstance(value, accepted):
            continue  # missing, or not of the field's type: the default
        if isinstance(value, bool) and bool not in accepted:
            continue  # JSON's true is no number
        given[name] = float(value) if float in accepted and isinstance(value, int) else value
    return kind(**given)


class ProgressEvents:
    """The trainer's progress (train()'s on_progress) as events on a stream; with no stream (not asked
    for, or not the main process of several), nothing is written."""

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream

    def emit(self, event: Event) -> None:
        if self.stream is not None:
            emit(self.stream, event)

    def progress(self, fraction: float, info: dict[str, Any]) -> None:
        if info.get("epoch_end"):
            self.emit(
                Epoch(
                    fraction=fraction,
                    epoch=info["epoch"],
                    train_loss=info["train_loss"],
                    eval_loss=info.get("eval_loss"),
                    eval_accuracy=info.get("eval_accuracy"),
                    pairs_per_second=info["pairs_per_second"],
                    tokens_per_second=info.get("tokens_per_second"),
                    mfu=info.get("mfu"),
                    peak_memory_bytes=info.get("peak_memory_bytes"),
                )
            )
        elif "step" in info and "total_steps" in info:
            self.emit(
                Step(
                    fraction=fraction,
                    step=info["step"],
                    total_steps=info["total_steps"],
                    epoch=info["epoch"],
                    loss=info["loss"],
                    learning_rate=info["learning_rate"],
                )
            )
        else:
            self.emit(Done(metrics=info))
