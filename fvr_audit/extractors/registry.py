"""One entry point for every extractor: a built-in name, a user's ONNX file, or an HTTP endpoint.

>>> from fvr_audit.extractors import get_extractor
>>> sorted(BUILTIN_EXTRACTORS)
['dlib-resnet128', 'faceres-1024', 'mobileface-256']
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass
from pathlib import Path

from fvr_audit.errors import InputError
from fvr_audit.extractors.base import (
    AlignmentTemplate,
    ChannelOrder,
    Extractor,
    ExtractorInfo,
    Layout,
)

#: Built-in extractors: name -> "module:factory". Imported lazily so listing them stays cheap.
BUILTIN_EXTRACTORS: dict[str, str] = {
    "dlib-resnet128": "fvr_audit.extractors.dlib_resnet:create_dlib_resnet128",
    "faceres-1024": "fvr_audit.extractors.human_models:create_faceres",
    "mobileface-256": "fvr_audit.extractors.human_models:create_mobileface",
}

DEFAULT_EXTRACTOR = "dlib-resnet128"

#: The shipped model file of each built-in (listed with its sha256 in models/manifest.json).
BUILTIN_MODEL_FILES: dict[str, str] = {
    "dlib-resnet128": "dlib-resnet128.onnx",
    "faceres-1024": "faceres-1024.onnx",
    "mobileface-256": "mobileface-256.onnx",
}


@dataclass(frozen=True)
class ExtractorOptions:
    """User overrides for a model whose preprocessing must otherwise be guessed (ONNX, HTTP).

    ``None`` means "keep the guess / the default". Built-in extractors reject overrides, since
    their preprocessing is known exactly.
    """

    input_size: int | None = None
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    channel_order: ChannelOrder | None = None
    layout: Layout | None = None
    crop: AlignmentTemplate | None = None
    padding: float | None = None
    #: HTTP endpoints: seconds per request, attempts, parallel requests.
    timeout: float | None = None
    retries: int | None = None
    concurrency: int | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class ExtractorSpec:
    """How to make an extractor again in another process: what :func:`get_extractor` was given.

    Work units carry this, never the extractor itself (an endpoint's HTTP client, locks and
    caches cannot travel); a worker calls :meth:`build` once and keeps the result.

    >>> ExtractorSpec("dlib-resnet128").build().name
    'dlib-resnet128'
    """

    spec: str
    options: ExtractorOptions = ExtractorOptions()

    def build(self) -> Extractor:
        return get_extractor(self.spec, self.options)


def spec_of(extractor: Extractor) -> ExtractorSpec | None:
    """The spec ``extractor`` was made from by :func:`get_extractor`, or None (made some other way)."""
    return getattr(extractor, "origin", None)


def _load_factory(target: str):
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


@functools.lru_cache(maxsize=None)
def _builtin(name: str) -> Extractor:
    # Built-ins keep no per-call state, so one instance (one onnxruntime session, one hash check)
    # serves F and every engine that uses the same model within a process.
    return _load_factory(BUILTIN_EXTRACTORS[name])()


def get_extractor(spec: str, options: ExtractorOptions | None = None) -> Extractor:
    """Create an extractor from a built-in name, a ``.onnx`` path, or an ``http(s)://`` URL.

    Built-ins: ``dlib-resnet128`` (the default F), ``faceres-1024`` and ``mobileface-256``.
    """
    options = options or ExtractorOptions()
    if spec.startswith(("http://", "https://")):
        from fvr_audit.extractors.http_endpoint import HttpEndpointExtractor

        return _remember(HttpEndpointExtractor(spec, options), ExtractorSpec(spec, options))
    transport = [f"--{name}" for name in ("timeout", "retries", "concurrency") if getattr(options, name) is not None]
    if transport:
        raise InputError(f"{spec}: {'/'.join(transport)} apply to http(s):// endpoints only")
    if spec in BUILTIN_EXTRACTORS:
        if not options.is_empty() and any(
            getattr(options, f) is not None
            for f in ("input_size", "mean", "std", "channel_order", "layout", "crop", "padding")
        ):
            raise InputError(
                f"{spec}: preprocessing overrides apply only to ONNX files and HTTP endpoints; "
                "built-in extractors use their exact preprocessing"
            )
        return _remember(_builtin(spec), ExtractorSpec(spec))
    path = Path(spec)
    if path.suffix.lower() == ".onnx" or path.exists():
        from fvr_audit.extractors.onnx_model import OnnxModelExtractor

        builtin = recognised_builtin(path)
        if builtin is not None and options.is_empty():
            return _remember(_builtin(builtin), ExtractorSpec(builtin))
        # absolute: a worker may start in another folder (on a cluster, the file must be at that path)
        return _remember(OnnxModelExtractor(path, options), ExtractorSpec(str(path.resolve()), options))
    known = ", ".join(sorted(BUILTIN_EXTRACTORS))
    raise InputError(f"{spec}: unknown extractor; use one of {known}, a path to an .onnx file, or an http(s):// URL")


def _remember(extractor: Extractor, spec: ExtractorSpec) -> Extractor:
    extractor.origin = spec  # type: ignore[attr-defined]  # read by spec_of
    return extractor


def recognised_builtin(path: str | Path) -> str | None:
    """The built-in whose shipped model file is byte-for-byte ``path`` (same sha256), else None.

    Such a file is the built-in under another name: it gets the built-in's exact preprocessing and
    its shipped generators.
    """
    from fvr_audit.model_store import load_manifest, models_dir, sha256_file

    path = Path(path)
    if not path.is_file():
        return None
    manifest = load_manifest(models_dir())
    sizes = {name: manifest[file].size for name, file in BUILTIN_MODEL_FILES.items() if file in manifest}
    size = path.stat().st_size
    if size not in sizes.values():
        return None  # cheap: no hashing for the usual case
    digest = sha256_file(path)
    for name, file in BUILTIN_MODEL_FILES.items():
        if file in manifest and manifest[file].sha256 == digest:
            return name
    return None


def list_builtin_extractors() -> list[ExtractorInfo]:
    """Info of every built-in extractor (loads each one, which verifies its model file)."""
    return [_builtin(name).info for name in BUILTIN_EXTRACTORS]
