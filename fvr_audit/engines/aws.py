"""``aws:rekognition``: Amazon Rekognition face collections as the secondary recognizer F'.

One scan, one collection: ``fvr-audit-<run id>``, tagged ``fvr-audit=<run id>``.

* Enrolment: ``IndexFaces`` per gallery photo, ``MaxFaces=1`` (the photo's main face),
  ``QualityFilter=NONE`` (a gallery photo the service judges poor is still the gallery), and
  ``ExternalImageId = <identity>::<photo key>``: the identity mapped to the allowed characters
  ``[a-zA-Z0-9_.\\-:]`` (:func:`external_identity`, reversed on every answer) and a short key of the
  photo's relative path, so that a scan restarted with the same run id lists the collection
  (``ListFaces``) and indexes only what is missing.
* Search: ``SearchFacesByImage`` with ``FaceMatchThreshold`` (service default 80, settable) and
  ``QualityFilter=NONE`` (reconstructions are often judged "low quality"; filtering them would
  count the service's quality gate as a no-match). Rekognition returns *faces*; an identity scores
  its best face, so enough faces are asked for (``MaxFaces``, cap 4096) to hold K identities.
* A query in which Rekognition finds no face is answered ``InvalidParameterException`` ("There
  are no faces in the image"): that is a **no-match** answer (nothing returned above the
  threshold), and is counted in :attr:`AwsRekognitionEngine.queries_without_face`.
* Throttling (``ThrottlingException``, ``ProvisionedThroughputExceededException``), 5xx answers and
  dropped connections are retried by :mod:`fvr_audit.io.service`; botocore's own retries are off so
  that the one rule applies.
* :meth:`AwsRekognitionEngine.close` deletes the collection (the scan calls it in a ``finally``);
  ``fvr-audit engines cleanup`` deletes collections a killed run left (:func:`find_leftovers`).

Credentials and region come only from boto3's standard chain (environment, shared files, SSO,
instance role) and are never printed or written.
"""

from __future__ import annotations

import random
import string
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from fvr_audit import __version__
from fvr_audit.engines.base import Gallery, IdentityHits
from fvr_audit.engines.cloud import (
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
from fvr_audit.io.service import Retryable, RetryPolicy, call_with_retries

ENGINE = "aws:rekognition"
#: Rekognition's own default FaceMatchThreshold (similarity 0-100).
DEFAULT_THRESHOLD = 80.0
#: Most faces SearchFacesByImage returns (its MaxFaces cap).
MAX_SEARCH_FACES = 4096
#: Most faces ListFaces returns per page, and DeleteFaces takes per call.
PAGE_FACES = 4096
#: ExternalImageId: at most 255 of ``[a-zA-Z0-9_.\-:]``.
EXTERNAL_ID_MAX = 255
#: Error codes worth retrying (throttling and the service's own failures).
RETRYABLE_CODES = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "InternalServerError", "ServiceUnavailable"}
)
#: botocore's retries are off: :mod:`fvr_audit.io.service` is the one retry rule.
DEFAULT_RETRY = RetryPolicy(attempts=8, base_s=0.5, cap_s=20.0, budget_s=300.0)

_PLAIN = frozenset(string.ascii_letters + string.digits + "_.-")
T = TypeVar("T")


# -- identities as ExternalImageId -------------------------------------------------------------


def external_identity(label: str) -> str:
    """``label`` in Rekognition's ExternalImageId characters, reversibly: characters outside
    ``[a-zA-Z0-9_.-]`` become ``:XX`` per UTF-8 byte (so ``:`` never appears otherwise).

    >>> external_identity("George_W_Bush"), external_identity("José Ortiz"), external_identity("a:b")
    ('George_W_Bush', 'Jos:C3:A9:20Ortiz', 'a:3Ab')
    """
    return "".join(c if c in _PLAIN else "".join(f":{b:02X}" for b in c.encode("utf-8")) for c in label)


def decode_external_identity(text: str) -> str:
    """The label back from :func:`external_identity`, or from a whole ExternalImageId.

    >>> decode_external_identity("Jos:C3:A9:20Ortiz::ce4a7e8cf2")
    'José Ortiz'
    """
    text = text.split("::", 1)[0]
    out = bytearray()
    i = 0
    while i < len(text):
        if text[i] == ":" and i + 2 < len(text) and all(c in string.hexdigits for c in text[i + 1 : i + 3]):
            out.append(int(text[i + 1 : i + 3], 16))
            i += 3
        else:
            out.extend(text[i].encode("utf-8"))
            i += 1
    return out.decode("utf-8", errors="replace")


def external_image_id(label: str, key: str) -> str:
    """``<identity>::<photo key>``; a label too long for 255 characters is cut and made unique
    with a hash (:class:`AwsRekognitionEngine` keeps the mapping and reverses it).

    >>> external_image_id("AJ_Cook", "ce4a7e8cf2")
    'AJ_Cook::ce4a7e8cf2'
    >>> len(external_image_id("x" * 400, "ce4a7e8cf2"))
    255
    """
    import hashlib

    identity = external_identity(label)
    room = EXTERNAL_ID_MAX - len(key) - 2
    if len(identity) > room:
        digest = hashlib.sha256(label.encode("utf-8")).hexdigest()[:16]
        cut = identity[: room - 18]
        colon = cut.rfind(":")
        if colon >= len(cut) - 2:  # do not leave half an escape behind
            cut = cut[:colon] if colon >= 0 else cut
        identity = cut + ":Z" + digest
    return f"{identity}::{key}"


# -- client and errors ---------------------------------------------------------------------------


def rekognition_client(region: str | None = None):
    """A boto3 Rekognition client from the standard credential chain, or a one-line InputError.

    Checked before any call: credentials (``boto3.Session().get_credentials()``) and a region.
    botocore's own retries are switched off (see :data:`DEFAULT_RETRY`).
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise InputError(f"{ENGINE}: needs boto3: pip install 'fvr-audit[aws]'") from None
    session = boto3.Session(region_name=region) if region else boto3.Session()
    if session.get_credentials() is None:
        raise InputError(
            f"{ENGINE}: no AWS credentials found in boto3's standard chain (AWS_ACCESS_KEY_ID/"
            "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, ~/.aws/credentials, SSO or an instance role); "
            "set them up, or plan the scan with --dry-run"
        )
    if not session.region_name:
        raise InputError(f"{ENGINE}: no AWS region set; set AWS_REGION (or AWS_DEFAULT_REGION, or --region)")
    config = Config(retries={"mode": "standard", "total_max_attempts": 1}, user_agent_extra=f"fvr-audit/{__version__}")
    return session.client("rekognition", config=config)


def error_code(exc: BaseException) -> str | None:
    """The service's error code of a botocore ClientError, else None."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return response.get("Error", {}).get("Code")
    return None


def _error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        error = response.get("Error", {})
        return " ".join(f"{error.get('Code', '')}: {error.get('Message', '')}".split()).rstrip(": ")
    return " ".join(str(exc).split()) or type(exc).__name__


def classify(exc: Exception) -> Retryable | None:
    """Throttling, the service's 5xx and dropped connections are retried; the rest is final."""
    from botocore.exceptions import ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in RETRYABLE_CODES or (isinstance(status, int) and status >= 500):
            return Retryable(_error_message(exc))
        return None
    if isinstance(exc, (BotoConnectionError, HTTPClientError)):
        return Retryable(f"connection failed ({type(exc).__name__})")
    return None


def _retrying(client, operation: str, policy: RetryPolicy, sleep, rng, **params) -> dict:
    """One Rekognition call with the shared retries; a final error becomes a one-line ServiceError
    unless the caller handles it (botocore ClientError subclasses are re-raised as they are)."""
    method = getattr(client, _snake(operation))
    return call_with_retries(
        lambda: method(**params), classify=classify, policy=policy, what=f"{ENGINE} {operation}", sleep=sleep, rng=rng
    )


def _snake(operation: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


def _is_no_face(exc: BaseException) -> bool:
    """Rekognition's answer to a query image in which it finds no face."""
    if error_code(exc) != "InvalidParameterException":
        return False
    message = str(getattr(exc, "response", {}).get("Error", {}).get("Message", "")).lower()
    return "no face" in message


# -- the engine ----------------------------------------------------------------------------------


class AwsRekognitionEngine(CloudEngine):
    """F' = an Amazon Rekognition collection. ``client`` is a boto3 Rekognition client
    (:func:`rekognition_client`, or a stubbed / simulated one in tests).

    ``concurrency`` requests are in flight at once during enrolment and search; the defaults stay
    under Rekognition's default 5-50 TPS quotas, and throttling is retried anyway.
    """

    ENGINE = ENGINE
    MAX_K = MAX_SEARCH_FACES
    SCORE_SCALE = "Rekognition similarity (0-100)"
    SCORE_RANGE = (0.0, 100.0)
    DEFAULT_THRESHOLD = DEFAULT_THRESHOLD
    DEFAULT_THRESHOLD_SOURCE = "service default (FaceMatchThreshold 80)"
    THRESHOLD_PARAMETER = "FaceMatchThreshold"

    def __init__(
        self,
        client,
        *,
        run_id: str | None = None,
        threshold: float | None = None,
        threshold_source: str = "",
        region: str = "",
        concurrency: int = 4,
        retry: RetryPolicy = DEFAULT_RETRY,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        search_quality_filter: str = "NONE",
        index_quality_filter: str = "NONE",
    ) -> None:
        super().__init__(run_id=run_id, threshold=threshold, threshold_source=threshold_source,
                         concurrency=concurrency, retry=retry, sleep=sleep, rng=rng)
        self._client = client
        self.collection_id = resource_name(self.run_id)
        self.region = region or str(getattr(getattr(client, "meta", None), "region_name", "") or "")
        self.search_quality_filter = search_quality_filter
        self.index_quality_filter = index_quality_filter
        self.face_model_version = ""
        self._collection_exists = False
        self._label_of_identity: dict[str, str] = {}
        self._most_faces_per_identity = 1

    # -- description -------------------------------------------------------------------------------

    def _description(self) -> str:
        where = f" in {self.region}" if self.region else ""
        model = f", face model {self.face_model_version}" if self.face_model_version else ""
        return f"Amazon Rekognition collection {self.collection_id}{where}{model}"

    # -- calls -------------------------------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> dict:
        """One request with the shared retries (running out of them is a ServiceError naming the collection)."""
        method = getattr(self._client, _snake(operation))

        def once() -> dict:
            with self._lock:
                self.calls[operation] += 1
            return method(**params)

        # A final ClientError propagates: the caller knows what it means (no face, already exists).
        return call_with_retries(
            once,
            classify=classify,
            policy=self.retry,
            what=f"{ENGINE} {operation} ({self.collection_id})",
            sleep=self._sleep,
            rng=self._rng,
        )

    def _fail(self, operation: str, exc: BaseException) -> ServiceError:
        hint = ""
        if error_code(exc) in ("AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"):
            hint = "; check the AWS credentials and their rekognition:* permissions"
        return ServiceError(f"{ENGINE} {operation} ({self.collection_id}): {_error_message(exc)}{hint}")

    # -- enrolment ---------------------------------------------------------------------------------

    def enroll(self, gallery: Gallery) -> None:
        """Index every gallery photo (resuming a collection of the same run id).

        A second call replaces the gallery: the collection is deleted and made again.
        """
        from botocore.exceptions import ClientError

        photos = gallery_photos(gallery, ENGINE)
        wanted = {external_image_id(p.label, p.key): p for p in photos}
        self._label_of_identity = {external_id.split("::", 1)[0]: p.label for external_id, p in wanted.items()}
        if self._identities is not None:
            self._delete_collection()
        resumed = self._create_or_resume()
        done: set[str] = set()
        if resumed:
            done = self._reconcile(set(wanted))
        todo = [p for external_id, p in wanted.items() if external_id not in done]

        def index(photo: GalleryPhoto) -> bool:
            try:
                answer = self._call(
                    "IndexFaces",
                    CollectionId=self.collection_id,
                    Image={"Bytes": photo_bytes(photo.path)},
                    ExternalImageId=external_image_id(photo.label, photo.key),
                    MaxFaces=1,
                    QualityFilter=self.index_quality_filter,
                )
            except ClientError as exc:
                if error_code(exc) in ("InvalidImageFormatException", "ImageTooLargeException"):
                    raise InputError(f"{photo.path}: Rekognition cannot use this image ({_error_message(exc)})") from None
                raise self._fail("IndexFaces", exc) from None
            self.face_model_version = answer.get("FaceModelVersion", self.face_model_version)
            return bool(answer.get("FaceRecords"))

        indexed = self._map(index, todo)
        enrolled = [wanted[e].label for e in done] + [p.label for p, ok in zip(todo, indexed) if ok]
        counts = Counter(enrolled)
        self._identities = np.array(sorted(counts), dtype=str)
        self._most_faces_per_identity = max(counts.values(), default=1)
        self.enrolment = EnrolmentSummary(
            photos=len(photos),
            indexed=int(sum(indexed)),
            resumed=len(done),
            without_face=len(todo) - int(sum(indexed)),
            identities=len(counts),
        )
        if len(counts) < 2:
            raise InputError(
                f"{gallery.source}: Rekognition found faces of {len(counts)} identity in the gallery; "
                "re-identification needs at least 2"
            )

    def _create_or_resume(self) -> bool:
        """Create the tagged collection; True when it already existed for this run (resume)."""
        from botocore.exceptions import ClientError

        try:
            answer = self._call("CreateCollection", CollectionId=self.collection_id, Tags={TAG_KEY: self.run_id})
        except ClientError as exc:
            if error_code(exc) != "ResourceAlreadyExistsException":
                raise self._fail("CreateCollection", exc) from None
        else:
            self._collection_exists = True
            self.face_model_version = answer.get("FaceModelVersion", "")
            return False
        try:
            described = self._call("DescribeCollection", CollectionId=self.collection_id)
            tags = self._call("ListTagsForResource", ResourceArn=described["CollectionARN"]).get("Tags", {})
        except ClientError as exc:
            raise self._fail("DescribeCollection", exc) from None
        if tags.get(TAG_KEY) != self.run_id:
            raise InputError(
                f"{ENGINE}: collection {self.collection_id} exists but is not tagged {TAG_KEY}={self.run_id}; "
                "it was not made by this run: choose another --run-id"
            )
        self._collection_exists = True
        self.face_model_version = described.get("FaceModelVersion", "")
        return True

    def _reconcile(self, wanted: set[str]) -> set[str]:
        """The ExternalImageIds already indexed; faces not of this gallery are deleted (an earlier
        run with the same id enrolled another gallery) so that they cannot answer searches."""
        from botocore.exceptions import ClientError

        present: set[str] = set()
        stray: list[str] = []
        token = None
        operation = "ListFaces"
        try:
            while True:
                params: dict[str, Any] = {"CollectionId": self.collection_id, "MaxResults": PAGE_FACES}
                if token:
                    params["NextToken"] = token
                page = self._call("ListFaces", **params)
                for face in page.get("Faces", []):
                    external_id = face.get("ExternalImageId", "")
                    if external_id in wanted and external_id not in present:
                        present.add(external_id)
                    else:  # not of this gallery, or a duplicate left by an interrupted IndexFaces retry
                        stray.append(face["FaceId"])
                token = page.get("NextToken")
                if not token:
                    break
            operation = "DeleteFaces"
            for start in range(0, len(stray), PAGE_FACES):
                self._call("DeleteFaces", CollectionId=self.collection_id, FaceIds=stray[start : start + PAGE_FACES])
        except ClientError as exc:
            raise self._fail(operation, exc) from None
        return present

    # -- search ------------------------------------------------------------------------------------

    def search(self, crops: np.ndarray, k: int) -> list[IdentityHits]:
        crops = np.asarray(crops)
        size = QUERY_GEOMETRY.size
        if crops.ndim != 4 or crops.shape[1:] != (size, size, 3) or crops.dtype != np.uint8:
            raise ValueError(f"{ENGINE}: expected uint8 crops [N, {size}, {size}, 3], got {crops.dtype} {crops.shape}")
        identities = self.identities
        if not 1 <= k <= min(MAX_SEARCH_FACES, len(identities)):
            raise InputError(
                f"{ENGINE}: K = {k}: Rekognition answers 1 to {MAX_SEARCH_FACES} faces and "
                f"{len(identities)} identities are enrolled"
            )
        # Faces, not identities, come back: enough of them to hold K identities however many
        # photos each has (a call costs the same whatever MaxFaces is).
        faces = min(MAX_SEARCH_FACES, k * self._most_faces_per_identity)
        return self._map(lambda crop: self._search_one(crop, k, faces), list(crops))

    def _search_one(self, crop: np.ndarray, k: int, faces: int) -> IdentityHits:
        from botocore.exceptions import ClientError

        try:
            answer = self._call(
                "SearchFacesByImage",
                CollectionId=self.collection_id,
                Image={"Bytes": query_image_bytes(crop)},
                MaxFaces=faces,
                FaceMatchThreshold=self.threshold,
                QualityFilter=self.search_quality_filter,
            )
        except ClientError as exc:
            if _is_no_face(exc):
                # No face found in the query: nothing is returned above the threshold, a no-match.
                with self._lock:
                    self.queries_without_face += 1
                return IdentityHits((), ())
            raise self._fail("SearchFacesByImage", exc) from None
        best: dict[str, float] = {}
        for match in answer.get("FaceMatches", []):
            similarity = float(match["Similarity"])
            if similarity < self.threshold:
                continue
            label = self._label_of(match["Face"].get("ExternalImageId", ""))
            if similarity > best.get(label, -1.0):
                best[label] = similarity
        ranked = sorted(best.items(), key=lambda item: -item[1])[:k]
        return IdentityHits(tuple(label for label, _ in ranked), tuple(score for _, score in ranked))

    def _label_of(self, external_id: str) -> str:
        identity = external_id.split("::", 1)[0]
        label = self._label_of_identity.get(identity)
        return label if label is not None else decode_external_identity(identity)

    # -- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Delete the collection (and every face in it). Safe to call twice."""
        if self._collection_exists:
            self._delete_collection()

    def _delete_collection(self) -> None:
        from botocore.exceptions import ClientError

        try:
            self._call("DeleteCollection", CollectionId=self.collection_id)
        except ClientError as exc:
            if error_code(exc) != "ResourceNotFoundException":
                raise ServiceError(
                    f"{ENGINE} DeleteCollection ({self.collection_id}): {_error_message(exc)}; "
                    "delete it with: fvr-audit engines cleanup --engine aws:rekognition --yes"
                ) from None
        except ServiceError as exc:
            raise ServiceError(f"{exc}; delete it with: fvr-audit engines cleanup --engine aws:rekognition --yes") from None
        self._collection_exists = False
        self._identities = None


# -- cleanup of killed runs ------------------------------------------------------------------------


def find_leftovers(
    client, *, run_id: str | None = None, retry: RetryPolicy = DEFAULT_RETRY, sleep=time.sleep
) -> list[LeftOver]:
    """Collections named ``fvr-audit-<run id>`` *and* tagged ``fvr-audit=<run id>`` (both: a
    collection someone else named alike is never touched); only ``run_id``'s when given."""
    rng = random.Random()
    found = []
    token = None
    while True:
        params: dict[str, Any] = {"MaxResults": 1000}
        if token:
            params["NextToken"] = token
        page = _retrying(client, "ListCollections", retry, sleep, rng, **params)
        for collection_id in page.get("CollectionIds", []):
            owner = run_id_of(collection_id)
            if owner is None or (run_id is not None and owner != run_id):
                continue
            described = _retrying(client, "DescribeCollection", retry, sleep, rng, CollectionId=collection_id)
            tags = _retrying(
                client, "ListTagsForResource", retry, sleep, rng, ResourceArn=described["CollectionARN"]
            ).get("Tags", {})
            if tags.get(TAG_KEY) != owner:
                continue
            created = described.get("CreationTimestamp")
            when = f", created {created:%Y-%m-%d %H:%M} UTC" if hasattr(created, "strftime") else ""
            found.append(LeftOver(ENGINE, collection_id, owner, f"{described.get('FaceCount', 0)} faces{when}"))
        token = page.get("NextToken")
        if not token:
            return found


def delete_leftover(client, leftover: LeftOver, *, retry: RetryPolicy = DEFAULT_RETRY, sleep=time.sleep) -> None:
    from botocore.exceptions import ClientError

    try:
        _retrying(client, "DeleteCollection", retry, sleep, random.Random(), CollectionId=leftover.name)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise ServiceError(f"{ENGINE} DeleteCollection ({leftover.name}): {_error_message(exc)}") from None
