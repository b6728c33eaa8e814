"""ovfdlr: deep learning radiomics for osteoporotic vertebral fractures on CT.

Builds, validates and deploys models that grade a fractured vertebra into the three ASTLOF
classes (0: conservative care, 1: either, 2: surgery) from PyRadiomics-compatible radiomics,
vertebral morphometry and ResNet-50 transfer-learning features.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ovfdlr")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
