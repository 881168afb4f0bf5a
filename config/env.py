"""Helpers that read settings from the environment and refuse a bad value with a one-line message.

Every message names the variable, the value it has (passwords in URLs masked) and what it may be, so
that `manage.py` (and the WSGI entry point) can print it alone, without a traceback, and stop.
An unset variable gives the default; so does an empty one, except where noted (an empty list).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# The engines Pairwise runs on: PostgreSQL (row locks with SKIP LOCKED, partial unique indexes) and
# SQLite for the quickstart. dj_database_url knows more (MySQL, Oracle...), which the engine and the
# migrations were never written for.
DATABASE_ENGINES = {
    "django.db.backends.postgresql": "postgres://USER:PASSWORD@HOST:5432/NAME",
    "django.db.backends.sqlite3": "sqlite:////absolute/path.sqlite3",
}
BROKER_SCHEMES = ("redis", "rediss", "filesystem")

_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@/]*@")


def mask_password(url: str) -> str:
    """The URL with its password (if any) replaced by ***, fit for a terminal or a log."""
    return _URL_PASSWORD.sub(r"\1***@", url)


def shown(value: str) -> str:
    """The value as one would type it after NAME= in a shell, with any URL password masked.

    Quoting keeps an empty or spaced value visible; repr() keeps a newline from splitting the message.
    """
    value = mask_password(value)
    return shlex.quote(value) if value.isprintable() else repr(value)


def refuse(name: str, value: str, problem: str, allowed: str) -> ImproperlyConfigured:
    """The one error for a bad value: `NAME=value <problem>: <what is allowed>.`"""
    return ImproperlyConfigured(f"{name}={shown(value)} {problem}: {allowed}.")


def _raw(name: str) -> str | None:
    """The variable's value, or None when it is unset or blank (the caller's default applies)."""
    value = os.environ.get(name)
    return None if value is None or value.strip() == "" else value


def env_str(name: str, default: str | None = None) -> str | None:
    """A free-form string (unchecked: use the helpers below for anything with a shape)."""
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool = False) -> bool:
    """1/0, true/false, yes/no, on/off (any case); empty is false."""
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise refuse(name, value, "is not a boolean", "use 1 or 0 (also true/false, yes/no, on/off)")


def int_range(min_value: int | None, max_value: int | None, note: str = "") -> str:
    """The allowed range in words, e.g. 'an integer from 1 to 1000000'."""
    if min_value is not None and max_value is not None:
        words = f"an integer from {min_value} to {max_value}"
    elif min_value is not None:
        words = f"an integer of at least {min_value}"
    elif max_value is not None:
        words = f"an integer of at most {max_value}"
    else:
        words = "an integer"
    return f"use {words}{f' ({note})' if note else ''}"


def env_int(
    name: str, default: int, *, min_value: int | None = None, max_value: int | None = None, note: str = ""
) -> int:
    """An integer in [min_value, max_value]; `note` says the range in a user's units ('1 KiB to 1 GiB')."""
    value = _raw(name)
    if value is None:
        return default
    allowed = int_range(min_value, max_value, note)
    try:
        number = int(value.strip().replace("_", ""))
    except ValueError:
        raise refuse(name, value, "is not an integer", allowed) from None
    if (min_value is not None and number < min_value) or (max_value is not None and number > max_value):
        raise refuse(name, value, "is out of range", allowed)
    return number


def env_choice(name: str, default: str, choices: Sequence[str]) -> str:
    """One of `choices`, in any case; returned as spelled in `choices`."""
    value = _raw(name)
    if value is None:
        return default
    by_upper = {choice.upper(): choice for choice in choices}
    choice = by_upper.get(value.strip().upper())
    if choice is None:
        raise refuse(name, value, "is not allowed", f"use one of {', '.join(choices)}")
    return choice


def env_list(name: str, default: list[str], *, required: bool = False, item: str = "item") -> list[str]:
    """A comma-separated list. With `required`, a value that lists nothing is refused, not taken as []."""
    value = os.environ.get(name)
    if value is None:
        return default
    items = [item.strip() for item in value.split(",") if item.strip()]
    if required and not items:
        raise refuse(name, value, "lists nothing", f"give at least one {item}, comma-separated")
    return items


def env_hosts(name: str, default: list[str]) -> list[str]:
    """Host names for ALLOWED_HOSTS: at least one, and no scheme, path or port (Django would match none)."""
    hosts = env_list(name, default, required=True, item="host name (e.g. example.org,localhost)")
    allowed = "give host names, comma-separated, without http:// or a port (e.g. example.org,localhost)"
    for host in hosts:
        has_port = re.fullmatch(r"[^\[\]]*:\d+|\[.*\]:\d+", host) is not None
        if "/" in host or has_port:
            raise refuse(name, os.environ[name], f"has {host!r}, which is not a host name", allowed)
    return hosts


def env_origins(name: str, default: list[str]) -> list[str]:
    """Origins for CSRF_TRUSTED_ORIGINS: each with its scheme, as Django requires (https://example.org)."""
    origins = env_list(name, default)
    for origin in origins:
        if not re.fullmatch(r"https?://[^/\s]+", origin):
            raise refuse(
                name,
                os.environ[name],
                f"has {origin!r}, which is not an origin",
                "give scheme://host[:port] items, comma-separated (e.g. https://example.org)",
            )
    return origins


def env_database(name: str, default: str, *, conn_max_age: int) -> dict[str, Any]:
    """DATABASES['default'] from a URL that dj_database_url parses to an engine Pairwise supports."""
    value = _raw(name) or default
    examples = " or ".join(DATABASE_ENGINES.values())
    try:
        config = dict(dj_database_url.parse(value, conn_max_age=conn_max_age, conn_health_checks=True))
    except ValueError as exc:  # dj_database_url's UnknownSchemeError and ParseError are ValueErrors
        problem = "has an unknown scheme" if "Scheme" in str(exc) else "is not a valid URL"
        raise refuse(name, value, problem, f"use {examples} (quote special characters)") from None
    engine = config.get("ENGINE")
    if engine not in DATABASE_ENGINES:
        raise refuse(name, value, "names a database Pairwise does not support", f"use {examples}")
    if not config.get("NAME") or config["NAME"] == ":memory:":
        # An in-memory SQLite database is a different empty database in every process.
        raise refuse(name, value, "names no database", f"use {examples}")
    return config


def env_broker(name: str, default: str) -> str:
    """A Celery broker URL: redis://, rediss:// (Redis with TLS) or filesystem:// (the folder under var/)."""
    value = _raw(name)
    if value is None:
        return default
    allowed = "use redis://HOST:PORT/DB, rediss://HOST:PORT/DB or filesystem://"
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 -- reading it checks it: a port that is not a number raises ValueError
    except ValueError:
        raise refuse(name, value, "is not a valid URL", allowed) from None
    if parts.scheme not in BROKER_SCHEMES:
        raise refuse(name, value, "is not a broker Pairwise supports", allowed)
    if parts.scheme == "filesystem":
        # The transport's folders come from PAIRWISE_VAR_DIR; a path here would be silently ignored.
        if value.strip() != "filesystem://":
            raise refuse(
                name, value, "has a path", "use filesystem:// alone (the folder is var/celery-broker)"
            )
        return "filesystem://"
    if not re.fullmatch(r"/?|/\d+", parts.path):
        raise refuse(name, value, "has a database that is not a number", allowed)
    return value.strip()


def env_dir(name: str, default: Path, *, base: Path) -> Path:
    """A folder, made if missing; a relative path is relative to `base` (the checkout), not to the cwd."""
    value = _raw(name)
    path = default if value is None else base / Path(value.strip()).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        shown_value = str(path) if value is None else value
        raise refuse(
            name, shown_value, f"cannot be used ({exc.strerror})", "use a folder Pairwise can write to"
        ) from None
    return path


def env_secret_key(name: str, key_file: Path, *, debug: bool) -> str:
    """SECRET_KEY, else the key scripts/start wrote to `key_file`, else (only with DEBUG) a fixed one.

    Reading the file lets every `manage.py` command work in a checkout that scripts/start set up,
    without exporting the key by hand. Outside debug there is never a default key.
    """
    value = os.environ.get(name, "").strip()
    if value:
        return value
    try:
        value = key_file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        value = ""
    except (OSError, UnicodeDecodeError) as exc:
        raise ImproperlyConfigured(f"{name} is not set and {key_file} cannot be read ({exc}).") from None
    if value:
        return value
    if debug:
        return "insecure-development-key-used-only-with-DEBUG=1"
    raise ImproperlyConfigured(
        f"{name} is not set and there is no {key_file}: set {name} "
        "(python3 -c 'import secrets; print(secrets.token_urlsafe(50))'), run scripts/start once "
        "(it writes that file), or set DEBUG=1 for a local development key."
    )
