"""GPU check: the trainer at a real model's shape on one GPU, in under 8 minutes, with nothing downloaded.

1. The tests marked ``cuda`` (bf16 runs, padding-free batches on the GPU's kernels, LoRA, a real out of
   memory).
2. A Qwen2-0.5B-shaped reward model (random weights from the config; a byte-level BPE tokenizer trained here
   on the generated text) trained in bf16 for a few hundred steps three ways: padded batches, padding-free
   batches, LoRA; and TRL's RewardTrainer on the same model, data and settings when ``trl`` is importable.
   For each: tokens/s (real tokens, padding not counted), model FLOPs utilisation (rm_training.throughput:
   6 x parameters x tokens/s over the GPU's peak dense bf16 FLOP/s) and peak GPU memory, and the ratio of
   tokens/s to TRL's.
3. A Qwen2-7B-shaped model with LoRA and gradient checkpointing: a few optimizer steps at 8 pairs x 1,024
   tokens, and its peak memory against an 80 GB GPU.

Goals (issue 18): MFU >= 40% with padding-free batches at 0.5B; >= 1.5x TRL's tokens/s; the 7B check fits.

    python bench/gpu/run.py [--steps 300] [--results FILE]     # on the GPU machine
    python bench/gpu/run.py --cpu-smoke                         # the same code paths, tiny, on a CPU
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from tokenizers import Tokenizer, models, pre_tokenizers, trainers  # noqa: E402
from transformers import Qwen2Config, Qwen2ForSequenceClassification, Qwen2Tokenizer  # noqa: E402
from transformers.utils import logging as transformers_logging  # noqa: E402

from rm_training.config import TrainingConfig  # noqa: E402
from rm_training.data import Comparison  # noqa: E402
from rm_training.model import packed_attention  # noqa: E402
from rm_training.throughput import model_flops_utilisation  # noqa: E402

MARKER = "excellent"
# Qwen2-0.5B and Qwen2-7B as their config.json files give them (the shapes only; the weights are random).
QWEN2_05B = {
    "hidden_size": 896,
    "intermediate_size": 4864,
    "num_hidden_layers": 24,
    "num_attention_heads": 14,
    "num_key_value_heads": 2,
    "vocab_size": 151936,
    "max_position_embeddings": 32768,
}
QWEN2_7B = {
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "vocab_size": 152064,
    "max_position_embeddings": 32768,
}
TINY = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 1024,
    "max_position_embeddings": 2048,
}
GPU_MEMORY_BYTES = 80 * 10**9  # an 80 GB H100


def words(rng: random.Random, count: int) -> list[str]:
    return [rng.choice(VOCABULARY) for _ in range(count)]


SYLLABLES = ["ka", "lo", "mi", "ten", "ru", "sa", "ve", "dor", "pin", "qua", "zel", "mo", "tri", "nu", "bel"]
VOCABULARY = sorted({a + b + c for a in SYLLABLES for b in SYLLABLES for c in ("", "s", "n", "ra")})


def make_pairs(
    n: int, *, seed: int, prompt_words: tuple[int, int], response_words: tuple[int, int]
) -> list[Comparison]:
    """Synthetic pairs: the chosen response holds the marker word, the rejected one another word there."""
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        prompt = " ".join(words(rng, rng.randint(*prompt_words)))
        body = words(rng, rng.randint(*response_words))
        at = rng.randrange(len(body) + 1)
        chosen = " ".join([*body[:at], MARKER, *body[at:]])
        rejected = " ".join([*body[:at], rng.choice(VOCABULARY), *body[at:]])
        pairs.append(Comparison(prompt=prompt, chosen=chosen, rejected=rejected, pair_id=str(i)))
    return pairs


def make_tokenizer(vocab_size: int, texts: list[str]) -> Qwen2Tokenizer:
    """A byte-level BPE as Qwen2's, trained on the generated text (transformers 5 loads a qwen2 directory's
    tokenizer as Qwen2Tokenizer whatever its files say)."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=["<|endoftext|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    model = json.loads(backend.to_str())["model"]
    return Qwen2Tokenizer(vocab=model["vocab"], merges=[tuple(merge) for merge in model["merges"]])


def save_base_model(
    directory: Path, shape: dict[str, int], tokenizer: Qwen2Tokenizer, device: torch.device
) -> int:
    """A random Qwen2 of ``shape`` saved as a base model (initialised on the GPU: seconds, not minutes)."""
    config = Qwen2Config(**shape, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    with device:
        model = Qwen2ForSequenceClassification(config)
    model.model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    parameters = sum(p.numel() for p in model.parameters())
    del model
    return parameters


def run_cuda_tests() -> str:
    """The suite's tests marked cuda (they skip without a GPU): their summary line."""
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "tests/rm_training", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings"},
    )
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    if result.returncode not in (0, 5):
        print(result.stdout[-4000:], result.stderr[-2000:], sep="\n")
    return lines[-1] if lines else f"pytest exited {result.returncode}"


def run_pairwise(
    name: str, base: Path, pairs: list[Comparison], settings: dict[str, Any], out: Path, **changes: Any
) -> dict[str, Any]:
    from rm_training.train import train

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    config = TrainingConfig.from_dict(
        {
            "base_model": str(base),
            "max_length": settings["max_length"],
            "epochs": 1,
            "batch_size": settings["batch_size"],
            "min_steps": 0,
            "learning_rate": settings["learning_rate"],
            "eval_fraction": settings["eval_fraction"],
            "device": settings["device"],
            "bf16": True,
            "logging_steps": 50,
        }
        | changes
    )
    started = time.perf_counter()
    metrics = train(config, examples=pairs, output_dir=out / name)
    return {
        "run": name,
        "steps": metrics["steps"],
        "tokens_per_second": metrics["train_tokens_per_second"],
        "mfu": metrics["mfu"],
        "peak_memory_gib": None
        if metrics["peak_memory_bytes"] is None
        else metrics["peak_memory_bytes"] / 2**30,
        "eval_accuracy": metrics["eval_accuracy"],
        "train_seconds": metrics["train_seconds"],
        "wall_seconds": time.perf_counter() - started,
    }


def run_trl(
    base: Path, pairs: list[Comparison], settings: dict[str, Any], out: Path, parameters: int
) -> dict[str, Any] | str:
    """TRL's RewardTrainer on the same model, training pairs and settings; a line saying why not when TRL
    is absent."""
    try:
        from datasets import Dataset
        from trl import RewardConfig, RewardTrainer
    except ImportError as missing:
        return f"TRL skipped: {missing} (install the trl wheel to compare)"
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from rm_training.data import split_by_prompt

    device = torch.device(settings["device"])
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    train_set, _ = split_by_prompt(pairs, eval_fraction=settings["eval_fraction"], seed=42)
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    torch.manual_seed(42)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, local_files_only=True)
    model.config.pad_token_id = tokenizer.pad_token_id
    args = RewardConfig(
        output_dir=str(out / "trl"),
        max_length=settings["max_length"],
        per_device_train_batch_size=settings["batch_size"],
        learning_rate=settings["learning_rate"],
        num_train_epochs=1,
        lr_scheduler_type="cosine",
        warmup_steps=0.1,
        weight_decay=0.01,
        max_grad_norm=1.0,
        seed=42,
        gradient_checkpointing=False,
        bf16=True,
        use_cpu=device.type == "cpu",
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
    rows = trainer.train_dataset
    tokens = sum(len(row["chosen_ids"]) + len(row["rejected_ids"]) for row in rows)  # type: ignore[union-attr]
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    tokens_per_second = tokens / seconds
    return {
        "run": "trl",
        "steps": trainer.state.global_step,
        "tokens_per_second": tokens_per_second,
        "mfu": model_flops_utilisation(parameters, tokens_per_second, device=device, processes=1),
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None,
        "eval_accuracy": None,
        "train_seconds": seconds,
        "wall_seconds": seconds,
    }


def memory_check(
    shape: dict[str, int], tokenizer: Qwen2Tokenizer, device: torch.device, *, pairs: int, tokens: int
) -> dict[str, Any]:
    """A few LoRA optimizer steps with gradient checkpointing on a model of ``shape`` at ``pairs`` pairs of
    ``tokens`` tokens a side, through the trainer's own LoRA wrapping and loss: the peak memory."""
    from rm_training.model import add_lora
    from rm_training.tokenization import EncodedPair, EncodedSequence, PairEncoder
    from rm_training.train import _micro_batch_loss

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    config = Qwen2Config(**shape, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with device:
        model = Qwen2ForSequenceClassification(config)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    settings = TrainingConfig(
        lora_r=16, lora_alpha=32, bf16=True, gradient_checkpointing=True, device=device.type
    )
    add_lora(model, settings)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    encoder = PairEncoder(tokenizer, tokens)
    rng = random.Random(0)

    def side() -> EncodedSequence:
        ids = [rng.randrange(2, len(tokenizer)) for _ in range(tokens)]
        return EncodedSequence(
            input_ids=ids, token_type_ids=[0] * tokens, prompt_truncated=False, response_truncated=False
        )

    batch = [
        EncodedPair(Comparison(prompt="p", chosen="a", rejected="b"), side(), side()) for _ in range(pairs)
    ]
    started = time.perf_counter()
    for _ in range(3):
        loss = _micro_batch_loss(model, encoder, batch, settings, device, float(pairs))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    seconds = (time.perf_counter() - started) / 3
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "pairs": pairs,
        "tokens_a_side": tokens,
        "seconds_per_step": seconds,
        "peak_memory_gib": None if peak is None else peak / 2**30,
        "fits_80gb": None if peak is None else peak < GPU_MEMORY_BYTES,
    }


def render(
    results: list[dict[str, Any]], trl: dict[str, Any] | str, memory: dict[str, Any], tests: str, header: str
) -> str:
    def fmt(value: Any, spec: str, unit: str = "") -> str:
        return "n/a" if value is None else format(value, spec) + unit

    lines = [
        header,
        "",
        f"cuda tests: {tests}",
        "",
        "| run | steps | tokens/s | MFU | peak GPU memory GiB | tokens/s / TRL's | held-out accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    trl_speed = trl["tokens_per_second"] if isinstance(trl, dict) else None
    for r in [*results, *([trl] if isinstance(trl, dict) else [])]:
        ratio = None if trl_speed is None else r["tokens_per_second"] / trl_speed
        lines.append(
            f"| {r['run']} | {r['steps']} | {r['tokens_per_second']:,.0f} | "
            f"{fmt(r['mfu'] and 100 * r['mfu'], '.1f', '%')} | "
            f"{fmt(r['peak_memory_gib'], '.1f')} | {fmt(ratio, '.2f', 'x')} | "
            f"{fmt(r['eval_accuracy'], '.3f')} |"
        )
    if isinstance(trl, str):
        lines += ["", trl]
    lines += [
        "",
        f"7B-shaped LoRA + gradient checkpointing, {memory['pairs']} pairs x {memory['tokens_a_side']} "
        f"tokens: {memory['parameters'] / 1e9:.2f}B parameters, "
        f"peak {fmt(memory['peak_memory_gib'], '.1f')} GiB, "
        f"fits an 80 GB GPU: {memory['fits_80gb']}, {memory['seconds_per_step']:.2f} s/step",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny shapes and a few steps, on the CPU")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps of each 0.5B run")
    parser.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--skip-tests", action="store_true")
    parser.add_argument("--results", type=Path, help="write the Markdown table here too")
    args = parser.parse_args()
    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()
    started = time.perf_counter()

    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        sys.exit("no CUDA device here: run with --cpu-smoke to try the script on a CPU")
    device = torch.device("cpu" if smoke else "cuda")
    steps = 4 if smoke else args.steps
    eval_fraction = 0.05
    settings = {
        "max_length": 128 if smoke else args.max_length,
        "batch_size": args.batch_size,
        "learning_rate": 1e-5,
        "eval_fraction": eval_fraction,
        "device": device.type,
    }
    tests = "skipped (--skip-tests)" if args.skip_tests else run_cuda_tests()
    print(f"cuda tests: {tests}", flush=True)

    span = ((8, 20), (15, 40)) if smoke else ((60, 160), (100, 300))
    pairs = make_pairs(
        int(steps * args.batch_size / (1 - eval_fraction)) + args.batch_size,
        seed=0,
        prompt_words=span[0],
        response_words=span[1],
    )
    tokenizer = make_tokenizer(1000 if smoke else 8000, [c.prompt + " " + c.chosen for c in pairs[:2000]])
    with tempfile.TemporaryDirectory(prefix="pairwise-gpu-") as scratch:
        out = Path(scratch)
        base = out / "base"
        parameters = save_base_model(base, TINY if smoke else QWEN2_05B, tokenizer, device)
        print(
            f"base model: {parameters / 1e6:.1f}M parameters, {len(pairs)} pairs, {torch.__version__}",
            flush=True,
        )
        results = []
        for name, changes in (
            ("padded", {}),
            ("padding_free", {"padding_free": True}),
            ("lora", {"lora_r": 16, "lora_alpha": 32}),
        ):
            results.append(run_pairwise(name, base, pairs, settings, out, **changes))
            print(json.dumps(results[-1]), flush=True)
        trl = run_trl(base, pairs, settings, out, parameters)
        print(json.dumps(trl), flush=True)
    memory = memory_check(
        TINY if smoke else QWEN2_7B, tokenizer, device, pairs=8, tokens=64 if smoke else 1024
    )
    print(json.dumps(memory), flush=True)

    name = "CPU smoke (tiny shapes: no GPU figures)" if smoke else torch.cuda.get_device_name(device)
    header = (
        f"# GPU check: {name}\n\nQwen2-{'tiny' if smoke else '0.5B'}-shaped model, random weights, bf16, "
        f"{steps} steps of {args.batch_size} pairs, max_length {settings['max_length']}; "
        f"torch {torch.__version__}; "
        f"padding-free attention: {packed_attention(device) or 'sdpa (block mask)'}; "
        f"{time.perf_counter() - started:.0f} s in all."
    )
    table = render(results, trl, memory, tests, header)
    print(table)
    if args.results:
        args.results.write_text(table, encoding="utf-8")


if __name__ == "__main__":
    main()
