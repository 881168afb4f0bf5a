"""The rater's pages without a browser: who may open what, the plain form posts (no JavaScript), the
messages for every way an answer can end, and the security headers."""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.test import Client
from django.utils import timezone

from annotation import services
from annotation.models import Assignment, AssignmentStatus, Judgment
from annotation.pages.security import HEADER
from annotation.pages.text import markdown_html


@pytest.fixture
def project(make_project, make_pairs):
    project = make_project("flow", judgments_per_pair=1, instructions="Pick the **better** answer.")
    make_pairs(project, 3)
    return project


@pytest.fixture
def rater(project, make_rater):
    return make_rater(project, username="rita")


def _client(user=None, *, csrf=False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client


RATE = "/projects/flow/rate/"


def _served(client: Client) -> Assignment:
    response = client.get(RATE)
    assert response.status_code == 200
    return Assignment.objects.select_related("pair").get(pk=response.context["assignment"].pk)


# Who may open what


def test_anonymous_visitors_are_sent_to_the_login_page(project):
    client = Client()
    assert client.get("/").headers["Location"] == "/login/"
    assert client.get(RATE).headers["Location"] == f"/login/?next={RATE}"
    assert client.post(RATE, {"assignment": 1, "choice": "left"}).headers["Location"].startswith("/login/")
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    assert Assignment.objects.count() == 0


def test_logging_in_leads_to_the_project_list_and_logging_out_needs_a_post(project, rater):
    client = Client()
    response = client.post("/login/", {"username": "rita", "password": "correct-horse-9"})
    assert response.headers["Location"] == "/"
    home = client.get("/")
    assert b"Flow" in home.content and b"0</strong> done, <strong>3</strong> left" in home.content
    assert b"/admin/" not in home.content
    assert client.get("/logout/").status_code == 405  # a link elsewhere cannot log the rater out
    assert client.post("/logout/").headers["Location"] == "/login/"
    assert client.get("/").headers["Location"] == "/login/"


def test_wrong_password_says_so_on_the_login_page(rater):
    response = Client().post("/login/", {"username": "rita", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_the_project_list_shows_each_projects_progress(project, rater, make_project, make_pairs):
    other = make_project("hidden")
    make_pairs(other, 2)
    client = _client(rater)
    client.post(RATE, {"assignment": _served(client).pk, "choice": "left"})
    home = client.get("/").content.decode()
    assert "<strong>1</strong> done, <strong>2</strong> left" in home
    assert "Hidden" not in home  # a project the rater is not in


def test_staff_see_every_project_and_a_link_to_the_admin(project, make_project, admin_user):
    make_project("another")
    home = _client(admin_user).get("/").content.decode()
    assert "Flow" in home and "Another" in home
    assert 'href="/admin/"' in home


def test_a_rater_cannot_open_a_project_they_are_not_in_nor_any_staff_page(
    project, rater, make_project, make_pairs
):
    other = make_project("other")
    make_pairs(other, 1)
    client = _client(rater)
    assert client.get("/projects/other/rate/").status_code == 404
    assert client.get("/projects/no-such-project/rate/").status_code == 404
    # The admin sends a non-staff user to its own login; the staff API answers 403.
    for url in ("/admin/", "/admin/annotation/project/", "/admin/auth/user/"):
        response = client.get(url)
        assert response.status_code == 302 and response.headers["Location"].startswith("/admin/login/")
    assert client.get("/api/v1/projects/flow/pairs/").status_code == 403
    assert client.get("/api/v1/projects/flow/export/judgments.jsonl").status_code == 403
    assert Assignment.objects.filter(project=other).count() == 0


def test_a_rater_cannot_answer_or_skip_another_raters_assignment(project, rater, make_rater):
    theirs = _served(_client(make_rater(project)))
    client = _client(rater)
    assert client.post(RATE, {"assignment": theirs.pk, "choice": "left"}).status_code == 404
    assert client.post(RATE, {"assignment": theirs.pk, "action": "skip"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == AssignmentStatus.ACTIVE
    assert Judgment.objects.count() == 0


def test_a_form_post_without_csrf_is_refused(project, rater):
    client = _client(rater, csrf=True)
    assignment = _served(client)
    response = client.post(RATE, {"assignment": assignment.pk, "choice": "left"})
    assert response.status_code == 403
    assert Judgment.objects.count() == 0
    # With the token from the page, the same post goes through.
    token = client.cookies["csrftoken"].value
    response = client.post(
        RATE, {"assignment": assignment.pk, "choice": "left", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert Judgment.objects.count() == 1


# The rating page without JavaScript


def test_the_page_shows_the_pair_as_served_and_escapes_everything(make_project, make_rater):
    project = make_project("esc", judgments_per_pair=1, instructions="<b>bold?</b> [x](javascript:alert(1))")
    services.pairs_import(
        project=project,
        items=[{"prompt": "<script>alert(1)</script>", "response_a": "", "response_b": "<i>b</i>"}],
    )
    client = _client(make_rater(project))
    page = client.get("/projects/esc/rate/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
    assert "&lt;i&gt;b&lt;/i&gt;" in page
    assert "(empty response)" in page
    assert "&lt;b&gt;bold?&lt;/b&gt;" in page
    assert 'href="javascript' not in page


def test_a_form_post_records_the_choice_for_the_side_it_was_shown_on(project, rater):
    client = _client(rater)
    for choice in ("left", "right"):
        assignment = _served(client)
        response = client.post(
            RATE, {"assignment": assignment.pk, "choice": choice, "rationale": "why", "client_time_ms": ""}
        )
        assert response.status_code == 302 and response.headers["Location"] == RATE
        judgment = Judgment.objects.get(assignment=assignment)
        shown = assignment.shown_left if choice == "left" else assignment.shown_right
        assert judgment.choice == shown
        assert judgment.shown_left == assignment.shown_left
        assert judgment.rationale == "why" and judgment.client_time_ms is None
        assert judgment.time_on_task_ms is not None
    assert b"Saved." in client.get(RATE).content


def test_nothing_is_saved_without_an_explicit_choice(project, rater):
    client = _client(rater)
    assignment = _served(client)
    response = client.post(RATE, {"assignment": assignment.pk, "rationale": "typed before choosing"})
    assert response.status_code == 400
    assert b"Choose a response (or a tie) first" in response.content
    assert b"typed before choosing" in response.content  # what the rater wrote is kept
    assert Judgment.objects.count() == 0


def test_a_rationale_over_the_cap_is_refused_and_nothing_saved(project, rater):
    client = _client(rater)
    assignment = _served(client)
    response = client.post(RATE, {"assignment": assignment.pk, "choice": "left", "rationale": "x" * 10_001})
    assert response.status_code == 400
    assert b"at most 10000 characters" in response.content
    assert b'maxlength="10000"' in response.content
    assert Judgment.objects.count() == 0


def test_project_rules_come_from_the_service(make_project, make_pairs, make_rater):
    project = make_project(
        "strict", judgments_per_pair=1, allow_tie=False, strength_levels=3, rationale="required"
    )
    make_pairs(project, 1)
    client = _client(make_rater(project))
    url = "/projects/strict/rate/"
    page = client.get(url)
    assert b'value="tie"' not in page.content and b'name="strength"' in page.content
    assignment = page.context["assignment"]
    for body, message in [
        ({"choice": "tie"}, b"does not allow ties"),
        ({"choice": "left", "rationale": "ok"}, b"Required: 1 to 3"),
        ({"choice": "left", "strength": 9, "rationale": "ok"}, b"from 1 to 3"),
        ({"choice": "left", "strength": 2, "rationale": "   "}, b"Required in this project"),
    ]:
        response = client.post(url, {"assignment": assignment.pk, **body})
        assert response.status_code == 400 and message in response.content, body
    assert Judgment.objects.count() == 0
    client.post(url, {"assignment": assignment.pk, "choice": "right", "strength": 2, "rationale": "clearer"})
    judgment = Judgment.objects.get()
    assert (judgment.strength, judgment.rationale) == (2, "clearer")


def test_skip_by_form_post(project, rater):
    client = _client(rater)
    assignment = _served(client)
    response = client.post(RATE, {"assignment": assignment.pk, "action": "skip", "reason": "not my field"})
    assert response.status_code == 302
    assignment.refresh_from_db()
    assert (assignment.status, assignment.skip_reason) == (AssignmentStatus.SKIPPED, "not my field")
    assert _served(client).pair_id != assignment.pair_id
    assert Judgment.objects.count() == 0


def test_an_answer_after_the_lease_went_to_someone_else_is_not_saved_and_says_so(project, rater, make_rater):
    client = _client(rater)
    held = _served(client)
    Assignment.objects.filter(pk=held.pk).update(
        served_at=timezone.now() - timedelta(hours=2), lease_expires_at=timezone.now() - timedelta(hours=1)
    )
    # Another rater now takes the freed place (judgments_per_pair is 1).
    taker = make_rater(project)
    for _ in range(3):
        served = services.assignment_next(project=project, user=taker)
        assert served is not None
        if served.assignment.pair_id == held.pair_id:
            break
        services.judgment_record(assignment_id=served.assignment.pk, user=taker, choice="left")
    response = client.post(RATE, {"assignment": held.pk, "choice": "left"}, follow=True)
    assert b"Your answer was not saved: the hold on that pair ran out" in response.content
    assert not Judgment.objects.filter(assignment=held).exists()


def test_answering_twice_says_the_second_answer_was_not_saved(project, rater):
    client = _client(rater)
    assignment = _served(client)
    client.post(RATE, {"assignment": assignment.pk, "choice": "left"})
    response = client.post(RATE, {"assignment": assignment.pk, "choice": "right"}, follow=True)
    assert b"already had your answer" in response.content and b"this one was not saved" in response.content
    assert Judgment.objects.get().choice == assignment.shown_left


def test_done_and_come_back_later_are_told_apart(make_project, make_pairs, make_rater):
    project = make_project("last", judgments_per_pair=1)
    make_pairs(project, 2)
    first, second = make_rater(project), make_rater(project)
    services.assignment_next(project=project, user=first)  # holds one pair
    client = _client(second)
    served = _served_at(client, "/projects/last/rate/")
    client.post("/projects/last/rate/", {"assignment": served.pk, "choice": "left"})
    response = client.get("/projects/last/rate/")
    assert b"Come back in a few minutes" in response.content
    assert 0 < int(response.headers["Retry-After"]) <= project.lease_seconds
    # Once the other rater has answered, nothing is left for anyone: done.
    held = Assignment.objects.get(rater__user=first)
    services.judgment_record(assignment_id=held.pk, user=first, choice="tie")
    response = client.get("/projects/last/rate/")
    assert b"You are done" in response.content and "Retry-After" not in response.headers


@pytest.mark.django_db(transaction=True)
def test_a_pair_handed_out_right_now_means_one_moment_not_done(make_project, make_pairs, make_rater):
    """The only pair with a place for the rater is held by another request for longer than the claim
    waits: the page says to wait a moment (Retry-After: 1), not that the rater is done."""
    import threading
    import time

    from django.db import connection, transaction

    from annotation.models import Pair

    project = make_project("moment", judgments_per_pair=2)
    make_pairs(project, 1)
    client = _client(make_rater(project))
    locked, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                list(Pair.objects.select_for_update().values_list("pk"))
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        response = client.get("/projects/moment/rate/")
        assert time.monotonic() - started < 5
    finally:
        release.set()
        holder.join()
    assert b"One moment" in response.content and b"You are done" not in response.content
    assert response.headers["Retry-After"] == "1"
    assert b'data-retry-after="1"' in response.content
    assert _served_at(client, "/projects/moment/rate/") is not None


def _served_at(client: Client, url: str) -> Assignment:
    return client.get(url).context["assignment"]


# Text and markdown


@pytest.mark.parametrize(
    "source",
    [
        "[a](javascript:alert(1))",
        "[a](JaVaScRiPt:alert(1))",
        "[a](java&#115;cript:alert(1))",
        "<javascript:alert(1)>",
        "[a](vbscript:msgbox(1))",
        "[a](data:text/html,<script>alert(1)</script>)",
        "![i](javascript:alert(1))",
        "<a href='javascript:alert(1)'>a</a>",
        "<img src=x onerror=alert(1)>",
        "<svg onload=alert(1)>",
        "<iframe src=https://example.org></iframe>",
        "<script>alert(1)</script>",
    ],
)
def test_instructions_markdown_holds_no_active_content(source):
    html = markdown_html(source)
    tags = _Tags()
    tags.feed(html)
    assert {tag for tag, _ in tags.seen} <= {"p", "a", "em", "strong", "code"}, html
    for _, attrs in tags.seen:
        assert not any(name.startswith("on") for name in attrs), html
        assert attrs.get("href", "https:").startswith("https:"), html


class _Tags(HTMLParser):
    """The tags and attributes of some HTML, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, dict(attrs)))


def test_instructions_links_open_beside_the_page():
    assert markdown_html("[guide](https://example.org/guide)") == (
        '<p><a href="https://example.org/guide" target="_blank" rel="noopener noreferrer">guide</a></p>\n'
    )


# Headers


def test_pages_send_a_content_security_policy_without_inline_script(project, rater):
    client = _client(rater)
    for url in ("/", RATE, "/login/", "/api/v1/projects/"):
        response = client.get(url)
        policy = response.headers[HEADER]
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'", url
        assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
        assert "unsafe" not in policy
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["X-Frame-Options"] == "DENY"


def test_our_pages_hold_no_inline_script_style_or_handler(project, rater, make_project):
    client = _client(rater)
    pages = [client.get(url).content.decode() for url in ("/", RATE)]
    pages.append(Client().get("/login/").content.decode())
    make_project("empty").memberships.create(user=rater)
    pages.append(client.get("/projects/empty/rate/").content.decode())
    for html in pages:
        for tag in re.findall(r"<script[^>]*>", html):
            assert "src=" in tag, tag
        assert not re.search(r"<style|\sstyle=|\son[a-z]+=", html)


def test_the_api_docs_run_under_the_policy_with_their_script_from_a_url(rater):
    client = _client(rater)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))
    assert "'unsafe-inline'" in page.headers[HEADER] and "script-src 'self';" in page.headers[HEADER]
    script = client.get("/api/docs/?script=")
    assert script.status_code == 200 and b"SwaggerUIBundle" in script.content


def test_the_rating_page_is_never_cached_so_back_shows_the_current_pair(project, rater):
    response = _client(rater).get(RATE)
    assert "no-store" in response["Cache-Control"]


def test_head_on_the_home_page_answers_like_get(rater):
    assert Client().head("/").status_code == 302
    assert _client(rater).head("/").status_code == 200


# The pair fragment (rate.js loads it for the next pair) and the time on the page


def test_the_pair_fragment_is_the_raters_own_pair_as_the_page_shows_it(project, rater, make_rater):
    from annotation.models import Pair

    client = _client(rater)
    assignment = _served(client)
    Pair.objects.filter(pk=assignment.pair_id).update(
        messages=[
            {"role": "user", "content": "Hi *there*"},
            {"role": "assistant", "content": "Yo"},
            {"role": "user", "content": "What is `2+2`?"},
        ]
    )
    url = f"/projects/flow/rate/pair/{assignment.pk}/"
    fragment = client.get(url)
    assert fragment.status_code == 200 and "no-store" in fragment["Cache-Control"]
    html = fragment.content.decode()
    assert html.lstrip().startswith("{#") is False and 'id="pair"' in html
    assert "Hi <em>there</em>" in html and "What is <code>2+2</code>?" in html
    assert html.count('class="turn user"') == 2 and 'class="turn assistant"' in html
    left = assignment.text_on("left")
    assert 'id="text-left"' in html and left in html
    # The page itself shows the same pair the same way.
    page = client.get(RATE).content.decode()
    start = page.index('<div class="pair" id="pair"')
    assert page[start : start + len(html.strip())] == html.strip()
    # Anyone else: not found; nobody: the login page; an id out of range: not found.
    assert _client(make_rater(project)).get(url).status_code == 404
    assert Client().get(url).status_code == 302
    assert client.get("/projects/flow/rate/pair/9223372036854775808/").status_code == 404
    assert client.post(url).status_code == 405


def test_the_page_shows_the_time_spent_today(project, rater):
    client = _client(rater)
    assignment = _served(client)
    services.judgment_record(assignment_id=assignment.pk, user=rater, choice="left", client_time_ms=3_900_000)
    page = client.get(RATE).content.decode()
    assert 'data-today-ms="3900000"' in page and 'id="time-today">1 h 05 min<' in page
    # Yesterday's judgments do not count.
    Judgment.objects.update(created_at=timezone.now() - timedelta(days=1, hours=1))
    assert 'id="time-today">0 min<' in client.get(RATE).content.decode()


def test_an_instruction_image_the_page_cannot_load_is_shown_as_text():
    html = markdown_html(
        "See ![the scale](https://example.org/scale.png) and ![dot](data:image/png;base64,iVBORw0KGgo=)"
    )
    assert (
        "<img" in html and 'src="data:image/png;base64,iVBORw0KGgo="' in html
    )  # the CSP allows data: images
    assert html.count("<img") == 1
    assert '<span class="image-ref">[image: the scale] &lt;https://example.org/scale.png&gt;</span>' in html
