"""Undo on the rating page in a real Chromium: the U key and the button bring the last pair back with its
answer selected, the correction is saved with the earlier answer kept, and the button goes when the
project's window closes. Screenshots under tests/pages/out/."""

from __future__ import annotations

import pytest

from annotation import services
from annotation.models import Judgment, JudgmentRevision
from tests.pages.conftest import Tab

pytestmark = pytest.mark.browser

RATE = "/projects/{slug}/rate/"


def _pairs(project, n: int) -> None:
    services.pairs_import(
        project=project,
        items=[
            {
                "external_id": f"u{i}",
                "prompt": f"Question u{i}? <img src=x onerror=pwned('prompt')>",
                "response_a": f"A-side answer to u{i}",
                "response_b": f"B-side answer to u{i}",
            }
            for i in range(n)
        ],
    )


def _shown(t: Tab) -> dict:
    return t.page.evaluate(
        """() => ({
            id: Number(document.querySelector('#judge-form [name=assignment]').value),
            left: document.getElementById('text-left').innerText,
            right: document.getElementById('text-right').innerText,
        })"""
    )


def _checked(t: Tab) -> dict:
    return t.page.evaluate(
        """() => ({
            choice: (document.querySelector('input[name=choice]:checked') || {}).value || null,
            strength: (document.querySelector('input[name=strength]:checked') || {}).value || null,
            rationale: document.getElementById('rationale').value,
        })"""
    )


def test_undo_with_the_key_brings_the_pair_back_and_saves_a_correction(tab, make_project, make_rater):
    project = make_project("undo", judgments_per_pair=1, strength_levels=3, correction_seconds=120)
    _pairs(project, 3)
    make_rater(project, username="rita")
    t = tab(width=1366, height=768)
    t.login("rita")
    t.goto(RATE.format(slug="undo"))
    assert t.page.is_hidden("#undo")  # nothing to undo yet

    first = _shown(t)
    t.page.keyboard.press("1")
    t.page.keyboard.press("Shift+Digit2")
    t.page.fill("#rationale", "first try")
    t.page.focus("#title-prompt")
    t.page.keyboard.press("Enter")
    t.page.wait_for_function(
        "(id) => document.querySelector('#judge-form [name=assignment]').value !== id", arg=str(first["id"])
    )
    held = _shown(t)
    t.page.wait_for_selector("#undo", state="visible")
    t.screenshot("undo-button")
    judgment = Judgment.objects.get(assignment_id=first["id"])

    t.page.keyboard.press("?")
    assert "Undo your last answer" in t.page.inner_text("#help")
    t.page.keyboard.press("Escape")

    t.page.keyboard.press("u")
    t.page.wait_for_url(t.base_url + f"/projects/undo/my-judgments/{judgment.pk}/")
    t.page.wait_for_selector("#correcting-note")
    assert _shown(t) == first  # the same pair, the same sides
    assert t.page.inner_text("#progress") == "1 done, 2 left"
    assert _checked(t) == {"choice": "left", "strength": "2", "rationale": "first try"}
    assert t.page.query_selector("#skip-form") is None  # a judged pair is not skipped
    t.screenshot("undo-correcting")

    t.page.keyboard.press("2")
    t.page.keyboard.press("Shift+Digit3")
    t.page.fill("#rationale", "a slip")
    t.page.focus("#title-prompt")
    t.page.keyboard.press("Enter")
    t.page.wait_for_url(t.base_url + RATE.format(slug="undo"))
    t.page.wait_for_selector("text=Corrected.")
    assert _shown(t)["id"] == held["id"]  # back to the pair the rater held, no place lost
    t.screenshot("undo-corrected")
    t.assert_clean()

    judgment.refresh_from_db()
    right_text = first["right"]
    pair = judgment.pair
    assert judgment.choice == ("a" if right_text == pair.response_a else "b")
    assert (judgment.strength, judgment.rationale) == (3, "a slip")
    revision = JudgmentRevision.objects.get()
    assert (revision.strength, revision.rationale) == (2, "first try") and revision.choice != judgment.choice

    t.goto("/projects/undo/my-judgments/")
    assert "Question u0? <img src=x onerror=pwned('prompt')>" in t.page.inner_text(f"#judgment-{judgment.pk}")
    t.screenshot("my-judgments")
    t.assert_clean()


def test_the_undo_button_goes_when_the_window_closes(tab, make_project, make_rater):
    project = make_project("brief", judgments_per_pair=1, correction_seconds=1)
    _pairs(project, 3)
    make_rater(project, username="rita")
    t = tab()
    t.login("rita")
    t.goto(RATE.format(slug="brief"))
    t.page.click("label[for=choice-left]")
    t.page.click("#submit")
    t.page.wait_for_selector("#undo", state="visible")
    t.page.wait_for_selector("#undo", state="hidden", timeout=3000)
    shown = _shown(t)
    t.page.keyboard.press("u")
    assert t.page.url == t.base_url + RATE.format(slug="brief")
    t.page.wait_for_selector("#status:has-text('Nothing to undo')")
    assert _shown(t) == shown
    t.assert_clean()


def test_undo_without_javascript(tab, make_project, make_rater):
    project = make_project("plainundo", judgments_per_pair=1, correction_seconds=120)
    _pairs(project, 2)
    make_rater(project, username="rita")
    t = tab(javascript=False)
    t.login("rita")
    t.goto(RATE.format(slug="plainundo"))
    t.page.click("label[for=choice-left]")
    t.page.click("#submit")
    t.page.wait_for_selector("text=Saved.")
    t.page.click("#undo-link")
    t.page.wait_for_selector("#correcting-note")
    assert t.page.is_checked("#choice-left")
    t.page.click("label[for=choice-right]")
    t.page.click("#submit")
    t.page.wait_for_selector("text=Corrected.")
    judgment = Judgment.objects.get()
    assert JudgmentRevision.objects.get(judgment=judgment).choice != judgment.choice


def test_the_correction_page_shows_no_lease_warning(tab, make_project, make_rater):
    # The judged pair has no hold to run out: the lease countdown, never started on this page, used to
    # count from 0 and say "The hold on this pair ran out" a second after the page opened.
    project = make_project("nolease", judgments_per_pair=1, correction_seconds=120)
    _pairs(project, 2)
    make_rater(project, username="rita")
    t = tab()
    t.login("rita")
    t.goto(RATE.format(slug="nolease"))
    t.page.click("label[for=choice-left]")
    t.page.click("#submit")
    t.page.wait_for_selector("#undo", state="visible")
    t.page.keyboard.press("u")
    t.page.wait_for_selector("#correcting-note")
    t.page.wait_for_timeout(2500)  # the countdown ticks every second
    assert t.page.is_hidden("#lease")
    assert "ran out" not in t.page.inner_text("body")
    t.assert_clean()
