"""``ovfdlr demo``: the synthetic cohort and the full experiment on it, in one command.

Two arms, as in the paper's design but on what can run anywhere: ``radiomics`` (radiomics and
morphometry alone) and ``deep`` (the same fused with ResNet-50 features). The deep arm uses
torchvision's ImageNet weights when they are in torchvision's cache on this machine; otherwise a
seeded untrained ResNet-50, and the console, ``run.json`` and the report say plainly that the
deep features are untrained.

The default cohort (:func:`demo_sizes`): 68 training and 17 internal vertebrae at the
population's class mix, and :data:`PER_CLASS` vertebrae of every class in the external and in
the prospective cohort, so every cohort has a confidence interval and a test for every class.
The training cohort's size keeps the demo near seven and a half minutes on two cores (nested
cross-validation, three outer folds, is most of it); the validation cohorts cost only their
feature extraction.
"""

from __future__ import annotations

from pathlib import Path

import yaml

#: The training and internal cohorts of the demo (the population's class mix).
DEMO_TRAINING = {"train": 68, "internal": 17}
#: The demo's cohorts drawn with an equal number of cases of every class, and that number.
DEMO_STRATIFIED = ("external", "prospective")
PER_CLASS = 8


def demo_sizes(labels: str = "astlof") -> dict[str, int]:
    """Cases per cohort of the default demo under a synthetic label scheme."""
    from ovfdlr.synthetic.design import SCHEME_CLASSES

    per_cohort = PER_CLASS * len(SCHEME_CLASSES[labels])
    return {**DEMO_TRAINING, **dict.fromkeys(DEMO_STRATIFIED, per_cohort)}


def demo_weights() -> tuple[str, bool]:
    """``imagenet`` when torchvision's cached weights are here, else ``random:0``."""
    from ovfdlr.deep.specs import imagenet_cache_file

    return ("imagenet", True) if imagenet_cache_file() is not None else ("random:0", False)


def demo_config(
    cohort_manifest: Path,
    *,
    seed: int = 0,
    jobs: int = 0,
    labels: str = "astlof",
    nested_cv: bool = True,
) -> dict:
    """The demo experiment as a config mapping (written as ``experiment.yaml``); ``labels`` is
    the synthetic cohort's label scheme (:func:`ovfdlr.synthetic.design.synthetic_labels`);
    ``nested_cv=False`` switches nested cross-validation off."""
    from ovfdlr.synthetic.design import synthetic_label_config

    weights, _ = demo_weights()
    return {
        "name": "ovfdlr demo: synthetic multi-centre vertebral CT",
        "manifest": str(cohort_manifest),
        "labels": synthetic_label_config(labels),
        "arms": [
            {"name": "radiomics", "radiomics": True, "morphometry": True},
            {"name": "deep", "radiomics": True, "morphometry": True, "deep": {"weights": weights}},
        ],
        "compare": [["deep", "radiomics"]],
        # nested cross-validation with 3 outer folds: each outer fold is a whole fit
        "evaluation": {"nested_folds": 3} if nested_cv else {"nested_cv": False},
        "seed": seed,
        "jobs": jobs,
    }


def write_demo_config(
    folder: Path,
    cohort_manifest: Path,
    *,
    seed: int = 0,
    jobs: int = 0,
    labels: str = "astlof",
    nested_cv: bool = True,
) -> Path:
    path = folder / "experiment.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = demo_config(
        cohort_manifest.resolve(), seed=seed, jobs=jobs, labels=labels, nested_cv=nested_cv
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
