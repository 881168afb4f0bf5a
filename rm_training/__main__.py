"""Runs the command line: ``python -m rm_training train | eval | score``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
