"""The experiment configuration (YAML), validated by pydantic with errors that name the key.

```yaml
name: OVF deep learning radiomics
manifest: cohort/manifest.csv          # relative paths are relative to this file
radiomics:
  params: null                         # a PyRadiomics parameter file; default ct-vertebra.yaml
  engine: native                       # native (default) | pyradiomics | ibsi (optional extras)
labels: astlof                         # astlof | genant | binary | {scheme: custom, classes: ...}
arms:                                  # each arm is a named feature set and its own models
  - name: radimagenet
    radiomics: true                    # the radiomics table
    morphometry: true                  # the morphometry table
    deep:                              # ResNet-50 features (omit for none)
      weights: radimagenet:weights/RadImageNet-ResNet50_notop.h5
      plane: sagittal                  # sagittal | axial | coronal | max-area | 2.5d
      margin: 0.2
      window_level: 400
      window_width: 1800
      pca: null                        # k components fitted on training, or null
      finetune_epochs: 0
      device: auto                     # auto (CUDA when present) | cpu | cuda
      mixed_precision: false           # autocast inference (float16 CUDA, bfloat16 CPU)
  - name: imagenet
    deep: {weights: imagenet}
cohorts:
  training: train
  internal: internal
selection: {univariate_test: kruskal, alpha: 0.05, correlation_threshold: 0.9}
models: {classifiers: [lr, svm, knn, rf, et, xgb, lgbm, mlp], folds: 5, select_on: cv}
compare: [[radimagenet, imagenet]]     # pairs of arms to test; default: every pair
evaluation:
  nested_cv: null                      # null: on for arms without fine-tuning; true | false
  nested_folds: null                   # outer folds (default: models.folds)
  macro_variance: unconditional        # unconditional | conditional (on the class counts)
  compare_training_cv: false           # also compare on train (cv), labelled post-selection
  primary: {arms: null, cohorts: null} # default: first pair; external + prospective, Holm
  anticipated_c: 0.8                   # pairwise C-statistic behind the report's sample size
seed: 0
jobs: 0                                # worker processes (0: all cores)
scheduler: null                        # a Dask scheduler address for the per-case stages
```

Unknown keys are errors (a typo must not be ignored silently). :func:`load_config` reports every
problem at once, each as ``<key>: <what was expected>``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ovfdlr.classifiers import CLASSIFIERS

ClassifierName = Literal[CLASSIFIERS]  # the registry's keys
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConfigError(ValueError):
    """A configuration that cannot be used; ``problems`` are ``key: message`` lines."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(
            f"{source}: "
            + ("; ".join(problems) if len(problems) == 1 else "\n  " + "\n  ".join(problems))
        )


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeepConfig(Strict):
    """ResNet-50 features of an arm (see docs/deep.md)."""

    weights: str
    plane: Literal["sagittal", "axial", "coronal", "max-area", "2.5d"] = "sagittal"
    margin: float = Field(0.2, ge=0, le=5)
    window_level: float = 400.0
    window_width: float = Field(1800.0, gt=0)
    normalization: Literal["imagenet", "radimagenet-keras", "radimagenet-torch"] | None = None
    pca: int | None = Field(None, ge=1)
    finetune_epochs: int = Field(0, ge=0)
    gradcam_cases: int = Field(4, ge=0)
    batch_size: int = Field(16, ge=1)
    # where the network runs: auto (CUDA when present, else the CPU, with a note) | cpu | cuda
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # torch.autocast for inference (float16 on CUDA, bfloat16 on the CPU); see docs/deep.md
    mixed_precision: bool = False

    @field_validator("weights")
    @classmethod
    def _known_family(cls, value: str) -> str:
        from ovfdlr.deep.errors import WeightsError
        from ovfdlr.deep.specs import parse_spec

        try:
            family, argument = parse_spec(value)
        except WeightsError as exc:
            raise ValueError(str(exc)) from None
        if family == "random" and argument and not argument.lstrip("-").isdigit():
            raise ValueError("expected random:SEED with an integer seed")
        return value

    def input_settings(self):
        """The :class:`ovfdlr.deep.inputs.InputSettings` these settings describe."""
        from ovfdlr.deep.inputs import InputSettings

        return InputSettings(
            plane=self.plane,
            margin=self.margin,
            window_level=self.window_level,
            window_width=self.window_width,
        )


class ArmConfig(Strict):
    """A named feature set: which tables are fused, and the deep features if any."""

    name: str
    radiomics: bool = True
    morphometry: bool = True
    deep: DeepConfig | None = None

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("expected letters, digits, '.', '_' or '-' (it names folders)")
        return value

    @model_validator(mode="after")
    def _has_features(self) -> ArmConfig:
        if not (self.radiomics or self.morphometry or self.deep):
            raise ValueError("an arm needs at least one of radiomics, morphometry or deep")
        return self


class LabelsConfig(Strict):
    """The label scheme (:mod:`ovfdlr.labels`): ``astlof`` (default), ``genant``, ``binary``
    (``positive`` / ``negative`` manifest labels and two ``names``), or ``custom`` with
    ``classes`` (integer value -> name). A bare name (``labels: genant``) is accepted."""

    scheme: Literal["astlof", "genant", "binary", "custom"] = "astlof"
    positive: list[int] | None = None
    negative: list[int] | None = None
    names: list[str] | None = None
    classes: dict[int, str] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> LabelsConfig:
        if self.scheme == "custom" and not self.classes:
            raise ValueError("labels: a custom scheme needs classes (value: name, ...)")
        if self.scheme != "custom" and self.classes:
            raise ValueError(f"labels: classes are only for the custom scheme, not '{self.scheme}'")
        if self.scheme != "binary" and (self.positive or self.negative):
            raise ValueError("labels: positive and negative are only for the binary scheme")
        if self.names is not None and self.scheme != "binary":
            raise ValueError("labels: names are only for the binary scheme (custom: classes)")
        if self.names is not None and len(self.names) != 2:
            raise ValueError("labels: a binary scheme takes two names (negative, positive)")
        self.scheme_object()  # e.g. a label both positive and negative
        return self

    def scheme_object(self):
        """The :class:`ovfdlr.labels.LabelScheme` these settings describe."""
        from ovfdlr import labels

        try:
            if self.scheme == "binary":
                given = {
                    k: v
                    for k, v in (
                        ("positive", self.positive),
                        ("negative", self.negative),
                        ("names", tuple(self.names) if self.names else None),
                    )
                    if v is not None
                }
                return labels.binary(**given)
            if self.scheme == "custom":
                return labels.custom(self.classes or {})
            return labels.scheme_named(self.scheme)
        except labels.LabelError as exc:
            raise ValueError(f"labels: {exc}") from None


class CohortsConfig(Strict):
    training: str = "train"
    internal: str = "internal"


class SelectionConfig(Strict):
    """Settings of :func:`ovfdlr.selection.selection_pipeline`."""

    max_mode_fraction: float = Field(0.95, gt=0, le=1)
    univariate_test: Literal["kruskal", "anova"] = "kruskal"
    alpha: float = Field(0.05, gt=0, le=1)
    correlation_threshold: float = Field(0.9, gt=0, le=1)
    correlation_method: Literal["spearman", "pearson"] = "spearman"
    lasso_method: Literal["multinomial", "index"] = "multinomial"
    lasso_Cs: int = Field(12, ge=2)


class ModelsConfig(Strict):
    classifiers: list[ClassifierName] = Field(default_factory=lambda: list(CLASSIFIERS))
    quick: bool = False
    folds: int = Field(5, ge=2)
    select_on: Literal["cv", "internal"] = "cv"
    explain: bool = True

    @field_validator("classifiers")
    @classmethod
    def _not_empty(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("expected at least one classifier")
        return value


class PrimaryConfig(Strict):
    """The primary comparison: the macro-AUC difference of two arms on each named cohort,
    co-primary and Holm-adjusted across the cohorts (see docs/statistics.md)."""

    arms: tuple[str, str] | None = None  # default: the first compared pair
    cohorts: list[str] | None = None  # default: external and prospective, where present


class EvaluationConfig(Strict):
    """How arms are evaluated and compared (see docs/statistics.md)."""

    # None: nested cross-validation for every arm without fine-tuning (a fine-tuned network
    # has seen every training row, so outer folds would not be held out from it)
    nested_cv: bool | None = None
    # outer folds of nested cross-validation (default: models.folds); each costs one whole fit
    nested_folds: int | None = Field(None, ge=2)
    # the macro-AUC variance: at the population's class mix (cohorts of consecutive patients)
    # or conditional on the observed class counts
    macro_variance: Literal["unconditional", "conditional"] = "unconditional"
    # arm comparisons on the training cohort's out-of-fold predictions (the folds also chose
    # the model): on request only, labelled post-selection
    compare_training_cv: bool = False
    primary: PrimaryConfig = PrimaryConfig()
    n_boot: int = Field(2000, ge=200)
    n_permutations: int = Field(2000, ge=2000)
    # the anticipated C-statistic of each pair of classes behind the report's minimum sample
    # size (Riley et al.); the report states it as an assumption
    anticipated_c: float = Field(0.8, gt=0.5, lt=1.0)


class RadiomicsConfig(Strict):
    params: Path | None = None
    # native: ovfdlr's engine (default); pyradiomics: PyRadiomics itself (ovfdlr[pyradiomics]);
    # ibsi: IBSI-compliant features (ovfdlr[ibsi])
    engine: Literal["native", "pyradiomics", "ibsi"] = "native"


class ExperimentConfig(Strict):
    """The whole experiment (see the module docstring)."""

    name: str = "ovfdlr experiment"
    manifest: Path
    radiomics: RadiomicsConfig = RadiomicsConfig()
    arms: list[ArmConfig] = Field(min_length=1)
    labels: LabelsConfig = LabelsConfig()
    cohorts: CohortsConfig = CohortsConfig()
    selection: SelectionConfig = SelectionConfig()
    models: ModelsConfig = ModelsConfig()
    compare: list[tuple[str, str]] | None = None
    evaluation: EvaluationConfig = EvaluationConfig()
    seed: int = 0
    jobs: int = 0
    scheduler: str | None = None
    cache: Path | None = None
    preview: bool = True

    @field_validator("labels", mode="before")
    @classmethod
    def _scheme_name(cls, value: Any) -> Any:
        return {"scheme": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _arms_are_known(self) -> ExperimentConfig:
        names = [arm.name for arm in self.arms]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"arms: arm name used twice: {', '.join(doubled)}")
        for i, pair in enumerate(self.compare or []):
            for j, name in enumerate(pair):
                if name not in names:
                    raise ValueError(
                        f"compare.{i}.{j}: unknown arm '{name}' (arms: {', '.join(names)})"
                    )
            if pair[0] == pair[1]:
                raise ValueError(f"compare.{i}: an arm cannot be compared with itself")
        primary = self.evaluation.primary.arms
        if primary is not None:
            for j, name in enumerate(primary):
                if name not in names:
                    raise ValueError(
                        f"evaluation.primary.arms.{j}: unknown arm '{name}' "
                        f"(arms: {', '.join(names)})"
                    )
            if primary[0] == primary[1]:
                raise ValueError("evaluation.primary.arms: an arm cannot be compared with itself")
        return self

    def pairs(self) -> list[tuple[str, str]]:
        """The arm pairs to compare: the configured ones, or every pair."""
        if self.compare is not None:
            return [tuple(p) for p in self.compare]
        names = [arm.name for arm in self.arms]
        return [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]

    def primary_arms(self) -> tuple[str, str] | None:
        """The arms of the primary comparison: the configured pair, else the first compared
        pair (None with a single arm). A primary pair outside ``compare`` is compared too."""
        if self.evaluation.primary.arms is not None:
            return tuple(self.evaluation.primary.arms)
        pairs = self.pairs()
        return pairs[0] if pairs else None

    def nested_cv_for(self, arm: ArmConfig) -> tuple[bool, str]:
        """Whether nested cross-validation runs for ``arm``, and why not when it does not."""
        finetuned = arm.deep is not None and arm.deep.finetune_epochs > 0
        if self.evaluation.nested_cv is False:
            return False, "switched off (evaluation.nested_cv: false)"
        if self.evaluation.nested_cv is None and finetuned:
            return False, (
                "not run for a fine-tuned arm: the network was trained on every training row, "
                "so no outer fold would be held out from it (evaluation.nested_cv: true forces it)"
            )
        return True, ""


def _format(error: dict[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "config"
    message = error["msg"].removeprefix("Value error, ")
    if message.startswith(("arms:", "compare.", "labels:", "evaluation.")):
        return message
    if error["type"] == "extra_forbidden":
        return f"{key}: unknown key"
    if error["type"] == "missing":
        return f"{key}: required key is missing"
    given = error.get("input")
    suffix = "" if isinstance(given, dict | list) or given is None else f" (got {given!r})"
    return f"{key}: {message}{suffix}"


def parse_config(data: Any, source: str = "config") -> ExperimentConfig:
    """Validate a configuration mapping; raise :class:`ConfigError` listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, ["config: expected a mapping of keys (manifest, arms, ...)"])
    try:
        return ExperimentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_format(e) for e in exc.errors()]) from None


def _resolve(path: Path | None, base: Path) -> Path | None:
    if path is None:
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def _resolve_weights(spec: str, base: Path) -> str:
    family, sep, argument = spec.partition(":")
    if not sep or family == "random" or not argument:
        return spec
    return f"{family}:{_resolve(Path(argument), base)}"


def resolve_paths(config: ExperimentConfig, base: Path) -> ExperimentConfig:
    """Make every relative path absolute against ``base`` (the config file's folder)."""
    arms = [
        arm.model_copy(
            update={
                "deep": arm.deep.model_copy(
                    update={"weights": _resolve_weights(arm.deep.weights, base)}
                )
            }
        )
        if arm.deep
        else arm
        for arm in config.arms
    ]
    return config.model_copy(
        update={
            "manifest": _resolve(config.manifest, base),
            "radiomics": config.radiomics.model_copy(
                update={"params": _resolve(config.radiomics.params, base)}
            ),
            "cache": _resolve(config.cache, base),
            "arms": arms,
        }
    )


def load_config(path: str | Path) -> ExperimentConfig:
    """Read, validate and resolve an experiment YAML file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), ["config file not found"])
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(str(path), [f"config: not valid YAML{where}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(str(path), ["config: not a text (UTF-8) file"]) from None
    return resolve_paths(parse_config(data, str(path)), path.parent.resolve())


def dump_config(config: ExperimentConfig) -> str:
    """The resolved configuration as YAML (what the run folder keeps)."""
    data = config.model_dump(mode="json")
    data["compare"] = [list(p) for p in config.pairs()]
    return yaml.safe_dump(data, sort_keys=False)
