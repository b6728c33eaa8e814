"""The synthetic cohort's design: its label scheme, cases per cohort, and cohorts drawn with an
equal number of cases in every class.

A validation cohort drawn at the population's class mix is small where a class is rare, and a
class with one case has no confidence interval and no test. ``stratify`` draws a cohort as a
case-control sample instead: the same latent population (a larger draw of it), from which whole
patients are taken in their random order until every class holds its share of the cohort's
size. Only statistics conditional on the true class keep their meaning (per-class
sensitivity, and the AUC between two classes); a one-vs-rest AUC and specificity compare a class
with a mixture of the others whose weights are the cohort's mix, and accuracy, micro AUC,
calibration and net benefit depend on the mix too: all of those describe the stratified mix, not
the population's. ``cohort.json`` says which cohorts were drawn so.

The stratified cohort is drawn from a larger population draw (``n * k + 10`` cases for it, the
other cohorts at their sizes) of the same seed, so asking for stratification, or for another
size of a stratified cohort, changes the whole draw, the training cohort included.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

import pandas as pd

from .population import (
    COHORTS,
    DEFAULT_N,
    PAPER_SCALE,
    check_counts,
    sample_population,
    split_counts,
)

#: The label schemes the synthetic cohort can write, with their classes.
SCHEME_CLASSES: Mapping[str, tuple[int, ...]] = {
    "astlof": (0, 1, 2),
    "genant": (0, 1, 2, 3),
    "binary": (0, 1),
}
SYNTHETIC_LABELS = tuple(SCHEME_CLASSES)

#: Over-sampling factors tried in turn for a stratified cohort (the draw is deterministic for a
#: seed; a larger factor is tried only when a class's share cannot be filled).
OVERSAMPLING = (4, 8, 16, 32)


def synthetic_labels(pop: pd.DataFrame, scheme: str) -> pd.Series:
    """The manifest labels of the synthetic cohort under a label scheme, from its truth.

    ``astlof``: the ASTLOF class of the latent item scores. ``genant``: the Genant grade of the
    true height loss (:func:`ovfdlr.morphometry.genant_grade`). ``binary``: 1 for ASTLOF class 2
    (surgery), 0 otherwise, to be read with :func:`synthetic_label_config`.
    """
    if scheme == "astlof":
        return pop["label"].astype(int)
    if scheme == "genant":
        from ..morphometry import genant_grade

        return pop["height_loss_pct"].map(genant_grade).astype(int)
    if scheme == "binary":
        return (pop["label"] == 2).astype(int)
    raise ValueError(f"labels '{scheme}' is not one of {', '.join(SYNTHETIC_LABELS)}")


def synthetic_label_config(scheme: str) -> str | dict:
    """The experiment config's ``labels`` entry for a cohort written with ``scheme``."""
    if scheme == "binary":  # the manifest holds 0/1 already
        return {"scheme": "binary", "negative": [0], "positive": [1]}
    return scheme


def parse_sizes(text: str) -> dict[str, int]:
    """Cases per cohort from ``"train=68,internal=17,external=24"``; each fault is named."""
    sizes: dict[str, int] = {}
    for part in (p.strip() for p in text.split(",")):
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ValueError(f"'{part}' is not COHORT=SIZE (e.g. external=24)")
        if name in sizes:
            raise ValueError(f"cohort '{name}' is given twice")
        try:
            sizes[name] = int(value)
        except ValueError:
            raise ValueError(f"'{part}': the size must be a whole number") from None
    return check_counts(sizes)


def class_shares(size: int, classes: tuple[int, ...]) -> dict[int, int]:
    """``size`` cases split equally over ``classes``; the remainder goes to the first ones."""
    base, extra = divmod(size, len(classes))
    return {c: base + (i < extra) for i, c in enumerate(classes)}


@dataclass(frozen=True)
class CohortDesign:
    """Cases per cohort and the cohorts drawn with equal cases per class.

    ``labels`` is the scheme the manifest is written in (and the one stratification balances).
    """

    sizes: Mapping[str, int]
    stratify: tuple[str, ...] = ()
    labels: str = "astlof"
    paper_scale: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if self.labels not in SCHEME_CLASSES:
            raise ValueError(f"labels '{self.labels}' is not one of {', '.join(SYNTHETIC_LABELS)}")
        object.__setattr__(self, "sizes", check_counts(self.sizes))
        for name in self.stratify:
            if name not in COHORTS:
                raise ValueError(
                    f"'{name}' is not a synthetic cohort (one of {', '.join(COHORTS)})"
                )
            if name not in self.sizes:
                raise ValueError(f"cohort '{name}' has no cases in this design")
            if self.sizes[name] < len(SCHEME_CLASSES[self.labels]):
                raise ValueError(
                    f"cohort '{name}' has {self.sizes[name]} case(s): too few for one case of "
                    f"each of the {len(SCHEME_CLASSES[self.labels])} {self.labels} classes"
                )
        object.__setattr__(self, "stratify", tuple(c for c in COHORTS if c in self.stratify))

    @classmethod
    def of(
        cls,
        n: int | None = None,
        *,
        paper_scale: bool = False,
        sizes: Mapping[str, int] | None = None,
        stratify: Collection[str] = (),
        labels: str = "astlof",
    ) -> CohortDesign:
        """A design from a total ``n`` (split 750:187:110:51), the paper's sizes, or explicit
        ``sizes`` (one of the three)."""
        if sum((n is not None, paper_scale, sizes is not None)) > 1:
            raise ValueError("give the cohort sizes one way: n, paper_scale or sizes")
        if sizes is None and paper_scale:
            sizes = dict(PAPER_SCALE)
        elif sizes is None:
            sizes = split_counts(DEFAULT_N if n is None else n)
        return cls(dict(sizes), tuple(stratify), labels, paper_scale)

    @property
    def classes(self) -> tuple[int, ...]:
        return SCHEME_CLASSES[self.labels]

    def shares(self, cohort: str) -> dict[int, int] | None:
        """Cases per class of a stratified cohort (None for one drawn at the population mix)."""
        if cohort not in self.stratify:
            return None
        return class_shares(self.sizes[cohort], self.classes)

    def stratified_shares(self) -> dict[str, dict[str, int]]:
        """Cases per class of every stratified cohort (for ``cohort.json``)."""
        return {c: {str(k): v for k, v in self.shares(c).items()} for c in self.stratify}


def draw_population(design: CohortDesign, seed: int = 0) -> pd.DataFrame:
    """The latent population of a design (see :func:`ovfdlr.synthetic.sample_population`).

    Without stratification this is ``sample_population(counts=design.sizes)``. With it, each
    stratified cohort is drawn ``k`` times larger (``k`` from :data:`OVERSAMPLING`), whole
    patients are taken in their random order while every class they add still has room, and
    case and patient ids are renumbered in the drawn order. Raises ``ValueError`` naming the
    cohort and class when even the largest draw cannot fill a class.
    """
    if not design.stratify:
        return sample_population(seed=seed, counts=design.sizes)
    for factor in OVERSAMPLING:
        counts = {
            c: n * factor + 10 if c in design.stratify else n for c, n in design.sizes.items()
        }
        pop = sample_population(seed=seed, counts=counts)
        labels = synthetic_labels(pop, design.labels)
        keep = pd.Series(True, index=pop.index)
        short = None
        for cohort in design.stratify:
            rows = pop["cohort"] == cohort
            taken, short = _take_patients(pop[rows], labels[rows], design.shares(cohort))
            if short is not None:
                short = (cohort, *short)
                break
            keep &= ~rows | pop.index.isin(taken)
        if short is None:
            return _renumber(pop[keep])
    cohort, label, have, want = short
    raise ValueError(
        f"cohort '{cohort}': only {have} of the {want} cases of class {label} asked for were "
        f"found in a draw {OVERSAMPLING[-1]} times the cohort's size; ask for fewer cases"
    )


def _take_patients(
    pop: pd.DataFrame, labels: pd.Series, shares: dict[int, int]
) -> tuple[list, tuple[int, int, int] | None]:
    """Rows of whole patients, in their order, that fill ``shares`` exactly; or the first
    class that could not be filled as ``(class, found, wanted)``."""
    room = dict(shares)
    taken: list = []
    for _, rows in pop.groupby("patient_id", sort=False):
        need = labels[rows.index].value_counts()
        if all(room.get(k, 0) >= v for k, v in need.items()):
            taken += list(rows.index)
            for k, v in need.items():
                room[k] -= v
        if not any(room.values()):
            return taken, None
    label = next(k for k, v in room.items() if v)
    return taken, (label, shares[label] - room[label], shares[label])


def _renumber(pop: pd.DataFrame) -> pd.DataFrame:
    """Consecutive case ids (in row order) and patient ids (in order of first appearance)."""
    pop = pop.reset_index(drop=True).copy()
    width = max(4, len(str(len(pop))))
    pop["case_id"] = [f"ovf-{i + 1:0{width}d}" for i in range(len(pop))]
    patients = list(dict.fromkeys(pop["patient_id"]))
    width = max(4, len(str(len(patients))))
    names = {p: f"P{i + 1:0{width}d}" for i, p in enumerate(patients)}
    pop["patient_id"] = pop["patient_id"].map(names)
    return pop
