"""Method registry: name -> class. Adding a method = one file here + one entry below.

Entries are "module:Class" strings resolved on first use, so a broken or slow method file
never affects the others. Controls (``methods.base.control``: a method with one mechanism
switched off, e.g. ``bads_prior_only``) are registered like any method, next to theirs.

Methods from outside this repository, without editing it:

- a ``module:Class`` name (``my_package.my_module:MyMethod``) anywhere a method name is taken
  is imported from any importable module; the name itself is the method's name in results;
- another installed package declares Python entry points in the group ``dps_bench.methods``
  (``mine = "my_package.my_module:MyMethod"`` under ``[project.entry-points."dps_bench.methods"]``
  in its pyproject.toml): they are listed after the built-in methods. A built-in name wins over
  an entry point of the same name (:func:`shadowed_entry_points` names them).
"""

from __future__ import annotations

import functools
import re
from importlib import import_module, metadata

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
    "online_batch": "methods.online_batch:OnlineBatch",
    "online_batch_uniform": "methods.online_batch:OnlineBatchUniform",
}


ENTRY_POINT_GROUP = "dps_bench.methods"
_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")  # module.path:Class


class UnknownMethodError(KeyError):
    """Raised for a name that is not in the registry."""

    def __str__(self) -> str:
        return str(self.args[0])


@functools.cache
def _entry_points() -> tuple[tuple[str, str], ...]:
    """(name, "module:Class") of every installed entry point in ENTRY_POINT_GROUP."""
    found = metadata.entry_points(group=ENTRY_POINT_GROUP)
    return tuple(sorted((ep.name, ep.value.replace(" ", "")) for ep in found))


def rediscover() -> None:
    """Read the installed entry points again (after a package was installed in this process)."""
    _entry_points.cache_clear()


def entry_point_methods() -> dict[str, str]:
    """name -> "module:Class" of the methods other installed packages register, without those
    whose name a built-in method has (see :func:`shadowed_entry_points`)."""
    return {n: t for n, t in _entry_points() if n not in REGISTRY}


def shadowed_entry_points() -> dict[str, str]:
    """Entry points that are not used because a built-in method has their name."""
    return {n: t for n, t in _entry_points() if n in REGISTRY}


def all_targets() -> dict[str, str]:
    """name -> "module:Class" of every registered method: built-in, then entry points."""
    return {**REGISTRY, **entry_point_methods()}


def list_methods() -> list[str]:
    """Registered method names: the built-in ones in registry order, then those of installed
    packages' entry points (by name). ``module:Class`` names are not listed (they are not
    registered; any importable one runs)."""
    return list(all_targets())


def controls_of(name: str) -> list[str]:
    """The registered controls of method ``name`` (methods whose ``control_of`` is ``name``).
    A method file that fails to import is passed over here (it fails when it is run)."""
    found = []
    for m in list_methods():
        if m == name:
            continue
        try:
            if get_method(m).control_of == name:
                found.append(m)
        except Exception:  # noqa: BLE001 (one broken method file must not break the others)
            continue
    return found


def is_external(name: str) -> bool:
    """Whether ``name`` is a ``module:Class`` path rather than a registered name."""
    return ":" in name


def get_method(name: str) -> type[Method]:
    """The method class registered under ``name`` (built-in or entry point), or the class a
    ``module:Class`` name points to.

    Raises UnknownMethodError for an unknown name, a module that cannot be imported, a missing
    class, or an object that is not a Method subclass, each with what to do about it."""
    targets = all_targets()
    if name in targets:
        target = targets[name]
    elif is_external(name):
        target = name
    else:
        module, _, attr = name.rpartition(".")
        hint = f"; did you mean {module}:{attr}?" if module and attr[:1].isupper() else ""
        raise UnknownMethodError(
            f"unknown method {name!r}{hint}; available: {', '.join(targets)} (or a method class "
            "from any importable module as module.path:ClassName)")
    if not _TARGET.match(target):
        raise UnknownMethodError(f"method {name!r}: {target!r} is not of the form "
                                 "module.path:ClassName")
    module_name, attr = target.split(":")
    try:
        module = import_module(module_name)
    except ImportError as e:
        raise UnknownMethodError(
            f"method {name!r}: cannot import module {module_name!r} ({e}); install its package "
            "or put its folder on PYTHONPATH") from None
    except Exception as e:  # noqa: BLE001 (a user's module: a SyntaxError, an error at import)
        raise UnknownMethodError(f"method {name!r}: importing {module_name!r} failed: "
                                 f"{type(e).__name__}: {e}") from None
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise UnknownMethodError(f"method {name!r}: module {module_name!r} has no "
                                     f"{attr!r}")
    if not (isinstance(obj, type) and issubclass(obj, Method)):
        raise UnknownMethodError(f"method {name!r}: {target} is {obj!r}, not a subclass of "
                                 "methods.Method")
    return obj


__all__ = [
    "MODEL_LR", "Batch", "Choice", "Context", "LogUniform", "Method", "NonFiniteError", "Pool",
    "ENTRY_POINT_GROUP", "REGISTRY", "UnknownMethodError",
    "all_targets", "control", "controls_of", "entry_point_methods", "get_method", "hparam_fields",
    "is_external", "list_methods", "rediscover", "shadowed_entry_points",
]
