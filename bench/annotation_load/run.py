"""Load benchmark of the rating API against the stack's floors, on this machine.

One run: recreate a PostgreSQL database, migrate, seed two projects (judgments_per_pair=3) with the same
pairs and R raters with tokens; serve the product under gunicorn and let R simulated raters loop for a
fixed time, first next -> judgment (two requests per judgment, on one project), then judgment with
"next": true (one round trip per judgment, on the other); then serve the floors (floor_urls.py: a bare
one-INSERT Django view, and a DRF view with token authentication doing the same INSERT) under the same
gunicorn settings to the same number of clients; report each phase, the ratios, the database's own
counters per request (pg_stat_database), and the engine's invariants checked in the database.

All traffic goes to 127.0.0.1. The load generator runs on the same machine as gunicorn and PostgreSQL and
competes with them for the CPUs; RESULTS.md says how many there were.

    .venv/bin/python bench/annotation_load/run.py [--raters 50] [--duration 20] [--workers 4]
        [--worker-class gthread --threads 4] [--pairs 6000] [--db pairwise_bench]
        [--results bench/annotation_load/RESULTS.md] [--mode engine|selection]

--mode selection (active selection, issue 20) runs three phases instead: judgment with "next" on a project
under the default order, the same on a project under uncertainty selection (its pairs' priorities set by
SQL, as a scored model leaves them; random share 0.2), and the bare floor; it reports each one's
judgments/s against the floor and their ratio.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import add_database_options, bench_env, database_url, gunicorn, recreate_database, setup_django

QUOTA = 3
# The projects the two rating loops work on, with the same pairs each; and (--mode selection) the project
# under uncertainty selection.
TWO_REQUESTS, ONE_ROUND_TRIP, ACTIVE = "bench", "bench1", "bench-active"
# The random share of ACTIVE.
ACTIVE_EPSILON = 0.2
# A sample that is not a request: the time from asking for a pair to its judgment being recorded.
ROUND_TRIP = "round trip"


@dataclass
class Sample:
    op: str
    status: int
    started: float
    seconds: float


@dataclass
class Phase:
    """What one load phase saw, counted over the measured window only (after the warm-up)."""

    name: str
    duration: float
    samples: list[Sample] = field(default_factory=list)
    exhausted_clients: int = 0
    # Requests sent over the whole phase, warm-up included (what the database counters cover).
    requests_sent: int = 0
    # The database's own counters over the phase (pg_stat_database deltas).
    database: dict[str, int] = field(default_factory=dict)

    def ops(self, op: str) -> list[Sample]:
        return [s for s in self.samples if s.op == op]

    def rate(self, op: str | None = None, status: int | None = None) -> float:
        """Requests per second (of one op, or of every request when op is None)."""
        chosen = [
            s
            for s in self.samples
            if (s.op == op if op is not None else s.op != ROUND_TRIP)
            and (status is None or s.status == status)
        ]
        return len(chosen) / self.duration

    def per_request(self, counter: str) -> float:
        return self.database.get(counter, 0) / max(1, self.requests_sent)

    def percentile_ms(self, op: str, q: float) -> float:
        times = sorted(s.seconds for s in self.ops(op))
        if not times:
            return float("nan")
        return times[min(len(times) - 1, int(q * len(times)))] * 1000

    def errors(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.samples:
            if s.status >= 400 or s.status == 0:
                key = f"{s.op} {s.status or 'connection error'}"
                counts[key] = counts.get(key, 0) + 1
        return counts


# The database


def seed(args: argparse.Namespace) -> list[str]:
    """The project, its pairs and its raters (with tokens), through the product's own services."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection
    from rest_framework.authtoken.models import Token

    from annotation import services
    from bench.annotation_load.floor_urls import FLOOR_TABLE_SQL

    rng = random.Random(0)
    words = ["the", "a", "model", "answer", "because", "however", "therefore", "clearly", "step", "then"]
    items = [
        {
            "external_id": f"b{i}",
            "prompt": f"Question {i}: " + " ".join(rng.choices(words, k=30)),
            "response_a": "A: " + " ".join(rng.choices(words, k=120)),
            "response_b": "B: " + " ".join(rng.choices(words, k=120)),
        }
        for i in range(args.pairs)
    ]
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"rater{i:03d}", password=make_password(None)) for i in range(args.raters)
    )
    slugs = [TWO_REQUESTS, ONE_ROUND_TRIP] + ([ACTIVE] if args.mode == "selection" else [])
    for slug in slugs:
        project = services.project_create(slug=slug, name=slug.title(), judgments_per_pair=QUOTA)
        services.pairs_import(project=project, items=items)
        services.project_raters_add(project=project, usernames=[u.username for u in users])
    tokens = [Token.objects.create(user=user).key for user in users]
    with connection.cursor() as cursor:
        if args.mode == "selection":
            # As the active model's scoring leaves them: a priority on nine pairs in ten (closeness of
            # P(a preferred) to 0.5), none yet on the rest; then the project under uncertainty selection.
            cursor.execute(
                "UPDATE annotation_pair p SET priority = CASE WHEN random() < 0.9 THEN random() END"
                " FROM annotation_project pr WHERE pr.id = p.project_id AND pr.slug = %s",
                [ACTIVE],
            )
            cursor.execute(
                "UPDATE annotation_project SET selection = 'uncertainty', selection_epsilon = %s,"
                " priorities_at = now() WHERE slug = %s",
                [ACTIVE_EPSILON, ACTIVE],
            )
        cursor.execute(FLOOR_TABLE_SQL)
        # Planner statistics and the visibility map, as autovacuum would have them on a database in use.
        cursor.execute("VACUUM ANALYZE")
    connection.close()
    return tokens


def check_invariants() -> list[str]:
    """Every violation of the engine's guarantees in the database, as lines; empty when there are none."""
    from django.db import connection

    checks = {
        f"pair with more than {QUOTA} judgments": f"""
            SELECT pair_id, count(*) FROM annotation_judgment GROUP BY pair_id HAVING count(*) > {QUOTA}""",
        "rater judged a pair twice": """
            SELECT pair_id, rater_id, count(*) FROM annotation_judgment
            GROUP BY pair_id, rater_id HAVING count(*) > 1""",
        "rater served a pair twice": """
            SELECT pair_id, rater_id, count(*) FROM annotation_assignment
            GROUP BY pair_id, rater_id HAVING count(*) > 1""",
        "judgment without a matching judged assignment": """
            SELECT j.id FROM annotation_judgment j
            LEFT JOIN annotation_assignment a ON a.id = j.assignment_id
            WHERE a.id IS NULL OR a.status <> 'judged' OR a.pair_id <> j.pair_id OR a.rater_id <> j.rater_id
               OR a.shown_left <> j.shown_left""",
        "judged assignment without a judgment": """
            SELECT a.id FROM annotation_assignment a
            LEFT JOIN annotation_judgment j ON j.assignment_id = a.id
            WHERE a.status = 'judged' AND j.id IS NULL""",
        "pair's judgment_count differs from its judgments": """
            SELECT p.id, p.judgment_count, count(j.id) FROM annotation_pair p
            LEFT JOIN annotation_judgment j ON j.pair_id = p.id
            GROUP BY p.id HAVING p.judgment_count <> count(j.id)""",
        "rater holding more than one open assignment": """
            SELECT rater_id, count(*) FROM annotation_assignment WHERE status = 'active'
            GROUP BY rater_id, project_id HAVING count(*) > 1""",
        f"pair with more than {QUOTA} places taken (judged + held)": f"""
            SELECT pair_id, count(*) FROM annotation_assignment
            WHERE status = 'judged' OR (status = 'active' AND lease_expires_at > now())
            GROUP BY pair_id HAVING count(*) > {QUOTA}""",
    }
    checks["assignment with an arm under the default order, or a regular one without under uncertainty"] = """
        SELECT a.id, a.arm, a.propensity FROM annotation_assignment a
        JOIN annotation_project pr ON pr.id = a.project_id JOIN annotation_pair p ON p.id = a.pair_id
        WHERE (a.arm IS NOT NULL) <> (pr.selection = 'uncertainty' AND p.gold IS NULL)"""
    violations = []
    with connection.cursor() as cursor:
        for name, sql in checks.items():
            cursor.execute(sql)
            violations.extend(f"{name}: {row}" for row in cursor.fetchall())
    return violations


def database_counts() -> dict[str, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT count(*) FROM annotation_judgment), (SELECT count(*) FROM annotation_assignment),"
            " (SELECT count(*) FROM bench_floor)"
        )
        judgments, assignments, floor_rows = cursor.fetchone()
    return {"judgments": judgments, "assignments": assignments, "floor_rows": floor_rows}


DATABASE_COUNTERS = [
    "xact_commit",
    "xact_rollback",
    "tup_returned",
    "tup_fetched",
    "tup_inserted",
    "tup_updated",
    "tup_deleted",
    "blks_hit",
    "blks_read",
]


def analyze(args: argparse.Namespace) -> None:
    """Planner statistics of the rating tables once they hold rows, as autovacuum's analyze keeps them on
    a database in use: statistics of empty tables make the planner scan them whole (they start empty here,
    and autovacuum may not come by within a phase)."""
    import psycopg

    with psycopg.connect(
        host=args.pg_host, port=args.pg_port, user=args.pg_user, dbname=args.db, autocommit=True
    ) as conn:
        conn.execute("ANALYZE annotation_assignment, annotation_judgment, annotation_pair")


def database_counters(args: argparse.Namespace) -> dict[str, int]:
    """pg_stat_database for the bench database. Read after the server stopped: a backend sends its counts
    when its transaction ends (at most once a second) and when it exits."""
    import psycopg

    time.sleep(1.5)
    with psycopg.connect(
        host=args.pg_host, port=args.pg_port, user=args.pg_user, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            f"SELECT {', '.join(DATABASE_COUNTERS)} FROM pg_stat_database WHERE datname = %s", [args.db]
        ).fetchone()
    return dict(zip(DATABASE_COUNTERS, row, strict=True))


# The clients


class Client:
    """One keep-alive HTTP connection to 127.0.0.1, reopened when the server closes it."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.headers = {"Content-Type": "application/json", **headers}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
        payload = json.dumps(body or {})
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body=payload, headers=self.headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                return response.status, json.loads(data) if data else None
            except (http.client.HTTPException, ConnectionError):
                # A keep-alive connection the server closed between requests; the request never arrived.
                self.conn.close()
                if attempt == 2:
                    return 0, None
        raise AssertionError("unreachable")


Loop = Callable[[int, Callable[[], bool], list], bool]


def run_clients(
    name: str,
    count: int,
    warmup: float,
    duration: float,
    loop: Loop,
    in_warmup: Callable[[], None] | None = None,
) -> Phase:
    """Start `count` clients together; each runs loop(index, keep_going, samples) until the time is up.

    loop returns False when its client ran out of work. Samples started in the warm-up are dropped.
    in_warmup runs halfway through the warm-up.
    """
    start = threading.Barrier(count + 1)
    per_client: list[list[Sample]] = [[] for _ in range(count)]
    ran_out = [False] * count
    deadline = [0.0]

    def keep_going() -> bool:
        return time.perf_counter() < deadline[0]

    def body(index: int) -> None:
        start.wait()
        ran_out[index] = not loop(index, keep_going, per_client[index])

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    begin = time.perf_counter()
    deadline[0] = begin + warmup + duration
    start.wait()
    if in_warmup is not None:
        time.sleep(warmup / 2)
        in_warmup()
    for thread in threads:
        thread.join(timeout=warmup + duration + 120)
    measured_from = begin + warmup
    measured_to = begin + warmup + duration
    samples = [
        sample
        for samples in per_client
        for sample in samples
        if measured_from <= sample.started and sample.started + sample.seconds <= measured_to
    ]
    sent = sum(1 for samples in per_client for sample in samples if sample.op != ROUND_TRIP)
    return Phase(
        name=name, duration=duration, samples=samples, exhausted_clients=sum(ran_out), requests_sent=sent
    )


def timed(samples: list, op: str, call: Callable[[], tuple[int, Any]]) -> tuple[int, Any]:
    started = time.perf_counter()
    status, body = call()
    samples.append(Sample(op=op, status=status, started=started, seconds=time.perf_counter() - started))
    return status, body


def _judgment_body(rng: random.Random) -> dict[str, Any]:
    return {"choice": rng.choice(["left", "right", "tie"]), "client_time_ms": rng.randint(1000, 9000)}


def two_request_loop(port: int, tokens: list[str]) -> Loop:
    """next -> judgment: two requests per judgment."""

    def loop(index: int, keep_going: Callable[[], bool], samples: list) -> bool:
        client = Client(port, {"Authorization": f"Token {tokens[index]}"})
        rng = random.Random(index)
        while keep_going():
            status, served = timed(
                samples, "next", lambda: client.post(f"/api/v1/projects/{TWO_REQUESTS}/next/")
            )
            if status == 204:
                return False
            if status != 200:
                continue
            asked = samples[-1]
            path = f"/api/v1/assignments/{served['assignment']}/judgment/"
            body = _judgment_body(rng)
            status, _ = timed(samples, "judgment", lambda path=path, body=body: client.post(path, body))
            done = samples[-1]
            round_trip = done.started + done.seconds - asked.started
            samples.append(Sample(op=ROUND_TRIP, status=status, started=asked.started, seconds=round_trip))
        return True

    return loop


def one_round_trip_loop(port: int, tokens: list[str], slug: str = ONE_ROUND_TRIP) -> Loop:
    """judgment with "next": true, each answer bringing the next pair: one request per judgment (and one
    `next` to start), on the project `slug`."""

    def loop(index: int, keep_going: Callable[[], bool], samples: list) -> bool:
        client = Client(port, {"Authorization": f"Token {tokens[index]}"})
        rng = random.Random(index)
        served = None
        while keep_going():
            if served is None:
                status, body = timed(samples, "next", lambda: client.post(f"/api/v1/projects/{slug}/next/"))
                if status == 204:
                    return False
                served = body if status == 200 else None
                continue
            path = f"/api/v1/assignments/{served['assignment']}/judgment/"
            body = {**_judgment_body(rng), "next": True}
            status, answer = timed(
                samples, "judgment+next", lambda path=path, body=body: client.post(path, body)
            )
            done = samples[-1]
            samples.append(Sample(op=ROUND_TRIP, status=status, started=done.started, seconds=done.seconds))
            served = answer["next"] if status == 201 else None
            if status == 201 and served is None:
                return False
        return True

    return loop


def floor_loop(port: int, path: str, tokens: list[str] | None = None) -> Loop:
    def loop(index: int, keep_going: Callable[[], bool], samples: list) -> bool:
        client = Client(port, {"Authorization": f"Token {tokens[index]}"} if tokens else {})
        while keep_going():
            timed(samples, "insert", lambda: client.post(path, {"client": index}))
        return True

    return loop


# The report


def _row(label: str, phase: Phase, op: str, judgments: float | None) -> str:
    samples = phase.ops(op)
    rate = "" if op == ROUND_TRIP else f"{len(samples) / phase.duration:.1f}"
    shown = "" if judgments is None else f"{judgments:.1f}"
    p50, p99 = phase.percentile_ms(op, 0.5), phase.percentile_ms(op, 0.99)
    return f"| {label} | {rate} | {shown} | {p50:.1f} | {p99:.1f} |"


def _db_row(label: str, phase: Phase) -> str:
    def per(*counters: str) -> str:
        return f"{sum(phase.per_request(c) for c in counters):.1f}"

    return (
        f"| {label} | {phase.requests_sent} | {per('xact_commit', 'xact_rollback')} "
        f"| {per('tup_returned', 'tup_fetched')} | {per('tup_inserted', 'tup_updated', 'tup_deleted')} "
        f"| {per('blks_hit', 'blks_read')} |"
    )


def report(
    args: argparse.Namespace,
    two: Phase,
    one: Phase,
    floor: Phase,
    drf: Phase,
    violations: list[str],
    counts: dict,
) -> str:
    two_judgments, one_judgments = two.rate("judgment", 201), one.rate("judgment+next", 201)
    floor_per_s, drf_per_s = floor.rate("insert", 201), drf.rate("insert", 201)
    drf_p99 = drf.percentile_ms("insert", 0.99)
    two_p99, one_p99 = two.percentile_ms(ROUND_TRIP, 0.99), one.percentile_ms(ROUND_TRIP, 0.99)
    config = (
        f"{args.workers} workers, worker class {args.worker_class}"
        + (f", {args.threads} threads each" if args.worker_class == "gthread" else "")
        + f", CONN_MAX_AGE={args.conn_max_age}"
    )
    lines = [
        f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Python "
        f"{platform.python_version()}; gunicorn, PostgreSQL and the load generator share them.",
        f"Server: gunicorn, {config}. Clients: {args.raters} concurrent, each its own keep-alive connection.",
        f"Data: {args.pairs} pairs per loop's project, judgments_per_pair={QUOTA}. Measured "
        f"{args.duration:.0f} s after {args.warmup:.0f} s of warm-up, per phase (the rating tables analyzed "
        "halfway through each warm-up).",
        "",
        "| | requests/s | judgments/s | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
        _row("Two requests: `next`", two, "next", None),
        _row("Two requests: `judgment`", two, "judgment", two_judgments),
        _row("Two requests: round trip (`next` + `judgment`)", two, ROUND_TRIP, None),
        _row("One round trip: `judgment` with `next`", one, "judgment+next", one_judgments),
        _row("Floor: bare Django view, one INSERT", floor, "insert", None),
        _row("Floor: DRF view, token auth, one INSERT", drf, "insert", None),
        "",
        "The database's own counters (pg_stat_database), per request over each whole phase (warm-up "
        "included; transactions: each statement outside a transaction is one):",
        "",
        "| | requests | transactions | rows read (returned + fetched) | rows written | buffer hits + reads |",
        "|---|---:|---:|---:|---:|---:|",
        _db_row("Two requests (next, judgment)", two),
        _db_row("One round trip (judgment with next)", one),
        _db_row("Floor: bare", floor),
        _db_row("Floor: DRF", drf),
        "",
        f"- Judgments/s ÷ bare floor inserts/s: two requests **{two_judgments / floor_per_s:.1%}**, "
        f"one round trip **{one_judgments / floor_per_s:.1%}** ({one_judgments:.1f} ÷ {floor_per_s:.1f}).",
        f"- Judgments/s ÷ DRF floor requests/s: two requests **{two_judgments / drf_per_s:.1%}**, "
        f"one round trip **{one_judgments / drf_per_s:.1%}** ({one_judgments:.1f} ÷ {drf_per_s:.1f}); "
        f"DRF floor ÷ bare floor: {drf_per_s / floor_per_s:.1%}.",
        f"- p99 of a judgment's round trip ÷ DRF floor p99: two requests **{two_p99 / drf_p99:.1f}x**, "
        f"one round trip **{one_p99 / drf_p99:.1f}x** ({one_p99:.1f} ms ÷ {drf_p99:.1f} ms).",
        f"- One round trip ÷ two requests, judgments/s: **{one_judgments / two_judgments:.2f}x**.",
        f"- Errors: two requests {two.errors() or 'none'}; one round trip {one.errors() or 'none'}; "
        f"floors {floor.errors() or 'none'}, {drf.errors() or 'none'}. Raters who ran out of pairs: "
        f"{two.exhausted_clients} and {one.exhausted_clients}.",
        f"- In the database after the run: {counts['judgments']} judgments, "
        f"{counts['assignments']} assignments, {counts['floor_rows']} floor rows.",
        f"- Invariant violations: **{len(violations)}**"
        + ("" if not violations else "\n" + "\n".join(f"  - {v}" for v in violations[:50])),
    ]
    return "\n".join(lines)


def arms() -> dict[str, int]:
    """ACTIVE's assignments by arm."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COALESCE(a.arm, 'none'), count(*) FROM annotation_assignment a"
            " JOIN annotation_project pr ON pr.id = a.project_id WHERE pr.slug = %s GROUP BY 1",
            [ACTIVE],
        )
        return dict(cursor.fetchall())


def selection_report(
    args: argparse.Namespace,
    defaults: list[Phase],
    actives: list[Phase],
    floor: Phase,
    violations: list[str],
    counts: dict,
    by_arm: dict[str, int],
) -> str:
    """--mode selection: each rating phase's judgments/s against the bare floor, and their ratio."""
    floor_per_s = floor.rate("insert", 201)
    default, active = _merged("default order", defaults), _merged("uncertainty", actives)
    default_per_s, active_per_s = default.rate("judgment+next", 201), active.rate("judgment+next", 201)
    rounds = [
        f"round {i + 1}: {d.rate('judgment+next', 201):.1f} and {a.rate('judgment+next', 201):.1f}"
        for i, (d, a) in enumerate(zip(defaults, actives, strict=True))
    ]
    config = (
        f"{args.workers} workers, worker class {args.worker_class}"
        + (f", {args.threads} threads each" if args.worker_class == "gthread" else "")
        + f", CONN_MAX_AGE={args.conn_max_age}"
    )
    served = sum(by_arm.values()) or 1
    lines = [
        f"Machine: {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), Python "
        f"{platform.python_version()}; gunicorn, PostgreSQL and the load generator share them.",
        f"Server: gunicorn, {config}. Clients: {args.raters} concurrent, each its own keep-alive connection.",
        f"Data: {args.pairs} pairs per project, judgments_per_pair={QUOTA}; the uncertainty project's "
        f"priorities set by SQL (nine pairs in ten), random share {ACTIVE_EPSILON}. Measured "
        f"{args.duration:.0f} s after {args.warmup:.0f} s of warm-up, per phase; {args.rounds} round(s) of "
        "the two rating phases, in turn (default order first in odd rounds, uncertainty first in even ones, "
        "so that a drift of the machine's load falls on both), then the floor.",
        "",
        "| judgment with `next` | judgments/s | ÷ bare floor | p50 ms | p99 ms |",
        "|---|---:|---:|---:|---:|",
        _selection_row("Default order (`random`)", default, default_per_s / floor_per_s),
        _selection_row("Uncertainty selection", active, active_per_s / floor_per_s),
        f"| Floor: bare Django view, one INSERT | {floor_per_s:.1f} | | "
        f"{floor.percentile_ms('insert', 0.5):.1f} | {floor.percentile_ms('insert', 0.99):.1f} |",
        "",
        f"- Uncertainty ÷ default order, each against the floor: **{active_per_s / default_per_s:.1%}** "
        "(goal: at least 90%).",
        "- Judgments/s per round, default order and uncertainty: " + "; ".join(rounds) + ".",
        "- The uncertainty project's assignments by arm: "
        + ", ".join(f"{arm} {n} ({n / served:.0%})" for arm, n in sorted(by_arm.items())),
        f"- Errors: default order {default.errors() or 'none'}; uncertainty {active.errors() or 'none'}; "
        f"floor {floor.errors() or 'none'}. Raters who ran out of pairs: {default.exhausted_clients} and "
        f"{active.exhausted_clients}.",
        f"- In the database after the run: {counts['judgments']} judgments, {counts['assignments']} "
        "assignments.",
        f"- Invariant violations: **{len(violations)}**"
        + ("" if not violations else "\n" + "\n".join(f"  - {v}" for v in violations[:50])),
    ]
    return "\n".join(lines)


def _merged(name: str, phases: list[Phase]) -> Phase:
    """Several measured phases as one: their samples over their summed durations."""
    merged = Phase(name=name, duration=sum(p.duration for p in phases))
    for p in phases:
        merged.samples.extend(p.samples)
        merged.exhausted_clients += p.exhausted_clients
    return merged


def _selection_row(label: str, phase: Phase, of_floor: float) -> str:
    op = "judgment+next"
    return (
        f"| {label} | {phase.rate(op, 201):.1f} | {of_floor:.1%} | {phase.percentile_ms(op, 0.5):.1f} "
        f"| {phase.percentile_ms(op, 0.99):.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=int, default=50)
    parser.add_argument("--duration", type=float, default=20.0, help="Seconds measured, per phase.")
    parser.add_argument("--warmup", type=float, default=3.0, help="Seconds of load before measuring.")
    parser.add_argument("--pairs", type=int, default=6000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-class", default="gthread", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=4, help="Threads per worker (gthread).")
    parser.add_argument("--conn-max-age", type=int, default=60)
    add_database_options(parser, "pairwise_bench")
    parser.add_argument("--results", type=Path, help="Append the report to this Markdown file.")
    parser.add_argument(
        "--mode",
        choices=["engine", "selection"],
        default="engine",
        help="engine: both rating loops and both floors; selection: judgment with next under the default "
        "order and under uncertainty selection, and the bare floor.",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="--mode selection: rounds of the two rating phases."
    )
    args = parser.parse_args()

    recreate_database(args)
    env = bench_env(database_url(args), LOG_LEVEL="ERROR", DATABASE_CONN_MAX_AGE=str(args.conn_max_age))
    setup_django()
    tokens = seed(args)
    print(f"Seeded 2 x {args.pairs} pairs and {args.raters} raters in {args.db}.", flush=True)

    def phase(name: str, settings: str, loop: Callable[[int], Loop]) -> Phase:
        before = database_counters(args)
        with gunicorn({**env, "DJANGO_SETTINGS_MODULE": settings}, *options) as (port, _):
            result = run_clients(
                name, args.raters, args.warmup, args.duration, loop(port), in_warmup=lambda: analyze(args)
            )
        after = database_counters(args)
        result.database = {counter: after[counter] - before[counter] for counter in DATABASE_COUNTERS}
        print(f"{name}: {len(result.samples)} samples measured.", flush=True)
        return result

    options = [
        "--workers", str(args.workers),
        "--worker-class", args.worker_class,
        "--threads", str(args.threads),
        "--backlog", "2048",
        "--keep-alive", "5",
        "--timeout", "30",  # gunicorn's default, which this benchmark always had
    ]  # fmt: skip
    floor_settings = "bench.annotation_load.floor_settings"
    if args.mode == "selection":
        defaults, actives = [], []
        for round_ in range(args.rounds):
            for slug in (ONE_ROUND_TRIP, ACTIVE) if round_ % 2 == 0 else (ACTIVE, ONE_ROUND_TRIP):
                measured = phase(
                    f"{slug}, round {round_ + 1}",
                    "config.settings",
                    lambda port, slug=slug: one_round_trip_loop(port, tokens, slug),
                )
                (defaults if slug == ONE_ROUND_TRIP else actives).append(measured)
        floor = phase("bare floor", floor_settings, lambda port: floor_loop(port, "/floor/"))
        text = selection_report(args, defaults, actives, floor, check_invariants(), database_counts(), arms())
        _print_and_save(args, text, "selection")
        return
    two = phase("two requests", "config.settings", lambda port: two_request_loop(port, tokens))
    one = phase("one round trip", "config.settings", lambda port: one_round_trip_loop(port, tokens))
    floor = phase("bare floor", floor_settings, lambda port: floor_loop(port, "/floor/"))
    drf = phase("DRF floor", floor_settings, lambda port: floor_loop(port, "/floor/drf/", tokens))

    text = report(args, two, one, floor, drf, check_invariants(), database_counts())
    _print_and_save(args, text, "")


def _print_and_save(args: argparse.Namespace, text: str, mode: str) -> None:
    command = "    .venv/bin/python bench/annotation_load/run.py " + " ".join(sys.argv[1:])
    print(text)
    if args.results:
        label = f"{mode}, " if mode else ""
        with args.results.open("a") as out:
            out.write(
                f"\n### {time.strftime('%Y-%m-%d %H:%M')}: {label}{args.worker_class}, "
                f"{args.workers} workers\n\n"
            )
            out.write(f"{command}\n\n{text}\n")


if __name__ == "__main__":
    main()
