"""Finding the images of a folder: ``DIR/<identity>/<image>`` trees or flat folders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fvr_audit.alignment.images import is_image_file
from fvr_audit.errors import InputError


@dataclass(frozen=True)
class ImageRecord:
    """One image to embed: its path, its path relative to the root, and its identity (if known)."""

    path: Path
    relative: str
    label: str | None


def discover_images(root: str | Path) -> tuple[list[ImageRecord], bool]:
    """List the images under ``root``; return ``(records, labelled)``.

    When ``root`` has sub-folders holding images, each sub-folder is an identity (its name is the
    label, images at any depth below it count). Otherwise the images directly in ``root`` are
    taken without labels. Hidden files and folders are ignored. Order is sorted, so runs repeat.
    """
    root = Path(root)
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; give a folder of images (DIR/<identity>/<image> or flat)")

    def visible(path: Path) -> bool:
        return not any(part.startswith(".") for part in path.relative_to(root).parts)

    records: list[ImageRecord] = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and visible(p)):
        for image in sorted(p for p in folder.rglob("*") if p.is_file() and is_image_file(p) and visible(p)):
            records.append(ImageRecord(image, image.relative_to(root).as_posix(), folder.name))
    if records:
        return records, True
    flat = sorted(p for p in root.iterdir() if p.is_file() and is_image_file(p) and visible(p))
    records = [ImageRecord(p, p.name, None) for p in flat]
    if not records:
        raise InputError(f"{root}: no image files found (looked for .jpg, .png, .pgm, ... in identity folders and at the top)")
    return records, False
