"""Password guessing: failed logins are counted on every way in, per address and username and, with a
higher limit, per address, and refused past either limit, the right password included, while other
usernames (up to the address's limit) and other addresses log in as usual."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from web.models import LoginFailures

PER_USER = settings.PAIRWISE_LOGIN_FAILURES_PER_USER
OFFICE = "203.0.113.7"


@pytest.fixture
def victim(make_user):
    return make_user("victim", password="correct-horse-9")


def _login(client: Client, password: str, address: str = OFFICE, username: str = "victim") -> str:
    response = client.post("/login/", {"username": username, "password": password}, REMOTE_ADDR=address)
    return "home" if response.status_code == 302 else response.content.decode()


def _token(api, username: str, password: str, address: str = OFFICE):
    return api().post(
        "/api/v1/auth/token/",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=address,
    )


def test_the_login_page_refuses_an_address_after_too_many_failures(victim):
    client = Client()
    for _ in range(PER_USER):
        assert "correct username and password" in _login(client, "guess")
    refused = _login(client, "correct-horse-9")
    assert "Too many failed logins from your address" in refused
    assert _login(Client(), "correct-horse-9", address="198.51.100.1") == "home"  # others unaffected


def test_the_admin_and_the_token_endpoint_share_the_count(victim, api, admin_user):
    client = Client()
    for _ in range(PER_USER):
        _login(client, "guess")
    admin = client.post(
        "/admin/login/", {"username": "victim", "password": "correct-horse-9"}, REMOTE_ADDR=OFFICE
    )
    assert admin.status_code == 200  # the form again, not a redirect into the admin
    assert "Too many failed logins from your address" in admin.content.decode()
    token = _token(api, "victim", "correct-horse-9")
    assert token.status_code == 429 and "token" not in token.json()


def test_a_spoofed_forwarded_header_does_not_reset_the_count(victim):
    client = Client()
    for i in range(PER_USER):
        client.post(
            "/login/", {"username": "victim", "password": "guess"}, REMOTE_ADDR=OFFICE,
            HTTP_X_FORWARDED_FOR=f"10.0.0.{i}",
        )  # fmt: skip
    assert "Too many failed logins" in _login(client, "correct-horse-9")


def test_one_raters_mistakes_do_not_lock_out_the_others_behind_the_same_address(victim, make_user, api):
    make_user("colleague")
    make_user("admin", staff=True)
    for _ in range(PER_USER + 5):
        _login(Client(), "guess")
    assert "with this username" in _login(Client(), "correct-horse-9")
    assert _login(Client(), "correct-horse-9", username="colleague") == "home"
    assert _token(api, "colleague", "correct-horse-9").status_code == 200
    logged_in = Client()
    response = logged_in.post(
        "/admin/login/?next=/admin/", {"username": "admin", "password": "correct-horse-9"}, REMOTE_ADDR=OFFICE
    )
    assert response.status_code == 302 and logged_in.get("/admin/").status_code == 200


def test_the_address_has_its_own_higher_limit(victim, make_user, settings):
    settings.PAIRWISE_LOGIN_FAILURES_PER_USER = 2
    settings.PAIRWISE_LOGIN_FAILURES_PER_ADDRESS = 5
    make_user("colleague")
    for i in range(5):  # five usernames, one mistake each: no username reaches its limit
        assert "correct username and password" in _login(Client(), "guess", username=f"typo{i}")
    refused = _login(Client(), "correct-horse-9", username="colleague")
    assert "Too many failed logins from your address." in refused and "with this username" not in refused
    assert _login(Client(), "correct-horse-9", address="198.51.100.1") == "home"


def test_refused_logins_do_not_count_towards_the_address(victim, make_user, settings):
    """A script retrying a locked username must not lock out the rest of the office."""
    settings.PAIRWISE_LOGIN_FAILURES_PER_USER = 2
    settings.PAIRWISE_LOGIN_FAILURES_PER_ADDRESS = 4
    make_user("colleague")
    for _ in range(20):
        _login(Client(), "guess")
    assert _login(Client(), "correct-horse-9", username="colleague") == "home"


def test_a_throttled_token_request_is_429_in_the_error_shape_with_retry_after(victim, api):
    answers = [_token(api, "victim", f"guess-{i}") for i in range(PER_USER + 1)]
    assert [a.status_code for a in answers] == [400] * PER_USER + [429]
    assert answers[0].json()["code"] == "invalid_credentials"
    throttled = answers[-1]
    body = throttled.json()
    assert body["code"] == "throttled" and set(body) == {"detail", "code"}
    assert "Too many failed logins" in body["detail"]
    assert 0 < int(throttled["Retry-After"]) <= 600
    right = _token(api, "victim", "correct-horse-9")
    assert right.status_code == 429  # refused without a look at the password
    assert _token(api, "victim", "correct-horse-9", address="198.51.100.1").status_code == 200


def test_logins_work_again_when_the_window_ends(victim, api):
    for _ in range(PER_USER):
        _token(api, "victim", "guess")
    assert _token(api, "victim", "correct-horse-9").status_code == 429
    LoginFailures.objects.update(window_ends_at=timezone.now() - timedelta(seconds=1))
    assert _token(api, "victim", "correct-horse-9").status_code == 200
    # A failure after the window starts a new count at one, and ended windows are deleted.
    assert _token(api, "victim", "guess").status_code == 400
    assert sorted(LoginFailures.objects.values_list("failures", flat=True)) == [1, 1]


def test_a_look_alike_of_the_username_shares_its_count(victim, api):
    """Usernames are one name whatever their case, as the database compares them (UPPER): the name typed
    with dotless i's (U+0131) logs in as 'victim'. Its failures must count against that account, and its
    refusal too: the count was kept under the account's name but looked up under the typed one, so this
    spelling guessed without limit, and logged in past the limit."""
    from django.contrib.auth.models import User

    typed = "v\u0131ct\u0131m"
    assert User.objects.filter(username__iexact=typed).get() == victim  # the database's own rule
    for _ in range(PER_USER):
        assert _token(api, typed, "guess").status_code == 400
    assert _token(api, typed, "guess").status_code == 429
    assert _token(api, typed, "correct-horse-9").status_code == 429
    assert _token(api, "victim", "correct-horse-9").status_code == 429
