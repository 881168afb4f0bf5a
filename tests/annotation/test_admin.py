"""The admin pages an admin works with: lists load with data, search works, history is read-only."""

from __future__ import annotations

from html import escape as html_escape
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation import services
from annotation.models import Assignment, AssignmentStatus, Judgment, Membership, Pair, Project, Rater
from tests.annotation.counters import assert_counters_equal_recount

CHANGELISTS = ["project", "pair", "assignment", "judgment", "rater"]


@pytest.fixture
def judged_project(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=2)
    make_pairs(project, 6)
    for _ in range(2):
        user = make_rater(project)
        for _ in range(3):
            assignment = services.assignment_next(project=project, user=user).assignment
            services.judgment_record(
                assignment_id=assignment.pk, user=user, choice="left", rationale="<b>x</b>"
            )
    return project


@pytest.mark.parametrize("model", CHANGELISTS)
def test_staff_can_list_search_and_filter(client, admin_user, judged_project, model):
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    url = reverse(f"admin:annotation_{model}_changelist")
    assert client.get(url).status_code == 200
    assert client.get(url, {"q": "p1"}).status_code == 200


def test_admin_lists_do_not_grow_queries_with_rows(
    client, admin_user, judged_project, make_pairs, make_rater, django_assert_max_num_queries
):
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    for model in ("pair", "assignment", "judgment"):
        with django_assert_max_num_queries(12):
            assert client.get(reverse(f"admin:annotation_{model}_changelist")).status_code == 200


def test_judgments_and_assignments_are_read_only_in_the_admin(client, admin_user, judged_project):
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    judgment = Judgment.objects.first()
    assignment = Assignment.objects.first()
    assert client.get(reverse("admin:annotation_judgment_add")).status_code == 403
    page = client.get(reverse("admin:annotation_judgment_change", args=[judgment.pk]))
    assert page.status_code == 200 and b'name="_save"' not in page.content
    assert (
        client.post(
            reverse("admin:annotation_judgment_delete", args=[judgment.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert (
        client.post(
            reverse("admin:annotation_assignment_delete", args=[assignment.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert Judgment.objects.filter(pk=judgment.pk).exists()


def test_judged_pairs_cannot_be_edited_in_the_admin(client, admin_user, judged_project):
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    judged = Pair.objects.filter(judgment_count__gt=0).first()
    page = client.get(reverse("admin:annotation_pair_change", args=[judged.pk]))
    assert b'name="_save"' not in page.content
    # A form opened before the pair was judged and saved after: nothing saved, and the admin says why
    # (not a 403 that blames their account).
    response = client.post(
        reverse("admin:annotation_pair_change", args=[judged.pk]),
        {
            "project": judged.project_id,
            "prompt": "rewritten",
            "response_a": "x",
            "response_b": "y",
            "metadata": "{}",
        },
        follow=True,
    )
    assert response.status_code == 200
    assert "This pair was judged since you opened it" in response.content.decode()
    judged.refresh_from_db()
    assert judged.prompt != "rewritten"


def _pair_form(pair: Pair, **changes: Any) -> dict[str, Any]:
    return {
        "project": pair.project_id,
        "external_id": pair.external_id or "",
        "prompt": pair.prompt,
        "response_a": pair.response_a,
        "response_b": pair.response_b,
        "model_a": pair.model_a,
        "model_b": pair.model_b,
        "metadata": "{}",
        "gold": pair.gold or "",
        **changes,
    }


def test_a_pair_a_rater_holds_keeps_its_texts_until_they_are_done(
    superuser_client, make_project, make_pairs, make_rater
):
    """The rater judges the texts they were shown: the admin cannot change them under the rater, and is
    told why; a gold answer may still be set."""
    project = make_project(judgments_per_pair=1)
    make_pairs(project, 1)
    pair = Pair.objects.get()
    rater = make_rater(project)
    held = services.assignment_next(project=project, user=rater).assignment
    url = reverse("admin:annotation_pair_change", args=[pair.pk])
    page = superuser_client.post(
        url, _pair_form(pair, response_a="a much longer answer than before"), follow=True
    )
    assert "A rater holds this pair" in page.content.decode() and "Nothing was saved" in page.content.decode()
    assert Pair.objects.get().response_a == pair.response_a
    assert superuser_client.post(url, _pair_form(pair, gold="b")).status_code == 302
    assert Pair.objects.get().gold == "b"
    judgment = services.judgment_record(assignment_id=held.pk, user=rater, choice="left")
    assert judgment.pair_longer == Pair.objects.get().longer
    assert_counters_equal_recount(project)


def test_a_pairs_external_id_taken_in_its_project_is_a_form_error(superuser_client, make_project, make_pairs):
    project = make_project()
    make_pairs(project, 2)
    first, second = Pair.objects.order_by("id")
    url = reverse("admin:annotation_pair_change", args=[second.pk])
    response = superuser_client.post(url, _pair_form(second, external_id=first.external_id))
    assert response.status_code == 200  # the form again, not a server error
    assert "already has a pair with this external id" in response.content.decode()
    assert Pair.objects.get(pk=second.pk).external_id == second.external_id


@pytest.mark.parametrize("prompt", ["\u200b", "\u200b\u200c", "\u2060\ufeff"])
def test_a_blank_prompt_is_refused_in_the_admin_as_the_import_refuses_it(
    superuser_client, make_project, prompt
):
    project = make_project()
    url = reverse("admin:annotation_pair_add")
    form = {"project": project.pk, "prompt": prompt, "response_a": "a", "response_b": "b", "metadata": "{}"}
    response = superuser_client.post(url, form)
    assert response.status_code == 200
    assert "Must not be empty or blank" in response.content.decode()
    assert not Pair.objects.exists()


def test_model_text_is_escaped_in_the_admin(client, admin_user, make_project):
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    project = make_project()
    services.pairs_import(
        project=project,
        items=[
            {
                "prompt": "<script>alert(1)</script>",
                "response_a": "<img src=x onerror=alert(2)>",
                "response_b": "b",
            }
        ],
    )
    pair = Pair.objects.get()
    listing = client.get(reverse("admin:annotation_pair_changelist")).content.decode()
    detail = client.get(reverse("admin:annotation_pair_change", args=[pair.pk])).content.decode()
    for page in (listing, detail):
        assert "<script>alert(1)</script>" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<img src=x onerror=alert(2)>" not in detail


def test_raters_cannot_open_the_admin(client, make_rater, judged_project):
    rater = make_rater(judged_project)
    client.force_login(rater)
    response = client.get(reverse("admin:annotation_judgment_changelist"))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert Project.objects.exists()


def _project_form(project: Project, **changes: Any) -> dict[str, Any]:
    """The project change form as the admin page posts it, with `changes` applied."""
    data: dict[str, Any] = {
        "name": project.name,
        "instructions": project.instructions,
        "rater_group": "",
        "judgments_per_pair": project.judgments_per_pair,
        "strength_levels": project.strength_levels,
        "rationale": project.rationale,
        "lease_seconds": project.lease_seconds,
        "gold_fraction": project.gold_fraction,
        "very_fast_ms": project.very_fast_ms,
        "selection": project.selection,
        "selection_epsilon": project.selection_epsilon,
        "memberships-TOTAL_FORMS": 0,
        "memberships-INITIAL_FORMS": 0,
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
        **({"allow_tie": "on"} if project.allow_tie else {}),
    }
    data.update(changes)
    return data


def test_removing_a_rater_in_the_admin_gives_their_held_pair_back(
    superuser_client, make_project, make_pairs, make_rater
):
    project = make_project(judgments_per_pair=1)
    make_pairs(project, 1)
    leaver, stayer = make_rater(project), make_rater(project)
    held = services.assignment_next(project=project, user=leaver).assignment
    assert services.assignment_next(project=project, user=stayer) is None  # the one place is held

    url = reverse("admin:annotation_project_change", args=[project.pk])
    response = superuser_client.post(url, _project_form(project, remove_raters=[leaver.pk]))
    assert response.status_code == 302, response.content.decode()[:2000]

    assert not Membership.objects.filter(project=project, user=leaver).exists()
    held.refresh_from_db()
    assert held.status == AssignmentStatus.EXPIRED
    assert services.assignment_next(project=project, user=stayer) is not None


def test_adding_raters_in_the_admin_goes_through_the_service(superuser_client, make_project, make_user):
    project = make_project()
    newcomer = make_user()
    url = reverse("admin:annotation_project_change", args=[project.pk])
    response = superuser_client.post(url, _project_form(project, add_raters=[newcomer.pk]))
    assert response.status_code == 302
    assert Membership.objects.filter(project=project, user=newcomer).exists()
    assert Rater.objects.filter(user=newcomer).exists()  # the service makes the rater row too


def test_a_pair_cannot_be_moved_to_another_project_in_the_admin(superuser_client, make_project, make_pairs):
    """Moved, an unjudged pair was counted out of and back into its new project only (pair_save): the old
    project kept it among its open pairs and the new one never counted it, which the engine's count of a
    rater's candidates (uncertainty selection's propensities) reads."""
    home, other = make_project("home"), make_project("other")
    make_pairs(home, 2)
    pair = Pair.objects.filter(project=home).first()
    url = reverse("admin:annotation_pair_change", args=[pair.pk])
    page = superuser_client.get(url).content.decode()
    assert 'name="project"' not in page
    form = {"project": other.pk, "prompt": "moved", "response_a": "x", "response_b": "y", "metadata": "{}"}
    response = superuser_client.post(url, form)
    assert response.status_code == 302
    pair.refresh_from_db()
    assert (pair.project_id, pair.prompt) == (home.pk, "moved")
    assert_counters_equal_recount(home)
    assert_counters_equal_recount(other)


def test_the_slug_cannot_be_renamed_in_the_admin(superuser_client, make_project):
    project = make_project("fixed-slug")
    url = reverse("admin:annotation_project_change", args=[project.pk])
    page = superuser_client.get(url).content.decode()
    assert 'name="slug"' not in page
    response = superuser_client.post(url, _project_form(project, slug="renamed", name="New name"))
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.slug, project.name) == ("fixed-slug", "New name")


def test_a_project_created_in_the_admin_is_checked_by_the_service(superuser_client):
    url = reverse("admin:annotation_project_add")
    form = {
        "slug": "from-admin",
        "name": "From admin",
        "instructions": "",
        "rater_group": "",
        "judgments_per_pair": 2,
        "strength_levels": 0,
        "rationale": "optional",
        "lease_seconds": 600,
        "gold_fraction": 0,
        "very_fast_ms": 3000,
        "selection": "uncertainty",
        "selection_epsilon": 0.1,
        "memberships-TOTAL_FORMS": 0,
        "memberships-INITIAL_FORMS": 0,
        "memberships-MIN_NUM_FORMS": 0,
        "memberships-MAX_NUM_FORMS": 1000,
    }
    assert superuser_client.post(url, form).status_code == 302
    created = Project.objects.get(slug="from-admin")
    assert (created.judgments_per_pair, created.selection, created.selection_epsilon) == (
        2,
        "uncertainty",
        0.1,
    )
    refused = superuser_client.post(url, {**form, "slug": "too-short-lease", "lease_seconds": 5})
    assert refused.status_code == 200 and not Project.objects.filter(slug="too-short-lease").exists()


def test_the_project_list_counts_pairs_and_judgments_each_on_its_own(superuser_client, judged_project):
    # Joining pairs and judgments in one query would read pairs x judgments rows to count them.
    with CaptureQueriesContext(connection) as queries:
        page = superuser_client.get(reverse("admin:annotation_project_changelist")).content.decode()
    listing = [q["sql"] for q in queries.captured_queries if 'FROM "annotation_project"' in q["sql"]]
    assert listing and not any("COUNT(DISTINCT" in sql or "LEFT OUTER JOIN" in sql for sql in listing)
    assert '<td class="field-pair_count">6</td>' in page
    assert '<td class="field-judgment_total">6</td>' in page


def test_add_pair_says_what_is_wrong_in_words_not_a_constraints_name(
    superuser_client, make_project, make_pairs
):
    project = make_project("words")
    make_pairs(project, 1, prefix="taken")
    form = {
        "project": project.pk,
        "prompt": "A prompt",
        "response_a": "Same text",
        "response_b": "Same text",
        "external_id": "taken0",
        "metadata": "{}",
        "model_a": "",
        "model_b": "",
        "gold": "",
    }
    response = superuser_client.post("/admin/annotation/pair/add/", form)
    page = response.content.decode()
    assert response.status_code == 200  # the form again, nothing added
    assert "a pair compares two different responses" in page
    assert "This project already has a pair with this external id." in page
    assert "pair_responses_differ" not in page and "is violated" not in page


def test_the_admin_is_branded_pairwise(client):
    page = client.get("/admin/login/").content.decode()
    assert "Pairwise administration" in page and "Django administration" not in page
    assert "<title>Log in | Pairwise</title>" in page


def test_add_raters_lists_only_users_who_are_not_raters_of_the_project_yet(
    superuser_client, make_project, make_rater, make_user
):
    project = make_project("who")
    other = make_project("other")
    member = make_rater(project, username="already-in")
    elsewhere = make_rater(other, username="rates-elsewhere")
    newcomer = make_user("newcomer")
    page = superuser_client.get(reverse("admin:annotation_project_change", args=[project.pk]))
    form = page.context["adminform"].form
    addable = set(form.fields["add_raters"].queryset)
    assert newcomer in addable and elsewhere in addable and member not in addable
    assert set(form.fields["remove_raters"].queryset) == {member}


@pytest.mark.parametrize(
    ("instructions", "warned"),
    [
        (
            'See ![the scale](https://example.org/scale.png "scale") first.',
            "the scale at https://example.org/scale.png",
        ),
        ("![](//cdn.example.org/x.gif)", "(no alt text) at //cdn.example.org/x.gif"),
        ("![local](/static/x.png) and ![relative](img/x.png)", None),  # this site's: the CSP allows them
        ("A [link](https://example.org) and ![inline](data:image/png;base64,iVBORw0KGgo=) are fine.", None),
        ("`![not an image](https://example.org/x.png)` in code", None),
    ],
)
def test_saving_instructions_with_images_the_page_will_not_load_warns(
    superuser_client, make_project, instructions, warned
):
    project = make_project("pictures")
    url = reverse("admin:annotation_project_change", args=[project.pk])
    response = superuser_client.post(url, _project_form(project, instructions=instructions), follow=True)
    assert response.status_code == 200
    project.refresh_from_db()
    assert project.instructions == instructions  # saved all the same: a warning, not an error
    page = response.content.decode()
    if warned is None:
        assert "will not load" not in page
    else:
        assert "1 image(s) the rating page will not load" in page and html_escape(warned) in page
        assert 'class="warning"' in page


def _conversation_pair_form(pair: Pair, messages: Any, prompt: str | None = None) -> dict[str, Any]:
    import json

    return {
        "project": pair.project_id,
        "external_id": pair.external_id or "",
        "prompt": pair.prompt if prompt is None else prompt,
        "messages": json.dumps(messages),
        "response_a": pair.response_a,
        "response_b": pair.response_b,
        "model_a": "",
        "model_b": "",
        "metadata": "{}",
        "gold": "",
    }


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "tool", "content": 5}],  # a role and a content the format does not have
        ["a string, not a message"],  # crashed the rating page (str has no .get)
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],  # ends with the model
    ],
)
def test_the_admin_refuses_messages_the_import_would_refuse(superuser_client, make_project, messages):
    # The admin's change form wrote any JSON into Pair.messages unchecked: the rating page then answered
    # 500, and the exports carried a conversation that the trainer refuses, failing the whole run.
    project = make_project("admin-conversation")
    services.pairs_import(
        project=project,
        items=[
            {
                "external_id": "c1",
                "prompt": [
                    {"role": "user", "content": "Hi"},
                    {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Why?"},
                ],
                "response_a": "a",
                "response_b": "b",
            }
        ],
    )
    pair = Pair.objects.get()
    before = pair.messages
    url = reverse("admin:annotation_pair_change", args=[pair.pk])
    response = superuser_client.post(url, _conversation_pair_form(pair, messages))
    assert response.status_code == 200  # the form again, with the error
    assert "must be" in response.content.decode()
    pair.refresh_from_db()
    assert pair.messages == before


def test_a_conversation_edited_in_the_admin_keeps_its_prompt_its_text_rendering(
    superuser_client, make_project
):
    project = make_project("admin-conversation-ok")
    services.pairs_import(
        project=project,
        items=[{"external_id": "c1", "prompt": "Plain", "response_a": "a", "response_b": "b"}],
    )
    pair = Pair.objects.get()
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
        {"role": "user", "content": "Why?"},
    ]
    url = reverse("admin:annotation_pair_change", args=[pair.pk])
    response = superuser_client.post(url, _conversation_pair_form(pair, messages, prompt="stale text"))
    assert response.status_code == 302
    pair.refresh_from_db()
    assert pair.messages == messages
    assert pair.prompt == "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello\n\nUser: Why?"
    assert superuser_client.get(url).status_code == 200


def test_the_pair_page_shows_the_review_record_read_only(superuser_client, make_project, admin_user):
    project = make_project("reviewed")
    services.pairs_import(
        project=project, items=[{"prompt": "q", "response_a": "a", "response_b": "b", "external_id": "p1"}]
    )
    pair = Pair.objects.get(external_id="p1")
    services.pair_leave_out(project=project, pair_id=pair.pk, by=admin_user, reason="<b>label</b> noise")
    page = superuser_client.get(reverse("admin:annotation_pair_change", args=[pair.pk])).content.decode()
    # Who, what and why, escaped; the pair's own state beside it; nothing to edit or delete.
    assert "review actions" in page.lower() and "Leave out of training" in page
    assert "&lt;b&gt;label&lt;/b&gt; noise" in page and admin_user.get_username() in page
    assert 'class="review-record"' in page and 'name="reason"' not in page


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ('{"score": NaN}', "NaN"),  # Python's json reads it; PostgreSQL's jsonb refused it: a 500
        ('{"score": Infinity}', "Infinity"),
        ('{"note": "a\\u0000b"}', "NUL"),  # jsonb refuses \u0000: a 500 too
        ("[1, 2]", "JSON object"),  # the import's rule: metadata is an object
    ],
)
def test_add_pair_refuses_metadata_the_import_would_refuse(superuser_client, make_project, metadata, words):
    project = make_project("metadata")
    form = {
        "project": project.pk,
        "prompt": "A prompt",
        "response_a": "one",
        "response_b": "two",
        "external_id": "",
        "metadata": metadata,
        "model_a": "",
        "model_b": "",
        "gold": "",
    }
    response = superuser_client.post("/admin/annotation/pair/add/", form)
    assert response.status_code == 200 and words in response.content.decode()
    assert not Pair.objects.exists()


def test_add_pair_with_the_metadata_box_emptied_stores_no_metadata(superuser_client, make_project):
    # An emptied box is None to the form: it reached the NOT NULL column as a 500.
    project = make_project("no-metadata")
    form = {"project": project.pk, "prompt": "A prompt", "response_a": "one", "response_b": "two"}
    form |= {"external_id": "", "metadata": "", "model_a": "", "model_b": "", "gold": ""}
    response = superuser_client.post("/admin/annotation/pair/add/", form)
    assert response.status_code == 302 and Pair.objects.get().metadata == {}


def test_add_pair_refuses_a_nul_in_a_message_in_words(superuser_client, make_project):
    # The import's parser refuses it; the form passed it to PostgreSQL's jsonb: a 500.
    project = make_project("nul-message")
    form = {"project": project.pk, "prompt": "q", "response_a": "one", "response_b": "two", "external_id": ""}
    form |= {"metadata": "{}", "model_a": "", "model_b": "", "gold": ""}
    form["messages"] = '[{"role": "user", "content": "a\\u0000b"}]'
    response = superuser_client.post("/admin/annotation/pair/add/", form)
    assert response.status_code == 200 and "NUL" in response.content.decode()
    assert not Pair.objects.exists()


def test_the_project_page_says_which_selection_is_in_effect(superuser_client, make_project):
    project = make_project(selection="uncertainty")
    url = reverse("admin:annotation_project_change", args=[project.pk])
    assert "no active reward model has scored the pairs yet" in superuser_client.get(url).content.decode()
    response = superuser_client.post(url, _project_form(project, selection_epsilon=0.35))
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.selection, project.selection_epsilon) == ("uncertainty", 0.35)
    refused = superuser_client.post(url, _project_form(project, selection_epsilon=1.5))
    assert refused.status_code == 200
    project.refresh_from_db()
    assert project.selection_epsilon == 0.35
