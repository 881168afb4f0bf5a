"""Settings from the environment, and manage.py's answers to a bad one (README: Configuration).

The README claims "a bad value stops the start with a message": each variable is started with a bad
value in a real `manage.py check`, which must fail with one line (the last of stderr, no traceback)
naming the variable, the value and what is allowed.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from config import env

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = (ROOT / "config" / "settings.py").read_text()
README = (ROOT / "README.md").read_text()

# Everything that config/settings.py, the test settings or a parent shell could have set.
_CONFIG_VARIABLES = re.findall(r'env_\w+\(\s*"([A-Z_]+)"', SETTINGS)


def _clean_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The test's environment without any Pairwise variable, with a var folder of its own."""
    environ = {
        k: v for k, v in os.environ.items() if k not in _CONFIG_VARIABLES and k != "DJANGO_SETTINGS_MODULE"
    }
    environ.update(
        SECRET_KEY="s" * 50, PAIRWISE_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="config.settings"
    )
    environ.update(values)
    return environ


def _manage(
    tmp_path: Path, *args: str, unset: tuple[str, ...] = (), **values: str
) -> subprocess.CompletedProcess[str]:
    environ = _clean_env(tmp_path, **values)
    for name in unset:
        environ.pop(name, None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


# (variable, bad value, words the message must hold besides the variable's name)
BAD_VALUES = [
    ("PAIRWISE_MAX_REQUEST_BYTES", "-5", ["-5", "from 1024 to 1073741824"]),
    ("PAIRWISE_MAX_REQUEST_BYTES", "2000000000", ["2000000000", "1 KiB to 1 GiB"]),
    ("PAIRWISE_MAX_REQUEST_BYTES", "50MB", ["50MB", "not an integer"]),
    ("PAIRWISE_MAX_IMPORT_ITEMS", "0", ["=0", "from 1 to 1000000"]),
    ("PAIRWISE_MAX_IMPORT_ITEMS", "1000001", ["1000001", "from 1 to 1000000"]),
    ("DATABASE_CONN_MAX_AGE", "-1", ["-1", "from 0 to 86400"]),
    ("DATABASE_URL", "mysql://me:hunter2@db/pairwise", ["mysql://me:***@db/pairwise", "postgres://"]),
    ("DATABASE_URL", "postgres://me:hunter2@db:port/pairwise", ["not a valid URL", "sqlite:///"]),
    ("DATABASE_URL", "pairwise.sqlite3", ["unknown scheme", "sqlite:///"]),
    ("DATABASE_URL", "postgres://db:5432/", ["names no database"]),
    ("DATABASE_URL", "sqlite://", ["names no database"]),
    ("REDIS_URL", "http://redis:6379/0", ["http://redis:6379/0", "redis://", "rediss://", "filesystem://"]),
    ("REDIS_URL", "redis://redis:6379/zero", ["not a number"]),
    ("CELERY_BROKER_URL", "amqp://guest:secret@rabbit//", ["amqp://guest:***@rabbit//", "redis://"]),
    ("CELERY_BROKER_URL", "filesystem:///tmp/broker", ["use filesystem:// alone"]),
    ("PAIRWISE_LOGIN_FAILURES_PER_USER", "0", ["=0", "from 1 to 1000"]),
    ("PAIRWISE_LOGIN_FAILURES_PER_ADDRESS", "100001", ["=100001", "from 1 to 100000"]),
    ("PAIRWISE_LOGIN_FAILURES_PER_ADDRESS", "5", ["=5", "below the limit per username", "PER_USER (10)"]),
    ("LOG_LEVEL", "LOUD", ["LOUD", "DEBUG, INFO, WARNING, ERROR, CRITICAL"]),
    ("ALLOWED_HOSTS", "", ["''", "at least one host name"]),
    ("ALLOWED_HOSTS", " , ", ["at least one host name"]),
    ("ALLOWED_HOSTS", "https://example.org", ["not a host name", "without http://"]),
    ("ALLOWED_HOSTS", "example.org:8000", ["not a host name", "or a port"]),
    ("CSRF_TRUSTED_ORIGINS", "example.org", ["not an origin", "https://example.org"]),
    ("DEBUG", "maybe", ["maybe", "not a boolean", "1 or 0"]),
    ("SECURE_COOKIES", "sure", ["sure", "not a boolean"]),
    ("SECURE_SSL_REDIRECT", "2", ["not a boolean"]),
    ("SECURE_HSTS_SECONDS", "-1", ["from 0 to 63072000"]),
    ("SECURE_HSTS_INCLUDE_SUBDOMAINS", "y", ["not a boolean"]),
    ("BEHIND_HTTPS_PROXY", "proxy", ["not a boolean"]),
    ("PAIRWISE_VAR_DIR", "/dev/null/var", ["/dev/null/var", "a folder Pairwise can write to"]),
    ("PAIRWISE_RUNS_DIR", "/dev/null/runs", ["/dev/null/runs", "a folder Pairwise can write to"]),
    ("PAIRWISE_RUN_HEARTBEAT_SECONDS", "0", ["=0", "from 1 to 600"]),
    ("PAIRWISE_RUN_LOST_AFTER_SECONDS", "4", ["=4", "from 5 to 86400"]),
    ("PAIRWISE_RUN_LOST_AFTER_SECONDS", "20", ["=20", "too short", "3 x PAIRWISE_RUN_HEARTBEAT_SECONDS"]),
    ("PAIRWISE_RUN_RESEND_AFTER_SECONDS", "9", ["=9", "from 10 to 86400"]),
    ("PAIRWISE_TRAINING_PROCESSES", "0", ["=0", "from 1 to 64"]),
    ("PAIRWISE_SCORE_DEVICE", "tpu", ["tpu", "auto, cpu, cuda"]),
]


@pytest.mark.parametrize(("name", "value", "words"), BAD_VALUES, ids=[f"{n}={v}" for n, v, _ in BAD_VALUES])
def test_a_bad_value_stops_manage_py_with_one_line_naming_it(tmp_path, name, value, words):
    result = _manage(tmp_path, "check", **{name: value})
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"Configuration error: {name}="), lines[0]
    for word in words:
        assert word in lines[0], lines[0]
    assert "hunter2" not in result.stderr and ":secret@" not in result.stderr  # passwords stay masked


def test_every_variable_the_settings_read_has_a_bad_value_case_and_a_readme_row():
    tested = {name for name, _, _ in BAD_VALUES} | {"SECRET_KEY"}  # SECRET_KEY: tests below
    documented = set(re.findall(r"^\| `([A-Z_]+)`(?: / `([A-Z_]+)`|, `([A-Z_]+)`)?", README, re.M))
    documented_names = {name for row in documented for name in row if name}
    assert set(_CONFIG_VARIABLES) <= tested
    assert set(_CONFIG_VARIABLES) <= documented_names


def test_the_documented_defaults_and_bounds_start(tmp_path):
    result = _manage(
        tmp_path,
        "check",
        PAIRWISE_MAX_REQUEST_BYTES="1073741824",
        PAIRWISE_MAX_IMPORT_ITEMS="1",
        DATABASE_CONN_MAX_AGE="0",
        LOG_LEVEL="warning",
        REDIS_URL="rediss://:pw@redis.example.org:6380/2",
        ALLOWED_HOSTS="example.org, .example.net,[::1]",
        CSRF_TRUSTED_ORIGINS="https://example.org,http://localhost:8000",
        DATABASE_URL="postgres://u:p@db.example.org:5432/pairwise",
    )
    assert result.returncode == 0, result.stderr


def test_env_int_accepts_its_bounds_and_refuses_one_past_them(monkeypatch):
    for value, expected in (("1024", 1024), ("1_073_741_824", 1024**3), ("", 7)):
        monkeypatch.setenv("X_BYTES", value)
        assert env.env_int("X_BYTES", 7, min_value=1024, max_value=1024**3) == expected
    for value in ("1023", "1073741825"):
        monkeypatch.setenv("X_BYTES", value)
        with pytest.raises(env.ImproperlyConfigured, match=rf"^X_BYTES={value} is out of range"):
            env.env_int("X_BYTES", 7, min_value=1024, max_value=1024**3)


def test_log_level_is_any_case_and_stored_as_logging_spells_it(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "debug")
    assert env.env_choice("LOG_LEVEL", "INFO", env.LOG_LEVELS) == "DEBUG"


def test_a_value_with_a_newline_stays_on_one_line(monkeypatch):
    monkeypatch.setenv("LOG_LEVEL", "INFO\nDEBUG")
    with pytest.raises(env.ImproperlyConfigured) as error:
        env.env_choice("LOG_LEVEL", "INFO", env.LOG_LEVELS)
    assert "\n" not in str(error.value)


def test_settings_refuse_to_start_without_a_secret_key_outside_debug(tmp_path):
    result = _manage(tmp_path, "check", unset=("SECRET_KEY",))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "SECRET_KEY is not set" in result.stderr and "secret_key" in result.stderr
    assert _manage(tmp_path, "check", unset=("SECRET_KEY",), DEBUG="1").returncode == 0


def test_a_lost_worker_is_declared_after_six_heartbeats_and_at_least_a_minute_by_default(tmp_path):
    code = "from django.conf import settings; print(settings.PAIRWISE_RUN_LOST_AFTER_SECONDS)"
    for heartbeat, lost_after in ((None, "60"), ("5", "60"), ("30", "180")):
        values = {"PAIRWISE_RUN_HEARTBEAT_SECONDS": heartbeat} if heartbeat else {}
        result = _manage(tmp_path, "shell", "-v", "0", "-c", code, **values)
        assert (result.returncode, result.stdout.strip()) == (0, lost_after), result.stderr


def test_without_secret_key_the_key_scripts_start_wrote_is_used(tmp_path):
    """A quickstart checkout: commands work without exporting SECRET_KEY, with the server's key."""
    key = secrets.token_urlsafe(50)
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret_key").write_text(key + "\n")
    result = _manage(
        tmp_path,
        "shell",
        "-v",
        "0",
        "-c",
        "from django.conf import settings; print(settings.SECRET_KEY)",
        unset=("SECRET_KEY",),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == key
    # An exported key still wins over the file.
    result = _manage(
        tmp_path, "shell", "-v", "0", "-c", "from django.conf import settings; print(settings.SECRET_KEY)"
    )
    assert result.stdout.strip() == "s" * 50


def test_a_relative_var_dir_is_relative_to_the_checkout_not_the_working_directory(tmp_path):
    relative = os.path.relpath(tmp_path / "elsewhere", ROOT)
    environ = _clean_env(tmp_path, PAIRWISE_VAR_DIR=relative)
    code = "from django.conf import settings; print(settings.VAR_DIR)"
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-v", "0", "-c", code],
        cwd=tmp_path,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve() == (tmp_path / "elsewhere").resolve()


def test_a_command_on_a_database_that_is_not_migrated_says_so_in_two_lines(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "p", "response_a": "a", "response_b": "b"}\n')
    result = _manage(tmp_path, "import_pairs", "demo", str(pairs))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr
    assert lines[0] == "Database error: OperationalError: no such table: annotation_project"
    assert "python manage.py migrate" in lines[1]
    # --traceback still shows the whole trace to whoever asks for it.
    assert "Traceback" in _manage(tmp_path, "import_pairs", "demo", str(pairs), "--traceback").stderr


PRODUCTION = {
    "DEBUG": "0",
    "ALLOWED_HOSTS": "pairwise.example.org",
    "CSRF_TRUSTED_ORIGINS": "https://pairwise.example.org",
    "SECURE_COOKIES": "1",
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
}


def test_check_deploy_with_the_documented_production_settings_leaves_only_hsts_preload(tmp_path):
    result = _manage(tmp_path, "check", "--deploy", SECRET_KEY=secrets.token_urlsafe(50), **PRODUCTION)
    assert result.returncode == 0, result.stderr
    assert re.findall(r"\((\w+\.\w+)\)", result.stderr) == ["security.W021"]


def test_healthz_is_not_redirected_to_https(tmp_path):
    """Load balancers and container health checks ask /healthz over plain HTTP, with SSL redirect on."""
    code = (
        "from django.test import Client; c = Client(SERVER_NAME='pairwise.example.org'); "
        "print(c.get('/admin/').status_code, c.get('/healthz').status_code)"
    )
    result = _manage(tmp_path, "shell", "-v", "0", "-c", code, **PRODUCTION)
    assert result.returncode == 0, result.stderr
    admin_status, health_status = result.stdout.split()
    assert admin_status == "301"
    assert health_status in ("200", "503")
