"""The run report: one self-contained HTML page built from a run folder.

:func:`render_report` reads what ``ovfdlr run`` wrote (see :mod:`ovfdlr.report.context` and
docs/report.md) and fills ``template.html.j2``. Every figure is embedded as a base64 PNG data
URI and the styles are inline, so the page needs no network and no other file to display; the
CSV tables and the PNG/SVG figures beside it are linked by their paths relative to the report.
"""

from __future__ import annotations

import os
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from ovfdlr.report.context import ReportError, build_context

TEMPLATE = "template.html.j2"
CHECK_ELEMENT = "report-check"  # the element the page's check script writes its results into

__all__ = ["CHECK_ELEMENT", "ReportError", "render_html", "render_report"]


def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(Path(__file__).parent),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_html(run_dir: Path, report_dir: Path) -> str:
    """The report's HTML text for ``run_dir``, with links relative to ``report_dir``."""
    context = build_context(Path(run_dir), Path(report_dir))
    return _environment().get_template(TEMPLATE).render(check_element=CHECK_ELEMENT, **context)


def render_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the self-contained HTML report of a run folder and return its path.

    ``out`` defaults to ``run_dir/report.html``. Raises :class:`ReportError` naming the file
    when a required file is missing or malformed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run folder not found: {run_dir}")
    out = Path(out) if out is not None else run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_html(Path(os.path.abspath(run_dir)), Path(os.path.abspath(out.parent)))
    from ovfdlr.atomic import atomic_write_text

    atomic_write_text(out, text)  # an existing report stays whole until the new one is done
    return out
