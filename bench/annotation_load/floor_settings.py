"""Settings for the benchmark's floor server: the product's settings with a one-view URLconf."""

from __future__ import annotations

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.annotation_load.floor_urls"
