"""Fixtures of the reward_models tests: the run folder in a temporary directory, judged projects, the tiny
models of the trainer's tests, and the Celery broker pointed at another Redis (tests/conftest.py's
own_redis)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

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
