"""Libraries that load only when first used, so that processes that never use them do not
carry them.

rio-tiler imports xarray and rioxarray when they are installed (``rio_tiler.io`` brings in its
``XarrayReader``), and xarray brings pandas and pyarrow: about 105 MB in every API worker
(create_app's process: 230 MB without them, 335 MB with them), paid by deployments that serve
no datacube. ``defer`` puts a stand-in module in their place: an ``import`` of it binds the
name; the first attribute read that is not the import system's own (``__spec__``...) imports
the real module, which then replaces the stand-in in ``sys.modules`` and lends it its names.

Not ``importlib.util.LazyLoader``: on Python 3.12 a second ``import`` of a lazy module reads
its ``__spec__``, which runs it, so rio-tiler's own ``import xarray`` loaded it at once.

rioxarray registers xarray's ``.rio`` accessor when it runs, so it runs with xarray
(``COMPANIONS``): a module's ``import rioxarray`` binds the stand-in without running it, and
the accessor must be there once any xarray object is.
"""

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

DEFERRED = ("xarray", "rioxarray")
COMPANIONS = {"xarray": ("rioxarray",)}


class _Deferred(ModuleType):
    """Stands in for a module not imported yet; imports it on the first attribute read."""

    def __getattr__(self, attr: str) -> Any:
        # Only called for names the stand-in lacks: its own dunders are plain attributes.
        return getattr(self._load(), attr)

    def _load(self) -> ModuleType:
        name = self.__name__
        if sys.modules.get(name) is self:
            del sys.modules[name]
        try:
            real = importlib.import_module(name)
        except BaseException:
            sys.modules.setdefault(name, self)
            raise
        self.__dict__.update({k: v for k, v in vars(real).items() if k != "__class__"})
        for companion in COMPANIONS.get(name, ()):
            if importlib.util.find_spec(companion) is not None:
                load(companion)
        return real


class _Loaded(importlib.abc.Loader):
    """Hands the import system a module that loading its package already made."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return self.module

    def exec_module(self, module: ModuleType) -> None:
        return None


class _SubmoduleFinder(importlib.abc.MetaPathFinder):
    """``import pkg.sub`` of a deferred ``pkg``: load ``pkg`` first, so ``pkg.sub`` is run once
    (by the package, as it would be without the stand-in), not a second time beside it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        parent = fullname.partition(".")[0]
        stand_in = sys.modules.get(parent)
        if parent == fullname or not isinstance(stand_in, _Deferred):
            return None
        stand_in._load()
        done = sys.modules.get(fullname)
        if done is None:
            return None  # the package did not import it: the usual finders will
        # The import system answers a module that appeared meanwhile with its own __spec__,
        # and would run that again: this spec's loader hands back the module as it is.
        real = done.__spec__
        spec = importlib.machinery.ModuleSpec(
            fullname, _Loaded(done), origin=real.origin if real is not None else None,
            is_package=bool(real is not None and real.submodule_search_locations is not None),
        )  # fmt: skip
        if real is not None and real.submodule_search_locations is not None:
            spec.submodule_search_locations = real.submodule_search_locations
        done.__spec__ = None
        return spec


_FINDER = _SubmoduleFinder()


def defer(*names: str) -> None:
    """Make ``names`` (default ``DEFERRED``) load on first use, unless already imported or
    not installed."""
    for name in names or DEFERRED:
        if name in sys.modules:
            continue
        spec = importlib.util.find_spec(name)
        if spec is None:
            continue
        stand_in = _Deferred(name)
        stand_in.__spec__ = spec
        stand_in.__file__ = spec.origin
        if spec.submodule_search_locations is not None:
            # A submodule import reads the package's __path__ before any finder runs.
            stand_in.__path__ = list(spec.submodule_search_locations)
        sys.modules[name] = stand_in
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)


def load(name: str) -> ModuleType:
    """The module ``name``, imported now if it was deferred."""
    module = importlib.import_module(name)
    if isinstance(module, _Deferred):
        return module._load()
    return module


__all__ = ["COMPANIONS", "DEFERRED", "defer", "load"]
