"""A real Celery worker process on the real broker (Redis) and the test database, for the end-to-end
tests. One worker serves every test of the session; tests that kill a worker start their own.

The tests commit their data (``transaction=True``) so that the worker's own connection sees it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.reward_models.conftest import broker_at  # noqa: F401 (a fixture)
from tests.rm_training.conftest import bert_tokenizer, tiny_bert_dir  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[2]


class Worker:
    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process, self.log = process, log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, text: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log_text():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the worker exited ({self.process.returncode}):\n{self.log_text()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not in the worker's log:\n{self.log_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _database_url() -> str:
    db = connection.settings_dict
    password = f":{quote(db['PASSWORD'], safe='')}" if db.get("PASSWORD") else ""
    return f"postgres://{quote(db['USER'], safe='')}{password}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def e2e_runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e-runs")


# The workers live as long as this package's tests, no longer: a worker left running would take the runs
# that later tests queue (tests/reward_models) and train them against the test database while those
# tests' teardown empties it (seen in CI: "Database test_pairwise couldn't be flushed").
@pytest.fixture(scope="package")
def start_worker(
    django_db_setup: Any, django_db_blocker: Any, e2e_runs_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Worker]]:
    """Start a worker process consuming the given queues; all are stopped after this package's tests."""
    started: list[Worker] = []
    with django_db_blocker.unblock():
        database_url = _database_url()

    def start(*queues: str) -> Worker:
        log = tmp_path_factory.mktemp("worker") / "worker.log"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.test_settings",
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
            "PAIRWISE_RUNS_DIR": str(e2e_runs_dir),
            "PAIRWISE_RUN_HEARTBEAT_SECONDS": "1",
            "PYTHONUNBUFFERED": "1",
        }
        command = [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--pool", "solo", "--loglevel", "INFO",
            "-Q", ",".join(queues), "-n", f"e2e-{uuid.uuid4().hex[:8]}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        with log.open("wb") as out:
            process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        worker = Worker(process, log)
        started.append(worker)
        worker.wait_for_log("ready.")
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def _empty_broker() -> None:
    """Nothing left on the test broker's queues from an earlier session."""
    import redis

    url = django_settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        redis.Redis.from_url(url).delete(
            "training", "celery", "e2e-own", "unacked", "unacked_index", "unacked_mutex"
        )


@pytest.fixture(scope="package")
def training_worker(_empty_broker: None, start_worker: Callable[..., Worker]) -> Worker:
    """The session's worker: the training queue and the default one."""
    return start_worker("training", "celery")


@pytest.fixture
def e2e_settings(settings: Any, e2e_runs_dir: Path) -> Any:
    """This process sees the runs folder the workers write to."""
    settings.PAIRWISE_RUNS_DIR = e2e_runs_dir
    return settings


def wait_for(
    predicate: Callable[[], Any], *, timeout: float = 120, interval: float = 0.25, what: str = ""
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.25)
