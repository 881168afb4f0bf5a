"""``python -m rm_training train | eval | score``: the trainer without Django or a database (API.md).

The train options are generated from :class:`TrainingConfig`, so the CLI, the config file and the saved
config always have the same names and help. torch is imported only once a command runs, so ``--help``
is quick.

Every error in what a command was given (a bad option, a data file, a setting, a model directory, an output
path) is one line on stderr, ``error: ...``, and exit status 2; a traceback means a fault of the trainer.
Under torchrun only rank 0 prints that line, since every process finds the same error. With
``train --progress-jsonl`` the events of :mod:`rm_training.progress` go to stdout, ending in an error event
with that line (or the exception's, for a fault) when the run fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import signal
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from . import conversation, jsonl, progress
from .config import GROUPS, TrainingConfig, setting_help
from .conversation import Message
from .errors import InputError


def add_config_options(
    parser: argparse.ArgumentParser, specs: Sequence[dict[str, Any]] | None = None
) -> None:
    """An option per TrainingConfig field (``specs``: those of TrainingConfig.describe() to offer, all by
    default), grouped as the config is, each with its help, default and bounds; TrainingConfig judges the
    values. The management command train_reward_model offers the same options."""
    groups = {name: parser.add_argument_group(f"{name} options") for name in GROUPS}
    for spec in TrainingConfig.describe() if specs is None else specs:
        option = "--" + spec["name"].replace("_", "-")
        kind = spec["type"]
        help_text = setting_help(spec)
        group = groups[spec["group"]]
        # Defaults stay None so that only the options given override --config and the dataclass.
        if kind is bool:
            group.add_argument(option, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif spec["choices"] is not None:
            group.add_argument(option, choices=spec["choices"], default=None, help=help_text)
        else:
            group.add_argument(option, type=kind, default=None, help=help_text)


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors in one line like every other error here: the usage is what --help is for."""

    def error(self, message: str) -> NoReturn:
        _print_error(f"{message} (see {self.prog} --help)")
        self.exit(progress.INPUT_ERROR_STATUS)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m rm_training", description="Train, evaluate and use Bradley-Terry reward models."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train a reward model on a preferences or judgments JSONL file")
    train.add_argument("--data", required=True, type=Path, help="preferences or judgments JSONL (API.md)")
    train.add_argument("--output", required=True, type=Path, help="directory to write the model to")
    train.add_argument("--config", type=Path, help="JSON file of TrainingConfig fields; options override it")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the trained model in a non-empty --output (swapped in once complete, so a failed run "
        "leaves the old one whole); without it a non-empty --output is refused",
    )
    train.add_argument(
        "--progress-jsonl",
        action="store_true",
        help="write progress to stdout as JSON lines (one object per event: start, step, epoch, then done, "
        "cancelled or error) for a supervising process; the summary line goes to stderr then",
    )
    add_config_options(train)

    evaluate = commands.add_parser("eval", help="metrics of a trained model on every pair of a JSONL file")
    evaluate.add_argument("--model", required=True, type=Path, help="a directory written by train")
    evaluate.add_argument("--data", required=True, type=Path, help="preferences or judgments JSONL")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--batch-size", type=_positive_int, default=64, help="pairs per forward pass")
    evaluate.add_argument("--device", default="auto", help="'auto', 'cpu', 'cuda' or 'cuda:N'")

    score = commands.add_parser("score", help="reward of each response to a prompt")
    score.add_argument("--model", required=True, type=Path, help="a directory written by train")
    prompt = score.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt", help="the prompt as text")
    prompt.add_argument(
        "--conversation",
        type=Path,
        help='a JSON file holding the prompt as a list of messages {"role", "content"} ending with the '
        "user's ('-' reads standard input)",
    )
    score.add_argument("--response", required=True, action="append", help="repeat for several responses")
    score.add_argument("--json", action="store_true", help='print {"scores": [...]} instead of lines')
    score.add_argument("--batch-size", type=_positive_int, default=32, help="responses per forward pass")
    score.add_argument("--device", default="auto")
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _read_config_file(path: Path) -> dict[str, Any]:
    """A --config file, read by rm_training.jsonl (the one JSON reader) so that its errors name the file."""
    try:
        values = jsonl.loads(jsonl.decode(path.read_bytes()))
    except jsonl.JSONError as error:
        raise InputError(f"{path}: {error}") from None
    except OSError as error:
        raise InputError(f"{path}: cannot be read: {error.strerror or error}") from None
    if not isinstance(values, dict):
        raise InputError(f"{path}: a training config is a JSON object of TrainingConfig fields")
    return values


def _config_from_args(args: argparse.Namespace) -> TrainingConfig:
    values: dict[str, Any] = {"progress_bar": True}
    if args.config is not None:
        values |= _read_config_file(args.config)
    for spec in TrainingConfig.describe():
        given = getattr(args, spec["name"])
        if given is not None:
            values[spec["name"]] = given
    return TrainingConfig.from_dict(values)


def _quiet_transformers() -> None:
    """transformers' load reports (the new head's weights) and save bars are expected here, not news."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()


def _run_train(args: argparse.Namespace, stop: StopOnSignal) -> int:
    main_process = _rank() == 0
    events = progress.ProgressEvents(sys.stdout if args.progress_jsonl and main_process else None)
    try:
        return _train(args, events, stop, main_process=main_process)
    except (InputError, OSError) as error:
        _send_error(events, _error_line(error))
        raise
    except Exception as error:
        # A fault of the trainer: the supervisor gets the exception as the traceback's last line names it,
        # and the traceback still goes to stderr.
        _send_error(events, " ".join("".join(traceback.format_exception_only(error)).split()))
        raise


def _send_error(events: progress.ProgressEvents, message: str) -> None:
    with contextlib.suppress(OSError):  # the stream itself may be what failed (its reader gone)
        events.emit(progress.Error(message))


def _train(
    args: argparse.Namespace, events: progress.ProgressEvents, stop: StopOnSignal, *, main_process: bool
) -> int:
    from tqdm.contrib.logging import logging_redirect_tqdm

    from .model import bf16_supported, resolve_device
    from .train import TrainingCancelled, train

    config = _config_from_args(args)
    if args.progress_jsonl:
        config = dataclasses.replace(config, progress_bar=False)
        device = resolve_device(config.device)
        events.emit(
            progress.Start(
                device=device.type,
                bf16=config.bf16 and bf16_supported(device),
                processes=int(os.environ.get("WORLD_SIZE", "1")),
                pid=os.getpid(),
            )
        )
    try:
        with logging_redirect_tqdm():
            metrics = train(
                config,
                data_path=args.data,
                output_dir=args.output,
                overwrite=args.overwrite,
                on_progress=events.progress,
                should_stop=stop.requested,
            )
    except TrainingCancelled as stopped:
        print(f"stopped by {stop.signal_name or 'request'}: {stopped}; nothing was saved", file=sys.stderr)
        events.emit(progress.Cancelled(message=str(stopped)))
        return progress.CANCELLED_STATUS
    if main_process:
        summary = {k: _fmt(metrics[k]) for k in ("eval_accuracy", "eval_loss", "train_loss")}
        if "eval_accuracy_ipw" in metrics:  # measured: held-out pairs chosen by active selection
            ipw = metrics["eval_accuracy_ipw"]
            summary["eval_accuracy_ipw"] = (
                f"{_fmt(ipw['accuracy'])} (se {_fmt(ipw['standard_error'])}, "
                f"worth {ipw['effective_pairs']:.1f} of {ipw['pairs']} pairs)"
            )
        print(
            f"saved {args.output}  " + "  ".join(f"{k} {v}" for k, v in summary.items()),
            file=sys.stderr if args.progress_jsonl else sys.stdout,
        )
    return 0


class StopOnSignal:
    """SIGTERM or SIGINT asks the run to stop at its next stop check (before the weights load, between
    optimizer steps, after the last evaluation, before the saved model takes the output's place: see
    rm_training.train); it then writes nothing and exits with progress.CANCELLED_STATUS. A second signal
    stops it at once, as the default handlers would."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._previous: dict[int, Any] = {}

    def requested(self) -> bool:
        return self.signal_name is not None

    def _handle(self, number: int, frame: Any) -> None:
        if self.signal_name is not None:
            raise KeyboardInterrupt
        self.signal_name = signal.Signals(number).name
        logging.getLogger("rm_training").warning(
            "%s: stopping at the next step (again to stop at once)", self.signal_name
        )

    def __enter__(self) -> StopOnSignal:
        for number in (signal.SIGTERM, signal.SIGINT):
            self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)


def _run_eval(args: argparse.Namespace) -> int:
    from .evaluate import evaluate_model_dir

    metrics = evaluate_model_dir(args.model, args.data, batch_size=args.batch_size, device=args.device)
    if args.json:
        print(json.dumps(metrics))
    else:
        for key, value in _flat(metrics):
            print(f"{key}: {_fmt(value)}")
    return 0


def _flat(values: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Nested objects as dotted keys, one line each: ``by_arm.random.accuracy: 0.7500``."""
    for key, value in values.items():
        if isinstance(value, dict) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _run_score(args: argparse.Namespace) -> int:
    from .scoring import RewardScorer

    prompt = args.prompt if args.conversation is None else _read_conversation(args.conversation)
    texts = [("--prompt", args.prompt or "")] + [
        (f"--response {i}", r) for i, r in enumerate(args.response, 1)
    ]
    for option, text in texts:
        # A command line can carry bytes that are not UTF-8 (as lone surrogates), which no tokenizer takes.
        for _, problem in jsonl.text_problems(text):
            raise InputError(f"{option}: {problem}")
    scorer = RewardScorer(args.model, device=args.device, batch_size=args.batch_size)
    scores = scorer.score(prompt, args.response)
    if args.json:
        print(json.dumps({"scores": scores}))
    else:
        for value in scores:
            print(f"{value:.6f}")
    return 0


def _read_conversation(path: Path) -> list[Message]:
    """--conversation's messages, read by the project's one JSON reader and checked by the one rule."""
    try:
        data = sys.stdin.buffer.read() if str(path) == "-" else path.read_bytes()
    except OSError as error:
        raise InputError(f"--conversation {path}: cannot be read: {error.strerror or error}") from None
    try:
        value = jsonl.loads(jsonl.decode(data))
    except jsonl.JSONError as error:
        raise InputError(f"--conversation {path}: {error}") from None
    problems = [(".".join(map(str, p)), m) for p, m in jsonl.text_problems(value)]
    problems += conversation.message_problems(value)
    if problems:
        where, message = problems[0]
        raise InputError(f"--conversation {path}: {where + ': ' if where else ''}{message}")
    return list(value)


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def main(argv: Sequence[str] | None = None) -> int:
    # Never reach for a model hub: a base model is a local directory or already cached.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = build_parser().parse_args(argv)
    stop = StopOnSignal()
    # Before anything slow (torch and transformers take seconds to import): however early a SIGTERM comes,
    # a run ends as cancelled, never killed half-way through its imports.
    with stop if args.command == "train" else contextlib.nullcontext():
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
        _quiet_transformers()
        try:
            if args.command == "train":
                return _run_train(args, stop)
            return _run_eval(args) if args.command == "eval" else _run_score(args)
        except (InputError, OSError) as error:
            _print_error(_error_line(error))
            return progress.INPUT_ERROR_STATUS


def _rank() -> int:
    """This process's rank under torchrun; 0 alone."""
    return int(os.environ.get("RANK", "0"))


def _print_error(line: str) -> None:
    if _rank() == 0:
        print(f"error: {line}", file=sys.stderr)


def _error_line(error: InputError | OSError) -> str:
    if isinstance(error, InputError):
        return str(error)
    # The machine, not the trainer: a full disk, a file removed under the run. One line is enough.
    return str(error).splitlines()[0] if str(error) else type(error).__name__
