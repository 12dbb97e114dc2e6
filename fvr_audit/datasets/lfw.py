"""LFW (Labeled Faces in the Wild): the identity folders and the standard ``pairs.txt`` protocol.

Huang et al., "Labeled Faces in the Wild: A Database for Studying Face Recognition in
Unconstrained Environments", UMass TR 07-49, 2007. ``pairs.txt`` has a header ``folds pairs``
then, per fold, ``pairs`` same-person lines ``name i j`` and ``pairs`` different-person lines
``name1 i name2 j``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fvr_audit.errors import InputError


@dataclass(frozen=True)
class LfwPair:
    """One verification pair of the protocol."""

    fold: int
    first: str  # relative image path, e.g. "Abel_Pacheco/Abel_Pacheco_0001.jpg"
    second: str
    same: bool


def lfw_image(name: str, number: int) -> str:
    """Relative path of image ``number`` of ``name``.

    >>> lfw_image("Abel_Pacheco", 1)
    'Abel_Pacheco/Abel_Pacheco_0001.jpg'
    """
    return f"{name}/{name}_{number:04d}.jpg"


def parse_lfw_pairs(text: str, source: str = "pairs.txt") -> list[LfwPair]:
    """Parse the pairs protocol.

    >>> pairs = parse_lfw_pairs("1\\t1\\nA\\t1\\t2\\nA\\t1\\tB\\t3\\n")
    >>> [(p.fold, p.first, p.second, p.same) for p in pairs]
    [(0, 'A/A_0001.jpg', 'A/A_0002.jpg', True), (0, 'A/A_0001.jpg', 'B/B_0003.jpg', False)]
    """
    lines = [line.split() for line in text.splitlines() if line.strip()]
    try:
        folds, per_fold = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError):
        raise InputError(f"{source}: first line must be '<folds> <pairs per fold>'") from None
    body = lines[1:]
    if len(body) != folds * per_fold * 2:
        raise InputError(f"{source}: expected {folds * per_fold * 2} pair lines, found {len(body)}")
    pairs = []
    for index, parts in enumerate(body):
        fold = index // (2 * per_fold)
        if len(parts) == 3:
            pairs.append(LfwPair(fold, lfw_image(parts[0], int(parts[1])), lfw_image(parts[0], int(parts[2])), True))
        elif len(parts) == 4:
            pairs.append(LfwPair(fold, lfw_image(parts[0], int(parts[1])), lfw_image(parts[2], int(parts[3])), False))
        else:
            raise InputError(f"{source}: line {index + 2}: expected 3 or 4 fields, found {len(parts)}")
    return pairs


def read_lfw_pairs(path: str | Path) -> list[LfwPair]:
    """Read ``pairs.txt``."""
    path = Path(path)
    try:
        return parse_lfw_pairs(path.read_text(), str(path))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file (LFW pairs.txt)") from None


def lfw_identities(root: str | Path) -> dict[str, list[str]]:
    """identity -> sorted relative image paths, for every identity folder under ``root``."""
    root = Path(root)
    return {
        folder.name: sorted(f"{folder.name}/{p.name}" for p in folder.glob("*.jpg"))
        for folder in sorted(root.iterdir())
        if folder.is_dir()
    }


def lfw_split(name: str) -> list[str]:
    """Identities of a committed split: ``train`` (reconstructors, eigenface bases), ``eval``
    (held-out targets and galleries) or ``demo`` (the shipped demo database, a subset of eval).

    >>> len(set(lfw_split("train")) & set(lfw_split("eval")))
    0
    >>> set(lfw_split("demo")) <= set(lfw_split("eval"))
    True
    """
    from importlib import resources

    path = resources.files("fvr_audit.datasets") / "splits" / f"lfw_{name}.txt"
    return [line for line in path.read_text().splitlines() if line]
