"""Fixtures of the page tests: one Chromium for them all, a fresh context per test, and a login.

Browser tests use pytest-django's live_server (a real server in a thread, static files included), so
their data must be committed: live_server makes every test that uses it transactional.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
OUT = Path(__file__).resolve().parent / "out"  # screenshots; in .gitignore

# Recorded in every page before any of its own scripts: what the page's Content-Security-Policy refused,
# and a flag that any injected script would set (hostile texts call window.pwned()).
_WATCH = """
window.__csp = [];
window.__pwned = [];
window.pwned = function (what) { window.__pwned.push(String(what)); };
document.addEventListener("securitypolicyviolation", function (e) {
  window.__csp.push(e.violatedDirective + " " + e.blockedURI);
});
"""


# One Chromium for all the page tests. Package scope, not session: the variable below is set while it
# lives, and it must be gone before later tests (`check --deploy` refuses it: async.E001).
@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"No Chromium at {CHROMIUM}: scripts/test installs it (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running in this thread, and Django then refuses ORM
    # calls from it (SynchronousOnlyOperation). The tests' own ORM calls are plain synchronous ones.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    playwright = sync_playwright().start()
    chromium = playwright.chromium.launch(
        executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    )
    try:
        yield chromium
    finally:
        chromium.close()
        playwright.stop()
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Tab:
    """A page of a fresh browser context, with the errors it met."""

    def __init__(self, page: Any, base_url: str) -> None:
        self.page = page
        self.base_url = base_url
        self.errors: list[str] = []
        page.on("pageerror", lambda error: self.errors.append(f"pageerror: {error}"))
        page.on(
            "response",
            lambda r: (
                self.errors.append(f"HTTP {r.status} {r.request.method} {r.url}") if r.status >= 400 else None
            ),
        )
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        url = message.location.get("url", "")
        # The browser's own /favicon.ico request on pages that name no icon (the admin's).
        if url.endswith("/favicon.ico"):
            return
        self.errors.append(f"console: {message.text} ({url})")

    def goto(self, path: str) -> Any:
        return self.page.goto(self.base_url + path)

    def login(self, username: str, password: str = "correct-horse-9") -> None:
        """From / as a visitor would: sent to the login page, then back to the project list."""
        self.goto("/")
        assert self.page.url.startswith(self.base_url + "/login/")
        self.page.fill("#id_username", username)
        self.page.fill("#id_password", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_url(self.base_url + "/")

    def login_as(self, user: Any) -> None:
        """A session made on the server side, for tests about what comes after the login page."""
        from django.conf import settings
        from django.test import Client

        client = Client()
        client.force_login(user)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        self.page.context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": self.base_url}]
        )

    def csp_violations(self) -> list[str]:
        return self.page.evaluate("window.__csp")

    def pwned(self) -> list[str]:
        return self.page.evaluate("window.__pwned")

    def assert_clean(self) -> None:
        """No script error, no CSP refusal: rate.js runs whole, and nothing else tried to run."""
        assert self.csp_violations() == []
        assert self.pwned() == []
        assert self.errors == []

    def screenshot(self, name: str) -> None:
        OUT.mkdir(exist_ok=True)
        self.page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)


@pytest.fixture
def tab(browser: Any, live_server: Any) -> Iterator[Callable[..., Tab]]:
    contexts: list[Any] = []

    def open_tab(
        *,
        width: int = 1280,
        height: int = 800,
        scale: float = 1,
        javascript: bool = True,
        phone: bool = False,
    ) -> Tab:
        context = browser.new_context(
            viewport={"width": width, "height": height},
            device_scale_factor=scale,
            java_script_enabled=javascript,
            is_mobile=phone,
            has_touch=phone,
        )
        context.add_init_script(_WATCH)
        context.set_default_timeout(10_000)
        contexts.append(context)
        # 127.0.0.1, not localhost: Chromium tries ::1 first, where the live server does not listen.
        return Tab(context.new_page(), live_server.url.replace("//localhost:", "//127.0.0.1:"))

    yield open_tab
    for context in contexts:
        context.close()
