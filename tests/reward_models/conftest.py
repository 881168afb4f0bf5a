"""Fixtures of the reward_models tests: the run folder in a temporary directory, judged projects, the tiny
models of the trainer's tests, a Redis server of the test's own and the Celery broker pointed at it."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from annotation import services
from tests.rm_training.conftest import bert_tokenizer, tiny_bert_dir  # noqa: F401 (fixtures)


@pytest.fixture(autouse=True)
def runs_dir(settings: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    settings.PAIRWISE_RUNS_DIR = tmp_path_factory.mktemp("runs")
    return settings.PAIRWISE_RUNS_DIR


def judge(project: Any, user: Any, choice: str, **extra: Any) -> Any:
    """The user's next pair, judged through the engine."""
    served = services.assignment_next(project=project, user=user)
    assert served is not None
    return services.judgment_record(assignment_id=served.assignment.pk, user=user, choice=choice, **extra)


@pytest.fixture
def judged(make_pairs: Any, make_rater: Any) -> Any:
    """Give a project one pair judged for one side, so that a run of it can be submitted."""

    def give(project: Any) -> Any:
        make_pairs(project, 1, prefix=f"judged-{project.pk}-")
        judge(project, make_rater(project), "left")
        return project

    return give


class OwnRedis:
    """A redis-server on a free port without persistence, as the campaign's was: a restart loses every
    message on it. Only this process starts and stops it, by its pid."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5)

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(self.folder)]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client().ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def waiting(self, queue: str = "training") -> int:
        """Messages waiting on the queue."""
        return int(self.client().llen(queue))


@pytest.fixture
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def broker_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Point this process's Celery app (what services send with) at another broker for the test."""
    from config.celery import app

    monkeypatch.delenv("CELERY_BROKER_URL", raising=False)  # it would win over the app's setting
    original = app.conf.broker_url

    def point(url: str) -> None:
        app.conf.broker_url = url
        app._after_fork()  # drops the connection and producer pools of the old URL, as a forked child does

    yield point
    point(original)
