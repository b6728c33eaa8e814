"""TotalSegmentator outputs -> manifest rows (one per vertebra), see docs/totalsegmentator.md.

Vertebra names and label numbers come from named tables (:data:`NUMBERINGS`), never from
arithmetic on a guessed offset:

- ``v2`` (default): TotalSegmentator v2, ``--task total``.
- ``v1``: TotalSegmentator v1, ``--task total`` (no S1 class).
- ``verse``: the VerSe challenge numbering (C1 = 1 ... L5 = 24, L6 = 25, sacrum 26).

Inputs per CT: the multi-label map (``--ml``) or the per-structure folder
(``vertebrae_L1.nii.gz`` ... binary masks; a missing or empty file means the vertebra is
absent), optionally the ``vertebrae_body`` task's output (1 = vertebral body, 2 =
intervertebral discs) to keep only the vertebral bodies. :func:`build_manifest` returns the
rows; :func:`write_manifest` writes the manifest and any derived label map all at once, or
nothing.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ovfdlr import imaging
from ovfdlr.cohort import DEMOGRAPHIC_COLUMNS, read_text_csv
from ovfdlr.cohort import MANIFEST_COLUMNS as ALL_MANIFEST_COLUMNS
from ovfdlr.labels import LabelError, LabelScheme, resolve


class TotalSegError(ValueError):
    """TotalSegmentator inputs that cannot become a manifest; one line naming the file and key."""


# ---------------------------------------------------------------------------------------------
# numberings

# Cranial to caudal: the order of the rows of one CT.
LEVEL_ORDER = (
    *(f"C{i}" for i in range(1, 8)),
    *(f"T{i}" for i in range(1, 13)),
    *(f"L{i}" for i in range(1, 7)),
    "S1",
)

# TotalSegmentator's class maps: wasserth/TotalSegmentator, totalsegmentator/map_to_binary.py,
# class_map["total"] (v2) and class_map["total_v1"] (v1), copied name by name. v1 has no
# vertebrae_S1 class (its "sacrum", 92, is not a vertebra); v2's "sacrum" (25) is not a vertebra
# either, only vertebrae_S1 (26) is.
TOTALSEG_V2 = {
    "S1": 26,
    "L5": 27,
    "L4": 28,
    "L3": 29,
    "L2": 30,
    "L1": 31,
    "T12": 32,
    "T11": 33,
    "T10": 34,
    "T9": 35,
    "T8": 36,
    "T7": 37,
    "T6": 38,
    "T5": 39,
    "T4": 40,
    "T3": 41,
    "T2": 42,
    "T1": 43,
    "C7": 44,
    "C6": 45,
    "C5": 46,
    "C4": 47,
    "C3": 48,
    "C2": 49,
    "C1": 50,
}
TOTALSEG_V1 = {
    "L5": 18,
    "L4": 19,
    "L3": 20,
    "L2": 21,
    "L1": 22,
    "T12": 23,
    "T11": 24,
    "T10": 25,
    "T9": 26,
    "T8": 27,
    "T7": 28,
    "T6": 29,
    "T5": 30,
    "T4": 31,
    "T3": 32,
    "T2": 33,
    "T1": 34,
    "C7": 35,
    "C6": 36,
    "C5": 37,
    "C4": 38,
    "C3": 39,
    "C2": 40,
    "C1": 41,
}
# VerSe (Sekuboyina et al., Med Image Anal 2021): C1-C7 1-7, T1-T12 8-19, L1-L5 20-24, L6 25,
# sacrum 26 (named S1 here; "sacrum" is accepted as its name in this numbering).
VERSE = {
    "C1": 1,
    "C2": 2,
    "C3": 3,
    "C4": 4,
    "C5": 5,
    "C6": 6,
    "C7": 7,
    "T1": 8,
    "T2": 9,
    "T3": 10,
    "T4": 11,
    "T5": 12,
    "T6": 13,
    "T7": 14,
    "T8": 15,
    "T9": 16,
    "T10": 17,
    "T11": 18,
    "T12": 19,
    "L1": 20,
    "L2": 21,
    "L3": 22,
    "L4": 23,
    "L5": 24,
    "L6": 25,
    "S1": 26,
}
NUMBERINGS: dict[str, dict[str, int]] = {"v2": TOTALSEG_V2, "v1": TOTALSEG_V1, "verse": VERSE}
_ALIASES = {"verse": {"SACRUM": "S1"}}

BODY_LABEL = 1  # vertebrae_body task: 1 vertebrae_body, 2 intervertebral_discs
# the manifest's columns (ovfdlr.cohort) this module fills for every row; the demographic ones
# only when the label CSV gives them (series_uid never: a CT folder holds one series)
MANIFEST_COLUMNS = tuple(
    c for c in ALL_MANIFEST_COLUMNS if c not in (*DEMOGRAPHIC_COLUMNS, "series_uid")
)
OPTIONAL_COLUMNS = DEMOGRAPHIC_COLUMNS
WARNING_COLUMNS = ("ct", "level", "case_id", "check", "message")


def _table(numbering: str) -> dict[str, int]:
    try:
        return NUMBERINGS[numbering]
    except KeyError:
        raise TotalSegError(
            f"unknown numbering '{numbering}' (choose from {', '.join(NUMBERINGS)})"
        ) from None


def _levels_of(numbering: str) -> list[str]:
    table = _table(numbering)
    return [level for level in LEVEL_ORDER if level in table]


def _normalise(name: str, numbering: str) -> str:
    text = str(name).strip()
    if text.lower().startswith("vertebrae_"):
        text = text[len("vertebrae_") :]
    text = text.upper()
    return _ALIASES.get(numbering, {}).get(text, text)


def vertebra_level(name: str, numbering: str = "v2") -> str:
    """The level (``L1``) of a vertebra name (``L1``, ``vertebrae_L1``, any case).

    Raises :class:`TotalSegError` naming the name and the numbering when it has no such
    vertebra.
    """
    level = _normalise(name, numbering)
    if level not in _table(numbering):
        raise TotalSegError(
            f"unknown vertebra '{name}' in numbering '{numbering}' "
            f"(known: {', '.join(_levels_of(numbering))})"
        )
    return level


def vertebra_label(name: str, numbering: str = "v2") -> int:
    """The label number of a vertebra (``L1``, ``vertebrae_L1``, case-insensitive) in
    ``numbering`` (``v2``, ``v1`` or ``verse``): ``vertebra_label("L1") == 31``,
    ``vertebra_label("L1", "verse") == 20``.

    Raises :class:`TotalSegError` (a ``ValueError``) naming the name and the numbering.
    """
    return _table(numbering)[vertebra_level(name, numbering)]


def vertebra_name(label: int, numbering: str = "v2") -> str:
    """The level (``L1``) of label number ``label`` in ``numbering``; raises
    :class:`TotalSegError` when the label is no vertebra there."""
    for level, value in _table(numbering).items():
        if value == int(label):
            return level
    raise TotalSegError(f"label {label} is not a vertebra in numbering '{numbering}'")


def parse_levels(levels: str | Iterable[str] | None, numbering: str = "v2") -> list[str] | None:
    """Levels from ``"L1,L2,T12"`` or a list of names (validated); ``None`` for all levels."""
    if levels is None:
        return None
    names = levels.split(",") if isinstance(levels, str) else list(levels)
    names = [n.strip() for n in names if n.strip()]
    if not names:
        return None
    out = []
    for name in names:
        try:
            out.append(vertebra_level(name, numbering))
        except TotalSegError as exc:
            raise TotalSegError(f"--levels: {exc}") from None
    return out


# ---------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class CaseInputs:
    """One CT and its TotalSegmentator outputs."""

    ct: Path
    stem: str  # file name without its image suffix (a DICOM folder: its name)
    seg: Path  # multi-label file or per-structure folder
    body: Path | None = None  # vertebrae_body output (multi-label file or its binary mask)

    @property
    def seg_is_folder(self) -> bool:
        return self.seg.is_dir()


def image_stem(path: str | Path) -> str:
    """File name without its image suffix: ``example_ct.nii.gz`` -> ``example_ct``."""
    name = Path(path).name
    for suffix in imaging.IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(imaging.IMAGE_SUFFIXES)


def _structure_file(folder: Path, level: str) -> Path | None:
    for suffix in (".nii.gz", ".nii"):
        path = folder / f"vertebrae_{level}{suffix}"
        if path.is_file():
            return path
    return None


def _is_structure_folder(folder: Path) -> bool:
    return folder.is_dir() and any(folder.glob("vertebrae_*.nii*"))


def _per_ct(folder: Path, stem: str, ct: Path, option: str, inner: str | None = None) -> Path:
    """``folder/<stem>.<suffix>`` or ``folder/<stem>/`` (``/<inner>`` when given)."""
    found = [
        folder / f"{stem}{s}" for s in imaging.IMAGE_SUFFIXES if (folder / f"{stem}{s}").is_file()
    ]
    sub = folder / stem
    if sub.is_dir():
        if inner is None:
            found.append(sub)
        elif (sub / inner).is_file():
            found.append(sub / inner)
    if not found:
        expected = f"{folder / stem}.nii.gz or {sub}/" + (inner or "")
        raise TotalSegError(
            f"{folder}: no {option} output for the CT {ct.name} (expected {expected})"
        )
    if len(found) > 1:
        raise TotalSegError(
            f"{folder}: several {option} outputs for the CT {ct.name} "
            f"({', '.join(p.name for p in found)}); keep one"
        )
    return found[0]


def find_inputs(
    ct: str | Path, seg: str | Path, body: str | Path | None = None
) -> list[CaseInputs]:
    """Pair each CT with its TotalSegmentator outputs.

    ``ct`` is a CT file, a DICOM series folder, or a folder of CT files (NIfTI, NRRD, MHA/MHD).
    For one CT, ``seg`` is the multi-label file or the per-structure folder, and ``body`` the
    ``vertebrae_body`` multi-label file or its folder (``vertebrae_body.nii.gz``). For a folder
    of CTs, ``seg`` (and ``body``) are folders holding per CT ``<ct stem>.nii.gz`` or a
    subfolder ``<ct stem>/`` (the per-structure folder; for ``body`` holding
    ``vertebrae_body.nii.gz``).
    """
    ct, seg = Path(ct), Path(seg)
    body = Path(body) if body is not None else None
    if not ct.exists():
        raise TotalSegError(f"{ct}: CT not found")
    cts = sorted(p for p in ct.iterdir() if _is_image_file(p)) if ct.is_dir() else []
    batch = bool(cts)
    if not batch:
        cts = [ct]
    stems: dict[str, Path] = {}
    for path in cts:
        stem = image_stem(path)
        if stem in stems:
            raise TotalSegError(
                f"{ct}: two CTs with the stem '{stem}' ({stems[stem].name}, {path.name})"
            )
        stems[stem] = path
    for path, option in ((seg, "--seg"), (body, "--body")):
        if path is not None and not path.exists():
            raise TotalSegError(f"{path}: {option} not found")
        if batch and path is not None and not path.is_dir():
            raise TotalSegError(
                f"{path}: {option} must be a folder when the CTs are a folder ({ct}): one "
                "<ct stem>.nii.gz or <ct stem>/ per CT"
            )
    cases = []
    for stem, path in stems.items():
        if seg.is_file() or (not batch and _is_structure_folder(seg)):
            seg_path = seg
        else:
            seg_path = _per_ct(seg, stem, path, "--seg")
        body_path = None
        if body is not None:
            if body.is_file():
                body_path = body
            elif not batch and (body / "vertebrae_body.nii.gz").is_file():
                body_path = body / "vertebrae_body.nii.gz"
            else:
                body_path = _per_ct(body, stem, path, "--body", "vertebrae_body.nii.gz")
        cases.append(CaseInputs(path, stem, seg_path, body_path))
    return cases


# ---------------------------------------------------------------------------------------------
# the label CSV


@dataclass(frozen=True)
class LabelRow:
    row: int  # spreadsheet row (the header is row 1)
    key: str
    level: str
    values: dict[str, str]


def read_label_csv(
    path: str | Path,
    *,
    key: str = "image",
    numbering: str = "v2",
    labels: LabelScheme | str | None = None,
) -> list[LabelRow]:
    """Rows of a label CSV keyed by ``key`` (the CT's file name, or its stem) and ``level``,
    with ``patient_id``, ``label``, ``cohort``, ``centre``, ``age``, ``sex``, ``scan_date``
    where given (other columns are ignored). Labels are checked against the label scheme.
    Raises :class:`TotalSegError` naming the file, the row and the key."""
    path = Path(path)
    scheme = resolve(labels)
    if not path.is_file():
        raise TotalSegError(f"{path}: label CSV not found")
    try:
        table = read_text_csv(path)
    except ValueError as exc:
        raise TotalSegError(f"{path}: {exc}") from None
    for column in (key, "level"):
        if column not in table.columns:
            raise TotalSegError(
                f"{path}: no '{column}' column (columns: {', '.join(table.columns)})"
            )
    kept = ["patient_id", "label", "cohort", "centre", *OPTIONAL_COLUMNS]
    rows: list[LabelRow] = []
    seen: dict[tuple[str, str], int] = {}
    for number, record in enumerate(table.to_dict("records"), start=2):
        record = {k: str(v).strip() for k, v in record.items()}
        if not any(record.values()):
            continue
        value = record[key]
        where = f"{path}: row {number} ({key} '{value}', level '{record['level']}')"
        if not value:
            raise TotalSegError(f"{where}: '{key}' is empty")
        try:
            level = vertebra_level(record["level"], numbering)
        except TotalSegError as exc:
            raise TotalSegError(f"{where}: {exc}") from None
        label = record.get("label", "")
        try:
            scheme.encode(label)
        except LabelError as exc:
            raise TotalSegError(f"{where}: {exc}") from None
        if label:
            record["label"] = str(int(float(label)))
        ident = (Path(value).name, level)
        if ident in seen:
            raise TotalSegError(f"{where}: duplicates row {seen[ident]}")
        seen[ident] = number
        values = {c: record[c] for c in kept if c in record}
        rows.append(LabelRow(number, value, level, values))
    return rows


def _matches(value: str, case: CaseInputs) -> bool:
    name = Path(value).name
    return name in (case.ct.name, case.stem)


# ---------------------------------------------------------------------------------------------
# one CT


def _read(path: Path, what: str, case: CaseInputs) -> sitk.Image:
    try:
        image = imaging.read_image(path)
    except imaging.ImageReadError as exc:
        raise TotalSegError(f"{exc} ({what} of the CT {case.ct.name})") from None
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise TotalSegError(f"{path}: several components per voxel; a label map is expected")
    return image


def _on_grid(ct: sitk.Image, image: sitk.Image, path: Path, case: CaseInputs) -> np.ndarray:
    problems = imaging.geometry_mismatches(ct, image)
    if problems:
        raise TotalSegError(f"{path}: not on the grid of the CT {case.ct}: {'; '.join(problems)}")
    return sitk.GetArrayFromImage(image)


@dataclass
class _Finding:
    ct: str
    level: str
    case_id: str
    check: str
    message: str


def _vertebra_map(
    case: CaseInputs, ct: sitk.Image, numbering: str, findings: list[_Finding]
) -> np.ndarray:
    """The case's vertebra label map (numbering's labels, 0 elsewhere; other labels dropped)."""
    table = _table(numbering)
    if not case.seg_is_folder:
        array = _on_grid(ct, _read(case.seg, "segmentation", case), case.seg, case)
        out = np.where(np.isin(array, list(table.values())), array, 0).astype(np.uint8)
        return out
    out = np.zeros(sitk.GetArrayViewFromImage(ct).shape, np.uint8)
    known = {f"vertebrae_{level}" for level in table}
    for path in sorted(case.seg.glob("vertebrae_*.nii*")):
        name = path.name.split(".")[0]
        if name not in known:
            findings.append(
                _Finding(
                    case.ct.name,
                    "",
                    "",
                    "not-in-numbering",
                    f"{path}: not a vertebra of numbering '{numbering}'; ignored",
                )
            )
    for level in _levels_of(numbering):
        path = _structure_file(case.seg, level)
        if path is None:
            continue
        inside = _on_grid(ct, _read(path, "segmentation", case), path, case) > 0
        overlap = int(np.count_nonzero(inside & (out > 0)))
        if overlap:
            findings.append(
                _Finding(
                    case.ct.name,
                    level,
                    "",
                    "overlap",
                    f"{path}: {overlap} voxel(s) also in another vertebra; given to {level}",
                )
            )
        out[inside] = table[level]
    return out


def _relative(path: Path, base: Path) -> str:
    path, base = Path(path).resolve(), Path(base).resolve()
    try:
        return path.relative_to(base).as_posix()
    except ValueError:
        return str(path)


def _read_label_rows(
    labels_csv: str | Path | None,
    key: str,
    numbering: str,
    scheme: LabelScheme,
    cases: list[CaseInputs],
) -> list[LabelRow]:
    """The label CSV's rows (none without a CSV), each checked to match one of the CTs."""
    label_rows = (
        read_label_csv(labels_csv, key=key, numbering=numbering, labels=scheme)
        if labels_csv is not None
        else []
    )
    for row in label_rows:
        if not any(_matches(row.key, case) for case in cases):
            raise TotalSegError(
                f"{labels_csv}: row {row.row} ({key} '{row.key}', level {row.level}): matches "
                f"no CT ({', '.join(c.ct.name for c in cases)})"
            )
    return label_rows


def _derived_mask_dir(mask_dir: str | Path | None) -> Path:
    """The folder for derived label maps, created; raises when none is given."""
    if mask_dir is None:
        raise TotalSegError("derived label maps need a mask_dir to be written into")
    mask_dir = Path(mask_dir)
    mask_dir.mkdir(parents=True, exist_ok=True)
    return mask_dir


def _present_levels(
    case: CaseInputs,
    vertebrae: np.ndarray,
    numbering: str,
    wanted: list[str] | None,
    findings: list[_Finding],
) -> list[str]:
    """The levels present in the case's vertebra map, cranial to caudal; raises when none is.

    Records a ``level-absent`` warning for each asked level that is not present.
    """
    table = _table(numbering)
    present = [lv for lv in _levels_of(numbering) if np.any(vertebrae == table[lv])]
    if not present:
        raise TotalSegError(
            f"{case.seg}: no vertebra of numbering '{numbering}' in the segmentation of "
            f"the CT {case.ct.name} (labels {min(table.values())}-{max(table.values())})"
        )
    for level in wanted or []:
        if level not in present:
            findings.append(
                _Finding(
                    case.ct.name,
                    level,
                    f"{case.stem}_{level}",
                    "level-absent",
                    f"{case.ct.name}: {level} is not in the segmentation {case.seg}",
                )
            )
    return present


def _body_only(case: CaseInputs, image: sitk.Image, vertebrae: np.ndarray) -> np.ndarray:
    """The vertebra map kept only where the case's vertebrae_body output is the body label
    (the map itself when the case has no body output)."""
    if case.body is None:
        return vertebrae
    inside = _on_grid(image, _read(case.body, "vertebrae_body output", case), case.body, case)
    return np.where(inside == BODY_LABEL, vertebrae, 0).astype(np.uint8)


def _write_derived(case: CaseInputs, image: sitk.Image, final: np.ndarray, mask_dir: Path) -> Path:
    """Write the case's derived label map into ``mask_dir`` on the CT's grid; its path."""
    suffix = "vertebral_bodies" if case.body is not None else "vertebrae"
    mask_path = mask_dir / f"{case.stem}_{suffix}.nii.gz"
    written = sitk.GetImageFromArray(final)
    written.CopyInformation(image)
    sitk.WriteImage(written, str(mask_path), useCompression=True)
    return mask_path


def _vertebra_rows(
    index: int,
    case: CaseInputs,
    final: np.ndarray,
    mask_path: Path,
    present: list[str],
    *,
    numbering: str,
    wanted: list[str] | None,
    drop_cut: bool,
    findings: list[_Finding],
    left_out: dict[tuple[int, str], str],
) -> list[dict]:
    """One row per wanted vertebra present in ``final`` (label CSV columns still empty).

    Records ``no-body`` and ``roi-border`` warnings; vertebrae left out go into ``left_out``
    with the reason.
    """
    table = _table(numbering)
    rows: list[dict] = []
    for level in present:
        if wanted is not None and level not in wanted:
            continue
        case_id = f"{case.stem}_{level}"

        def note(check: str, message: str, name=case.ct.name, level=level, case_id=case_id) -> None:
            findings.append(_Finding(name, level, case_id, check, message))

        roi = final == table[level]
        if not np.any(roi):
            reason = "no vertebral-body voxels (vertebrae_body == 1)"
            note("no-body", f"{case_id}: {reason} in {case.body}; left out")
            left_out[(index, level)] = reason
            continue
        if imaging.roi_touches_border(roi):
            if drop_cut:
                reason = "touches the scan edge (--drop-cut)"
                note("roi-border", f"{case_id}: {reason}; left out")
                left_out[(index, level)] = reason
                continue
            note("roi-border", f"{case_id}: touches the scan edge; the vertebra may be cut off")
        rows.append(
            {
                "_case": index,
                "case_id": case_id,
                "patient_id": "",
                "image": str(case.ct.resolve()),
                "mask": str(Path(mask_path).resolve()),
                "mask_label": table[level],
                "label": "",
                "cohort": "",
                "centre": "",
                "level": level,
            }
        )
    return rows


def _join_label_rows(
    label_rows: list[LabelRow],
    cases: list[CaseInputs],
    *,
    labels_csv: str | Path | None,
    key: str,
    wanted: list[str] | None,
    left_out: dict[tuple[int, str], str],
    present_of: dict[int, set[str]],
    findings: list[_Finding],
) -> tuple[dict[tuple[int, str], LabelRow], dict[int, dict[str, str]]]:
    """Match the label CSV's rows to the vertebrae: the row per (CT index, level), and the
    first ``patient_id`` / ``cohort`` / ``centre`` given per CT (for vertebrae without a row).

    Rows of left-out vertebrae are ignored with a ``label-row-ignored`` warning; rows of
    absent vertebrae, and duplicates, raise.
    """
    by_vertebra: dict[tuple[int, str], LabelRow] = {}
    ct_values: dict[int, dict[str, str]] = {}
    for row in label_rows:
        index = next(i for i, c in enumerate(cases) if _matches(row.key, c))
        for column in ("patient_id", "cohort", "centre"):
            if row.values.get(column):
                ct_values.setdefault(index, {}).setdefault(column, row.values[column])
        where = f"{labels_csv}: row {row.row} ({key} '{row.key}', level {row.level})"
        if wanted is not None and row.level not in wanted:
            continue
        if (index, row.level) in left_out:
            findings.append(
                _Finding(
                    cases[index].ct.name,
                    row.level,
                    f"{cases[index].stem}_{row.level}",
                    "label-row-ignored",
                    f"{where}: ignored, {row.level} was left out: {left_out[(index, row.level)]}",
                )
            )
            continue
        if row.level not in present_of[index]:
            raise TotalSegError(
                f"{where}: matches no vertebra ({row.level} is not in the segmentation "
                f"{cases[index].seg})"
            )
        if (index, row.level) in by_vertebra:
            raise TotalSegError(f"{where}: duplicates row {by_vertebra[(index, row.level)].row}")
        by_vertebra[(index, row.level)] = row
    return by_vertebra, ct_values


def _fill_rows(
    rows: list[dict],
    cases: list[CaseInputs],
    by_vertebra: dict[tuple[int, str], LabelRow],
    ct_values: dict[int, dict[str, str]],
    extra: list[str],
    *,
    cohort: str,
    centre: str | None,
) -> None:
    """Fill each row's label CSV columns in place (the vertebra's row, then the CT's values,
    then the defaults); raises for a row left without a centre."""
    for row in rows:
        index = row.pop("_case")
        given = by_vertebra.get((index, row["level"]))
        values = dict(given.values) if given else {}
        defaults = {
            "patient_id": cases[index].stem,
            "cohort": cohort,
            "centre": centre or "",
        } | ct_values.get(index, {})
        for column in ("patient_id", "cohort", "centre"):
            row[column] = values.get(column) or defaults[column]
        row["label"] = values.get("label", "")
        for column in extra:
            row[column] = values.get(column, "")
        if not row["centre"]:
            raise TotalSegError(
                f"{cases[index].ct}: no centre for {row['case_id']}: give --centre or a "
                "'centre' column in the label CSV"
            )


def build_manifest(
    ct: str | Path,
    seg: str | Path,
    *,
    body: str | Path | None = None,
    labels_csv: str | Path | None = None,
    key: str = "image",
    levels: str | Iterable[str] | None = None,
    numbering: str = "v2",
    labels: LabelScheme | str | None = None,
    drop_cut: bool = False,
    cohort: str = "train",
    centre: str | None = None,
    mask_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Manifest rows (one per vertebra present) from TotalSegmentator outputs.

    ``ct``, ``seg`` and ``body`` as in :func:`find_inputs`. Rows are ordered by CT, then
    cranial to caudal; ``case_id`` is ``<ct stem>_<level>``, ``patient_id`` the CT stem unless
    the label CSV gives one. With ``body`` (or a per-structure ``seg`` folder) one derived label
    map per CT is written into ``mask_dir`` (``<stem>_vertebral_bodies.nii.gz``: vertebra
    labels kept only where the vertebrae_body output is 1; ``<stem>_vertebrae.nii.gz``: the
    structure files as one map) and every row of the CT references it; otherwise the rows
    reference the multi-label map itself. Paths are absolute.

    Warnings are recorded in ``frame.attrs["warnings"]`` (dicts with ``ct``, ``level``,
    ``case_id``, ``check``, ``message``): ``no-body`` (a vertebra without vertebral-body
    voxels, left out), ``roi-border`` (kept, or left out with ``drop_cut``), ``level-absent``
    (an asked level not in the segmentation), ``label-row-ignored`` and others.
    Raises :class:`TotalSegError`, one line naming the file and the key, for bad input.
    """
    scheme = resolve(labels)
    _table(numbering)  # an unknown numbering fails before anything is read
    wanted = parse_levels(levels, numbering)
    cases = find_inputs(ct, seg, body)
    label_rows = _read_label_rows(labels_csv, key, numbering, scheme, cases)
    derived = body is not None or any(c.seg_is_folder for c in cases)
    if derived:
        mask_dir = _derived_mask_dir(mask_dir)

    findings: list[_Finding] = []
    rows: list[dict] = []
    left_out: dict[tuple[int, str], str] = {}
    present_of: dict[int, set[str]] = {}
    for index, case in enumerate(cases):
        image = _read(case.ct, "CT", case)
        vertebrae = _vertebra_map(case, image, numbering, findings)
        present = _present_levels(case, vertebrae, numbering, wanted, findings)
        present_of[index] = set(present)
        final = _body_only(case, image, vertebrae)
        mask_path = _write_derived(case, image, final, mask_dir) if derived else case.seg
        rows += _vertebra_rows(
            index,
            case,
            final,
            mask_path,
            present,
            numbering=numbering,
            wanted=wanted,
            drop_cut=drop_cut,
            findings=findings,
            left_out=left_out,
        )

    by_vertebra, ct_values = _join_label_rows(
        label_rows,
        cases,
        labels_csv=labels_csv,
        key=key,
        wanted=wanted,
        left_out=left_out,
        present_of=present_of,
        findings=findings,
    )
    extra = [c for c in OPTIONAL_COLUMNS if any(c in r.values for r in label_rows)]
    _fill_rows(rows, cases, by_vertebra, ct_values, extra, cohort=cohort, centre=centre)
    if not rows:
        raise TotalSegError(f"{ct}: no vertebra left to write (see the warnings)")
    frame = pd.DataFrame(rows, columns=[*MANIFEST_COLUMNS, *extra])
    frame.attrs["warnings"] = [vars(f) for f in findings]
    return frame


def warnings_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The warnings recorded by :func:`build_manifest` as a table."""
    return pd.DataFrame(frame.attrs.get("warnings", []), columns=list(WARNING_COLUMNS))


def write_manifest(ct: str | Path, seg: str | Path, out: str | Path, **options) -> pd.DataFrame:
    """Build the manifest (:func:`build_manifest`, same ``options``) and write it to ``out``,
    with the derived label maps in ``<out stem>_masks/`` and the warnings in
    ``<out stem>_warnings.csv`` beside it. Paths in the manifest are relative to its folder
    when inside it, absolute otherwise.

    Everything is written into a temporary folder beside ``out`` and moved into place only
    when complete, so an error leaves no partial output (and an older output untouched).
    Returns the rows as written (``attrs["warnings"]`` kept).
    """
    out = Path(out)
    if out.is_dir():
        raise TotalSegError(f"{out}: is a folder; give the manifest CSV to write")
    folder = out.parent
    folder.mkdir(parents=True, exist_ok=True)
    final_masks = folder / f"{out.stem}_masks"
    warnings_path = folder / f"{out.stem}_warnings.csv"
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder))
    try:
        staged_masks = staging / "masks"
        frame = build_manifest(ct, seg, mask_dir=staged_masks, **options)
        found = frame.attrs.get("warnings", [])

        def place(value: str) -> str:
            path = Path(value)
            if path.parent == staged_masks.resolve():
                path = final_masks / path.name
            return _relative(path, folder)

        frame["image"] = frame["image"].map(place)
        frame["mask"] = frame["mask"].map(place)
        frame.attrs["warnings"] = found
        frame.to_csv(staging / "manifest.csv", index=False)
        warnings_frame(frame).to_csv(staging / "warnings.csv", index=False)
        if staged_masks.is_dir():
            if final_masks.exists() or final_masks.is_symlink():
                final_masks.rename(staging / "old-masks")
            staged_masks.rename(final_masks)
        os.replace(staging / "warnings.csv", warnings_path)
        os.replace(staging / "manifest.csv", out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return frame


__all__ = [
    "LEVEL_ORDER",
    "NUMBERINGS",
    "CaseInputs",
    "TotalSegError",
    "build_manifest",
    "find_inputs",
    "image_stem",
    "parse_levels",
    "read_label_csv",
    "vertebra_label",
    "vertebra_level",
    "vertebra_name",
    "warnings_frame",
    "write_manifest",
]
