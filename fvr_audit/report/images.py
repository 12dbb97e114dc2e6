"""Face images for the report: reconstructions, optional originals, PNG data URIs, redaction.

Every face image in a report is biometric data. With ``redact=True`` each one is pixelated to a
coarse grid (:data:`REDACT_GRID` blocks along its longer side) *before* it is encoded, so the
report file never holds the original pixels.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
from PIL import Image

from fvr_audit.errors import InputError

#: Canonical reconstruction side (see :data:`fvr_audit.alignment.canonical.CANONICAL_GEOMETRY`).
CANONICAL_SIZE = 200
#: Redacted images keep this many blocks along their longer side (8 x 8 for a square face).
REDACT_GRID = 8
#: Faces are stored in the report at the size they are shown (pixels, longer side): the largest
#: gallery cell is 26 mm, about 98 CSS pixels; 112 leaves a little headroom for zoom and print.
#: The full-size images stay in ``reconstructions/``. 200 px PNGs made a 60-target report 16 MB.
THUMBNAIL_SIZE = 112
#: JPEG quality of unredacted faces: at 112 px a face costs about 3-5 kB instead of 40-60 kB as PNG.
JPEG_QUALITY = 85


def _readonly_image(value: np.ndarray, what: str) -> np.ndarray:
    image = np.asarray(value)
    if image.dtype != np.uint8:
        raise InputError(f"report image {what}: expected uint8 pixels, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4) or min(image.shape[:2]) < 1:
        raise InputError(f"report image {what}: expected [height, width, 3] RGB, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    image = np.array(image, copy=True)
    image.setflags(write=False)
    return image


@dataclass(frozen=True)
class ReportImages:
    """The face images a report shows, keyed by target index (:attr:`Target.index`).

    ``reconstructions`` maps a method name to ``{target index: uint8 [200, 200, 3]}``, the
    canonical-frame reconstructions; ``originals`` maps a target index to its photo (any size,
    uint8 RGB), shown only when given. Arrays are copied and made read-only.

    >>> img = np.zeros((200, 200, 3), np.uint8)
    >>> images = ReportImages({"gradient": {3: img}}, {3: img})
    >>> images.target_indices(), images.methods()
    ((3,), ('gradient',))
    """

    reconstructions: Mapping[str, Mapping[int, np.ndarray]] = field(default_factory=dict)
    originals: Mapping[int, np.ndarray] | None = None

    def __post_init__(self) -> None:
        recon = {}
        for method, per_target in self.reconstructions.items():
            frozen = {}
            for index, image in per_target.items():
                array = _readonly_image(image, f"{method}[{index}]")
                if array.shape[:2] != (CANONICAL_SIZE, CANONICAL_SIZE):
                    raise InputError(
                        f"report image {method}[{index}]: reconstructions are {CANONICAL_SIZE}x{CANONICAL_SIZE} "
                        f"canonical faces, got {array.shape[1]}x{array.shape[0]}"
                    )
                frozen[int(index)] = array
            recon[str(method)] = MappingProxyType(frozen)
        object.__setattr__(self, "reconstructions", MappingProxyType(recon))
        if self.originals is not None:
            originals = {int(i): _readonly_image(im, f"original[{i}]") for i, im in self.originals.items()}
            object.__setattr__(self, "originals", MappingProxyType(originals))

    @classmethod
    def from_arrays(
        cls,
        reconstructions: Mapping[str, np.ndarray],
        target_indices: Sequence[int],
        originals: Sequence[np.ndarray | None] | Mapping[int, np.ndarray] | None = None,
    ) -> ReportImages:
        """From arrays in target order: row i of ``reconstructions[method]`` (uint8 [n, 200, 200, 3])
        is target ``target_indices[i]`` (its :attr:`Target.index`, e.g. ``[t.index for t in
        results.targets]``). ``originals`` lists the same targets' photos in that order (None where
        missing), or maps positions i to photos.

        >>> stack = np.zeros((2, 200, 200, 3), np.uint8)
        >>> images = ReportImages.from_arrays({"eigenfaces": stack}, [5, 9], originals={1: stack[0]})
        >>> images.target_indices(), tuple(images.originals)
        ((5, 9), (9,))
        """
        indices = [int(i) for i in target_indices]
        per_method = {}
        for method, stack in reconstructions.items():
            if len(stack) != len(indices):
                raise InputError(
                    f"report images {method}: {len(stack)} reconstructions for {len(indices)} target indices"
                )
            per_method[method] = dict(zip(indices, stack))
        originals_map = None
        if originals is not None:
            if isinstance(originals, Mapping):
                if any(not 0 <= int(p) < len(indices) for p in originals):
                    raise InputError(f"report images: original positions must lie in 0..{len(indices) - 1}")
                originals_map = {indices[int(p)]: image for p, image in originals.items()}
            else:
                if len(originals) != len(indices):
                    raise InputError(
                        f"report images: {len(originals)} originals for {len(indices)} target indices"
                    )
                originals_map = {i: image for i, image in zip(indices, originals) if image is not None}
        return cls(per_method, originals_map)

    def methods(self) -> tuple[str, ...]:
        return tuple(self.reconstructions)

    def target_indices(self) -> tuple[int, ...]:
        indices = set(self.originals or ())
        for per_target in self.reconstructions.values():
            indices.update(per_target)
        return tuple(sorted(indices))

    def __bool__(self) -> bool:
        return bool(self.originals) or any(self.reconstructions.values())


def pixelate(image: np.ndarray, grid: int = REDACT_GRID) -> np.ndarray:
    """Average ``image`` over a coarse grid (``grid`` blocks along its longer side), same size out.

    >>> face = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    >>> out = pixelate(face)
    >>> out.shape, len(np.unique(out.reshape(-1, 3), axis=0)) <= 64
    ((200, 200, 3), True)
    """
    height, width = image.shape[:2]
    scale = grid / max(height, width)
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    pil = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    return np.asarray(
        pil.resize(small, Image.Resampling.BOX).resize((width, height), Image.Resampling.NEAREST)
    )


def thumbnail(image: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    """``image`` scaled down (never up) so that its longer side is at most ``size``."""
    height, width = image.shape[:2]
    if max(height, width) <= size:
        return image
    scale = size / max(height, width)
    pil = Image.fromarray(np.ascontiguousarray(image)).convert("RGB")
    return np.asarray(
        pil.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    )


def face_data_uri(image: np.ndarray, *, redact: bool = False) -> str:
    """A ``data:`` URI of ``image`` scaled down to :data:`THUMBNAIL_SIZE`.

    Unredacted faces are JPEG (small for photographic content); redacted ones are pixelated after
    scaling and stored as PNG, lossless, so no block leaks detail through compression ringing.

    >>> face = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    >>> face_data_uri(face)[:23], face_data_uri(face, redact=True)[:22]
    ('data:image/jpeg;base64,', 'data:image/png;base64,')
    """
    pixels = thumbnail(image)
    if redact:
        pixels = pixelate(pixels)
    picture = Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")
    buffer = io.BytesIO()
    if redact:
        picture.save(buffer, format="PNG", optimize=False, compress_level=6)
        mime = "image/png"
    else:
        picture.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
        mime = "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
