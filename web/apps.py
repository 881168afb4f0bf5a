from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class WebConfig(AppConfig):
    name = "web"
    verbose_name = "Web"

    def ready(self) -> None:
        from web.usernames import check_lookalike_usernames

        checks.register(check_lookalike_usernames)
