"""The risk report: structure of report.html / report.pdf / results.json, not pixels.

Everything renders from the synthetic results in ``sample_results`` (no real faces, no models).
The HTML is rendered once per module; the PDF once (WeasyPrint takes a few seconds).
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import re
import stat
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# The synthetic results live next to this file; pytest's importlib mode does not put tests/ on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from sample_results import ENGINES, sample_images, sample_results

from fvr_audit.audit.results import LOWER_BOUND_NOTICE, REFERENCE_METHODS
from fvr_audit.audit.verdict import decide_verdict
from fvr_audit.errors import InputError
from fvr_audit.report import (
    FORMATTERS,
    REDACT_GRID,
    TEMPLATES_ENV,
    ReportFormat,
    ReportImages,
    pixelate,
    render_html,
    render_report,
)
from fvr_audit.report.formats import PdfFormatter
from fvr_audit.report.images import THUMBNAIL_SIZE
from fvr_audit.report.render import FIRST_PAGE_TARGETS

TARGETS = 6
SECTIONS = (
    "verdict",
    "what-was-tested",
    "metric-1",
    "false-positives",
    "gallery",
    "provenance",
    "limitations",
    "gdpr",
)
#: Every face image in a report: JPEG, or PNG when redacted (lossless, so the blocks stay exact).
FACE_URI = re.compile(r'src="data:image/(?:jpeg|png);base64,([A-Za-z0-9+/=]+)"')


def _images(targets: int = TARGETS, *, originals: bool = True) -> ReportImages:
    faces = sample_images(targets)
    return ReportImages.from_arrays(
        {"eigenfaces": faces, "gradient": faces[::-1].copy()},
        range(targets),
        originals=sample_images(targets, size=120) if originals else None,  # originals may be any size
    )


@pytest.fixture(scope="module")
def results():
    return sample_results(TARGETS)


@pytest.fixture(scope="module")
def html(results) -> str:
    return render_html(results, images=_images())


@pytest.fixture(scope="module")
def redacted_html(results) -> str:
    return render_html(results, images=_images(), redact=True)


@pytest.fixture(scope="module")
def written(results, tmp_path_factory) -> tuple[Path, dict]:
    """Every format written once (the PDF is the slow part)."""
    out = tmp_path_factory.mktemp("report")
    return out, render_report(results, out, images=_images(), formats=set(ReportFormat))


def _section(html: str, section_id: str) -> str:
    start = html.index(f'<section id="{section_id}"')
    return html[start : html.index("</section>", start)]


def _data_uris(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in FACE_URI.findall(html)]


def _faces(html: str) -> int:
    return len(FACE_URI.findall(html))


# ---------------------------------------------------------------------------------------- HTML


def test_sections_present_in_order(html):
    positions = [html.index(f'<section id="{sid}"') for sid in SECTIONS]
    assert positions == sorted(positions)


def test_verdict_first_with_badge_rule_gate_and_notice(html, results):
    assert results.verdict.level.value == "high"
    verdict = _section(html, "verdict")
    assert html.index('<section id="verdict"') < html.index(
        "<section", html.index('<section id="verdict"') + 1
    )
    assert re.search(r'class="badge badge-high"[^>]*>High risk<', verdict)
    assert LOWER_BOUND_NOTICE in verdict
    assert results.verdict.rule.replace("'", "&#39;") in verdict
    assert f"top-{results.verdict.k} among N = {results.verdict.n:,}" in verdict


def test_what_was_tested_lists_methods_engines_galleries_and_fairness(html, results):
    tested = _section(html, "what-was-tested")
    for method in results.methods:
        assert f">{method.name}<" in tested or f"{method.name}</td>" in tested
        assert method.access in tested
    for engine in results.engines:
        assert engine.name in tested
        assert engine.gallery_source.replace("'", "&#39;") in tested
    assert results.extractor["sha256"] in tested
    assert "✓ independent" in tested and "✗" not in tested


def test_fairness_violation_is_flagged(results):
    cheating = tuple(
        dataclasses.replace(m, models_used=m.models_used + ("faceres-1024",)) if m.name == "gradient" else m
        for m in results.methods
    )
    page = render_html(dataclasses.replace(results, methods=cheating))
    assert "Fairness warning" in _section(page, "verdict")
    assert "✗ used this engine" in _section(page, "what-was-tested")


def test_plots_are_inline_svg_one_per_engine(html):
    metric = _section(html, "metric-1")
    assert metric.count("<svg") == len(ENGINES)
    assert "<?xml" not in html and "<!DOCTYPE svg" not in html
    # Reference rows and the chance line are in the legend; each engine has its (K, N) table.
    assert "original photo (upper bound)" in metric and "chance (K/N" in metric
    # Per engine: K at the gate's N on the page, and the whole K x N sweep folded (not printed).
    assert metric.count('<table class="data at-gate-n">') == len(ENGINES)
    assert metric.count('<details class="full-sweep screen-only">') == len(ENGINES)
    assert metric.count('<table class="data grid">') == len(ENGINES)
    for table in re.findall(r'<table class="data (?:at-gate-n|grid)">.*?</table>', metric, re.DOTALL):
        assert table.count('class="r cell gate-cell"') == 4  # one gate cell per method
    for sweep in re.findall(r'<details class="full-sweep screen-only">(.*?)</details>', metric, re.DOTALL):
        assert '<table class="data grid">' in sweep and "fpr " in sweep


def test_images_are_small_jpeg_data_uris(html):
    gallery = _section(html, "gallery")
    assert _faces(gallery) == TARGETS * 3  # original + two methods
    first_page = min(TARGETS, FIRST_PAGE_TARGETS) * 3
    assert _section(html, "verdict").count('src="data:image/jpeg;base64,') == first_page
    assert _faces(html) == TARGETS * 3 + first_page
    for data in _data_uris(html):
        assert data.startswith(b"\xff\xd8")  # JPEG
        assert max(Image.open(io.BytesIO(data)).size) <= THUMBNAIL_SIZE  # stored at the size shown


def test_no_images_no_data_uris(results):
    page = render_html(results, images=None)
    assert "data:image" not in page
    assert "No images were given" in _section(page, "gallery")


def test_reconstructions_only_when_no_originals(results):
    page = render_html(results, images=_images(originals=False))
    gallery = _section(page, "gallery")
    assert _faces(gallery) == TARGETS * 2
    assert "<th>original photo</th>" not in gallery
    # Page 1 says why there is no original column.
    assert "No original photos are shown" in _section(page, "verdict")


def test_self_contained_no_external_references(html, redacted_html):
    for page in (html, redacted_html):
        assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:|//|file:|ftp:)""", page, re.IGNORECASE)
        assert not re.search(r"""url\(\s*["']?\s*(?:https?:|//|file:)""", page, re.IGNORECASE)
        assert "<script" not in page.lower() and "<link" not in page.lower()
        assert "@import" not in page and "@font-face" not in page
        # Internal anchors only.
        assert all(href.startswith("#") for href in re.findall(r'href="([^"]*)"', page))


def test_redact_pixelates_every_face_and_says_so(html, redacted_html):
    plain, redacted = _data_uris(html), _data_uris(redacted_html)
    assert len(plain) == len(redacted) == _faces(html)
    block = THUMBNAIL_SIZE // REDACT_GRID
    for before, after in zip(plain, redacted):
        assert before != after
        assert after.startswith(b"\x89PNG")  # lossless: no compression ringing inside a block
        pixels = np.asarray(Image.open(io.BytesIO(after)).convert("RGB"))
        side = pixels.shape[0] // REDACT_GRID
        assert side == block
        # Constant inside every block: no detail finer than the grid survives.
        blocks = pixels.reshape(REDACT_GRID, side, REDACT_GRID, side, 3)
        assert (blocks == blocks[:, :1, :, :1]).all()
    gallery = _section(redacted_html, "gallery")
    assert "Redacted." in gallery and f"{REDACT_GRID}×{REDACT_GRID}" in gallery
    assert "images redacted" in redacted_html
    assert "person_" not in gallery  # names replaced by target indices
    assert "person_" in _section(html, "gallery")


def test_pixelate_keeps_size_and_averages_blocks():
    face = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    out = pixelate(face)
    assert out.shape == face.shape and out.dtype == np.uint8
    assert len(np.unique(out.reshape(-1, 3), axis=0)) <= REDACT_GRID**2
    assert abs(int(out[:25, :25].mean()) - int(face[:25, :25].mean())) <= 1


def test_user_strings_are_escaped(results):
    evil = "<script>alert(1)</script>"
    rename = {"gradient": evil, "eigenfaces": "eigen$faces$ \\ x"}  # "$" would start matplotlib mathtext
    methods = tuple(dataclasses.replace(m, name=rename.get(m.name, m.name)) for m in results.methods)
    records = tuple(dataclasses.replace(r, method=rename.get(r.method, r.method)) for r in results.records)
    hostile = dataclasses.replace(
        results,
        methods=methods,
        records=records,
        verdict=decide_verdict(records, 1, 1000),
        notes=('<img src="http://example.com/x.png" onerror="alert(2)">',),
        database={"path": "db$with$dollars&<b>.npz", "n": 10},
    )
    page = render_html(hostile, images=ReportImages({evil: {0: sample_images(1)[0]}}))
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert '<img src="http' not in page and "&lt;img src=" in page
    assert "db$with$dollars&amp;&lt;b&gt;.npz" in page
    assert _section(page, "metric-1").count("<svg") == len(ENGINES)
    assert re.search(r"<text[^>]*>eigen\$faces\$ \\ x</text>", page)  # literal legend text, no mathtext


def test_not_assessed_without_attacks(results):
    reference = tuple(r for r in results.records if r.method in REFERENCE_METHODS)
    empty = dataclasses.replace(
        results,
        methods=(),
        records=reference,
        same_class_false_positives=(),
        verification=(),
        verdict=decide_verdict(reference, 1, 1000),
    )
    page = render_html(empty)
    assert re.search(r'class="badge badge-not-assessed"[^>]*>Not assessed<', page)
    assert "No reconstruction attack ran" in page
    assert all(f'<section id="{sid}"' in page for sid in SECTIONS)


def test_gdpr_section_cites_articles_and_is_not_legal_advice(html):
    gdpr = _section(html, "gdpr")
    for article in ("Art. 4(14)", "Art. 9", "Art. 9(2)", "Art. 35", "Art. 32", "Arts. 33–34"):
        assert article in gdpr
    assert "Not legal advice" in gdpr


def test_limitations_say_lower_bound_and_metric_2_not_measured(html):
    limits = _section(html, "limitations")
    assert LOWER_BOUND_NOTICE in limits
    assert "Metric 2" in limits and "not measured automatically" in limits


# ------------------------------------------------------------------------------------- files


def test_render_report_writes_every_format_0600(written, results):
    out, paths = written
    assert set(paths) == set(ReportFormat)
    assert {p.name for p in paths.values()} == {"results.json", "report.html", "report.pdf"}
    for path in paths.values():
        assert path.parent == out
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in out.iterdir()) == [
        "report.html",
        "report.pdf",
        "results.json",
    ]  # no temp files


def test_results_json_round_trips(written, results):
    _, paths = written
    data = json.loads(paths[ReportFormat.JSON].read_text())
    assert data == json.loads(results.to_json())
    assert data["schema"] == "fvr-audit/results" and data["verdict"]["level"] == "high"


def _pdf_objects(data: bytes) -> bytes:
    """The PDF with every Flate stream inflated: WeasyPrint packs objects into compressed object streams."""
    text = data
    for stream in re.findall(rb"stream\r?\n(.*?)\r?\nendstream", data, re.DOTALL):
        try:
            text += zlib.decompress(stream)
        except zlib.error:
            continue
    return text


def _pdf_page_count(data: bytes) -> int:
    try:
        import pypdf
    except ImportError:
        return len(re.findall(rb"/Type\s*/Page(?![s\w])", _pdf_objects(data)))
    return len(pypdf.PdfReader(io.BytesIO(data)).pages)


def test_pdf_has_several_pages_and_the_images(written):
    _, paths = written
    data = paths[ReportFormat.PDF].read_bytes()
    assert data.startswith(b"%PDF-")
    assert data.rstrip().endswith(b"%%EOF")
    assert _pdf_page_count(data) >= len(SECTIONS)  # every major section starts a page
    # Every distinct face image is embedded (none silently dropped by the offline fetcher).
    distinct = len(set(_data_uris(paths[ReportFormat.HTML].read_text())))
    assert len(re.findall(rb"/Subtype\s*/Image", _pdf_objects(data))) == distinct


def test_existing_report_replaced_whole(results, tmp_path):
    old = tmp_path / "report.html"
    old.write_text("x" * 5_000_000)
    old.chmod(0o644)
    paths = render_report(results, tmp_path, images=None, formats={ReportFormat.HTML, ReportFormat.JSON})
    assert set(paths) == {ReportFormat.HTML, ReportFormat.JSON}
    text = old.read_text()
    assert text.startswith("<!DOCTYPE html>") and "x" * 100 not in text
    assert stat.S_IMODE(old.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html", "results.json"]


def test_failed_render_leaves_existing_files_untouched(results, tmp_path, monkeypatch):
    render_report(results, tmp_path, images=None, formats={"html", "json"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def boom(self, document):
        raise RuntimeError("pdf engine failed")

    monkeypatch.setattr(PdfFormatter, "render", boom)
    changed = dataclasses.replace(results, created="2027-01-01T00:00:00Z")
    with pytest.raises(RuntimeError, match="pdf engine failed"):
        render_report(changed, tmp_path, images=None, formats=set(ReportFormat))
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_formats_argument(results, tmp_path):
    assert set(render_report(results, tmp_path, images=None, formats={"json"})) == {ReportFormat.JSON}
    with pytest.raises(InputError):
        render_report(results, tmp_path, images=None, formats={"docx"})
    with pytest.raises(InputError):
        render_report(results, tmp_path, images=None, formats=set())
    assert all(fmt in FORMATTERS for fmt in ReportFormat)
    assert ReportFormat.PDF.filename == "report.pdf"


# ------------------------------------------------------------------------- images, templates


def test_report_images_validate_and_freeze():
    face = sample_images(1)[0]
    with pytest.raises(InputError, match="200x200"):
        ReportImages({"m": {0: face[:100]}})
    with pytest.raises(InputError, match="uint8"):
        ReportImages({"m": {0: face.astype(np.float32)}})
    with pytest.raises(InputError, match="2 reconstructions for 3"):
        ReportImages.from_arrays({"m": sample_images(2)}, [0, 1, 2])
    images = ReportImages({"m": {4: face}}, {4: face, 7: face})
    assert images.target_indices() == (4, 7)
    assert not images.reconstructions["m"][4].flags.writeable
    with pytest.raises(TypeError):
        images.reconstructions["m"][5] = face  # read-only mapping
    assert not ReportImages({})


def test_images_keyed_by_target_index_not_position(results):
    shifted = dataclasses.replace(
        results, targets=tuple(dataclasses.replace(t, index=100 + t.index) for t in results.targets)
    )
    by_position = ReportImages({"gradient": {i: face for i, face in enumerate(sample_images(TARGETS))}})
    with pytest.raises(InputError, match="Target.index"):
        render_html(shifted, images=by_position)  # never shown under someone else's name
    mapped = ReportImages.from_arrays(
        {"gradient": sample_images(TARGETS)},
        [t.index for t in shifted.targets],
        originals={0: sample_images(1)[0]},  # positions, as a scan collects them
    )
    gallery = _section(render_html(shifted, images=mapped), "gallery")
    assert "#100 person_0" in gallery and _faces(gallery) == TARGETS + 1


def test_templates_env_override(results, tmp_path, monkeypatch):
    (tmp_path / "report.css").write_text("/* house-style-marker */ body { color: #000; }\n")
    monkeypatch.setenv(TEMPLATES_ENV, str(tmp_path))
    page = render_html(results)
    assert "house-style-marker" in page  # the override's stylesheet ...
    assert '<section id="gdpr"' in page  # ... with the built-in template

    monkeypatch.setenv(TEMPLATES_ENV, str(tmp_path / "missing"))
    with pytest.raises(InputError, match=TEMPLATES_ENV):
        render_html(results)


def test_outputs_are_not_world_readable_even_with_permissive_umask(results, tmp_path):
    previous = os.umask(0o000)
    try:
        paths = render_report(results, tmp_path / "new", images=None, formats={"html"})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(paths[ReportFormat.HTML].stat().st_mode) == 0o600


def test_cli_summary_table_shows_a_dash_where_there_is_no_sar():
    """The random reference has no verification row; the table must not print a SAR of 0 for it."""
    from fvr_audit.cli.ci_summary import summary_table

    import dataclasses

    results = sample_results(TARGETS)
    largest = max(r.n for r in results.records)
    results = dataclasses.replace(results, settings={"fmr": 1e-3, "gate_n": largest, **results.settings})
    table = summary_table(results)
    assert table.columns[-1].header == "SAR@FMR0.001"
    with_sar = {(v.method, v.engine) for v in results.verification}
    for row in table.rows:
        if (row[0], row[1]) in with_sar:
            assert row[-1] != "—", row
        else:
            assert row[-1] == "—", row
    assert any(row[0] == "random" for row in table.rows)


def test_limitations_name_the_commercial_services_that_judged(results, tmp_path):
    local = render_report(results, tmp_path / "local", images=None, formats={"html"})[ReportFormat.HTML].read_text()
    assert "Commercial face recognition services may re-identify more, or less." in local
    first = results.engines[0]
    cloud = dataclasses.replace(results, engines=(dataclasses.replace(first, remote=True), *results.engines[1:]))
    html = render_report(cloud, tmp_path / "cloud", images=None, formats={"html"})[ReportFormat.HTML].read_text()
    assert f"including the commercial service(s) {first.name} at their own thresholds" in html
    assert "Commercial face recognition services may re-identify" not in html


def test_each_engine_block_names_its_strongest_fair_attack(results, tmp_path):
    from fvr_audit.audit.verdict import strongest_attacks

    html = render_report(results, tmp_path, images=None, formats={"html"})[ReportFormat.HTML].read_text()
    gate_k, gate_n = results.verdict.k, results.verdict.n
    best = strongest_attacks(results.records, gate_k, gate_n)
    assert best, "the sample results have attacks at the gate"
    for engine, record in best.items():
        assert f"Strongest attack under this engine: <strong>{record.method}</strong>" in html
    assert html.count("Strongest attack under this engine") == len(best)


def test_the_black_box_attack_is_drawn_against_queries(html, results):
    # one line per (attack, engine) from query_curve, with its caption; none without a curve
    label = 'aria-label="Re-identification against queries to F'
    figure = html.split(label, 1)[1].split("</svg>", 1)[0]
    assert "eigenfaces under local:faceres-1024" in figure and "chance (K/N = 1/1,000)" in figure
    assert "What an attacker gets for the queries spent" in html
    without = render_html(dataclasses.replace(results, query_curve=()))
    assert label not in without and "What an attacker gets" not in without


def test_a_generator_tuned_to_f_is_described_by_its_tuning_not_blank_training_figures(results):
    tuned = dataclasses.replace(
        results.methods[0], name="naive", access="parametric", settings={
            "trained_for": "user.onnx", "vectors_per_second": 60.0,
            "training": {"training_data": "692 rows of the leaked database (no target's)", "training_images": None,
                         "training_identities": None, "epochs": None, "validation_median_cosine": None},
            "tuned": {"tuned_from": "reconstructor-naive-dlib-resnet128.onnx", "adapter": "ridge user.onnx->dlib-resnet128",
                      "training_data": "692 rows of the leaked database (no target's)",
                      "fine_tuning": {"steps": 200, "seconds": 51.0, "holdout_cosine_before": 0.45, "holdout_cosine_after": 0.56}},
        })
    page = render_html(dataclasses.replace(results, methods=(*results.methods, tuned)))
    line = page[page.index("<strong>naive</strong>"):].split("</li>", 1)[0]
    assert "shipped as reconstructor-naive-dlib-resnet128.onnx" in line and "200 steps" in line and "0.56 after" in line
    assert "— photos" not in line and "— epochs" not in line
