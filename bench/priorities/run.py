"""Priority writes: annotation.services.pair_priorities_set (one UPDATE ... FROM unnest per 5,000 pairs)
against Django's bulk_update (a CASE per batch of 5,000, the ORM's own way), side by side in one run, on a
project of --pairs pairs of which --write get a priority (a round of new pairs, and a model change that
writes every open pair). Also pair_priorities_clear of the whole project.

    .venv/bin/python bench/priorities/run.py [--pairs 200000] [--write 5000 50000] [--repeat 3]
        [--results bench/priorities/RESULTS.md]
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import add_database_options, bench_env, database_url, psql, recreate_database, setup_django


def fill(args: argparse.Namespace, pairs: int) -> int:
    """A project with `pairs` pairs (short texts), in bulk SQL; its id."""
    from annotation.models import Project

    project = Project.objects.create(slug="priorities-bench", name="Priorities bench")
    psql(args, f"""
    INSERT INTO annotation_pair (project_id, external_id, prompt, response_a, response_b, model_a, model_b,
        metadata, content_sha256, judgment_count, extra_judgments, left_out, created_at)
      SELECT {project.pk}, 'ext-' || g, 'Prompt ' || g, 'Answer A ' || md5(g::text),
             'Answer B ' || md5((g * 7)::text),
             '', '', '{{}}', md5(g::text) || md5(g::text), 0, 0, false, now()
      FROM generate_series(0, {pairs} - 1) g;
    ANALYZE annotation_pair;
    """)  # fmt: skip
    return project.pk


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=200_000)
    parser.add_argument("--write", type=int, nargs="+", default=[5_000, 50_000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--results", type=Path)
    add_database_options(parser, "pairwise_bench_priorities")
    args = parser.parse_args()

    recreate_database(args)
    bench_env(database_url(args))
    setup_django()

    from django.db import transaction
    from django.utils import timezone

    from annotation import services
    from annotation.models import Pair, Project

    project = Project.objects.get(pk=fill(args, args.pairs))
    ids = list(Pair.objects.filter(project=project).order_by("id").values_list("id", flat=True))
    rng = random.Random(0)
    rows = []
    for n in args.write:
        ours, orm = [], []
        for _ in range(args.repeat):
            chosen = rng.sample(ids, n)
            values = {pk: rng.random() for pk in chosen}
            started = time.perf_counter()
            services.pair_priorities_set(project=project, priorities=values, now=timezone.now())
            ours.append(time.perf_counter() - started)
            objects = [Pair(pk=pk, priority=1 - value) for pk, value in values.items()]
            started = time.perf_counter()
            with transaction.atomic():
                Pair.objects.bulk_update(objects, ["priority"], batch_size=5000)
            orm.append(time.perf_counter() - started)
        rows.append((n, statistics.median(ours), statistics.median(orm)))
    started = time.perf_counter()
    cleared = services.pair_priorities_clear(project=project)
    clear_seconds = time.perf_counter() - started

    lines = [
        f"### {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.node()}, {args.pairs:,} pairs, "
        f"median of {args.repeat}",
        "",
        "| pairs written | pair_priorities_set | bulk_update | set ÷ bulk_update (time) |",
        "| ---: | ---: | ---: | ---: |",
        *(f"| {n:,} | {a * 1000:.0f} ms | {b * 1000:.0f} ms | **{a / b:.2f}** |" for n, a, b in rows),
        "",
        f"pair_priorities_clear of {cleared:,} pairs carrying a priority: {clear_seconds * 1000:.0f} ms.",
        "",
    ]
    print("\n".join(lines))
    if args.results:
        with args.results.open("a") as out:
            out.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
