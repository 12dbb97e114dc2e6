"""Offline stand-ins for Amazon Rekognition and Azure Face, answered by a local recognizer.

They let a whole scan run against the *real* engines (:class:`~fvr_audit.engines.aws.AwsRekognitionEngine`,
:class:`~fvr_audit.engines.azure.AzureFaceEngine`) and the real SDKs with nothing leaving the machine:

* AWS: a real boto3 Rekognition client (fake credentials) whose ``before-send`` hook answers each
  signed HTTP request. Every request is first validated by botocore against the real service model
  (its ParamValidator runs before serialisation: types, required members, minima), then serialised
  exactly as it would be sent; the simulated service checks what the real one checks on its side
  (maxima such as ``MaxFaces <= 4096``, string patterns such as ExternalImageId's) and answers
  ``ValidationException``; the answer is parsed by botocore's own JSON-protocol parser. Unlike ``Stubber``, which needs every
  call listed in order, this answers a whole scan, in any order and from several threads.
* Azure: an azure-core ``HttpTransport`` given to the real SDK clients, answering each request.

The answers are computed, not canned: the posted image is decoded, its face found by a detector
(dlib's HOG and 5-point landmarks by default; no face -> the service's no-face answer) and embedded
by a local :class:`~fvr_audit.extractors.base.Extractor`. Scores follow the services' scales and
rules: Rekognition similarity 0-100, ``FaceMatchThreshold`` (default 80) and ``MaxFaces`` (<= 4096)
over faces; Azure confidence 0-1, ``confidenceThreshold``, ``maxNumOfCandidatesReturned`` (<= 100)
over persons, 1-10 face ids per Identify, training required before Identify.

Calibration: a cosine ``c`` of the local model becomes ``sigmoid((c - t) / w)`` (Azure) and
``100 * sigmoid((c - t) / w + logit(0.8))`` (AWS), where ``t`` is the cosine at a false-match rate
of ``calibration_fmr`` (default 1e-3) on impostor pairs of the enrolled faces, and ``w`` = 0.05.
So each service's default threshold (80, 0.5) sits at that operating point, as a vendor's
default is meant to. This is a model of the services' behaviour, not of their accuracy: rates
measured against the simulation say what the local model would do behind each API.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np

from fvr_audit.extractors.base import Extractor, l2_normalize
from fvr_audit.metrics.topk import threshold_at_fmr

#: A face finder for the simulation: uint8 RGB image -> crop in the extractor's geometry, or None.
Detector = Callable[[np.ndarray], "np.ndarray | None"]

DEFAULT_CALIBRATION_FMR = 1e-3
SCORE_WIDTH = 0.05
#: Impostor pairs drawn for the calibration (enough for FMR 1e-3 to rest on ~100 pairs).
CALIBRATION_PAIRS = 100_000


def aligner_detector(extractor: Extractor) -> Detector:
    """dlib's HOG detector and 5-point alignment, cutting the extractor's own crop."""
    from fvr_audit.alignment.aligner import FaceAligner, NoFacePolicy

    aligner = FaceAligner([extractor.geometry], no_face=NoFacePolicy.SKIP)

    def detect(image: np.ndarray) -> np.ndarray | None:
        aligned = aligner.align(image)
        return aligned.crops[0] if aligned.status.usable and aligned.crops else None

    return detect


def decode_image(data: bytes) -> np.ndarray | None:
    """Posted bytes as uint8 RGB, or None when they are not an image the services read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format not in ("JPEG", "PNG"):
                return None
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError):
        return None


class LocalRecognizer:
    """Finds and embeds the face of a posted image; turns cosines into the services' scores.

    One recognizer may serve both simulated services: embeddings are cached by image content, so
    a gallery enrolled in both is embedded once.
    """

    def __init__(
        self,
        extractor: Extractor,
        *,
        detector: Detector | None = None,
        calibration_fmr: float = DEFAULT_CALIBRATION_FMR,
        width: float = SCORE_WIDTH,
    ) -> None:
        self.extractor = extractor
        self.detector = detector or aligner_detector(extractor)
        self.calibration_fmr = calibration_fmr
        self.width = width
        self._cache: dict[str, np.ndarray | None] = {}
        self._lock = threading.Lock()

    def embed_image(self, data: bytes) -> np.ndarray | None:
        """The L2-normalised vector of the image's face, or None when no face is found."""
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            if digest in self._cache:
                return self._cache[digest]
        image = decode_image(data)
        crop = None if image is None else self.detector(image)
        vector = None if crop is None else self.extractor.embed(np.asarray(crop, np.uint8)[None])[0]
        with self._lock:
            self._cache[digest] = vector
        return vector

    def preload(self, files, vectors: np.ndarray) -> None:
        """Seed the cache with known vectors of gallery photos (as the cloud engines send them).

        A large gallery costs about 0.2 s a photo to detect and embed here; a scan that already
        has the photos' vectors from the same extractor (a local engine's gallery) hands them over
        and enrolment is instant. ``vectors[i]`` must be the extractor's vector of ``files[i]``.
        """
        from fvr_audit.engines.cloud import photo_bytes

        vectors = l2_normalize(np.asarray(vectors, np.float32))
        if len(vectors) != len(files):
            raise ValueError(f"{len(files)} files but {len(vectors)} vectors")
        with self._lock:
            for path, vector in zip(files, vectors):
                self._cache[hashlib.sha256(photo_bytes(path)).hexdigest()] = vector

    def calibrate(self, vectors: np.ndarray, labels: list[str], seed: int = 0) -> float:
        """The cosine at ``calibration_fmr`` on impostor pairs of the enrolled faces."""
        vectors = l2_normalize(np.asarray(vectors, np.float32))
        labels_arr = np.asarray(labels)
        n = len(vectors)
        rng = np.random.default_rng(seed)
        a = rng.integers(0, n, CALIBRATION_PAIRS)
        b = rng.integers(0, n, CALIBRATION_PAIRS)
        impostor = labels_arr[a] != labels_arr[b]
        if not impostor.any():
            return 0.5
        scores = np.einsum("nd,nd->n", vectors[a[impostor]], vectors[b[impostor]])
        return float(threshold_at_fmr(scores, self.calibration_fmr))

    def confidence(self, cosine: np.ndarray, centre: float) -> np.ndarray:
        """Azure-like confidence in [0, 1]: 0.5 at the calibrated cosine."""
        return 1.0 / (1.0 + np.exp(-(np.asarray(cosine, np.float64) - centre) / self.width))

    def similarity(self, cosine: np.ndarray, centre: float) -> np.ndarray:
        """Rekognition-like similarity in [0, 100]: 80 at the calibrated cosine."""
        logit_80 = math.log(0.8 / 0.2)
        z = (np.asarray(cosine, np.float64) - centre) / self.width + logit_80
        return 100.0 / (1.0 + np.exp(-z))


class ServiceFault(Exception):
    """An error answer of a simulated service."""

    def __init__(self, code: str, message: str, status: int = 400, headers: dict | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.status, self.headers = code, message, status, headers or {}


@dataclass
class _Faults:
    """Errors to answer instead of the next calls of an operation (throttling, outages, a kill)."""

    planned: dict[str, list[ServiceFault]] = field(default_factory=dict)

    def add(self, operation: str, fault: ServiceFault, times: int) -> None:
        self.planned.setdefault(operation, []).extend([fault] * times)

    def take(self, operation: str) -> ServiceFault | None:
        queue = self.planned.get(operation)
        return queue.pop(0) if queue else None


# == AWS Rekognition =============================================================================


@dataclass
class _Collection:
    arn: str
    tags: dict
    created: datetime
    faces: list[dict] = field(default_factory=list)  # FaceId, ImageId, ExternalImageId, vector


class SimulatedRekognition:
    """The state and answers of a Rekognition endpoint (one account, one region)."""

    def __init__(self, recognizer: LocalRecognizer, *, region: str = "us-east-1", account: str = "123456789012") -> None:
        self.recognizer = recognizer
        self.region = region
        self.account = account
        self.collections: dict[str, _Collection] = {}
        #: Operations answered (throttled ones included), in order.
        self.requests: list[str] = []
        self.faults = _Faults()
        self._lock = threading.RLock()
        self._centre: dict[str, float] = {}

    def fail_next(self, operation: str, code: str = "ThrottlingException", *, times: int = 1, status: int = 400,
                  message: str = "Rate exceeded") -> None:
        self.faults.add(operation, ServiceFault(code, message, status), times)

    # -- the botocore hook -------------------------------------------------------------------------

    def handle(self, request, **_) -> object:
        """``before-send`` handler: the answer to a signed request, as botocore reads it off the wire."""
        from botocore.awsrequest import AWSResponse

        target = request.headers["X-Amz-Target"]  # "RekognitionService.<Operation>"
        operation = (target.decode() if isinstance(target, bytes) else target).split(".", 1)[1]
        body = request.body
        params = json.loads(body.decode("utf-8") if isinstance(body, bytes) else (body or "{}"))
        try:
            with self._lock:
                self.requests.append(operation)
                fault = self.faults.take(operation)
                if fault is not None:
                    raise fault
                _check_constraints(self._model().operation_model(operation).input_shape, params, "")
                answer = getattr(self, "_" + operation)(params)
            status, payload = 200, json.dumps(answer, default=_epoch).encode()
        except ServiceFault as fault:
            status, payload = fault.status, json.dumps({"__type": fault.code, "message": fault.message}).encode()
        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-RequestId": str(uuid.uuid4())}
        return AWSResponse(request.url, status, headers, _Raw(payload))

    @staticmethod
    def _model():
        import botocore.session

        return botocore.session.get_session().get_service_model("rekognition")

    # -- operations --------------------------------------------------------------------------------

    def _collection(self, collection_id: str) -> _Collection:
        if collection_id not in self.collections:
            raise ServiceFault("ResourceNotFoundException", f"The collection id: {collection_id} does not exist")
        return self.collections[collection_id]

    def _CreateCollection(self, p: dict) -> dict:
        cid = p["CollectionId"]
        if cid in self.collections:
            raise ServiceFault("ResourceAlreadyExistsException", f"The collection id: {cid} already exists")
        arn = f"arn:aws:rekognition:{self.region}:{self.account}:collection/{cid}"
        self.collections[cid] = _Collection(arn, dict(p.get("Tags", {})), datetime.now(UTC))
        return {"StatusCode": 200, "CollectionArn": arn, "FaceModelVersion": "7.0"}

    def _DescribeCollection(self, p: dict) -> dict:
        c = self._collection(p["CollectionId"])
        return {"FaceCount": len(c.faces), "FaceModelVersion": "7.0", "CollectionARN": c.arn,
                "CreationTimestamp": c.created, "UserCount": 0}

    def _ListTagsForResource(self, p: dict) -> dict:
        for c in self.collections.values():
            if c.arn == p["ResourceArn"]:
                return {"Tags": dict(c.tags)}
        raise ServiceFault("ResourceNotFoundException", "resource not found")

    def _ListCollections(self, p: dict) -> dict:
        names = sorted(self.collections)
        start = int(p.get("NextToken") or 0)
        size = int(p.get("MaxResults") or 1000)
        page = names[start : start + size]
        answer: dict = {"CollectionIds": page, "FaceModelVersions": ["7.0"] * len(page)}
        if start + size < len(names):
            answer["NextToken"] = str(start + size)
        return answer

    def _DeleteCollection(self, p: dict) -> dict:
        self._collection(p["CollectionId"])
        del self.collections[p["CollectionId"]]
        self._centre.pop(p["CollectionId"], None)
        return {"StatusCode": 200}

    def _IndexFaces(self, p: dict) -> dict:
        c = self._collection(p["CollectionId"])
        vector = self._image_vector(p)
        if vector is None:
            return {"FaceRecords": [], "UnindexedFaces": [], "FaceModelVersion": "7.0"}
        face = {"FaceId": str(uuid.uuid4()), "ImageId": str(uuid.uuid4()), "ExternalImageId": p.get("ExternalImageId"),
                "vector": vector}
        c.faces.append(face)
        self._centre.pop(p["CollectionId"], None)
        box = {"Width": 0.5, "Height": 0.5, "Left": 0.25, "Top": 0.25}
        return {"FaceRecords": [{"Face": {**_public(face), "BoundingBox": box, "Confidence": 99.9},
                                 "FaceDetail": {"BoundingBox": box, "Confidence": 99.9}}],
                "UnindexedFaces": [], "FaceModelVersion": "7.0"}

    def _ListFaces(self, p: dict) -> dict:
        c = self._collection(p["CollectionId"])
        start = int(p.get("NextToken") or 0)
        size = int(p.get("MaxResults") or 1000)
        page = c.faces[start : start + size]
        answer: dict = {"Faces": [_public(f) for f in page], "FaceModelVersion": "7.0"}
        if start + size < len(c.faces):
            answer["NextToken"] = str(start + size)
        return answer

    def _DeleteFaces(self, p: dict) -> dict:
        c = self._collection(p["CollectionId"])
        gone = set(p["FaceIds"])
        c.faces = [f for f in c.faces if f["FaceId"] not in gone]
        self._centre.pop(p["CollectionId"], None)
        return {"DeletedFaces": sorted(gone)}

    def _SearchFacesByImage(self, p: dict) -> dict:
        c = self._collection(p["CollectionId"])
        vector = self._image_vector(p)
        if vector is None:
            raise ServiceFault("InvalidParameterException", "There are no faces in the image. Should be at least 1.")
        threshold = float(p.get("FaceMatchThreshold", 80.0))
        matches = []
        if c.faces:
            gallery = np.stack([f["vector"] for f in c.faces])
            similarity = self.recognizer.similarity(gallery @ vector, self._calibrated(p["CollectionId"]))
            order = np.argsort(-similarity, kind="stable")[: int(p.get("MaxFaces", 4096))]
            matches = [{"Similarity": float(similarity[i]), "Face": _public(c.faces[i])}
                       for i in order if similarity[i] >= threshold]
        box = {"Width": 0.5, "Height": 0.5, "Left": 0.25, "Top": 0.25}
        return {"SearchedFaceBoundingBox": box, "SearchedFaceConfidence": 99.9, "FaceMatches": matches,
                "FaceModelVersion": "7.0"}

    def _image_vector(self, p: dict) -> np.ndarray | None:
        data = base64.b64decode(p["Image"]["Bytes"])
        if decode_image(data) is None:
            raise ServiceFault("InvalidImageFormatException", "Request has invalid image format")
        return self.recognizer.embed_image(data)

    def _calibrated(self, collection_id: str) -> float:
        if collection_id not in self._centre:
            faces = self.collections[collection_id].faces
            labels = [str(f["ExternalImageId"]).split("::", 1)[0] for f in faces]
            self._centre[collection_id] = self.recognizer.calibrate(np.stack([f["vector"] for f in faces]), labels)
        return self._centre[collection_id]


def _check_constraints(shape, value, path: str) -> None:
    """The checks the service makes and botocore's client-side validation leaves to it: maxima of
    numbers, lengths and list sizes, and string patterns (botocore checks types, required members
    and minima). A violation is the service's ``ValidationException``."""
    import re

    meta = shape.metadata
    name = path or shape.name

    def refuse(problem: str) -> None:
        raise ServiceFault("ValidationException", f"1 validation error detected: Value at '{name}' {problem}")

    if shape.type_name == "structure" and isinstance(value, dict):
        for member, member_shape in shape.members.items():
            if member in value:
                _check_constraints(member_shape, value[member], f"{path}.{member}" if path else member)
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            refuse(f"failed to satisfy constraint: Member must have length less than or equal to {meta['max']}")
        for item in value:
            _check_constraints(shape.member, item, name)
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, item in value.items():
            _check_constraints(shape.key, key, name)
            _check_constraints(shape.value, item, name)
    elif shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            refuse(f"failed to satisfy constraint: Member must have length less than or equal to {meta['max']}")
        try:
            pattern = re.compile(meta["pattern"]) if "pattern" in meta else None
        except re.error:  # a Java-only construct (\p{L}...): left to the real service
            pattern = None
        if pattern is not None and not pattern.fullmatch(value):
            refuse(f"failed to satisfy constraint: Member must satisfy regular expression pattern: {meta['pattern']}")
    elif shape.type_name in ("integer", "long", "float", "double") and isinstance(value, (int, float)):
        if "max" in meta and value > meta["max"]:
            refuse(f"failed to satisfy constraint: Member must have value less than or equal to {meta['max']}")


class _Raw:
    """The body of a simulated HTTP answer, read the way botocore reads urllib3's."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload

    def stream(self, **_):
        yield self._payload


def _epoch(value):
    if isinstance(value, datetime):
        return value.timestamp()
    raise TypeError(type(value).__name__)


def _public(face: dict) -> dict:
    return {k: v for k, v in face.items() if k != "vector" and v is not None}


def simulated_rekognition_client(service: SimulatedRekognition):
    """A real boto3 Rekognition client whose requests ``service`` answers (nothing is sent)."""
    import boto3
    from botocore.config import Config

    session = boto3.Session(aws_access_key_id="simulated", aws_secret_access_key="simulated", region_name=service.region)
    client = session.client("rekognition", config=Config(retries={"mode": "standard", "total_max_attempts": 1}))
    client.meta.events.register("before-send.rekognition", service.handle)
    return client


def simulated_aws_engine(extractor: Extractor | None = None, *, recognizer: LocalRecognizer | None = None,
                         service: SimulatedRekognition | None = None, **engine_options):
    """The real :class:`~fvr_audit.engines.aws.AwsRekognitionEngine` on a simulated endpoint.

    Give a local ``extractor`` (or a shared ``recognizer``); ``engine_options`` go to the engine
    (``threshold``, ``run_id``, ``concurrency``...). Waits between retries are skipped. The
    service is ``engine.simulation``.
    """
    from fvr_audit.engines.aws import AwsRekognitionEngine

    if service is None:
        if recognizer is None:
            if extractor is None:
                raise ValueError("simulated_aws_engine needs an extractor or a recognizer")
            recognizer = LocalRecognizer(extractor)
        service = SimulatedRekognition(recognizer)
    engine_options.setdefault("sleep", lambda seconds: None)
    engine = AwsRekognitionEngine(simulated_rekognition_client(service), **engine_options)
    engine.simulation = service
    return engine


# == Azure Face ===================================================================================


@dataclass
class _Group:
    name: str
    user_data: str | None
    recognition_model: str
    persons: dict = field(default_factory=dict)  # personId -> {name, userData, faces: {faceId: (userData, vector)}}
    trained: bool = False
    polls_left: int = 0


try:  # azure-core is an optional dependency (the ``azure`` extra)
    from azure.core.pipeline.transport import HttpTransport as _Transport
except ImportError:  # pragma: no cover - only the AWS simulation is usable then
    _Transport = object  # type: ignore[assignment,misc]


class SimulatedAzureFace(_Transport):  # type: ignore[misc,valid-type]
    """An azure-core transport answering the Face API (v1.2) from local state and a recognizer.

    Face ids from Detect expire after 24 h in the real service; the simulation keeps them all.
    """

    def __init__(self, recognizer: LocalRecognizer, *, training_polls: int = 1) -> None:
        self.recognizer = recognizer
        self.training_polls = training_polls
        self.groups: dict[str, _Group] = {}
        self.detected: dict[str, np.ndarray] = {}
        self.requests: list[str] = []
        self.faults = _Faults()
        self._lock = threading.RLock()
        self._centre: dict[str, float] = {}
        self._ids = itertools.count(1)

    def fail_next(self, operation: str, status: int = 429, *, times: int = 1, code: str = "429",
                  message: str = "Rate limit is exceeded.", retry_after: str | None = "0") -> None:
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self.faults.add(operation, ServiceFault(code, message, status, headers), times)

    # -- azure-core's HttpTransport interface ---------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def sleep(self, duration: float) -> None:
        pass

    def send(self, request, **kwargs):
        url = urlsplit(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        # The path after /face/<version>.
        parts = [unquote(p) for p in url.path.split("/")[3:] if p]
        body = request.content if request.content is not None else b""
        operation, handler, args = self._route(request.method, parts)
        try:
            with self._lock:
                self.requests.append(operation)
                fault = self.faults.take(operation)
                if fault is not None:
                    raise fault
                status, answer, headers = handler(*args, query=query, body=body)
        except ServiceFault as fault:
            status, answer, headers = fault.status, {"error": {"code": fault.code, "message": fault.message}}, fault.headers
        return _azure_response(request, status, answer, headers)

    def _route(self, method: str, parts: list[str]):
        n = len(parts)
        if parts == ["detect"] and method == "POST":
            return "Detect", self._detect, ()
        if parts == ["identify"] and method == "POST":
            return "Identify", self._identify, ()
        if parts == ["largepersongroups"] and method == "GET":
            return "ListGroups", self._list_groups, ()
        if n == 2 and parts[0] == "largepersongroups":
            return {"PUT": ("CreateGroup", self._create_group), "GET": ("GetGroup", self._get_group),
                    "DELETE": ("DeleteGroup", self._delete_group)}[method] + ((parts[1],),)
        if n == 3 and parts[2] == "train" and method == "POST":
            return "Train", self._train, (parts[1],)
        if n == 3 and parts[2] == "training" and method == "GET":
            return "TrainingStatus", self._training, (parts[1],)
        if n == 3 and parts[2] == "persons":
            return {"POST": ("CreatePerson", self._create_person), "GET": ("ListPersons", self._list_persons)}[method] + (
                (parts[1],),)
        if n == 5 and parts[4] == "persistedfaces" and method == "POST":
            return "AddFace", self._add_face, (parts[1], parts[3])
        if n == 6 and parts[4] == "persistedfaces" and method == "GET":
            return "GetFace", self._get_face, (parts[1], parts[3], parts[5])
        raise AssertionError(f"the simulated Face API has no {method} /{'/'.join(parts)}")

    # -- operations --------------------------------------------------------------------------------

    def _group(self, group_id: str) -> _Group:
        if group_id not in self.groups:
            raise ServiceFault("LargePersonGroupNotFound", f"Large person group '{group_id}' is not found.", 404)
        return self.groups[group_id]

    def _create_group(self, group_id, *, query, body):
        if group_id in self.groups:
            raise ServiceFault("LargePersonGroupExists", "Large person group already exists.", 409)
        spec = json.loads(body)
        if not spec.get("name") or len(spec["name"]) > 128:
            raise ServiceFault("BadArgument", "Name is invalid.")
        self.groups[group_id] = _Group(spec["name"], spec.get("userData"), spec.get("recognitionModel", "recognition_01"))
        return 200, None, {}

    def _get_group(self, group_id, *, query, body):
        g = self._group(group_id)
        return 200, {"largePersonGroupId": group_id, "name": g.name, "userData": g.user_data}, {}

    def _delete_group(self, group_id, *, query, body):
        self._group(group_id)
        del self.groups[group_id]
        return 200, None, {}

    def _list_groups(self, *, query, body):
        ids = sorted(i for i in self.groups if i > query.get("start", ""))[: int(query.get("top", 1000))]
        return 200, [{"largePersonGroupId": i, "name": self.groups[i].name, "userData": self.groups[i].user_data}
                     for i in ids], {}

    def _create_person(self, group_id, *, query, body):
        g = self._group(group_id)
        spec = json.loads(body)
        if not spec.get("name") or len(spec["name"]) > 128:
            raise ServiceFault("BadArgument", "Person name is invalid.")
        person_id = str(uuid.UUID(int=next(self._ids)))
        g.persons[person_id] = {"name": spec["name"], "userData": spec.get("userData"), "faces": {}}
        g.trained = False
        return 200, {"personId": person_id}, {}

    def _list_persons(self, group_id, *, query, body):
        g = self._group(group_id)
        ids = sorted(i for i in g.persons if i > query.get("start", ""))[: int(query.get("top", 1000))]
        return 200, [{"personId": i, "name": g.persons[i]["name"], "userData": g.persons[i]["userData"],
                      "persistedFaceIds": list(g.persons[i]["faces"])} for i in ids], {}

    def _add_face(self, group_id, person_id, *, query, body):
        g = self._group(group_id)
        if person_id not in g.persons:
            raise ServiceFault("PersonNotFound", "Person is not found.", 404)
        if decode_image(body) is None:
            raise ServiceFault("InvalidImage", "Decoding error, image format unsupported.")
        vector = self.recognizer.embed_image(body)
        if vector is None:
            raise ServiceFault("InvalidImage", "There is no face detected in the image or in the specified targetFace area.")
        face_id = str(uuid.uuid4())
        g.persons[person_id]["faces"][face_id] = (query.get("userData"), vector)
        g.trained = False
        return 200, {"persistedFaceId": face_id}, {}

    def _get_face(self, group_id, person_id, face_id, *, query, body):
        g = self._group(group_id)
        faces = g.persons.get(person_id, {}).get("faces", {})
        if face_id not in faces:
            raise ServiceFault("PersistedFaceNotFound", "Persisted face is not found.", 404)
        return 200, {"persistedFaceId": face_id, "userData": faces[face_id][0]}, {}

    def _train(self, group_id, *, query, body):
        g = self._group(group_id)
        g.trained, g.polls_left = True, self.training_polls
        self._centre.pop(group_id, None)
        return 202, None, {"operation-Location": f"/face/v1.2-preview.1/operations/{uuid.uuid4()}"}

    def _training(self, group_id, *, query, body):
        g = self._group(group_id)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        state = "notStarted" if not g.trained else ("running" if g.polls_left > 0 else "succeeded")
        g.polls_left = max(0, g.polls_left - 1)
        return 200, {"status": state, "createdDateTime": now, "lastActionDateTime": now,
                     "lastSuccessfulTrainingDateTime": now}, {}

    def _detect(self, *, query, body):
        if query.get("returnFaceId") != "true" or not query.get("recognitionModel"):
            raise ServiceFault("BadArgument", "returnFaceId and recognitionModel are needed for identification.")
        if decode_image(body) is None:
            raise ServiceFault("InvalidImage", "Decoding error, image format unsupported.")
        vector = self.recognizer.embed_image(body)
        if vector is None:
            return 200, [], {}
        face_id = str(uuid.uuid4())
        self.detected[face_id] = vector
        return 200, [{"faceId": face_id, "faceRectangle": {"top": 50, "left": 50, "width": 100, "height": 100}}], {}

    def _identify(self, *, query, body):
        spec = json.loads(body)
        face_ids = spec.get("faceIds", [])
        top = int(spec.get("maxNumOfCandidatesReturned", 10))
        if not 1 <= len(face_ids) <= 10:
            raise ServiceFault("BadArgument", "The number of faceIds should be between 1 and 10.")
        if not 1 <= top <= 100:
            raise ServiceFault("BadArgument", "maxNumOfCandidatesReturned is out of range [1, 100].")
        group_id = spec["largePersonGroupId"]
        g = self._group(group_id)
        if not g.trained:
            raise ServiceFault("LargePersonGroupNotTrained", "Large person group is not trained.", 409)
        threshold = float(spec.get("confidenceThreshold", 0.5))
        person_ids = [p for p in g.persons if g.persons[p]["faces"]]
        owners = [p for p in person_ids for _ in g.persons[p]["faces"]]
        vectors = np.stack([v for p in person_ids for _, v in g.persons[p]["faces"].values()])
        centre = self._calibrated(group_id, vectors, owners)
        answers = []
        for face_id in face_ids:
            if face_id not in self.detected:
                raise ServiceFault("FaceNotFound", "Face is not found.", 404)
            confidence = self.recognizer.confidence(vectors @ self.detected[face_id], centre)
            best: dict[str, float] = {}
            for owner, value in zip(owners, confidence.tolist()):
                best[owner] = max(best.get(owner, 0.0), value)
            ranked = sorted(((p, c) for p, c in best.items() if c >= threshold), key=lambda item: -item[1])[:top]
            answers.append({"faceId": face_id, "candidates": [{"personId": p, "confidence": c} for p, c in ranked]})
        return 200, answers, {}

    def _calibrated(self, group_id: str, vectors: np.ndarray, owners: list[str]) -> float:
        if group_id not in self._centre:
            self._centre[group_id] = self.recognizer.calibrate(vectors, owners)
        return self._centre[group_id]


class _Closable:
    """The "socket" under a simulated Azure answer: nothing to close."""

    def close(self) -> None:
        pass

    def read(self) -> bytes:
        return b""


def _azure_response(request, status: int, answer, headers: dict):
    from azure.core.rest._http_response_impl import HttpResponseImpl
    from azure.core.utils import CaseInsensitiveDict

    content = b"" if answer is None else json.dumps(answer).encode()
    all_headers = CaseInsensitiveDict({"Content-Type": "application/json; charset=utf-8", **headers})
    response = HttpResponseImpl(
        request=request,
        internal_response=_Closable(),
        status_code=status,
        reason={200: "OK", 202: "Accepted", 400: "Bad Request", 404: "Not Found", 409: "Conflict",
                429: "Too Many Requests"}.get(status, "Error"),
        content_type=all_headers["Content-Type"],
        headers=all_headers,
        stream_download_generator=lambda *a, **k: iter([content]),
    )
    response._content = content  # the whole body is in memory: read() and iter_bytes() serve it
    return response


def simulated_azure_engine(extractor: Extractor | None = None, *, recognizer: LocalRecognizer | None = None,
                           service: SimulatedAzureFace | None = None, **engine_options):
    """The real :class:`~fvr_audit.engines.azure.AzureFaceEngine` and SDK clients on a simulated
    endpoint (an azure-core transport). ``engine.simulation`` is the service."""
    from azure.core.credentials import AzureKeyCredential

    from fvr_audit.engines.azure import AzureFaceEngine, face_clients

    if service is None:
        if recognizer is None:
            if extractor is None:
                raise ValueError("simulated_azure_engine needs an extractor or a recognizer")
            recognizer = LocalRecognizer(extractor)
        service = SimulatedAzureFace(recognizer)
    admin, face = face_clients("https://simulated.cognitiveservices.azure.com", transport=service,
                               credential=AzureKeyCredential("simulated"))
    engine_options.setdefault("sleep", lambda seconds: None)
    engine = AzureFaceEngine(admin, face, **engine_options)
    engine.simulation = service
    return engine
