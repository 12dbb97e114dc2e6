"""Reading photos as uint8 RGB arrays, whatever their mode (grey, palette, RGBA, 16-bit, EXIF-rotated)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from fvr_audit.errors import InputError

#: File endings treated as images when walking a folder.
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".ppm", ".pnm", ".webp", ".tif", ".tiff", ".gif"})

#: Pillow refuses larger images as decompression bombs; a face photo never needs more.
Image.MAX_IMAGE_PIXELS = 80_000_000


def is_image_file(path: Path) -> bool:
    """Whether ``path`` has an image file ending (case-insensitive).

    >>> is_image_file(Path("a/B.JPG")), is_image_file(Path("notes.txt"))
    (True, False)
    """
    return path.suffix.lower() in IMAGE_SUFFIXES


def to_rgb_uint8(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> uint8 [H, W, 3] RGB, honouring EXIF orientation.

    >>> to_rgb_uint8(Image.new("L", (4, 3), 7)).shape
    (3, 4, 3)
    >>> to_rgb_uint8(Image.new("I;16", (2, 2), 65535))[0, 0].tolist()
    [255, 255, 255]
    """
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grey: scale to 8 bits rather than clipping (Pillow's convert would clip at 255).
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        grey = np.clip(array / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Flatten transparency onto white, as a viewer would show it.
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    return np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))


def load_image_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 [H, W, 3] RGB; raise :class:`InputError` naming the file otherwise."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            return to_rgb_uint8(image)
    except FileNotFoundError:
        raise InputError(f"{path}: no such image file") from None
    except UnidentifiedImageError:
        raise InputError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: image larger than {Image.MAX_IMAGE_PIXELS} pixels; downscale it first") from None
    except (OSError, SyntaxError, ValueError) as exc:
        # Truncated JPEG/PNG data and similar decoder failures.
        raise InputError(f"{path}: image could not be decoded ({exc})") from None
