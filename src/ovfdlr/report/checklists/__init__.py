"""Reporting checklists as package data: TRIPOD+AI and CLEAR, one CSV row per (sub-)item.

Each CSV has the columns ``item`` (e.g. ``3a``), ``parent`` (the numbered item it belongs to),
``section`` (the checklist's part), ``title`` (ovfdlr's short paraphrase, not the checklist's
wording: read the original, see ``SOURCES.md``) and ``report`` (the ids of the report sections,
:data:`ovfdlr.report.sections.BY_ID`, that answer the item in whole or in part, separated by
``;``; empty when only the authors can answer it).

:func:`load` reads one checklist; :func:`mapped` keeps, of each item's sections, those that
show something in a given run, so that an item answered only by an empty section is left to
the authors (:data:`SUPPLIED_BY_AUTHORS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import pandas as pd

from ovfdlr.report.reading import Link, RunFolder, Table

COLUMNS = ["item", "parent", "section", "title", "report"]
SUPPLIED_BY_AUTHORS = "to be supplied by the authors"


@dataclass(frozen=True)
class Checklist:
    key: str  # file stem of the report's table: tables/report/checklist-<key>.csv
    name: str
    citation: str
    licence: str  # the licence of the published checklist
    items: int  # numbered items (parents): 1 .. items
    file: str  # the CSV beside this module


CHECKLISTS: tuple[Checklist, ...] = (
    Checklist(
        key="tripod-ai",
        name="TRIPOD+AI",
        citation=(
            "Collins GS, Moons KGM, Dhiman P, et al. TRIPOD+AI statement: updated guidance for "
            "reporting clinical prediction models that use regression or machine learning "
            "methods. BMJ 2024;385:e078378. doi:10.1136/bmj-2023-078378."
        ),
        licence="CC BY 4.0",
        items=27,
        file="tripod_ai.csv",
    ),
    Checklist(
        key="clear",
        name="CLEAR",
        citation=(
            "Kocak B, Baessler B, Bakas S, et al. CheckList for EvaluAtion of Radiomics research "
            "(CLEAR): a step-by-step reporting guideline for authors and reviewers endorsed by "
            "ESR and EuSoMII. Insights Imaging 2023;14:75. doi:10.1186/s13244-023-01415-8."
        ),
        licence="CC BY 4.0",
        items=58,
        file="clear.csv",
    ),
)


def load(checklist: Checklist) -> pd.DataFrame:
    """The checklist's rows, every column as text (an empty ``report`` is ``""``)."""
    from ovfdlr.report.sections import BY_ID

    with files(__name__).joinpath(checklist.file).open("r", encoding="utf-8") as f:
        frame = pd.read_csv(f, dtype=str, keep_default_na=False)
    if list(frame.columns) != COLUMNS:
        raise ValueError(f"{checklist.file}: columns {list(frame.columns)}, expected {COLUMNS}")
    unknown = {i for value in frame["report"] for i in value.split(";") if i and i not in BY_ID}
    if unknown:
        raise ValueError(f"{checklist.file}: unknown report sections {sorted(unknown)}")
    return frame


def mapped(checklist: Checklist, present: set[str]) -> pd.DataFrame:
    """Each item with ``answered_in``: its report sections that are in ``present`` (the
    sections showing something in this run), ``;``-separated, or ``""``."""
    frame = load(checklist)
    answered = [
        ";".join(i for i in value.split(";") if i and i in present) for value in frame["report"]
    ]
    return pd.DataFrame(
        {
            "item": frame["item"],
            "section": frame["section"],
            "title": frame["title"],
            "answered_in": answered,
        }
    )


def checklist_section(run: RunFolder, present: set[str]) -> list[dict[str, Any]]:
    """Every item of each reporting checklist with where this report answers it (a link to the
    section) or "to be supplied by the authors"; written as ``tables/report/checklist-*.csv``."""
    from ovfdlr.report.sections import BY_ID

    out = []
    for checklist in CHECKLISTS:
        frame = mapped(checklist, present)
        link = run.write_table(f"checklist-{checklist.key}", frame)
        rows = []
        for _, r in frame.iterrows():
            where: str | Link = SUPPLIED_BY_AUTHORS
            ids = [i for i in str(r["answered_in"]).split(";") if i]
            if ids:
                where = Link("; ".join(BY_ID[i].title for i in ids), f"#{ids[0]}")
            rows.append([str(r["item"]), str(r["section"]), str(r["title"]), where])
        table = Table(["item", "section", "topic", "where this report answers it"], rows, link)
        out.append(
            {
                "name": checklist.name,
                "citation": checklist.citation,
                "licence": checklist.licence,
                "answered": int((frame["answered_in"] != "").sum()),
                "total": len(frame),
                "table": table,
            }
        )
    return out
