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
import importlib.util
import sys
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
        sys.modules[name] = stand_in


def load(name: str) -> ModuleType:
    """The module ``name``, imported now if it was deferred."""
    module = importlib.import_module(name)
    if isinstance(module, _Deferred):
        return module._load()
    return module


__all__ = ["COMPANIONS", "DEFERRED", "defer", "load"]
