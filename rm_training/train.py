"""Training a Bradley-Terry reward model, top to bottom: setup, data, model, schedule, loop, eval, save.

The entry point for callers (the CLI, which the worker starts as a child process; tests; scripts) is::

    train(config, *, output_dir, data_path=None, examples=None, on_progress=None, should_stop=None,
          overwrite=False) -> dict

- ``config``: a :class:`rm_training.config.TrainingConfig`.
- ``data_path`` (a preferences or judgments JSONL file) or ``examples`` (a list of
  :class:`rm_training.data.Comparison`): exactly one of them.
- ``output_dir``: where the model, tokenizer, ``training_config.json``, ``metrics.json`` and the model card
  (``README.md``) are written; ``AutoModelForSequenceClassification.from_pretrained`` loads it as it is.
  It must be new or empty, or a trained model with ``overwrite=True``; it is checked before any work and
  written whole or not at all (:mod:`rm_training.output`).
- ``on_progress(fraction, info)``: called after every optimizer step with the fraction done (0..1) and
  ``{"step", "total_steps", "epoch", "loss", "learning_rate"}``, after every epoch with that epoch's
  summary (``"epoch_end": True`` and its eval metrics), and once with 1.0 and the final metrics.
- ``should_stop()``: asked before the weights load, between optimizer steps, after the last evaluation and
  once more when the model is written but not yet swapped into ``output_dir``; when it returns True the
  run stops there, writes nothing and raises :class:`TrainingCancelled`, so a cancelled run can never pass
  for a finished one. (A stop asked after the swap finds the model saved whole.)
- Returns the metrics that ``metrics.json`` holds.
- Raises :class:`rm_training.errors.InputError` (one line) for anything given that cannot be used: a
  setting the base model cannot take (max_length past its positions), a base model that is not there,
  data with no usable pairs, an output that is a file. Most are found before the model's weights load.

Pairs whose two responses are the same text are dropped when read; pairs whose two sides encode to the same
tokens (an uncased tokenizer, or truncation cutting off the difference) are left out of training, since
their Bradley-Terry gradient is exactly zero and they would only dilute their batch, and are scored as ties
when held out. All of these are counted in ``metrics.json`` and the model card, and logged.

Several processes: start the same entry point under ``torchrun --nproc_per_node N``; each process trains
on its share of every batch (DDP: NCCL on GPUs, gloo on CPUs) and only rank 0 evaluates and writes.
``batch_size`` counts pairs per optimizer step over all processes, and the loss of a step is the weighted
mean over that whole global batch, so 1 process and N processes follow the same curve.
No Django process calls this: the worker (reward_models.runner) starts ``python -m rm_training train`` as a
child process, since this module imports torch (see STYLE.md).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple, TypeVar, cast

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm
from transformers import PreTrainedModel, get_cosine_with_min_lr_schedule_with_warmup

from .collate import packed_inputs
from .config import MIN_AUTO_BATCH, TrainingConfig
from .data import (
    Comparison,
    ComparisonData,
    DataError,
    dataset_digest,
    drop_identical,
    read_data,
    split_by_prompt,
)
from .distributed import full_state_dict, shard
from .errors import InputError
from .evaluate import evaluate_pairs, score_check_items, write_score_check
from .loss import bradley_terry_loss
from .metrics import Counts, DatasetSummary, EpochSummary, LogEntry, TrainingMetrics
from .model import (
    add_lora,
    autocast,
    bf16_supported,
    check_max_length,
    check_padding_free,
    load_model_config,
    load_reward_model,
    load_tokenizer,
    packed_attention,
    position_limit,
    resolve_base_model,
    resolve_device,
    rewards_from,
    save_model,
)
from .model_card import write_model_card
from .output import check_output_dir, written_whole
from .propensity import effective_count
from .throughput import model_flops_utilisation, peak_memory_bytes
from .tokenization import Batch, EncodedPair, PairEncoder, length_grouped_batches, pair_targets
from .votes import ipw_factor

logger = logging.getLogger("rm_training")

ProgressCallback = Callable[[float, dict[str, Any]], None]
StopCallback = Callable[[], bool]
T = TypeVar("T")


class TrainingCancelled(Exception):
    """should_stop() asked the run to stop; nothing was written."""


class OutOfMemory(InputError):
    """The device ran out of memory: a failure of the settings (one line naming those to change), not a
    fault of the trainer, and never a hung worker: the process exits, and torchrun stops the others."""


class SameTokens(NamedTuple):
    """Pairs whose two sides encode to the same tokens: left out of training, scored as ties held out."""

    train: int
    eval: int


@dataclass(frozen=True)
class Processes:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def train(
    config: TrainingConfig,
    *,
    output_dir: str | Path,
    data_path: str | Path | None = None,
    examples: Sequence[Comparison] | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop: StopCallback | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Train a reward model and write it to output_dir; see the module docstring."""
    if (data_path is None) == (examples is None):
        raise ValueError("pass exactly one of data_path and examples")
    processes = _start_processes(config.device)
    # The batch the run trains at, once chosen (min_steps may lower batch_size): the out-of-memory line
    # names it, since lowering batch_size from what was given may not change it.
    chosen: dict[str, int] = {}
    try:
        return _train(
            config,
            processes,
            Path(output_dir),
            data_path,
            examples,
            on_progress,
            should_stop,
            overwrite,
            chosen,
        )
    except torch.OutOfMemoryError:
        raise OutOfMemory(_out_of_memory_line(config, processes.device, chosen.get("batch_size"))) from None
    finally:
        if processes.distributed:
            dist.destroy_process_group()


def _start_processes(device_name: str) -> Processes:
    """One process, or one of WORLD_SIZE processes started by torchrun."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Processes(rank=0, world_size=1, device=resolve_device(device_name))
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Processes(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device)


def _train(
    config: TrainingConfig,
    processes: Processes,
    output_dir: Path,
    data_path: str | Path | None,
    examples: Sequence[Comparison] | None,
    on_progress: ProgressCallback | None,
    should_stop: StopCallback | None,
    overwrite: bool,
    chosen: dict[str, int],
) -> dict[str, Any]:
    started = time.perf_counter()
    device = processes.device
    # Same seed in every process: the same head init, split and batch order everywhere.
    random.seed(config.seed)
    torch.manual_seed(config.seed)

    # --- settings against what they drive, before any data is read or weights loaded ---
    base = resolve_base_model(config.base_model)
    check_output_dir(output_dir, overwrite=overwrite, reads=[p for p in (data_path, base) if p is not None])
    tokenizer = load_tokenizer(base)
    check_max_length(config.max_length, position_limit(load_model_config(base), tokenizer), config.base_model)
    encoder = PairEncoder(tokenizer, config.max_length)

    # --- data ---
    data = _read(config, data_path, examples)
    comparisons = data.usable(data_path)
    train_comparisons, eval_comparisons = split_by_prompt(
        comparisons, eval_fraction=config.eval_fraction, seed=config.seed
    )
    if config.ipw:  # training weights only: the held-out figures weigh propensities their own way
        train_comparisons = ipw_weighted(train_comparisons)
        if processes.is_main:
            _report_ipw(train_comparisons)
    encoded_train = encoder.encode_pairs(train_comparisons)
    train_pairs = [p for p in encoded_train if not p.identical]
    eval_pairs = encoder.encode_pairs(eval_comparisons)
    same_tokens = SameTokens(len(encoded_train) - len(train_pairs), sum(p.identical for p in eval_pairs))
    if not train_pairs:
        raise DataError(
            f"no pairs to train on: both sides of each of the {len(encoded_train)} training pair(s) encode "
            f"to the same tokens (the tokenizer folds case, or max_length {config.max_length} cuts off "
            "the difference)",
            path=data_path,
        )
    if processes.is_main:
        _report_dropped(data, same_tokens, config.max_length)

    # --- model ---
    if _stop_requested(should_stop, processes):
        raise TrainingCancelled("stopped before the weights were loaded")
    model = load_reward_model(
        base,
        tokenizer,
        device,
        disable_dropout=config.disable_dropout,
        attn_implementation=packed_attention(device) if config.padding_free else None,
    )
    parameters = sum(p.numel() for p in model.parameters())
    if config.padding_free:
        check_padding_free(model)
    sharded = config.fsdp and processes.distributed
    if config.fsdp and not sharded:
        logger.info("fsdp: one process, nothing to shard over; start the run under torchrun to shard it")
    if config.gradient_checkpointing or sharded:
        # transformers 5 renamed it; the older name still works there, with a deprecation warning.
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # peft puts the adapters (and the head's trained copy) into the model in place: ``model`` computes
    # with them; ``saved`` is what knows how to save and merge them.
    saved: torch.nn.Module = add_lora(model, config) if config.lora_r else model
    if sharded:
        shard(model, bf16=config.bf16 and device.type == "cuda")
    trained: torch.nn.Module = (
        DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
        if processes.distributed and not sharded
        else model
    )

    lengths = [p.length for p in train_pairs]

    # --- schedule ---
    # Each process runs gradient_accumulation_steps micro-batches per step. A last global batch too
    # small to give every one of them a pair is skipped (a few pairs, different ones each epoch).
    micro_batches = processes.world_size * config.gradient_accumulation_steps
    steps_per_epoch = _steps_per_epoch(len(train_pairs), config.batch_size, micro_batches)
    if config.batch_size < micro_batches:
        raise InputError(
            f"batch_size {config.batch_size} is less than the {micro_batches} micro-batches of a step "
            f"({processes.world_size} process(es) x {config.gradient_accumulation_steps} "
            "gradient_accumulation_steps), each of which needs a pair: raise batch_size"
        )
    if steps_per_epoch == 0:
        raise InputError(
            f"{len(train_pairs)} training pair(s) are fewer than the {micro_batches} micro-batches of a "
            "step, each of which needs a pair: lower gradient_accumulation_steps or eval_fraction"
        )
    batch_size = _batch_size(config, len(train_pairs), micro_batches)
    chosen["batch_size"] = batch_size
    if batch_size != config.batch_size and processes.is_main:
        logger.info(
            "batch_size %d would make fewer than min_steps %d optimizer steps on %d pairs: using %d",
            config.batch_size,
            config.min_steps,
            len(train_pairs),
            batch_size,
        )
    total_steps = _steps_per_epoch(len(train_pairs), batch_size, micro_batches) * config.epochs
    optimizer = torch.optim.AdamW(
        _parameter_groups(model, config.weight_decay),
        lr=config.learning_rate,
        # One kernel over all parameters instead of a Python loop (not over FSDP's sharded DTensors).
        fused=device.type in ("cuda", "cpu") and not sharded,
    )
    scheduler = get_cosine_with_min_lr_schedule_with_warmup(
        optimizer,
        num_warmup_steps=math.ceil(config.warmup_ratio * total_steps),
        num_training_steps=total_steps,
        min_lr_rate=config.min_lr_ratio,
    )

    # --- loop ---
    progress = tqdm(
        total=total_steps,
        desc="training",
        unit="step",
        file=sys.stderr,
        disable=not (config.progress_bar and processes.is_main),
    )
    step = 0
    history: list[EpochSummary] = []
    log: list[LogEntry] = []
    eval_metrics: dict[str, Any] = {}
    train_seconds = 0.0
    pairs_seen = 0
    tokens_seen = 0
    model.train()
    for epoch in range(1, config.epochs + 1):
        epoch_started = time.perf_counter()
        epoch_losses = []
        batches = length_grouped_batches(lengths, batch_size=batch_size, seed=config.seed, epoch=epoch)
        for global_batch in batches:
            if len(global_batch) < micro_batches:
                continue
            if _stop_requested(should_stop, processes):
                progress.close()
                raise TrainingCancelled(f"stopped at step {step} of {total_steps}")
            loss_value = _train_step(
                trained,
                [train_pairs[i] for i in global_batch],
                encoder=encoder,
                optimizer=optimizer,
                scheduler=scheduler,
                config=config,
                processes=processes,
            )
            if not math.isfinite(loss_value):
                # Every process sees the same all-reduced loss, so all stop here together; nothing is saved.
                progress.close()
                raise InputError(
                    f"training diverged at step {step + 1} (loss {loss_value}): nothing was saved; "
                    f"lower learning_rate (it is {config.learning_rate:g})"
                )
            step += 1
            pairs_seen += len(global_batch)
            tokens_seen += sum(_tokens(train_pairs[i]) for i in global_batch)
            epoch_losses.append(loss_value)
            learning_rate = scheduler.get_last_lr()[0]
            if step % config.logging_steps == 0 or step == total_steps:
                log.append({"step": step, "epoch": epoch, "loss": loss_value, "learning_rate": learning_rate})
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.4f}", lr=f"{learning_rate:.2e}", refresh=False)
            if on_progress is not None and processes.is_main:
                on_progress(
                    step / total_steps,
                    {
                        "step": step,
                        "total_steps": total_steps,
                        "epoch": epoch,
                        "loss": loss_value,
                        "learning_rate": learning_rate,
                    },
                )
        train_seconds += time.perf_counter() - epoch_started

        # --- eval (rank 0; the others wait) ---
        held_out: dict[str, Any] = {}
        # A sharded model's forward takes every process; the others' figures are dropped.
        if (processes.is_main or sharded) and eval_pairs:
            eval_metrics = evaluate_pairs(
                model, encoder, eval_pairs, batch_size=config.eval_batch_size, device=device
            )
            held_out = {"eval_loss": eval_metrics["loss"], "eval_accuracy": eval_metrics["accuracy"]}
        if processes.distributed:
            dist.barrier()
        summary = cast(
            EpochSummary,
            {
                "epoch": epoch,
                "train_loss": sum(epoch_losses) / len(epoch_losses),
                **held_out,
                "pairs_per_second": pairs_seen / train_seconds,
                **_speed(tokens_seen / train_seconds, parameters, processes),
            },
        )
        history.append(summary)
        if processes.is_main:
            logger.info(_epoch_line(summary, config.epochs))
            if on_progress is not None:
                on_progress(epoch / config.epochs, {**summary, "epoch_end": True})
    progress.close()
    if _stop_requested(should_stop, processes):  # asked during the last step or the last evaluation
        raise TrainingCancelled(f"stopped after the last step ({step} of {total_steps}), before saving")

    # --- save (rank 0; the others wait for its last stop check) ---
    metrics = _final_metrics(
        history=history,
        log=log,
        eval_metrics=eval_metrics,
        data=data,
        train_comparisons=train_comparisons,
        train_pairs=train_pairs,
        eval_pairs=eval_pairs,
        same_tokens=same_tokens,
        steps=step,
        batch_size=batch_size,
        train_seconds=train_seconds,
        pairs_seen=pairs_seen,
        speed=history[-1],
        runtime_seconds=time.perf_counter() - started,
        processes=processes,
        bf16=config.bf16 and bf16_supported(device),
        parameters=parameters,
        trainable_parameters=sum(p.numel() for p in saved.parameters() if p.requires_grad),
    )
    # The score check's rewards come from the model as it is in memory, before the save merges LoRA's
    # adapters; a sharded model's take every process, and then its weights are gathered to rank 0.
    check_pairs = [*eval_pairs, *train_pairs]
    checked = (
        score_check_items(model, encoder, check_pairs, device=device) if processes.is_main or sharded else []
    )
    state_dict = full_state_dict(model) if sharded else None
    if processes.is_main:
        with written_whole(output_dir, overwrite=overwrite) as staging:
            save_model(saved, staging, state_dict)
            tokenizer.save_pretrained(staging)
            config.save(staging)
            metrics.save(staging)
            write_score_check(staging, checked)
            write_model_card(staging, config=config, metrics=metrics)
            # Raised inside the block, so that the staged model is removed and output_dir left as it was.
            if _stop_requested(should_stop, processes):
                raise TrainingCancelled("stopped while saving, before the model took the output's place")
        if on_progress is not None:
            on_progress(1.0, metrics.to_dict())
    elif _stop_requested(should_stop, processes):  # rank 0's check above, broadcast
        raise TrainingCancelled("stopped while saving, before the model took the output's place")
    if processes.distributed:
        dist.barrier()  # nobody returns (and maybe reads output_dir) before rank 0 has written it
    return metrics.to_dict()


def _read(
    config: TrainingConfig, data_path: str | Path | None, examples: Sequence[Comparison] | None
) -> ComparisonData:
    """The run's comparisons, from the file or as given, without the pairs whose sides are the same text."""
    if examples is None:
        return read_data(str(data_path), use_votes=config.use_votes, ties=config.ties)
    kept, identical = drop_identical(examples)
    return ComparisonData(kept, rows=len(examples), identical=identical)


def ipw_weighted(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons with each weight multiplied by its inverse-propensity factor
    (rm_training.votes.ipw_factor: the mean of 1/propensity over the pair's judgments, 1 for those without).

    Nothing else changes: the loss of a step is already sum(w x loss) / sum(w) over its global batch
    (bradley_terry_loss with the batch's weight as normaliser), which is the mean of the per-example losses
    with the weights rescaled to mean 1 in that batch. So the step size does not grow with the weights'
    scale (a propensity of 0.01 does not make a step a hundred times larger), while within the batch each
    pair counts in proportion to its weight. A ratio per batch rather than a fixed normaliser over the
    data: slightly biased for small batches, the usual price of self-normalised weights, and far steadier.
    """
    return [replace(c, weight=c.weight * ipw_factor(c.propensities)) for c in comparisons]


def _report_ipw(comparisons: Sequence[Comparison]) -> None:
    """How unequal the weights are, as Kish's effective number of pairs: a few pairs with huge weights
    leave the run as noisy as training on a few pairs."""
    weights = [c.weight for c in comparisons]
    weighted = sum(bool(c.propensities) for c in comparisons)
    effective = effective_count(weights)
    logger.info(
        "ipw: %d of %d training pair(s) have propensities; weights from %.3g to %.3g, worth %.1f equally "
        "weighted pair(s)",
        weighted,
        len(comparisons),
        min(weights, default=0.0),
        max(weights, default=0.0),
        effective,
    )


def _report_dropped(data: ComparisonData, same_tokens: SameTokens, max_length: int) -> None:
    """Say what became of every pair that is not trained on as it came, so that nothing is lost unseen."""
    if data.left_out:
        logger.info("%d pair(s) left out by the votes rule (no side with a strict majority)", data.left_out)
    if data.left_out_by_review:
        logger.info("%d pair(s) left out of training by a reviewer", data.left_out_by_review)
    if data.identical:
        logger.warning(
            "%d pair(s) with the same text on both sides dropped: nothing to prefer", data.identical
        )
    if same_tokens.train or same_tokens.eval:
        logger.warning(
            "%d pair(s) encode to the same tokens on both sides (the tokenizer folds case, or max_length %d "
            "cuts off the difference): %d left out of training, %d held out and scored as ties",
            same_tokens.train + same_tokens.eval,
            max_length,
            same_tokens.train,
            same_tokens.eval,
        )


def _train_step(
    trained: torch.nn.Module,
    pairs: Sequence[EncodedPair],
    *,
    encoder: PairEncoder,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainingConfig,
    processes: Processes,
) -> float:
    """One optimizer step on a global batch, this process's share of it; returns the step's loss.

    ``trained`` is the model, or its DDP wrapper when there are several processes. The step's loss is
    the weighted mean over the whole global batch: each micro-batch's loss is its share of it (the global
    weight as normaliser), and every process computes the same global weight from the same batch.
    """
    global_weight = sum(p.comparison.weight for p in pairs)
    parts = _split(pairs, processes.world_size * config.gradient_accumulation_steps)
    mine = parts[processes.rank * config.gradient_accumulation_steps :][: config.gradient_accumulation_steps]
    step_loss = torch.zeros((), device=processes.device)
    for index, part in enumerate(mine):
        last = index == len(mine) - 1
        # Synchronise gradients over processes once per step, on the last micro-batch.
        sync: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
        if isinstance(trained, DistributedDataParallel) and not last:
            sync = trained.no_sync()
        elif isinstance(trained, FSDPModule):
            trained.set_requires_gradient_sync(last)
        with sync:
            loss = _micro_batch_loss(trained, encoder, part, config, processes.device, global_weight)
            # DDP averages gradients over processes; the shares are to be summed, hence x world_size.
            (loss * processes.world_size).backward()
        step_loss += loss.detach()
    if config.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(trained.parameters(), config.max_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if processes.distributed:
        dist.all_reduce(step_loss)
    return float(step_loss)


def _micro_batch_loss(
    model: torch.nn.Module,
    encoder: PairEncoder,
    pairs: Sequence[EncodedPair],
    config: TrainingConfig,
    device: torch.device,
    normalizer: float,
) -> torch.Tensor:
    """The Bradley-Terry loss of the pairs over ``normalizer``, chosen and rejected in one forward pass."""
    if config.padding_free:  # the same targets; the sequences end to end in one row instead of padded
        batch = Batch(
            packed_inputs([p.chosen.input_ids for p in pairs] + [p.rejected.input_ids for p in pairs]),
            pair_targets(pairs),
        )
    else:
        batch = encoder.collate(pairs)
    batch = batch.to(device)
    with autocast(device, config.bf16):
        rewards = rewards_from(model, batch.inputs)
    r_chosen, r_rejected = rewards[: len(pairs)], rewards[len(pairs) :]
    targets = batch.targets
    return bradley_terry_loss(
        r_chosen,
        r_rejected,
        margin=targets.margin * config.margin_scale if config.margin_scale else None,
        tie=targets.tie,
        target=targets.target,
        weight=targets.weight,
        centering=config.center_rewards_coefficient,
        normalizer=normalizer,
    ).loss


def _stop_requested(should_stop: StopCallback | None, processes: Processes) -> bool:
    """Rank 0 decides, so that all processes stop at the same step (DDP would hang otherwise)."""
    stop = bool(should_stop()) if should_stop is not None and processes.is_main else False
    if processes.distributed:
        flag = torch.tensor([1.0 if stop else 0.0], device=processes.device)
        dist.broadcast(flag, src=0)
        stop = bool(flag.item())
    return stop


def _tokens(pair: EncodedPair) -> int:
    """The tokens a pair trains on: both sides, padding not counted."""
    return len(pair.chosen.input_ids) + len(pair.rejected.input_ids)


def _steps_per_epoch(pairs: int, batch_size: int, micro_batches: int) -> int:
    """Optimizer steps per epoch: a last batch too small to give every micro-batch a pair is skipped."""
    full, rest = divmod(pairs, batch_size)
    return full + (1 if rest >= micro_batches else 0)


def _batch_size(config: TrainingConfig, pairs: int, micro_batches: int) -> int:
    """batch_size, halved while the run would make fewer than min_steps optimizer steps, down to
    MIN_AUTO_BATCH (and never below the micro-batches of a step). With the defaults (32, 200 steps), one
    epoch over 1,600 pairs trains at batch 8 (200 steps) instead of 32 (50 steps), where held-out accuracy
    was a point lower (issue 18); from 6,400 pairs on, batch 32 stays."""
    batch_size = config.batch_size
    while _steps_per_epoch(
        pairs, batch_size, micro_batches
    ) * config.epochs < config.min_steps and batch_size // 2 >= max(MIN_AUTO_BATCH, micro_batches):
        batch_size //= 2
    return batch_size


def _speed(tokens_per_second: float, parameters: int, processes: Processes) -> dict[str, Any]:
    """The speed figures of an epoch (see rm_training.throughput): tokens/s, MFU and peak memory."""
    return {
        "tokens_per_second": tokens_per_second,
        "mfu": model_flops_utilisation(
            parameters, tokens_per_second, device=processes.device, processes=processes.world_size
        ),
        "peak_memory_bytes": peak_memory_bytes(processes.device),
    }


def _out_of_memory_line(config: TrainingConfig, device: torch.device, batch_size: int | None = None) -> str:
    """The one line of an out-of-memory failure: the settings that set the memory, and what to change."""
    batch = str(config.batch_size)
    if batch_size is not None and batch_size != config.batch_size:
        batch = f"{batch_size} (min_steps' choice; {config.batch_size} given)"
    remedies = ["lower batch_size or max_length"]
    if config.gradient_accumulation_steps == 1:
        remedies.append("raise gradient_accumulation_steps")
    remedies += [
        f"turn on {name}"
        for name, on in (
            ("gradient_checkpointing", config.gradient_checkpointing or config.fsdp),
            ("LoRA (lora_r)", config.lora_r > 0),
            ("fsdp (over several GPUs)", config.fsdp),
        )
        if not on
    ]
    return (
        f"out of {device.type} memory with batch_size {batch}, max_length {config.max_length}, "
        f"gradient_accumulation_steps {config.gradient_accumulation_steps}: {', '.join(remedies)}"
    )


def _split(items: Sequence[T], parts: int) -> list[Sequence[T]]:
    """Contiguous parts whose sizes differ by at most one."""
    size, extra = divmod(len(items), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [items[bounds[i] : bounds[i + 1]] for i in range(parts)]


def _parameter_groups(model: PreTrainedModel, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and normalisation weights (1-d tensors), as is usual for transformers."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _epoch_line(summary: EpochSummary, epochs: int) -> str:
    parts = [f"epoch {summary['epoch']}/{epochs}", f"train_loss {summary['train_loss']:.4f}"]
    if "eval_loss" in summary:
        parts.append(f"eval_loss {summary['eval_loss']:.4f}")
    if summary.get("eval_accuracy") is not None:
        parts.append(f"eval_accuracy {summary['eval_accuracy']:.4f}")
    parts.append(f"{summary['pairs_per_second']:.1f} pairs/s")
    return "  ".join(parts)


def _final_metrics(
    *,
    history: list[EpochSummary],
    log: list[LogEntry],
    eval_metrics: dict[str, Any],
    data: ComparisonData,
    train_comparisons: Sequence[Comparison],
    train_pairs: Sequence[EncodedPair],
    eval_pairs: Sequence[EncodedPair],
    same_tokens: SameTokens,
    steps: int,
    batch_size: int,
    train_seconds: float,
    pairs_seen: int,
    speed: EpochSummary,
    runtime_seconds: float,
    processes: Processes,
    bf16: bool,
    parameters: int,
    trainable_parameters: int,
) -> TrainingMetrics:
    all_pairs = [*train_pairs, *eval_pairs]
    return TrainingMetrics(
        eval_accuracy=eval_metrics.get("accuracy"),
        eval_loss=eval_metrics.get("loss"),
        train_loss=history[-1]["train_loss"],
        accuracy_unanimous=eval_metrics.get("accuracy_unanimous"),
        accuracy_split=eval_metrics.get("accuracy_split"),
        judgment_accuracy=eval_metrics.get("judgment_accuracy"),
        rater_agreement=eval_metrics.get("rater_agreement"),
        ece=eval_metrics.get("ece"),
        length_baseline_accuracy=eval_metrics.get("length_baseline_accuracy"),
        calibration=eval_metrics.get("calibration", []),
        bf16=bf16,
        reward_mean=eval_metrics.get("reward_mean"),
        reward_std=eval_metrics.get("reward_std"),
        counts=Counts(
            train_pairs=len(train_pairs),
            train_tokens=sum(_tokens(p) for p in train_pairs),
            eval_pairs=len(eval_pairs),
            pairs_truncated=sum(p.truncated for p in all_pairs),
            responses_truncated=sum(p.response_truncated for p in all_pairs),
            eval_pairs_unanimous=eval_metrics.get("pairs_unanimous", 0),
            eval_pairs_split=eval_metrics.get("pairs_split", 0),
            eval_judgments=eval_metrics.get("judgments", 0),
            pairs_left_out_by_votes=data.left_out,
            pairs_identical_text=data.identical,
            pairs_left_out_by_review=data.left_out_by_review,
            train_pairs_identical_tokens=same_tokens.train,
            eval_pairs_identical_tokens=same_tokens.eval,
            pairs_with_messages_dropped=sum(p.messages_dropped > 0 for p in all_pairs),
            messages_dropped=sum(p.messages_dropped for p in all_pairs),
        ),
        dataset=DatasetSummary(
            pairs=len(data.comparisons),
            train=len(train_comparisons),
            eval=len(eval_pairs),
            sha256=dataset_digest(data.comparisons),
        ),
        steps=steps,
        train_pairs_per_second=pairs_seen / train_seconds if train_seconds else None,
        train_tokens_per_second=speed.get("tokens_per_second"),
        mfu=speed.get("mfu"),
        peak_memory_bytes=speed.get("peak_memory_bytes"),
        batch_size=batch_size,
        parameters=parameters,
        trainable_parameters=trainable_parameters,
        eval_by_arm=eval_metrics.get("by_arm"),
        eval_accuracy_ipw=eval_metrics.get("accuracy_ipw"),
        train_seconds=train_seconds,
        runtime_seconds=runtime_seconds,
        processes=processes.world_size,
        device=processes.device.type,
        history=history,
        log=log,
    )
