"""The label scheme: which classes a run predicts, their names and order, and how manifest
labels map onto them. Every module that needs the classes asks the scheme; nothing else states
them.

Schemes (the experiment config's ``labels`` key):

- ``astlof`` (default): ASTLOF classes 0 conservative care, 1 either, 2 surgery (total score
  <= 3, = 4, >= 5; see docs/architecture.md).
- ``genant``: Genant semi-quantitative grade 0 normal, 1 mild (20-25 % height loss), 2 moderate
  (25-40 %), 3 severe (> 40 %) (Genant HK et al., J Bone Miner Res 1993;8:1137-48).
- ``binary``: two classes made by grouping manifest labels: ``positive`` labels become class 1
  and ``negative`` labels class 0, with the two names given. The default groups ASTLOF data as
  surgery (class 2) against no surgery (classes 0 and 1).
- ``custom``: an explicit mapping of integer values to names (e.g. ``{0: acute, 1: chronic}``).

A scheme with two classes is a binary problem: its AUC is the plain ROC AUC of class 1 against
class 0 and its comparisons the plain paired DeLong test (:mod:`ovfdlr.stats`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ASTLOF_NAMES = ("conservative care", "either", "surgery")
GENANT_NAMES = ("normal", "mild", "moderate", "severe")

# Morphometry columns a Genant label is computed from: the grade is a step function of the
# height loss, an exact function of the three heights and the expected height (itself the
# larger of the best-preserved height and a multiple of the depth; see ovfdlr.morphometry),
# and the ratios are functions of the same heights. An arm that predicts the Genant grade from
# them would read the answer off its inputs.
GENANT_DEFINING_FEATURES = (
    "morph_genant_grade",
    "morph_height_loss_pct",
    "morph_height_loss_mm",
    "morph_wedge_ratio",
    "morph_biconcavity_ratio",
    "morph_crush_ratio",
    "morph_height_anterior_mm",
    "morph_height_middle_mm",
    "morph_height_posterior_mm",
    "morph_height_expected_mm",
    "morph_depth_mm",
)


class LabelError(ValueError):
    """A label or a scheme definition that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class LabelScheme:
    """The classes of a run (``values`` in order, with ``names``) and how manifest labels map
    onto them (``mapping``: manifest value -> class value)."""

    scheme: str
    values: tuple[int, ...]
    names: tuple[str, ...]
    mapping: Mapping[int, int] = field(default_factory=dict)
    excluded_features: tuple[str, ...] = ()
    exclusion_reason: str = ""

    def __post_init__(self) -> None:
        if len(self.values) < 2:
            raise LabelError(f"label scheme '{self.scheme}': at least two classes are needed")
        if len(set(self.values)) != len(self.values):
            raise LabelError(f"label scheme '{self.scheme}': a class value is used twice")
        if len(self.names) != len(self.values):
            raise LabelError(
                f"label scheme '{self.scheme}': {len(self.values)} classes but "
                f"{len(self.names)} names"
            )
        if not self.mapping:
            object.__setattr__(self, "mapping", {v: v for v in self.values})

    # -- the classes ---------------------------------------------------------------------------

    @property
    def title(self) -> str:
        """The scheme's name in prose: ASTLOF, Genant, binary, custom."""
        return {"astlof": "ASTLOF", "genant": "Genant"}.get(self.scheme, self.scheme)

    @property
    def n_classes(self) -> int:
        return len(self.values)

    @property
    def is_binary(self) -> bool:
        return len(self.values) == 2

    @property
    def positive(self) -> int:
        """The class a binary scheme's ROC treats as the event (the second value)."""
        return self.values[-1]

    @property
    def proba_columns(self) -> list[str]:
        """Probability columns of prediction tables: ``p<value>`` in class order."""
        return [f"p{v}" for v in self.values]

    def index(self, value: int) -> int:
        """Position of class ``value`` in :attr:`values`."""
        try:
            return self.values.index(int(value))
        except ValueError:
            raise LabelError(f"class {value} is not in the scheme '{self.scheme}'") from None

    def positions(self, values) -> np.ndarray:
        """The position of each class value in :attr:`values` (0 .. K-1): what classifiers are
        fitted on, so that every library (XGBoost requires 0 .. K-1) sees the same classes."""
        lookup = {v: i for i, v in enumerate(self.values)}
        try:
            return np.fromiter((lookup[int(v)] for v in values), dtype=np.int64)
        except KeyError as exc:
            raise LabelError(f"class {exc.args[0]} is not in the scheme '{self.scheme}'") from None

    def name_of(self, value: int) -> str:
        return self.names[self.index(value)]

    def label_text(self, value: int) -> str:
        """``class 2 (surgery)``: how figures and tables name a class."""
        return f"class {int(value)} ({self.name_of(value)})"

    @property
    def class_names(self) -> dict[int, str]:
        return dict(zip(self.values, self.names, strict=True))

    def without_excluded(self, features):
        """``features`` (a table) without the columns the scheme excludes, and those columns:
        training and the bundle's input columns both go through here."""
        dropped = [c for c in self.excluded_features if c in features.columns]
        return (features.drop(columns=dropped) if dropped else features), dropped

    # -- manifest labels -----------------------------------------------------------------------

    @property
    def accepted(self) -> tuple[int, ...]:
        """Manifest label values the scheme accepts, sorted."""
        return tuple(sorted(self.mapping))

    def describe_accepted(self) -> str:
        return ", ".join(str(v) for v in self.accepted)

    def describe_mapping(self) -> str:
        """``0->0, 1->0, 2->1``: which manifest label becomes which class."""
        return ", ".join(f"{k}->{v}" for k, v in sorted(self.mapping.items()))

    def encode(self, text: str) -> int | None:
        """The class of a manifest label cell: ``None`` when empty; :class:`LabelError` when
        the value is not one the scheme accepts (the message names the value and scheme)."""
        text = str(text).strip()
        if text == "":
            return None
        try:
            number = float(text)
        except ValueError:
            number = float("nan")
        if number == number and number.is_integer() and int(number) in self.mapping:
            return self.mapping[int(number)]
        raise LabelError(
            f"label '{text}' is not one of {self.describe_accepted()} (label scheme "
            f"'{self.scheme}'), or empty to predict"
        )

    # -- records -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme,
            "values": list(self.values),
            "names": list(self.names),
            "mapping": {str(k): v for k, v in sorted(self.mapping.items())},
            "excluded_features": list(self.excluded_features),
            "exclusion_reason": self.exclusion_reason,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelScheme:
        return cls(
            str(data["scheme"]),
            tuple(int(v) for v in data["values"]),
            tuple(str(n) for n in data["names"]),
            {int(k): int(v) for k, v in (data.get("mapping") or {}).items()},
            tuple(data.get("excluded_features") or ()),
            str(data.get("exclusion_reason") or ""),
        )


def astlof() -> LabelScheme:
    return LabelScheme("astlof", (0, 1, 2), ASTLOF_NAMES)


def genant() -> LabelScheme:
    return LabelScheme(
        "genant",
        (0, 1, 2, 3),
        GENANT_NAMES,
        excluded_features=GENANT_DEFINING_FEATURES,
        exclusion_reason=(
            "the Genant grade is defined by the vertebral height loss, so the morphometry "
            "features it is computed from (the grade itself, the height loss, the three "
            "heights, the expected height, the depth and the height ratios) are left out of "
            "every arm: a model would otherwise read the label off its inputs"
        ),
    )


def binary(
    positive: Iterable[int] = (2,),
    negative: Iterable[int] = (0, 1),
    names: tuple[str, str] = ("no surgery", "surgery"),
) -> LabelScheme:
    """Two classes: manifest labels in ``positive`` become class 1, those in ``negative``
    class 0 (default: ASTLOF class 2 against classes 0-1)."""
    positive, negative = [int(v) for v in positive], [int(v) for v in negative]
    if not positive or not negative:
        raise LabelError("label scheme 'binary': positive and negative need a label each")
    both = sorted(set(positive) & set(negative))
    if both:
        raise LabelError(
            f"label scheme 'binary': label(s) {', '.join(map(str, both))} are both positive "
            "and negative"
        )
    mapping = {v: 0 for v in negative} | {v: 1 for v in positive}
    return LabelScheme("binary", (0, 1), tuple(names), mapping)


def custom(classes: Mapping[int, str]) -> LabelScheme:
    """An explicit list of integer class values with their names, in the order given."""
    return LabelScheme("custom", tuple(int(v) for v in classes), tuple(classes.values()))


SCHEMES = {"astlof": astlof, "genant": genant, "binary": binary}
DEFAULT = astlof()


def scheme_named(name: str) -> LabelScheme:
    """A scheme by name (``astlof``, ``genant``, ``binary`` with its defaults)."""
    try:
        return SCHEMES[name]()
    except KeyError:
        raise LabelError(
            f"unknown label scheme '{name}' (choose from {', '.join(SCHEMES)} or give classes)"
        ) from None


def resolve(scheme: LabelScheme | str | None) -> LabelScheme:
    """A scheme from a scheme, a name, or ``None`` (the default, ASTLOF)."""
    if scheme is None:
        return DEFAULT
    if isinstance(scheme, LabelScheme):
        return scheme
    return scheme_named(scheme)


__all__ = [
    "DEFAULT",
    "GENANT_DEFINING_FEATURES",
    "SCHEMES",
    "LabelError",
    "LabelScheme",
    "astlof",
    "binary",
    "custom",
    "genant",
    "resolve",
    "scheme_named",
]
