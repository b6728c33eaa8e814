"""Saving and loading fitted models as skops files, trusting only the types ovfdlr writes.

skops (https://skops.readthedocs.io) stores a model without pickle's arbitrary code execution;
on loading, every type that is not a plain scikit-learn / numpy building block must be trusted
explicitly. ovfdlr trusts exactly the types its own models contain (:data:`TRUSTED_TYPES`); a
file holding anything else (tampered, or made by another program) is refused with the names of
the unexpected types.
"""

from __future__ import annotations

import importlib.abc
import sys
from pathlib import Path

from ovfdlr.classifiers import REGISTRY

# ovfdlr's own building blocks, then each classifier's types (stated in its registry entry)
TRUSTED_TYPES = tuple(
    dict.fromkeys(
        (
            "collections.OrderedDict",
            "numpy.dtype",
            "ovfdlr.selection.VarianceFilter",
            "ovfdlr.selection.UnivariateFilter",
            "ovfdlr.selection.CorrelationFilter",
            "ovfdlr.selection.LassoSelector",
            *(t for info in REGISTRY.values() for t in info.trusted_types),
        )
    )
)


class ModelFileError(ValueError):
    """A model file that is missing, unreadable, or holds types ovfdlr does not trust."""


# Array libraries that scikit-learn's vendored array-API layer wraps. Importing skops.io lists
# every scikit-learn estimator by walking sklearn's packages, and that walk imports the wrapper
# package of each of these libraries that is installed: torch and dask alone add ~2 s to every
# ``ovfdlr predict``, for nothing (no estimator lives there). During that one import they look
# uninstalled; sys.modules is left alone, so nothing sees a half-imported library.
_ARRAY_LIBRARIES = frozenset({"torch", "dask", "cupy", "jax", "sparse", "ndonnx"})


class _HideModules(importlib.abc.MetaPathFinder):
    """A finder that answers 'not installed' for a set of top-level packages."""

    def __init__(self, names: frozenset[str]):
        self.names = names

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _import_skops_io():
    """``skops.io``, imported without dragging in the array libraries above."""
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import sklearn.base  # noqa: F401  (scikit-learn itself is imported as usual)

    hide = _HideModules(frozenset(n for n in _ARRAY_LIBRARIES if n not in sys.modules))
    sys.meta_path.insert(0, hide)
    try:
        import skops.io
    finally:
        sys.meta_path.remove(hide)
    return skops.io


def save_model(model, path: str | Path) -> Path:
    """Write a fitted model as a skops file."""
    skops_io = _import_skops_io()

    from ovfdlr.atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as temporary:  # a file that exists is complete
        skops_io.dump(model, temporary)
    return path


def load_model(path: str | Path):
    """Load a skops model file written by ovfdlr, refusing any type outside TRUSTED_TYPES."""
    skops_io = _import_skops_io()
    from skops.io.exceptions import UntrustedTypesFoundException

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: model file not found")
    try:
        return skops_io.load(path, trusted=list(TRUSTED_TYPES))
    except UntrustedTypesFoundException:
        foreign = sorted(set(skops_io.get_untrusted_types(file=path)) - set(TRUSTED_TYPES))
        raise ModelFileError(
            f"{path}: refused: the file holds types ovfdlr does not trust: {', '.join(foreign)}"
        ) from None
    except Exception as exc:  # not a zip, not a skops schema, or a broken object tree
        raise ModelFileError(f"{path}: not a readable skops model file ({exc})") from exc
