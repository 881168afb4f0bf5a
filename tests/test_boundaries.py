"""The boundaries of DESIGN.md, each checked in a fresh interpreter so that nothing the test run already
imported can hide an import."""

from __future__ import annotations

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


def test_the_trainer_imports_no_django():
    imported = modules_after(
        "import rm_training.cli, rm_training.train, rm_training.evaluate, rm_training.scoring"
    )
    assert "torch" in imported  # the check can fail: these modules do import their own dependencies
    assert "django" not in imported


@pytest.mark.parametrize(
    "module", ["rm_training.config", "rm_training.data", "rm_training.votes", "rm_training.progress"]
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
