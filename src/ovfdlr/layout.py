"""Where everything lies in a run folder, an arm folder and a bundle: every path stated once.

A run folder (``ovfdlr run``, see docs/architecture.md)::

    RUN/
      config.yaml  run.json  run.log  errors.csv  manifest_problems.csv  .stage-keys.json
      .run.lock                            held by the process writing the folder
      tables/<name>.csv                    cohort_classes, cohort_centres, ..., comparison
      figures/inputs-NNN.png
      features/<name>.parquet              radiomics, morphometry, deep-<arm> (+ deep-<arm>.json)
      features/finetuned-<arm>.safetensors, finetuned-<arm>.curve.csv, pca-<arm>.npz,
               gradcam-<arm>/
      arms/<arm>/                          :class:`ArmLayout`
      bundles/<arm>/                       :class:`BundleLayout`
      report.html

Paths recorded inside the files (``run.json``'s arm folders, ``bundle.json``'s file names) are
relative, so a run folder or a bundle can be moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ArmLayout:
    """One arm's folder (``arms/<arm>/`` of a run, or the folder ``ovfdlr train`` writes)."""

    folder: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    @property
    def arm_json(self) -> Path:
        return self.folder / "arm.json"

    @property
    def selection_json(self) -> Path:
        return self.folder / "selection.json"

    @property
    def models(self) -> Path:
        return self.folder / "models"

    def model(self, key: str) -> Path:
        """The fitted model of classifier ``key`` (``models/<key>.skops``)."""
        return self.models / f"{key}.skops"

    @property
    def predictions(self) -> Path:
        return self.folder / "predictions.parquet"

    @property
    def shap_values(self) -> Path:
        return self.folder / "shap_values.parquet"

    @property
    def tables(self) -> Path:
        return self.folder / "tables"

    def table(self, name: str) -> Path:
        """``tables/<name>.csv``."""
        return self.tables / f"{name}.csv"

    @property
    def figures(self) -> Path:
        return self.folder / "figures"

    def figure(self, stem: str) -> Path:
        """``figures/<stem>`` without a suffix (figures are saved as PNG and SVG)."""
        return self.figures / stem


@dataclass(frozen=True)
class BundleLayout:
    """One bundle's folder (``bundles/<arm>/``). ``bundle.json`` names the other files by
    these names (relative to the folder)."""

    folder: Path

    BUNDLE_JSON = "bundle.json"
    MODEL = "model.skops"
    BACKGROUND = "background.parquet"
    RADIOMICS_PARAMS = "radiomics.yaml"
    PCA = "pca.npz"
    FINETUNED = "finetuned.safetensors"

    def __post_init__(self) -> None:
        object.__setattr__(self, "folder", Path(self.folder))

    def file(self, name: str) -> Path:
        """A file of the bundle by the name ``bundle.json`` records."""
        return self.folder / name

    @property
    def bundle_json(self) -> Path:
        return self.folder / self.BUNDLE_JSON

    @property
    def model(self) -> Path:
        return self.folder / self.MODEL

    @property
    def background(self) -> Path:
        return self.folder / self.BACKGROUND

    @property
    def radiomics_params(self) -> Path:
        return self.folder / self.RADIOMICS_PARAMS

    @property
    def pca(self) -> Path:
        return self.folder / self.PCA

    @property
    def finetuned(self) -> Path:
        return self.folder / self.FINETUNED


@dataclass(frozen=True)
class RunLayout:
    """A run folder (``ovfdlr run --out ROOT``)."""

    root: Path

    ARMS = "arms"
    BUNDLES = "bundles"

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    def relative(self, path: Path) -> str:
        """``path`` relative to the run folder, with forward slashes (as files record it)."""
        return Path(path).relative_to(self.root).as_posix()

    # -- the top of the folder -----------------------------------------------------------------

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def run_json(self) -> Path:
        return self.root / "run.json"

    @property
    def run_log(self) -> Path:
        return self.root / "run.log"

    @property
    def errors_csv(self) -> Path:
        return self.root / "errors.csv"

    @property
    def manifest_problems(self) -> Path:
        return self.root / "manifest_problems.csv"

    @property
    def keys_file(self) -> Path:
        """The stage keys (``.stage-keys.json``), written atomically after each stage."""
        return self.root / ".stage-keys.json"

    @property
    def lock_file(self) -> Path:
        """``.run.lock``: locked (``flock``) by the process writing the folder, and naming it
        (host, pid, start) for another that finds it busy (:mod:`ovfdlr.runlock`)."""
        return self.root / ".run.lock"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    # -- tables and figures --------------------------------------------------------------------

    @property
    def tables(self) -> Path:
        return self.root / "tables"

    def table(self, name: str) -> Path:
        """``tables/<name>.csv`` (cohort_classes, cohort_centres, cohort_demographics,
        comparison)."""
        return self.tables / f"{name}.csv"

    @property
    def comparison(self) -> Path:
        return self.table("comparison")

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    def input_sheet(self, number: int) -> Path:
        """The ``number``-th contact sheet of the 2-D inputs (``figures/inputs-NNN.png``)."""
        return self.figures / f"inputs-{number:03d}.png"

    def figure(self, stem: str) -> Path:
        """``figures/<stem>`` without a suffix."""
        return self.figures / stem

    @property
    def report_tables(self) -> Path:
        """``tables/report/``: the tables the report derives from the run's files (the first
        screen, hyper-parameters, sample size, checklists, timings), written when it is built."""
        return self.tables / "report"

    def report_table(self, name: str) -> Path:
        """``tables/report/<name>.csv``."""
        return self.report_tables / f"{name}.csv"

    @property
    def report_figures(self) -> Path:
        """``figures/report/``: the figures the report draws itself (the forest plot)."""
        return self.figures / "report"

    # -- features ------------------------------------------------------------------------------

    @property
    def features(self) -> Path:
        return self.root / "features"

    def feature_table(self, name: str) -> Path:
        """``features/<name>.parquet`` (radiomics, morphometry, deep-<arm>)."""
        return self.features / f"{name}.parquet"

    def deep_table(self, arm: str) -> Path:
        return self.feature_table(f"deep-{arm}")

    def deep_label(self, arm: str) -> Path:
        """What an arm's network was (weights, label, pretrained, finetuned):
        ``features/deep-<arm>.json``."""
        return self.deep_table(arm).with_suffix(".json")

    def finetuned(self, arm: str) -> Path:
        return self.features / f"finetuned-{arm}.safetensors"

    def finetune_curve(self, arm: str) -> Path:
        return self.features / f"finetuned-{arm}.curve.csv"

    def pca(self, arm: str) -> Path:
        return self.features / f"pca-{arm}.npz"

    def gradcam(self, arm: str) -> Path:
        """The folder of an arm's Grad-CAM overlays."""
        return self.features / f"gradcam-{arm}"

    # -- arms and bundles ----------------------------------------------------------------------

    @property
    def arms(self) -> Path:
        return self.root / self.ARMS

    def arm_folder(self, arm: str) -> str:
        """An arm's folder relative to the run (``arms/<arm>``), as ``run.json`` records it."""
        return f"{self.ARMS}/{arm}"

    def arm(self, arm: str, folder: str | None = None) -> ArmLayout:
        """An arm's folder; ``folder`` is the relative folder ``run.json`` records, when given."""
        return ArmLayout(self.root / (folder or self.arm_folder(arm)))

    @property
    def bundles(self) -> Path:
        return self.root / self.BUNDLES

    def bundle(self, arm: str) -> BundleLayout:
        return BundleLayout(self.bundles / arm)


__all__ = ["ArmLayout", "BundleLayout", "RunLayout"]
