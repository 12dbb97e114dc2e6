"""What a scan tells a person and a CI system: the summary table, the gate checks, Markdown and JUnit.

One table (:func:`summary_table`) is printed to the terminal or log and embedded in the Markdown
summary; one list of gate checks (:func:`gate_checks`) becomes the JUnit test cases.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from enum import Enum

from fvr_audit.audit.fairness import Judging, engine_model, judging
from fvr_audit.audit.results import LOWER_BOUND_NOTICE, REFERENCE_METHODS, AuditResults, Record
from fvr_audit.cli.console import Align, Column, TextTable


def judged_ns(results: AuditResults) -> dict[str, int]:
    """Engine -> the N it is judged at (the rule of :func:`fvr_audit.audit.verdict.judged_ns`); an
    engine with no record at all is listed at the gate's N."""
    from fvr_audit.audit.verdict import judged_ns as rule

    gate_n = int(results.settings["gate_n"])
    return {engine.name: gate_n for engine in results.engines} | rule(results.records, gate_n)


def summary_table(results: AuditResults) -> TextTable:
    """Every method (and reference row) per engine at the gate's K and N: tpr, its interval, fpr..."""
    k = results.settings["gate_k"]
    fmr = results.settings.get("fmr", 1e-3)
    columns = (
        Column("method"),
        Column("engine"),
        *(Column(name, Align.RIGHT) for name in ("N", "tpr", "95% CI", "fpr", "no-match", "chance", f"SAR@FMR{fmr:g}")),
    )
    sar = {(v.method, v.engine): v.sar for v in results.verification}
    judged = judged_ns(results)
    rows = [
        (
            r.method, r.engine, str(r.n), f"{r.tpr:.3f}", f"{r.tpr_ci[0]:.3f}-{r.tpr_ci[1]:.3f}",
            f"{r.fpr:.3f}", f"{r.no_match:.3f}", f"{r.baseline:.4f}",
            # no verification row (the random reference: its scores are not cosines) -> a dash, not 0
            "—" if sar.get((r.method, r.engine)) is None else f"{sar[(r.method, r.engine)]:.3f}",
        )
        for r in results.records
        if r.k == k and r.n == judged[r.engine]
    ]
    title = f"Re-identification at top-{k} (largest N per engine); tpr with 95% interval"
    return TextTable.build(title, columns, rows)


class GateOutcome(str, Enum):
    PASSED = "passed"
    #: tpr above the limit.
    FAILED = "failed"
    #: The attack ran but this gate has no figure: a gate that measured nothing fails.
    NOT_MEASURED = "not-measured"
    #: Not a gate by design: the attack used this engine's model, so the engine may not judge it.
    EXCLUDED = "excluded"


@dataclass(frozen=True)
class GateCheck:
    """One attack under one engine at the gate's K and N, against ``--fail-on-tpr``."""

    method: str
    engine: str
    k: int
    n: int
    limit: float
    record: Record | None
    outcome: GateOutcome
    #: Why, in one line (the JUnit failure message).
    reason: str

    @property
    def name(self) -> str:
        return f"{self.method} under {self.engine} at K={self.k}, N={self.n}"


def gate_checks(results: AuditResults, limit: float) -> tuple[GateCheck, ...]:
    """Every attack x engine at the gate, or one NOT_MEASURED check when no attack ran at all."""
    k = int(results.settings["gate_k"])
    attacks = [m for m in results.methods if m.name not in REFERENCE_METHODS]
    if not attacks:
        return (
            GateCheck(
                "(no attack)", "(every engine)", k, int(results.settings["gate_n"]), limit, None,
                GateOutcome.NOT_MEASURED, "no reconstruction attack ran, so the gate measured nothing",
            ),
        )
    checks = []
    judged = judged_ns(results)
    for attack in attacks:
        for engine in results.engines:
            n = judged[engine.name]
            record = results.record(attack.name, engine.name, k, n)
            outcome, reason = _judge(attack, engine, record, limit)
            checks.append(GateCheck(attack.name, engine.name, k, n, limit, record, outcome, reason))
    return tuple(checks)


def _judge(attack, engine, record: Record | None, limit: float) -> tuple[GateOutcome, str]:
    if record is None or not math.isfinite(record.tpr):
        # The fairness rule (audit/fairness.py): an attack is not judged by an engine whose model it used.
        if judging(attack.models_used, engine_model(engine.name, engine.model), engine_is_f=engine.is_f) is Judging.USED:
            return GateOutcome.EXCLUDED, f"{attack.name} used {engine.name}'s model, so that engine does not judge it"
        return GateOutcome.NOT_MEASURED, f"no tpr was measured for {attack.name} under {engine.name}: the gate measured nothing"
    figure = f"tpr {record.tpr:.3f} (95% CI {record.tpr_ci[0]:.3f}-{record.tpr_ci[1]:.3f}) at K={record.k}, N={record.n}"
    if record.tpr > limit:
        return GateOutcome.FAILED, f"{figure} exceeds {limit:g}"
    return GateOutcome.PASSED, f"{figure} is within {limit:g}"


def failing(checks: tuple[GateCheck, ...]) -> list[GateCheck]:
    """The checks that fail the gate: above the limit, or nothing measured."""
    return [c for c in checks if c.outcome in (GateOutcome.FAILED, GateOutcome.NOT_MEASURED)]


def summary_markdown(results: AuditResults, *, limit: float | None = None) -> str:
    """A Markdown page for a CI job summary: the verdict, the gate's outcome, the table, the notes."""
    verdict = results.verdict
    database = results.database.get("path", "?")
    extractor = results.extractor.get("name", "?")
    lines = [
        f"## fvr-audit: re-identification risk {verdict.level.value.upper()}",
        "",
        f"**Verdict: {verdict.level.value.upper()}.** {verdict.rule}",
        "",
        f"Database `{_md_code(database)}`, extractor `{_md_code(extractor)}`, {len(results.targets)} targets, "
        f"fvr-audit {results.tool_version}.",
        "",
    ]
    if limit is not None:
        checks = gate_checks(results, limit)
        bad = failing(checks)
        judged = [c for c in checks if c.outcome is not GateOutcome.EXCLUDED]
        head = (
            f"**CI gate (`--fail-on-tpr {limit:g}`): {'FAILED' if bad else 'PASSED'}**: "
            f"{len(bad)} of {len(judged)} gates failed."
        )
        lines += [head, ""] + [f"- {_md_text(c.name)}: {_md_text(c.reason)}" for c in bad] + ([""] if bad else [])
    table = summary_table(results)
    lines += [f"### {table.title}", "", table.markdown().rstrip("\n"), ""]
    notes = list(results.notes)
    if notes:
        lines += ["### Notes", ""] + [f"- {_md_text(note)}" for note in notes] + [""]
    lines += [f"_{LOWER_BOUND_NOTICE}_", ""]
    return "\n".join(lines)


def junit_xml(results: AuditResults, limit: float) -> str:
    """JUnit XML: one test case per gate (attack x engine at the gate's K and N)."""
    checks = gate_checks(results, limit)
    skipped = sum(c.outcome is GateOutcome.EXCLUDED for c in checks)
    counts = {
        "tests": str(len(checks)),
        "failures": str(len(failing(checks))),
        "errors": "0",
        "skipped": str(skipped),
        "time": f"{float(results.timings.get('total_seconds', 0.0)):.3f}",
    }
    suites = ET.Element("testsuites", name="fvr-audit", **counts)
    suite = ET.SubElement(
        suites, "testsuite", name=f"fvr-audit gate: tpr at top-{results.settings['gate_k']} <= {limit:g}",
        timestamp=str(results.created), **counts,
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("verdict", results.verdict.level.value),
        ("database", str(results.database.get("path", ""))),
        ("extractor", str(results.extractor.get("name", ""))),
        ("fail_on_tpr", f"{limit:g}"),
        ("tool_version", results.tool_version),
    ):
        ET.SubElement(properties, "property", name=key, value=value)
    for check in checks:
        case = ET.SubElement(suite, "testcase", classname=f"fvr-audit.{check.engine}", name=check.name, time="0")
        if check.outcome is GateOutcome.FAILED:
            ET.SubElement(case, "failure", message=check.reason, type="RiskAboveThreshold").text = check.reason
        elif check.outcome is GateOutcome.NOT_MEASURED:
            ET.SubElement(case, "failure", message=check.reason, type="NothingMeasured").text = check.reason
        elif check.outcome is GateOutcome.EXCLUDED:
            ET.SubElement(case, "skipped", message=check.reason)
        else:
            ET.SubElement(case, "system-out").text = check.reason
    ET.indent(suites)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def _md_text(text: str) -> str:
    # Keep names literal: Markdown would read *, _ and | in a path or an engine name as markup.
    return "".join("\\" + ch if ch in "\\`*_[]<>|" else ch for ch in str(text))


def _md_code(text: str) -> str:
    return str(text).replace("`", "'")
