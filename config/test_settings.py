"""Settings for the test suite: PostgreSQL and Redis on this machine unless the environment says otherwise."""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "test-suite-only-not-a-secret")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/pairwise")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

from .settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
