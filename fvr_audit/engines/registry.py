"""Engine specs on the command line: ``local:<extractor>`` (any extractor spec after the colon),
``aws:rekognition`` and ``azure:face``.

>>> parse_engine_spec("local:faceres-1024"), parse_engine_spec("faceres-1024")
(('local', 'faceres-1024'), ('local', 'faceres-1024'))
"""

from __future__ import annotations

from fvr_audit.engines.base import MatchingEngine
from fvr_audit.errors import InputError

DEFAULT_ENGINES = ("local:dlib-resnet128", "local:faceres-1024")
#: Cloud engines: they enroll photos, answer top-K above a service threshold, and cost money.
CLOUD_ENGINES = ("aws:rekognition", "azure:face")


def is_cloud_engine(spec: str) -> bool:
    """Whether ``spec`` names a cloud service (photos enrolled, calls priced).

    >>> is_cloud_engine("aws:rekognition"), is_cloud_engine("local:faceres-1024")
    (True, False)
    """
    return spec in CLOUD_ENGINES


def limited_access_notes() -> dict[str, str]:
    """Spec prefix -> the access requirement said in the README and in every report that used the engine."""
    from fvr_audit.engines.cloud import AZURE_LIMITED_ACCESS

    return {"azure:": AZURE_LIMITED_ACCESS}


def check_cloud_access(spec: str) -> None:
    """A one-line InputError (exit 2) when a cloud engine has no credentials or endpoint: checked
    before a scan does any work, and before any request (building a client sends nothing)."""
    if spec == "aws:rekognition":
        from fvr_audit.engines.aws import rekognition_client

        rekognition_client()
    elif spec == "azure:face":
        from fvr_audit.engines.azure import face_clients

        face_clients()


def parse_engine_spec(spec: str) -> tuple[str, str]:
    kind, sep, target = spec.partition(":")
    if not sep or kind in ("http", "https") or "/" in kind:
        return "local", spec
    return kind, target


def create_engine(
    spec: str,
    *,
    threshold: float | None = None,
    threshold_source: str = "",
    run_id: str | None = None,
    region: str | None = None,
    endpoint: str | None = None,
) -> MatchingEngine:
    """A matching engine from its spec; ``local:`` wraps any extractor spec.

    Cloud engines take ``run_id`` (names and tags their collection / person group; the same id
    resumes an interrupted enrolment), ``threshold`` on the service's scale (Rekognition similarity
    0-100, default 80; Azure confidence 0-1, default 0.5), and ``region`` / ``endpoint`` (else from
    the environment). Credentials are checked here, before any call: a missing one is a one-line
    InputError (exit 2).
    """
    kind, target = parse_engine_spec(spec)
    if spec in CLOUD_ENGINES and run_id is not None:
        from fvr_audit.engines.cloud import check_run_id

        check_run_id(run_id)
    if kind == "local":
        from fvr_audit.engines.local import LocalEngine
        from fvr_audit.extractors.registry import get_extractor

        return LocalEngine(get_extractor(target), threshold=threshold,
                           threshold_source=threshold_source or ("--engine-threshold" if threshold is not None else ""))
    if spec == "aws:rekognition":
        from fvr_audit.engines.aws import AwsRekognitionEngine, rekognition_client

        client = rekognition_client(region)
        return AwsRekognitionEngine(client, run_id=run_id, threshold=threshold, threshold_source=threshold_source)
    if spec == "azure:face":
        from fvr_audit.engines.azure import AzureFaceEngine, face_clients

        admin, face = face_clients(endpoint)
        return AzureFaceEngine(admin, face, run_id=run_id, threshold=threshold, threshold_source=threshold_source)
    raise InputError(
        f"{spec}: unknown engine; use local:<extractor name, .onnx file or URL>, {' or '.join(CLOUD_ENGINES)}"
    )
