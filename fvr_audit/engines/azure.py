"""``azure:face``: an Azure AI Face LargePersonGroup as the secondary recognizer F'.

One scan, one group: ``fvr-audit-<run id>``, its ``userData`` a JSON tag ``{"fvr-audit": "<run id>"}``
(Face resources have no tags; ``engines cleanup`` reads this field).

* Enrolment: a person per identity (``name`` = the identity, cut to 128 characters; ``userData``
  = the whole identity), a face per gallery photo (``userData`` = a key of its relative path), then
  training, polled until it ends. A scan restarted with the same run id lists the persons and
  adds only what is missing. A photo in which the service finds no face is left out and counted.
* Search: ``Detect`` on each query image (the largest face's id), then ``Identify`` for up to 10
  face ids per call with ``maxNumOfCandidatesReturned = K`` (service cap 100) and
  ``confidenceThreshold`` (0-1; the service's own default is internal and unpublished, so the
  engine always sends one: 0.5 unless set). Candidates are persons, so answers are identities.
  A query in which Detect finds no face is a **no-match** (counted in ``queries_without_face``).
* HTTP 429 (rate limit: 10 TPS on S0 by default), 5xx and dropped connections are retried by
  :mod:`fvr_audit.io.service` (azure-core's own retries are off); ``close()`` deletes the group.
* Endpoint and key from ``AZURE_FACE_ENDPOINT`` / ``AZURE_FACE_KEY``; without a key,
  azure-identity's ``DefaultAzureCredential`` when it is installed.

Identification is a Limited Access feature (:data:`~fvr_audit.engines.cloud.AZURE_LIMITED_ACCESS`).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from fvr_audit.engines.base import Gallery, IdentityHits
from fvr_audit.engines.cloud import (
    AZURE_LIMITED_ACCESS,
    QUERY_GEOMETRY,
    TAG_KEY,
    CloudEngine,
    EnrolmentSummary,
    GalleryPhoto,
    LeftOver,
    gallery_photos,
    photo_bytes,
    query_image_bytes,
    resource_name,
    run_id_of,
)
from fvr_audit.errors import InputError, ServiceError
from fvr_audit.io.service import Retryable, RetryPolicy, call_with_retries, parse_retry_after

ENGINE = "azure:face"
ENDPOINT_ENV = "AZURE_FACE_ENDPOINT"
KEY_ENV = "AZURE_FACE_KEY"
#: Sent with every Identify: the service's own default threshold is not published.
DEFAULT_THRESHOLD = 0.5
#: Identify's maxNumOfCandidatesReturned runs from 1 to 100.
MAX_CANDIDATES = 100
#: Identify takes 1 to 10 face ids per call.
IDENTIFY_BATCH = 10
#: Persons listed per page (the service's maximum).
PAGE_PERSONS = 1000
RECOGNITION_MODEL = "recognition_04"
DETECTION_MODEL = "detection_03"
#: Person names are at most 128 characters (userData keeps the whole identity).
NAME_MAX = 128
DEFAULT_RETRY = RetryPolicy(attempts=8, base_s=1.0, cap_s=30.0, budget_s=300.0)
#: Training status is polled this often, for at most this long.
TRAIN_POLL_S = 2.0
TRAIN_TIMEOUT_S = 3600.0

T = TypeVar("T")

#: Marks a resumed person that already holds a face for each of its photos.
_ALL_PHOTOS: frozenset[str] = frozenset({"*"})


def face_clients(endpoint: str | None = None, *, transport=None, credential=None):
    """(FaceAdministrationClient, FaceClient) from the environment, or a one-line InputError.

    ``transport`` replaces azure-core's HTTP transport (tests); azure-core's retries are off.
    """
    try:
        from azure.ai.vision.face import FaceAdministrationClient, FaceClient
        from azure.core.credentials import AzureKeyCredential
    except ImportError:
        raise InputError(f"{ENGINE}: needs azure-ai-vision-face: pip install 'fvr-audit[azure]'") from None
    endpoint = (endpoint or os.environ.get(ENDPOINT_ENV, "")).strip().rstrip("/")
    if not endpoint:
        raise InputError(f"{ENGINE}: no endpoint; set {ENDPOINT_ENV} (https://<resource>.cognitiveservices.azure.com)")
    if credential is None:
        key = os.environ.get(KEY_ENV, "").strip()
        if key:
            credential = AzureKeyCredential(key)
        else:
            try:
                from azure.identity import DefaultAzureCredential
            except ImportError:
                raise InputError(
                    f"{ENGINE}: no credential; set {KEY_ENV}, or install azure-identity to sign in with Entra ID"
                ) from None
            credential = DefaultAzureCredential()
    options: dict[str, Any] = {"retry_total": 0}
    if transport is not None:
        options["transport"] = transport
    return FaceAdministrationClient(endpoint, credential, **options), FaceClient(endpoint, credential, **options)


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


def _face_error_code(exc: BaseException) -> str:
    error = getattr(exc, "error", None)
    code = getattr(error, "code", None) if error is not None else None
    if code:
        return str(code)
    model = getattr(exc, "model", None)
    inner = getattr(model, "error", None)
    return str(getattr(inner, "code", "") or "")


def _message(exc: BaseException) -> str:
    status = _status(exc)
    model = getattr(exc, "model", None)
    inner = getattr(model, "error", None)
    text = getattr(inner, "message", None) or getattr(exc, "reason", None) or str(exc).split("\n")[0]
    code = _face_error_code(exc)
    head = f"HTTP {status}" if status else type(exc).__name__
    return " ".join(f"{head} {code}: {text}".split())


def classify(exc: Exception) -> Retryable | None:
    """429, 5xx and dropped connections are retried (Retry-After honoured); the rest is final."""
    from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

    if isinstance(exc, HttpResponseError) and exc.response is not None:
        status = exc.status_code or 0
        if status == 429 or status >= 500:
            return Retryable(_message(exc), parse_retry_after(exc.response.headers.get("Retry-After")))
        return None
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return Retryable(f"connection failed ({type(exc).__name__})")
    return None


def _is_no_face(exc: BaseException) -> bool:
    """The service's answer to adding a face from a photo in which it finds none."""
    code = _face_error_code(exc)
    return _status(exc) == 400 and (code in ("InvalidImage", "NoFaceDetected") or "no face" in _message(exc).lower())


def group_tag(run_id: str) -> str:
    """The person group's userData that marks it as a run's (Face resources have no tags).

    >>> group_tag("nightly-7")
    '{"fvr-audit": "nightly-7"}'
    """
    return json.dumps({TAG_KEY: run_id})


def tagged_run(user_data: str | None) -> str | None:
    try:
        value = json.loads(user_data or "")
    except ValueError:
        return None
    return value.get(TAG_KEY) if isinstance(value, dict) else None


class AzureFaceEngine(CloudEngine):
    """F' = an Azure Face LargePersonGroup; ``admin`` and ``face`` are the SDK's
    FaceAdministrationClient and FaceClient (:func:`face_clients`)."""

    ENGINE = ENGINE
    MAX_K = MAX_CANDIDATES
    SCORE_SCALE = "Azure Face identification confidence (0-1)"
    SCORE_RANGE = (0.0, 1.0)
    DEFAULT_THRESHOLD = DEFAULT_THRESHOLD
    DEFAULT_THRESHOLD_SOURCE = "confidenceThreshold 0.5, sent by fvr-audit (the service's own default is unpublished)"
    THRESHOLD_PARAMETER = "confidenceThreshold"

    def __init__(
        self,
        admin,
        face,
        *,
        run_id: str | None = None,
        threshold: float | None = None,
        threshold_source: str = "",
        concurrency: int = 4,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        train_poll_s: float = TRAIN_POLL_S,
        train_timeout_s: float = TRAIN_TIMEOUT_S,
    ) -> None:
        super().__init__(run_id=run_id, threshold=threshold, threshold_source=threshold_source,
                         concurrency=concurrency, retry=retry, sleep=sleep, rng=rng)
        self._admin = admin
        self._face = face
        self.group_id = resource_name(self.run_id)
        self.train_poll_s = train_poll_s
        self.train_timeout_s = train_timeout_s
        self._group_exists = False
        self._label_of_person: dict[str, str] = {}

    def _description(self) -> str:
        return f"Azure AI Face LargePersonGroup {self.group_id} ({RECOGNITION_MODEL}, {DETECTION_MODEL})"

    @property
    def limited_access(self) -> str:
        return AZURE_LIMITED_ACCESS

    # -- calls -------------------------------------------------------------------------------------

    def _call(self, operation: str, function: Callable[[], T]) -> T:
        def once() -> T:
            with self._lock:
                self.calls[operation] += 1
            return function()

        return call_with_retries(
            once, classify=classify, policy=self.retry, what=f"{ENGINE} {operation} ({self.group_id})",
            sleep=self._sleep, rng=self._rng,
        )

    def _fail(self, operation: str, exc: BaseException) -> ServiceError:
        hint = ""
        if _status(exc) in (401, 403):
            hint = f"; check {KEY_ENV} and that the resource is approved for identification ({AZURE_LIMITED_ACCESS})"
        return ServiceError(f"{ENGINE} {operation} ({self.group_id}): {_message(exc)}{hint}")

    # -- enrolment ---------------------------------------------------------------------------------

    def enroll(self, gallery: Gallery) -> None:
        """Persons and faces for every gallery photo (resuming a group of the same run id), then train.

        A second call replaces the gallery: the group is deleted and made again.
        """
        from azure.core.exceptions import HttpResponseError

        photos = gallery_photos(gallery, ENGINE)
        by_label: dict[str, list[GalleryPhoto]] = {}
        for photo in photos:
            by_label.setdefault(photo.label, []).append(photo)
        if self._identities is not None:
            self._delete_group()
        resumed = self._create_or_resume()
        existing = self._persons({label: len(group) for label, group in by_label.items()}) if resumed else {}

        # Persons first (one call each), then the faces still missing.
        person_of: dict[str, str] = {}
        already: dict[str, set[str]] = {}
        for label, (person_id, keys) in existing.items():
            if label in by_label:
                person_of[label] = person_id
                already[label] = keys
        missing_people = [label for label in by_label if label not in person_of]

        def create_person(label: str) -> str:
            try:
                created = self._call(
                    "CreatePerson",
                    lambda: self._admin.large_person_group.create_person(
                        self.group_id, name=label[:NAME_MAX], user_data=label
                    ),
                )
            except HttpResponseError as exc:
                raise self._fail("CreatePerson", exc) from None
            return created.person_id

        for label, person_id in zip(missing_people, self._map(create_person, missing_people)):
            person_of[label] = person_id
            already[label] = set()

        todo = [p for p in photos if already[p.label] is not _ALL_PHOTOS and p.key not in already[p.label]]

        def add_face(photo: GalleryPhoto) -> bool:
            data = photo_bytes(photo.path)
            try:
                self._call(
                    "AddFace",
                    lambda: self._admin.large_person_group.add_face(
                        self.group_id, person_of[photo.label], data, detection_model=DETECTION_MODEL, user_data=photo.key
                    ),
                )
            except HttpResponseError as exc:
                if _is_no_face(exc):
                    return False
                if _status(exc) in (400, 415) and _face_error_code(exc) in ("InvalidImageSize", "InvalidImage"):
                    raise InputError(f"{photo.path}: Azure Face cannot use this image ({_message(exc)})") from None
                raise self._fail("AddFace", exc) from None
            return True

        added = self._map(add_face, todo)
        faces_of = Counter(
            {label: len(by_label[label]) if keys is _ALL_PHOTOS else len(keys) for label, keys in already.items()}
        )
        for photo, ok in zip(todo, added):
            faces_of[photo.label] += int(ok)
        enrolled = sorted(label for label, count in faces_of.items() if count > 0)
        self._label_of_person = {person_of[label]: label for label in enrolled}
        self._identities = np.array(enrolled, dtype=str)
        self.enrolment = EnrolmentSummary(
            photos=len(photos),
            indexed=int(sum(added)),
            resumed=sum(faces_of.values()) - int(sum(added)),
            without_face=len(todo) - int(sum(added)),
            identities=len(enrolled),
        )
        if len(enrolled) < 2:
            raise InputError(
                f"{gallery.source}: Azure Face found faces of {len(enrolled)} identity in the gallery; "
                "re-identification needs at least 2"
            )
        self._train()

    def _create_or_resume(self) -> bool:
        from azure.core.exceptions import HttpResponseError

        try:
            self._call(
                "CreateGroup",
                lambda: self._admin.large_person_group.create(
                    self.group_id, name=self.group_id, user_data=group_tag(self.run_id), recognition_model=RECOGNITION_MODEL
                ),
            )
        except HttpResponseError as exc:
            if _status(exc) != 409:
                raise self._fail("CreateGroup", exc) from None
        else:
            self._group_exists = True
            return False
        try:
            group = self._call("GetGroup", lambda: self._admin.large_person_group.get(self.group_id))
        except HttpResponseError as exc:
            raise self._fail("GetGroup", exc) from None
        if tagged_run(group.user_data) != self.run_id:
            raise InputError(
                f"{ENGINE}: person group {self.group_id} exists but its userData is not the tag of run "
                f"{self.run_id}; it was not made by this run: choose another --run-id"
            )
        self._group_exists = True
        return True

    def _persons(self, photos_of: dict[str, int]) -> dict[str, tuple[str, set[str]]]:
        """label -> (person id, keys of the photos it already holds), for resuming.

        A person holding as many faces as the identity has photos is complete; only the others
        are asked which photos they hold (one GetFace per face).
        """
        from azure.core.exceptions import HttpResponseError

        found: dict[str, tuple[str, set[str]]] = {}
        start = None
        try:
            while True:
                page = self._call(
                    "ListPersons",
                    lambda start=start: self._admin.large_person_group.get_persons(self.group_id, start=start, top=PAGE_PERSONS),
                )
                for person in page:
                    label = person.user_data or person.name
                    face_ids = list(person.persisted_face_ids or [])
                    keys = set()
                    if len(face_ids) >= photos_of.get(label, 0):
                        found[label] = (person.person_id, _ALL_PHOTOS)
                        continue
                    for face_id in face_ids:
                        face = self._call(
                            "GetFace",
                            lambda face_id=face_id, person_id=person.person_id: self._admin.large_person_group.get_face(
                                self.group_id, person_id, face_id
                            ),
                        )
                        keys.add(face.user_data or "")
                    found[label] = (person.person_id, keys)
                if len(page) < PAGE_PERSONS:
                    return found
                start = page[-1].person_id
        except HttpResponseError as exc:
            raise self._fail("ListPersons", exc) from None

    def _train(self) -> None:
        from azure.core.exceptions import HttpResponseError

        try:
            self._call("Train", lambda: self._admin.large_person_group.begin_train(self.group_id, polling=False))
            waited = 0.0
            while True:
                status = self._call(
                    "TrainingStatus", lambda: self._admin.large_person_group.get_training_status(self.group_id)
                )
                state = str(getattr(status.status, "value", status.status)).lower()
                if state == "succeeded":
                    return
                if state == "failed":
                    raise ServiceError(f"{ENGINE} training of {self.group_id} failed: {status.message or 'no message'}")
                if waited >= self.train_timeout_s:
                    raise ServiceError(f"{ENGINE} training of {self.group_id} still {state} after {waited:g} s")
                self._sleep(self.train_poll_s)
                waited += self.train_poll_s
        except HttpResponseError as exc:
            raise self._fail("Train", exc) from None

    # -- search ------------------------------------------------------------------------------------

    def search(self, crops: np.ndarray, k: int) -> list[IdentityHits]:
        crops = np.asarray(crops)
        size = QUERY_GEOMETRY.size
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
            raise ValueError(f"{ENGINE}: expected uint8 crops [N, {size}, {size}, 3], got {crops.dtype} {crops.shape}")
        identities = self.identities
        if not 1 <= k <= min(MAX_CANDIDATES, len(identities)):
            raise InputError(
                f"{ENGINE}: K = {k}: Azure Face identify returns 1 to {MAX_CANDIDATES} candidates and "
                f"{len(identities)} identities are enrolled"
            )
        face_ids = self._map(self._detect, list(crops))
        hits = [IdentityHits((), ())] * len(face_ids)
        found = [i for i, face_id in enumerate(face_ids) if face_id is not None]
        batches = [found[s : s + IDENTIFY_BATCH] for s in range(0, len(found), IDENTIFY_BATCH)]
        for batch, answers in zip(batches, self._map(lambda b: self._identify([face_ids[i] for i in b], k), batches)):
            for index, answer in zip(batch, answers):
                hits[index] = answer
        return hits

    def _detect(self, crop: np.ndarray) -> str | None:
        from azure.core.exceptions import HttpResponseError

        data = query_image_bytes(crop)
        try:
            faces = self._call(
                "Detect",
                lambda: self._face.detect(
                    data, detection_model=DETECTION_MODEL, recognition_model=RECOGNITION_MODEL, return_face_id=True
                ),
            )
        except HttpResponseError as exc:
            raise self._fail("Detect", exc) from None
        if not faces:
            # No face found in the query: nothing is returned above the threshold, a no-match.
            with self._lock:
                self.queries_without_face += 1
            return None
        largest = max(faces, key=lambda f: f.face_rectangle.width * f.face_rectangle.height)
        return largest.face_id

    def _identify(self, face_ids: list[str], k: int) -> list[IdentityHits]:
        from azure.core.exceptions import HttpResponseError

        try:
            results = self._call(
                "Identify",
                lambda: self._face.identify_from_large_person_group(
                    face_ids=face_ids,
                    large_person_group_id=self.group_id,
                    max_num_of_candidates_returned=k,
                    confidence_threshold=self.threshold,
                ),
            )
        except HttpResponseError as exc:
            raise self._fail("Identify", exc) from None
        by_face = {result.face_id: result for result in results}
        answers = []
        for face_id in face_ids:
            result = by_face.get(face_id)
            candidates = [] if result is None else list(result.candidates)
            ranked = sorted(
                (
                    (self._label_of_person[c.person_id], float(c.confidence))
                    for c in candidates
                    if c.person_id in self._label_of_person and float(c.confidence) >= self.threshold
                ),
                key=lambda item: -item[1],
            )[:k]
            answers.append(IdentityHits(tuple(label for label, _ in ranked), tuple(score for _, score in ranked)))
        return answers

    # -- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Delete the person group (persons and faces with it). Safe to call twice."""
        if self._group_exists:
            self._delete_group()

    def _delete_group(self) -> None:
        from azure.core.exceptions import HttpResponseError

        hint = "; delete it with: fvr-audit engines cleanup --engine azure:face --yes"
        try:
            self._call("DeleteGroup", lambda: self._admin.large_person_group.delete(self.group_id))
        except HttpResponseError as exc:
            if _status(exc) != 404:
                raise ServiceError(f"{ENGINE} DeleteGroup ({self.group_id}): {_message(exc)}{hint}") from None
        except ServiceError as exc:
            raise ServiceError(f"{exc}{hint}") from None
        self._group_exists = False
        self._identities = None


# -- cleanup of killed runs ------------------------------------------------------------------------


def find_leftovers(admin, *, run_id: str | None = None, retry: RetryPolicy = DEFAULT_RETRY, sleep=time.sleep) -> list[LeftOver]:
    """Groups named ``fvr-audit-<run id>`` whose userData is that run's tag; only ``run_id``'s when given."""
    rng = random.Random()
    found = []
    start = None
    while True:
        page = call_with_retries(
            lambda start=start: admin.large_person_group.get_large_person_groups(start=start, top=1000),
            classify=classify, policy=retry, what=f"{ENGINE} ListGroups", sleep=sleep, rng=rng,
        )
        for group in page:
            owner = run_id_of(group.large_person_group_id)
            if owner is None or tagged_run(group.user_data) != owner or (run_id is not None and owner != run_id):
                continue
            found.append(LeftOver(ENGINE, group.large_person_group_id, owner, f"LargePersonGroup {group.name}"))
        if len(page) < 1000:
            return found
        start = page[-1].large_person_group_id


def delete_leftover(admin, leftover: LeftOver, *, retry: RetryPolicy = DEFAULT_RETRY, sleep=time.sleep) -> None:
    from azure.core.exceptions import HttpResponseError

    try:
        call_with_retries(
            lambda: admin.large_person_group.delete(leftover.name),
            classify=classify, policy=retry, what=f"{ENGINE} DeleteGroup ({leftover.name})", sleep=sleep,
            rng=random.Random(),
        )
    except HttpResponseError as exc:
        if _status(exc) != 404:
            raise ServiceError(f"{ENGINE} DeleteGroup ({leftover.name}): {_message(exc)}") from None
