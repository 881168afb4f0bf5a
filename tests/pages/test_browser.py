"""The rating page in a real Chromium (Debian's, driven by Playwright): keyboard and mouse, the project's
rules, hostile model text, the lease, the page without JavaScript, and screenshots to look at."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from annotation import services
from annotation.models import Assignment, AssignmentStatus, Judgment
from tests.pages.conftest import Tab

pytestmark = pytest.mark.browser

RATE = "/projects/{slug}/rate/"


def _pairs(project, n: int, prefix: str) -> None:
    services.pairs_import(
        project=project,
        items=[
            {
                "external_id": f"{prefix}{i}",
                "prompt": f"Question {prefix}{i}?",
                "response_a": f"A-side answer to {prefix}{i}",
                "response_b": f"B-side answer to {prefix}{i}",
            }
            for i in range(n)
        ],
    )


def _on_screen(tab: Tab) -> dict:
    """The assignment the page shows now, with its two texts as the rater sees them."""
    return tab.page.evaluate(
        """() => ({
            id: Number(document.querySelector('#judge-form [name=assignment]').value),
            left: document.getElementById('text-left').innerText,
            right: document.getElementById('text-right').innerText,
        })"""
    )


def _wait_for_next(tab: Tab, shown: dict) -> dict:
    # A function, not an expression string: Playwright evals a string, which the page's CSP refuses.
    tab.page.wait_for_function(
        "(id) => document.querySelector('#judge-form [name=assignment]').value !== id", arg=str(shown["id"])
    )
    return _on_screen(tab)


def _focused(tab: Tab) -> str:
    return tab.page.evaluate("document.activeElement && document.activeElement.id")


def _expected_choice(assignment_id: int, shown: dict, answer: str) -> str:
    """What must be stored for `answer` given the texts that were on screen: read from the pair itself,
    not from Assignment.stored_choice, so a mix-up of sides anywhere would show."""
    pair = Assignment.objects.get(pk=assignment_id).pair
    if answer == "tie":
        return "tie"
    text = shown[answer]
    assert text in (pair.response_a, pair.response_b)
    return "a" if text == pair.response_a else "b"


def test_a_rater_judges_with_the_keyboard_and_the_mouse_and_skips(tab, make_project, make_rater):
    project = make_project("flow", judgments_per_pair=1, instructions="Pick the **more helpful** answer.")
    _pairs(project, 6, "f")
    make_rater(project, username="rita")
    t = tab()
    t.login("rita")
    t.page.click("text=Start rating")
    t.page.wait_for_url(t.base_url + RATE.format(slug="flow"))
    assert _focused(t) == "title-prompt"

    answers: list[tuple[dict, str]] = []
    shown = _on_screen(t)
    for key, answer in (("1", "left"), ("2", "right"), ("3", "tie")):
        t.page.keyboard.press(key)
        t.page.keyboard.press("Enter")
        answers.append((shown, answer))
        shown = _wait_for_next(t, shown)
        # The next pair starts with nothing chosen, and focus where the reading starts.
        assert t.page.evaluate("document.querySelectorAll('input[name=choice]:checked').length") == 0
        assert _focused(t) == "title-prompt"

    t.page.click("label[for=choice-right]")
    t.page.click("#submit")
    answers.append((shown, "right"))
    shown = _wait_for_next(t, shown)
    assert _focused(t) == "title-prompt"

    skipped = shown
    t.page.keyboard.press("s")
    assert _focused(t) == "skip-reason"
    t.page.keyboard.type("outside my expertise")
    t.page.keyboard.press("Enter")
    shown = _wait_for_next(t, shown)
    assert t.page.inner_text("#done") == "4" and t.page.inner_text("#left") == "1"
    t.assert_clean()

    judgments = Judgment.objects.filter(rater__user__username="rita")
    assert judgments.count() == 4
    for on_screen, answer in answers:
        judgment = judgments.get(assignment_id=on_screen["id"])
        assert judgment.choice == _expected_choice(on_screen["id"], on_screen, answer), (on_screen, answer)
        assert judgment.client_time_ms is not None and judgment.time_on_task_ms is not None
    skip = Assignment.objects.get(pk=skipped["id"])
    assert (skip.status, skip.skip_reason) == (AssignmentStatus.SKIPPED, "outside my expertise")
    # The pair on screen is the only one held: nothing was answered by accident.
    assert Assignment.objects.get(status=AssignmentStatus.ACTIVE).pk == shown["id"]


def test_required_rationale_no_tie_and_strength_keys(tab, make_project, make_rater):
    project = make_project(
        "rules", judgments_per_pair=1, allow_tie=False, strength_levels=3, rationale="required"
    )
    _pairs(project, 2, "r")
    rita = make_rater(project, username="rita")
    t = tab()
    t.login_as(rita)
    t.goto(RATE.format(slug="rules"))
    page = t.page
    assert page.locator("#choice-tie").count() == 0
    checked = "() => [...document.querySelectorAll('input:checked')].map(e => e.id)"

    page.keyboard.press("3")  # no tie in this project: ignored
    assert page.evaluate(checked) == []
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    assert "how much better" in page.inner_text("#form-errors")
    page.keyboard.press("Shift+Digit2")
    assert page.evaluate(checked) == ["choice-left", "strength-2"]
    page.keyboard.press("Enter")
    assert "needs a reason" in page.inner_text("#form-errors")
    assert _focused(t) == "rationale"
    assert Judgment.objects.count() == 0

    shown = _on_screen(t)
    page.keyboard.type("Clearer steps, 3 of them.")  # digits typed in the box are text, not keys
    page.keyboard.press("Control+Enter")
    _wait_for_next(t, shown)
    judgment = Judgment.objects.get()
    assert (judgment.strength, judgment.rationale) == (2, "Clearer steps, 3 of them.")
    assert judgment.choice == _expected_choice(shown["id"], shown, "left")

    # The last pair: answered, the page says the rater is done and what happened to the answer.
    page.keyboard.press("2")
    page.keyboard.press("Shift+Digit3")
    page.keyboard.press("r")
    page.keyboard.type("Shorter.")
    page.keyboard.press("Escape")
    page.keyboard.press("Enter")
    page.wait_for_selector("text=You are done")
    assert page.inner_text("#page-note") == "Saved."
    assert Judgment.objects.get(strength=3).rationale == "Shorter."
    t.assert_clean()


# Model text holding every kind of active content we could think of. A script that ran would call
# window.pwned (see conftest); the page's CSP would also report it: both must stay empty.
HOSTILE = [
    '<script>pwned("script")</script>',
    "<img src=x onerror=\"pwned('img')\">",
    "<svg onload=\"pwned('svg')\"><circle r=40 /></svg>",
    '<svg><script>pwned("svg-script")</script><a xlink:href="javascript:pwned(\'svg-a\')">svg link</a></svg>',
    "<iframe src=\"javascript:pwned('iframe')\"></iframe>",
    "<iframe srcdoc=\"<script>parent.pwned('srcdoc')</script>\"></iframe>",
    "<a href=\"javascript:pwned('a')\">click me</a>",
    "<div onmouseover=\"pwned('hover')\">hover over me</div>",
    "<button onclick=\"pwned('button')\">press me</button>",
    "<body onload=\"pwned('body')\">",
    "<details open ontoggle=\"pwned('details')\">toggle</details>",
    "<input autofocus onfocus=\"pwned('input')\">",
    "<object data=\"javascript:pwned('object')\"></object>",
    "<math><mtext><table><mglyph><style><img src=x onerror=pwned('mxss')>",
    '"><script>pwned("attribute-break")</script>',
    "</textarea></pre></div><script>pwned('close-tags')</script>",
    "[markdown link](javascript:pwned('md'))",
    "<javascript:pwned('autolink')>",
    "[mixed case](JaVaScRiPt:pwned('md-case'))",
    "![image](javascript:pwned('md-image'))",
    "<a href=\"data:text/html,<script>pwned('data')</script>\">data link</a>",
    "{{ request.user }} {% csrf_token %}",
]
HOSTILE_TEXT = "\n".join(HOSTILE)

_ACTIVE = (
    "script, img, svg, iframe, object, embed, button, input, textarea, details, math, style, body, a, form"
)


def _assert_inert(t: Tab) -> None:
    page = t.page
    for box in ("#text-prompt", "#text-left", "#text-right"):
        assert page.locator(f"{box} :is({_ACTIVE})").count() == 0, box
        assert '<script>pwned("script")</script>' in page.inner_text(box)
    # Instructions: markdown's own links, and only to https.
    hrefs = page.eval_on_selector_all(".instructions .markdown a", "links => links.map(a => a.href)")
    assert hrefs == ["https://example.org/guide"]
    assert page.locator(f".instructions .markdown :is({_ACTIVE.replace(', a,', ',')})").count() == 0
    # Hover and click over every line of hostile text (a link that ran would navigate or set the flag), as
    # rendered markdown and as plain text.
    for _ in range(2):
        for line in page.locator(
            ":is(#text-prompt, #text-left, #text-right) :is(.md > *, .plain):visible, "
            ".instructions p:not(:has(a))"
        ).all():
            line.hover()
            line.click()
        page.click("#plain-toggle")
    page.focus("#title-prompt")  # where the reading starts (Enter on the toggle would toggle again)
    assert page.url.endswith(RATE.format(slug="xss"))
    t.assert_clean()


def test_hostile_model_text_is_shown_as_text_and_nothing_runs(tab, make_project, make_rater):
    project = make_project(
        "xss",
        judgments_per_pair=1,
        instructions=f"Read [the guide](https://example.org/guide).\n\n{HOSTILE_TEXT}",
    )
    services.pairs_import(
        project=project,
        items=[
            {"prompt": HOSTILE_TEXT, "response_a": HOSTILE_TEXT, "response_b": f"{HOSTILE_TEXT}\n{i}"}
            for i in range(2)
        ],
    )
    rita = make_rater(project, username="rita")
    t = tab()
    t.login_as(rita)
    t.goto(RATE.format(slug="xss"))
    _assert_inert(t)  # as the server rendered it
    shown = _on_screen(t)
    t.page.keyboard.press("1")
    t.page.keyboard.press("Enter")
    _wait_for_next(t, shown)
    _assert_inert(t)  # as rate.js rendered it from the API's JSON
    assert Judgment.objects.count() == 1


def test_the_lease_warning_then_a_late_answer_that_lost_its_place(tab, make_project, make_rater):
    project = make_project("lease", judgments_per_pair=1, lease_seconds=60)
    _pairs(project, 3, "l")
    rita = make_rater(project, username="rita")
    t = tab()
    t.login_as(rita)
    # Served 57 s ago: the page opens with 3 s of the lease left.
    held = services.assignment_next(
        project=project, user=rita, now=timezone.now() - timedelta(seconds=57)
    ).assignment
    t.goto(RATE.format(slug="lease"))
    assert _on_screen(t)["id"] == held.pk
    t.page.wait_for_selector(".lease.warning", timeout=3_000)
    assert "runs out in 0:0" in t.page.inner_text("#lease-message")
    t.page.wait_for_selector(".lease.expired", timeout=5_000)
    assert "ran out" in t.page.inner_text("#lease-message")
    # Meanwhile another rater takes the freed place; the late answer is refused, and the rater is told.
    other = make_rater(project)
    assert services.assignment_next(project=project, user=other).assignment.pair_id == held.pair_id
    t.page.keyboard.press("1")
    t.page.keyboard.press("Enter")
    _wait_for_next(t, {"id": held.pk})
    t.page.wait_for_selector("#status:has-text('Your answer was not saved')")
    assert t.page.locator("#lease").is_hidden()
    assert not Judgment.objects.filter(assignment_id=held.pk).exists()
    t.errors = [e for e in t.errors if "409" not in e]  # the refused POST, logged by Chromium
    t.assert_clean()


def test_an_answer_whose_reply_was_lost_is_sent_again_safely(tab, make_project, make_rater):
    """The server saves the judgment (and hands out the next pair) but its reply never arrives: the page
    must not claim nothing was saved, must not keep showing the last "Saved.", and Enter again must
    land on the next pair (the server answers already_judged), with one judgment stored."""
    project = make_project("lost", judgments_per_pair=1)
    _pairs(project, 3, "l")
    make_rater(project, username="rita")
    t = tab()
    t.login("rita")
    t.goto(RATE.format(slug="lost"))
    page = t.page
    first = _on_screen(t)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    shown = _wait_for_next(t, first)
    page.wait_for_selector("#status:has-text('Saved. Next pair.')")

    handled = []

    def lose_the_reply(route):
        route.fetch()  # the server handles the request in full
        handled.append(route.request.url)
        route.abort()  # and its reply is lost

    page.route("**/judgment/", lose_the_reply)
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    page.wait_for_selector("#form-errors:not([hidden])")
    message = page.inner_text("#form-errors")
    assert "may not have been saved" in message and "nothing was saved" not in message, message
    assert page.inner_text("#status") == ""  # the last pair's "Saved. Next pair." is gone
    assert handled and Judgment.objects.filter(assignment_id=shown["id"]).count() == 1

    page.unroute("**/judgment/")
    page.keyboard.press("Enter")  # the same answer again
    following = _wait_for_next(t, shown)
    page.wait_for_selector("#status:has-text('Saved. (Your earlier try had reached the server.) Next pair.')")
    assert page.locator("#form-errors").is_hidden()
    assert Judgment.objects.filter(assignment_id=shown["id"]).count() == 1
    assert Judgment.objects.count() == 2
    # The pair on screen is the one the saved judgment's round trip handed out: nothing was lost.
    assert Assignment.objects.get(status=AssignmentStatus.ACTIVE).pk == following["id"]
    assert t.pwned() == [] and t.csp_violations() == []


def test_without_javascript_the_form_posts_work(tab, make_project, make_rater):
    project = make_project("plain", judgments_per_pair=1)
    _pairs(project, 2, "p")
    make_rater(project, username="rita")
    t = tab(javascript=False)
    t.login("rita")  # the login form, without JavaScript too
    t.goto(RATE.format(slug="plain"))
    shown = _on_screen_without_js(t)
    t.page.click("label[for=choice-right]")
    t.page.click("#submit")
    t.page.wait_for_selector("text=Saved.")
    judgment = Judgment.objects.get()
    assert judgment.choice == _expected_choice(shown["id"], shown, "right")
    assert judgment.client_time_ms is None  # nothing counted it


def _on_screen_without_js(t: Tab) -> dict:
    return {
        "id": int(t.page.get_attribute("#judge-form [name=assignment]", "value")),
        "left": t.page.inner_text("#text-left"),
        "right": t.page.inner_text("#text-right"),
    }


def test_admin_and_api_docs_work_under_the_policy(tab, admin_user, make_project):
    admin_user.is_superuser = True  # to open the admin's add page
    admin_user.save()
    make_project("staffed")
    t = tab()
    t.login_as(admin_user)
    t.goto("/")
    assert t.page.locator("a[href='/admin/']").count() >= 1
    for path in ("/admin/", "/admin/annotation/project/add/", "/admin/annotation/project/"):
        t.goto(path)
        assert t.page.locator("#content").count() == 1, path
    t.goto("/api/docs/")
    t.page.wait_for_selector(".swagger-ui .opblock", timeout=15_000)
    t.assert_clean()


# Screenshots: the things a rater at hour six stumbles on, at desktop, phone and 200% zoom widths.

LONG_PROSE = "\n\n".join(
    f"Paragraph {i}. Birds fly because their wings push air downwards; the air pushes back. "
    "Hollow bones keep them light and strong chest muscles drive the downstroke. " * 3
    for i in range(1, 7)
)
CODE = (
    "Here is the function:\n\n```python\ndef fly(bird: Bird, *, altitude_m: float = 100.0) -> Flight:\n"
    "    # a deliberately long line to see how code that does not fit is shown to the rater..........\n"
    "    if not bird.can_fly:\n        raise ValueError(f'{bird.name} cannot fly')\n"
    "    return Flight(bird, altitude_m)\n```\n\nAnd a URL without spaces: "
    "https://example.org/" + "very-long-path-segment/" * 12
)


def test_screenshots_of_the_rating_page(tab, make_project, make_rater):
    project = make_project(
        "birds",
        judgments_per_pair=1,
        strength_levels=3,
        rationale="optional",
        instructions="## How to judge\n\n- Prefer **correct** answers.\n- Then the *clearer* one.\n"
        "- Skip what you cannot judge.\n\nSee [the guide](https://example.org/guide).",
    )
    services.pairs_import(
        project=project,
        items=[
            {
                "prompt": "How do birds fly? Explain it to a child, with code.",
                "response_a": LONG_PROSE,
                "response_b": CODE,
            },
            {"prompt": "Say nothing.", "response_a": "", "response_b": HOSTILE_TEXT},
            {"prompt": "One more?", "response_a": "Yes.", "response_b": "No."},
        ],
    )
    rita = make_rater(project, username="rita")
    # 200% zoom of a 1280x800 window is a 640x400 CSS-pixel page at twice the pixel density.
    for name, size in (("phone", (390, 844)), ("zoom200", (640, 400)), ("desktop", (1280, 800))):
        t = tab(width=size[0], height=size[1], scale=2 if name == "zoom200" else 1, phone=name == "phone")
        t.login_as(rita)
        t.goto(RATE.format(slug="birds"))
        # Nothing wider than the screen: the page never scrolls sideways, only code blocks do.
        assert t.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), name
        t.screenshot(f"rate-{name}")
        if name == "desktop":
            t.page.keyboard.press("?")
            assert t.page.locator("#help").is_visible()
            t.screenshot("rate-help")
            t.page.keyboard.press("Escape")
            shown = _on_screen(t)
            t.page.keyboard.press("2")
            t.page.keyboard.press("Shift+Digit1")
            t.screenshot("rate-desktop-chosen")
            t.page.keyboard.press("Enter")
            _wait_for_next(t, shown)
            assert (
                t.page.locator("#text-left .marker, #text-right .marker").inner_text() == "(empty response)"
            )
            t.screenshot("rate-desktop-second-pair")
            t.goto("/")
            t.screenshot("home-desktop")
        t.assert_clean()
    t = tab(width=390, height=844, phone=True)
    t.goto("/login/")
    t.screenshot("login-phone")
