"""The admin at 1366x768 in a real Chromium: a project's Files page (an upload with its progress bar and its
errors, a download of each export) and the training-runs list, which must fit the window."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from annotation.models import Pair
from reward_models.models import RunStatus, TrainingRun

pytestmark = pytest.mark.browser

WIDE = {"width": 1366, "height": 768}


@pytest.fixture
def superuser(admin_user):
    admin_user.is_superuser = True
    admin_user.save()
    return admin_user


def _pairs(n: int, *, bad: bool = False) -> bytes:
    items = [
        {"external_id": f"x{i}", "prompt": f"Prompt {i}", "response_a": f"A {i}", "response_b": f"B {i}"}
        for i in range(n)
    ]
    if bad:
        items[1]["response_b"] = items[1]["response_a"]
        items[3]["prompt"] = ""
    return "".join(json.dumps(item) + "\n" for item in items).encode()


def test_upload_with_progress_then_errors_then_download(tab, superuser, make_project, tmp_path):
    project = make_project("files")
    t = tab(**WIDE)
    t.login_as(superuser)
    t.goto(f"/admin/annotation/project/{project.pk}/change/")
    t.page.click("#project-files")
    t.page.wait_for_selector("#upload-form")
    assert "At most 50.0" in t.page.inner_text("#upload-form")
    t.screenshot("admin-project-files")

    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(_pairs(5, bad=True))
    t.page.set_input_files("#id_file", str(bad))
    t.page.click("#upload-form button[type=submit]")
    t.page.wait_for_selector("#upload-refused")
    refused = t.page.inner_text("#upload-refused")
    assert "2 of 5 items are invalid; nothing was stored." in refused
    assert (
        "response_a and response_b are the same text." in refused
        and "Required: a non-empty string or a list of messages." in refused
    )
    assert not Pair.objects.exists()
    t.screenshot("admin-project-files-errors")

    # A larger file: the bar and the status line show the upload's progress, then the page says what came in.
    good = tmp_path / "good.jsonl"
    good.write_bytes(_pairs(3000))
    t.page.set_input_files("#id_file", str(good))
    t.page.evaluate(
        "() => { const s = document.getElementById('upload-status'); new MutationObserver(() =>"
        " sessionStorage.setItem('seen', (sessionStorage.getItem('seen') || '') + '|' + s.textContent))"
        ".observe(s, {childList: true}); }"
    )
    t.page.click("#upload-form button[type=submit]")
    t.page.wait_for_selector(".messagelist .success", timeout=20_000)
    assert "3000 pairs imported, 0 already there." in t.page.inner_text(".messagelist")
    assert Pair.objects.filter(project=project).count() == 3000
    assert t.page.url.endswith(f"/admin/annotation/project/{project.pk}/files/")
    seen = t.page.evaluate("() => sessionStorage.getItem('seen')")
    assert "Uploading: 0%" in seen and "Checking and storing the items" in seen
    t.screenshot("admin-project-files-imported")

    with t.page.expect_download() as download:
        t.page.fill("#export-min-votes", "1")
        t.page.click("button[value='judgments.csv']")
    assert download.value.suggested_filename == "files-judgments.csv"
    # The refused upload is answered 400 (the page with its errors), as without script.
    files_url = f"{t.base_url}/admin/annotation/project/{project.pk}/files/"
    t.errors = [e for e in t.errors if not ("400" in e and files_url in e)]
    t.assert_clean()


def test_the_runs_list_fits_1366_pixels(tab, superuser, make_project):
    project = make_project("runs-list")
    now = timezone.now()
    for status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED):
        TrainingRun.objects.create(
            project=project,
            config={},
            status=status,
            started_at=None if status == RunStatus.QUEUED else now - timedelta(minutes=3),
            finished_at=now if status in (RunStatus.SUCCEEDED, RunStatus.FAILED) else None,
            device="cuda",
            metrics={"eval_accuracy": 0.75, "length_baseline_accuracy": 0.61}
            if status == RunStatus.SUCCEEDED
            else {},
        )
    t = tab(**WIDE)
    t.login_as(superuser)
    t.goto("/admin/reward_models/trainingrun/")
    t.page.wait_for_selector("#result_list")
    t.screenshot("admin-training-runs-list-1366")
    overflow = t.page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    # Every column shown whole: the list's box does not scroll (Django's .results clips what overflows).
    hidden = t.page.evaluate(
        "() => { const r = document.querySelector('.results'); return r.scrollWidth - r.clientWidth; }"
    )
    assert hidden <= 0
    assert t.page.is_visible("#changelist-filter")
    right = t.page.evaluate(
        "() => Math.max(...Array.from(document.querySelectorAll('#result_list th, #changelist-filter'))"
        ".map((e) => e.getBoundingClientRect().right))"
    )
    assert right <= 1366
    t.assert_clean()
