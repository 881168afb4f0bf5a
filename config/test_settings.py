"""Settings for the test suite: PostgreSQL and Redis on this machine unless the environment says otherwise."""

from __future__ import annotations

import os

os.environ.setdefault("SECRET_KEY", "test-suite-only-not-a-secret")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/pairwise")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

from .settings import *  # noqa: F403

_test_cache_url = os.environ.get("PAIRWISE_TEST_CACHE_URL", "redis://127.0.0.1:6379/14")

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests

# The cache in a Redis database of its own, emptied before each test (tests/conftest.py), so that throttle
# counts never leak from one test into another and the broker's database is left alone.
CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _test_cache_url}}
