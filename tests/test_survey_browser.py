"""End to end in a real headless browser: Debian's Chromium driven by Playwright.

Two participants take the survey built from a real tiny scan, clicking through the pages as a
person would: one answers some questions right and some wrong and fails one attention check;
both close the page half-way and come back by the same link. The stored answers and the
analysis figures are then checked exactly against what was clicked.

Needs ``chromium`` (apt) and ``playwright`` (pip; its own browsers are not used), both installed by
scripts/install_test_tools.sh and the ``test`` extra; skipped with a reason without them.
``FVR_AUDIT_SCREENSHOTS=DIR`` also saves the question page at desktop and phone sizes there.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from survey_fixtures import K, add_tokens, make_scan, make_survey, runner, running_server

from fvr_audit.cli.app import app
from fvr_audit.metrics.human import ParticipantTally, bootstrap_interval
from fvr_audit.survey.manifest import NONE_OF_THESE, QuestionKind, load_manifest
from fvr_audit.survey.server import question_order
from fvr_audit.survey.store import SurveyStore

CHROMIUM = os.environ.get("FVR_AUDIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"browser test: no Chromium at {CHROMIUM} (scripts/install_test_tools.sh installs it)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser test: playwright is not installed (pip install playwright)")
    executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def wrong_choice(answer: int) -> int:
    """A pick that is not the answer (the next position, or photo 1 for 'none of these')."""
    return answer % K + 1


def plan_for(manifest, token: str, *, fail_first_attention: bool) -> list[tuple[str, int, int]]:
    """(question id, choice, confidence) in the order this participant is shown the questions:
    reconstructions alternately right and wrong, attention checks right except, optionally, the first."""
    plan, failed, reconstruction = [], False, 0
    for position, q in enumerate(question_order(manifest, token)):
        if q.kind is QuestionKind.ATTENTION:
            right = not (fail_first_attention and not failed)
            failed = failed or not right
        else:
            right = reconstruction % 2 == 0
            reconstruction += 1
        plan.append((q.id, q.answer if right else wrong_choice(q.answer), position % 5 + 1))
    return plan


def answer_on_page(page, choice: int, confidence: int) -> None:
    page.locator(f"label.card:has(input[name=choice][value='{choice}'])").click()
    page.locator(f"label.card:has(input[name=confidence][value='{confidence}'])").click()
    with page.expect_navigation():
        page.locator("button[type=submit]").click()


def shown_question(page) -> str:
    return page.locator("input[name=question]").get_attribute("value")


def take_survey(browser, link: str, plan, *, stop_after: int, shots: Path | None = None) -> None:
    """Consent, answer ``stop_after`` questions, close the page, reopen the link, answer the rest."""
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.goto(link)
    assert "agree to take part" in page.content()
    page.locator("input[name=consent]").check()
    with page.expect_navigation():
        page.locator("button[type=submit]").click()
    for number, (question, choice, confidence) in enumerate(plan[:stop_after], start=1):
        assert page.locator(".count").inner_text() == f"Question {number} of {len(plan)}"
        assert shown_question(page) == question
        # every image on the page loaded (served by id, from the survey folder)
        assert page.evaluate("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
        if shots is not None and number == 1:
            save_screenshots(browser, page.url, shots)
        answer_on_page(page, choice, confidence)
    page.close()  # the tab is closed half-way ...
    context.close()
    context = browser.new_context(viewport=PHONE)  # ... and the link opened again, on another device
    page = context.new_page()
    page.goto(link)
    for number, (question, choice, confidence) in enumerate(plan[stop_after:], start=stop_after + 1):
        assert page.locator(".count").inner_text() == f"Question {number} of {len(plan)}"
        assert shown_question(page) == question
        answer_on_page(page, choice, confidence)
    assert "All %d answers are saved" % len(plan) in page.content()
    context.close()


def save_screenshots(browser, url: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        context = browser.new_context(viewport=viewport)
        page = context.new_page()
        page.goto(url)
        page.locator("label.card:has(input[name=choice][value='2'])").click()
        page.locator("label.card:has(input[name=confidence][value='4'])").click()
        page.screenshot(path=str(folder / f"survey-question-{name}.png"), full_page=name == "phone")
        context.close()


def test_two_participants_in_a_real_browser(browser, tmp_path):
    scan, gallery = make_scan(tmp_path)
    folder = make_survey(scan, gallery, tmp_path / "survey")
    manifest = load_manifest(folder)
    shots = Path(os.environ["FVR_AUDIT_SCREENSHOTS"]) if os.environ.get("FVR_AUDIT_SCREENSHOTS") else None
    with running_server(folder) as server:
        links = add_tokens(folder, 2, base_url=server.url)
        tokens = [re.search(r"/s/([^/]+)/$", link).group(1) for link in links]
        plans = {
            tokens[0]: plan_for(manifest, tokens[0], fail_first_attention=True),
            tokens[1]: plan_for(manifest, tokens[1], fail_first_attention=False),
        }
        for i, (link, token) in enumerate(zip(links, tokens)):
            take_survey(browser, link, plans[token], stop_after=3, shots=shots if i == 0 else None)

    # the answers, exactly as clicked; one per (token, question); server-side times
    stored = SurveyStore(folder).answers()
    assert len(stored) == 2 * len(manifest.questions)
    for token, plan in plans.items():
        mine = {a.question: a for a in stored if a.token == token}
        assert {q: (a.choice, a.confidence) for q, a in mine.items()} == {q: (c, f) for q, c, f in plan}
        assert all(a.source == "web" and a.seconds is not None and a.seconds >= 0 for a in mine.values())

    # the analysis figures, from what was clicked
    questions = {q.id: q for q in manifest.questions}

    def expected(included: list[str]) -> dict:
        tallies, levels, absent = [], [], []
        for token in sorted(included):  # the analysis resamples participants in token order
            right = [c == questions[q].answer for q, c, _ in plans[token]
                     if questions[q].kind is QuestionKind.RECONSTRUCTION and questions[q].answer != NONE_OF_THESE]
            tallies.append(ParticipantTally(sum(right), len(right)))
            levels += [f for q, _, f in plans[token] if questions[q].kind is QuestionKind.RECONSTRUCTION]
            absent += [c == NONE_OF_THESE for q, c, _ in plans[token]
                       if questions[q].kind is QuestionKind.RECONSTRUCTION and questions[q].answer == NONE_OF_THESE]
        correct, answered = sum(t.correct for t in tallies), sum(t.answered for t in tallies)
        return {
            "answers": answered, "correct": correct, "accuracy": round(correct / answered, 6),
            "accuracy_ci": [round(v, 6) for v in bootstrap_interval(tallies, seed=0, resamples=2000)],
            "absent_answers": len(absent), "absent_said_none": sum(absent),
            "counts": {str(v): levels.count(v) for v in range(1, 6)},
        }

    for allowed, included, excluded in ((0, [tokens[1]], 1), (1, tokens, 0)):
        result = runner.invoke(app, ["survey", "analyze", str(folder), "--json", "--max-attention-failures", str(allowed)])
        assert result.exit_code == 0, result.output
        analysis = json.loads(result.stdout)
        assert analysis["participants"] == {
            "invited": 2, "answered": 2, "included": len(included), "excluded_attention": excluded, "complete": len(included),
        }
        (naive,) = analysis["methods"]
        want = expected(included)
        assert {key: naive[key] for key in ("answers", "correct", "accuracy", "accuracy_ci", "absent_answers", "absent_said_none")} == {
            key: want[key] for key in ("answers", "correct", "accuracy", "accuracy_ci", "absent_answers", "absent_said_none")
        }
        assert naive["confidence"]["counts"] == want["counts"]
        assert analysis["baseline"] == round(1 / K, 6)
