"""Scale benchmark (issue 22): the rating path, the agreement report and the exports at 10k to 5M pairs.

One run: recreate a PostgreSQL database, migrate, make 200 rater accounts with tokens, and fill one project
per size with bulk SQL (generate_series): pairs with short texts, 20% of them judged once by the 200 raters
(assignments and judgments as the engine writes them), counters recounted, then VACUUM ANALYZE (as
autovacuum would leave a database in use). Then, per size, through gunicorn (4 gthread workers x 4
threads): one rater's round trip (judgment with "next": true), p50/p99 of --calls calls after --warmup
ones; 10 concurrent raters' judgments per second over --duration seconds; the JSON Lines export's time to
first byte; and in this process: the agreement report cold (cache emptied) and warm, beside the time to
read the judgments alone, and each hot-path statement's EXPLAIN (ANALYZE, BUFFERS) rows and buffers. Last,
unless --import-pairs 0: a project of that many pairs imported through the API (requests of 50,000), and
the round trips of the minute after it, in it and in the smallest project, without a VACUUM.

Times are ratios to the smallest project in the same run; the machine's other load moves absolute times.

    .venv/bin/python bench/scale/run.py [--sizes 10000,100000,1000000,5000000] [--import-pairs 1000000]
        [--db pairwise_bench_scale] [--keep]
"""

from __future__ import annotations

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_load.run import Client
from common import (
    add_database_options,
    bench_env,
    database_url,
    drop_database,
    gunicorn,
    psql,
    recreate_database,
    setup_django,
    staff_token,
)

RATERS = 200
QUOTA = 3
JUDGED_EVERY = 5  # one pair in five judged once
GUNICORN = ["--workers", "4", "--worker-class", "gthread", "--threads", "4", "--keep-alive", "5"]
IMPORT_REQUEST = 50_000


def slug_of(size: int) -> str:
    return f"scale-{size}"


# The fill


def make_raters() -> tuple[list[int], list[str]]:
    """RATERS accounts (one password hash for all), their raters and tokens: (rater ids, tokens)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from rest_framework.authtoken.models import Token

    from annotation.models import Rater

    password = make_password(None)
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"rater{i:03d}", password=password) for i in range(RATERS)
    )
    raters = Rater.objects.bulk_create(Rater(user=user) for user in users)
    tokens = Token.objects.bulk_create(Token(user=user, key=Token.generate_key()) for user in users)
    return [r.pk for r in raters], [t.key for t in tokens]


def fill(args: argparse.Namespace, size: int, rater_ids: list[int]) -> tuple[int, float]:
    """A project of `size` pairs, 20% judged once, by SQL: (project id, seconds)."""
    from django.contrib.auth import get_user_model

    from annotation import services
    from annotation.models import Membership

    started = time.perf_counter()
    project = services.project_create(slug=slug_of(size), name=f"Scale {size}", judgments_per_pair=QUOTA)
    Membership.objects.bulk_create(
        Membership(project=project, user=user)
        for user in get_user_model().objects.filter(rater__isnull=False)
    )
    p = project.pk
    psql(
        args,
        "INSERT INTO annotation_pair (project_id, external_id, prompt, messages, response_a, response_b,"
        " model_a, model_b, metadata, gold, content_sha256, judgment_count, extra_judgments, left_out,"
        " created_at)"
        f" SELECT {p}, 'p' || i, 'Question ' || i || ': ' || repeat('why is the sky blue? ', 4), NULL,"
        " 'Answer A to ' || i || ': ' || repeat('light scatters off the air ', 6 + i % 5),"
        " 'Answer B to ' || i || ': ' || repeat('short waves scatter more ', 5 + i % 7),"
        " 'model-a', 'model-b', '{}'::jsonb, NULL, md5(i::text) || md5('" + str(p) + "'),"
        f" CASE WHEN i % {JUDGED_EVERY} = 0 THEN 1 ELSE 0 END, 0, false, now()"
        f" FROM generate_series(1, {size}) i",
    )
    first_pair = int(psql(args, f"SELECT min(id) FROM annotation_pair WHERE project_id = {p}").strip())
    raters = "ARRAY[" + ",".join(map(str, rater_ids)) + "]::bigint[]"
    psql(
        args,
        "INSERT INTO annotation_assignment (project_id, pair_id, rater_id, shown_left, status, served_at,"
        " lease_expires_at, finished_at, skip_reason)"
        f" SELECT {p}, {first_pair} + i - 1, ({raters})[1 + (i / {JUDGED_EVERY}) % {RATERS}],"
        " CASE WHEN i % 2 = 0 THEN 'a' ELSE 'b' END, 'judged', now() - interval '1 day',"
        " now() - interval '1 day' + interval '900 seconds',"
        " now() - interval '1 day' + interval '30 seconds', ''"
        f" FROM generate_series({JUDGED_EVERY}, {size}, {JUDGED_EVERY}) i",
    )
    psql(
        args,
        "INSERT INTO annotation_judgment (project_id, pair_id, rater_id, assignment_id, choice, strength,"
        " rationale, shown_left, time_on_task_ms, client_time_ms, created_at, pair_longer)"
        " SELECT a.project_id, a.pair_id, a.rater_id, a.id, (ARRAY['a', 'b', 'tie'])[1 + a.id % 3], NULL, '',"
        f" a.shown_left, 5000 + a.id % 20000, NULL, a.finished_at, p.longer FROM annotation_assignment a"
        f" JOIN annotation_pair p ON p.id = a.pair_id WHERE a.project_id = {p} ORDER BY a.id",
    )
    services.counters_recount(project=project)
    return p, time.perf_counter() - started


# The measurements


def round_trips(port: int, token: str, slug: str, calls: int, warmup: int) -> list[float]:
    """One rater's judgment-with-next round trips, in seconds (after `warmup` unmeasured ones)."""
    client = Client(port, {"Authorization": f"Token {token}"})
    status, served = client.post(f"/api/v1/projects/{slug}/next/")
    assert status == 200, (status, served)
    seconds = []
    for n in range(warmup + calls):
        started = time.perf_counter()
        status, answer = client.post(
            f"/api/v1/assignments/{served['assignment']}/judgment/", {"choice": "left", "next": True}
        )
        elapsed = time.perf_counter() - started
        assert status == 201 and answer["next"] is not None, (status, answer)
        served = answer["next"]
        if n >= warmup:
            seconds.append(elapsed)
    return seconds


def throughput(port: int, tokens: list[str], slug: str, duration: float) -> float:
    """Judgments per second of len(tokens) raters rating at once (judgment with next), over `duration`."""
    counts = [0] * len(tokens)
    start = threading.Barrier(len(tokens) + 1)
    deadline = [0.0]

    def rate(index: int) -> None:
        client = Client(port, {"Authorization": f"Token {tokens[index]}"})
        status, served = client.post(f"/api/v1/projects/{slug}/next/")
        start.wait()
        while status in (200, 201) and served is not None and time.perf_counter() < deadline[0]:
            status, answer = client.post(
                f"/api/v1/assignments/{served['assignment']}/judgment/", {"choice": "right", "next": True}
            )
            if status == 201:
                counts[index] += 1
                served = answer["next"]

    threads = [threading.Thread(target=rate, args=(i,), daemon=True) for i in range(len(tokens))]
    for thread in threads:
        thread.start()
    deadline[0] = time.perf_counter() + duration + 60
    start.wait()
    begin = time.perf_counter()
    deadline[0] = begin + duration
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - begin)


def first_byte(port: int, token: str, slug: str) -> float:
    """Seconds from sending the judgments.jsonl export's request to its first byte of body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    started = time.perf_counter()
    conn.request(
        "GET", f"/api/v1/projects/{slug}/export/judgments.jsonl", headers={"Authorization": f"Token {token}"}
    )
    response = conn.getresponse()
    assert response.status == 200, response.status
    response.read(1)
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


def agreement(slug: str) -> dict[str, float]:
    """The report cold (cache emptied) and warm, and reading the judgments alone, in seconds."""
    from django.core.cache import cache

    from annotation.models import Project
    from annotation.selectors.agreement import (
        project_agreement,
        read_judgment_columns,
        read_rows,
        report_from_rows,
    )
    from annotation.selectors.exports import ExportFilter

    project = Project.objects.get(slug=slug)
    cache.clear()
    project_agreement(project)  # warm-up: numpy's and scipy's imports, the database's cache
    cache.clear()
    started = time.perf_counter()
    project_agreement(project)
    cold = time.perf_counter() - started
    warm = []
    for _ in range(5):
        started = time.perf_counter()
        project_agreement(project)
        warm.append(time.perf_counter() - started)
    started = time.perf_counter()
    read_judgment_columns(project, ExportFilter())
    read = time.perf_counter() - started
    started = time.perf_counter()
    rows = read_rows(project, ExportFilter())
    all_rows = time.perf_counter() - started
    started = time.perf_counter()
    report_from_rows(project, filters=ExportFilter(), rows=rows)
    figures = time.perf_counter() - started
    return {"cold": cold, "warm": statistics.median(warm), "read": read, "rows": all_rows, "figures": figures}


def explain_hot_path(slug: str, rater_index: int) -> list[tuple[str, int, int, float, str]]:
    """Each statement of one judgment with next, of `next` while holding, of the agreement's cache check
    and of the export's first chunk, run again under EXPLAIN (ANALYZE, BUFFERS) in a transaction rolled
    back: (statement, rows, shared buffers hit + read, ms, top plan node)."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from annotation import selectors, services
    from annotation.models import Project
    from annotation.selectors.agreement import fingerprint

    project = Project.objects.get(slug=slug)
    user = get_user_model().objects.get(username=f"rater{rater_index:03d}")
    served = services.assignment_next(project=project, user=user)
    assert served is not None
    with transaction.atomic():
        with CaptureQueriesContext(connection) as captured:
            services.assignment_next(project=project, user=user)
            services.judgment_record_and_next(assignment_id=served.assignment.pk, user=user, choice="left")
            fingerprint(project)
            rows = selectors.exports._export_rows(project=project, filters=selectors.ExportFilter())
            assert rows is not None
            list(rows[: selectors.exports.CHUNK_ROWS])
        statements = [
            q["sql"] for q in captured.captured_queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))
        ]
        transaction.set_rollback(True)
    plans = []
    with transaction.atomic(), connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {sql}")
            (plan,) = cursor.fetchone()
            top = (plan[0] if isinstance(plan, list) else json.loads(plan)[0])["Plan"]
            buffers = top.get("Shared Hit Blocks", 0) + top.get("Shared Read Blocks", 0)
            plans.append(
                (
                    " ".join(sql.split())[:110],
                    int(top.get("Actual Rows", 0)),
                    int(buffers),
                    float(top.get("Actual Total Time", 0.0)),
                    top["Node Type"] + (" (parallel)" if "Gather" in json.dumps(plan) else ""),
                )
            )
        transaction.set_rollback(True)
    return plans


def database_size(args: argparse.Namespace) -> int:
    return int(psql(args, f"SELECT pg_database_size('{args.db}')").strip())


def import_phase(args: argparse.Namespace, port: int, staff: str, tokens: list[str], small: str) -> str:
    """A project of args.import_pairs pairs through the API, then a minute of round trips in it and in
    the smallest project, without a VACUUM: what raters see right after a large import."""
    from annotation import services

    services.project_raters_add(
        project=services.project_create(slug="imported", name="Imported", judgments_per_pair=QUOTA),
        usernames=[f"rater{i:03d}" for i in range(12)],
    )
    client = Client(port, {"Authorization": f"Token {staff}"})
    seconds = []
    for start in range(0, args.import_pairs, IMPORT_REQUEST):
        items = [
            {
                "external_id": f"i{i}",
                "prompt": f"Question {i}: why is the sky blue?",
                "response_a": f"Answer A to {i}: light scatters off the air.",
                "response_b": f"Answer B to {i}: short waves scatter more.",
            }
            for i in range(start, min(start + IMPORT_REQUEST, args.import_pairs))
        ]
        started = time.perf_counter()
        status, answer = client.post("/api/v1/projects/imported/pairs/", items)
        seconds.append(time.perf_counter() - started)
        assert status in (200, 201), (status, answer)
    lines = [
        f"Imported {args.import_pairs:,} pairs in {len(seconds)} requests: {sum(seconds):.1f} s "
        f"(per request {min(seconds):.2f} to {max(seconds):.2f} s; each ANALYZEs what it wrote).",
        "",
        "| seconds after the import | imported project p50 / p99 | smallest project p50 / p99 |",
        "| --- | --- | --- |",
    ]
    began = time.perf_counter()
    window = 0
    while time.perf_counter() - began < 60:
        here = round_trips(port, tokens[window % 12], "imported", 20, 2)
        there = round_trips(port, tokens[12 + window % 12], small, 20, 2)
        lines.append(
            f"| {time.perf_counter() - began:.0f} | {ms(here, 50)} / {ms(here, 99)} ms"
            f" | {ms(there, 50)} / {ms(there, 99)} ms |"
        )
        window += 1
    return "\n".join(lines)


def ms(seconds: list[float], q: int) -> str:
    ordered = sorted(seconds)
    return f"{1000 * ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000,1000000,5000000")
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--duration", type=float, default=15.0, help="Seconds of the 10 raters' phase.")
    parser.add_argument("--import-pairs", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="Keep the database (dropped otherwise).")
    add_database_options(parser, "pairwise_bench_scale")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    recreate_database(args)
    env = bench_env(database_url(args), LOG_LEVEL="ERROR")
    setup_django()
    rater_ids, tokens = make_raters()
    staff = staff_token()
    fills, size_of = {}, {}
    for size in sizes:
        _, fills[size] = fill(args, size, rater_ids)
        size_of[size] = database_size(args)
        print(f"filled {size:,} pairs in {fills[size]:.0f} s", flush=True)
    psql(args, "VACUUM ANALYZE")

    rows, explains = [], {}
    with gunicorn(env, *GUNICORN) as (port, _):
        for size in sizes:
            slug = slug_of(size)
            trips = round_trips(port, tokens[0], slug, args.calls, args.warmup)
            rate = throughput(port, tokens[1:11], slug, args.duration)
            first = min(first_byte(port, staff, slug) for _ in range(3))
            figures = agreement(slug)
            explains[size] = explain_hot_path(slug, 11)
            rows.append((size, trips, rate, figures, first))
            print(f"measured {size:,}", flush=True)
        size_of_db = database_size(args)
        after_import = import_phase(args, port, staff, tokens, slug_of(sizes[0])) if args.import_pairs else ""

    base = rows[0]
    lines = [
        "| pairs | fill | round trip p50 / p99 | 10 raters, judgments/s | agreement cold / warm"
        " (reading the judgments) | export first byte | database after the fill |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for size, trips, rate, figures, first in rows:
        p50 = statistics.median(trips)
        lines.append(
            f"| {size:,} | {fills[size]:.0f} s | {ms(trips, 50)} / {ms(trips, 99)} ms"
            f" ({p50 / statistics.median(base[1]):.2f}x) | {rate:.0f} ({rate / base[2]:.0%})"
            f" | {figures['cold']:.2f} s / {1000 * figures['warm']:.1f} ms ({figures['read']:.2f} s;"
            f" cold {figures['cold'] / max(figures['read'], 1e-9):.1f}x; all rows {figures['rows']:.2f} s,"
            f" figures {figures['figures']:.2f} s) | {1000 * first:.1f} ms"
            f" | {size_of[size] / 2**30:.2f} GiB |"
        )
    lines += ["", f"Database size after the measurements: {size_of_db / 2**30:.2f} GiB.", ""]
    for size, plans in explains.items():
        lines += [f"EXPLAIN (ANALYZE, BUFFERS) at {size:,} pairs: rows, buffers, ms, top node, statement", ""]
        lines += [f"    {r:>7} {b:>7} {t:8.2f}  {node:<22} {sql}" for sql, r, b, t, node in plans]
        lines.append("")
    if after_import:
        lines += [after_import, ""]
    print("\n".join(lines))
    if not args.keep:
        from django.db import connections

        connections.close_all()
        drop_database(args)


if __name__ == "__main__":
    main()
