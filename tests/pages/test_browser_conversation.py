"""The rating page in Chromium with what issues 17 and 21 asked of it: a conversation shown as turns,
model text as safe markdown (with a plain view the page remembers), hostile markup in every field of a
conversation, the action bar in view at desktop and phone sizes, the dark theme, the error banner, and a
long conversation's timings (logged, never asserted). Screenshots go to tests/pages/out/."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from annotation import services
from annotation.models import Judgment, Pair
from tests.pages.conftest import OUT, Tab
from tests.pages.test_browser import HOSTILE, HOSTILE_TEXT, RATE, _on_screen, _wait_for_next

pytestmark = pytest.mark.browser

MARKDOWN = (
    "Here is **the plan**, in three steps:\n\n"
    "1. Read the file\n   - line by line\n   - skipping `#` comments\n2. Count the words\n3. Print them\n\n"
    "```python\ndef count(path: str) -> dict[str, int]:\n"
    "    # a deliberately long line that does not fit and must scroll sideways in its own box.............\n"
    "    return collections.Counter(open(path).read().split())\n```\n\n"
    "| word | count |\n|:-----|------:|\n| the  | 12 |\n| a    | 7 |\n\n"
    "> A quote, and a [link](https://example.org/docs) and ![a chart](https://tracker.example/c.png).\n\n"
    "A long line without spaces: " + "x" * 5000
)


def _conversation_pairs(project, conversations: list[list[dict[str, str]]], responses=None) -> list[Pair]:
    """Pairs holding the given conversations (set in storage: importing them is another module's)."""
    services.pairs_import(
        project=project,
        items=[
            {
                "external_id": f"c{i}",
                "prompt": f"conversation {i}",
                "response_a": (responses or [MARKDOWN])[0],
                "response_b": (responses or [MARKDOWN, "A short **answer**."])[-1] + f" ({i})",
            }
            for i in range(len(conversations))
        ],
    )
    pairs = list(Pair.objects.filter(project=project).order_by("external_id"))
    for pair, messages in zip(pairs, conversations, strict=True):
        pair.messages = messages
        pair.save(update_fields=["messages"])
    return pairs


# A turn of a long conversation: prose with some emphasis, a list, code and a table, as chat models write.
BLOCK = (
    "Here is a **short** answer with `inline code` and a [link](https://example.org).\n\n"
    "- first point, with *emphasis*\n- second point\n  - nested\n\n"
    "```python\ndef double(x):\n    return x * 2\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n"
)


def _chat(turns: int, *, system: str | None = "You are a **careful** assistant.", size: int = 0):
    messages = [{"role": "system", "content": system}] if system else []
    for i in range(turns):
        role = "user" if i % 2 == 0 else "assistant"
        body = f"Turn {i}: " + ((BLOCK * (size // len(BLOCK) + 1))[:size] if size else f"message {i}")
        messages.append({"role": role, "content": body})
    return messages


def _side(t: Tab, needle: str) -> str:
    """#text-left or #text-right: the response holding needle (the sides are drawn per rater)."""
    return t.page.evaluate(
        "(n) => document.getElementById('text-left').textContent.includes(n) ? '#text-left' : '#text-right'",
        needle,
    )


def _turns(t: Tab) -> dict[str, Any]:
    return t.page.evaluate(
        """() => {
            const box = document.getElementById('text-prompt');
            const open = (s) => box.querySelector(s) ? box.querySelector(s).open : null;
            return {
                roles: [...box.querySelectorAll('.turn .role')].filter(e => e.checkVisibility())
                    .map(e => e.textContent),
                system_open: open('details.system'),
                earlier: open('details.earlier'),
                last: [...box.querySelectorAll(':scope > .turn')].pop().innerText,
                images: document.querySelectorAll('#pair img').length,
            };
        }"""
    )


def test_a_conversation_is_shown_as_turns_with_safe_markdown_on_both_paths(tab, make_project, make_rater):
    project = make_project("chat", judgments_per_pair=1)
    _conversation_pairs(project, [_chat(9), _chat(3, system=None)])
    rita = make_rater(project, username="rita")
    for name, size in (("desktop", (1366, 768)), ("phone", (390, 844))):
        t = tab(width=size[0], height=size[1], phone=name == "phone")
        t.login_as(rita)
        t.goto(RATE.format(slug="chat"))
        shown = _turns(t)
        # System folded, six earlier turns folded, the last two open, the user's turn last.
        assert shown["system_open"] is False and shown["earlier"] is False
        assert shown["roles"] == ["System message", "Assistant", "User"], shown
        assert shown["last"].endswith("Turn 8: message 8")
        assert shown["images"] == 0
        md = _side(t, "the plan")
        assert "[image: a chart] <https://tracker.example/c.png>" in t.page.inner_text(md)
        # The code block scrolls sideways in its own box; the page itself never does.
        code = t.page.locator(f"{md} pre").first
        assert code.evaluate("e => getComputedStyle(e).overflowX") == "auto"
        assert code.evaluate("e => e.scrollWidth > e.clientWidth")
        assert t.page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        assert t.page.locator(f"{md} table td.align-right").count() == 2
        link = t.page.locator(f"{md} a").first
        assert (link.get_attribute("href"), link.get_attribute("rel")) == (
            "https://example.org/docs",
            "noopener noreferrer",
        )
        t.page.screenshot(path=str(OUT / f"conversation-{name}.png"))
        t.page.click("#text-prompt details.earlier > summary")
        assert _turns(t)["roles"][:3] == ["System message", "User", "Assistant"]
        # The response with the markdown at the top of the window, scrolled to its code and table.
        t.page.locator(md).evaluate("e => { e.closest('.response').scrollIntoView(); e.scrollTop = 150; }")
        t.page.screenshot(path=str(OUT / f"markdown-{name}.png"))
        t.assert_clean()

    # The next pair, as rate.js puts it on the page from the API's answer: the same rendering.
    shown = _on_screen(t)
    t.page.focus("#title-prompt")
    t.page.keyboard.press("1")
    t.page.keyboard.press("Enter")
    _wait_for_next(t, shown)
    after = _turns(t)
    assert after["system_open"] is None and after["earlier"] is None
    assert after["roles"] == ["User", "Assistant", "User"]
    assert t.page.locator(f"{_side(t, 'short')} .md strong").inner_text() == "answer"
    assert t.page.evaluate("document.activeElement.id") == "title-prompt"
    t.assert_clean()
    assert Judgment.objects.count() == 1


def test_the_plain_text_view_is_remembered_across_reloads(tab, make_project, make_rater):
    project = make_project("plain-view", judgments_per_pair=1)
    _conversation_pairs(project, [_chat(3), _chat(3)])
    rita = make_rater(project, username="rita")
    t = tab()
    t.login_as(rita)
    t.goto(RATE.format(slug="plain-view"))
    page = t.page

    def showing() -> str:
        side = _side(t, "the plan")
        md = page.locator(f"{side} .md").is_visible()
        plain = page.locator(f"{side} .plain").is_visible()
        assert md != plain
        return "plain" if plain else "markdown"

    assert showing() == "markdown" and page.get_attribute("#plain-toggle", "aria-pressed") == "false"
    page.click("#plain-toggle")
    assert showing() == "plain" and page.get_attribute("#plain-toggle", "aria-pressed") == "true"
    # As written: the markers of markdown are there, nothing is formatted.
    side = _side(t, "the plan")
    assert "**the plan**" in page.inner_text(side) and page.locator(f"{side} strong:visible").count() == 0
    page.reload()
    assert showing() == "plain" and page.get_attribute("#plain-toggle", "aria-pressed") == "true"
    # The next pair (loaded by rate.js) is shown plain too.
    shown = _on_screen(t)
    page.focus("#title-prompt")
    page.keyboard.press("2")
    page.keyboard.press("Enter")
    _wait_for_next(t, shown)
    assert showing() == "plain"
    page.click("#plain-toggle")
    page.reload()
    assert showing() == "markdown"
    t.assert_clean()


def test_hostile_markup_in_every_message_field_and_role_never_runs(tab, make_project, make_rater, admin_user):
    project = make_project("xss-chat", judgments_per_pair=1)
    roles = ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    hostile = [{"role": role, "content": f"{HOSTILE_TEXT}\n\n{MARKDOWN}"} for role in roles]
    odd = [
        *hostile[:-1],
        {"role": "<img src=x onerror=\"pwned('role')\">", "content": HOSTILE[0]},
        hostile[-1],
    ]
    _conversation_pairs(project, [hostile, odd], responses=[HOSTILE_TEXT, HOSTILE_TEXT])
    rita = make_rater(project, username="rita")
    t = tab()
    t.login_as(rita)
    t.goto(RATE.format(slug="xss-chat"))
    page = t.page

    def poke() -> None:
        for summary in page.locator("#pair summary").all():
            summary.click()
        for _view in ("markdown", "plain"):
            # Not the roles inside a summary: a click there would fold its text away mid-loop.
            for element in page.locator("#pair :is(.md > *, .plain, div.turn > .role):visible").all():
                element.hover()
                element.click()
            page.click("#plain-toggle")
        page.focus("#title-prompt")
        assert (
            page.locator(
                "#pair :is(script, img, svg, iframe, object, embed, math, style, form, input)"
            ).count()
            == 0
        )
        assert page.url.endswith(RATE.format(slug="xss-chat"))
        t.assert_clean()

    poke()  # as the server rendered the page
    shown = _on_screen(t)
    page.keyboard.press("1")
    page.keyboard.press("Enter")
    _wait_for_next(t, shown)
    assert "<img src=x onerror=\"pwned('role')\">" in (page.text_content("#text-prompt") or "")
    poke()  # as rate.js put the next pair on the page

    # The admin's preview of a pair: the same rendering, as inert.
    admin_user.is_superuser = True  # the admin's permissions to see pairs
    admin_user.save()
    staff = tab()
    staff.login_as(admin_user)
    pair = Pair.objects.get(external_id="c1")
    staff.goto(f"/admin/annotation/pair/{pair.pk}/change/")
    assert staff.page.locator(".pair .turn").count() == len(odd)
    assert staff.page.locator(".pair :is(script, img, svg, iframe, object)").count() == 0
    for summary in staff.page.locator(".pair summary").all():
        summary.click()
    staff.page.screenshot(path=str(OUT / "admin-pair.png"), full_page=True)
    staff.assert_clean()


LONG_RESPONSE = "\n\n".join(
    f"Paragraph {i}. " + "Birds fly because their wings push air down. " * 12 for i in range(40)
)


@pytest.mark.parametrize("size", [(1366, 768), (390, 844)], ids=["desktop", "phone"])
def test_the_choices_and_submit_stay_in_view_with_long_responses(tab, make_project, make_rater, size):
    project = make_project(
        "bar", judgments_per_pair=1, strength_levels=5, rationale="required", instructions="Judge **well**."
    )
    _conversation_pairs(project, [_chat(12, size=600)], responses=[LONG_RESPONSE, LONG_RESPONSE + " more"])
    rita = make_rater(project, username="rita")
    t = tab(width=size[0], height=size[1], phone=size[0] < 500)
    t.login_as(rita)
    t.goto(RATE.format(slug="bar"))
    page = t.page

    def in_view(selector: str) -> bool:
        box = page.locator(selector).bounding_box()
        assert box is not None, selector
        return (
            box["y"] >= 0
            and box["y"] + box["height"] <= size[1]
            and box["x"] >= 0
            and box["x"] + box["width"] <= size[0]
        )

    for where in ("top", "middle"):
        for selector in (
            "#submit",
            "label[for=choice-left]",
            "label[for=choice-right]",
            "label[for=choice-tie]",
        ):
            assert in_view(selector), (where, selector)
        page.mouse.wheel(0, 700)
        page.wait_for_timeout(100)
    # Required inputs are marked so.
    assert page.locator(".choices legend .required").is_visible()
    assert page.locator("#strength legend .required").is_visible()
    assert page.locator("label[for=rationale] .required").is_visible()
    name = "desktop" if size[0] > 500 else "phone"
    page.screenshot(path=str(OUT / f"action-bar-{name}.png"))
    t.assert_clean()


def _luminance(rgb: str) -> float:
    channels = [int(c) / 255 for c in rgb[rgb.index("(") + 1 : rgb.index(")")].split(",")[:3]]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def _contrast(a: str, b: str) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


def test_the_dark_theme_follows_the_system(tab, make_project, make_rater):
    project = make_project(
        "dark",
        judgments_per_pair=1,
        strength_levels=3,
        rationale="optional",
        instructions="Pick the **better** one. See [the guide](https://example.org).",
    )
    _conversation_pairs(project, [_chat(5), _chat(3)])
    rita = make_rater(project, username="rita")
    for name, size in (("desktop", (1366, 768)), ("phone", (390, 844))):
        t = tab(width=size[0], height=size[1], phone=name == "phone")
        t.page.emulate_media(color_scheme="dark")
        t.login_as(rita)
        t.goto(RATE.format(slug="dark"))
        page = t.page
        colours = page.evaluate(
            """() => {
                const style = (s, p) => getComputedStyle(document.querySelector(s))[p];
                return {
                    page: style('html', 'backgroundColor'), text: style('html', 'color'),
                    card: style('.response', 'backgroundColor'), muted: style('.turns .role', 'color'),
                    link: style('.instructions a', 'color'), button: style('#submit', 'backgroundColor'),
                    button_text: style('#submit', 'color'), code: style('#pair pre', 'backgroundColor'),
                    code_text: style('#pair pre', 'color'), required: style('.required', 'color'),
                };
            }"""
        )
        assert _luminance(colours["page"]) < 0.02 and _luminance(colours["card"]) < 0.03, colours
        for fg, bg, least in (
            ("text", "card", 7),
            ("muted", "card", 4.5),
            ("link", "card", 4.5),
            ("button_text", "button", 4.5),
            ("code_text", "code", 4.5),
            ("required", "card", 4.5),
        ):
            assert _contrast(colours[fg], colours[bg]) >= least, (fg, bg, colours)
        page.keyboard.press("1")
        page.screenshot(path=str(OUT / f"dark-{name}.png"))
        page.keyboard.press("Enter")  # no strength: the error banner, in the dark
        page.wait_for_selector("#form-errors:not([hidden])")
        page.screenshot(path=str(OUT / f"dark-error-{name}.png"))
        t.assert_clean()


def test_the_error_banner_looks_like_an_error_and_moves_nothing(tab, make_project, make_rater):
    project = make_project("banner", judgments_per_pair=1, strength_levels=3)
    _conversation_pairs(project, [_chat(3), _chat(3)])
    rita = make_rater(project, username="rita")
    t = tab(width=1366, height=768)
    t.login_as(rita)
    t.goto(RATE.format(slug="banner"))
    page = t.page
    top = page.evaluate("document.getElementById('pair').getBoundingClientRect().top")
    page.keyboard.press("Enter")  # nothing chosen
    banner = page.locator("#form-errors")
    assert banner.is_visible() and banner.get_attribute("role") == "alert"
    assert "Choose a response first" in banner.inner_text()
    assert page.inner_text("#status") == ""  # the error is not in the green "Saved" place
    # Red, on the action bar (in view), and the pair did not move.
    look = banner.evaluate("e => [getComputedStyle(e).backgroundColor, getComputedStyle(e).color]")
    red, green, blue = (int(c) for c in look[0][look[0].index("(") + 1 : -1].split(",")[:3])
    assert red > green and red > blue, look
    box = banner.bounding_box()
    assert box and box["y"] >= 0 and box["y"] + box["height"] <= 768
    assert page.evaluate("document.getElementById('pair').getBoundingClientRect().top") == top
    page.screenshot(path=str(OUT / "error-banner-desktop.png"))
    page.keyboard.press("1")  # changing the answer puts the banner away
    assert banner.is_hidden()
    page.keyboard.press("Shift+Digit2")
    shown = _on_screen(t)
    page.keyboard.press("Enter")
    _wait_for_next(t, shown)
    # "Saved" is a toast over the page: green, fixed, and the pair below it did not move.
    status = page.locator("#status")
    page.wait_for_selector("#status:has-text('Saved. Next pair.')")
    assert status.evaluate("e => [getComputedStyle(e).position, e.dataset.kind]") == ["fixed", "good"]
    assert page.evaluate("document.getElementById('pair').getBoundingClientRect().top") == top
    saved = status.evaluate("e => getComputedStyle(e).backgroundColor")
    assert saved != look[0]
    assert page.locator("#time-session").inner_text().endswith("min")
    t.assert_clean()


def test_a_fifty_turn_conversation_of_200_kb_stays_responsive(tab, make_project, make_rater):
    """Measured and logged (tests/pages/out/long-conversation.json), never asserted on time: the page
    load, a key's effect, the plain view's switch, and the next pair's arrival."""
    project = make_project("long", judgments_per_pair=1)
    chat = _chat(49, size=4000)
    assert len(chat) == 50 and sum(len(m["content"]) for m in chat) >= 196_000
    _conversation_pairs(project, [chat, chat], responses=[MARKDOWN * 4, LONG_RESPONSE])
    from django.core.cache import cache

    cache.clear()  # the first load renders it all
    rita = make_rater(project, username="rita")
    t = tab(width=1366, height=768)
    t.login_as(rita)
    started = time.perf_counter()
    t.goto(RATE.format(slug="long"))
    page = t.page
    figures: dict[str, float] = {"load_s": time.perf_counter() - started}
    navigation = """() => {
        const n = performance.getEntriesByType('navigation')[0];
        return [n.responseStart - n.requestStart, n.domContentLoadedEventEnd - n.responseStart];
    }"""
    # The server's share (its first byte: the markdown rendered) and the browser's (parse, style, layout).
    figures["server_first_byte_ms"], figures["browser_dom_ready_ms"] = page.evaluate(navigation)
    started = time.perf_counter()
    page.reload()
    figures["reload_s"] = time.perf_counter() - started  # the texts' rendering now from the cache
    figures["reload_server_first_byte_ms"], figures["reload_browser_dom_ready_ms"] = page.evaluate(navigation)
    started = time.perf_counter()
    page.keyboard.press("1")
    page.wait_for_function("() => document.getElementById('choice-left').checked")
    figures["key_to_choice_ms"] = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    page.click("#plain-toggle")
    page.wait_for_function("() => document.documentElement.classList.contains('plain-text')")
    page.evaluate("() => document.body.offsetHeight")  # the layout the switch causes
    figures["plain_toggle_ms"] = (time.perf_counter() - started) * 1000
    page.click("#plain-toggle")
    page.focus("#title-prompt")
    shown = _on_screen(t)
    started = time.perf_counter()
    page.keyboard.press("Enter")
    _wait_for_next(t, shown)
    figures["enter_to_next_pair_ms"] = (time.perf_counter() - started) * 1000
    assert page.locator("#text-prompt .turn").count() == 50
    OUT.mkdir(exist_ok=True)
    (OUT / "long-conversation.json").write_text(json.dumps(figures, indent=2))
    print("50-turn 200 KB conversation:", json.dumps(figures))
    t.assert_clean()
