"""What the cloud engines share: run ids, resource names and tags, query images, photo checks, the
enrolment summary, and the Limited Access note.

Every resource a scan creates in a cloud account (a Rekognition collection, an Azure
LargePersonGroup) is named ``fvr-audit-<run id>`` and tagged with the run id, so that
``fvr-audit engines cleanup`` can find what a killed run left behind, and a scan restarted with
the same ``--run-id`` resumes its enrolment instead of paying for it twice.
"""

from __future__ import annotations

import hashlib
import io
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY
from fvr_audit.engines.base import EngineInfo, Gallery, GalleryKind, MatchingEngine
from fvr_audit.errors import InputError
from fvr_audit.extractors.base import FaceGeometry

#: Resource names start with this; the tag key (AWS) or userData field (Azure) is the same word.
RESOURCE_PREFIX = "fvr-audit-"
TAG_KEY = "fvr-audit"

#: Lower-case letters, digits and dashes: valid in a Rekognition collection id and an Azure
#: LargePersonGroup id (at most 64 characters, of which the prefix takes 10).
_RUN_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")

#: Queries are cut like the canonical frame the reconstructions are drawn in (a dlib chip with
#: padding 0.5): the whole face with margin, as a service's own face detector needs, and no
#: resampling of the reconstruction. The face spans about 100 of its 200 pixels.
QUERY_GEOMETRY: FaceGeometry = CANONICAL_GEOMETRY
#: Faces are sent at least this large (pixels across the landmark box). Rekognition needs faces of
#: 40 px or more and detects them reliably well above that; Azure's detection_03 wants >= 36 px.
MIN_SENT_FACE_PX = 100

#: Microsoft's Limited Access policy for Azure Face identification: stated in the README and the report.
AZURE_LIMITED_ACCESS = (
    "Azure Face identification (face ids from Detect, LargePersonGroup identify) is a Limited Access "
    "feature: Microsoft must approve the subscription first (https://aka.ms/facerecognition); without "
    "that approval Detect with returnFaceId fails with HTTP 403 UnsupportedFeature"
)


def new_run_id(now: float | None = None) -> str:
    """A fresh run id: UTC time and 8 random hex digits, e.g. ``20261203t105419z-1a2b3c4d``.

    >>> check_run_id(new_run_id()) is not None
    True
    """
    stamp = time.strftime("%Y%m%dt%H%M%Sz", time.gmtime(now))
    return f"{stamp}-{secrets.token_hex(4)}"


def check_run_id(run_id: str) -> str:
    """``run_id`` when it can name a cloud resource, else a one-line InputError.

    >>> check_run_id("nightly-7")
    'nightly-7'
    >>> check_run_id("Nightly 7")
    Traceback (most recent call last):
    fvr_audit.errors.InputError: --run-id 'Nightly 7': use 1-48 lower-case letters, digits and dashes, starting with a letter or digit
    """
    if not _RUN_ID.match(run_id):
        raise InputError(
            f"--run-id {run_id!r}: use 1-48 lower-case letters, digits and dashes, starting with a letter or digit"
        )
    return run_id


def resource_name(run_id: str) -> str:
    """The collection / person group of a run.

    >>> resource_name("nightly-7")
    'fvr-audit-nightly-7'
    """
    return RESOURCE_PREFIX + check_run_id(run_id)


def run_id_of(name: str) -> str | None:
    """The run id in a resource name made by :func:`resource_name`, else None.

    >>> run_id_of("fvr-audit-nightly-7"), run_id_of("prod-faces")
    ('nightly-7', None)
    """
    if not name.startswith(RESOURCE_PREFIX):
        return None
    rest = name[len(RESOURCE_PREFIX) :]
    return rest if _RUN_ID.match(rest) else None


def photo_key(relative_path: str) -> str:
    """A short stable key of a gallery photo (its path relative to the gallery), for resuming.

    >>> photo_key("AJ_Cook/AJ_Cook_0001.jpg")
    '7af8b75e1e'
    """
    return hashlib.sha256(str(relative_path).encode("utf-8")).hexdigest()[:10]


@dataclass(frozen=True)
class GalleryPhoto:
    label: str
    path: Path
    key: str


def gallery_photos(gallery: Gallery, engine: str) -> list[GalleryPhoto]:
    """The gallery's photos, checked before any call: every file exists and two identities or more.

    A missing file is found here, not after half the gallery was paid for.
    """
    files = gallery.photo_files()
    labels = np.asarray(gallery.labels).astype(str)
    relative = [str(p) for p in np.asarray(gallery.paths)]
    for path in files:
        if not path.is_file():
            raise InputError(f"{path}: gallery photo not found ({engine} enrolls photos)")
    if len(np.unique(labels)) < 2:
        raise InputError(
            f"{gallery.source}: the gallery holds {len(np.unique(labels))} identity; re-identification "
            "needs at least 2 enrolled identities"
        )
    photos = [GalleryPhoto(str(label), path, photo_key(rel)) for label, path, rel in zip(labels, files, relative)]
    keys = {}
    for photo in photos:
        other = keys.setdefault(photo.key, photo)
        if other is not photo and other.path != photo.path:  # a 40-bit collision: never seen, but checked
            raise InputError(f"{photo.path}: its resume key collides with {other.path}; rename one of them")
    return photos


#: Largest image either service accepts as raw bytes (Rekognition 5 MB; Azure 6 MB).
MAX_IMAGE_BYTES = 5 * 1024 * 1024


def photo_bytes(path: Path) -> bytes:
    """A gallery photo as sent: the file itself when it is a JPEG/PNG under the size limit, else
    re-encoded as JPEG (converted from other formats, shrunk if too large)."""
    data = path.read_bytes()
    if len(data) <= MAX_IMAGE_BYTES and (data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n"):
        return data
    from PIL import Image

    from fvr_audit.alignment.images import load_image_rgb

    image = Image.fromarray(load_image_rgb(path))
    quality = 92
    while True:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality)
        if buffer.tell() <= MAX_IMAGE_BYTES or min(image.size) < 64:
            return buffer.getvalue()
        image = image.resize((image.width // 2, image.height // 2), Image.BILINEAR)


def query_image_bytes(crop: np.ndarray, geometry: FaceGeometry = QUERY_GEOMETRY) -> bytes:
    """A query crop as the PNG a service receives (lossless: it sees exactly our pixels).

    Crops whose face would span fewer than :data:`MIN_SENT_FACE_PX` pixels are upscaled first.

    >>> png = query_image_bytes(np.zeros((100, 100, 3), np.uint8), FaceGeometry(100, QUERY_GEOMETRY.template, 0.5))
    >>> from PIL import Image; Image.open(io.BytesIO(png)).size
    (200, 200)
    """
    from PIL import Image

    crop = np.ascontiguousarray(crop, dtype=np.uint8)
    if crop.ndim != 3 or crop.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] crop, got {crop.shape}")
    image = Image.fromarray(crop)
    face_px = crop.shape[0] / (1 + 2 * geometry.padding)
    if face_px < MIN_SENT_FACE_PX:
        side = int(np.ceil(crop.shape[0] * MIN_SENT_FACE_PX / face_px))
        image = image.resize((side, side), Image.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


@dataclass(frozen=True)
class EnrolmentSummary:
    """What enrolling a photo gallery in a service did, for the report."""

    photos: int
    #: Photos sent now and indexed.
    indexed: int
    #: Photos found already indexed by an earlier run with the same run id (not sent again).
    resumed: int
    #: Photos in which the service found no face (left out of the enrolled gallery).
    without_face: int
    #: Identities with at least one indexed face: the N of Metric 1.
    identities: int

    def describe(self) -> str:
        """One line for the report.

        >>> EnrolmentSummary(10, 7, 2, 1, 4).describe()
        '10 photos: 7 indexed, 2 already indexed (resumed), 1 without a face found; 4 identities enrolled'
        """
        return (
            f"{self.photos} photos: {self.indexed} indexed, {self.resumed} already indexed (resumed), "
            f"{self.without_face} without a face found; {self.identities} identities enrolled"
        )


@dataclass(frozen=True)
class LeftOver:
    """A tagged resource found by ``engines cleanup``."""

    engine: str
    name: str
    run_id: str
    detail: str = ""


def map_in_order(function, items, concurrency: int, thread_name: str) -> list:
    """``function`` over ``items``, results in order, ``concurrency`` requests in flight; the first
    failure is raised and the requests not yet started are cancelled (shared by the cloud engines)."""
    from concurrent.futures import ThreadPoolExecutor

    if concurrency <= 1 or len(items) <= 1:
        return [function(item) for item in items]
    pool = ThreadPoolExecutor(max_workers=min(concurrency, len(items)), thread_name_prefix=thread_name)
    futures = [pool.submit(function, item) for item in items]
    try:
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class CloudEngine(MatchingEngine):
    """What the cloud engines share: the threshold on the service's scale, the run id that names
    what they create, request accounting, the enrolled identities and the description of the engine.
    A subclass names its service in the class attributes and implements enroll, search and close."""

    ENGINE: str
    MAX_K: int
    SCORE_SCALE: str
    #: The service's score range, its default threshold and the request parameter that carries it.
    SCORE_RANGE: tuple[float, float]
    DEFAULT_THRESHOLD: float
    DEFAULT_THRESHOLD_SOURCE: str
    THRESHOLD_PARAMETER: str

    def __init__(self, *, run_id: str | None, threshold: float | None, threshold_source: str, concurrency: int,
                 retry, sleep, rng) -> None:
        import random
        import threading
        from collections import Counter

        self.run_id = run_id or new_run_id()
        if threshold is None:
            self.threshold = self.DEFAULT_THRESHOLD
            self.threshold_source = self.DEFAULT_THRESHOLD_SOURCE
        else:
            low, high = self.SCORE_RANGE
            if not low <= float(threshold) <= high:
                raise InputError(
                    f"--engine-threshold {self.ENGINE}={threshold:g}: {self.SCORE_SCALE} runs from {low:g} to {high:g}"
                )
            self.threshold = float(threshold)
            self.threshold_source = threshold_source or f"{self.THRESHOLD_PARAMETER} {float(threshold):g}, set"
        if concurrency < 1:
            raise InputError(f"{self.ENGINE}: concurrency must be 1 or more, got {concurrency}")
        self.concurrency = concurrency
        self.retry = retry
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        #: Requests sent per operation, retries included (what the bill counts).
        self.calls: Counter[str] = Counter()
        self.queries_without_face = 0
        self.enrolment: EnrolmentSummary | None = None
        self._identities: np.ndarray | None = None

    def _description(self) -> str:
        raise NotImplementedError

    @property
    def info(self) -> EngineInfo:
        return EngineInfo(
            name=self.ENGINE, description=self._description(), geometry=QUERY_GEOMETRY, dim=None, sha256=None,
            threshold=self.threshold, max_k=self.MAX_K, model=self.ENGINE, gallery_kind=GalleryKind.PHOTOS,
            score_scale=self.SCORE_SCALE, threshold_source=self.threshold_source, remote=True,
        )

    @property
    def identities(self) -> np.ndarray:
        if self._identities is None:
            raise RuntimeError(f"{self.ENGINE}: no gallery enrolled")
        return self._identities

    def _map(self, function, items) -> list:
        return map_in_order(function, items, self.concurrency, f"fvr-{self.ENGINE.partition(':')[0]}")
