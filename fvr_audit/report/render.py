"""The risk report: results -> report.html / report.pdf / results.json, written atomically (0600).

Templates are jinja2 files in the repository's top-level ``report_templates/`` folder
(``report.html.j2`` and ``report.css``). They are found, in order:

1. in the folder named by ``FVR_AUDIT_TEMPLATES`` (files there override the built-in ones, so
   an organisation can replace only ``report.css``);
2. in ``fvr_audit/report/templates/`` (should they move into the package, as package-data);
3. in ``report_templates/`` beside the package (a source checkout or an editable install);
4. in ``<prefix>/share/fvr-audit/report_templates`` (a wheel that ships them as data-files), or
   the same under the user base (``pip install --user``).

Autoescaping is on for every template: method, engine, label and settings strings come from the
user and are escaped wherever they appear.
"""

from __future__ import annotations

import functools
import math
import os
import site
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

import jinja2
from markupsafe import Markup

from fvr_audit.audit.results import (
    LOWER_BOUND_NOTICE,
    REFERENCE_METHODS,
    SCHEMA_NAME,
    SCHEMA_VERSION,
    AuditResults,
    EngineSummary,
    Record,
    RiskLevel,
)
from fvr_audit.audit.fairness import Judging, engine_model, judging
from fvr_audit.audit.verdict import HIGH_TPR, judged_ns, strongest_attacks
from fvr_audit.errors import InputError
from fvr_audit.metrics.topk import random_baseline
from fvr_audit.io.atomic import atomic_write_bytes
from fvr_audit.report.formats import FORMATTERS, ReportDocument, ReportFormat
from fvr_audit.report.images import REDACT_GRID, ReportImages, face_data_uri
from fvr_audit.report.plots import (
    method_styles,
    metric1_svg,
    metric2_svg,
    outcome_bars_svg,
    reidentification_svg,
    similarity_svg,
)

#: Environment variable naming a folder of templates that override the built-in ones.
TEMPLATES_ENV = "FVR_AUDIT_TEMPLATES"
TEMPLATE_NAME = "report.html.j2"
CSS_NAME = "report.css"
#: Where a wheel's ``data-files`` put the templates, relative to the install prefix.
DATA_FILES_SUBDIR = Path("share") / "fvr-audit" / "report_templates"

#: The method settings key holding per-target similarity traces: drawn as a figure, never printed.
TRACE_KEY = "trace"

LEVEL_LABELS = {
    RiskLevel.HIGH: "High risk",
    RiskLevel.ELEVATED: "Elevated risk",
    RiskLevel.LOW: "Low measured risk",
    RiskLevel.NOT_ASSESSED: "Not assessed",
}


# --------------------------------------------------------------------------------------------
# Public API


def render_report(
    results: AuditResults,
    out_dir: Path,
    *,
    images: ReportImages | None = None,
    formats: Iterable[ReportFormat | str] = frozenset(ReportFormat),
    redact: bool = False,
    metric2: Mapping | None = None,
) -> dict[ReportFormat, Path]:
    """Write the report files for ``results`` into ``out_dir``; return the path of each format.

    Every file is rendered first and only then written, each atomically with mode 0600 (they hold
    biometric data): a reader sees the old file or the whole new one, and a rendering error leaves
    every existing file untouched. With ``redact=True`` every face image in the HTML/PDF is
    pixelated to an :data:`REDACT_GRID`-block grid and target names are replaced by indices;
    ``results.json`` is the unredacted results. ``metric2`` is a survey analysis (``fvr-audit survey
    analyze``, schema ``fvr-audit/survey-analysis``): with it the report has a Metric 2 section.
    """
    wanted = _formats(formats)
    document = ReportDocument(results, images, redact, metric2)
    rendered = {fmt: FORMATTERS[fmt].render(document) for fmt in _ordered(wanted)}
    out_dir = Path(out_dir)
    written = {}
    for fmt, data in rendered.items():
        path = out_dir / FORMATTERS[fmt].filename
        atomic_write_bytes(path, data)
        written[fmt] = path
    return written


def render_html(
    results: AuditResults, *, images: ReportImages | None = None, redact: bool = False, metric2: Mapping | None = None
) -> str:
    """The self-contained report HTML (what ``report.html`` holds and ``report.pdf`` prints)."""
    env = template_environment()
    css = _css(env)
    template = env.get_template(TEMPLATE_NAME)
    return template.render(css=css, **report_context(results, images=images, redact=redact, metric2=metric2))


def templates_dir() -> Path:
    """The built-in templates folder (see the module docstring for the search order)."""
    for candidate in _builtin_candidates():
        if (candidate / TEMPLATE_NAME).is_file():
            return candidate
    raise InputError(
        f"report templates not found (looked in {', '.join(str(c) for c in _builtin_candidates())}); "
        f"set {TEMPLATES_ENV} to a folder holding {TEMPLATE_NAME} and {CSS_NAME}"
    )


def template_environment() -> jinja2.Environment:
    """The jinja2 environment: the ``FVR_AUDIT_TEMPLATES`` override first, then the built-in folder."""
    override = os.environ.get(TEMPLATES_ENV) or None
    return _environment(override)


# --------------------------------------------------------------------------------------------
# Templates


def _builtin_candidates() -> list[Path]:
    here = Path(__file__).resolve().parent  # .../fvr_audit/report
    candidates = [
        here / "templates",  # if the templates ever move into the package (package-data)
        here.parent.parent / "report_templates",  # source checkout, editable install
        Path(sys.prefix) / DATA_FILES_SUBDIR,  # wheel with data-files
    ]
    if getattr(site, "USER_BASE", None):
        candidates.append(Path(site.USER_BASE) / DATA_FILES_SUBDIR)
    return candidates


@functools.lru_cache(maxsize=8)
def _environment(override: str | None) -> jinja2.Environment:
    folders = []
    if override is not None:
        folder = Path(override).expanduser()
        if not folder.is_dir():
            raise InputError(f"{folder}: {TEMPLATES_ENV} names no folder")
        folders.append(folder)
    try:
        folders.append(templates_dir())
    except InputError:
        if not folders or not (folders[0] / TEMPLATE_NAME).is_file() or not (folders[0] / CSS_NAME).is_file():
            raise
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(f) for f in folders]),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(pct=pct, ci=ci, num=num, seconds=seconds, short_hash=short_hash)
    return env


def _css(env: jinja2.Environment) -> Markup:
    source, _, _ = env.loader.get_source(env, CSS_NAME)
    if "</" in source:
        raise InputError(
            f"{CSS_NAME}: a stylesheet must not contain '</' (it is inlined in a <style> element)"
        )
    return Markup(source)


# --------------------------------------------------------------------------------------------
# Number formatting (jinja filters)


def pct(value: float | None) -> str:
    """A rate as a percentage, with more digits near zero where chance levels sit.

    >>> pct(0.8), pct(0.001), pct(0.0), pct(None), pct(0.0004), pct(1e-7)
    ('80.0%', '0.10%', '0%', '—', '0.040%', '<0.001%')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if value == 0:
        return "0%"
    if abs(value) < 0.00001:
        return "<0.001%" if value > 0 else f"{value:.3%}"
    if abs(value) < 0.001:
        return f"{value:.3%}"
    if abs(value) < 0.01:
        return f"{value:.2%}"
    return f"{value:.1%}"


def ci(interval: tuple[float, float] | None) -> str:
    """A 95% interval as ``low–high`` percentages.

    >>> ci((0.62, 0.91))
    '62.0–91.0%'
    """
    if not interval:
        return "—"
    return f"{pct(interval[0]).rstrip('%')}–{pct(interval[1])}"


#: A table cell lists at most this many values; longer lists (similarity traces, per-target
#: figures) are counted in the cell and stay in results.json, where a program can read them.
CELL_VALUES_MAX = 8


def num(value) -> str:
    """Numbers for people: thousands separators, floats to 4 significant digits; short lists
    joined, long ones (and nested ones) counted, never dumped into a table cell.

    >>> num(1280000), num(0.123456), num(None), num(1e-3), num([1, 5, 10])
    ('1,280,000', '0.1235', '—', '0.001', '1, 5, 10')
    >>> num([[3, 0.85], [64, 0.88]]), num(list(range(20)))
    ('2 lists (in results.json)', '20 values (in results.json)')
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        if not value:
            return "—"
        if len(value) > CELL_VALUES_MAX or any(isinstance(v, (Mapping, list, tuple)) for v in value.values()):
            return f"{len(value)} {'entry' if len(value) == 1 else 'entries'} (in results.json)"
        return ", ".join(f"{k}: {num(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        if not value:
            return "—"
        if any(isinstance(v, (Mapping, list, tuple)) for v in value):
            return f"{len(value)} {'list' if len(value) == 1 else 'lists'} (in results.json)"
        if len(value) > CELL_VALUES_MAX:
            return f"{len(value)} values (in results.json)"
        return ", ".join(num(v) for v in value)
    return str(value)


def seconds(value) -> str:
    """Durations: ``42.0 s``, ``3 min 20 s``, ``1 h 05 min``.

    >>> seconds(42.0), seconds(200), seconds(3900)
    ('42.0 s', '3 min 20 s', '1 h 05 min')
    """
    if value is None:
        return "—"
    value = float(value)
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60):02d} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60):02d} min"


def short_hash(value: str | None) -> str:
    return "—" if not value else str(value)


# --------------------------------------------------------------------------------------------
# The view model: plain dicts and lists, so that the template holds layout only.


def report_context(
    results: AuditResults, *, images: ReportImages | None = None, redact: bool = False, metric2: Mapping | None = None
) -> dict:
    gate_k, gate_n = results.verdict.k, results.verdict.n
    judged = judged_ns(results.records, int(results.settings.get("gate_n") or gate_n))
    methods = _method_order(results, images)
    styles = method_styles(methods)
    engines = [e.name for e in results.engines]
    for record in results.records:
        if record.engine not in engines:
            engines.append(record.engine)
    gallery = _gallery(results, images, methods, redact)
    human = _metric2(metric2, styles) if metric2 else None
    return {
        "sections": _section_numbers(human is not None),
        "metric2": human,
        "title": "Face feature-vector re-identification risk report",
        "tool": {"name": "fvr-audit", "version": results.tool_version},
        "schema": f"{SCHEMA_NAME} v{SCHEMA_VERSION}",
        "created": results.created,
        "notice": LOWER_BOUND_NOTICE,
        "redact": redact,
        "redact_grid": REDACT_GRID,
        "high_tpr": HIGH_TPR,
        "verdict": _verdict(results, engines),
        "system": _system(results),
        "tested": _tested(results, engines),
        "styles": {m: s for m, s in styles.items()},
        "metric1": [
            _metric1(results, engine, methods, gate_k, judged.get(engine, gate_n), i) for i, engine in enumerate(engines)
        ],
        "top_matches": _top_matches(results, engines, methods, gate_k),
        "same_class": _same_class(results, engines),
        "verification": _verification(results),
        "gallery": gallery,
        "first_faces": _first_faces(results, gallery, FIRST_PAGE_TARGETS),
        "no_originals_reason": _no_originals_reason(results, images),
        "similarity_svg": _similarity(results, styles),
        "reidentification_svg": _reidentification(results, styles),
        "provenance": _provenance(results),
    }


#: The report's sections in order; "metric-2" only when a survey analysis is given.
SECTION_IDS = (
    "verdict", "what-was-tested", "metric-1", "metric-2", "false-positives", "gallery", "provenance", "limitations", "gdpr",
)


def _section_numbers(with_metric2: bool) -> dict[str, int]:
    """Section id -> its number (the template's headings and cross-references use these).

    >>> _section_numbers(False)["gallery"], _section_numbers(True)["gallery"]
    (5, 6)
    """
    shown = [s for s in SECTION_IDS if with_metric2 or s != "metric-2"]
    return {section: number for number, section in enumerate(shown, start=1)}


#: The survey analysis this report reads (``fvr-audit survey analyze``).
METRIC2_SCHEMA = ("fvr-audit/survey-analysis", 1)


def _metric2(analysis: Mapping, styles: dict) -> dict:
    """The Metric 2 section's view: the figure, one table row per method, and the counts in words."""
    if (analysis.get("schema"), analysis.get("schema_version")) != METRIC2_SCHEMA:
        raise InputError(
            f"metric 2 analysis: schema {analysis.get('schema')!r} v{analysis.get('schema_version')!r}; "
            f"expected {METRIC2_SCHEMA[0]} v{METRIC2_SCHEMA[1]} (from `fvr-audit survey analyze`)"
        )
    methods = list(analysis.get("methods", []))
    palette = method_styles([m["method"] for m in methods])
    palette.update({m: s for m, s in styles.items() if m in palette})
    svg = metric2_svg(methods, palette, float(analysis["baseline"]), figure_id="fvr-metric2")
    measured = [m for m in methods if m.get("accuracy") is not None and m.get("accuracy_ci")]
    strongest = max(measured, key=lambda m: (m["accuracy_ci"][0], m["accuracy"])) if measured else None
    return {
        "k": analysis["k"],
        "baseline": analysis["baseline"],
        "engine": analysis.get("engine"),
        "participants": analysis["participants"],
        "attention_checks": analysis.get("attention_checks", 0),
        "max_attention_failures": analysis.get("max_attention_failures", 0),
        "questions": analysis.get("questions"),
        "bootstrap": analysis.get("bootstrap", {}),
        "rows": methods,
        "colours": {m: palette[m].colour for m in palette},
        "strongest": strongest,
        "above_chance": bool(strongest and strongest["accuracy_ci"][0] > analysis["baseline"]),
        "svg": Markup(svg) if svg else None,
    }


def _method_order(results: AuditResults, images: ReportImages | None) -> list[str]:
    """Attacks in the order they ran, then any others seen, then the reference rows."""
    order = [m.name for m in results.methods if m.name not in REFERENCE_METHODS]
    for name in [r.method for r in results.records] + list(images.methods() if images else ()):
        if name not in order and name not in REFERENCE_METHODS:
            order.append(name)
    order += [m for m in REFERENCE_METHODS if any(r.method == m for r in results.records)]
    return order


def _verdict(results: AuditResults, engines: list[str]) -> dict:
    verdict = results.verdict
    k, n = verdict.k, verdict.n
    judged = judged_ns(results.records, int(results.settings.get("gate_n") or n))
    per_engine = []
    for engine in engines:
        at = judged.get(engine, n)
        attacks = [
            r
            for r in results.records
            if r.engine == engine and r.k == k and r.n == at and r.method not in REFERENCE_METHODS
        ]
        best = max(attacks, key=lambda r: (r.tpr_ci[0], r.tpr)) if attacks else None
        original = results.record("original", engine, k, at)
        per_engine.append(
            {
                "engine": engine,
                "is_f": _engine(results, engine).is_f if _engine(results, engine) else False,
                "best": best,
                "times_chance": (best.tpr / best.baseline) if best and best.baseline else None,
                "original": original,
            }
        )
    return {
        "level": verdict.level.value,
        "label": LEVEL_LABELS[verdict.level],
        "rule": verdict.rule,
        "k": k,
        "n": n,
        "baseline": verdict.baseline,
        "method": verdict.method,
        "engine": verdict.engine,
        "tpr": verdict.tpr,
        "tpr_ci": verdict.tpr_ci,
        "per_engine": per_engine,
        "fairness_violations": _fairness(results, engines)["violations"],
    }


def _system(results: AuditResults) -> dict | None:
    """The deployed system's own figures in plain words: F against every row of the leaked database."""
    from fvr_audit.audit.verdict import SYSTEM_PREFIX

    engine = next((e for e in results.engines if e.name.startswith(SYSTEM_PREFIX)), None)
    if engine is None:
        return None
    n = engine.gallery_identities
    top1 = [r for r in results.records if r.engine == engine.name and r.k == 1 and r.n == n and r.method not in REFERENCE_METHODS]
    accepted = [v for v in results.verification if v.engine == engine.name and v.method not in REFERENCE_METHODS]
    if not top1 and not accepted:
        return None
    parts = []
    if accepted:
        best = max(accepted, key=lambda v: (v.sar_ci[0], v.sar))
        parts.append(
            f"It would accept the {best.method} reconstruction as the person whose template leaked for {best.sar:.0%} of "
            f"targets (95% interval {best.sar_ci[0]:.0%}-{best.sar_ci[1]:.0%}), at a false-match rate of {best.fmr:g}."
        )
    if top1:
        best = max(top1, key=lambda r: (r.tpr_ci[0], r.tpr))
        parts.append(
            f"Searching all {n:,} rows, it ranks the leaked row first for {best.tpr:.0%} of targets with {best.method} "
            f"(chance: {best.baseline:.2%})."
        )
    return {"sentence": " ".join(parts), "labelled": bool(results.database.get("labelled", True))}


def _engine(results: AuditResults, name: str) -> EngineSummary | None:
    return next((e for e in results.engines if e.name == name), None)


def _fairness(results: AuditResults, engines: list[str]) -> dict:
    """Which attack touched which judging engine: the attacks must not use the F' that judges them."""
    rows, violations = [], []
    for method in results.methods:
        cells = []
        for engine in engines:
            summary = _engine(results, engine)
            status = judging(
                method.models_used, engine_model(engine, summary.model if summary else ""),
                engine_is_f=bool(summary and summary.is_f),
            )
            if status is Judging.USED:
                violations.append((method.name, engine))
            cells.append({"engine": engine, "status": status.value})
        rows.append({"method": method.name, "cells": cells})
    return {"rows": rows, "violations": violations}


def _tested(results: AuditResults, engines: list[str]) -> dict:
    engine_rows = []
    for name in engines:
        summary = _engine(results, name)
        engine_rows.append(
            summary
            if summary is not None
            else EngineSummary(name, "(no summary in results)", 0, "—", None, "—", 0, 0, None, False)
        )
    thresholds = [
        {
            "what": f"{e.name}: match threshold",
            "value": e.threshold,
            "meaning": (f"{e.score_scale}; below it the engine returns no match (counted as no-match)"
                        + (f"; {e.threshold_source}" if e.threshold_source else ""))
            if e.threshold is not None
            else "none: the engine always returns its top-K (no-match is 0)",
        }
        for e in engine_rows
    ]
    grouped: dict[tuple, list[str]] = {}
    for v in results.verification:
        grouped.setdefault((v.engine, v.fmr, v.threshold, v.impostor_comparisons), []).append(v.method)
    for (engine, fmr, threshold, impostors), names in grouped.items():
        thresholds.append(
            {
                "what": f"{engine}: verification threshold ({', '.join(names)})",
                "value": threshold,
                "meaning": f"set at a false-match rate of {num(fmr)} on {num(impostors)} impostor comparisons",
            }
        )
    thresholds.append(
        {
            "what": "verdict: high-risk line",
            "value": HIGH_TPR,
            "meaning": f"high when an attack's tpr 95% lower bound reaches {HIGH_TPR:.0%} at the gate",
        }
    )
    return {
        "database": results.database,
        "extractor": results.extractor,
        "targets": len(results.targets),
        "methods": results.methods,
        "engines": engine_rows,
        "fairness": _fairness(results, engines),
        "thresholds": thresholds,
        "max_n": max((r.n for r in results.records), default=0),
    }


def _metric1(
    results: AuditResults, engine: str, methods: list[str], gate_k: int, gate_n: int, index: int
) -> dict:
    records = [r for r in results.records if r.engine == engine]
    ks = sorted({r.k for r in records})
    ns = sorted({r.n for r in records})
    present = [m for m in methods if any(r.method == m for r in records)]
    by_key: dict[tuple[str, int, int], Record] = {(r.method, r.k, r.n): r for r in records}
    rows = []
    for method in present:
        for k in ks:
            cells = []
            for n in ns:
                record = by_key.get((method, k, n))
                cells.append({"record": record, "gate": (k, n) == (gate_k, gate_n)})
            if any(c["record"] for c in cells):
                rows.append({"method": method, "k": k, "cells": cells})
    # The page shows K at the gate's N only; the whole sweep (every N, fpr, no-match) is the
    # HTML's folded table and results.json: a K x N grid printed in full is pages of numbers.
    at_n = gate_n if gate_n in ns else (ns[-1] if ns else gate_n)
    gate_rows = []
    for method in present:
        cells = [{"record": by_key.get((method, k, at_n)), "gate": (k, at_n) == (gate_k, gate_n)} for k in ks]
        if any(c["record"] for c in cells):
            gate_rows.append({"method": method, "cells": cells})
    summary = _engine(results, engine)
    violations = _fairness(results, [engine])["violations"]
    strongest = strongest_attacks(records, gate_k, gate_n, unfair=set(violations)).get(engine)
    original = by_key.get(("original", strongest.k, strongest.n)) if strongest else None
    # One N only (an engine that returns its top matches): the top-matches figure shows it instead.
    svg = metric1_svg(records, engine, present, gate_k, gate_n, figure_id=f"fvr-metric1-{index}") if len(ns) > 1 else None
    return {
        "engine": engine,
        "anchor": f"metric-1-engine-{index}",
        "summary": summary,
        "is_f": bool(summary and summary.is_f),
        "svg": Markup(svg) if svg else None,
        "ks": ks,
        "ns": ns,
        "chance": [[random_baseline(k, n) for n in ns] for k in ks],
        "chance_at_n": [random_baseline(k, at_n) for k in ks],
        "rows": rows,
        "at_n": at_n,
        "gate_at_n": at_n == gate_n and gate_k in ks,
        "gate_rows": gate_rows,
        "seeds": sorted({r.seeds for r in records}),
        "queries": sorted({r.queries for r in records}),
        "violations": [m for m, e in violations],
        "strongest": strongest,
        "original": original,
        "share_of_original": strongest.tpr / original.tpr if strongest and original and original.tpr > 0 else None,
    }


def _top_matches(results: AuditResults, engines: list[str], methods: list[str], gate_k: int) -> dict | None:
    """The engines that answer with their top matches only (cloud services), as the paper's Fig. 6:
    tpr, fpr and no-match per method at top-5 (else the gate's K) among their enrolled identities."""
    from fvr_audit.engines.registry import limited_access_notes

    narrow = [e for e in results.engines if not e.scores_every_identity or e.remote]
    if not narrow:
        return None
    names = [e.name for e in narrow]
    ks = {r.k for r in results.records if r.engine in names}
    k = 5 if 5 in ks else gate_k
    svg = outcome_bars_svg(results.records, names, methods, k, figure_id="fvr-top-matches")
    return {
        "k": k,
        "svg": Markup(svg) if svg else None,
        "engines": narrow,
        "notes": [note for prefix, note in limited_access_notes().items() if any(n.startswith(prefix) for n in names)],
    }


def _same_class(results: AuditResults, engines: list[str]) -> dict:
    methods = []
    for row in results.same_class_false_positives:
        if row.method not in methods:
            methods.append(row.method)
    cells = {(r.engine, r.method): r for r in results.same_class_false_positives}
    rows = [
        {"engine": e, "cells": [cells.get((e, m)) for m in methods]}
        for e in engines
        if any((e, m) in cells for m in methods)
    ]
    gates = sorted({(r.k, r.n) for r in results.same_class_false_positives})
    return {"methods": methods, "rows": rows, "gates": gates}


def _verification(results: AuditResults) -> list:
    return sorted(results.verification, key=lambda v: (v.engine, v.method))


def _gallery(results: AuditResults, images: ReportImages | None, methods: list[str], redact: bool) -> dict:
    if not images:
        return {"columns": [], "targets": [], "rows": [], "has_originals": False, "per_row": 1, "face_mm": 0}
    has_originals = bool(images.originals)
    image_methods = [m for m in methods if m in images.reconstructions]
    image_methods += [m for m in images.methods() if m not in image_methods]
    labels = {t.index: t.label for t in results.targets}
    unknown = sorted(set(images.target_indices()) - set(labels))
    if unknown:
        # Never guess: a face shown under the wrong person's name is worse than no gallery.
        raise InputError(
            f"report images: target index {', '.join(map(str, unknown[:5]))}{' ...' if len(unknown) > 5 else ''} "
            "is not among the results' targets; images are keyed by Target.index, not by position "
            "(ReportImages.from_arrays maps positions)"
        )
    targets = []
    for index in images.target_indices():
        label = f"target #{index}" if redact else f"#{index} {labels[index]}"
        cells = []
        if has_originals:
            original = images.originals.get(index)
            cells.append(face_data_uri(original, redact=redact) if original is not None else None)
        for method in image_methods:
            image = images.reconstructions[method].get(index)
            cells.append(face_data_uri(image, redact=redact) if image is not None else None)
        targets.append({"label": label, "cells": cells})
    columns = (["original photo"] if has_originals else []) + image_methods
    per_row, face_mm = _gallery_layout(len(columns))
    rows = [targets[i : i + per_row] for i in range(0, len(targets), per_row)]
    return {
        "columns": columns,
        "targets": targets,
        "rows": rows,
        "has_originals": has_originals,
        "per_row": per_row,
        "face_mm": face_mm,
    }


#: Targets shown on the first page, beside their reconstructions (the rest are in section 5).
FIRST_PAGE_TARGETS = 3


def _first_faces(results: AuditResults, gallery: dict, count: int) -> dict:
    """The first ``count`` targets in sample order (not picked by result), every column of the gallery.

    The images are the gallery's own data URIs: the PDF embeds each image once.
    """
    shown = gallery["targets"][:count]
    return {
        "columns": gallery["columns"],
        "targets": shown,
        "strongest": results.verdict.method,
        "total": len(gallery["targets"]),
    }


def _no_originals_reason(results: AuditResults, images: ReportImages | None) -> str | None:
    """Why the report has no original-photo column, in words (None when it has one)."""
    if images and images.originals:
        return None
    settings = results.settings
    if settings.get("images_root"):
        return (
            f"The original photos could not be shown: none of the targets' photos was found and aligned "
            f"under the photo folder given ({settings['images_root']}), or the database records no photo paths."
        )
    return (
        "No original photos are shown: this audit was given the vectors only (no photo folder or "
        "--images-root), and the engines' galleries are vectors, so neither the target's photo nor "
        "the engine's top match can be displayed."
    )


def _similarity(results: AuditResults, styles: dict) -> Markup | None:
    """The similarity-vs-queries figure of the attacks that record a trace (section 2)."""
    traces = {
        m.name: m.settings[TRACE_KEY]
        for m in results.methods
        if isinstance(m.settings.get(TRACE_KEY), (list, tuple)) and m.settings[TRACE_KEY]
    }
    svg = similarity_svg(traces, styles, figure_id="fvr-similarity") if traces else None
    return Markup(svg) if svg else None


def _reidentification(results: AuditResults, styles: dict) -> Markup | None:
    """The re-identification-vs-queries figure of the black-box attacks (section 2), from ``query_curve``."""
    same_system = [e.name for e in results.engines if e.is_f]
    svg = reidentification_svg(results.query_curve, styles, figure_id="fvr-reidentification", same_system=same_system)
    return Markup(svg) if svg else None


def _gallery_layout(
    images_per_target: int, width_mm: float = 176.0, label_mm: float = 22.0
) -> tuple[int, float]:
    """Targets per gallery row and image side (mm) so that a row fits an A4 page's text width.
    ``label_mm`` is the name column's width in report.css (``table.gallery th.target``).

    >>> _gallery_layout(3), _gallery_layout(1), _gallery_layout(9)
    ((2, 20.0), (3, 26.0), (1, 15.0))
    """
    images_per_target = max(1, images_per_target)
    for per_row in (3, 2, 1):
        side = (width_mm - per_row * label_mm) / (per_row * images_per_target) - 2.0
        if side >= 20.0 or per_row == 1:
            return per_row, round(max(12.0, min(26.0, side)) * 2) / 2
    raise AssertionError("unreachable")


def _flatten(mapping: Mapping, prefix: str = "") -> list[tuple[str, str]]:
    items = []
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if key == TRACE_KEY and isinstance(value, (list, tuple)):
            drawn = "drawn in section 2 (similarity vs queries); values in results.json"
            items.append((name, f"{len(value)} per-target traces: {drawn}"))
        elif isinstance(value, Mapping) and value:
            items += _flatten(value, f"{name}.")
        else:
            items.append((name, num(value)))
    return items


def _provenance(results: AuditResults) -> dict:
    hashes = [
        {
            "what": f"extractor F: {results.extractor.get('name', '?')}",
            "sha256": results.extractor.get("sha256"),
        }
    ]
    hashes += [{"what": f"engine F': {e.name}", "sha256": e.sha256} for e in results.engines]
    seeds = sorted({r.seeds for r in results.records})
    timing_items = []
    for key, value in results.timings.items():
        timing_items.append(
            (
                str(key),
                seconds(value)
                if isinstance(value, (int, float)) and "second" in str(key)
                else num(value),
            )
        )
    # An attack's own time, unless the scan's timings already hold its phase.
    timing_items += [
        (f"method {m.name}", seconds(m.seconds))
        for m in results.methods
        if f"reconstruct_{m.name}_seconds" not in results.timings
    ]
    return {
        "settings": _flatten(results.settings),
        "method_settings": [(m.name, _flatten(m.settings)) for m in results.methods if m.settings],
        "database": _flatten(results.database),
        "extractor": _flatten(results.extractor),
        "hashes": hashes,
        "models_used": [(m.name, m.models_used) for m in results.methods],
        "draws": seeds,
        "timings": timing_items,
        "notes": results.notes,
    }


# --------------------------------------------------------------------------------------------


def _formats(formats: Iterable[ReportFormat | str]) -> set[ReportFormat]:
    if isinstance(formats, (str, ReportFormat)):
        formats = [formats]
    try:
        wanted = {ReportFormat(f) for f in formats}
    except ValueError as error:
        raise InputError(
            f"report format: {error}; choose from {', '.join(f.value for f in ReportFormat)}"
        ) from None
    if not wanted:
        raise InputError("report: no format asked for")
    return wanted


def _ordered(formats: set[ReportFormat]) -> list[ReportFormat]:
    return [f for f in ReportFormat if f in formats]
