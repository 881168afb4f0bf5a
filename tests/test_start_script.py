"""scripts/start: it says "running" only when its own server answers, and says why not otherwise.

Each run has its own var folder (SQLite, file-system broker) and port, so nothing here touches the
checkout's var/ or port 8000. Runs that start servers are stopped through their process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
START = ROOT / "scripts" / "start"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (ROOT / ".venv" / "bin" / "python").exists(), reason="needs the .venv scripts/test makes"
    ),
]

_OURS = (
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "DJANGO_SETTINGS_MODULE",
    "ALLOWED_HOSTS",
)


def _env(var_dir: Path, port: int, **values: str) -> dict[str, str]:
    environ = {
        k: v for k, v in os.environ.items() if k not in _OURS and not k.startswith(("PAIRWISE_", "GUNICORN"))
    }
    environ.update(PAIRWISE_VAR_DIR=str(var_dir), PORT=str(port), WEB_WORKERS="1")
    environ.update(values)
    return environ


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(var_dir: Path, port: int, timeout: float = 180, **values: str) -> subprocess.CompletedProcess[str]:
    """A run of scripts/start that is expected to stop by itself; whatever it left running is stopped."""
    process = subprocess.Popen(
        [str(START)],
        env=_env(var_dir, port, **values),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _stop(process)
        raise
    finally:
        # A script that went wrong may leave servers behind in its group: never leak them.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM to the script's group (its trap stops the three servers), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):  # anything the script failed to stop
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int, str]]:
    """One Pairwise started by scripts/start: its var folder, port and what it printed."""
    var_dir = tmp_path_factory.mktemp("start") / "var"
    port = _free_port()
    out_path = var_dir.parent / "start.out"
    with out_path.open("w") as out:
        process = subprocess.Popen(
            [str(START)],
            env=_env(var_dir, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        while "Ctrl-C stops everything" not in out_path.read_text():
            assert process.poll() is None, out_path.read_text()
            assert time.monotonic() < deadline, out_path.read_text()
            time.sleep(0.5)
        yield var_dir, port, out_path.read_text()
    finally:
        _stop(process)


def _logins(output: str) -> dict[str, str]:
    rows = [line.split() for line in output.splitlines() if "username:" in line]
    return {row[row.index("username:") + 1]: row[row.index("password:") + 1] for row in rows}


def test_start_prints_running_and_two_logins_that_work(running):
    var_dir, port, output = running
    assert f"Pairwise is running at http://127.0.0.1:{port}/" in output
    logins = _logins(output)
    assert set(logins) == {"demo-admin", "demo-rater"}
    assert logins["demo-admin"] != logins["demo-rater"]
    for username, password in logins.items():
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/auth/token/",
            data=json.dumps({"username": username, "password": password}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200 and json.load(response)["token"]
    # The passwords are printed, never logged.
    assert logins["demo-admin"] not in (var_dir / "log" / "start.log").read_text()


def test_commands_work_in_the_started_folder_without_exporting_the_secret_key(running, tmp_path):
    var_dir, port, _ = running
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"external_id": "mine-1", "prompt": "p", "response_a": "a", "response_b": "b"}\n')
    environ = _env(var_dir, port)
    result = subprocess.run(
        [sys.executable, "manage.py", "import_pairs", "demo", str(pairs)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "1 pairs created" in result.stdout
    result = subprocess.run(
        [sys.executable, "manage.py", "import_pairs", "no-such-project", str(pairs)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip() == "CommandError: No project 'no-such-project'."


def test_a_second_start_on_the_same_port_says_pairwise_is_already_there(running):
    var_dir, port, _ = running
    result = _start(var_dir, port)
    assert result.returncode != 0
    assert "Pairwise is running" not in result.stdout
    message = result.stderr.strip()
    assert message.startswith(
        f"Pairwise did not start: port {port} on 127.0.0.1 is in use by another Pairwise"
    )
    assert "set PORT=" in message and len(message.splitlines()) == 1


def test_a_port_taken_by_another_program_is_named_with_a_port_to_use_instead(tmp_path):
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        result = _start(tmp_path / "var", port)
    assert result.returncode != 0
    assert "Pairwise is running" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert f"port {port} on 127.0.0.1 is in use by another program: stop it, or set PORT=" in lines[0]


def test_a_web_server_that_stops_is_reported_not_called_running(running):
    """The pre-check passes, then our gunicorn dies: the script must notice, not print the logins."""
    var_dir, _, _ = running
    result = _start(var_dir, _free_port(), GUNICORN_CMD_ARGS="--worker-class no-such-worker")
    assert result.returncode == 1
    assert "Pairwise is running" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("Pairwise did not start: the web server (gunicorn) stopped: Error: class uri")
    assert lines[1] == f"Logs: {var_dir}/log/web.log."


def test_a_failing_step_is_summed_up_with_the_trace_in_start_log(tmp_path):
    with socket.socket() as closed:  # a port with nothing on it
        closed.bind(("127.0.0.1", 0))
        db_port = closed.getsockname()[1]
    result = _start(
        tmp_path / "var", _free_port(), DATABASE_URL=f"postgres://u:hunter2@127.0.0.1:{db_port}/x"
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Pairwise did not start: migrating the database failed (exit status 1):"
    assert lines[1].startswith("Database error: OperationalError: connection failed")
    assert lines[-1] == f"The full output is in {tmp_path}/var/log/start.log."
    assert len(lines) == 4 and "Traceback" not in result.stderr and "hunter2" not in result.stderr
    assert "Database error" in (tmp_path / "var" / "log" / "start.log").read_text()


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "80000", "PORT=80000 is not a port: use an integer from 1 to 65535."),
        ("PORT", "http", "PORT=http is not a port: use an integer from 1 to 65535."),
        ("WEB_WORKERS", "0", "WEB_WORKERS=0 is out of range: use an integer from 1 to 64."),
    ],
)
def test_start_checks_its_own_variables(tmp_path, name, value, message):
    result = _start(tmp_path / "var", 8000, **{name: value})
    assert result.returncode == 2
    assert result.stderr.strip() == message


def test_a_bad_setting_stops_start_with_its_message(tmp_path):
    result = _start(tmp_path / "var", _free_port(), PAIRWISE_MAX_REQUEST_BYTES="-5")
    assert result.returncode == 2
    assert "Configuration error: PAIRWISE_MAX_REQUEST_BYTES=-5 is out of range" in result.stderr
    assert "Traceback" not in result.stderr


def _masters(web_log: Path, port: int) -> list[int]:
    """The pids of the gunicorn masters that listened on the port, in order."""
    return [
        int(pid)
        for pid in re.findall(rf"Listening at: http://127\.0\.0\.1:{port} \((\d+)\)", web_log.read_text())
    ]


def test_a_killed_web_server_is_started_again_on_its_port(running):
    """kill -9 of the gunicorn master: its workers die with it, and the script starts a new one that binds."""
    var_dir, port, _ = running
    web_log = var_dir / "log" / "web.log"
    killed = _masters(web_log, port)[-1]
    os.kill(killed, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while _masters(web_log, port)[-1] == killed:
        assert time.monotonic() < deadline, web_log.read_text()[-3000:]
        time.sleep(0.5)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        assert response.status == 200
    said = (var_dir.parent / "start.out").read_text()
    assert "the web server (gunicorn) stopped (exit status 137)" in said and "starting it again." in said
