"""The scan talks to engines through ``MatchingEngine`` only: an engine that answers with its top
matches (like a cloud service) is measured from those answers, at the enrolled N, with its cap on K
and its threshold; every engine is closed, also when the scan fails."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from fvr_audit.audit import galleries
from fvr_audit.audit.scan import GallerySources, ScanSettings, run_scan
from fvr_audit.engines.base import EngineInfo, Gallery, GalleryKind, IdentityHits, MatchingEngine, ScoresEveryIdentity
from fvr_audit.engines.local import LocalEngine
from fvr_audit.engines.registry import create_engine
from fvr_audit.errors import InputError
from fvr_audit.extractors.registry import get_extractor

sys.path.insert(0, str(Path(__file__).parent))
from test_scan import write_two_engine_databases  # noqa: E402


class TopMatchesOnly(MatchingEngine):
    """A local model behind the narrow seam only: top-K answers above a threshold, K capped."""

    closed: list[str] = []

    def __init__(self, inner: LocalEngine, *, max_k: int, threshold: float | None) -> None:
        self.inner, self.max_k, self.threshold = inner, max_k, threshold

    @property
    def info(self) -> EngineInfo:
        inner = self.inner.info
        return EngineInfo(
            name="test:top-matches", description="top matches only", geometry=inner.geometry, dim=inner.dim,
            sha256=None, threshold=self.threshold, max_k=self.max_k, model="test-top-matches",
            gallery_kind=GalleryKind.VECTORS, threshold_source="given", remote=True,
        )

    def enroll(self, gallery: Gallery) -> None:
        self.inner.enroll(gallery)

    @property
    def identities(self) -> np.ndarray:
        return self.inner.identities

    def search(self, crops: np.ndarray, k: int) -> list[IdentityHits]:
        assert k <= self.max_k, "the scan asked for more matches than the engine returns"
        hits = self.inner.search(crops, k)
        if self.threshold is None:
            return hits
        return [IdentityHits(*(tuple(x) for x in zip(*[(l, s) for l, s in zip(h.labels, h.scores) if s >= self.threshold]))
                             ) if any(s >= self.threshold for s in h.scores) else IdentityHits((), ()) for h in hits]

    def close(self) -> None:
        TopMatchesOnly.closed.append(self.name)


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    return write_two_engine_databases(tmp_path_factory.mktemp("db"))


def _patched(monkeypatch, threshold):
    """``test:top-matches`` in --engine builds the narrow engine around faceres-1024."""

    def create(spec, *, threshold_=None, **kwargs):
        if spec == "test:top-matches":
            return TopMatchesOnly(LocalEngine(get_extractor("faceres-1024")), max_k=5, threshold=threshold)
        return create_engine(spec, **kwargs)

    monkeypatch.setattr(galleries, "create_engine", create)


def _scan(database, engines, *, methods=("eigenfaces",), fail=False):
    files = {e: database / "faceres.npz" for e in engines if e != "local:dlib-resnet128"}
    settings = ScanSettings(
        sample=30, ns=(50, 300), ks=(1, 5, 10), methods=methods, engines=engines, draws=2,
        method_settings={"eigenfaces": {"iterations": 2, "batch": 8}} if methods else {},
    )
    return run_scan(database / "db.npz", get_extractor("dlib-resnet128"), settings,
                    GallerySources(files=files, originals=files))


def test_top_matches_engine_measured_from_its_answers(database, monkeypatch):
    _patched(monkeypatch, threshold=None)
    TopMatchesOnly.closed.clear()
    results = _scan(database, ("local:faceres-1024", "test:top-matches")).results
    narrow = [r for r in results.records if r.engine == "test:top-matches"]
    # measured at the enrolled N only (300 identities), K capped at the engine's 5
    assert {(r.k, r.n) for r in narrow} == {(1, 300), (5, 300)}
    # no original row: the engine only takes crops, and the test has no photos
    assert {r.method for r in narrow} == {"eigenfaces", "random"}
    # the same model through the exhaustive path gives the same figures at N = the whole gallery
    for k in (1, 5):
        narrow_rate = results.record("eigenfaces", "test:top-matches", k, 300)
        full_rate = results.record("eigenfaces", "local:faceres-1024", k, 300)
        assert (narrow_rate.tpr, narrow_rate.fpr) == pytest.approx((full_rate.tpr, full_rate.fpr))
    assert any("returns at most 5 matches" in n for n in results.notes)
    assert any("N is not swept" in n for n in results.notes)
    # the curve against queries is drawn by engines that score every identity, never by one that
    # would be searched (and paid) again for each checkpoint
    assert {p.engine for p in results.query_curve} == {"local:faceres-1024", "system:dlib-resnet128"}
    engine = {e.name: e for e in results.engines}["test:top-matches"]
    assert engine.remote and not engine.scores_every_identity and engine.max_k == 5
    assert TopMatchesOnly.closed == ["test:top-matches"]
    # the report draws them as the paper's Fig. 6 (tpr / fpr / no-match bars at top-5)
    from fvr_audit.report import render_html

    html = render_html(results)
    section = html[html.index('id="metric-1-top-matches"'):html.index('id="metric-1-engine-0"')]
    assert "<svg" in section and "top-5" in section and "test:top-matches" in section


def test_threshold_gives_no_match(database, monkeypatch):
    _patched(monkeypatch, threshold=0.5)
    results = _scan(database, ("test:top-matches",)).results
    measured = results.record("eigenfaces", "test:top-matches", 1, 300)
    assert measured.tpr + measured.fpr + measured.no_match == pytest.approx(1.0)
    # eigenfaces on clustered stand-in vectors barely resembles anyone: below 0.5 nothing is returned
    assert measured.no_match > 0.5


def test_local_threshold_from_fmr(database):
    settings = ScanSettings(sample=30, ns=(300,), ks=(1,), methods=(), engines=("local:dlib-resnet128",),
                            engine_thresholds={"local:dlib-resnet128": "fmr"}, fmr=1e-3)
    results = run_scan(database / "db.npz", get_extractor("dlib-resnet128"), settings).results
    engine = {e.name: e for e in results.engines}["local:dlib-resnet128"]
    assert engine.threshold is not None and "impostor pairs" in engine.threshold_source
    # the same threshold as the verification view's at --fmr: one rule for both
    view = next(v for v in results.verification if v.engine == engine.name and v.method == "original")
    assert engine.threshold == pytest.approx(view.threshold)


def test_local_threshold_given(database):
    settings = ScanSettings(sample=30, ns=(300,), ks=(1,), methods=(), engines=("local:dlib-resnet128",),
                            engine_thresholds={"local:dlib-resnet128": 0.9995})
    results = run_scan(database / "db.npz", get_extractor("dlib-resnet128"), settings).results
    random = results.record("random", "local:dlib-resnet128", 1, 300)
    # random scores are uniform on [0, 1): all 300 fall below 0.9995 with probability 0.9995^300 = 0.86
    assert 0.6 < random.no_match < 1
    assert random.tpr + random.fpr + random.no_match == pytest.approx(1.0)


def test_engines_closed_when_the_scan_fails(database, monkeypatch):
    _patched(monkeypatch, threshold=None)
    TopMatchesOnly.closed.clear()

    def broken(*args, **kwargs):
        raise InputError("attack failed halfway")

    monkeypatch.setattr("fvr_audit.audit.attacks.reconstruct_all", broken)
    with pytest.raises(InputError, match="halfway"):
        _scan(database, ("test:top-matches",))
    assert TopMatchesOnly.closed == ["test:top-matches"]


def test_a_photo_engine_needs_a_photo_folder(database, monkeypatch):
    class PhotoEngine(TopMatchesOnly):
        @property
        def info(self):
            from dataclasses import replace

            return replace(super().info, gallery_kind=GalleryKind.PHOTOS)

    monkeypatch.setattr(galleries, "create_engine",
                        lambda spec, **kw: PhotoEngine(LocalEngine(get_extractor("faceres-1024")), max_k=5, threshold=None))
    with pytest.raises(InputError, match="enrolls photos; give --gallery DIR"):
        run_scan(database / "db.npz", get_extractor("dlib-resnet128"),
                 ScanSettings(sample=5, methods=(), engines=("test:photos",)))


def test_local_engine_declares_the_exhaustive_capability():
    engine = create_engine("local:dlib-resnet128")
    assert isinstance(engine, ScoresEveryIdentity) and engine.info.model == "dlib-resnet128"
    assert engine.same_model_as(get_extractor("dlib-resnet128"))
    assert not engine.same_model_as(get_extractor("faceres-1024"))
