"""A linear map from one extractor's vector space into another's, so a reconstructor trained for the
second can attack vectors of the first (issue #5, point 4).

Fitted by ridge regression on calibration photos embedded by both extractors: with X the user's
vectors [M, Du] and Y the default F's [M, Dt] (both L2-normalised, centred by their means),
``W = (X^T X + lambda I)^-1 X^T Y``; a vector x maps to ``normalise((x - mx) W + my)``. lambda
comes from a grid scaled by the trace of X^T X, by K-fold cross-validation over whole identities,
so the map is not tuned on the faces it is scored on, under one of two rules
(:class:`PenaltySelection`):

* ``cosine`` (photos): the penalty whose held-out mapped vectors have the highest mean cosine to
  the true ones;
* ``identification`` (the tool's own synthetic faces): the *strongest* penalty that still keeps
  every held-out face identifiable (its own true vector the nearest of its fold's, for at least
  ``IDENTIFIABLE_SHARE`` of them). A map fitted on synthetic faces is used on real vectors; the
  cosine rule fits the synthetic look and picks a weak penalty, while identification of real
  photos in the target space peaks at the strongest penalty that keeps the synthetic faces apart
  (benchmarks/bench_map_identification.py, from mobileface-256: LFW top-1 0.09 -> 0.22, AT&T
  0.13 -> 0.30; from faceres-1024 both rules choose the same penalty).

Plain numpy; saved as an .npz of arrays (no pickles).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from fvr_audit.errors import InputError

#: Ridge strengths tried, as multiples of trace(X^T X) / Du.
LAMBDA_GRID = (1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)
#: ``identification`` rule: share of held-out faces that must stay identifiable (2 misses in 2,000).
IDENTIFIABLE_SHARE = 0.999


class PenaltySelection(str, Enum):
    """How the ridge penalty is chosen (see the module docstring)."""

    COSINE = "cosine"
    IDENTIFICATION = "identification"

    def describe(self, lam: float) -> str:
        if self is PenaltySelection.COSINE:
            return f"lambda {lam:g}"
        return f"lambda {lam:g} (the strongest keeping held-out faces identifiable)"


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _fit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    gram = xc.T @ xc
    scale = np.trace(gram) / gram.shape[0]
    w = np.linalg.solve(gram + lam * scale * np.eye(gram.shape[0]), xc.T @ yc)
    return w, mx, my


@dataclass(frozen=True)
class RidgeAdapter:
    """x (source space) -> normalise((x - mx) W + my) (target space)."""

    source: str
    target: str
    target_sha256: str
    weights: np.ndarray
    source_mean: np.ndarray
    target_mean: np.ndarray
    lam: float
    #: Mean cosine(mapped, true) in cross-validation (held-out identities) and on the fit itself.
    cv_cosine: float
    fit_cosine: float
    samples: int
    identities: int
    #: What it was fitted on, in words, and how long fitting took (seconds; 0 when not measured).
    origin: str = ""
    build_seconds: float = 0.0
    selection: PenaltySelection = PenaltySelection.COSINE
    #: When > 0: each mapped vector is turned, in the plane of it and the target mean, to this
    #: cosine from the target mean (real vectors' typical one). A ridge map shrinks towards the
    #: mean: fitted on varied synthetic faces, or on 6,000 LFW training photos, it puts real
    #: vectors at median cosine 0.95-0.96 to the mean where their true vectors sit at 0.91, and a
    #: generator given them draws an average face; the turn restores how distinct a typical person is.
    typical_cosine: float = 0.0

    @property
    def from_photos(self) -> bool:
        """Fitted on photos (the user's ``--calibration`` folder, or LFW's) rather than the tool's own
        synthetic faces, which alone use the identification penalty rule."""
        return self.selection is PenaltySelection.COSINE

    def with_origin(self, origin: str, build_seconds: float) -> RidgeAdapter:
        """The same map, with its provenance recorded."""
        from dataclasses import replace

        return replace(self, origin=origin, build_seconds=float(build_seconds))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Map L2-normalised source vectors [N, Du] into the target space (L2-normalised [N, Dt]).

        >>> rng = np.random.default_rng(0); x = _normalise(rng.normal(size=(300, 8)))
        >>> y = _normalise(x @ rng.normal(size=(8, 5)))
        >>> a = RidgeAdapter.fit(x, y, np.repeat(np.arange(100), 3), source="a", target="b")
        >>> a.cv_cosine > 0.95, a.transform(x[:2]).shape
        (True, (2, 5))
        """
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.weights.shape[0]:
            raise InputError(f"adapter {self.source}->{self.target}: expected [N, {self.weights.shape[0]}] vectors, got {x.shape}")
        mapped = _normalise((x - self.source_mean) @ self.weights + self.target_mean)
        if self.typical_cosine > 0:
            mapped = at_cosine_from(mapped, _normalise(self.target_mean[None])[0], self.typical_cosine)
        return mapped.astype(np.float32)

    @property
    def turn_described(self) -> str:
        """", outputs turned to cosine c from the mean", or "" when the outputs are not turned."""
        return f", outputs turned to cosine {self.typical_cosine:.3f} from the mean" if self.typical_cosine > 0 else ""

    def describe(self) -> str:
        fitted_on = self.origin or f"{self.samples} photos of {self.identities} identities"
        return (
            f"ridge {self.source}->{self.target}, {self.selection.describe(self.lam)}, {fitted_on}, "
            f"cross-validated cosine {self.cv_cosine:.3f}{self.turn_described}"
        )

    @classmethod
    def fit(
        cls,
        x: np.ndarray,
        y: np.ndarray,
        labels: np.ndarray,
        *,
        source: str,
        target: str,
        target_sha256: str = "",
        folds: int = 5,
        selection: PenaltySelection = PenaltySelection.COSINE,
        turn: bool = False,
    ) -> RidgeAdapter:
        """Fit on paired vectors ``x`` (source) and ``y`` (target) of photos with identity ``labels``.
        ``turn``: outputs turned to the median cosine of the ``y`` themselves from their mean (the
        photos' own spread; see :attr:`typical_cosine`).

        >>> rng = np.random.default_rng(1); y = _normalise(rng.normal(size=(400, 32)))
        >>> x = _normalise(y @ rng.normal(size=(32, 64)) + 0.1 * rng.normal(size=(400, 64)))
        >>> by_cosine = RidgeAdapter.fit(x, y, np.arange(400), source="a", target="b")
        >>> by_identity = RidgeAdapter.fit(x, y, np.arange(400), source="a", target="b",
        ...                                selection=PenaltySelection.IDENTIFICATION)
        >>> by_cosine.lam, by_identity.describe().split(", ")[1]
        (0.01, 'lambda 10 (the strongest keeping held-out faces identifiable)')
        """
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        labels = np.asarray(labels)
        if len(x) != len(y) or len(x) != len(labels):
            raise InputError("adapter: the two vector sets and the labels differ in length")
        names = np.unique(labels)
        if len(x) < 20 or len(names) < 2:
            raise InputError(
                f"adapter: {len(x)} calibration faces of {len(names)} identities are too few "
                "(at least 20 faces of 2 identities; the adapter improves up to several thousand)"
            )
        folds = max(2, min(folds, len(names)))
        fold_of_name = {n: i % folds for i, n in enumerate(np.random.default_rng(0).permutation(names))}
        fold = np.array([fold_of_name[n] for n in labels])
        scores, identified = {}, {}
        for lam in LAMBDA_GRID:
            total, hits = 0.0, 0
            for f in range(folds):
                test = fold == f
                w, mx, my = _fit(x[~test], y[~test], lam)
                mapped = _normalise((x[test] - mx) @ w + my)
                truth = _normalise(y[test])
                total += float(np.einsum("nd,nd->n", mapped, truth).sum())
                if selection is PenaltySelection.IDENTIFICATION:  # a fold x fold matrix: only when asked for
                    hits += int((np.argmax(mapped @ truth.T, axis=1) == np.arange(len(truth))).sum())
            scores[lam] = total / len(x)
            identified[lam] = hits / len(x)
        lam = max(scores, key=scores.get)
        if selection is PenaltySelection.IDENTIFICATION:
            lam = max((penalty for penalty, share in identified.items() if share >= IDENTIFIABLE_SHARE), default=lam)
        w, mx, my = _fit(x, y, lam)
        fit_cos = float(np.mean(np.einsum("nd,nd->n", _normalise((x - mx) @ w + my), _normalise(y))))
        spread = float(np.median(_normalise(y) @ _normalise(my[None])[0])) if turn else 0.0
        return cls(source, target, target_sha256, w, mx, my, float(lam), scores[lam], fit_cos, len(x), len(names),
                   selection=selection, typical_cosine=spread)

    def save(self, path: Path) -> None:
        from fvr_audit.io.npz import save_npz

        save_npz(path, **self._arrays())

    def to_bytes(self) -> bytes:
        """The adapter as the bytes of its .npz file (what a work unit carries to a worker)."""
        import io

        buffer = io.BytesIO()
        np.savez(buffer, **self._arrays())
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> RidgeAdapter:
        """The adapter of :meth:`to_bytes`, read with the same checks as :meth:`load` (no pickles).

        >>> rng = np.random.default_rng(0); x = _normalise(rng.normal(size=(40, 4)))
        >>> a = RidgeAdapter.fit(x, x[:, :3], np.repeat(np.arange(20), 2), source="a", target="b")
        >>> RidgeAdapter.from_bytes(a.to_bytes()).transform(x[:1]).tolist() == a.transform(x[:1]).tolist()
        True
        """
        import tempfile

        with tempfile.TemporaryDirectory(prefix="fvr-audit-adapter-") as folder:
            path = Path(folder) / "adapter.npz"
            path.write_bytes(data)
            return cls.load(path)

    def _arrays(self) -> dict[str, np.ndarray]:
        return dict(
            weights=self.weights,
            source_mean=self.source_mean,
            target_mean=self.target_mean,
            meta=np.array([self.source, self.target, self.target_sha256, self.origin, self.selection.value]),
            numbers=np.array(
                [self.lam, self.cv_cosine, self.fit_cosine, self.samples, self.identities, self.build_seconds,
                 self.typical_cosine], np.float64
            ),
        )

    @classmethod
    def load(cls, path: Path) -> RidgeAdapter:
        from fvr_audit.io.npz import load_npz

        what = "an fvr-audit adapter file (from `fvr-audit adapter`)"
        d = load_npz(path, ("meta", "numbers", "weights", "source_mean", "target_mean"), what=what)
        try:
            meta = [str(s) for s in d["meta"]]
            numbers = d["numbers"].tolist()
            source, target, sha = meta[:3]
            origin = meta[3] if len(meta) > 3 else ""
            selection = PenaltySelection(meta[4]) if len(meta) > 4 else PenaltySelection.COSINE
            lam, cv, fit, samples, identities = numbers[:5]
            seconds = numbers[5] if len(numbers) > 5 else 0.0
            typical = numbers[6] if len(numbers) > 6 else 0.0
            if not 0.0 <= typical < 1.0:
                raise ValueError(f"typical cosine {typical} outside [0, 1)")
            return cls(source, target, sha, d["weights"], d["source_mean"], d["target_mean"], lam, cv, fit,
                       int(samples), int(identities), origin, seconds, selection, typical)
        except (TypeError, ValueError, IndexError) as exc:
            raise InputError(f"{path}: not {what} ({exc})") from None


def at_cosine_from(vectors: np.ndarray, direction: np.ndarray, cosine: float) -> np.ndarray:
    """Unit ``vectors`` [N, D] each turned, in the plane it spans with the unit ``direction``, to
    ``cosine`` from it (a vector along ``direction`` itself is left as it is).

    >>> v = np.array([[0.96, 0.28, 0.0], [0.6, 0.0, 0.8], [1.0, 0.0, 0.0]])
    >>> turned = at_cosine_from(v, np.array([1.0, 0.0, 0.0]), 0.9)
    >>> np.round(turned @ np.array([1.0, 0.0, 0.0]), 6).tolist(), np.round(np.linalg.norm(turned, axis=1), 6).tolist()
    ([0.9, 0.9, 1.0], [1.0, 1.0, 1.0])
    >>> bool(turned[0, 2] == 0 and turned[0, 1] > 0.28)  # the same plane, further from the direction
    True
    """
    vectors = np.asarray(vectors, np.float64)
    along = vectors @ direction
    rest = vectors - along[:, None] * direction
    size = np.linalg.norm(rest, axis=1, keepdims=True)
    turned = cosine * direction + np.sqrt(1.0 - cosine**2) * rest / np.maximum(size, 1e-12)
    return np.where(size > 1e-9, turned, vectors)


def fit_adapter_from_photos(
    folder: Path, source_extractor, target_extractor, *, on_progress=None, turn: bool = True
) -> RidgeAdapter:
    """Embed every photo of ``folder`` (an identity tree, or a flat folder) with both extractors in one
    alignment pass, and fit the adapter source -> target, its outputs turned to the photos' own
    spread (``turn``; measured: F = mobileface-256 through a map on 2,000 LFW photos, ``transfer``
    judged by faceres-1024 0.220 -> 0.324 tpr@1 at N = 1000 on 100 LFW targets)."""
    from fvr_audit.extraction import discover_images, embed_records

    records, _ = discover_images(folder)
    if not records:
        raise InputError(f"{folder}: no images found for calibration")
    run = embed_records(records, [source_extractor, target_extractor], on_progress=on_progress)
    if len(run.kept) == 0:
        raise InputError(f"{folder}: no face found in any calibration photo")
    labels = np.array([records[i].label or records[i].relative for i in run.kept])
    return RidgeAdapter.fit(
        run.vectors[source_extractor.name],
        run.vectors[target_extractor.name],
        labels,
        source=source_extractor.name,
        target=target_extractor.name,
        target_sha256=target_extractor.info.sha256 or "",
        turn=turn,
    )
