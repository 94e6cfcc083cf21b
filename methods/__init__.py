"""Method registry: name -> class. Adding a method = one file here + one entry below.

Entries are "module:Class" strings resolved on first use, so a broken or slow method file
never affects the others. Controls (``methods.base.control``: a method with one mechanism
switched off, e.g. ``bads_prior_only``) are registered like any method, next to theirs.
"""

from __future__ import annotations

from importlib import import_module

from .base import Batch, Context, Method, NonFiniteError, Pool, control, hparam_fields
from .search import MODEL_LR, Choice, LogUniform

REGISTRY: dict[str, str] = {
    "train_only": "methods.train_only:TrainOnly",
    "mixing": "methods.mixing:Mixing",
    "meta_only": "methods.meta_only:MetaOnly",
    "dup_meta": "methods.dup_meta:DupMeta",
    "random_select": "methods.random_select:RandomSelect",
    "bads": "methods.bads:BADS",
    "bads_prior_only": "methods.bads:BADSPriorOnly",
    "bads_frozen": "methods.bads:BADSFrozen",
    "blo": "methods.blo:BLO",
    "blo_frozen": "methods.blo:BLOFrozen",
    "l2rw": "methods.l2rw:L2RW",
    "mwn": "methods.mwn:MWN",
    "cds": "methods.cds:CDS",
    "classact": "methods.classact:ClassAct",
    "askllm_o": "methods.askllm_o:AskLLMOnline",
}


class UnknownMethodError(KeyError):
    """Raised for a name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


def list_methods() -> list[str]:
    """Registered method names, in registry order."""
    return list(REGISTRY)


def controls_of(name: str) -> list[str]:
    """The registered controls of method ``name`` (methods whose ``control_of`` is ``name``).
    A method file that fails to import is passed over here (it fails when it is run)."""
    found = []
    for m in REGISTRY:
        if m == name:
            continue
        try:
            if get_method(m).control_of == name:
                found.append(m)
        except Exception:  # noqa: BLE001 (one broken method file must not break the others)
            continue
    return found


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name``."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise UnknownMethodError(
            f"unknown method {name!r}; available: {', '.join(REGISTRY)}"
        ) from None
    module, cls = target.split(":")
    return getattr(import_module(module), cls)


__all__ = [
    "MODEL_LR", "Batch", "Choice", "Context", "LogUniform", "Method", "NonFiniteError", "Pool",
    "REGISTRY", "UnknownMethodError",
    "control", "controls_of", "get_method", "hparam_fields", "list_methods",
]
