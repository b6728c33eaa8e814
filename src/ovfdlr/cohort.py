"""The cohort manifest: loading, validation and summaries.

A manifest is a CSV with one row per vertebra (see docs/architecture.md):

=============  ========  ==============================================================
column         required  meaning
=============  ========  ==============================================================
case_id        yes       unique id of the vertebra
patient_id     yes       patient; all vertebrae of a patient stay in one cohort
image          yes       CT volume: NIfTI / NRRD / MHA / MHD file or DICOM series folder,
                         relative to the manifest's folder (or absolute)
mask           yes       label map on the same grid, same forms
mask_label     no        integer label of this vertebra in the mask (default 1)
series_uid     no        the image's Series Instance UID, for a DICOM folder that holds
                         several series (the reader refuses such a folder without it)
label          yes       a class of the label scheme (ASTLOF 0, 1, 2 by default); empty for
                         cases to predict
cohort         yes       train, internal, external, prospective or any configured name
centre         yes       acquiring centre
level          no        vertebral level, e.g. L1
age, sex       no        patient age in years, sex (F / M)
scan_date      no        acquisition date (ISO 8601)
=============  ========  ==============================================================

Reading an image or mask runs the input checks of :mod:`ovfdlr.integrity` (a file cut short, a
corrupt stream, an inconsistent header, a DICOM series with missing or duplicated slices, a
"mask" that is an image ...); each refusal is a problem named by its check. The same image
content under two patients is an error (``same-image-two-patients``); the same CT for several
vertebrae of one patient is normal.

Row numbers in messages are the CSV's line numbers as a spreadsheet shows them: the header is
row 1, the first vertebra row 2.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ovfdlr import imaging, integrity
from ovfdlr.cache import file_digest
from ovfdlr.labels import LabelError, LabelScheme, resolve
from ovfdlr.parallel import TaskFailure, run_tasks

REQUIRED_COLUMNS = ("case_id", "patient_id", "image", "mask", "label", "cohort", "centre")
DEMOGRAPHIC_COLUMNS = ("age", "sex", "scan_date")
# every manifest column ovfdlr reads, in the order its manifest writers write them
MANIFEST_COLUMNS = (
    "case_id",
    "patient_id",
    "image",
    "mask",
    "mask_label",
    "label",
    "cohort",
    "centre",
    "level",
    *DEMOGRAPHIC_COLUMNS,
    "series_uid",  # only for a DICOM folder of several series
)
ROW = "manifest_row"  # the sheet row of each case, added on reading (a reserved column name)
TOTAL = "(all)"  # the margins of the summary tables
DEFAULT_MIN_ROI_VOXELS = 64
DEFAULT_TOLERANCE = 1e-3
FIRST_DATA_ROW = 2  # spreadsheet row of the first vertebra (the header is row 1)

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One finding about a manifest: where (row, case_id), which check, and what is wrong."""

    check: str
    message: str
    row: int | None = None
    case_id: str | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = []
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.case_id:
            where.append(f"case {self.case_id}")
        prefix = f"{', '.join(where)}: " if where else ""
        return f"{self.severity}: {prefix}{self.message} [{self.check}]"


class ManifestError(ValueError):
    """The manifest cannot be used; ``problems`` lists every reason found."""

    def __init__(self, path: Path, problems: Sequence[Problem]):
        self.path = Path(path)
        self.problems = list(problems)
        errors = [p for p in self.problems if p.severity == "error"]
        lines = [f"{self.path}: {len(errors)} problem(s) in the manifest"]
        lines += [f"  {p}" for p in errors]
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------------------------------------
# table-level checks


def read_text_csv(path: str | Path) -> pd.DataFrame:
    """A CSV table read as text (nothing coerced, blank lines kept as empty rows so that row
    numbers stay those of a spreadsheet), its column names stripped.

    Raises ``ValueError`` ("not a readable CSV: <reason>") for a file that does not parse,
    does not decode, or is compressed wrongly (pandas infers compression from the suffix).
    """
    try:
        table = pd.read_csv(
            path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"not a readable CSV: {first}") from exc
    table.columns = [str(c).strip() for c in table.columns]
    return table


def read_table(path: str | Path) -> pd.DataFrame:
    """Read the manifest CSV as text (nothing coerced), with a ``manifest_row`` column of sheet
    rows (blank lines are skipped but counted)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, [Problem("manifest", f"manifest not found: {path}")])
    try:
        table = read_text_csv(path)
    except ValueError as exc:
        raise ManifestError(path, [Problem("manifest", str(exc))]) from exc
    if ROW in table.columns:
        raise ManifestError(path, [Problem("reserved-column", f"column '{ROW}' is reserved")])
    table = table.apply(lambda col: col.str.strip())
    table.insert(0, ROW, np.arange(FIRST_DATA_ROW, FIRST_DATA_ROW + len(table)))
    # blank lines keep their sheet row number but are not cases
    table = table[(table.drop(columns=ROW) != "").any(axis=1)].reset_index(drop=True)
    if table.empty:
        raise ManifestError(path, [Problem("empty-manifest", "the manifest has no case rows")])
    return table


def _parse_label(text: str, labels: LabelScheme) -> int | LabelError | None:
    """The class of a label cell; ``None`` when empty; the :class:`LabelError` (naming the
    value and the scheme) when the scheme does not accept it."""
    try:
        return labels.encode(text)
    except LabelError as exc:
        return exc


def _parse_mask_label(text: str) -> int | str:
    if text == "":
        return 1
    try:
        value = float(text)
    except ValueError:
        return text
    if value.is_integer() and value > 0:
        return int(value)
    return text


def check_table(
    table: pd.DataFrame,
    cohorts: Iterable[str] | None = None,
    *,
    labels: LabelScheme | str | None = None,
    training: str = "train",
) -> list[Problem]:
    """Every table-level problem of a manifest read by :func:`read_table`.

    Checks: missing columns, empty required cells, duplicate case_id, a label the label scheme
    (``labels``, default ASTLOF) does not accept,
    mask_label not a positive integer, unknown cohort (when ``cohorts`` is given), age not a
    number in [0, 130], a patient in two cohorts (error) or two centres (warning), and unlabelled
    training cases (warning).
    """
    problems: list[Problem] = []
    scheme = resolve(labels)
    allowed = list(cohorts) if cohorts is not None else None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    for column in missing:
        problems.append(Problem("missing-column", f"required column '{column}' is missing"))
    if "case_id" not in table.columns:
        return problems

    def add(row, check, message, severity: Severity = "error"):
        problems.append(
            Problem(check, message, int(getattr(row, ROW)), row.case_id or None, severity)
        )

    present = [c for c in REQUIRED_COLUMNS if c in table.columns and c != "label"]
    seen: dict[str, int] = {}
    for row in table.itertuples(index=False):
        for column in present:
            if getattr(row, column) == "":
                add(row, "empty-cell", f"'{column}' is empty")
        if row.case_id:
            if row.case_id in seen:
                add(row, "duplicate-case-id", f"case_id duplicates row {seen[row.case_id]}")
            else:
                seen[row.case_id] = int(getattr(row, ROW))
        if "label" in table.columns:
            parsed = _parse_label(row.label, scheme)
            if isinstance(parsed, LabelError):
                add(row, "label", str(parsed))
        if "mask_label" in table.columns and isinstance(_parse_mask_label(row.mask_label), str):
            add(row, "mask-label", f"mask_label '{row.mask_label}' is not a positive integer")
        known = allowed is None or "cohort" not in table.columns or not row.cohort
        if not known and row.cohort not in allowed:
            add(row, "cohort", f"cohort '{row.cohort}' is not one of {', '.join(allowed)}")
        if "age" in table.columns and row.age != "":
            try:
                age = float(row.age)
            except ValueError:
                age = float("nan")
            if not 0 <= age <= 130:
                add(row, "age", f"age '{row.age}' is not a number of years in [0, 130]")
        if (
            "label" in table.columns
            and "cohort" in table.columns
            and row.cohort == training
            and _parse_label(row.label, scheme) is None
        ):
            add(row, "unlabelled", "training case has no label; it will be ignored", "warning")

    if "label" in table.columns:
        problems += _absent_classes(table, scheme)
    if {"patient_id", "cohort"} <= set(table.columns):
        problems += _straddling(table, "cohort", "error")
    if {"patient_id", "centre"} <= set(table.columns):
        problems += _straddling(table, "centre", "warning")
    return problems


def _absent_classes(table: pd.DataFrame, scheme: LabelScheme) -> list[Problem]:
    """A warning per class of the scheme that no labelled row has: often a manifest coded for
    another scheme (a 0/1 manifest read with ASTLOF's binary grouping makes every case 0)."""
    found = {_parse_label(v, scheme) for v in table["label"]}
    if not any(isinstance(v, int) for v in found):
        return []
    absent = [v for v in scheme.values if v not in found]
    return [
        Problem(
            "class-absent",
            f"no case has class {v} ({scheme.name_of(v)}) of the label scheme '{scheme.scheme}' "
            f"(manifest labels mapped: {scheme.describe_mapping()}); check the scheme",
            severity="warning",
        )
        for v in absent
    ]


def _straddling(table: pd.DataFrame, column: str, severity: Severity) -> list[Problem]:
    """A problem per row of each patient found under more than one value of ``column``."""
    problems = []
    rows = table[table.patient_id != ""]
    for patient, group in rows.groupby("patient_id", sort=True):
        values = group[column].unique()
        if len(values) < 2:
            continue
        where = "; ".join(
            f"{v}: row{'s' if (group[column] == v).sum() > 1 else ''} "
            + ", ".join(str(r) for r in group.loc[group[column] == v, ROW])
            for v in values
        )
        rule = (
            "all vertebrae of a patient must be in one cohort"
            if column == "cohort"
            else "check the patient_id"
        )
        for row in group.itertuples(index=False):
            problems.append(
                Problem(
                    f"patient-in-two-{column}s",
                    f"patient {patient} is in {len(values)} {column}s ({where}); {rule}",
                    int(getattr(row, ROW)),
                    row.case_id or None,
                    severity,
                )
            )
    return problems


def _to_cohort(table: pd.DataFrame, base: Path, labels: LabelScheme) -> pd.DataFrame:
    """Typed cohort frame indexed by case_id with absolute image / mask paths and the labels
    as class values of the scheme."""
    cohort = table.copy()

    def resolve(value: str) -> str:
        if not value:
            return ""
        p = Path(value)
        return str(p if p.is_absolute() else (base / p))

    def label(value: str) -> int | None:
        parsed = _parse_label(value, labels)
        return None if isinstance(parsed, LabelError) else parsed

    def mask_label(value: str) -> int:
        parsed = _parse_mask_label(value)
        return 0 if isinstance(parsed, str) else parsed  # 0: invalid, reported by check_table

    cohort["image"] = cohort["image"].map(resolve)
    cohort["mask"] = cohort["mask"].map(resolve)
    if "mask_label" not in cohort.columns:
        cohort["mask_label"] = ""
    cohort["mask_label"] = cohort["mask_label"].map(mask_label).astype("int64")
    cohort["label"] = pd.array([label(v) for v in cohort["label"]], dtype="Int64")
    if "age" in cohort.columns:
        cohort["age"] = pd.to_numeric(cohort["age"], errors="coerce")
    for column in ("level", "sex", "scan_date"):
        if column in cohort.columns:
            cohort[column] = cohort[column].replace("", pd.NA)
    return cohort.set_index("case_id", drop=False).rename_axis(None)


def load_manifest(
    path: str | Path,
    *,
    cohorts: Iterable[str] | None = None,
    labels: LabelScheme | str | None = None,
    training: str = "train",
) -> pd.DataFrame:
    """Load and table-check a manifest; return the cohort (one row per vertebra).

    The frame is indexed by ``case_id`` and has absolute ``image`` / ``mask`` paths, integer
    ``mask_label``, nullable-integer ``label`` (the class of the label scheme ``labels``;
    ``<NA>`` for cases to predict) and the sheet
    ``row`` of each case. Images are not opened here: :func:`validate_manifest` does that.
    Raises :class:`ManifestError` listing every table-level error.
    """
    path = Path(path)
    table = read_table(path)
    scheme = resolve(labels)
    problems = check_table(table, cohorts, labels=scheme, training=training)
    if any(p.severity == "error" for p in problems):
        raise ManifestError(path, problems)
    return _to_cohort(table, path.parent, scheme)


# ---------------------------------------------------------------------------------------------
# image-level checks


@dataclass(frozen=True)
class CaseCheck:
    """The arguments of one case's image checks (picklable, for worker processes)."""

    row: int
    case_id: str
    image: str
    mask: str
    mask_label: int
    min_roi_voxels: int = DEFAULT_MIN_ROI_VOXELS
    tolerance: float = DEFAULT_TOLERANCE
    series_uid: str | None = None


def check_case(case: CaseCheck) -> list[Problem]:
    """Open one case's image and mask and return every problem found (empty when fine).

    Checks: files exist and read, complete and consistent (the input checks of
    :mod:`ovfdlr.integrity`, each problem under its check's name; the mask's values must be
    labels); the image is 3-D with finite voxel values, plausible for calibrated CT
    (``ct-values``, a warning); the mask grid matches the image
    (:func:`ovfdlr.imaging.geometry_mismatches`); the mask is not empty and holds
    ``mask_label``; the ROI has at least ``min_roi_voxels`` voxels; the ROI does not touch the
    volume border (warning: the vertebra may be cut off).
    """
    problems: list[Problem] = []

    def add(check: str, message: str, severity: Severity = "error") -> None:
        problems.append(Problem(check, message, case.row, case.case_id, severity))

    volumes = {}
    for kind, path in (("image", case.image), ("mask", case.mask)):
        if not Path(path).exists():
            add(f"{kind}-missing", f"{kind} file not found: {path}")
            continue
        try:
            if kind == "image":
                reading = imaging.inspect_image(path, case.series_uid)
            else:
                reading = imaging.inspect_label_map(path)
        except imaging.InputCheckError as exc:
            for found in exc.findings:
                add(found.check, f"{kind} {path}: {found.message}")
            continue
        except imaging.ImageReadError as exc:
            add(f"{kind}-unreadable", f"{kind} unreadable: {exc}")
            continue
        volumes[kind] = reading.image
        for found in reading.warnings:
            add(found.check, f"{kind} {path}: {found.message}", found.severity)
    image, mask = volumes.get("image"), volumes.get("mask")

    if image is not None:
        if image.GetDimension() != 3:
            add("image-dimension", f"image is {image.GetDimension()}-D; a 3-D volume is expected")
        bad = imaging.count_non_finite(case.image, image)
        if bad:
            add("non-finite", f"image has {bad} non-finite voxel value(s) (NaN or infinite)")
        if image.GetNumberOfComponentsPerPixel() == 1:
            for found in integrity.ct_value_findings(sitk.GetArrayViewFromImage(image)):
                add(found.check, f"image {case.image}: {found.message}", found.severity)
    if mask is None:
        return problems
    if image is not None:
        for message in imaging.geometry_mismatches(image, mask, case.tolerance):
            add("geometry", f"image/mask geometry mismatch: {message}")

    labels = sitk.GetArrayViewFromImage(mask)
    if not np.any(labels):
        add("empty-roi", "empty ROI: the mask has no non-zero voxel")
        return problems
    if case.mask_label <= 0:  # not a usable label; check_table has reported it
        return problems
    roi = labels == case.mask_label
    count = int(np.count_nonzero(roi))
    if count == 0:
        present = np.unique(labels[labels != 0])
        shown = ", ".join(str(v) for v in present[:12]) + (" ..." if present.size > 12 else "")
        add("mask-label", f"mask_label {case.mask_label} is absent from the mask (labels: {shown})")
        return problems
    if count < case.min_roi_voxels:
        add(
            "small-roi",
            f"ROI has {count} voxels, fewer than the minimum of {case.min_roi_voxels}",
        )
    if imaging.roi_touches_border(roi):
        add("roi-border", "ROI touches the volume border; the vertebra may be cut off", "warning")
    return problems


def _series_uid(row) -> str | None:
    """A cohort row's ``series_uid`` (empty or absent: ``None``)."""
    value = getattr(row, "series_uid", None)
    return (value.strip() or None) if isinstance(value, str) else None


def same_image_problems(cohort: pd.DataFrame) -> list[Problem]:
    """``same-image-two-patients``: one image content (SHA-256, :func:`ovfdlr.cache.file_digest`)
    under more than one patient_id, in one cohort or several; every row involved is named.

    The same CT for several vertebrae of one patient is normal. Only images whose size another
    patient's image shares are hashed (different sizes are different contents); missing files
    are left to the image checks.
    """
    rows = [r for r in cohort.itertuples(index=False) if r.image and r.patient_id]
    by_size: dict[tuple, list] = {}
    for r in rows:
        path = Path(r.image)
        try:
            size = ("folder",) if path.is_dir() else ("file", path.stat().st_size)
        except OSError:
            continue
        by_size.setdefault(size, []).append(r)
    by_digest: dict[str, list] = {}
    for members in by_size.values():
        if len({m.patient_id for m in members}) < 2:
            continue
        for m in members:
            try:
                digest = file_digest(m.image, series_uid=_series_uid(m))
            except (OSError, ValueError):  # unreadable: the image checks name it
                continue
            by_digest.setdefault(digest, []).append(m)
    problems = []
    for digest, members in by_digest.items():
        patients = sorted({m.patient_id for m in members})
        if len(patients) < 2:
            continue
        cohorts = sorted({m.cohort for m in members if getattr(m, "cohort", "")})
        spread = f" in {len(cohorts)} cohorts ({', '.join(cohorts)})" if len(cohorts) > 1 else ""
        listing = "; ".join(
            f"row {getattr(m, ROW)} ({m.case_id}, patient {m.patient_id}, cohort {m.cohort})"
            for m in members[:10]
        ) + (f"; and {len(members) - 10} more rows" if len(members) > 10 else "")
        message = (
            f"the same image content (SHA-256 {digest[:12]}...) is used by {len(patients)} "
            f"patients{spread}: {listing}; a CT belongs to one patient (a scan filed twice, "
            "or a wrong patient_id)"
        )
        for m in members:
            problems.append(
                Problem("same-image-two-patients", message, int(getattr(m, ROW)), m.case_id)
            )
    return problems


# ---------------------------------------------------------------------------------------------
# the whole manifest


@dataclass
class ValidationReport:
    """Every problem of a manifest and, when it has no errors, its cohort."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    cohort: pd.DataFrame | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def problems_frame(self) -> pd.DataFrame:
        columns = ["severity", "row", "case_id", "check", "message"]
        rows = [asdict(p) for p in self.problems]
        return pd.DataFrame(rows, columns=columns).astype({"row": "Int64"})


def validate_manifest(
    path: str | Path,
    *,
    cohorts: Iterable[str] | None = None,
    labels: LabelScheme | str | None = None,
    training: str = "train",
    min_roi_voxels: int = DEFAULT_MIN_ROI_VOXELS,
    tolerance: float = DEFAULT_TOLERANCE,
    check_images: bool = True,
    jobs: int | None = 1,
    progress: bool = False,
) -> ValidationReport:
    """Check a manifest and every case's image and mask; report all problems at once.

    Table-level problems (:func:`check_table`) and image-level problems (:func:`check_case`,
    for rows whose paths are usable) are collected together, sorted by row.
    """
    path = Path(path)
    report = ValidationReport(path)
    try:
        table = read_table(path)
    except ManifestError as exc:
        report.problems = exc.problems
        return report
    scheme = resolve(labels)
    report.problems = check_table(table, cohorts, labels=scheme, training=training)
    if any(p.check == "missing-column" for p in report.problems):
        return report
    cohort = _to_cohort(table, path.parent, scheme)
    if check_images:
        cases = [
            CaseCheck(
                int(getattr(r, ROW)),
                r.case_id,
                r.image,
                r.mask,
                int(r.mask_label),
                min_roi_voxels,
                tolerance,
                _series_uid(r),
            )
            for r in cohort.itertuples(index=False)
            if r.image and r.mask
        ]
        results = run_tasks(
            check_case, cases, jobs=jobs, description="checking images", progress=progress
        )
        for case, result in zip(cases, results, strict=True):
            if isinstance(result, TaskFailure):
                result = [Problem("check-failed", result.reason, case.row, case.case_id)]
            report.problems += result
        report.problems += same_image_problems(cohort)
    report.problems.sort(key=lambda p: (p.row or 0, p.severity != "error", p.check))
    report.cohort = cohort if report.ok else None
    return report


# ---------------------------------------------------------------------------------------------
# training rows and patient-grouped splits


def labelled_rows(cohort: pd.DataFrame, name: str) -> pd.DataFrame:
    """The labelled cases of cohort ``name`` (what anything learned may be fitted on when
    ``name`` is the training cohort); raises ``ValueError`` when there are none."""
    rows = cohort[(cohort["cohort"] == name) & cohort["label"].notna()]
    if rows.empty:
        raise ValueError(f"no labelled cases in the cohort '{name}'")
    return rows


def patient_folds(y, groups, n_splits: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Class-stratified folds in which a patient's vertebrae never straddle two folds.

    ``StratifiedGroupKFold`` (shuffled, seeded) over ``groups`` (patient ids); every row is its
    own group when ``groups`` is None. Raises ``ValueError`` when there are fewer patients than
    folds. Every cross-validation and hold-out of ovfdlr goes through this function.
    """
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    y = np.asarray(y)
    groups = np.arange(len(y)) if groups is None else np.asarray(groups)
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ValueError(f"{n_splits} folds need at least {n_splits} patients (found {n_groups})")
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class rarer than the folds is stratified as well as it can
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        return [(np.sort(a), np.sort(b)) for a, b in splitter.split(np.zeros(len(y)), y, groups)]


# ---------------------------------------------------------------------------------------------
# summaries


def class_table(cohort: pd.DataFrame) -> pd.DataFrame:
    """Cases per cohort x class (unlabelled cases in their own column), with totals."""
    labels = cohort["label"].astype("object").where(cohort["label"].notna(), "unlabelled")
    labels = labels.map(lambda v: v if v == "unlabelled" else f"class {int(v)}")
    table = pd.crosstab(cohort["cohort"], labels, margins=True, margins_name=TOTAL)
    table.insert(len(table.columns) - 1, "patients", _patients_per(cohort, "cohort", table.index))
    return table.rename_axis(index="cohort", columns=None)


def centre_table(cohort: pd.DataFrame) -> pd.DataFrame:
    """Cases per centre x cohort, with totals and the number of patients per centre."""
    table = pd.crosstab(cohort["centre"], cohort["cohort"], margins=True, margins_name=TOTAL)
    table["patients"] = _patients_per(cohort, "centre", table.index)
    return table.rename_axis(index="centre", columns=None)


def _patients_per(cohort: pd.DataFrame, column: str, index: pd.Index) -> list[int]:
    counts = cohort.groupby(column)["patient_id"].nunique()
    return [int(counts.get(k, cohort["patient_id"].nunique() if k == TOTAL else 0)) for k in index]
