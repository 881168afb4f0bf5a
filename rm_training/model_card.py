"""The model card (README.md) of a trained reward model: what it was trained on, how, and how well it did."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import TrainingConfig
from .metrics import TrainingMetrics


def _format(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_model_card(directory: Path, *, config: TrainingConfig, metrics: TrainingMetrics) -> Path:
    counts, dataset = metrics.counts, metrics.dataset
    results = [
        ("held-out accuracy (equal scores count half)", metrics.eval_accuracy),
        ("held-out loss", metrics.eval_loss),
        ("final training loss (last epoch)", metrics.train_loss),
        ("accuracy on unanimous pairs", metrics.accuracy_unanimous),
        ("accuracy on split pairs", metrics.accuracy_split),
        ("accuracy against individual judgments", metrics.judgment_accuracy),
        ("agreement between raters (same pairs)", metrics.rater_agreement),
        ("expected calibration error", metrics.ece),
        ("reward mean", metrics.reward_mean),
        ("reward standard deviation", metrics.reward_std),
        # Active selection, where measured: per arm, and corrected by inverse propensity.
        *[
            (f"accuracy on {arm} pairs ({figures['pairs']})", figures["accuracy"])
            for arm, figures in (metrics.eval_by_arm or {}).items()
        ],
    ]
    if metrics.eval_accuracy_ipw is not None:
        ipw = metrics.eval_accuracy_ipw
        results.append(
            (
                f"accuracy on actively chosen pairs, inverse-propensity corrected ({ipw['pairs']} pairs, "
                f"worth {ipw['effective_pairs']:.1f} at equal weights; standard error "
                f"{_format(ipw['standard_error'])})",
                ipw["accuracy"],
            )
        )
    lines = [
        "---",
        "library_name: transformers",
        "pipeline_tag: text-classification",
        "tags: [reward-model, bradley-terry, pairwise]",
        "---",
        "",
        "# Reward model",
        "",
        "A Bradley-Terry reward model trained by Pairwise's `rm_training` on human A-vs-B comparisons.",
        "It outputs one raw logit per (prompt, response), the reward: higher is better, and",
        "sigmoid(r_a - r_b) is the modelled probability that response a is preferred to response b.",
        "",
        "```python",
        "from rm_training.scoring import RewardScorer",
        "scores = RewardScorer('path/to/this/directory').score(prompt, [response_1, response_2])",
        "```",
        "",
        "It also loads with `AutoModelForSequenceClassification.from_pretrained` (num_labels = 1) and",
        "`AutoTokenizer.from_pretrained`; encode (prompt, response) as",
        "`rm_training.tokenization.PairEncoder` does to get the same scores.",
        "",
        "## Data",
        "",
        f"- pairs: {dataset.pairs} (train {dataset.train}, held out {dataset.eval}, split by prompt)",
        f"- left out when read: {counts.pairs_left_out_by_votes} by the votes rule (no side with a strict "
        f"majority), {counts.pairs_identical_text} with the same text on both sides, "
        f"{counts.pairs_left_out_by_review} by a reviewer",
        f"- pairs whose two sides encode to the same tokens (case folded by the tokenizer, or the "
        f"difference cut off at {config.max_length} tokens): {counts.train_pairs_identical_tokens} left out "
        f"of training, {counts.eval_pairs_identical_tokens} held out and scored as ties",
        f"- pairs truncated to {config.max_length} tokens: {counts.pairs_truncated} "
        f"(of which with a response cut: {counts.responses_truncated}; conversations that lost whole turns: "
        f"{counts.pairs_with_messages_dropped}, {counts.messages_dropped} messages in all)",
        f"- data sha256: `{dataset.sha256}`",
        "",
        "## Results (held-out pairs)",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {name} | {_format(value)} |" for name, value in results],
        "",
        "| epoch | train loss | eval loss | eval accuracy |",
        "| --- | --- | --- | --- |",
        *[
            f"| {h['epoch']} | {_format(h['train_loss'])} | {_format(h.get('eval_loss'))} | "
            f"{_format(h.get('eval_accuracy'))} |"
            for h in metrics.history
        ],
        "",
        "## Training config",
        "",
        "| field | value |",
        "| --- | --- |",
        *[f"| {name} | `{value}` |" for name, value in config.to_dict().items()],
        "",
        f"{metrics.steps} optimizer steps"
        + (f" of {metrics.batch_size} pairs each" if metrics.batch_size is not None else "")
        + f" in {metrics.train_seconds:.1f} s on {metrics.processes} {metrics.device} process(es)"
        + (
            f", {metrics.train_tokens_per_second:,.0f} tokens/s"
            if metrics.train_tokens_per_second is not None
            else ""
        )
        + (f", model FLOPs utilisation {100 * metrics.mfu:.1f}%" if metrics.mfu is not None else "")
        + (
            f", peak GPU memory {metrics.peak_memory_bytes / 2**30:.1f} GiB"
            if metrics.peak_memory_bytes is not None
            else ""
        )
        + ".",
        *(
            [
                "",
                f"Trained with LoRA (rank {config.lora_r}): {metrics.trainable_parameters} of "
                f"{metrics.parameters} parameters; the adapters are merged into the weights here, and "
                "the adapter alone (peft) is in `adapter/`.",
            ]
            if config.lora_r
            else []
        ),
        "",
    ]
    path = directory / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
