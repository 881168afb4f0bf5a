"""Password guessing: failed logins are counted per address on every way in, and refused past the limit,
the right password included, while other addresses log in as usual."""

from __future__ import annotations

import pytest
from django.test import Client

from web import login_throttle


@pytest.fixture
def victim(make_user):
    return make_user("victim", password="correct-horse-9")


def _login(client: Client, password: str, address: str = "203.0.113.7") -> str:
    response = client.post("/login/", {"username": "victim", "password": password}, REMOTE_ADDR=address)
    return "home" if response.status_code == 302 else response.content.decode()


def test_the_login_page_refuses_an_address_after_too_many_failures(victim):
    client = Client()
    for _ in range(login_throttle.LIMIT):
        assert "correct username and password" in _login(client, "guess")
    refused = _login(client, "correct-horse-9")
    assert "Too many failed logins from your address" in refused
    assert _login(Client(), "correct-horse-9", address="198.51.100.1") == "home"  # others unaffected


def test_the_admin_and_the_token_endpoint_share_the_count(victim, api, admin_user):
    client = Client()
    for _ in range(login_throttle.LIMIT):
        _login(client, "guess")
    admin = client.post(
        "/admin/login/", {"username": "victim", "password": "correct-horse-9"}, REMOTE_ADDR="203.0.113.7"
    )
    assert admin.status_code == 200  # the form again, not a redirect into the admin
    token = api().post(
        "/api/v1/auth/token/",
        {"username": "victim", "password": "correct-horse-9"},
        format="json",
        REMOTE_ADDR="203.0.113.7",
    )
    assert token.status_code == 400 and "token" not in token.json()


def test_a_spoofed_forwarded_header_does_not_reset_the_count(victim):
    client = Client()
    for i in range(login_throttle.LIMIT):
        client.post(
            "/login/", {"username": "victim", "password": "guess"}, REMOTE_ADDR="203.0.113.7",
            HTTP_X_FORWARDED_FOR=f"10.0.0.{i}",
        )  # fmt: skip
    assert "Too many failed logins" in _login(client, "correct-horse-9")
