"""The rater's own judgments and the correction of one, as plain pages (no JavaScript): what the rating
page's Undo opens, who may open it, the window, and the list, paged and escaped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from annotation import services
from annotation.models import Judgment, JudgmentRevision, Pair
from annotation.pages.views import MY_JUDGMENTS_PAGE


@pytest.fixture
def project(make_project, make_pairs):
    project = make_project("fix", judgments_per_pair=1, strength_levels=3, correction_seconds=120)
    make_pairs(project, 3)
    return project


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _judge(client, choice="left", strength="1", rationale="first"):
    page = client.get("/projects/fix/rate/")
    assignment = page.context["assignment"]
    response = client.post(
        "/projects/fix/rate/",
        {"assignment": assignment.pk, "choice": choice, "strength": strength, "rationale": rationale},
    )
    assert response.status_code == 302
    return Judgment.objects.get(assignment=assignment)


def test_undo_on_the_rating_page_opens_the_pair_with_the_old_answer_and_corrects_it(project, make_rater):
    client = _client(make_rater(project))
    assert client.get("/projects/fix/rate/").context["undo"] is None
    judgment = _judge(client, "left", "2", "first try")
    page = client.get("/projects/fix/rate/")
    url = f"/projects/fix/my-judgments/{judgment.pk}/"
    assert page.context["undo"]["id"] == judgment.pk
    assert f'href="{url}"' in page.content.decode()

    correcting = client.get(url)
    html = correcting.content.decode()
    assert correcting.status_code == 200 and "You are correcting your answer" in html
    assert 'value="left" id="choice-left" required aria-keyshortcuts="1" checked' in html
    assert 'id="strength-2" aria-keyshortcuts="Shift+2" checked' in html
    assert ">first try</textarea>" in html
    assert correcting.context["assignment"].pk == judgment.assignment_id
    assert 'id="skip-form"' not in html  # a judged pair is not skipped

    response = client.post(url, {"choice": "right", "strength": "3", "rationale": "second"}, follow=True)
    assert response.redirect_chain[-1][0] == "/projects/fix/rate/"
    assert "Corrected." in response.content.decode()
    judgment.refresh_from_db()
    assert (judgment.strength, judgment.rationale) == (3, "second")
    assert JudgmentRevision.objects.get().rationale == "first try"
    # The rater goes back to the pair they held, not a new one.
    assert response.context["assignment"].pk == page.context["assignment"].pk


def test_a_refused_correction_shows_the_page_again_with_the_error(project, make_rater):
    client = _client(make_rater(project))
    judgment = _judge(client)
    url = f"/projects/fix/my-judgments/{judgment.pk}/"
    response = client.post(url, {"choice": "right", "strength": "9"})
    assert response.status_code == 400 and "Must be a whole number from 1 to 3." in response.content.decode()
    response = client.post(url, {"strength": "1"})
    assert response.status_code == 400
    assert not JudgmentRevision.objects.exists()


def test_past_the_window_the_correction_page_says_so(project, make_rater):
    client = _client(make_rater(project))
    judgment = _judge(client)
    Judgment.objects.filter(pk=judgment.pk).update(created_at=timezone.now() - timedelta(seconds=121))
    assert client.get("/projects/fix/rate/").context["undo"] is None
    url = f"/projects/fix/my-judgments/{judgment.pk}/"
    for response in (
        client.get(url, follow=True),
        client.post(url, {"choice": "right", "strength": "1"}, follow=True),
    ):
        assert "can no longer be corrected" in response.content.decode()
    assert not JudgmentRevision.objects.exists()


def test_nobody_else_opens_or_corrects_a_raters_judgment(project, make_rater, make_user):
    owner = make_rater(project)
    judgment = _judge(_client(owner))
    url = f"/projects/fix/my-judgments/{judgment.pk}/"
    anonymous = Client().post(url, {"choice": "right", "strength": "1"})
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")
    for user in (make_rater(project), make_user("boss", staff=True)):
        client = _client(user)
        assert client.get(url).status_code == 404
        assert client.post(url, {"choice": "right", "strength": "1"}).status_code == 404
    assert _client(make_user("outsider")).get("/projects/fix/my-judgments/").status_code == 404
    assert not JudgmentRevision.objects.exists()


def test_the_list_is_the_raters_own_newest_first_paged_and_escaped(make_project, make_rater, make_user):
    project = make_project("fix", judgments_per_pair=2, correction_seconds=120)
    count = MY_JUDGMENTS_PAGE + 2
    services.pairs_import(
        project=project,
        items=[
            {
                "prompt": f"<b>bold</b> {i} <script>pwned()</script>",
                "response_a": f"a{i}",
                "response_b": f"b{i}",
            }
            for i in range(count)
        ],
    )
    user, other = make_rater(project), make_rater(project)
    mine = []
    for _ in range(count):
        served = services.assignment_next(project=project, user=user)
        mine.append(services.judgment_record(assignment_id=served.assignment.pk, user=user, choice="left"))
    served = services.assignment_next(project=project, user=other)
    services.judgment_record(assignment_id=served.assignment.pk, user=other, choice="left")
    services.judgment_correct(judgment_id=mine[-1].pk, user=user, choice="tie")

    client = _client(user)
    first = client.get("/projects/fix/my-judgments/")
    html = first.content.decode()
    ids = [item["judgment"].pk for item in first.context["items"]]
    assert ids == [j.pk for j in reversed(mine)][:MY_JUDGMENTS_PAGE]
    assert "<script>" not in html and "&lt;script&gt;pwned()&lt;/script&gt;" in html
    assert "Corrected; earlier: Response 1" in html
    assert html.count("Correct this answer") == MY_JUDGMENTS_PAGE
    second = client.get(f"/projects/fix/my-judgments/?before={first.context['older']}")
    assert [item["judgment"].pk for item in second.context["items"]] == [mine[1].pk, mine[0].pk]
    assert second.context["older"] is None
    for junk in ("9223372036854775808", "-1", "x", "1.5", "²"):
        assert client.get(f"/projects/fix/my-judgments/?before={junk}").context["first_page"] is True
    # Past the window no answer offers a correction.
    Judgment.objects.update(created_at=timezone.now() - timedelta(hours=1))
    assert "Correct this answer" not in client.get("/projects/fix/my-judgments/").content.decode()
    assert Pair.objects.count() == count
