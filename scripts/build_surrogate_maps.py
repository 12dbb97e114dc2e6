"""Build the shipped surrogate maps: ridge maps from a built-in F's space into a surrogate's, fitted
on the LFW *training* photos (issue 12; ``refine``'s surrogate guidance, :mod:`fvr_audit.reconstructors.guidance`).

    python scripts/embed_lfw.py               # once: the LFW vector caches
    python scripts/build_surrogate_maps.py    # writes models/surrogate-map-<F>-to-<S>.npz + manifest entries

One map per pair ``auto`` guidance uses (F -> the first of mobileface-256, dlib-resnet128 that is
not F). A map holds a weight matrix and two means, derived from the vectors of the training
identities' photos: no vector of any person, no image (the data rules of ``../shared/data``).
The tool's own synthetic map (faces it draws, no photos) maps real vectors far worse (mean cosine to
the true mobileface-256 vector of 2,000 LFW eval photos 0.34, against 0.58 for a photo map), and
guided the search no better than no guidance on 20 targets; hence these files.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

from fit_lfw_adapter import fit_lfw_adapter  # noqa: E402

from fvr_audit.extractors.registry import get_extractor  # noqa: E402
from fvr_audit.model_store import models_dir, register_model  # noqa: E402
from fvr_audit.reconstructors.guidance import AUTO_SURROGATES, shipped_map_file  # noqa: E402


def main() -> None:
    pairs = [(f, next(s for s in AUTO_SURROGATES if s != f)) for f in ("dlib-resnet128", "mobileface-256", "faceres-1024")]
    for source, target in pairs:
        adapter = fit_lfw_adapter(source, target)
        adapter = adapter.with_origin(f"{adapter.samples} LFW training photos of {adapter.identities} identities", 0.0)
        file = shipped_map_file(source, target)
        adapter.save(models_dir() / file)
        register_model(
            file,
            kind="surrogate-map",
            source=(
                f"ridge map from {source}'s vectors to {target}'s, fitted on {adapter.samples} LFW deep-funneled photos of "
                f"{adapter.identities} training identities (fvr_audit/datasets/splits/lfw_train.txt)"
            ),
            license="derived from LFW (research use); a weight matrix and two means, no vector of any person",
            script="scripts/build_surrogate_maps.py",
            description=f"refine's surrogate guidance: {source}'s target vector in {target}'s space",
            details={"source_sha256": get_extractor(source).info.sha256, "target_sha256": get_extractor(target).info.sha256,
                     "cv_cosine": round(adapter.cv_cosine, 4), "lambda": adapter.lam},
        )
        print(f"{file}: {adapter.describe()}", file=sys.stderr)


if __name__ == "__main__":
    main()
