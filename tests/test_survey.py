"""Metric 2 survey kit: build from a real tiny scan, the server's refusals, analysis, CSV, report.

The browser test (a real Chromium answering every question) is tests/test_survey_browser.py.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from survey_fixtures import ATTENTION, K, PER_METHOD, add_tokens, build_args, make_scan, make_survey, request, runner, running_server

from fvr_audit.cli.app import app
from fvr_audit.survey.analyze import analyze
from fvr_audit.survey.manifest import NONE_OF_THESE, QuestionKind, load_manifest
from fvr_audit.survey.server import MAX_BODY_BYTES, question_order
from fvr_audit.survey.store import Answer, SurveyStore

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("survey")
    scan, gallery = make_scan(root)
    return scan, gallery, make_survey(scan, gallery, root / "survey")


@pytest.fixture
def survey(built, tmp_path):
    """A fresh copy of the built survey (each test gets its own answers database)."""
    return Path(shutil.copytree(built[2], tmp_path / "survey"))


def token_of(link: str) -> str:
    return re.fullmatch(r"http://[^/]+/s/([A-Za-z0-9_-]+)/", link).group(1)


def post(server, path: str, fields: dict):
    return request(server, "POST", path, urlencode(fields).encode(), FORM)


def consented(server, folder: Path, count: int = 1) -> list[tuple[str, str]]:
    """``count`` participants who agreed to take part: (token, nonce)."""
    store = SurveyStore(folder)
    people = []
    for link in add_tokens(folder, count):
        token = token_of(link)
        nonce = store.participant(token)["nonce"]
        status, headers, _ = post(server, f"/s/{token}/consent", {"nonce": nonce, "consent": "yes"})
        assert status == 303 and headers["Location"] == f"/s/{token}/"
        people.append((token, nonce))
    return people


def current_question(server, token: str) -> str:
    status, _, body = request(server, "GET", f"/s/{token}/")
    assert status == 200
    return re.search(rb'name="question" value="([0-9a-f]{16})"', body).group(1).decode()


# ----------------------------------------------------------------------------------- build


def test_build_writes_questions_images_and_a_private_answer_key(built):
    scan, _, folder = built
    manifest = load_manifest(folder)
    results = json.loads((scan / "results.json").read_text())
    labels = {t["index"]: t["label"] for t in results["targets"]}
    kinds = [q.kind for q in manifest.questions]
    assert kinds.count(QuestionKind.RECONSTRUCTION) == PER_METHOD and kinds.count(QuestionKind.ATTENTION) == ATTENTION
    assert manifest.methods == ("naive",) and manifest.engine == "local:faceres-1024" and manifest.k == K
    for q in manifest.questions:
        identities = [c.identity for c in q.candidates]
        assert len(identities) == K == len(set(identities))
        if q.kind is QuestionKind.RECONSTRUCTION:
            assert q.target_label == labels[q.target_index]
            expected = identities.index(q.target_label) + 1 if q.target_label in identities else NONE_OF_THESE
            assert q.answer == expected
            assert q.probe not in {c.image for c in q.candidates}
        else:  # a real photo of one of the candidates
            assert q.method is None and identities[q.answer - 1] == q.target_label
    # every shown image was copied in; files 0600, folders 0700
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and stat.S_IMODE((folder / "images").stat().st_mode) == 0o700
    files = sorted((folder / "images").iterdir())
    assert {f.name for f in files} == set(manifest.images.values())
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in [*files, folder / "manifest.json"])


def test_build_refuses_an_engine_an_attack_used(built, tmp_path):
    scan, gallery, _ = built
    result = runner.invoke(app, build_args(scan, gallery, tmp_path / "s", "--engine", "local:dlib-resnet128"))
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "fairness rule" in result.stderr and "naive" in result.stderr
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("problem", ["no-results", "not-empty", "unknown-method", "k-too-large"])
def test_build_bad_input_is_one_line_exit_2(built, tmp_path, problem):
    scan, gallery, _ = built
    args = build_args(scan, gallery, tmp_path / "s")
    if problem == "no-results":
        args[2] = str(tmp_path)
        expected = "results.json: missing"
    elif problem == "not-empty":
        (tmp_path / "s").mkdir()
        (tmp_path / "s" / "x").write_text("x")
        expected = "not empty"
    elif problem == "unknown-method":
        args += ["--methods", "gradient"]
        expected = "--methods gradient: the scan in"
    else:
        args[args.index("--k") + 1] = "13"
        expected = "--k 13 needs at least 13"
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == result.stderr.splitlines()[-1] and expected in errors[0]


def test_tokens_add_prints_one_plain_link_per_line(survey):
    base = "https://survey.example.org/a-very-long-path-prefix-that-a-terminal-would-wrap-if-rich-printed-it"
    lines = add_tokens(survey, 3, base_url=base)
    assert len(lines) == 3 and len(set(lines)) == 3
    for line in lines:
        assert re.fullmatch(re.escape(base) + r"/s/[A-Za-z0-9][A-Za-z0-9_-]{21}/", line)
    assert len(SurveyStore(survey).tokens()) == 3
    assert stat.S_IMODE((survey / "survey.sqlite").stat().st_mode) == 0o600


# ----------------------------------------------------------------------------------- server


def test_pages_reveal_nothing_of_the_answer_key_and_fetch_nothing_outside(survey):
    manifest = load_manifest(survey)
    with running_server(survey) as server:
        (token, _), = consented(server, survey)
        status, headers, body = request(server, "GET", f"/s/{token}/")
    page = body.decode()
    assert status == 200 and "Question 1 of" in page
    assert "default-src 'none'" in headers["Content-Security-Policy"] and headers["Cache-Control"] == "no-store"
    identities = {c.identity for q in manifest.questions for c in q.candidates} | {q.target_label for q in manifest.questions}
    assert not any(name in page for name in identities)
    assert not re.search(r"""(src|href|action)=["'](https?:)?//""", page)  # nothing from elsewhere
    assert "reconstruction" not in page.lower() and "attention" not in re.sub(r"<[^>]+>", "", page).split("Question")[1].lower()


def test_unknown_token_is_refused_everywhere(survey):
    manifest = load_manifest(survey)
    image = next(iter(manifest.images))
    ghost = "A" * 22
    with running_server(survey) as server:
        consented(server, survey)
        assert request(server, "GET", f"/s/{ghost}/")[0] == 404
        assert post(server, f"/s/{ghost}/consent", {"nonce": "x", "consent": "yes"})[0] == 404
        assert post(server, f"/s/{ghost}/answer", {"nonce": "x", "question": manifest.questions[0].id, "choice": 1, "confidence": 3})[0] == 404
        assert request(server, "GET", f"/s/{ghost}/img/{image}")[0] == 404
    assert SurveyStore(survey).answers() == []


def test_a_second_submission_is_refused_and_the_first_answer_kept(survey):
    with running_server(survey) as server:
        (token, nonce), = consented(server, survey)
        question = current_question(server, token)
        first = post(server, f"/s/{token}/answer", {"nonce": nonce, "question": question, "choice": 2, "confidence": 4})
        again = post(server, f"/s/{token}/answer", {"nonce": nonce, "question": question, "choice": 0, "confidence": 1})
    assert first[0] == 303 and again[0] == 409
    (answer,) = SurveyStore(survey).answers()
    assert (answer.question, answer.choice, answer.confidence) == (question, 2, 4)
    assert answer.seconds is not None and answer.seconds >= 0


def test_another_participants_token_or_question_is_refused(survey):
    with running_server(survey) as server:
        (alice, alice_nonce), (bob, bob_nonce) = consented(server, survey, 2)
        bob_question = current_question(server, bob)
        alice_question = current_question(server, alice)
        # Alice's form (her nonce) sent under Bob's link
        stolen = post(server, f"/s/{bob}/answer", {"nonce": alice_nonce, "question": bob_question, "choice": 1, "confidence": 3})
        # Alice answering a question she has not been shown (one Bob is at, or a later one of hers)
        order = [q.id for q in question_order(load_manifest(survey), alice)]
        ahead = order[1] if bob_question == alice_question else bob_question
        skipped = post(server, f"/s/{alice}/answer", {"nonce": alice_nonce, "question": ahead, "choice": 1, "confidence": 3})
        forged = post(server, f"/s/{alice}/answer", {"nonce": alice_nonce, "question": "0123456789abcdef", "choice": 1, "confidence": 3})
        malformed = post(server, f"/s/{alice}/answer", {"nonce": alice_nonce, "question": "../manifest", "choice": 1, "confidence": 3})
        out_of_range = post(server, f"/s/{alice}/answer", {"nonce": alice_nonce, "question": alice_question, "choice": K + 1, "confidence": 3})
        bad_likert = post(server, f"/s/{alice}/answer", {"nonce": alice_nonce, "question": alice_question, "choice": 1, "confidence": 6})
    assert stolen[0] == 403
    assert skipped[0] == 400 and forged[0] == 400 and malformed[0] == 400
    assert out_of_range[0] == 400 and bad_likert[0] == 400
    assert SurveyStore(survey).answers() == []


def test_paths_outside_the_survey_folder_are_refused(survey):
    manifest = load_manifest(survey)
    (survey.parent / "secret.txt").write_text("TOP-SECRET-OUTSIDE")
    with running_server(survey) as server:
        (token, _), = consented(server, survey)
        probe = next(q.probe for q in manifest.questions if q.id == current_question(server, token))
        assert request(server, "GET", f"/s/{token}/img/{probe}")[0] == 200
        not_shown = next(i for i in manifest.images if all(
            i != q.probe and i not in {c.image for c in q.candidates}
            for q in manifest.questions if q.id == current_question(server, token)
        ))
        for path in (
            f"/s/{token}/img/../../manifest.json",
            f"/s/{token}/img/..%2f..%2fmanifest.json",
            f"/s/{token}/img/%2e%2e/%2e%2e/secret.txt",
            f"/s/{token}/../../secret.txt",
            "/manifest.json",
            "/survey.sqlite",
            f"/images/{manifest.images[probe]}",
            f"/s/{token}/img/{manifest.images[probe]}",  # a file name is not an id
            "//etc/passwd",
            f"/s/{token}/img/{not_shown}",  # an image of a question not shown yet
        ):
            status, _, body = request(server, "GET", path)
            assert status == 404, path
            assert b"TOP-SECRET-OUTSIDE" not in body and b'"schema"' not in body and b"SQLite" not in body


def test_a_large_or_lengthless_body_is_refused(survey):
    with running_server(survey) as server:
        (token, nonce), = consented(server, survey)
        question = current_question(server, token)
        big = urlencode({"nonce": nonce, "question": question, "choice": 1, "confidence": 3, "pad": "x" * MAX_BODY_BYTES}).encode()
        too_large = request(server, "POST", f"/s/{token}/answer", big, FORM)
        claimed = request(server, "POST", f"/s/{token}/answer", b"", {**FORM, "Content-Length": str(10**9)})
        no_length = request(server, "POST", f"/s/{token}/answer", None, FORM)
        wrong_type = request(server, "POST", f"/s/{token}/answer", b"{}", {"Content-Type": "application/json"})
    assert too_large[0] == 413 and claimed[0] == 413 and no_length[0] == 411 and wrong_type[0] == 415
    assert SurveyStore(survey).answers() == []


def test_images_are_only_served_after_consent(survey):
    manifest = load_manifest(survey)
    with running_server(survey) as server:
        (token,) = [token_of(line) for line in add_tokens(survey, 1)]
        status, _, body = request(server, "GET", f"/s/{token}/")
        assert status == 200 and b"agree to take part" in body
        assert all(request(server, "GET", f"/s/{token}/img/{i}")[0] == 404 for i in list(manifest.images)[:3])


# ----------------------------------------------------------------------------------- analysis


def _answers(manifest, plan: dict[str, list[tuple[bool, int]]]) -> list[Answer]:
    """plan: token -> [(right?, confidence)] in manifest question order (attention checks included)."""
    answers = []
    for token, given in plan.items():
        for q, (right, confidence) in zip(manifest.questions, given):
            choice = q.answer if right else (q.answer % q.k) + 1  # a wrong pick: the next position
            answers.append(Answer(token, q.id, choice, confidence, 1000.0, 4.0))
    return answers


def test_analysis_figures_exactly(built):
    manifest = load_manifest(built[2])
    questions = list(manifest.questions)
    attention = [i for i, q in enumerate(questions) if q.kind is QuestionKind.ATTENTION]
    shown = [i for i, q in enumerate(questions) if q.kind is QuestionKind.RECONSTRUCTION and q.answer != NONE_OF_THESE]
    absent = [i for i, q in enumerate(questions) if q.kind is QuestionKind.RECONSTRUCTION and q.answer == NONE_OF_THESE]
    assert shown, "the fixture needs questions whose candidates hold the true person"

    def plan(right_on: set[int], confidence: int, fail_attention: bool = False):
        return [
            ((not fail_attention) if i in attention else i in right_on, confidence) for i in range(len(questions))
        ]

    everything = set(range(len(questions)))
    plans = {
        "alice": plan(everything, 5),  # all right
        "bob": plan({shown[0]}, 1),  # one right among the shown; wrong on the absent ones
        "carol": plan(everything, 3, fail_attention=True),  # excluded
    }
    result = analyze(manifest, _answers(manifest, plans), invited=4, seed=0, resamples=500)
    assert result["participants"] == {"invited": 4, "answered": 3, "included": 2, "excluded_attention": 1, "complete": 2}
    (naive,) = result["methods"]
    assert naive["answers"] == 2 * len(shown) and naive["correct"] == len(shown) + 1
    assert naive["accuracy"] == pytest.approx((len(shown) + 1) / (2 * len(shown)), abs=1e-6)
    assert naive["participants"] == 2
    assert naive["participant_accuracy"]["max"] == 1.0 and naive["participant_accuracy"]["min"] == pytest.approx(1 / len(shown), abs=1e-6)
    low, high = naive["accuracy_ci"]
    assert low <= naive["accuracy"] <= high
    assert naive["absent_answers"] == 2 * len(absent) and naive["absent_said_none"] == len(absent)
    assert naive["confidence"]["counts"] == {"1": PER_METHOD, "2": 0, "3": 0, "4": 0, "5": PER_METHOD}
    assert naive["confidence"]["confident"] == 0.5 and naive["median_seconds"] == 4.0
    assert result["baseline"] == 1 / K and naive["times_chance"] == pytest.approx(naive["accuracy"] * K, abs=1e-5)
    # the same answers, the same seed: the same interval; a lenient attention rule counts carol too
    assert analyze(manifest, _answers(manifest, plans), invited=4, seed=0, resamples=500)["methods"][0]["accuracy_ci"] == [low, high]
    lenient = analyze(manifest, _answers(manifest, plans), invited=4, max_attention_failures=ATTENTION)
    assert lenient["participants"]["included"] == 3


# ----------------------------------------------------------------------------------- CSV


def test_export_then_import_round_trip(survey, tmp_path):
    manifest = load_manifest(survey)
    store = SurveyStore(survey)
    store.ensure_participants(["p1"])
    store.import_answers(_answers(manifest, {"p1": [(i % 2 == 0, 1 + i % 5) for i in range(len(manifest.questions))]}))
    out = tmp_path / "answers.csv"
    result = runner.invoke(app, ["survey", "export", str(survey), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert rows[0] == "token,question,kind,method,choice,correct,confidence,seconds,answered_at,source"
    assert len(rows) == 1 + len(manifest.questions)
    fresh = Path(shutil.copytree(survey, tmp_path / "fresh"))
    (fresh / "survey.sqlite").unlink()
    result = runner.invoke(app, ["survey", "import", str(fresh), str(out)])
    assert result.exit_code == 0, result.output
    before = {(a.question, a.choice, a.confidence, a.seconds) for a in store.answers()}
    after = {(a.question, a.choice, a.confidence, a.seconds) for a in SurveyStore(fresh).answers()}
    assert before == after
    # a second import of the same rows: refused, nothing added
    again = runner.invoke(app, ["survey", "import", str(fresh), str(out)])
    assert again.exit_code == 2 and "nothing was imported" in again.stderr
    assert len(SurveyStore(fresh).answers()) == len(manifest.questions)


@pytest.mark.parametrize(
    "rows, expected",
    [
        ("token,question,choice,confidence\np1,{q},1,7\n", "line 2: confidence '7': expected 1 to 5"),
        ("token,question,choice,confidence\np1,0123456789abcdef,1,3\n", "line 2: question '0123456789abcdef' is not in"),
        ("token,question,choice,confidence\np1,{q},9,3\n", "line 2: choice '9'"),
        ("token,question,choice,confidence\np1,{q},1,3\np1,{q},none,3\n", "line 3: a second answer of p1"),
        ("token,question,choice\np1,{q},1\n", "missing column(s) confidence"),
        ("token,question,choice,confidence\n=cmd(),{q},1,3\n", "line 2: token '=cmd()'"),
    ],
)
def test_import_bad_rows_fail_whole_with_file_and_line(survey, tmp_path, rows, expected):
    question = load_manifest(survey).questions[0].id
    path = tmp_path / "in.csv"
    path.write_text(rows.format(q=question))
    result = runner.invoke(app, ["survey", "import", str(survey), str(path)])
    assert result.exit_code == 2
    assert result.stderr == f"error: {path}: {result.stderr.split(': ', 2)[2]}" and expected in result.stderr
    assert SurveyStore(survey).answers() == []


def test_export_questions_has_no_answer_key(survey, tmp_path):
    out = tmp_path / "q.csv"
    result = runner.invoke(app, ["survey", "export", str(survey), "--what", "questions", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    manifest = load_manifest(survey)
    assert text.splitlines()[0] == "question,probe," + ",".join(f"candidate_{i}" for i in range(1, K + 1))
    assert not any(c.identity in text for q in manifest.questions for c in q.candidates)


# ----------------------------------------------------------------------------------- report


def test_analyze_with_scan_adds_metric_2_to_that_scans_report(built, survey, tmp_path):
    scan = Path(shutil.copytree(built[0], tmp_path / "scan"))
    before = (scan / "report.html").read_text()
    assert 'id="metric-2"' not in before and "not measured automatically" in before
    manifest = load_manifest(survey)
    store = SurveyStore(survey)
    store.ensure_participants(["p1", "p2"])
    store.import_answers(_answers(manifest, {p: [(True, 4)] * len(manifest.questions) for p in ("p1", "p2")}))
    result = runner.invoke(app, ["survey", "analyze", str(survey), "--scan", str(scan), "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert json.loads((survey / "analysis.json").read_text())["methods"] == printed["methods"]
    assert json.loads((scan / "metric2.json").read_text())["methods"] == printed["methods"]
    assert stat.S_IMODE((scan / "metric2.json").stat().st_mode) == 0o600
    after = (scan / "report.html").read_text()
    assert '<section id="metric-2"' in after and "not measured automatically" not in after
    assert after.count('<img class="face"') == before.count('<img class="face"')  # the same faces, from the folder
    assert (scan / "results.json").read_bytes() == (built[0] / "results.json").read_bytes()
    # a survey of another scan is refused, and nothing is written
    other = Path(shutil.copytree(built[0], tmp_path / "other"))
    (other / "results.json").write_text((other / "results.json").read_text().replace('"naive"', '"naive" ', 1))
    refused = runner.invoke(app, ["survey", "analyze", str(survey), "--scan", str(other)])
    assert refused.exit_code == 2 and "not the scan this survey was built from" in refused.stderr
    assert not (other / "metric2.json").exists()


def test_report_metric_2_section_reads_as_a_document(built):
    """The section with a real analysis on the synthetic sample report: numbered, in the contents,
    drawn as a figure, no number dump, and the 'not measured' sentences gone; without it, unchanged."""
    from sample_results import sample_results
    from test_report_pages import demo_like_images, is_number_dump

    from fvr_audit.report import render_html

    manifest = load_manifest(built[2])
    plans = {f"p{i}": [((i + j) % 3 != 0, 1 + (i + j) % 5) for j in range(len(manifest.questions))] for i in range(6)}
    analysis = analyze(manifest, _answers(manifest, plans), invited=6)
    results = sample_results(12)
    images = demo_like_images(results, originals=False)
    page = render_html(results, images=images, metric2=analysis)
    plain = render_html(results, images=images)
    numbers = [int(n) for n in re.findall(r'<h2><span class="num">(\d+)</span>', page)]
    assert numbers == list(range(1, 10)) and re.findall(r'<h2><span class="num">(\d+)</span>', plain) == [str(n) for n in range(1, 9)]
    assert '<a href="#metric-2">' in page and '<a href="#metric-2">' not in plain
    section = page[page.index('<section id="metric-2"'): page.index("</section>", page.index('<section id="metric-2"'))]
    assert '<svg class="plot"' in section and "naive" in section
    text = re.sub(r"<svg.*?</svg>", " ", section, flags=re.DOTALL)
    text = html_text(text)
    assert not is_number_dump(text)
    assert "not measured automatically" not in page and "not measured automatically" in plain
    assert "this audit does not measure it" not in page and "this audit does not measure it" in plain
    assert "People, too." in page and "People, too." not in plain
    # cross-references follow the numbering
    assert "All are in section 6." in page and "All are in section 5." in plain


def test_report_refuses_an_analysis_of_another_kind():
    from sample_results import sample_results

    from fvr_audit.errors import InputError
    from fvr_audit.report import render_html

    with pytest.raises(InputError, match="fvr-audit/survey-analysis"):
        render_html(sample_results(4), metric2={"schema": "something-else", "schema_version": 1})


def html_text(fragment: str) -> str:
    import html as html_lib

    return html_lib.unescape(re.sub(r"<[^>]+>", " ", fragment))


def test_build_refuses_a_gallery_of_other_people(built, tmp_path):
    scan, _, _ = built
    strangers = tmp_path / "strangers"
    for name in ("alice", "bob"):
        (strangers / name).mkdir(parents=True)
    result = runner.invoke(app, build_args(scan, strangers, tmp_path / "s"))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {strangers}: none of its identity folders is named as one of the scan's targets (e.g. "
        f"{sorted(t['label'] for t in json.loads((scan / 'results.json').read_text())['targets'])[0]}); "
        "the gallery must hold photos of the same people, named by label"
    )


def test_serve_prints_its_address_and_answers_on_it(survey):
    import os
    import subprocess
    import urllib.error
    import urllib.request

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    process = subprocess.Popen(
        [sys.executable, "-m", "fvr_audit", "survey", "serve", str(survey), "--port", "0", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", url), url
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{url}/", timeout=10)
        assert refused.value.code == 404
    finally:
        process.terminate()
        process.wait(10)
    bad = runner.invoke(app, ["survey", "serve", str(survey), "--port", "70000"])
    assert bad.exit_code == 2 and bad.stderr.strip() == "error: --port 70000: expected 0 to 65535"


def test_analyze_without_answers_says_so(survey):
    result = runner.invoke(app, ["survey", "analyze", str(survey), "--json"])
    assert result.exit_code == 0, result.output
    analysis = json.loads(result.stdout)
    assert analysis["participants"]["answered"] == 0
    assert analysis["methods"][0]["accuracy"] is None and analysis["methods"][0]["accuracy_ci"] is None
    plain = runner.invoke(app, ["survey", "analyze", str(survey)])
    assert plain.exit_code == 0 and "naive" in plain.stdout and "participants: 0 counted of 0" in plain.stdout


def test_a_folder_that_is_not_a_survey_is_one_line_exit_2(tmp_path):
    for args in (["survey", "serve", str(tmp_path)], ["survey", "analyze", str(tmp_path)],
                 ["survey", "tokens", "add", "2", str(tmp_path)], ["survey", "export", str(tmp_path), "-o", str(tmp_path / "a.csv")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, args
        assert result.stderr == f"error: {tmp_path / 'manifest.json'}: missing; {tmp_path} is not a survey folder (make one with `fvr-audit survey build`)\n"


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="pdftotext (poppler-utils) is not installed")
def test_report_pdf_has_the_metric_2_section(built, tmp_path):
    import subprocess

    from sample_results import sample_results

    from fvr_audit.report import ReportFormat, render_report

    manifest = load_manifest(built[2])
    plans = {f"p{i}": [(j % 2 == 0, 3) for j in range(len(manifest.questions))] for i in range(3)}
    analysis = analyze(manifest, _answers(manifest, plans), invited=3)
    paths = render_report(sample_results(6), tmp_path, formats={ReportFormat.PDF}, metric2=analysis)
    text = subprocess.run(["pdftotext", "-layout", str(paths[ReportFormat.PDF]), "-"], capture_output=True, text=True, check=True).stdout
    assert "Metric 2: do people recognise the faces?" in text and "Matching accuracy" in text
    assert "not measured automatically" not in text
