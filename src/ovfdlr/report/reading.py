"""A run folder as the report reads it, and the page's building blocks: tables (display
strings, or links, with their CSV), embedded figures (with their PNG and SVG), and the one
error the report raises for a run folder it cannot be built from.

Only files that ``ovfdlr run`` writes are read (see :mod:`ovfdlr.report.context`); the tables
and figures the report derives are written under ``tables/report/`` and ``figures/report/``.
"""

from __future__ import annotations

import base64
import copy
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ovfdlr.layout import ArmLayout, RunLayout
from ovfdlr.records import RecordError, read_arm, to_data
from ovfdlr.report import formatting as fmt


class ReportError(ValueError):
    """A run folder the report cannot be built from; the message names the file and the fault."""


@dataclass
class Figure:
    """A PNG figure embedded as a data URI, with links to its PNG and SVG files."""

    title: str
    src: str
    png: str
    svg: str | None = None


@dataclass(frozen=True)
class Link:
    """A table cell that links somewhere (a section of the page, a file)."""

    text: str
    href: str

    def __str__(self) -> str:
        return self.text


@dataclass
class Table:
    """A table as display strings (or :class:`Link` cells), with a link to its CSV file.

    Tables of more than :data:`COLLAPSE_ROWS` rows are shown collapsed (the CSV linked)."""

    columns: list[str]
    rows: list[list[str | Link]]
    csv: str | None = None
    row_classes: list[str] = field(default_factory=list)
    caption: str = ""

    @property
    def collapsed(self) -> bool:
        return len(self.rows) > COLLAPSE_ROWS


COLLAPSE_ROWS = 25


class RunFolder:
    """A run folder and the folder the report is written to (links are relative to it).

    Each ``arm.json`` and CSV table is read once per report, whichever sections use it (the
    cohort, performance and comparison tables feed several); callers get their own copy."""

    def __init__(self, run_dir: Path, report_dir: Path):
        self.root = Path(run_dir)
        self.layout = RunLayout(self.root)
        self.report_dir = Path(report_dir)
        self._read: dict[tuple, object] = {}

    def path(self, relative: str | Path) -> Path:
        return self.root / relative

    def arm(self, name: str, info: dict) -> ArmLayout:
        """The folder of arm ``name`` (its ``run.json`` entry ``info`` names it)."""
        return self.layout.arm(name, info.get("folder"))

    def read_arm(self, arm: ArmLayout) -> dict:
        """An arm's ``arm.json`` (migrated from older versions), as JSON data."""
        key = ("arm", arm.arm_json)
        if key not in self._read:
            try:
                self._read[key] = to_data(read_arm(arm.arm_json))
            except RecordError as exc:
                raise ReportError(str(exc)) from None
        return copy.deepcopy(self._read[key])

    def link(self, path: Path) -> str:
        """``path`` relative to the report's folder, with forward slashes."""
        return Path(os.path.relpath(path, self.report_dir)).as_posix()

    def read_json(self, path: Path) -> dict:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ReportError(f"{path} is not valid JSON: {exc}") from exc

    def read_csv(self, path: Path, **kwargs) -> pd.DataFrame:
        """A CSV table of the run (``kwargs`` go to :func:`pandas.read_csv`); a malformed one
        is a :class:`ReportError` naming the file."""
        key = ("csv", Path(path), repr(sorted(kwargs.items())))
        if key not in self._read:
            try:
                self._read[key] = pd.read_csv(path, **kwargs)
            except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
                raise ReportError(f"{path} is not a readable CSV table: {exc}") from exc
        return self._read[key].copy()

    def write_table(self, name: str, frame: pd.DataFrame, index: bool = False) -> str:
        """Write a table the report derives (``tables/report/<name>.csv``); return its link."""
        from ovfdlr.atomic import atomic_write

        path = self.layout.report_table(name)
        atomic_write(path, lambda temporary: frame.to_csv(temporary, index=index))
        return self.link(path)

    def draw(self, figure, stem: str, title: str) -> Figure:
        """Save a figure the report draws (``figures/report/<stem>.png`` and ``.svg``) and
        embed it."""
        from ovfdlr.report import figures

        path = self.layout.report_figures / stem
        figures.save(figure, path)
        return self.figure(path.with_suffix(".png"), title)

    def figure(self, path: Path, title: str) -> Figure:
        """Embed the PNG at ``path``; link it and its SVG twin when there is one."""
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        svg = path.with_suffix(".svg")
        return Figure(
            title,
            f"data:image/png;base64,{data}",
            self.link(path),
            self.link(svg) if svg.is_file() else None,
        )


def frame_table(
    frame: pd.DataFrame, csv: str | None = None, digits: int = 3, caption: str = ""
) -> Table:
    """A table from a data frame as it stands, numbers with ``digits`` decimals."""

    def cell(value) -> str:
        if isinstance(value, float) and not fmt.is_missing(value) and value.is_integer():
            return str(int(value))
        return fmt.number(value, digits) if isinstance(value, float) else str(value)

    rows = [[cell(v) for v in row] for row in frame.itertuples(index=False)]
    return Table([str(c) for c in frame.columns], rows, csv, caption=caption)


def ci_text(row: pd.Series, name: str, digits: int = 3) -> str:
    """``row[name]`` with its ``<name>_lower``-``<name>_upper`` interval."""
    return fmt.estimate(
        row.get(name), row.get(f"{name}_lower"), row.get(f"{name}_upper"), digits=digits
    )
