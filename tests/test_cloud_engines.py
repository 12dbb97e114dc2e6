"""Cloud engines (aws:rekognition, azure:face) without a network: contract tests against the real
SDKs (botocore's Stubber validates every request against the Rekognition service model; azure-core
transports answer the Face SDK), and whole enrol/search runs against the offline simulations whose
answers a local recognizer computes.

Nothing here reaches the network: credentials are fake, boto3's instance-metadata probe is off,
and Azure gets an API key (no managed-identity probe).
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fvr_audit.engines.base import Gallery
from fvr_audit.errors import ExitCode, InputError, ServiceError
from fvr_audit.extractors.base import AlignmentTemplate, Extractor, ExtractorInfo, FaceGeometry, Preprocessing
from fvr_audit.io.service import Attempts, GiveUp, RetryPolicy
from fvr_audit.metrics.topk import topk_rates_from_hits

boto3 = pytest.importorskip("boto3")
from botocore.stub import ANY, Stubber

REGION = "us-east-1"
EXTERNAL_ID = re.compile(r"^[a-zA-Z0-9_.\-:]+$")


@pytest.fixture(autouse=True)
def offline_credentials(monkeypatch, tmp_path):
    """Fake AWS credentials, no metadata probes, no shared config; an Azure key, no identity probe."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AZURE_FACE_ENDPOINT", "AZURE_CLIENT_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AZURE_FACE_KEY", "testing")


# -- a toy recognizer and gallery ------------------------------------------------------------------


class BlockColours(Extractor):
    """A stand-in face recognizer: mean colour of a 4x4 grid of blocks, centred."""

    info = ExtractorInfo("block-colours", 48, FaceGeometry(64, AlignmentTemplate.NONE), Preprocessing(), "test", "none")

    def embed_raw(self, crops: np.ndarray) -> np.ndarray:
        x = np.asarray(crops, np.float32).reshape(len(crops), 4, 16, 4, 16, 3).mean(axis=(2, 4)).reshape(len(crops), -1)
        return x - x.mean(axis=1, keepdims=True)


def detect_unless_flat(image: np.ndarray):
    """The stand-in face detector: a flat image holds no face."""
    if image.std() < 3:
        return None
    return np.asarray(Image.fromarray(image).resize((64, 64), Image.BILINEAR))


PEOPLE = ["Ann Lee", "Bob", "Chloé", "D'Arcy", "Eve:2", "Fu"]


def face(index: int, rng: np.random.Generator, noise: float = 10.0) -> np.ndarray:
    base = np.random.default_rng(100 + index).integers(0, 256, (4, 4, 3)).astype(np.float32)
    image = np.kron(base, np.ones((50, 50, 1))) + rng.normal(0, noise, (200, 200, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


FLAT = np.full((200, 200, 3), 128, np.uint8)


@pytest.fixture
def gallery(tmp_path: Path) -> Gallery:
    rng = np.random.default_rng(0)
    root = tmp_path / "gallery"
    paths, labels = [], []
    for index, person in enumerate(PEOPLE):
        for photo in range(2):
            relative = f"{index}/{photo}.jpg"
            (root / str(index)).mkdir(parents=True, exist_ok=True)
            Image.fromarray(face(index, rng)).save(root / relative, quality=95)
            paths.append(relative)
            labels.append(person)
    (root / "flat").mkdir()
    Image.fromarray(FLAT).save(root / "flat/0.jpg")
    paths.append("flat/0.jpg")
    labels.append("Nobody")
    return Gallery(None, np.array(labels), "toy gallery", np.array(paths), root)


def queries() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    crops = np.stack([face(i, rng, noise=25.0) for i in range(len(PEOPLE))] + [FLAT])
    return crops, np.array(PEOPLE + ["Ann Lee"])


def recognizer():
    from fvr_audit.engines.simulated import LocalRecognizer

    return LocalRecognizer(BlockColours(), detector=detect_unless_flat)


def no_wait(seconds: float) -> None:
    pass


# -- the shared retry rule ---------------------------------------------------------------------------


def test_full_jitter_stays_under_the_exponential_ceiling() -> None:
    import random

    policy = RetryPolicy(attempts=10, base_s=1.0, cap_s=8.0, budget_s=None)
    rng = random.Random(3)
    for failures, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (6, 8.0)]:
        delays = [policy.backoff(failures, rng) for _ in range(200)]
        assert 0.0 <= min(delays) and max(delays) <= ceiling
        assert max(delays) > 0.5 * ceiling  # full jitter spreads over the whole range


def test_retry_after_replaces_the_backoff_and_counts_against_the_budget() -> None:
    state = Attempts(RetryPolicy(attempts=5, base_s=100.0, cap_s=100.0, budget_s=3.0))
    assert state.wait_after_failure(retry_after=2.0) == 2.0
    with pytest.raises(GiveUp) as excinfo:
        state.wait_after_failure(retry_after=2.0)
    assert excinfo.value.message("HTTP 429") == (
        "HTTP 429; gave up, waiting 2 s more would pass the 3 s backoff budget (2 attempts)"
    )


# -- AWS: identities as ExternalImageId --------------------------------------------------------------


@pytest.mark.parametrize("label", ["George_W_Bush", "Ann Lee", "Chloé", "Eve:2", "D'Arcy", "李", "x" * 300])
def test_external_image_ids_are_valid_and_reversible(label: str) -> None:
    from fvr_audit.engines.aws import decode_external_identity, external_image_id

    external_id = external_image_id(label, "0123456789")
    assert EXTERNAL_ID.match(external_id) and len(external_id) <= 255
    if len(label) < 200:
        assert decode_external_identity(external_id) == label


# -- AWS contract tests (Stubber) --------------------------------------------------------------------


def stubbed(run_id: str = "t1"):
    from fvr_audit.engines.aws import AwsRekognitionEngine

    client = boto3.client("rekognition", region_name=REGION)
    stub = Stubber(client)
    sleeps: list[float] = []
    engine = AwsRekognitionEngine(client, run_id=run_id, concurrency=1, sleep=sleeps.append)
    return engine, stub, sleeps


def two_person_gallery(gallery: Gallery) -> Gallery:
    keep = np.isin(gallery.labels, ["Ann Lee", "Bob"]) & np.char.endswith(gallery.paths.astype(str), "0.jpg")
    return gallery.without(~keep)


def expect_create_and_index(stub: Stubber, small: Gallery, run_id: str = "t1", refuse_last: bool = False) -> list[str]:
    from fvr_audit.engines.aws import external_image_id
    from fvr_audit.engines.cloud import photo_key

    collection = f"fvr-audit-{run_id}"
    stub.add_response(
        "create_collection",
        {"StatusCode": 200, "CollectionArn": f"arn:aws:rekognition:{REGION}:1:collection/{collection}",
         "FaceModelVersion": "7.0"},
        {"CollectionId": collection, "Tags": {"fvr-audit": run_id}},
    )
    ids = []
    for label, path in zip(small.labels, small.paths):
        external_id = external_image_id(str(label), photo_key(str(path)))
        ids.append(external_id)
        if refuse_last and len(ids) == len(small.labels):
            stub.add_client_error("index_faces", "AccessDeniedException", "not allowed", 400)
            continue
        stub.add_response(
            "index_faces",
            {"FaceRecords": [{"Face": {"FaceId": "0" * 36, "ExternalImageId": external_id}}], "FaceModelVersion": "7.0"},
            {"CollectionId": collection, "Image": {"Bytes": ANY}, "ExternalImageId": external_id, "MaxFaces": 1,
             "QualityFilter": "NONE"},
        )
    return ids


def test_aws_create_index_search_no_match_throttling_and_delete(gallery: Gallery) -> None:
    engine, stub, sleeps = stubbed()
    small = two_person_gallery(gallery)
    ann, bob = expect_create_and_index(stub, small)
    assert ann.startswith("Ann:20Lee::")
    search = {"CollectionId": "fvr-audit-t1", "Image": {"Bytes": ANY}, "MaxFaces": 2, "FaceMatchThreshold": 80.0,
              "QualityFilter": "NONE"}
    # Query 1: throttled twice, then answered with two faces of two identities.
    stub.add_client_error("search_faces_by_image", "ThrottlingException", "Rate exceeded", 400, expected_params=search)
    stub.add_client_error("search_faces_by_image", "ProvisionedThroughputExceededException", "slow down", 400,
                          expected_params=search)
    stub.add_response(
        "search_faces_by_image",
        {"FaceMatches": [{"Similarity": 99.1, "Face": {"FaceId": "a" * 36, "ExternalImageId": bob}},
                         {"Similarity": 85.0, "Face": {"FaceId": "b" * 36, "ExternalImageId": ann}}]},
        search,
    )
    # Query 2: no face found in the image -> a no-match answer.
    stub.add_client_error("search_faces_by_image", "InvalidParameterException",
                          "There are no faces in the image. Should be at least 1.", 400, expected_params=search)
    # Query 3: a face, but nothing above the threshold -> no match either.
    stub.add_response("search_faces_by_image", {"FaceMatches": []}, search)
    stub.add_response("delete_collection", {"StatusCode": 200}, {"CollectionId": "fvr-audit-t1"})
    with stub, engine:
        engine.enroll(small)
        assert engine.identities.tolist() == ["Ann Lee", "Bob"]
        hits = engine.search(np.stack([queries()[0][0], FLAT, FLAT]), 2)
    stub.assert_no_pending_responses()
    assert hits[0].labels == ("Bob", "Ann Lee") and hits[0].scores == (99.1, 85.0)
    assert hits[1].labels == () and hits[2].labels == ()
    assert engine.queries_without_face == 1
    assert len(sleeps) == 2
    assert engine.calls["SearchFacesByImage"] == 5 and engine.calls["DeleteCollection"] == 1
    info = engine.info
    assert info.remote and info.threshold == 80.0 and info.max_k == 4096 and "default" in info.threshold_source


def test_aws_collection_is_deleted_when_enrolment_fails_halfway(gallery: Gallery) -> None:
    engine, stub, _ = stubbed()
    small = two_person_gallery(gallery)
    # The second IndexFaces is refused (not retryable): the scan fails, and close() still deletes.
    expect_create_and_index(stub, small, refuse_last=True)
    stub.add_response("delete_collection", {"StatusCode": 200}, {"CollectionId": "fvr-audit-t1"})
    with stub, pytest.raises(ServiceError, match=r"IndexFaces \(fvr-audit-t1\): AccessDeniedException: not allowed"):
        with engine:
            engine.enroll(small)
    stub.assert_no_pending_responses()


def test_aws_throttling_that_never_ends_is_a_service_error_and_still_deletes(gallery: Gallery) -> None:
    from fvr_audit.engines.aws import AwsRekognitionEngine

    client = boto3.client("rekognition", region_name=REGION)
    stub = Stubber(client)
    engine = AwsRekognitionEngine(client, run_id="t1", concurrency=1, sleep=no_wait,
                                  retry=RetryPolicy(attempts=3, base_s=0.0, budget_s=None))
    stub.add_response("create_collection", {"StatusCode": 200})
    for _ in range(3):
        stub.add_client_error("index_faces", "ThrottlingException", "Rate exceeded", 400)
    stub.add_response("delete_collection", {"StatusCode": 200}, {"CollectionId": "fvr-audit-t1"})
    with stub, pytest.raises(ServiceError) as excinfo, engine:
        engine.enroll(two_person_gallery(gallery))
    assert str(excinfo.value) == (
        "aws:rekognition IndexFaces (fvr-audit-t1): ThrottlingException: Rate exceeded (3 attempts)"
    )
    assert excinfo.value.exit_code is ExitCode.SERVICE_FAILURE
    stub.assert_no_pending_responses()


def test_aws_missing_credentials_is_one_line_exit_2_before_any_call(monkeypatch) -> None:
    from fvr_audit.engines.registry import create_engine

    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(InputError) as excinfo:
        create_engine("aws:rekognition")
    assert excinfo.value.exit_code is ExitCode.BAD_INPUT
    assert str(excinfo.value).startswith("aws:rekognition: no AWS credentials found")
    assert "\n" not in str(excinfo.value)


def test_engines_never_print_credentials(monkeypatch) -> None:
    from fvr_audit.engines.registry import create_engine

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    engine = create_engine("aws:rekognition", run_id="t1")
    assert "very-secret-value" not in repr(engine.info) and "testing" not in repr(engine.info)


# -- Azure contract tests (azure-core transport) -----------------------------------------------------


azure_face = pytest.importorskip("azure.ai.vision.face")


class RecordingFace:
    """Wraps the simulated Face endpoint and keeps each request as the SDK sent it."""

    def __init__(self, service) -> None:
        self.service = service
        self.sent: list[tuple[str, str, bytes]] = []
        original = service.send

        def send(request, **kwargs):
            content = request.content if request.content is not None else b""
            self.sent.append((request.method, request.url, content if isinstance(content, bytes) else content.encode()))
            return original(request, **kwargs)

        service.send = send


def test_azure_create_add_train_detect_identify_429_and_delete(gallery: Gallery) -> None:
    from fvr_audit.engines.simulated import SimulatedAzureFace, simulated_azure_engine

    service = SimulatedAzureFace(recognizer(), training_polls=2)
    recording = RecordingFace(service)
    service.fail_next("AddFace", 429, times=2, retry_after="0")
    service.fail_next("Identify", 503, times=1, retry_after=None)
    sleeps: list[float] = []
    engine = simulated_azure_engine(service=service, run_id="t2", concurrency=1, sleep=sleeps.append)
    crops, _ = queries()
    with engine:
        engine.enroll(gallery)
        hits = engine.search(crops, 3)
        assert service.groups["fvr-audit-t2"].user_data == json.dumps({"fvr-audit": "t2"})
    assert service.groups == {}  # deleted on close
    assert engine.enrolment.without_face == 1 and engine.enrolment.identities == len(PEOPLE)
    assert [h.labels[0] if h.labels else None for h in hits[:-1]] == PEOPLE
    assert hits[-1].labels == () and engine.queries_without_face == 1
    assert all(0.5 <= s <= 1.0 for h in hits for s in h.scores)
    assert engine.calls["AddFace"] == 13 + 2 and engine.calls["Identify"] == 1 + 1
    assert engine.calls["TrainingStatus"] == 3
    # Retry-After 0 honoured for the 429s; computed backoff for the 503; training polls in between.
    assert sleeps.count(0.0) >= 2
    detect = [url for method, url, _ in recording.sent if "/detect" in url]
    assert all("returnFaceId=true" in url and "recognitionModel=recognition_04" in url for url in detect)
    identify = [json.loads(body) for method, url, body in recording.sent if url.endswith("/identify")]
    assert identify[-1]["maxNumOfCandidatesReturned"] == 3 and identify[-1]["confidenceThreshold"] == 0.5
    assert len(identify[-1]["faceIds"]) == len(PEOPLE)
    assert all("AZURE" not in url and "testing" not in url for _, url, _ in recording.sent)


def test_azure_group_is_deleted_when_enrolment_fails_halfway(gallery: Gallery) -> None:
    from fvr_audit.engines.simulated import SimulatedAzureFace, simulated_azure_engine

    service = SimulatedAzureFace(recognizer())
    engine = simulated_azure_engine(service=service, run_id="t3", concurrency=1,
                                    retry=RetryPolicy(attempts=3, base_s=0.0, budget_s=None))
    service.fail_next("AddFace", 500, times=3, code="InternalServerError", message="boom", retry_after=None)
    with pytest.raises(ServiceError, match=r"AddFace \(fvr-audit-t3\): HTTP 500 InternalServerError: boom \(3 attempts\)"):
        with engine:
            engine.enroll(gallery)
    assert service.groups == {}
    assert service.requests[-1] == "DeleteGroup"


def test_azure_k_above_the_service_cap_is_refused(gallery: Gallery) -> None:
    from fvr_audit.engines.simulated import simulated_azure_engine

    with simulated_azure_engine(recognizer=recognizer(), run_id="t4") as engine:
        engine.enroll(gallery)
        with pytest.raises(InputError, match="K = 7"):
            engine.search(queries()[0][:1], 7)


def test_azure_missing_endpoint_is_one_line_exit_2() -> None:
    from fvr_audit.engines.registry import create_engine

    with pytest.raises(InputError, match="^azure:face: no endpoint; set AZURE_FACE_ENDPOINT"):
        create_engine("azure:face")


# -- end to end on the simulations -------------------------------------------------------------------


@pytest.mark.parametrize("make", ["aws", "azure"])
def test_simulated_engine_answers_a_whole_search_and_matches_its_plan(gallery: Gallery, make: str) -> None:
    from fvr_audit.engines.cost import plan_calls
    from fvr_audit.engines.simulated import simulated_aws_engine, simulated_azure_engine

    factory = simulated_aws_engine if make == "aws" else simulated_azure_engine
    crops, truth = queries()
    with factory(recognizer=recognizer(), run_id="e2e") as engine:
        engine.enroll(gallery)
        hits = engine.search(crops, 2)
        n = len(engine.identities)
        calls = dict(engine.calls)
    rates = {r.k: r for r in topk_rates_from_hits([h.labels for h in hits], truth, [1, 2], n)}
    assert n == len(PEOPLE)
    assert rates[1].tpr == pytest.approx(6 / 7) and rates[1].no_match == pytest.approx(1 / 7)
    plan = plan_calls(engine.info.name, len(gallery.labels), len(np.unique(gallery.labels)), len(crops))
    if make == "aws":
        assert calls["IndexFaces"] == plan.count("IndexFaces")
        assert calls["SearchFacesByImage"] == plan.count("SearchFacesByImage")
    else:
        assert calls["AddFace"] == plan.count("AddFace") and calls["Detect"] == plan.count("Detect")
        assert calls["Identify"] == plan.count("Identify") and calls["CreatePerson"] == plan.count("CreatePerson")


def test_preloaded_gallery_vectors_spare_the_detector(gallery: Gallery) -> None:
    from fvr_audit.engines.simulated import LocalRecognizer, simulated_aws_engine

    calls = []

    def counting_detector(image):
        calls.append(1)
        return detect_unless_flat(image)

    shared = LocalRecognizer(BlockColours(), detector=counting_detector)
    known = gallery.labels != "Nobody"
    files = [f for f, keep in zip(gallery.photo_files(), known) if keep]
    crops = [detect_unless_flat(np.asarray(Image.open(f).convert("RGB"))) for f in files]
    shared.preload(files, BlockColours().embed(np.stack(crops)))
    with simulated_aws_engine(recognizer=shared, run_id="pre") as engine:
        engine.enroll(gallery)
        hits = engine.search(queries()[0][:1], 1)
    assert len(calls) == 1 + 1  # the one photo not preloaded, and the query
    assert engine.enrolment.indexed == 12 and hits[0].labels == ("Ann Lee",)


def test_aws_enrolment_resumes_a_killed_run(gallery: Gallery) -> None:
    from fvr_audit.engines.simulated import SimulatedRekognition, simulated_aws_engine

    service = SimulatedRekognition(recognizer())
    first = simulated_aws_engine(service=service, run_id="r1")
    first.enroll(gallery)  # then "killed": never closed
    collection = service.collections["fvr-audit-r1"]
    collection.faces = collection.faces[:5] + [dict(collection.faces[0], FaceId="0" * 8 + "-0000-0000-0000-" + "0" * 12, ExternalImageId="Old::1")]
    second = simulated_aws_engine(service=service, run_id="r1")
    with second:
        second.enroll(gallery)
        assert second.enrolment.resumed == 5 and second.enrolment.indexed == 12 - 5
        assert second.calls["IndexFaces"] == 13 - 5 and second.calls["DeleteFaces"] == 1
        assert "Old" not in {f["ExternalImageId"].split("::")[0] for f in service.collections["fvr-audit-r1"].faces}
    assert service.collections == {}


def test_the_simulated_client_validates_requests_against_the_service_model() -> None:
    from botocore.exceptions import ClientError, ParamValidationError

    from fvr_audit.engines.simulated import SimulatedRekognition, simulated_rekognition_client

    service = SimulatedRekognition(recognizer())
    client = simulated_rekognition_client(service)
    # botocore's own validation: types and required members, before anything is sent.
    with pytest.raises(ParamValidationError, match="MaxFaces"):
        client.search_faces_by_image(CollectionId="fvr-audit-x", Image={"Bytes": b"png"}, MaxFaces="5")
    assert service.requests == []
    # The service's: maxima and patterns from the same model.
    client.create_collection(CollectionId="fvr-audit-x")
    for bad in ({"MaxFaces": 5000}, {"FaceMatchThreshold": 101.0}):
        with pytest.raises(ClientError, match="ValidationException"):
            client.search_faces_by_image(CollectionId="fvr-audit-x", Image={"Bytes": b"png"}, **bad)
    with pytest.raises(ClientError, match="regular expression pattern"):
        client.index_faces(CollectionId="fvr-audit-x", Image={"Bytes": b"png"}, ExternalImageId="Ann Lee")


def test_aws_refuses_a_collection_it_did_not_make(gallery: Gallery) -> None:
    from fvr_audit.engines.simulated import (
        SimulatedRekognition,
        simulated_aws_engine,
        simulated_rekognition_client,
    )

    service = SimulatedRekognition(recognizer())
    simulated_rekognition_client(service).create_collection(CollectionId="fvr-audit-r2")
    with pytest.raises(InputError, match="not tagged fvr-audit=r2"):
        simulated_aws_engine(service=service, run_id="r2").enroll(gallery)
    assert "fvr-audit-r2" in service.collections  # untouched


def test_azure_enrolment_resumes_a_killed_run(gallery: Gallery) -> None:
    from fvr_audit.engines.simulated import SimulatedAzureFace, simulated_azure_engine

    service = SimulatedAzureFace(recognizer())
    simulated_azure_engine(service=service, run_id="r3").enroll(gallery)  # killed: never closed
    group = service.groups["fvr-audit-r3"]
    person = next(iter(group.persons.values()))
    person["faces"].pop(next(iter(person["faces"])))
    with simulated_azure_engine(service=service, run_id="r3") as second:
        second.enroll(gallery)
        assert second.calls["AddFace"] == 1 + 1  # the lost face, and the faceless photo tried again
        assert second.calls["CreatePerson"] == 0
        # Only the incomplete person is asked which photos it holds; complete ones cost nothing.
        assert second.calls["GetFace"] == 1
        assert second.enrolment.resumed == 11 and second.enrolment.indexed == 1
    assert service.groups == {}


# -- engines cleanup ---------------------------------------------------------------------------------


def test_engines_cleanup_lists_then_deletes_only_tagged_leftovers(gallery: Gallery, monkeypatch) -> None:
    from typer.testing import CliRunner

    from fvr_audit.cli.app import app
    from fvr_audit.engines import aws
    from fvr_audit.engines.simulated import (
        SimulatedRekognition,
        simulated_aws_engine,
        simulated_rekognition_client,
    )

    service = SimulatedRekognition(recognizer())
    simulated_aws_engine(service=service, run_id="killed").enroll(gallery)  # never closed
    client = simulated_rekognition_client(service)
    client.create_collection(CollectionId="fvr-audit-lookalike")  # named like ours, not tagged
    client.create_collection(CollectionId="production-faces", Tags={"fvr-audit": "x"})
    monkeypatch.setattr(aws, "rekognition_client", lambda region=None: client)
    runner = CliRunner()
    listed = runner.invoke(app, ["engines", "cleanup", "--engine", "aws:rekognition"])
    assert listed.exit_code == 0, listed.output
    assert "fvr-audit-killed" in listed.stdout and "lookalike" not in listed.stdout
    assert sorted(service.collections) == ["fvr-audit-killed", "fvr-audit-lookalike", "production-faces"]
    dry = runner.invoke(app, ["engines", "cleanup", "--engine", "aws:rekognition", "--yes", "--dry-run"])
    assert dry.exit_code == 0 and "fvr-audit-killed" in service.collections
    deleted = runner.invoke(app, ["engines", "cleanup", "--engine", "aws:rekognition", "--yes"])
    assert deleted.exit_code == 0, deleted.output
    assert sorted(service.collections) == ["fvr-audit-lookalike", "production-faces"]


def test_engines_cleanup_deletes_azure_groups_of_killed_runs(gallery: Gallery, monkeypatch) -> None:
    from typer.testing import CliRunner

    from fvr_audit.cli.app import app
    from fvr_audit.engines import azure
    from fvr_audit.engines.simulated import SimulatedAzureFace, simulated_azure_engine

    service = SimulatedAzureFace(recognizer())
    engine = simulated_azure_engine(service=service, run_id="killed2")
    engine.enroll(gallery)
    monkeypatch.setattr(azure, "face_clients", lambda endpoint=None: (engine._admin, engine._face))
    result = CliRunner().invoke(app, ["engines", "cleanup", "--engine", "azure:face", "--yes"])
    assert result.exit_code == 0, result.output
    assert "fvr-audit-killed2" in result.stdout and service.groups == {}


# -- cost ------------------------------------------------------------------------------------------


def test_max_cost_stops_before_any_call_and_the_plan_prints_whole() -> None:
    from rich.console import Console

    from fvr_audit.engines.cost import check_cost, plan_calls, render_plans

    plans = [plan_calls("aws:rekognition", 5000, 5000, 500), plan_calls("azure:face", 5000, 5000, 500)]
    with pytest.raises(InputError) as excinfo:
        check_cost(plans, 1.0)
    assert excinfo.value.exit_code is ExitCode.BAD_INPUT and "\n" not in str(excinfo.value)
    check_cost(plans, 100.0)
    out = io.StringIO()
    render_plans(plans, Console(file=out, width=40, force_terminal=False))
    lines = out.getvalue().splitlines()
    assert any(line.split()[:3] == ["aws:rekognition", "SearchFacesByImage", "500"] for line in lines)
    assert any(line.split()[:2] == ["azure:face", "total"] for line in lines)
    assert "https://aws.amazon.com/rekognition/pricing/" in lines[0]


# -- the simulation with a real recognizer on LFW ------------------------------------------------------


@pytest.mark.shared_data
@pytest.mark.slow
def test_simulated_services_with_dlib_on_lfw_photos(lfw_dir: Path) -> None:
    """The default simulated detector (dlib HOG + landmarks) and a real recognizer: gallery photos
    as files, queries cut to the canonical frame the scan sends; a held-out photo of each person is
    found at rank 1 by both services, and a blank query is a no-match."""
    from fvr_audit.alignment.aligner import FaceAligner, NoFacePolicy
    from fvr_audit.alignment.canonical import CANONICAL_GEOMETRY
    from fvr_audit.alignment.images import load_image_rgb
    from fvr_audit.engines.simulated import LocalRecognizer, simulated_aws_engine, simulated_azure_engine
    from fvr_audit.extractors.registry import get_extractor

    people = sorted(p.name for p in lfw_dir.iterdir() if p.is_dir() and len(list(p.glob("*.jpg"))) >= 3)[:8]
    paths, labels, held_out = [], [], []
    for person in people:
        photos = sorted((lfw_dir / person).glob("*.jpg"))
        paths += [f"{person}/{p.name}" for p in photos[:2]]
        labels += [person, person]
        held_out.append(photos[2])
    gallery = Gallery(None, np.array(labels), "LFW", np.array(paths), lfw_dir)
    aligner = FaceAligner([CANONICAL_GEOMETRY], no_face=NoFacePolicy.CENTER)
    crops = np.stack([aligner.align(load_image_rgb(p)).crops[0] for p in held_out] + [FLAT])
    shared = LocalRecognizer(get_extractor("dlib-resnet128"))
    for factory in (simulated_aws_engine, simulated_azure_engine):
        with factory(recognizer=shared, run_id="lfw") as engine:
            engine.enroll(gallery)
            hits = engine.search(crops, 3)
        assert engine.enrolment.identities == len(people)
        top1 = [h.labels[0] if h.labels else None for h in hits]
        assert sum(t == p for t, p in zip(top1, people)) >= len(people) - 1, (engine.name, top1)
        assert hits[-1].labels == ()
