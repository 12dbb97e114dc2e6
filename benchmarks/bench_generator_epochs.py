"""Does longer training of a shipped generator pay? Per epoch: validation cosine and transfer (issue #12).

Trains ``--method`` for F = dlib-resnet128 one epoch at a time (the shipped recipe,
``scripts/train_shipped_reconstructors.py``; the learning rate is constant, so resuming epoch by
epoch is the same run as training straight through), exports each epoch's generator into its own
models folder, and measures it with ``bench_reconstruction.py --models`` on the 100 held-out LFW
targets under every judge. Each step is kept in ``--work`` and skipped when already there, so a
stopped run resumes. Hours of CPU (about 14 min per naive epoch on 2 cores while other work ran).

    python scripts/embed_lfw.py && python scripts/cache_lfw_faces.py
    python scripts/prepare_lfw_training_data.py --extractor dlib-resnet128
    python benchmarks/bench_generator_epochs.py --method naive --epochs 4 --work ~/fvr-epochs \\
        > benchmarks/results_generator_epochs_naive.json

Prints JSON on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import emit, machine  # noqa: E402

JUDGES = "dlib-resnet128,faceres-1024,mobileface-256"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(command: list[str], stdout=None) -> None:
    log("$ " + " ".join(command))
    subprocess.run(command, check=True, stdout=stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=("naive", "nbnet", "vec2face"), default="naive")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--work", type=Path, required=True, help="checkpoint, exported generators, per-epoch results")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    train_script = str(HERE.parent / "scripts" / "train_shipped_reconstructors.py")
    work = args.work.expanduser()
    checkpoint = work / f"train-{args.method}"
    result: dict = {"benchmark": "generator_epochs", "machine": machine(), "method": args.method,
                    "extractor": "dlib-resnet128", "judges": JUDGES.split(","), "epochs": []}
    for epoch in range(1, args.epochs + 1):
        models = work / f"models-{args.method}-e{epoch}"
        measured = work / f"{args.method}_e{epoch}.json"
        if not (models / "manifest.json").is_file():
            run([sys.executable, train_script, args.method, "--threads", str(args.threads), "--epochs", str(epoch),
                 "--work", str(checkpoint)])
            models.mkdir(parents=True, exist_ok=True)
            run([sys.executable, train_script, args.method, "--epochs", str(epoch), "--work", str(checkpoint),
                 "--export", "--export-dir", str(models)])
        if not measured.is_file() or measured.stat().st_size == 0:
            with open(measured, "w") as out:
                run([sys.executable, str(HERE / "bench_reconstruction.py"), "--methods", args.method, "--models",
                     str(models), "--engines", JUDGES, "--tag", f"e{epoch}"], stdout=out)
        bench = json.loads(measured.read_text())
        history = json.loads((checkpoint / "history.json").read_text())
        manifest = json.loads((models / "manifest.json").read_text())
        entry = {
            "epoch": epoch,
            "validation_median_cosine": round(history[epoch - 1]["validation_cosine"], 4),
            "generator_sha256": manifest["files"][0]["sha256"],
            "tpr@1_N=1000": {k.split("|")[1]: v["tpr@1_N=1000"] for k, v in bench["rows"].items()
                             if k.startswith(args.method + "|")},
            "ci@1_N=1000": {k.split("|")[1]: v["ci@1_N=1000"] for k, v in bench["rows"].items()
                            if k.startswith(args.method + "|")},
            "original_photo_tpr@1_N=1000": {k.split("|")[1]: v["tpr@1_N=1000"] for k, v in bench["rows"].items()
                                            if k.startswith("original|")},
        }
        result["epochs"].append(entry)
        log(f"epoch {epoch}: {entry['validation_median_cosine']} {entry['tpr@1_N=1000']}")
    emit(result)


if __name__ == "__main__":
    main()
