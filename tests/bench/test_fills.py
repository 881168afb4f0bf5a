"""Each benchmark that fills its own database with SQL runs end to end at a tiny size, so that a column
added to the schema cannot break a bench unnoticed (four did: a NOT NULL column their INSERTs lacked)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

REPO = Path(__file__).resolve().parents[2]

TINY = {
    "agreement": ["--judgments", "300", "--pairs", "100", "--raters", "5", "--repeats", "1"],
    "export": ["--sizes", "300"],
    "leaderboard": [
        "--judgments",
        "300",
        "--pairs",
        "100",
        "--models",
        "3",
        "--raters",
        "5",
        "--repeats",
        "1",
    ],
    "priorities": ["--pairs", "500", "--write", "100", "--repeat", "1"],
    "scale": ["--sizes", "1000", "--calls", "5", "--warmup", "1", "--duration", "1", "--import-pairs", "0"],
}


@pytest.mark.slow
@pytest.mark.parametrize("bench", sorted(TINY))
def test_the_bench_fills_its_database_and_runs_at_a_tiny_size(bench):
    import psycopg

    server = settings.DATABASES["default"]
    if server["ENGINE"] != "django.db.backends.postgresql":
        pytest.skip("the benches fill PostgreSQL")
    host, port, user = (
        server["HOST"] or "127.0.0.1",
        str(server["PORT"] or 5432),
        server["USER"] or "postgres",
    )
    name = f"pairwise_bench_check_{bench}"
    where = ["--pg-host", host, "--pg-port", port, "--pg-user", user, "--db", name]
    try:
        done = subprocess.run(
            [sys.executable, str(REPO / "bench" / bench / "run.py"), *TINY[bench], *where],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=REPO,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    finally:
        with psycopg.connect(host=host, port=port, user=user, dbname="postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
