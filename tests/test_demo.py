"""``fvr-audit demo``: what it runs (budgets sized for under 3 minutes on 2 cores) and its phase lines."""

from __future__ import annotations

import numpy as np

from fvr_audit.cli.demo_cmd import DEMO_METHOD_SETTINGS, DEMO_NS, DEMO_TARGETS, PhasePlan, demo_sources
from fvr_audit.model_store import models_dir
from fvr_audit.reconstructors.registry import get_reconstructor


def test_demo_presets_are_small_budgets():
    eigenfaces = get_reconstructor("eigenfaces", **DEMO_METHOD_SETTINGS["eigenfaces"]).settings
    assert eigenfaces.effective_iterations() * eigenfaces.batch + 1 == 129  # + the final unjittered scoring
    gradient = get_reconstructor("gradient", **DEMO_METHOD_SETTINGS["gradient"]).settings
    assert gradient.effective_iterations() == 24 and gradient.plateau_steps > 0
    # Every demo target is optimised in one gradient batch.
    assert gradient.batch_targets >= DEMO_TARGETS


def test_demo_gate_n_is_the_galleries_size_and_targets_fit_the_database():
    targets, sources = demo_sources(models_dir() / "demo")
    with np.load(targets, allow_pickle=False) as db:
        identities = len(set(db["labels"].tolist()))
    assert DEMO_TARGETS < identities
    for gallery in sources.files.values():
        with np.load(gallery, allow_pickle=False) as data:
            enrolled = len(set(data["labels"].tolist()))
        # The gate N (the largest) is every enrolled identity: nothing is silently capped.
        assert max(DEMO_NS) == enrolled


def test_phase_plan_says_what_runs_and_what_is_left():
    plan = PhasePlan(["eigenfaces", "gradient", "naive"])
    lines = [
        plan.describe(d)
        for d in (
            "reconstruct: eigenfaces",
            "reconstruct: gradient",
            "reconstruct: naive",
            "re-identify: local:faceres-1024",
            "match against the database: system:dlib-resnet128 (60 rows)",
            "report: html, pdf",
        )
    ]
    assert lines[0] == "1/6 reconstruct: eigenfaces (left: gradient, naive, re-identify, match against the database, report)"
    assert lines[3] == "4/6 re-identify: local:faceres-1024 (left: match against the database, report)"
    assert lines[4] == "5/6 match against the database: system:dlib-resnet128 (60 rows) (left: report)"
    assert lines[5] == "6/6 report: html, pdf (left: nothing)"
    # A phase the plan does not know (a gallery to embed) is shown as the scan names it.
    assert plan.describe("embed gallery photos/") == "embed gallery photos/"
    seen = []
    wrapped = plan.wrap(lambda description, total: seen.append((description, total)))
    wrapped("reconstruct: gradient", 20)
    assert seen == [("2/6 reconstruct: gradient (left: naive, re-identify, match against the database, report)", 20)]
