"""Export benchmark: judgments.jsonl streamed through the HTTP endpoint under gunicorn, against psql's
COPY of the same columns, in the same run, at two sizes.

One run: recreate a PostgreSQL database, migrate, and fill two projects with bulk SQL (pairs with texts of
realistic length, raters, judgments); then for each size, (1) stream the endpoint from a fresh gunicorn
(one sync worker, so its peak RSS is the export's) and count rows and bytes, (2) run
`psql -c "COPY (SELECT ...) TO STDOUT"` of the same columns into /dev/null. Reports rows/s of both, their
ratio, and the web worker's peak RSS (VmHWM) at each size. All traffic goes to 127.0.0.1.

    .venv/bin/python bench/export/run.py [--sizes 100000 1000000] [--results bench/export/RESULTS.md]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (
    add_database_options,
    bench_env,
    database_url,
    first_ids,
    gunicorn,
    psql,
    recreate_database,
    setup_django,
    staff_token,
)

PAIRS_PER_JUDGMENT = 0.3  # 1M judgments on 300k pairs, as the issue describes
RATERS = 200

COPY_SQL = """
COPY (
  SELECT j.id, j.pair_id, p.external_id, p.prompt, p.response_a, p.response_b, p.model_a, p.model_b,
         r.pseudonym, j.choice, j.strength, j.shown_left, j.rationale, j.time_on_task_ms, j.created_at
  FROM annotation_judgment j
  JOIN annotation_pair p ON p.id = j.pair_id
  JOIN annotation_rater r ON r.id = j.rater_id
  WHERE j.project_id = {project}
  ORDER BY j.id
) TO STDOUT
"""


def fill(args: argparse.Namespace, slug: str, judgments: int) -> int:
    """A project with judgments / 0.3 ... pairs, 200 imported raters and the judgments, in bulk SQL.

    Texts: a prompt of about 200 characters and responses of about 600 (md5 hex repeated), a rationale
    on one judgment in ten. Each (pair, rater) is distinct, as the database demands.
    """
    pairs = max(1, int(judgments * PAIRS_PER_JUDGMENT))
    sql = f"""
    INSERT INTO annotation_project (slug, name, instructions, judgments_per_pair, allow_tie, strength_levels,
        rationale, lease_seconds, gold_fraction, very_fast_ms, correction_seconds, selection,
        selection_epsilon, created_at)
      VALUES ('{slug}', '{slug}', '', 25, true, 3, 'optional', 900, 0, 3000, 120, 'random', 0.2, now())
      RETURNING id;
    """
    project = int(psql(args, sql).split()[0])
    psql(args, f"""
    INSERT INTO annotation_rater (pseudonym, imported_into_id, source_id, created_at)
      SELECT 'r-{slug}-' || g, {project}, 'source-' || g, now() FROM generate_series(1, {RATERS}) g;
    INSERT INTO annotation_pair (project_id, external_id, prompt, response_a, response_b, model_a, model_b,
        metadata, content_sha256, judgment_count, extra_judgments, left_out, created_at)
      SELECT {project}, 'ext-' || g,
             'Prompt ' || g || ': ' || repeat(md5(g::text), 6),
             'Answer A ' || g || E'\\n' || repeat(md5((g * 7)::text), 18),
             'Answer B ' || g || E'\\n' || repeat(md5((g * 13)::text), 18),
             'model-a', 'model-b', '{{}}', md5(g::text) || md5(g::text), 0, 0, false, now()
      FROM generate_series(1, {pairs}) g;
    """)  # fmt: skip
    first_pair, first_rater = first_ids(args, project)
    psql(args, f"""
    INSERT INTO annotation_judgment (project_id, pair_id, rater_id, choice, strength, rationale, shown_left,
        time_on_task_ms, client_time_ms, created_at, pair_longer)
      SELECT {project}, {first_pair} + g % {pairs}, {first_rater} + (g / {pairs}) % {RATERS},
             (ARRAY['a', 'b', 'tie'])[1 + (g % 3)],
             CASE WHEN g % 3 = 2 THEN NULL ELSE 1 + (g % 3) END,
             CASE WHEN g % 10 = 0 THEN 'Clearer, and "shorter".' ELSE '' END,
             (ARRAY['a', 'b'])[1 + (g % 2)], 1000 + (g % 50000), NULL,
             now() - (g || ' seconds')::interval,
             (SELECT longer FROM annotation_pair WHERE id = {first_pair} + g % {pairs})
      FROM generate_series(0, {judgments} - 1) g;
    UPDATE annotation_pair p SET judgment_count = c.n
      FROM (SELECT pair_id, count(*) n FROM annotation_judgment WHERE project_id = {project}
            GROUP BY pair_id) c
      WHERE p.id = c.pair_id;
    ANALYZE;
    """)  # fmt: skip
    return project


def worker_peak_rss_mib(master: int) -> float:
    """VmHWM of the gunicorn worker (the master's only child): the most memory it ever held."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    status = Path(f"/proc/{children[0]}/status").read_text()
    kib = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return kib / 1024


def stream_endpoint(port: int, token: str, slug: str) -> tuple[int, int, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request(
        "GET", f"/api/v1/projects/{slug}/export/judgments.jsonl", headers={"Authorization": f"Token {token}"}
    )
    response = conn.getresponse()
    if response.status != 200:
        raise SystemExit(f"export answered {response.status}: {response.read()[:300]!r}")
    rows = size = 0
    while block := response.read(1 << 20):
        rows += block.count(b"\n")
        size += len(block)
    seconds = time.perf_counter() - started
    conn.close()
    return rows, size, seconds


def copy_floor(args: argparse.Namespace, project: int) -> tuple[int, float]:
    started = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        psql(args, COPY_SQL.format(project=project), output=sink.fileno())
    seconds = time.perf_counter() - started
    rows = int(psql(args, f"SELECT count(*) FROM annotation_judgment WHERE project_id = {project}").strip())
    return rows, seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    add_database_options(parser, "pairwise_bench_export")
    parser.add_argument("--results", type=Path, help="Write the Markdown report here too.")
    args = parser.parse_args()

    recreate_database(args)
    env = bench_env(database_url(args), LOG_LEVEL="ERROR")
    setup_django()
    token = staff_token()
    measured = []
    for size in args.sizes:
        slug = f"export-{size}"
        started = time.perf_counter()
        project = fill(args, slug, size)
        print(f"filled {slug} in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        copy_floor(args, project)  # warm the cache for both readers alike
        with gunicorn(env, "--workers", "1", "--worker-class", "sync") as (port, server):
            rows, size_bytes, seconds = stream_endpoint(port, token, slug)
            rss = worker_peak_rss_mib(server.pid)
        copy_rows, copy_seconds = copy_floor(args, project)
        if rows != copy_rows:
            raise SystemExit(f"the endpoint gave {rows} rows, COPY {copy_rows}")
        measured.append(
            {
                "rows": rows,
                "bytes": size_bytes,
                "seconds": seconds,
                "copy_seconds": copy_seconds,
                "rss_mib": rss,
            }
        )
        print(json.dumps(measured[-1]), file=sys.stderr)

    lines = [
        "# Export benchmark",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; gunicorn (1 sync worker), "
        "PostgreSQL and the client share them. Each size is its own project; the endpoint streams "
        '`export/judgments.jsonl` over HTTP, the floor is `psql -c "COPY (SELECT same columns) TO STDOUT"` '
        "into /dev/null, both after one warm-up read.",
        "",
        "```sh",
        ".venv/bin/python bench/export/run.py " + " ".join(sys.argv[1:]),
        "```",
        "",
        "| judgments | endpoint rows/s | COPY rows/s | endpoint ÷ COPY | endpoint MB/s | worker peak RSS |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in measured:
        ours, floor = m["rows"] / m["seconds"], m["rows"] / m["copy_seconds"]
        lines.append(
            f"| {m['rows']:,} | {ours:,.0f} | {floor:,.0f} | **{ours / floor:.0%}** | "
            f"{m['bytes'] / m['seconds'] / 1e6:.1f} | {m['rss_mib']:.0f} MiB |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    if args.results:
        args.results.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
