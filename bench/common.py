"""Helpers of the reward-model benchmarks: the environment of a bench database and broker, Django set up
in the bench process, gunicorn and Celery worker processes, and the LLMBar pairs as a judged project."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LLMBAR = REPO.parent / "shared" / "data" / "llmbar"


def bench_env(database_url: str, broker_url: str, runs_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": broker_url,
        "CELERY_BROKER_URL": broker_url,
        "PAIRWISE_RUNS_DIR": str(runs_dir),
        "SECRET_KEY": os.environ.get("SECRET_KEY", "bench-only-" + "x" * 40),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "LOG_LEVEL": "WARNING",
    }
    os.environ.update(env)
    # A SIGTERM runs the context managers' cleanup (the server and worker processes) like Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    return env


def setup_django() -> None:
    sys.path.insert(0, str(REPO))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def llmbar_items(limit: int | None = None) -> list[dict[str, Any]]:
    """LLMBar pairs as pair-import items; the better output is always response A's or B's by turns."""
    items = []
    for path in sorted(LLMBAR.glob("*.json")):
        for index, row in enumerate(json.loads(path.read_text(encoding="utf-8"))):
            if not row["input"].strip() or row["output_1"] == row["output_2"]:
                continue  # what pair import refuses: nothing to prefer, or no prompt
            items.append(
                {
                    "external_id": f"{path.stem}/{index}",
                    "prompt": row["input"],
                    "response_a": row["output_1"],
                    "response_b": row["output_2"],
                    "better": "a" if row["label"] == 1 else "b",
                }
            )
    return items[:limit]


def judged_project(slug: str, items: list[dict[str, Any]], raters: int = 3) -> Any:
    """A project with the pairs and `raters` imported judgments each: all but the last rater choose the
    better response, the last one the better one on two pairs in three (split votes, as people give)."""
    from annotation import services
    from annotation.models import Project

    project = Project.objects.create(slug=slug, name=slug, judgments_per_pair=raters)
    services.pairs_import(
        project=project, items=[{k: v for k, v in i.items() if k != "better"} for i in items]
    )
    judgments = []
    for n, item in enumerate(items):
        worse = "b" if item["better"] == "a" else "a"
        for r in range(raters):
            choice = worse if r == raters - 1 and n % 3 == 0 else item["better"]
            judgments.append({"pair": item["external_id"], "rater": f"bench-{r}", "choice": choice})
    for start in range(0, len(judgments), 10_000):
        services.judgments_import(project=project, items=judgments[start : start + 10_000])
    return project


def staff_token() -> str:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user(
        f"bench-admin-{secrets.token_hex(4)}", password=secrets.token_urlsafe(16), is_staff=True
    )
    return Token.objects.create(user=user).key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn(env: dict[str, str], *extra: str) -> Iterator[int]:
    port = free_port()
    command = [
        PYTHON, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--timeout", "600", "--log-level", "warning", "--chdir", str(REPO), *extra,
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.2)
        yield port
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


@contextlib.contextmanager
def celery_worker(env: dict[str, str], queues: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    command = [PYTHON, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "-Q", queues,
               "--loglevel", "INFO", "--without-gossip", "--without-mingle"]  # fmt: skip
    with log.open("wb") as out:
        worker = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while "ready." not in log.read_text(errors="replace"):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the worker did not start; see {log}")
            time.sleep(0.2)
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()


def post_json(port: int, path: str, body: dict[str, Any], token: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request(
        "POST",
        path,
        body=json.dumps(body),
        headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
    )
    response = conn.getresponse()
    data = json.loads(response.read() or b"null")
    conn.close()
    return response.status, data
