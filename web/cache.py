"""The cache as a speed-up only: while it (Redis) is unreachable a read is a miss and a write is skipped,
so what is cached (agreement reports, charts) is computed from the database instead; one warning per
outage in each process, not one per request."""

from __future__ import annotations

import logging
from typing import Any

from django.core.cache import cache
from redis.exceptions import RedisError

from web.statelog import StateLog

logger = logging.getLogger(__name__)

_state = StateLog(logger, up_level=logging.WARNING)
_DOWN = "The cache is unreachable, computing without it until it is back: %s"
_UP = "The cache is reachable again."


def cache_get(key: str) -> Any:
    """The cached value, or None when there is none or the cache is unreachable."""
    try:
        value = cache.get(key)
    except RedisError as exc:
        _state.down(_DOWN, exc)
        return None
    _state.up(_UP)
    return value


def cache_set(key: str, value: Any, timeout: int) -> None:
    """Cache the value for `timeout` seconds; nothing when the cache is unreachable."""
    try:
        cache.set(key, value, timeout)
    except RedisError as exc:
        _state.down(_DOWN, exc)
        return
    _state.up(_UP)
