"""Agreement benchmark: reading the rows the figures need from PostgreSQL, against computing every figure
from them, in the same run; and the reference packages' time on the same arrays.

One run: recreate a PostgreSQL database, migrate, fill one project with bulk SQL (by default 1,000,000
judgments on 300,000 pairs by 200 raters, with ties, strength, sides, times and 1% gold pairs; each pair's
raters agree with a per-pair truth about 72% of the time), then in this process, after one warm-up read:

- read: annotation.selectors.agreement.read_rows (three statements: the judgments and the gold pairs as
  binary COPY into numpy, the raters' names);
- compute: report_from_rows (every figure of the report, the 2000-replicate bootstrap and the per-rater
  table included);
- reference: the krippendorff package (nominal and ordinal alpha), statsmodels' fleiss_kappa (on the
  pairs with exactly three judgments, which it requires), scikit-learn's cohen_kappa_score for every rater
  pair sharing 10 or more pairs, and a bootstrap that resamples pairs and calls the krippendorff package
  (timed on a few replicates, scaled to 2000). Our figures are checked equal to theirs (1e-9).

    .venv/bin/python bench/agreement/run.py [--judgments 1000000] [--pairs 300000] [--raters 200]
        [--repeats 3] [--results bench/agreement/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (
    add_database_options,
    bench_env,
    database_url,
    first_ids,
    psql,
    recreate_database,
    setup_django,
    timed,
)


def fill(args: argparse.Namespace) -> None:
    """The project, its raters, pairs and judgments, in bulk SQL. Each pair p has a truth (a or b); its
    judgments come from raters (37 p + k s_p) mod R for k = 0, 1, ..., with a step s_p small enough that
    they are distinct on a pair."""
    pairs, judgments, raters = args.pairs, args.judgments, args.raters
    per_pair = -(-judgments // pairs)
    if per_pair > raters:
        raise SystemExit("too many judgments for the pairs and raters (each rater judges a pair once)")
    # k * step stays below R for every k < per_pair, so a pair's raters are distinct.
    steps = (raters - 1) // (per_pair - 1) if per_pair > 1 else 1
    project = int(
        psql(
            args,
            "INSERT INTO annotation_project (slug, name, instructions, judgments_per_pair, allow_tie, "
            "strength_levels, rationale, lease_seconds, gold_fraction, very_fast_ms, correction_seconds, "
            "selection, selection_epsilon, created_at) VALUES "
            "('bench', 'Bench', '', 3, true, 3, 'optional', 900, 0.01, 3000, 120, 'random', 0.2, now()) "
            "RETURNING id",
        ).split()[0]
    )
    psql(args, f"""
    INSERT INTO annotation_rater (pseudonym, imported_into_id, source_id, created_at)
      SELECT 'r-bench-' || g, {project}, 'source-' || g, now() FROM generate_series(0, {raters} - 1) g;
    INSERT INTO annotation_pair (project_id, external_id, prompt, response_a, response_b, model_a, model_b,
        metadata, content_sha256, judgment_count, extra_judgments, left_out, gold, created_at)
      SELECT {project}, 'ext-' || g, 'Prompt ' || g || ': ' || repeat(md5(g::text), 4),
             'Answer A ' || repeat(md5((g * 7)::text), 4 + g % 20),
             'Answer B ' || repeat(md5((g * 13)::text), 4 + (g / 7) % 20),
             'model-a', 'model-b', '{{}}', md5(g::text) || md5(g::text), 0, 0, false,
             CASE WHEN g % 100 = 0 THEN (ARRAY['a', 'b'])[1 + (g::bigint * 40503) % 2] END, now()
      FROM generate_series(0, {pairs} - 1) g;
    """)  # fmt: skip
    first_pair, first_rater = first_ids(args, project)
    psql(args, f"""
    INSERT INTO annotation_judgment (project_id, pair_id, rater_id, choice, strength, rationale, shown_left,
        time_on_task_ms, client_time_ms, created_at, pair_longer)
      SELECT {project}, {first_pair} + p, {first_rater} + (p * 37 + k * (1 + p % {steps})) % {raters}, choice,
             CASE WHEN choice = 'tie' THEN NULL ELSE 1 + u % 3 END, '',
             (ARRAY['a', 'b'])[1 + (g * 7 / 3) % 2],
             400 + (u * 7919) % 60000, NULL, now() - ((g * 5) % 5184000 || ' seconds')::interval,
             (SELECT longer FROM annotation_pair WHERE id = {first_pair} + p)
      FROM (
        SELECT g, p, k, u,
               CASE WHEN u < 720 THEN (ARRAY['a', 'b'])[1 + truth]
                    WHEN u < 800 THEN 'tie'
                    WHEN u < 900 THEN (ARRAY['a', 'b'])[2 - truth]
                    ELSE (ARRAY['a', 'b'])[1 + u % 2] END AS choice
        FROM (
          SELECT g, g % {pairs} AS p, g / {pairs} AS k, (g::bigint * 2654435761 % 1000003) % 1000 AS u,
                 ((g % {pairs})::bigint * 40503) % 2 AS truth
          FROM generate_series(0, {judgments} - 1) g
        ) s
      ) t;
    UPDATE annotation_pair p SET judgment_count = c.n
      FROM (SELECT pair_id, count(*) n FROM annotation_judgment WHERE project_id = {project}
            GROUP BY pair_id) c
      WHERE p.id = c.pair_id;
    """)  # fmt: skip
    psql(args, "VACUUM ANALYZE")  # not in the transaction of a multi-statement -c


def references(rows, project, figures) -> dict[str, float]:
    """The reference packages' time on the same arrays; asserts their figures equal ours."""
    import krippendorff
    import numpy as np
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import fleiss_kappa

    from annotation.agreement import statistics as ag

    # The inter-rater figures are over regular pairs: gold pairs count for gold accuracy only.
    judgments = rows.judgments[~np.isin(rows.judgments[:, 0], rows.gold[:, 0])]
    pair_ids, item = np.unique(judgments[:, 0], return_inverse=True)
    _, rater = np.unique(judgments[:, 1], return_inverse=True)
    choice, strength = judgments[:, 2], judgments[:, 3]
    counts = ag.count_table(item, choice, len(pair_ids), 3)
    rated = counts[counts.sum(axis=1) >= 2]
    levels = project.strength_levels
    signed = np.where(choice == 0, strength, np.where(choice == 1, -strength, 0))
    ordinal = ag.count_table(item, signed + levels, len(pair_ids), 2 * levels + 1)
    ordinal = ordinal[ordinal.sum(axis=1) >= 2]
    seconds: dict[str, float] = {}

    alpha, seconds["krippendorff nominal"] = timed(
        krippendorff.alpha, value_counts=rated, level_of_measurement="nominal"
    )
    assert abs(alpha - figures.krippendorff_alpha) < 1e-9, (alpha, figures.krippendorff_alpha)
    alpha_ordinal, seconds["krippendorff ordinal"] = timed(
        krippendorff.alpha,
        value_counts=ordinal,
        value_domain=list(range(-levels, levels + 1)),
        level_of_measurement="ordinal",
    )
    assert abs(alpha_ordinal - figures.krippendorff_alpha_ordinal) < 1e-9
    three = rated[rated.sum(axis=1) == 3]
    kappa, seconds["statsmodels fleiss_kappa"] = timed(fleiss_kappa, three)
    assert abs(kappa - ag.fleiss_kappa(three)) < 1e-9

    # Cohen's kappa of each rater pair: the label lists are built first (not timed), then scored.
    first, second = ag.judgment_pairs(item)
    low = np.minimum(rater[first], rater[second])
    high = np.maximum(rater[first], rater[second])
    swap = rater[first] > rater[second]
    y_low = np.where(swap, choice[second], choice[first])
    y_high = np.where(swap, choice[first], choice[second])
    key = low * (rater.max() + 1) + high
    order = np.argsort(key, kind="stable")
    _, starts, sizes = np.unique(key[order], return_index=True, return_counts=True)
    lists = [
        (y_low[order[s : s + n]], y_high[order[s : s + n]])
        for s, n in zip(starts, sizes, strict=True)
        if n >= 10
    ]
    started = time.perf_counter()
    kappas = [cohen_kappa_score(a, b, labels=[0, 1, 2]) for a, b in lists]
    seconds["scikit-learn cohen_kappa_score, every rater pair"] = time.perf_counter() - started
    finite = [k for k in kappas if np.isfinite(k)]
    mean = float(np.mean(finite)) if finite else float("nan")  # none: a small run shares < 10 pairs
    assert np.isclose(mean, figures.cohen_kappa, rtol=0, atol=1e-9, equal_nan=True), (
        mean,
        figures.cohen_kappa,
    )

    rng = np.random.default_rng(0)
    replicates = 5
    started = time.perf_counter()
    for _ in range(replicates):
        sample = rated[rng.integers(len(rated), size=len(rated))]
        krippendorff.alpha(value_counts=sample, level_of_measurement="nominal")
    seconds["bootstrap of alpha with krippendorff, 2000 replicates (scaled from 5)"] = (
        (time.perf_counter() - started) / replicates * 2000
    )
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=300_000)
    parser.add_argument("--raters", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    add_database_options(parser, "pairwise_bench_agreement")
    parser.add_argument("--skip-fill", action="store_true", help="Reuse the database of an earlier run.")
    parser.add_argument("--results", type=Path, help="Write the Markdown report here too.")
    args = parser.parse_args()

    bench_env(database_url(args), LOG_LEVEL="ERROR")
    if not args.skip_fill:
        recreate_database(args)
    setup_django()  # migrates: nothing to do on the database of an earlier run
    if not args.skip_fill:
        _, fill_seconds = timed(fill, args)
        print(f"filled in {fill_seconds:.0f} s", file=sys.stderr)
    import numpy as np

    from annotation.models import Project
    from annotation.selectors import ExportFilter
    from annotation.selectors.agreement import read_rows, report_from_rows

    project = Project.objects.get(slug="bench")
    filters = ExportFilter()
    read_rows(project, filters)  # warm-up: the database's cache, numpy's and scipy's imports
    reads, computes = [], []
    for _ in range(args.repeats):
        rows, read_seconds = timed(read_rows, project, filters)
        report, compute_seconds = timed(report_from_rows, project, filters=filters, rows=rows)
        reads.append(read_seconds)
        computes.append(compute_seconds)
        print(f"read {read_seconds:.2f} s, compute {compute_seconds:.2f} s", file=sys.stderr)
    figures = report.figures
    reference = references(rows, project, figures)
    read, compute = statistics.median(reads), statistics.median(computes)

    lines = [
        "# Agreement benchmark",
        "",
        f"Machine: {os.cpu_count()} CPUs (shared with PostgreSQL and whatever else ran), Python "
        f"{platform.python_version()}. One project of {len(rows.judgments):,} judgments on "
        f"{len(np.unique(rows.judgments[:, 0])):,} pairs by {args.raters} raters "
        "(ties, strength 1-3, 1% gold pairs). "
        f"Median of {args.repeats} runs after one warm-up read.",
        "",
        "```sh",
        ".venv/bin/python bench/agreement/run.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        "| step | seconds |",
        "| --- | ---: |",
        "| read the rows (3 statements: the judgments and the gold pairs by binary COPY, rater names) "
        f"| {read:.2f} |",
        f"| compute every figure (bootstrap of 2000 replicates, {len(figures.per_rater)} raters' rows) "
        f"| {compute:.2f} |",
        f"| **compute ÷ read** | **{compute / read:.2f}** |",
        "",
        "The reference packages on the same arrays (their figures equal ours to 1e-9):",
        "",
        "| reference | seconds |",
        "| --- | ---: |",
        *(f"| {name} | {value:.2f} |" for name, value in reference.items()),
        f"| all of them | {sum(reference.values()):.1f} |",
        "",
        f"Figures: percent agreement {figures.percent_agreement:.4f} "
        f"({figures.percent_agreement_interval[0]:.4f} to {figures.percent_agreement_interval[1]:.4f}), "
        f"alpha {figures.krippendorff_alpha:.4f}, Fleiss {figures.fleiss_kappa:.4f}, mean Cohen "
        f"{figures.cohen_kappa:.4f} over {figures.cohen_kappa_rater_pairs} rater pairs, ceiling "
        f"{figures.ceiling_accuracy:.4f}.",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        args.results.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
