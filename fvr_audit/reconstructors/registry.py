"""One entry point for reconstructors: ``get_reconstructor("eigenfaces")``.

>>> sorted(RECONSTRUCTORS)
['eigenfaces', 'gradient', 'naive', 'nbnet', 'refine', 'transfer', 'vec2face']
"""

from __future__ import annotations

import importlib
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fvr_audit.errors import InputError
from fvr_audit.reconstructors.base import Reconstructor

#: name -> "module:factory"; a factory takes keyword settings and returns a Reconstructor.
#: A module that does not exist yet marks a method not installed in this version.
RECONSTRUCTORS: dict[str, str] = {
    "eigenfaces": "fvr_audit.reconstructors.eigenfaces:create_eigenfaces",
    "gradient": "fvr_audit.reconstructors.gradient:create_gradient",
    "nbnet": "fvr_audit.reconstructors.parametric:create_nbnet",
    "vec2face": "fvr_audit.reconstructors.parametric:create_vec2face",
    "naive": "fvr_audit.reconstructors.parametric:create_naive",
    "transfer": "fvr_audit.reconstructors.transfer:create_transfer",
    "refine": "fvr_audit.reconstructors.refine:create_refine",
}

#: The trained (parametric) methods: a generator per extractor, or the shipped ones through an adapter.
PARAMETRIC_METHODS: tuple[str, ...] = ("nbnet", "vec2face", "naive")

#: Method -> the parametric method whose generator it draws from (``--models`` folders, tuning to F):
#: each parametric method its own, and ``refine``, whose search starts from the naive generator's face.
GENERATOR_OF: dict[str, str] = {**{m: m for m in PARAMETRIC_METHODS}, "refine": "naive"}

#: The methods that draw from a trained generator.
GENERATOR_METHODS: tuple[str, ...] = tuple(GENERATOR_OF)

#: The methods that reach an F without a generator (or gradients) of its own through the
#: calibration adapter into dlib-resnet128's space: those with a generator, and ``transfer``.
ADAPTED_METHODS: tuple[str, ...] = (*GENERATOR_METHODS, "transfer")

#: The methods that spend queries to F per target in a search (a ``query_budget`` setting each):
#: ``--query-budget`` shares what the scan has left between them.
SEARCH_METHODS: tuple[str, ...] = ("eigenfaces", "refine")


#: name -> "module:SettingsDataclass" of the methods whose settings ``scan --set`` may change. The
#: trained methods have none (their models come from --models, their adapter from --calibration).
SETTINGS: dict[str, str] = {
    "eigenfaces": "fvr_audit.reconstructors.eigenfaces:EigenfacesSettings",
    "gradient": "fvr_audit.reconstructors.gradient:GradientSettings",
    "transfer": "fvr_audit.reconstructors.gradient:GradientSettings",
    "refine": "fvr_audit.reconstructors.refine:RefineSettings",
}


def _accepts(hint: object, value: object) -> bool:
    """Whether ``value`` (from --set: bool, int, float or str) fits the type ``hint``."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return any(_accepts(arg, value) for arg in typing.get_args(hint))
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return False  # tuples and the like cannot be written as one --set value


def check_method_settings(method_settings: Mapping[str, Mapping[str, object]], methods: Sequence[str] | None) -> None:
    """``--set METHOD.NAME=VALUE``: the method exists and runs, it takes NAME, and VALUE has its type.

    >>> check_method_settings({"eigenfaces": {"iterations": 20, "preset": "fast"}}, None)
    >>> check_method_settings({"eigenfaces": {"iterations": "abc"}}, None)
    Traceback (most recent call last):
    fvr_audit.errors.InputError: --set eigenfaces.iterations='abc': expected int
    >>> check_method_settings({"bogus": {"x": 1}}, None)
    Traceback (most recent call last):
    fvr_audit.errors.InputError: --set bogus.x: bogus is not a reconstruction method; known: eigenfaces, gradient, naive, nbnet, refine, transfer, vec2face
    """
    for method, values in method_settings.items():
        first = next(iter(values), "")
        if method not in RECONSTRUCTORS:
            raise InputError(
                f"--set {method}.{first}: {method} is not a reconstruction method; known: {', '.join(sorted(RECONSTRUCTORS))}"
            )
        if methods is not None and method not in methods:
            raise InputError(f"--set {method}.{first}: {method} is not among --methods {','.join(methods) or '(none)'}")
        if method not in SETTINGS:
            raise InputError(f"--set {method}.{first}: {method} has no settings to set (a trained model; see --models)")
        module_name, _, attr = SETTINGS[method].partition(":")
        hints = typing.get_type_hints(getattr(importlib.import_module(module_name), attr))
        for name, value in values.items():
            if name == "preset":
                hints_for = str
            elif name in hints:
                hints_for = hints[name]
            else:
                known = ", ".join(sorted(["preset", *hints]))
                raise InputError(f"--set {method}.{name}: unknown setting; {method} takes: {known}")
            if not _accepts(hints_for, value):
                expected = getattr(hints_for, "__name__", None) or str(hints_for).replace("NoneType", "None")
                raise InputError(f"--set {method}.{name}={value!r}: expected {expected}")


def _factory(name: str):
    module_name, _, attr = RECONSTRUCTORS[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            return None
        raise
    return getattr(module, attr, None)


def available_reconstructors() -> list[str]:
    """Names of the reconstructors installed in this version, in registry order."""
    return [name for name in RECONSTRUCTORS if _factory(name) is not None]


@dataclass(frozen=True)
class ReconstructorSpec:
    """How to make an attack again in another process: its name and the settings
    :func:`get_reconstructor` was given, as plain values (an adapter as its .npz bytes).

    >>> spec = ReconstructorSpec.of("gradient", {"iterations": 3})
    >>> spec.build().settings.iterations, spec == ReconstructorSpec.of("gradient", {"iterations": 3})
    (3, True)
    """

    name: str
    #: (setting, value) pairs, sorted by setting: hashable, so a worker can key its cache by them.
    settings: tuple[tuple[str, object], ...] = ()
    #: A parametric attack's adapter (``RidgeAdapter.to_bytes``), never the live object.
    adapter: bytes | None = None

    @classmethod
    def of(cls, name: str, settings: Mapping[str, object]) -> ReconstructorSpec:
        plain = dict(settings)
        adapter = plain.pop("adapter", None)
        items = tuple(sorted((key, tuple(v) if isinstance(v, list) else v) for key, v in plain.items()))
        return cls(name, items, None if adapter is None else adapter.to_bytes())

    def build(self) -> Reconstructor:
        settings = dict(self.settings)
        if self.adapter is not None:
            from fvr_audit.reconstructors.parametric.adapter import RidgeAdapter

            settings["adapter"] = RidgeAdapter.from_bytes(self.adapter)
        return get_reconstructor(self.name, **settings)


def get_reconstructor(name: str, **settings) -> Reconstructor:
    """Create a reconstructor by name, with method-specific settings (iterations, budget, ...)."""
    if name not in RECONSTRUCTORS:
        raise InputError(f"{name}: unknown reconstruction method; known: {', '.join(RECONSTRUCTORS)}")
    factory = _factory(name)
    if factory is None:
        available = ", ".join(available_reconstructors()) or "none"
        raise InputError(f"{name}: not installed in this version (available: {available})")
    reconstructor = factory(**settings)
    reconstructor.origin = ReconstructorSpec.of(name, settings)
    return reconstructor
