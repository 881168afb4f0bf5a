"""The boundaries of DESIGN.md, each checked in a fresh interpreter so that nothing the test run already
imported can hide an import, or, between the apps (which Django imports together), by reading every import
statement."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def modules_after(code: str, **env: str) -> set[str]:
    """The top-level packages imported by running `code` in a new Python process."""
    script = f"{code}\nimport sys\nprint('\\n'.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(result.stdout.split())


def imports_by_file(package: str) -> dict[str, set[str]]:
    """The top-level packages each module of `package` imports, read from its import statements: those
    inside functions too, which importing the module would not run."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add(package if node.level else (node.module or "").split(".")[0])
        found[str(path.relative_to(ROOT))] = imported
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("annotation", {"reward_models"}), ("web", {"annotation", "reward_models"})],
    ids=["annotation imports no reward_models", "web imports neither app"],
)
def test_a_lower_layer_imports_nothing_above_it(package, forbidden):
    imports = imports_by_file(package)
    assert "django" in set().union(*imports.values())  # the check can fail: the walk does find imports
    assert {path: sorted(names & forbidden) for path, names in imports.items() if names & forbidden} == {}


def test_the_trainer_imports_no_django():
    imported = modules_after(
        "import rm_training.cli, rm_training.train, rm_training.evaluate, rm_training.scoring"
    )
    assert "torch" in imported  # the check can fail: these modules do import their own dependencies
    assert "django" not in imported


@pytest.mark.parametrize(
    "module",
    [
        "rm_training.config",
        "rm_training.data",
        "rm_training.votes",
        "rm_training.progress",
        "rm_training.conversation",
    ],
)
def test_the_trainers_config_and_data_import_no_torch(module):
    imported = modules_after(f"import {module}")
    assert "rm_training" in imported
    assert not {"torch", "transformers", "django"} & imported


def test_starting_the_web_app_imports_no_torch():
    imported = modules_after(
        "from config.wsgi import application\n"
        "from django.urls import get_resolver\n"
        "get_resolver().url_patterns\n"  # every URL module and the views behind it
        "import django.contrib.admin; django.contrib.admin.autodiscover()",
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="1",
        PAIRWISE_VAR_DIR=str(ROOT / "var"),
    )
    assert {"django", "rest_framework", "annotation"} <= imported
    assert not {"torch", "transformers"} & imported


def test_the_judgment_vocabulary_is_the_same_for_the_trainer_and_the_app():
    from annotation.models import Choice, Side
    from rm_training import votes

    assert Choice.values == list(votes.CHOICES)
    assert Side.values == list(votes.SIDES)
