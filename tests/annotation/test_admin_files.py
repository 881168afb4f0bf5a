"""A project's files in the admin: uploads through the import services (all or nothing, every error shown),
downloads that are the API's exports byte for byte, and who may do either."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from annotation import services
from annotation.models import Judgment, Pair

PAIRS = [
    {"external_id": "x1", "prompt": "Capital of France?", "response_a": "Paris.", "response_b": "Lyon."},
    {"external_id": "x2", "prompt": "2+2?", "response_a": "4", "response_b": "5"},
]


def _jsonl(items: list[object]) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in items).encode()


@pytest.fixture
def superuser(admin_user):
    admin_user.is_superuser = True
    admin_user.save()
    return admin_user


def _upload(client, project, kind: str, name: str, content: bytes):
    url = reverse("admin:annotation_project_files", args=[project.pk])
    return client.post(url, {"kind": kind, "file": SimpleUploadedFile(name, content)})


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("pairs.jsonl", _jsonl(PAIRS)),
        ("pairs.json", json.dumps(PAIRS).encode()),
        ("pairs.json", json.dumps({"pairs": PAIRS}).encode()),
        ("pairs.txt", json.dumps(PAIRS, indent=2).encode()),  # no telling name: "[" makes it a JSON list
    ],
)
def test_pairs_upload_in_every_form_the_api_takes(client, superuser, make_project, name, content):
    project = make_project()
    client.force_login(superuser)
    answer = _upload(client, project, "pairs", name, content)
    assert answer.status_code == 302, answer.content.decode()[:2000]
    assert sorted(Pair.objects.filter(project=project).values_list("external_id", flat=True)) == ["x1", "x2"]
    page = client.get(answer["Location"])
    assert "2 pairs imported, 0 already there." in page.content.decode()


@pytest.mark.parametrize(
    ("kind", "row"),
    [
        ("trl", {"prompt": "Capital of France?", "chosen": "Paris.", "rejected": "Lyon."}),
        (
            "hh-rlhf",
            {
                "chosen": "\n\nHuman: Capital of France?\n\nAssistant: Paris.",
                "rejected": "\n\nHuman: Capital of France?\n\nAssistant: Lyon.",
            },
        ),
    ],
)
def test_preference_rows_upload_in_the_import_apis_formats(client, superuser, make_project, kind, row):
    project = make_project()
    client.force_login(superuser)
    answer = _upload(client, project, kind, "rows.jsonl", _jsonl([row]))
    assert answer.status_code == 302, answer.content.decode()[:2000]
    pair = Pair.objects.get(project=project)
    assert (pair.prompt, pair.response_a, pair.response_b) == ("Capital of France?", "Paris.", "Lyon.")
    # The same file as plain pairs is refused by item and field (chosen is no pair field).
    refused = _upload(client, make_project("plain"), "pairs", "rows.jsonl", _jsonl([row]))
    assert refused.status_code == 400 and "<code>chosen</code>" in refused.content.decode()


def test_a_bad_upload_stores_nothing_and_lists_every_item_at_fault(client, superuser, make_project):
    project = make_project()
    client.force_login(superuser)
    items = [PAIRS[0], {"prompt": "", "response_a": "same", "response_b": "same"}, {**PAIRS[1], "colour": 1}]
    answer = _upload(client, project, "pairs", "pairs.jsonl", _jsonl(items))
    assert answer.status_code == 400
    page = answer.content.decode()
    assert "2 of 3 items are invalid; nothing was stored." in page
    # item index, field and message of each error
    assert "<code>prompt</code></td><td>Required: a non-empty string or a list of messages.</td>" in page
    assert "response_a and response_b are the same text." in page
    assert "<code>colour</code>" in page
    assert not Pair.objects.filter(project=project).exists()


def test_lines_that_are_not_json_are_each_named_by_line(client, superuser, make_project):
    project = make_project()
    client.force_login(superuser)
    content = _jsonl([PAIRS[0]]) + b"{not json\n" + b'{"prompt": NaN}\n'
    page = _upload(client, project, "pairs", "p.jsonl", content).content.decode()
    assert "2 items of the JSON Lines body are invalid; nothing was stored." in page
    assert "not valid JSON" in page and "NaN is not a JSON number" in page
    assert not Pair.objects.filter(project=project).exists()


def test_judgments_upload_goes_through_the_import_service(client, superuser, make_project, make_pairs):
    project = make_project()
    make_pairs(project, 2)
    client.force_login(superuser)
    good = [
        {"pair": "p0", "rater": "ext-1", "choice": "a"},
        {"pair": "p1", "rater": "ext-1", "choice": "tie"},
    ]
    answer = _upload(client, project, "judgments", "j.jsonl", _jsonl(good))
    assert answer.status_code == 302
    assert Judgment.objects.filter(project=project).count() == 2
    unknown = _upload(
        client,
        project,
        "judgments",
        "j.jsonl",
        b"\n" + _jsonl([{"pair": "nope", "rater": "ext-3", "choice": "a"}]),
    )
    # The bad item's index (0) and its line (2: the first line is blank).
    assert '<td class="num">0</td><td class="num">2</td><td><code>pair</code>' in unknown.content.decode()
    bad = [{"pair": "p0", "rater": "ext-2", "choice": "a"}, {"pair": "nope", "rater": "ext-2", "choice": "z"}]
    page = _upload(client, project, "judgments", "j.json", json.dumps({"judgments": bad}).encode())
    assert (
        page.status_code == 400
        and "Required: &quot;a&quot;, &quot;b&quot; or &quot;tie&quot;." in page.content.decode()
    )
    assert Judgment.objects.filter(project=project).count() == 2


def test_an_upload_over_the_limit_is_refused(client, superuser, make_project, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024
    project = make_project()
    client.force_login(superuser)
    answer = _upload(client, project, "pairs", "big.jsonl", _jsonl(PAIRS * 20))
    assert answer.status_code == 400 and "the limit is 1.0\xa0KB" in answer.content.decode()
    assert not Pair.objects.exists()


def test_the_files_page_shows_the_limit_and_the_progress_script(client, superuser, make_project):
    project = make_project()
    client.force_login(superuser)
    page = client.get(reverse("admin:annotation_project_files", args=[project.pk])).content.decode()
    assert "At most 50.0\xa0MB" in page and 'id="upload-progress"' in page and "admin_files.js" in page
    change = client.get(reverse("admin:annotation_project_change", args=[project.pk])).content.decode()
    assert reverse("admin:annotation_project_files", args=[project.pk]) in change


def _judged(project, make_pairs, make_rater):
    make_pairs(project, 3)
    for _ in range(2):
        user = make_rater(project)
        for _ in range(3):
            assignment = services.assignment_next(project=project, user=user).assignment
            choice = "left" if assignment.shown_left == "a" else "right"  # a wins: a preference per pair
            services.judgment_record(
                assignment_id=assignment.pk, user=user, choice=choice, rationale="=HYPERLINK(1)"
            )


@pytest.mark.parametrize(
    ("file", "params", "api_path"),
    [
        ("judgments.jsonl", {}, "export/judgments.jsonl"),
        ("judgments.csv", {}, "export/judgments.csv"),
        ("judgments.csv", {"raw": "true"}, "export/judgments.csv?raw=true"),
        (
            "judgments.jsonl",
            {"min_votes": "2", "since": "2000-01-01T00:00:00Z"},
            "export/judgments.jsonl?min_votes=2&since=2000-01-01T00:00:00Z",
        ),
        ("preferences.jsonl", {"min_votes": "2", "until": ""}, "export/preferences.jsonl?min_votes=2"),
        ("preferences-conversational.jsonl", {}, "export/preferences.jsonl?format=conversational"),
    ],
)
def test_each_download_is_the_apis_export(
    client, api, superuser, make_project, make_pairs, make_rater, file, params, api_path
):
    project = make_project(judgments_per_pair=2)
    _judged(project, make_pairs, make_rater)
    client.force_login(superuser)
    url = reverse("admin:annotation_project_export", args=[project.pk])
    answer = client.get(url, {"file": file, **params})
    assert answer.status_code == 200 and answer.streaming
    body = b"".join(answer.streaming_content)
    assert body and answer["Content-Disposition"].startswith("attachment")
    from_api = api(superuser).get(f"/api/v1/projects/{project.slug}/{api_path}")
    assert from_api.status_code == 200
    assert body == b"".join(from_api.streaming_content)


def test_bad_filters_are_shown_and_nothing_downloads(client, superuser, make_project):
    project = make_project()
    client.force_login(superuser)
    url = reverse("admin:annotation_project_export", args=[project.pk])
    answer = client.get(url, {"file": "judgments.csv", "min_votes": "0", "since": "yesterday"})
    assert answer.status_code == 400
    page = answer.content.decode()
    assert 'id="export-refused"' in page and "<code>min_votes</code>" in page and "<code>since</code>" in page


def test_neither_a_rater_nor_an_anonymous_user_reaches_the_files(client, make_project, make_rater, make_user):
    project = make_project()
    files = reverse("admin:annotation_project_files", args=[project.pk])
    export = reverse("admin:annotation_project_export", args=[project.pk]) + "?file=judgments.csv"
    for user in (None, make_rater(project), make_user("someone")):
        client.logout()
        if user is not None:
            client.force_login(user)
        for url in (files, export):
            answer = client.get(url)
            assert answer.status_code == 302 and "/admin/login/" in answer["Location"]
        posted = client.post(files, {"kind": "pairs", "file": SimpleUploadedFile("p.jsonl", _jsonl(PAIRS))})
        assert posted.status_code == 302 and "/admin/login/" in posted["Location"]
    assert not Pair.objects.exists()


def test_staff_need_the_model_permissions(client, make_user, make_project):
    project = make_project()
    staff = make_user("clerk", staff=True)
    client.force_login(staff)
    files = reverse("admin:annotation_project_files", args=[project.pk])
    assert client.get(files).status_code == 403  # may not even view the project
    staff.user_permissions.add(Permission.objects.get(codename="view_project"))
    page = client.get(files)
    assert page.status_code == 200 and 'id="upload-form"' not in page.content.decode()
    assert (
        client.post(
            files, {"kind": "pairs", "file": SimpleUploadedFile("p.jsonl", _jsonl(PAIRS))}
        ).status_code
        == 403
    )
    export = reverse("admin:annotation_project_export", args=[project.pk])
    assert client.get(export, {"file": "judgments.csv"}).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="add_pair"))
    staff = type(staff).objects.get(pk=staff.pk)  # permissions are cached on the instance
    client.force_login(staff)
    # judgments cannot be chosen without add_judgment
    answer = client.post(files, {"kind": "judgments", "file": SimpleUploadedFile("j.jsonl", b"[]")})
    assert answer.status_code == 400 and not Judgment.objects.exists()
    assert (
        client.post(
            files, {"kind": "pairs", "file": SimpleUploadedFile("p.jsonl", _jsonl(PAIRS))}
        ).status_code
        == 302
    )
    assert Pair.objects.count() == 2


def test_uploads_need_the_csrf_token(make_project, superuser):
    from django.test import Client

    project = make_project()
    client = Client(enforce_csrf_checks=True)
    client.force_login(superuser)
    answer = _upload(client, project, "pairs", "p.jsonl", _jsonl(PAIRS))
    assert answer.status_code == 403 and not Pair.objects.exists()
