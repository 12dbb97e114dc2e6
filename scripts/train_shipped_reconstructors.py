"""Train (or resume) and export the shipped parametric reconstructors for F = dlib-resnet128.

    python scripts/embed_lfw.py && python scripts/cache_lfw_faces.py
    python scripts/prepare_lfw_training_data.py --extractor dlib-resnet128
    python scripts/train_shipped_reconstructors.py nbnet      # likewise vec2face, naive
    python scripts/train_shipped_reconstructors.py nbnet --export   # -> models/ + manifest entry

The same code as ``fvr-audit train METHOD --extractor dlib-resnet128 --data FILE`` with the
default settings (fvr_audit/reconstructors/parametric/training.py), one torch thread per run so
the three methods can train side by side on two cores. Checkpoints go to
``~/.cache/fvr-audit/train/<method>-<extractor>`` after every epoch; rerunning resumes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

CACHE = Path.home() / ".cache" / "fvr-audit" / "train"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("method", choices=["nbnet", "vec2face", "naive"])
    parser.add_argument("--extractor", default="dlib-resnet128")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--export", action="store_true", help="export the finished checkpoint into models/")
    parser.add_argument("--export-dir", type=Path, default=None, help="export into this models folder instead")
    parser.add_argument("--surrogates", default=None, help='second recognizers for the photo-feature loss, e.g. "mobileface-256"')
    parser.add_argument("--surrogate-weight", type=float, default=None)
    parser.add_argument("--work", type=Path, default=None, help="checkpoint folder (default: the cache)")
    parser.add_argument("--allow-partial", action="store_true", help="export a checkpoint stopped before its last epoch")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from fvr_audit.extractors.registry import get_extractor
    from fvr_audit.reconstructors.parametric.training import TrainingData, default_settings, train

    extractor = get_extractor(args.extractor)
    data_file = CACHE / f"lfw-train-{extractor.name}.npz"
    work = args.work or CACHE / f"{args.method}-{extractor.name}"
    settings = default_settings(args.method, epochs=args.epochs, surrogates=args.surrogates, surrogate_weight=args.surrogate_weight)
    if args.export:
        from fvr_audit.reconstructors.parametric.store import export_trained

        entry = export_trained(
            work, extractor, settings.method, data_file=data_file, directory=args.export_dir, allow_partial=args.allow_partial
        )
        print(f"exported {entry.file} ({entry.size} bytes, sha256 {entry.sha256[:12]})", file=sys.stderr)
        return
    data = TrainingData.load(data_file)
    start = time.perf_counter()

    def on_step(epoch: int, step: int, steps: int, losses: dict) -> None:
        if step % 25 == 0 or step == steps:
            text = " ".join(f"{k}={v:.4f}" for k, v in losses.items())
            print(f"{args.method} epoch {epoch + 1} step {step}/{steps} {text} {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)

    def on_epoch(report) -> None:
        print(f"{args.method} EPOCH {report.epoch}: {report.losses} val cos {report.validation_cosine:.4f} ({report.seconds:.0f}s)", file=sys.stderr, flush=True)

    train(data, extractor, settings, work, resume=(work / "checkpoint.pt").exists(), on_step=on_step, on_epoch=on_epoch)


if __name__ == "__main__":
    main()
