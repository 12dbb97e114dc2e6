"""``survey analyze``: Metric 2 figures from the stored answers (``analysis.json``).

* Participants who got more attention checks wrong than allowed (default: any) are left out
  entirely, and counted.
* Matching accuracy per method is measured on the questions whose candidates include the true
  person (the paper's Fig. 7 setting, where chance is 1/K), with a participant-bootstrap 95%
  interval and the per-participant quartiles. Questions whose candidates do not include the
  person are reported apart: the share answered "none of these".
* The confidence table (the paper's Table III): share of answers with some confidence.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from fvr_audit.metrics.human import (
    BOOTSTRAP_RESAMPLES,
    ParticipantTally,
    bootstrap_interval,
    chance_accuracy,
    confidence_shares,
    pooled_accuracy,
    quartiles,
)
from fvr_audit.survey.manifest import NONE_OF_THESE, Manifest, QuestionKind, load_manifest
from fvr_audit.survey.store import Answer, SurveyStore

ANALYSIS_SCHEMA = "fvr-audit/survey-analysis"
ANALYSIS_VERSION = 1


def analyze_folder(folder: Path, *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES, max_attention_failures: int = 0) -> dict:
    manifest = load_manifest(folder)
    store = SurveyStore(folder)
    invited = len(store.tokens()) if store.path.exists() else 0
    return analyze(manifest, store.answers(), invited=invited, seed=seed, resamples=resamples,
                   max_attention_failures=max_attention_failures)


def analyze(
    manifest: Manifest,
    answers: list[Answer],
    *,
    invited: int,
    seed: int = 0,
    resamples: int = BOOTSTRAP_RESAMPLES,
    max_attention_failures: int = 0,
) -> dict:
    """The analysis as a JSON-ready dict (rates rounded to 6 digits)."""
    questions = {q.id: q for q in manifest.questions}
    by_token: dict[str, list[Answer]] = defaultdict(list)
    for answer in answers:
        if answer.question in questions:
            by_token[answer.token].append(answer)
    failures = {
        token: sum(
            1 for a in given
            if questions[a.question].kind is QuestionKind.ATTENTION and a.choice != questions[a.question].answer
        )
        for token, given in by_token.items()
    }
    included = sorted(t for t in by_token if failures[t] <= max_attention_failures)
    excluded = sorted(t for t in by_token if failures[t] > max_attention_failures)
    total_questions = len(manifest.questions)
    baseline = chance_accuracy(manifest.k)
    methods = []
    for method in manifest.methods:
        shown: dict[str, list[bool]] = defaultdict(list)  # token -> right/wrong, true person among the candidates
        absent: dict[str, list[bool]] = defaultdict(list)  # token -> said "none of these", true person not shown
        levels, times = [], []
        for token in included:
            for a in by_token[token]:
                q = questions[a.question]
                if q.kind is not QuestionKind.RECONSTRUCTION or q.method != method:
                    continue
                (shown if q.answer != NONE_OF_THESE else absent)[token].append(a.choice == q.answer)
                levels.append(a.confidence)
                if a.seconds is not None:
                    times.append(a.seconds)
        tallies = [ParticipantTally(sum(v), len(v)) for _, v in sorted(shown.items())]
        accuracy = pooled_accuracy(tallies) if tallies else None
        low, high = bootstrap_interval(tallies, seed=seed, resamples=resamples) if tallies else (None, None)
        rejections = [x for v in absent.values() for x in v]
        methods.append(
            {
                "method": method,
                "questions": sum(1 for q in manifest.questions if q.method == method),
                "questions_with_true_person": sum(
                    1 for q in manifest.questions if q.method == method and q.answer != NONE_OF_THESE
                ),
                "participants": len(tallies),
                "answers": sum(t.answered for t in tallies),
                "correct": sum(t.correct for t in tallies),
                "accuracy": _round(accuracy),
                "accuracy_ci": None if low is None else [_round(low), _round(high)],
                "times_chance": _round(accuracy / baseline) if accuracy is not None else None,
                "participant_accuracy": quartiles([t.accuracy for t in tallies]),
                "absent_answers": len(rejections),
                "absent_said_none": sum(rejections),
                "absent_said_none_rate": _round(sum(rejections) / len(rejections)) if rejections else None,
                "confidence": confidence_shares(levels),
                "median_seconds": _round(statistics.median(times)) if times else None,
            }
        )
    return {
        "schema": ANALYSIS_SCHEMA,
        "schema_version": ANALYSIS_VERSION,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "scan": manifest.scan,
        "engine": manifest.engine,
        "k": manifest.k,
        "baseline": _round(baseline),
        "questions": total_questions,
        "attention_checks": sum(1 for q in manifest.questions if q.kind is QuestionKind.ATTENTION),
        "participants": {
            "invited": invited,
            "answered": len(by_token),
            "included": len(included),
            "excluded_attention": len(excluded),
            "complete": sum(1 for t in included if len({a.question for a in by_token[t]}) == total_questions),
        },
        "max_attention_failures": max_attention_failures,
        "answers": {
            "total": sum(len(v) for v in by_token.values()),
            "included": sum(len(by_token[t]) for t in included),
        },
        "bootstrap": {"unit": "participant", "resamples": resamples, "seed": seed, "confidence": 0.95},
        "methods": methods,
    }


def _round(value):
    return None if value is None else round(float(value), 6)
