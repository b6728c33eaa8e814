"""``ovfdlr demo``: the synthetic cohort and the full experiment on it, in one command.

Two arms, as in the paper's design but on what can run anywhere: ``radiomics`` (radiomics and
morphometry alone) and ``deep`` (the same fused with ResNet-50 features). The deep arm uses
torchvision's ImageNet weights when they are in torchvision's cache on this machine; otherwise a
seeded untrained ResNet-50, and the console, ``run.json`` and the report say plainly that the
deep features are untrained. The default size keeps the demo within about eight minutes on two
cores (nested cross-validation, three outer folds, is most of it).
"""

from __future__ import annotations

from pathlib import Path

import yaml

DEFAULT_N = 100


def demo_weights() -> tuple[str, bool]:
    """``imagenet`` when torchvision's cached weights are here, else ``random:0``."""
    from ovfdlr.deep.backbones import imagenet_cache_file

    return ("imagenet", True) if imagenet_cache_file() is not None else ("random:0", False)


def demo_config(
    cohort_manifest: Path, *, seed: int = 0, jobs: int = 0, labels: str = "astlof"
) -> dict:
    """The demo experiment as a config mapping (written as ``experiment.yaml``); ``labels`` is
    the synthetic cohort's label scheme (:func:`ovfdlr.synthetic.cohort.synthetic_labels`)."""
    from ovfdlr.synthetic.cohort import synthetic_label_config

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
        "evaluation": {"nested_folds": 3},
        "seed": seed,
        "jobs": jobs,
    }


def write_demo_config(
    folder: Path, cohort_manifest: Path, *, seed: int = 0, jobs: int = 0, labels: str = "astlof"
) -> Path:
    path = folder / "experiment.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = demo_config(cohort_manifest.resolve(), seed=seed, jobs=jobs, labels=labels)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path
