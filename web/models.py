"""The one table of web/: failed logins counted per window (web.login_throttle)."""

from __future__ import annotations

from django.db import models


class LoginFailures(models.Model):
    """Failed logins under one key (an address, or an address and a username) in a window that starts at
    the first failure. The key is a digest, so the table names neither addresses nor usernames."""

    key = models.CharField(max_length=64, primary_key=True)
    failures = models.PositiveIntegerField()
    # Indexed: expired rows are deleted by this column on every failure.
    window_ends_at = models.DateTimeField(db_index=True)

    class Meta:
        verbose_name_plural = "login failures"

    def __str__(self) -> str:
        return f"{self.failures} failed logins until {self.window_ends_at:%Y-%m-%d %H:%M:%S}"
