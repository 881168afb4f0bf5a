"""The trainer's side of the protocol with its supervisor: every event is one strict JSON line that reads
back as the same event, and a line that is not an event reads as None."""

from __future__ import annotations

import io
import json
import math

import pytest

from rm_training import progress
from rm_training.progress import Cancelled, Done, Epoch, Error, ProgressEvents, Start, Step


def _line(event: progress.Event) -> str:
    stream = io.StringIO()
    progress.emit(stream, event)
    return stream.getvalue()


def _strict(line: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(line, parse_constant=refuse)


EVENTS = [
    Start(device="cuda", bf16=True, processes=4, pid=1234),
    Step(fraction=0.25, step=3, total_steps=12, epoch=1, loss=0.6931, learning_rate=3e-5),
    Epoch(fraction=0.5, epoch=1, train_loss=0.61, eval_loss=0.58, eval_accuracy=0.75, pairs_per_second=120.5),
    Epoch(fraction=1.0, epoch=2, train_loss=0.5, pairs_per_second=99.0),
    Done(metrics={"eval_accuracy": 0.8, "counts": {"train_pairs": 10}, "calibration": [{"pairs": 3}]}),
    Cancelled(message="stopped at step 7 of 12"),
    Error(message="no model directory /no/such/model"),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda event: type(event).__name__)
def test_each_event_is_one_json_line_that_reads_back_as_itself(event: progress.Event) -> None:
    line = _line(event)
    assert line.endswith("\n") and line.count("\n") == 1
    assert _strict(line)["event"] == event.name
    assert progress.parse(line) == event


def test_every_event_kind_has_a_round_trip_test() -> None:
    assert {event.name for event in EVENTS} == set(progress.EVENTS)


def test_a_float_that_is_not_finite_is_written_as_null_even_deep_in_the_metrics() -> None:
    step = Step(fraction=0.5, step=1, total_steps=2, epoch=1, loss=math.nan, learning_rate=math.inf)
    assert progress.parse(_line(step)) == Step(fraction=0.5, step=1, total_steps=2, epoch=1)
    metrics = {
        "ece": math.nan,
        "calibration": [{"confidence": -math.inf, "pairs": 0}],
        "history": ({"a": 1.0},),
    }
    line = _line(Done(metrics=metrics))
    assert _strict(line)["metrics"] == {
        "ece": None,
        "calibration": [{"confidence": None, "pairs": 0}],
        "history": [{"a": 1.0}],
    }


def test_nan_written_by_an_older_trainer_reads_as_none() -> None:
    event = progress.parse('{"event": "step", "step": 2, "loss": NaN, "learning_rate": 1e999}')
    assert event == Step(step=2, loss=None, learning_rate=None)


def test_unknown_fields_are_ignored_and_missing_or_mistyped_ones_take_their_default() -> None:
    line = '{"event": "step", "step": 5, "fraction": 1, "grad_norm": 1.5, "loss": "low", "epoch": true}\n'
    assert progress.parse(line) == Step(fraction=1.0, step=5)
    assert progress.parse('{"event": "start"}') == Start(device="", bf16=False, processes=1, pid=None)
    assert progress.parse('{"event": "done", "metrics": [1, 2]}') == Done(metrics={})


@pytest.mark.parametrize(
    "line",
    [
        "Some weights of the model were not initialized\n",
        "",
        '{"event": "done"',
        "[1, 2]",
        '"done"',
        "null",
        '{"level": "info", "message": "hello"}',
        '{"event": "checkpoint", "step": 3}',
        '{"event": ["done"]}',
    ],
)
def test_a_line_that_is_not_an_event_reads_as_none(line: str) -> None:
    assert progress.parse(line) is None


def test_the_trainers_progress_callback_becomes_step_epoch_and_done_events() -> None:
    stream = io.StringIO()
    events = ProgressEvents(stream)
    events.progress(0.5, {"step": 1, "total_steps": 2, "epoch": 1, "loss": 0.7, "learning_rate": 1e-3})
    summary = {"epoch": 1, "train_loss": 0.7, "pairs_per_second": 50.0}
    events.progress(1.0, {**summary, "epoch_end": True})
    events.progress(1.0, {"eval_accuracy": None, "steps": 2})
    parsed = [progress.parse(line) for line in stream.getvalue().splitlines()]
    assert parsed == [
        Step(fraction=0.5, step=1, total_steps=2, epoch=1, loss=0.7, learning_rate=1e-3),
        Epoch(fraction=1.0, epoch=1, train_loss=0.7, pairs_per_second=50.0),
        Done(metrics={"eval_accuracy": None, "steps": 2}),
    ]
    # An epoch without held-out pairs has no held-out figures, as in metrics.json.
    assert isinstance(parsed[1], Epoch) and parsed[1].summary() == summary
    held_out = Epoch(epoch=2, train_loss=0.5, eval_loss=0.6, eval_accuracy=None, pairs_per_second=1.0)
    assert held_out.summary() == {
        "epoch": 2,
        "train_loss": 0.5,
        "eval_loss": 0.6,
        "eval_accuracy": None,
        "pairs_per_second": 1.0,
    }


def test_an_epoch_carries_the_speed_figures_through_the_stream() -> None:
    stream = io.StringIO()
    speed = {"tokens_per_second": 5120.5, "mfu": 0.41, "peak_memory_bytes": 3 * 2**30}
    summary = {"epoch": 1, "train_loss": 0.7, "pairs_per_second": 50.0, **speed}
    ProgressEvents(stream).progress(1.0, {**summary, "epoch_end": True})
    (event,) = [progress.parse(line) for line in stream.getvalue().splitlines()]
    assert event == Epoch(fraction=1.0, epoch=1, train_loss=0.7, pairs_per_second=50.0, **speed)
    assert event.summary() == summary
    on_a_cpu = {**summary, "mfu": None, "peak_memory_bytes": None}
    stream = io.StringIO()
    ProgressEvents(stream).progress(1.0, {**on_a_cpu, "epoch_end": True})
    assert progress.parse(stream.getvalue()).summary() == on_a_cpu  # type: ignore[union-attr]
