"""The ``ovfdlr`` command line: thin commands over the modules that do the work."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from ovfdlr import __version__

app = typer.Typer(
    name="ovfdlr",
    help=(
        "Deep learning radiomics for osteoporotic vertebral fractures on CT: build, validate and "
        "deploy ASTLOF classifiers from radiomics, morphometry and ResNet-50 features."
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        console.print(f"ovfdlr {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """ovfdlr: ASTLOF grading of osteoporotic vertebral fractures from CT."""


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a one-line error (no traceback) and return the Exit to raise."""
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def print_frame(frame: pd.DataFrame, title: str, *, index: bool = True) -> None:
    """Print a DataFrame as a rich table."""
    table = Table(title=title, title_justify="left", header_style="bold")
    if index:
        table.add_column(str(frame.index.name or ""), style="bold")
    for column in frame.columns:
        table.add_column(str(column), justify="right")
    for key, row in frame.iterrows():
        cells = ["" if pd.isna(v) else str(v) for v in row]
        table.add_row(*([str(key)] if index else []), *cells)
    console.print(table)


# ---------------------------------------------------------------------------------------------
# validate


def _print_report(report) -> None:
    from ovfdlr.cohort import centre_table, class_table

    if report.problems:
        table = Table(
            title=f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)",
            title_justify="left",
            header_style="bold",
        )
        for column in ("severity", "row", "case_id", "check", "message"):
            table.add_column(column, overflow="fold")
        for p in report.problems:
            style = "red" if p.severity == "error" else "yellow"
            table.add_row(
                f"[{style}]{p.severity}[/]",
                "" if p.row is None else str(p.row),
                p.case_id or "",
                p.check,
                p.message,
            )
        console.print(table)
    if report.ok and report.cohort is not None:
        print_frame(class_table(report.cohort), "Cases per cohort and ASTLOF class")
        print_frame(centre_table(report.cohort), "Cases per centre and cohort")


@app.command()
def validate(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV, one row per vertebra.")],
    min_roi_voxels: Annotated[
        int, typer.Option(help="Smallest ROI (voxels) accepted as a vertebra.")
    ] = 64,
    tolerance: Annotated[
        float,
        typer.Option(
            help="Image/mask grid tolerance: spacing and origin as a fraction of the "
            "voxel spacing, direction cosines absolute."
        ),
    ] = 1e-3,
    cohort: Annotated[
        list[str] | None,
        typer.Option("--cohort", help="Allowed cohort name (repeat); default: any name."),
    ] = None,
    jobs: Annotated[int, typer.Option(help="Worker processes; 0 = all cores.")] = 0,
    problems_csv: Annotated[
        Path | None, typer.Option(help="Also write every problem to this CSV.")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Treat warnings as errors.")] = False,
) -> None:
    """Check a cohort manifest and every image and mask it names; report all problems at once.

    Exits 1 when any error is found (or any warning with --strict); a valid manifest prints the
    cases per cohort and class and per centre.
    """
    from ovfdlr.cohort import validate_manifest

    report = validate_manifest(
        manifest,
        cohorts=cohort or None,
        min_roi_voxels=min_roi_voxels,
        tolerance=tolerance,
        jobs=jobs,
        progress=True,
    )
    _print_report(report)
    if problems_csv is not None:
        report.problems_frame().to_csv(problems_csv, index=False)
    if not report.ok or (strict and report.warnings):
        raise fail(f"{manifest}: {len(report.errors)} error(s), {len(report.warnings)} warning(s)")
    console.print(f"[green]{manifest}: valid[/] ({len(report.cohort)} cases)")


# ---------------------------------------------------------------------------------------------
# synthetic cohort and demo


@app.command()
def synth(
    out: Annotated[Path, typer.Option(help="Folder to write the cohort into.")],
    n: Annotated[int | None, typer.Option(help="Number of vertebrae (default 200).")] = None,
    paper_scale: Annotated[
        bool, typer.Option(help="750 train / 187 internal / 110 external / 51 prospective.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    jobs: Annotated[int, typer.Option(help="Worker processes; 0 = all cores.")] = 0,
) -> None:
    """Generate the synthetic multi-centre vertebral CT cohort (images, masks, manifest, truth)."""
    from ovfdlr.synthetic import generate_cohort

    if n is not None and paper_scale:
        raise fail("give either --n or --paper-scale, not both")
    if n is not None and n < 1:
        raise fail(f"--n must be at least 1 (got {n})")
    manifest = generate_cohort(out, n, paper_scale=paper_scale, seed=seed, jobs=jobs)
    console.print(f"wrote {len(manifest)} cases to {out / 'manifest.csv'}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/demo"),
    n: Annotated[int | None, typer.Option(help="Number of vertebrae.")] = None,
    paper_scale: Annotated[bool, typer.Option(help="The paper's cohort sizes.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    jobs: Annotated[int, typer.Option(help="Worker processes; 0 = all cores.")] = 0,
) -> None:
    """The main job on the embedded synthetic cohort: generate it, then validate it."""
    from ovfdlr.cohort import validate_manifest
    from ovfdlr.synthetic import generate_cohort

    if n is not None and paper_scale:
        raise fail("give either --n or --paper-scale, not both")
    cohort_dir = out / "cohort"
    generate_cohort(cohort_dir, n, paper_scale=paper_scale, seed=seed, jobs=jobs)
    report = validate_manifest(cohort_dir / "manifest.csv", jobs=jobs, progress=True)
    _print_report(report)
    if not report.ok:
        raise fail(f"the generated cohort has {len(report.errors)} error(s)")
    console.print(f"[green]demo cohort ready:[/] {cohort_dir / 'manifest.csv'}")


# ---------------------------------------------------------------------------------------------
# feature extraction

extract_app = typer.Typer(
    help="Per-case features: radiomics, morphometry (cached, resumable, parallel).",
    no_args_is_help=True,
)
app.add_typer(extract_app, name="extract")

JobsOption = Annotated[int, typer.Option(help="Worker processes on this machine; 0 = all cores.")]
SchedulerOption = Annotated[
    str | None,
    typer.Option(help="Dask scheduler address (tcp://HOST:PORT): run the cases on that cluster."),
]
CacheOption = Annotated[
    Path | None,
    typer.Option(help="Per-case cache folder (default $OVFDLR_CACHE or ~/.cache/ovfdlr)."),
]
AllowFailuresOption = Annotated[
    bool, typer.Option(help="Exit 0 even when some cases failed (they are in errors.csv).")
]


def _load_cohort(manifest: Path):
    from ovfdlr.cohort import ManifestError, load_manifest

    try:
        return load_manifest(manifest)
    except ManifestError as exc:
        err.print(str(exc), highlight=False, soft_wrap=True)
        raise fail(f"{manifest}: fix the manifest first (ovfdlr validate {manifest})") from None


def _finish_extraction(result, out: Path, stage: str, allow_failures: bool) -> None:
    from ovfdlr.extraction import write_errors, write_tables

    written = write_tables(result, out)
    errors_csv = out.parent / "errors.csv"
    write_errors(errors_csv, stage, result.errors)
    console.print(
        f"{stage}: {len(result.features)} cases x {result.features.shape[1]} features -> "
        f"{written['features']} (computed {result.computed}, cached "
        f"{result.cached}, failed {result.failed})"
    )
    if result.failed:
        for row in result.errors.itertuples(index=False):
            err.print(f"[red]failed[/] {row.case_id}: {row.reason}", highlight=False)
        message = f"{result.failed} case(s) failed; reasons in {errors_csv}"
        if not allow_failures:
            raise fail(message)
        err.print(f"[yellow]warning:[/] {message}")


def _cache_dir(cache: Path | None) -> Path:
    from ovfdlr.cache import default_cache_dir

    return cache if cache is not None else default_cache_dir()


@extract_app.command("radiomics")
def extract_radiomics_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV.")],
    out: Annotated[Path, typer.Option(help="Feature table to write (Parquet).")],
    params: Annotated[
        Path | None,
        typer.Option(help="PyRadiomics parameter file (YAML/JSON); default ct-vertebra.yaml."),
    ] = None,
    jobs: JobsOption = 0,
    scheduler: SchedulerOption = None,
    cache: CacheOption = None,
    allow_failures: AllowFailuresOption = False,
) -> None:
    """PyRadiomics features of every vertebra, with PyRadiomics' names and values.

    Diagnostics go to <out>.diagnostics.parquet, failed cases to errors.csv beside <out>.
    """
    from ovfdlr.radiomics import RadiomicsParamsError, extract_radiomics, load_params

    try:
        parameters = load_params(params)
    except RadiomicsParamsError as exc:
        raise fail(str(exc)) from None
    cohort = _load_cohort(manifest)
    result = extract_radiomics(
        cohort, parameters, cache_dir=_cache_dir(cache), jobs=jobs, scheduler=scheduler
    )
    _finish_extraction(result, out, "radiomics", allow_failures)


@extract_app.command("morphometry")
def extract_morphometry_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV.")],
    out: Annotated[Path, typer.Option(help="Feature table to write (Parquet).")],
    jobs: JobsOption = 0,
    scheduler: SchedulerOption = None,
    cache: CacheOption = None,
    allow_failures: AllowFailuresOption = False,
) -> None:
    """Vertebral heights, Genant ratios and grade, volume and HU of every vertebral body."""
    from ovfdlr.morphometry import extract_morphometry

    cohort = _load_cohort(manifest)
    result = extract_morphometry(
        cohort, cache_dir=_cache_dir(cache), jobs=jobs, scheduler=scheduler
    )
    _finish_extraction(result, out, "morphometry", allow_failures)
