"""Leaderboard benchmark: reading the battle rows from PostgreSQL, against fitting the Bradley-Terry ratings
with 1,000 bootstrap rounds on them, in the same run; the style-controlled fit beside it; and scikit-learn's
logistic regression (Chatbot Arena's method) on the same battles.

One run: recreate a PostgreSQL database, migrate, fill one project with bulk SQL (by default 1,000,000
judgments on 333,334 pairs between 50 models by 200 raters; each model has a planted strength, 10% ties;
responses of 100 to 1,100 characters, a third with markdown), then in this process, after one warm-up read:

- read: annotation.selectors.leaderboard.read_battles (three statements: the judgments as a binary COPY
  into numpy, the model names, the pairs' model numbers as a binary COPY); with style, a fourth: the
  pairs' texts from a server-side cursor and their style figures (response_style on every response);
- compute: annotation.leaderboard.leaderboard, the fit and 1,000 bootstrap rounds (plain), and the same
  with the style-controlled fit and its intervals;
- reference: scikit-learn's LogisticRegression (fit_intercept=False, C = 1 / RIDGE, ties as two
  half-weight rows) on the distinct battle categories with their counts as weights (the same likelihood
  as one row per battle); our ratings are checked equal to its (1e-6 on the log-strength scale), and its
  time for one fit is scaled to 1,001 fits.

    .venv/bin/python bench/leaderboard/run.py [--judgments 1000000] [--pairs 333334] [--models 50]
        [--raters 200] [--repeats 3] [--results bench/leaderboard/RESULTS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
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
    """The project, its raters, pairs and judgments, in bulk SQL. Pair g is model (g·7919 mod M) against
    model (that + 1 + g·104729 mod (M - 1)) mod M; model i's strength is 2i / M, and each judgment is a
    tie with probability 0.1, else a win of a with probability sigmoid(strength a - strength b)."""
    pairs, judgments, raters, models = args.pairs, args.judgments, args.raters, args.models
    per_pair = -(-judgments // pairs)
    if per_pair > raters:
        raise SystemExit("too many judgments for the pairs and raters (each rater judges a pair once)")
    steps = (raters - 1) // (per_pair - 1) if per_pair > 1 else 1
    project = int(
        psql(
            args,
            "INSERT INTO annotation_project (slug, name, instructions, judgments_per_pair, allow_tie, "
            "strength_levels, rationale, lease_seconds, gold_fraction, very_fast_ms, correction_seconds, "
            "selection, selection_epsilon, created_at) VALUES "
            f"('bench', 'Bench', '', {per_pair}, true, 0, 'optional', 900, 0, 3000, 120, 'random', 0.2, "
            "now()) RETURNING id",
        ).split()[0]
    )
    model_a = f"(g::bigint * 7919 % {models})"
    model_b = f"(({model_a}) + 1 + g::bigint * 104729 % ({models} - 1)) % {models}"
    markdown = (
        "CASE WHEN g % 3 = {0} THEN E'# Heading\\n\\n- a point\\n- another\\n\\n**Bold** words\\n' "
        "ELSE '' END"
    )
    psql(args, f"""
    INSERT INTO annotation_rater (pseudonym, imported_into_id, source_id, created_at)
      SELECT 'r-bench-' || g, {project}, 'source-' || g, now() FROM generate_series(0, {raters} - 1) g;
    INSERT INTO annotation_pair (project_id, external_id, prompt, response_a, response_b, model_a, model_b,
        metadata, content_sha256, judgment_count, extra_judgments, left_out, gold, created_at)
      SELECT {project}, 'ext-' || g, 'Prompt ' || g,
             {markdown.format(0)} || repeat('word ', 20 + (g * 31) % 200),
             {markdown.format(1)} || repeat('term ', 20 + (g * 17) % 200),
             'model-' || lpad(({model_a})::text, 2, '0'), 'model-' || lpad(({model_b})::text, 2, '0'),
             '{{}}', md5(g::text) || md5(g::text), 0, 0, false, NULL, now()
      FROM generate_series(0, {pairs} - 1) g;
    """)  # fmt: skip
    first_pair, first_rater = first_ids(args, project)
    psql(args, f"""
    INSERT INTO annotation_judgment (project_id, pair_id, rater_id, choice, strength, rationale, shown_left,
        time_on_task_ms, client_time_ms, created_at, pair_longer)
      SELECT {project}, {first_pair} + p, {first_rater} + (p * 37 + k * (1 + p % {steps})) % {raters},
             CASE WHEN u < 100 THEN 'tie'
                  WHEN u < 100 + 900 / (1 + exp(2.0 * (b - a) / {models})) THEN 'a' ELSE 'b' END,
             NULL, '', (ARRAY['a', 'b'])[1 + (g * 7 / 3) % 2], 400 + (u * 7919) % 60000, NULL,
             now() - ((g * 5) % 5184000 || ' seconds')::interval,
             (SELECT longer FROM annotation_pair WHERE id = {first_pair} + p)
      FROM (
        SELECT g, p, k, (g::bigint * 2654435761 % 1000003) % 1000 AS u,
               (p::bigint * 7919 % {models}) AS a,
               ((p::bigint * 7919 % {models}) + 1 + p::bigint * 104729 % ({models} - 1)) % {models} AS b
        FROM (SELECT g, g % {pairs} AS p, g / {pairs} AS k FROM generate_series(0, {judgments} - 1) g) s
      ) t;
    UPDATE annotation_pair p SET judgment_count = c.n
      FROM (SELECT pair_id, count(*) n FROM annotation_judgment WHERE project_id = {project}
            GROUP BY pair_id) c
      WHERE p.id = c.pair_id;
    """)  # fmt: skip
    psql(args, "VACUUM ANALYZE")


def reference_fit(battles, board, rounds: int) -> float:
    """scikit-learn on the distinct battle categories, weighted by their counts; asserts our plain ratings
    equal its, and returns its time scaled to 1 + rounds fits."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from annotation import leaderboard as lb

    lo, hi, score, counts = lb._categories(battles)
    n_models = len(battles.models)
    x = np.zeros((len(lo), n_models))
    x[np.arange(len(lo)), lo] = 1
    x[np.arange(len(lo)), hi] = -1
    rows = np.vstack([x, x])  # each category as a win of lo and a loss, weighted by its score
    y = np.r_[np.ones(len(lo)), np.zeros(len(lo))]
    weight = np.r_[counts * score, counts * (1 - score)]
    model = LogisticRegression(
        fit_intercept=False, C=1 / lb.RIDGE, solver="newton-cholesky", tol=1e-10, max_iter=100
    )
    _, seconds = timed(model.fit, rows[weight > 0], y[weight > 0], sample_weight=weight[weight > 0])
    theta = model.coef_[0]
    ours = (board.ratings.rating - lb.INITIAL_RATING) / lb.SCALE
    difference = np.abs(ours - (theta - theta.mean())).max()
    assert difference < 1e-6, difference
    return seconds * (1 + rounds)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--judgments", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=333_334)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--raters", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    add_database_options(parser, "pairwise_bench_leaderboard")
    parser.add_argument("--skip-fill", action="store_true", help="Reuse the database of an earlier run.")
    parser.add_argument("--results", type=Path, help="Write the Markdown report here too.")
    args = parser.parse_args()

    bench_env(database_url(args), LOG_LEVEL="ERROR")
    if not args.skip_fill:
        recreate_database(args)
    setup_django()
    if not args.skip_fill:
        _, fill_seconds = timed(fill, args)
        print(f"filled in {fill_seconds:.0f} s", file=sys.stderr)
    from annotation.leaderboard import leaderboard
    from annotation.models import Project
    from annotation.selectors import ExportFilter
    from annotation.selectors.leaderboard import read_battles

    project = Project.objects.get(slug="bench")
    filters = ExportFilter()
    read_battles(project, filters, style=False)  # warm-up: the database's cache, numpy's imports
    times: dict[str, list[float]] = {"read": [], "read_style": [], "plain": [], "style": []}
    for _ in range(args.repeats):
        (rows, _), read = timed(read_battles, project, filters, style=False)
        board, plain = timed(leaderboard, rows.battles, rounds=args.rounds, seed=0, style=False)
        (styled_rows, _), read_style = timed(read_battles, project, filters, style=True)
        _, style = timed(leaderboard, styled_rows.battles, rounds=args.rounds, seed=0, style=True)
        for name, value in (("read", read), ("plain", plain), ("read_style", read_style), ("style", style)):
            times[name].append(value)
        print(
            f"read {read:.2f} s, fit + {args.rounds} rounds {plain:.2f} s; "
            f"with style: read {read_style:.2f} s, both fits {style:.2f} s",
            file=sys.stderr,
        )
    sklearn_seconds = reference_fit(rows.battles, board, args.rounds)
    read, plain, read_style, style = (
        statistics.median(times[k]) for k in ("read", "plain", "read_style", "style")
    )
    n = board.n_battles
    best = board.models[int(board.ratings.rating.argmax())]
    worst = board.models[int(board.ratings.rating.argmin())]
    width = float((board.ratings.upper - board.ratings.lower).mean())
    lines = [
        "# Leaderboard benchmark",
        "",
        f"Machine: {os.cpu_count()} CPUs (shared with PostgreSQL and whatever else ran), Python "
        f"{platform.python_version()}. One project of {n:,} battles (judgments) on "
        f"{len(rows.battles.pair_model_a):,} pairs between {len(board.models)} models by "
        f"{args.raters} raters (10% ties). Median of {args.repeats} runs after one warm-up read.",
        "",
        "```sh",
        ".venv/bin/python bench/leaderboard/run.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        "| step | seconds |",
        "| --- | ---: |",
        f"| read the rows (3 statements: judgments and the pairs' models by binary COPY) | {read:.2f} |",
        f"| fit + {args.rounds} bootstrap rounds (multinomial counts, batched Newton) | {plain:.2f} |",
        f"| **fit and bootstrap ÷ read** | **{plain / read:.2f}** |",
        f"| read with the responses' style figures (texts and regular expressions) | {read_style:.2f} |",
        f"| both fits: plain with its rounds, style-controlled with its normal intervals | {style:.2f} |",
        f"| both fits ÷ read with style | {style / read_style:.2f} |",
        f"| scikit-learn LogisticRegression on the categories, one fit, times {1 + args.rounds} "
        f"| {sklearn_seconds:.2f} |",
        "",
        f"Figures: best {best} {board.ratings.rating.max():.0f}, worst {worst} "
        f"{board.ratings.rating.min():.0f}, mean interval width {width:.1f} points; equal to "
        "scikit-learn's fit within 1e-6 (log-strength).",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.results:
        args.results.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
