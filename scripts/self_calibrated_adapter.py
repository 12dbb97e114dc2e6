"""Write the self-calibrated map of a built-in extractor into dlib-resnet128's space, under either
penalty rule, as an adapter file (for ``--adapter`` in the benchmarks; issue #12's A/B of the rule).

    python scripts/self_calibrated_adapter.py --source mobileface-256 --rule cosine --out cosine-rule.npz

The same faces and fit as the scan's self-calibration (2,000 of the tool's synthetic faces, seed 0);
``--rule identification`` is what the scan uses, ``--rule cosine`` the rule before it.
``--variation 0`` draws the faces without their eigenface-space offsets (the recipe before the
tenth session; its map then targets the faces' dlib-resnet128 vectors, as today's does):

    python scripts/self_calibrated_adapter.py --source mobileface-256 --variation 0 --out no-variation.npz

``--no-turn`` leaves the mapped vectors where the ridge puts them (the scan turns them to a typical
person's cosine from the mean face, ``RidgeAdapter.typical_cosine``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from fvr_audit.extractors.registry import get_extractor  # noqa: E402
from fvr_audit.probes import PRIOR_SPACE  # noqa: E402
from fvr_audit.reconstructors.parametric.adapter import PenaltySelection  # noqa: E402
from fvr_audit.reconstructors.parametric.self_calibration import (  # noqa: E402
    DEFAULT_FACES,
    _embedded_synthetic_faces,
    fit_calibration_map,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", required=True, help="a built-in extractor name or an .onnx file")
    parser.add_argument("--rule", choices=[r.value for r in PenaltySelection], default=PenaltySelection.IDENTIFICATION.value)
    parser.add_argument("--faces", type=int, default=DEFAULT_FACES)
    parser.add_argument("--variation", type=float, default=None, help="the faces' eigenface-space spread (default: the scan's)")
    parser.add_argument("--turn", action=argparse.BooleanOptionalAction, default=True,
                        help="turn outputs to the prior's typical cosine from the mean (the scan's default)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    extractor = get_extractor(args.source)
    embedded, target = _embedded_synthetic_faces([extractor, get_extractor(PRIOR_SPACE)], args.faces, 0,
                                                 spread=args.variation)
    adapter = fit_calibration_map(embedded, target, source=extractor.name, selection=PenaltySelection(args.rule),
                                  turn=args.turn)
    variation = "" if args.variation is None else f", variation {args.variation:g}"
    adapter = adapter.with_origin(f"{args.faces} synthetic faces (self-calibration, {args.rule} rule{variation})", 0.0)
    adapter.save(args.out)
    print(f"{adapter.describe()} -> {args.out}")


if __name__ == "__main__":
    main()
