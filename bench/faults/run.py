"""Fault campaign against the product, on servers of its own: simulated raters rate over HTTP while one fault
is caused per phase, and the table says what each fault cost (judgments lost, duplicated, pairs over quota,
5xx answers, seconds until a judgment succeeds again).

One run: initdb a PostgreSQL cluster and start a redis-server, each on a free port of 127.0.0.1 in a
temporary folder (the shared servers are never touched); migrate; seed one project per fault, R raters with
tokens, and a project with judgments to queue a training run on; serve the product with gunicorn as the
shipped server command does (config/gunicorn.py when the checkout has one, else scripts/start's flags); then
for each fault, on its own project: R raters loop `judgment` with `"next": true` for the phase's seconds,
the fault is caused a third of the way in, and afterwards the database is checked against every judgment
the server acknowledged (201). No Celery worker runs: a training run queued stays in the broker.

Faults: `worker` (kill -9 of one gunicorn worker), `master` (kill -9 of the gunicorn master, then a new
master started at once on the same port, as a supervisor would), `postgres` (pg_ctl stop -m immediate,
down for --down-seconds, start), `redis` (redis-server stopped, down for --down-seconds, started again
without persistence unless --redis-aof; a training run queued before it is looked for in the broker after
it, and any resend task of reward_models.tasks is called to send it again).

    .venv/bin/python bench/faults/run.py [--raters 20] [--phase-seconds 30] [--down-seconds 5]
        [--faults worker,master,postgres,redis] [--pairs 3000] [--redis-aof]
        [--results bench/faults/RESULTS.md]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotation_load.run import check_invariants
from common import (
    PYTHON,
    REPO,
    PostgresCluster,
    RedisServer,
    bench_env,
    free_port,
    judged_project,
    postgres_cluster,
    redis_server,
    setup_django,
    shipped_gunicorn_options,
    staff_token,
)

QUOTA = 3
DATABASE = "pairwise_faults"
FAULTS = ("worker", "master", "postgres", "redis")
TRAIN_PROJECT = "faults-train"
PROBE_USER, PROBE_PASSWORD = "faults-probe", "probe-" + secrets.token_urlsafe(12)
# A rater waits this long after a failed request, or what Retry-After says up to MAX_WAIT.
FAILURE_WAIT, MAX_WAIT = 0.2, 1.0


# HTTP, to 127.0.0.1 only


@dataclass
class Answer:
    op: str
    status: int  # 0: no answer (refused, reset, timed out)
    retry_after: bool
    started: float
    ended: float
    judgment: int | None = None


class Client:
    """One keep-alive connection to the server on 127.0.0.1, reopened when it breaks."""

    def __init__(self, port: int, token: str | None = None, timeout: float = 10) -> None:
        self.headers = {"Content-Type": "application/json"}
        if token:
            self.headers["Authorization"] = f"Token {token}"
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bool, Any]:
        """(status, whether it came with Retry-After, JSON body); status 0 when no answer came. A request
        whose connection breaks is sent once more on a new one (the server may have closed a kept-alive
        one between requests); a judgment that did arrive the first time is then refused as judged."""
        payload = None if body is None else json.dumps(body)
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=payload, headers=self.headers)
                response = self.conn.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                try:
                    parsed = json.loads(data) if data else None
                except ValueError:
                    parsed = None
                return response.status, response.getheader("Retry-After") is not None, parsed
            except (http.client.HTTPException, OSError):
                self.conn.close()  # the next request opens a new connection
                if attempt == 2:
                    return 0, False, None
        raise AssertionError("unreachable")


def failed(answer: Answer) -> bool:
    return answer.status == 0 or answer.status >= 500


def rater(port: int, token: str, slug: str, index: int, stop: threading.Event, answers: list[Answer]) -> None:
    """Rate with `"next": true` until stop is set or the project has nothing left for this rater."""
    client = Client(port, token)
    rng = random.Random(index)
    served: dict[str, Any] | None = None

    def call(op: str, path: str, body: dict[str, Any] | None = None) -> tuple[Answer, Any]:
        started = time.monotonic()
        status, retry_after, data = client.request("POST", path, body)
        answer = Answer(op, status, retry_after, started, time.monotonic())
        if op == "judgment" and status == 201:
            answer.judgment = data["judgment"]
        answers.append(answer)
        return answer, data

    while not stop.is_set():
        if served is None:
            answer, data = call("next", f"/api/v1/projects/{slug}/next/")
            if answer.status == 200:
                served = data
            elif answer.status == 204 and not answer.retry_after:
                return
            else:
                stop.wait(MAX_WAIT if answer.retry_after else FAILURE_WAIT)
            continue
        body = {"choice": rng.choice(["left", "right", "tie"]), "client_time_ms": 3000, "next": True}
        answer, data = call("judgment", f"/api/v1/assignments/{served['assignment']}/judgment/", body)
        served = data["next"] if answer.status == 201 else None
        if answer.status == 201 and served is None:
            if data.get("retry_after") is None:
                return
            stop.wait(min(MAX_WAIT, data["retry_after"]))
        elif failed(answer):
            stop.wait(MAX_WAIT if answer.retry_after else FAILURE_WAIT)


# gunicorn


def group_members(group: int) -> list[int]:
    """The live (not zombie) processes of a process group, from /proc."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if fields[0] != "Z" and int(fields[2]) == group:
                members.append(int(stat.parent.name))
    return members


class Server:
    """gunicorn masters started one after another on one port, each in a process group of its own (so that
    its workers, orphaned or not, are found and stopped by the group's id)."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.masters: list[subprocess.Popen[bytes]] = []

    @property
    def master(self) -> subprocess.Popen[bytes]:
        return self.masters[-1]

    def workers(self) -> list[int]:
        return [pid for pid in group_members(self.master.pid) if pid != self.master.pid]

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def log_since(self, offset: int) -> str:
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def start(self, timeout: float = 60) -> float | None:
        """Start a master; the seconds until it listened, or None when it exited (or timed out) first."""
        command = [
            PYTHON, "-m", "gunicorn", "config.wsgi:application", *shipped_gunicorn_options(),
            "--bind", f"127.0.0.1:{self.port}", "--chdir", str(REPO), "--log-level", "info",
        ]  # fmt: skip
        offset, began = self.log_size(), time.monotonic()
        with self.log.open("ab") as out:
            master = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.masters.append(master)
        listening = f"Listening at: http://127.0.0.1:{self.port} ({master.pid})"
        while listening not in self.log_since(offset):
            if master.poll() is not None or time.monotonic() - began > timeout:
                return None
            time.sleep(0.05)
        return time.monotonic() - began

    def close(self) -> None:
        """SIGTERM to every group this started (masters and orphaned workers), SIGKILL to what is left."""
        groups = [master.pid for master in self.masters]
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for master in self.masters:
            with contextlib.suppress(subprocess.TimeoutExpired):
                master.wait(timeout=max(0.1, deadline - time.monotonic()))
        while any(group_members(g) for g in groups) and time.monotonic() < deadline:
            time.sleep(0.2)
        for group in groups:
            if group_members(group):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGKILL)
        for master in self.masters:
            with contextlib.suppress(subprocess.TimeoutExpired):
                master.wait(timeout=5)


def wait_healthy(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    client = Client(port, timeout=5)
    while client.request("GET", "/healthz")[0] != 200:
        if time.monotonic() > deadline:
            raise SystemExit("the server did not answer /healthz with 200")
        time.sleep(0.2)


# The campaign


@dataclass
class Context:
    args: argparse.Namespace
    server: Server
    postgres: PostgresCluster
    redis: RedisServer
    staff: str  # a staff token
    queued_run: list[str] = field(default_factory=list)


@dataclass
class Result:
    fault: str
    answers: list[Answer]
    fault_at: float
    notes: list[str]
    tracebacks: int
    acknowledged: int = 0
    lost: int = 0
    duplicated: int = 0
    over_quota: int = 0

    def count(self, predicate: Callable[[Answer], bool]) -> int:
        return sum(1 for answer in self.answers if predicate(answer))

    def recovery(self) -> float | None:
        return recovery(self.answers, self.fault_at)


def recovery(answers: list[Answer], fault_at: float) -> float | None:
    """Seconds from the fault until the first judgment acknowledged after the last failed answer (5xx or
    none) that ended after the fault; with no such failure, until the first one after the fault."""
    failures = [a.ended for a in answers if failed(a) and a.ended >= fault_at]
    since = max(failures, default=fault_at)
    acked = [a.ended for a in answers if a.judgment is not None and a.started >= since]
    return min(acked) - fault_at if acked else None


def seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}"


def fault_worker(ctx: Context) -> tuple[float, list[str]]:
    workers = ctx.server.workers()
    victim = workers[0]
    fault_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    deadline = fault_at + 30
    while (len(ctx.server.workers()) < len(workers) or victim in ctx.server.workers()) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.05)
    replaced = len(ctx.server.workers()) >= len(workers) and victim not in ctx.server.workers()
    when = f"in {time.monotonic() - fault_at:.1f} s" if replaced else "not within 30 s"
    return fault_at, [f"worker {victim} of {len(workers)} killed; the master replaced it {when}"]


def fault_master(ctx: Context) -> tuple[float, list[str]]:
    old = ctx.server.master
    workers = ctx.server.workers()
    fault_at = time.monotonic()
    old.kill()
    old.wait()
    offset = ctx.server.log_size()
    bound = ctx.server.start(timeout=30)
    notes = []
    if bound is None:
        reason = "Connection in use" if "Connection in use" in ctx.server.log_since(offset) else "see the log"
        notes.append(f"a new master started at once did not bind ({reason})")
    else:
        notes.append(f"a new master started at once bound in {bound:.1f} s")
    time.sleep(max(0.0, fault_at + 5 - time.monotonic()))
    orphans = group_members(old.pid)
    notes.append(f"{len(orphans)} of {len(workers)} old workers still alive 5 s after the kill")
    if bound is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(old.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while group_members(old.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        again = ctx.server.start(timeout=30)
        notes.append(
            "after the bench killed the orphans, another new master "
            + (f"bound in {again:.1f} s" if again is not None else "did not bind either")
        )
        if again is None:
            raise SystemExit("no gunicorn master could bind after the master's kill; stopping the campaign")
    elif orphans:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(old.pid, signal.SIGKILL)
        notes.append("the bench killed the orphans")
    return fault_at, notes


def fault_postgres(ctx: Context) -> tuple[float, list[str]]:
    fault_at = time.monotonic()
    ctx.postgres.stop("immediate")
    time.sleep(ctx.args.down_seconds)
    began = time.monotonic()
    ctx.postgres.start()
    return fault_at, [
        f"down {ctx.args.down_seconds:g} s; crash recovery and start took {time.monotonic() - began:.1f} s"
    ]


def broker_length(ctx: Context, queue: str = "training") -> int | str:
    import redis

    try:
        return int(redis.Redis.from_url(ctx.redis.url(), socket_timeout=2).llen(queue))
    except redis.RedisError as exc:
        return f"unreadable ({type(exc).__name__})"


def create_run(ctx: Context, seed: int) -> tuple[int, Any]:
    status, _, body = Client(ctx.server.port, ctx.staff, timeout=60).request(
        "POST", "/api/v1/training-runs/", {"project": TRAIN_PROJECT, "seed": seed}
    )
    return status, body


def fault_redis(ctx: Context) -> tuple[float, list[str]]:
    from django.db import connections

    from reward_models import tasks

    status, run = create_run(ctx, seed=1)
    before = broker_length(ctx)
    ctx.queued_run.append(
        f"Run queued with no worker running: {status}"
        + (f", run {run['id']}" if status == 201 else f" {run}")
        + f"; LLEN training {before}."
    )
    fault_at = time.monotonic()
    ctx.redis.stop()
    probes = Client(ctx.server.port, timeout=30)
    login = {"username": PROBE_USER, "password": PROBE_PASSWORD}
    token_status = probes.request("POST", "/api/v1/auth/token/", login)
    staff = Client(ctx.server.port, ctx.staff, timeout=30)
    agreement = staff.request("GET", "/api/v1/projects/faults-redis/agreement/")
    health = staff.request("GET", "/healthz")
    down_status, down_run = create_run(ctx, seed=2)
    notes = [
        f"while down: token login {token_status[0]}, agreement {agreement[0]}, /healthz {health[0]}, "
        f"training run created {down_status}"
    ]
    time.sleep(max(0.0, fault_at + ctx.args.down_seconds - time.monotonic()))
    ctx.redis.start()
    after = broker_length(ctx)
    persistence = "with an append-only file" if ctx.args.redis_aof else "without persistence"
    notes.append(f"down {ctx.args.down_seconds:g} s, started again {persistence}")
    ctx.queued_run.append(f"Redis restarted {persistence}: LLEN training {after}.")
    ctx.queued_run.append(
        f"Run created while Redis was down: {down_status}"
        + (f", run {down_run['id']}" if down_status == 201 else f" {(down_run or {}).get('code', '')}")
        + "."
    )
    resend = [name for name in vars(tasks) if "resend" in name.lower()]
    if not resend:
        ctx.queued_run.append("No resend task in reward_models.tasks (nothing with `resend` in its name).")
    else:
        began = time.monotonic()
        connections.close_all()
        while True:
            for name in resend:
                getattr(tasks, name)()
            length = broker_length(ctx)
            if (isinstance(length, int) and length > 0) or time.monotonic() - began > ctx.args.phase_seconds:
                break
            time.sleep(2)
        ctx.queued_run.append(
            f"Called {', '.join(f'`{n}`' for n in resend)} every 2 s: LLEN training {length} after "
            f"{time.monotonic() - began:.1f} s."
        )
    return fault_at, notes


FAULT_ACTIONS: dict[str, tuple[str, Callable[[Context], tuple[float, list[str]]]]] = {
    "worker": ("kill -9 of a gunicorn worker", fault_worker),
    "master": ("kill -9 of the gunicorn master, new master started", fault_master),
    "postgres": ("PostgreSQL immediate stop, then start", fault_postgres),
    "redis": ("Redis stopped, then started", fault_redis),
}


def run_phase(ctx: Context, name: str, tokens: list[str]) -> Result:
    label, action = FAULT_ACTIONS[name]
    stop = threading.Event()
    per_rater: list[list[Answer]] = [[] for _ in tokens]
    threads = [
        threading.Thread(
            target=rater, args=(ctx.server.port, token, f"faults-{name}", i, stop, per_rater[i]), daemon=True
        )
        for i, token in enumerate(tokens)
    ]
    log_from = ctx.server.log_size()
    began = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(ctx.args.phase_seconds / 3)
    try:
        fault_at, notes = action(ctx)
        # The phase's time (and at least 5 s after the fault's last step), then until a judgment succeeds
        # again (at most --recover-seconds more).
        done, limit = time.monotonic(), time.monotonic() + ctx.args.recover_seconds
        while time.monotonic() < max(began + ctx.args.phase_seconds, done + 5) or (
            time.monotonic() < limit
            and recovery([a for answers in per_rater for a in answers[:]], fault_at) is None
        ):
            time.sleep(0.2)
        notes.append(f"raters went on for {time.monotonic() - done:.1f} s after the fault's last step")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    tracebacks = ctx.server.log_since(log_from).count("Traceback (most recent call last)")
    result = Result(label, [a for answers in per_rater for a in answers], fault_at, notes, tracebacks)
    check(result, f"faults-{name}")
    print(
        f"{label}: {len(result.answers)} answers, {result.acknowledged} judgments acknowledged.", flush=True
    )
    return result


def check(result: Result, slug: str) -> None:
    """Lost, duplicated and over-quota counts of the phase's project, from the database."""
    from django.db import connection, connections

    connections.close_all()  # the connection may predate a database restart
    acked = [a.judgment for a in result.answers if a.judgment is not None]
    result.acknowledged = len(acked)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, judgments_per_pair FROM annotation_project WHERE slug = %s", [slug])
        project, quota = cursor.fetchone()
        cursor.execute(
            "SELECT count(*) FROM unnest(%s::bigint[]) AS a(id)"
            " WHERE NOT EXISTS (SELECT 1 FROM annotation_judgment j WHERE j.id = a.id)",
            [acked],
        )
        result.lost = cursor.fetchone()[0]
        cursor.execute(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM annotation_judgment"
            " WHERE project_id = %s GROUP BY pair_id, rater_id HAVING count(*) > 1) AS repeated",
            [project],
        )
        result.duplicated = int(cursor.fetchone()[0]) + len(acked) - len(set(acked))
        cursor.execute(
            "SELECT count(*) FROM (SELECT pair_id FROM annotation_judgment WHERE project_id = %s"
            " GROUP BY pair_id HAVING count(*) > %s) AS over",
            [project, quota],
        )
        result.over_quota = cursor.fetchone()[0]


# Setting up


def seed(args: argparse.Namespace, faults: list[str]) -> tuple[list[str], str]:
    """A project per fault with the same pairs, the raters (with tokens) in every one, a project with
    judgments to train on, the login probe's user; (the raters' tokens, a staff token)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from rest_framework.authtoken.models import Token

    from annotation import services

    items = [
        {
            "external_id": f"f{i}",
            "prompt": f"Question {i}: which answer is better?",
            "response_a": f"First answer to question {i}.",
            "response_b": f"Second answer to question {i}, a little longer.",
        }
        for i in range(args.pairs)
    ]
    users = get_user_model().objects.bulk_create(
        get_user_model()(username=f"rater{i:03d}", password=make_password(None)) for i in range(args.raters)
    )
    for name in faults:
        project = services.project_create(slug=f"faults-{name}", name=name, judgments_per_pair=QUOTA)
        services.pairs_import(project=project, items=items)
        services.project_raters_add(project=project, usernames=[u.username for u in users])
    judged_project(TRAIN_PROJECT, [{**item, "better": "a"} for item in items[:30]])
    get_user_model().objects.create_user(PROBE_USER, password=PROBE_PASSWORD)
    return [Token.objects.create(user=user).key for user in users], staff_token()


def drop_train_project(ctx: Context) -> None:
    """Note the training runs' states, then delete their project: its judgments were imported, without the
    assignments that the invariant checks look for beside every rated judgment."""
    from annotation.models import Judgment, Project
    from reward_models.models import TrainingRun

    runs = TrainingRun.objects.filter(project__slug=TRAIN_PROJECT).order_by("id")
    if runs:
        states = ", ".join(f"run {run.id} {run.status}" for run in runs)
        ctx.queued_run.append(f"At the end of the campaign: {states}.")
    Judgment.objects.filter(project__slug=TRAIN_PROJECT).delete()  # they protect their imported raters
    Project.objects.filter(slug=TRAIN_PROJECT).delete()


def commit() -> str:
    def git(*arguments: str) -> str:
        return subprocess.run(["git", *arguments], cwd=REPO, capture_output=True, text=True).stdout.strip()

    return git("rev-parse", "--short", "HEAD") + (
        " with uncommitted changes" if git("status", "--porcelain", "--untracked-files=no") else ""
    )


def report(args: argparse.Namespace, results: list[Result], ctx: Context, violations: list[str]) -> str:
    lines = [
        f"Options: {args.raters} raters, {args.phase_seconds:g} s per phase (fault at a third), down "
        f"{args.down_seconds:g} s, {args.pairs} pairs per fault's project, judgments_per_pair={QUOTA}, "
        f"gunicorn {' '.join(shipped_gunicorn_options()).replace(str(REPO) + '/', '')}, "
        f"Redis {'with AOF' if args.redis_aof else 'without persistence'}; {os.cpu_count()} CPUs.",
        "",
        "| fault | judgments acknowledged | lost | duplicated | pairs over quota | 5xx | 503 + Retry-After "
        "| no answer | tracebacks logged | seconds to recover |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        other_5xx = r.count(lambda a: a.status >= 500 and not (a.status == 503 and a.retry_after))
        lines.append(
            f"| {r.fault} | {r.acknowledged} | **{r.lost}** | **{r.duplicated}** | **{r.over_quota}** "
            f"| **{other_5xx}** | {r.count(lambda a: a.status == 503 and a.retry_after)} "
            f"| {r.count(lambda a: a.status == 0)} | {r.tracebacks} | {seconds(r.recovery())} |"
        )
    lines.append("")
    for r in results:
        statuses: dict[str, int] = {}
        for a in r.answers:
            if a.status >= 400 or a.status == 0:
                key = f"{a.op} {a.status or 'no answer'}"
                statuses[key] = statuses.get(key, 0) + 1
        shown = ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) or "none"
        lines.append(f"- {r.fault}: {'; '.join(r.notes)}. Refused or failed answers: {shown}.")
    if ctx.queued_run:
        lines += ["", "Queued training run across the Redis restart (no worker running):", ""]
        lines += [f"- {line}" for line in ctx.queued_run]
    lines += [
        "",
        f"Engine invariants over the whole database (annotation_load's checks): **{len(violations)}**",
    ]
    lines += [f"  - {v}" for v in violations[:20]]
    return "\n".join(lines)


def bounded(low: float, high: float, kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}")
        return value

    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raters", type=bounded(1, 100, int), default=20)
    parser.add_argument("--phase-seconds", type=bounded(5, 300, float), default=30.0)
    parser.add_argument("--down-seconds", type=bounded(1, 60, float), default=5.0)
    parser.add_argument(
        "--recover-seconds",
        type=bounded(5, 600, float),
        default=60.0,
        help="After a phase's time, how long to wait at most for a judgment to succeed again.",
    )
    parser.add_argument("--pairs", type=bounded(10, 100_000, int), default=3000)
    parser.add_argument(
        "--faults", default=",".join(FAULTS), help=f"Comma-separated, of: {', '.join(FAULTS)}."
    )
    parser.add_argument("--redis-aof", action="store_true", help="Redis with an append-only file.")
    parser.add_argument("--results", type=Path, default=REPO / "bench" / "faults" / "RESULTS.md")
    args = parser.parse_args()
    faults = [name for name in args.faults.split(",") if name]
    if not faults or set(faults) - set(FAULTS):
        parser.error(f"--faults takes some of: {', '.join(FAULTS)}")

    temp = Path(tempfile.mkdtemp(prefix="pairwise-faults-"))
    try:
        with postgres_cluster(temp) as postgres, redis_server(temp, aof=args.redis_aof) as redis:
            postgres.create_database(DATABASE)
            # The re-send's shortest wait (the default is 240 s), so that it shows within a phase.
            resend = os.environ.get("PAIRWISE_RUN_RESEND_AFTER_SECONDS", "10")
            env = bench_env(
                postgres.url(DATABASE),
                redis.url(),
                temp / "runs",
                LOG_LEVEL="WARNING",
                PAIRWISE_RUN_RESEND_AFTER_SECONDS=resend,
            )
            setup_django()
            tokens, staff = seed(args, faults)
            server = Server(env, free_port(), temp / "gunicorn.log")
            try:
                if server.start() is None:
                    raise SystemExit(f"gunicorn did not start:\n{server.log_since(0)[-3000:]}")
                wait_healthy(server.port)
                print(
                    f"Serving on 127.0.0.1:{server.port}; {len(faults)} phases of {args.phase_seconds:g} s."
                )
                ctx = Context(args, server, postgres, redis, staff)
                results = [run_phase(ctx, name, tokens) for name in faults]
            finally:
                server.close()
            from django.db import connections

            connections.close_all()
            drop_train_project(ctx)
            text = report(args, results, ctx, check_invariants())
            connections.close_all()
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    print(text)
    if not args.results.exists():
        args.results.write_text(RESULTS_HEADER)
    command = "    .venv/bin/python bench/faults/run.py " + " ".join(sys.argv[1:])
    with args.results.open("a") as out:
        out.write(f"\n### {time.strftime('%Y-%m-%d %H:%M')}, commit {commit()}\n\n{command}\n\n{text}\n")


RESULTS_HEADER = """# Fault campaign: results

What `run.py` printed, newest last. Each run has its own PostgreSQL cluster, Redis and gunicorn; raters,
servers and database share this machine's CPUs. bench/README.md says what each column means.
"""


if __name__ == "__main__":
    main()
