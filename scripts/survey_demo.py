"""A survey to try out, with made-up people only: ``python scripts/survey_demo.py OUT``.

Draws 20 synthetic people from the shipped dlib-resnet128 prior (no real person), renders two
"photos" of each with the shipped vec2face generator (the face and its mirror image), makes their
dlib-resnet128 vector database, runs a scan with the naive and nbnet attacks (the mirror images are the gallery), and builds a survey
from it (candidates by faceres-1024). Then prints the commands to serve it. About a minute on CPU.

OUT/db.npz, OUT/gallery/<person>/{0,1}.png, OUT/scan/ (the scan), OUT/survey/ (the survey).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

PEOPLE = 20


def main(out: Path) -> None:
    from fvr_audit.alignment.canonical import crop_from_canonical
    from fvr_audit.extractors.registry import get_extractor
    from fvr_audit.probes import draw_prior_vectors, generate_faces

    out.mkdir(parents=True, exist_ok=False)
    faces = generate_faces(draw_prior_vectors(PEOPLE, seed=7), "vec2face")
    labels = [f"person{i:02d}" for i in range(PEOPLE)]
    for label, face in zip(labels, faces):
        folder = out / "gallery" / label
        folder.mkdir(parents=True)
        Image.fromarray(face).save(folder / "0.png")
        Image.fromarray(np.ascontiguousarray(face[:, ::-1])).save(folder / "1.png")
    f = get_extractor("dlib-resnet128")
    vectors = f.embed(crop_from_canonical(faces, f.geometry))
    np.savez(out / "db.npz", vectors=vectors, labels=np.array(labels), paths=np.array([f"{label}/0.png" for label in labels]))
    cli = [sys.executable, "-m", "fvr_audit"]
    subprocess.run(
        [*cli, "scan", str(out / "db.npz"), "-o", str(out / "scan"), "--engine", "local:dlib-resnet128",
         "--gallery", str(out / "gallery"), "--images-root", str(out / "gallery"),
         "--methods", "naive,nbnet", "--sample", "10", "--n", "20", "--k", "1,5", "--draws", "1",
         "--calibration-faces", "0", "--quiet"],
        check=True,
    )
    subprocess.run(
        [*cli, "survey", "build", str(out / "scan"), "--gallery", str(out / "gallery"), "-o", str(out / "survey"),
         "--no-face", "center"],
        check=True,
    )
    print(f"next:\n  {' '.join(cli)} survey tokens add 3 {out / 'survey'}\n  {' '.join(cli)} survey serve {out / 'survey'}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/survey_demo.py OUT")
    main(Path(sys.argv[1]))
