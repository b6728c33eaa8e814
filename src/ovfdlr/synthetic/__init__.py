"""The synthetic multi-centre vertebral CT cohort: ovfdlr's embedded default data set.

Each case is a CT crop (int16 HU, LPS) around one thoracolumbar vertebral body with its discs and
neighbours, plus the binary vertebral-body mask, rendered from a millimetre body model with
partial volume onto the voxel grid of one of three centres' scanners. Latent ASTLOF items
(morphology, MRI signal, density, pain) drive the anatomy and give the label; ``truth.csv``
keeps them with the geometry. See ``docs/synthetic.md``.

>>> from ovfdlr.synthetic import generate_cohort
>>> manifest = generate_cohort("data/synthetic", n=200, seed=0)  # doctest: +SKIP
"""

from .cohort import GENERATOR_VERSION, MANIFEST_COLUMNS, TRUTH_COLUMNS, generate_cohort
from .population import DEFAULT_N, LEVELS, PAPER_SCALE, sample_population, split_counts
from .render import RenderedCase, case_grid, render_case
from .scanner import CENTRES, FOV_MM, Centre, Grid

__all__ = [
    "CENTRES",
    "DEFAULT_N",
    "FOV_MM",
    "GENERATOR_VERSION",
    "LEVELS",
    "MANIFEST_COLUMNS",
    "PAPER_SCALE",
    "TRUTH_COLUMNS",
    "Centre",
    "Grid",
    "RenderedCase",
    "case_grid",
    "generate_cohort",
    "render_case",
    "sample_population",
    "split_counts",
]
