"""The README's shell commands work when run again: each export command of it, run twice against a live
server in the same folder, succeeds both times and leaves the export's file (curl -OJ refused the second
time with exit 23, the file being there)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from rest_framework.authtoken.models import Token

README = Path(__file__).resolve().parents[1] / "README.md"


def _shell_commands(markdown: str) -> list[str]:
    """Every command of the README's ```sh blocks, continuation lines joined, comments left out."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", markdown, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            if command.strip() and not command.lstrip().startswith("#"):
                commands.append(command.strip())
    return commands


def test_the_readme_names_its_export_commands():
    exports = [c for c in _shell_commands(README.read_text()) if c.startswith("curl") and "/export/" in c]
    assert len(exports) == 2 and all(" -OJ" not in c and " -J" not in c for c in exports)


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl on this machine")
@pytest.mark.django_db(transaction=True)
def test_every_export_command_of_the_readme_works_twice(live_server, admin_user, make_project, tmp_path):
    make_project("demo")
    token = Token.objects.create(user=admin_user).key
    host = live_server.url.removeprefix("http://")
    exports = [c for c in _shell_commands(README.read_text()) if c.startswith("curl") and "/export/" in c]
    for command in exports:
        command = command.replace("localhost:8000", host)
        for attempt in (1, 2):
            done = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp_path,
                env={"TOKEN": token, "PATH": "/usr/bin:/bin"},
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, (attempt, command, done.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo-judgments.jsonl", "demo-preferences.jsonl"]
