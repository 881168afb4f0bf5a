"""Database outages: telling them from bugs, and logging each one twice (when it starts, when it ends) while
every request it fails is answered 503 with Retry-After (web.api.exception_handler, config.errors)."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg
from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.db.backends.signals import connection_created
from django.http import HttpResponseBase

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
DETAIL = "The database is unavailable; try again in a few seconds."

# SQLSTATEs the server sends when it is going away or cannot take us now: class 08 (connection exception),
# shutting down (57P01 admin, 57P02 crash), starting up or recovering (57P03), out of connections (53300).
# Everything else a query can raise (syntax, constraints, a cancelled statement, a deadlock) is a 500.
_UNAVAILABLE = frozenset({"57P01", "57P02", "57P03", "53300"})

Answer = TypeVar("Answer", bound=HttpResponseBase)


@dataclass
class _Outage:
    started: float
    answered: int = 0


_lock = threading.Lock()  # gthread workers answer from several threads
_outage: _Outage | None = None


def is_database_outage(exc: BaseException) -> bool:
    """Is exc PostgreSQL being unreachable or going away (503, try again), rather than a bug (500)?"""
    if not isinstance(exc, OperationalError | InterfaceError):
        return False
    cause = exc.__cause__
    if not isinstance(cause, psycopg.Error):
        return False  # SQLite's OperationalError is a bug ("no such table"): its file cannot go away
    if cause.sqlstate is not None:
        return cause.sqlstate.startswith("08") or cause.sqlstate in _UNAVAILABLE
    # No SQLSTATE: the client's own error. An outage only if it cost us the connection (refused, reset,
    # closed by the server), not a misuse of one that still works.
    raw = connections[DEFAULT_DB_ALIAS].connection
    return raw is None or bool(raw.closed or raw.broken)


def outage_answer(exc: BaseException, response: Answer) -> Answer:
    """response, a 503, as the answer to exc: with Retry-After, and no log line of its own (Django's
    request log would write one per request); the outage is logged once, when it starts."""
    global _outage
    with _lock:
        if _outage is None:
            _outage = _Outage(started=time.monotonic())
            logger.warning(
                "Database unavailable (%s: %s); answering 503 until it is back.",
                type(exc.__cause__ or exc).__name__,
                " ".join(str(exc).split()),
            )
        _outage.answered += 1
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response._has_been_logged = True  # type: ignore[attr-defined]  # django.utils.log.log_response skips it
    return response


def _database_back(sender: Any, connection: Any, **kwargs: Any) -> None:
    """A new connection succeeded: the outage, if this process saw one, is over."""
    global _outage
    with _lock:
        if _outage is None:
            return
        outage, _outage = _outage, None
    logger.warning(
        "Database back after %.0f s; %d requests were answered 503.",
        time.monotonic() - outage.started,
        outage.answered,
    )


# An outage is only ever recorded through this module, so connecting here, at import, is early enough. A
# failed connection is closed at the end of its request, so the first request after an outage connects anew.
connection_created.connect(_database_back)
