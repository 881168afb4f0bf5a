"""The admin pages an admin works with: lists load with data, search works, history is read-only."""

from __future__ import annotations

import pytest
from django.urls import reverse

from annotation import services
from annotation.models import Assignment, Judgment, Pair, Project

CHANGELISTS = ["project", "pair", "assignment", "judgment", "rater"]


@pytest.fixture
def judged_project(make_project, make_pairs, make_rater):
    project = make_project(judgments_per_pair=2)
    make_pairs(project, 6)
    for _ in range(2):
        user = make_rater(project)
        for _ in range(3):
            assignment = services.assignment_next(project=project, user=user)
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
    response = client.post(
        reverse("admin:annotation_pair_change", args=[judged.pk]),
        {
            "project": judged.project_id,
            "prompt": "rewritten",
            "response_a": "x",
            "response_b": "y",
            "metadata": "{}",
        },
    )
    assert response.status_code == 403
    judged.refresh_from_db()
    assert judged.prompt != "rewritten"


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
