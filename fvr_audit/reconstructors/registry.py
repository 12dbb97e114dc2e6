"""One entry point for reconstructors: ``get_reconstructor("eigenfaces")``.

>>> sorted(RECONSTRUCTORS)
['eigenfaces', 'gradient', 'naive', 'nbnet', 'vec2face']
"""

from __future__ import annotations

import importlib

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
}


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


def get_reconstructor(name: str, **settings) -> Reconstructor:
    """Create a reconstructor by name, with method-specific settings (iterations, budget, ...)."""
    if name not in RECONSTRUCTORS:
        raise InputError(f"{name}: unknown reconstruction method; known: {', '.join(RECONSTRUCTORS)}")
    factory = _factory(name)
    if factory is None:
        available = ", ".join(available_reconstructors()) or "none"
        raise InputError(f"{name}: not installed in this version (available: {available})")
    return factory(**settings)
