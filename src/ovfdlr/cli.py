"""The ``ovfdlr`` command line: thin commands over the modules that do the work."""

from __future__ import annotations

import contextlib
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


def _print_report(report, scheme) -> None:
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
        print_frame(class_table(report.cohort), f"Cases per cohort and {scheme.title} class")
        print_frame(centre_table(report.cohort), "Cases per centre and cohort")


LabelsOption = Annotated[
    str,
    typer.Option(
        "--labels",
        help="Label scheme: astlof, genant, binary (ASTLOF 2 against 0-1), or a YAML file "
        "holding an experiment config's labels entry.",
    ),
]
SynthLabelsOption = Annotated[
    str,
    typer.Option(
        "--labels",
        help="Labels of the synthetic cohort: astlof, genant (from the true height loss) or "
        "binary (ASTLOF class 2 against 0-1).",
    ),
]


def _label_scheme(text: str):
    """A label scheme from a name or a YAML file with a config's ``labels`` entry."""
    import yaml

    from ovfdlr.config import LabelsConfig
    from ovfdlr.labels import SCHEMES

    if text in SCHEMES:
        return LabelsConfig(scheme=text).scheme_object()
    path = Path(text)
    if not path.is_file():
        raise fail(f"--labels '{text}' is not one of {', '.join(SCHEMES)} nor a YAML file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        data = {"scheme": data} if isinstance(data, str) else data
        return LabelsConfig.model_validate(data.get("labels", data)).scheme_object()
    except Exception as exc:  # YAML or validation: one line naming the file
        first = str(exc).splitlines()[-1] if str(exc) else type(exc).__name__
        raise fail(f"{path}: not a labels entry ({first})") from None


SizesOption = Annotated[
    str | None,
    typer.Option(
        help="Cases per cohort, e.g. train=68,internal=17,external=24,prospective=24 "
        "(instead of --n / --paper-scale)."
    ),
]
StratifyOption = Annotated[
    str | None,
    typer.Option(
        help="Cohorts drawn with an equal number of cases in every class, comma-separated "
        "(e.g. external,prospective); none for none."
    ),
]


def _synth_labels(labels: str) -> None:
    from ovfdlr.synthetic.design import SYNTHETIC_LABELS

    if labels not in SYNTHETIC_LABELS:
        raise fail(f"--labels '{labels}' is not one of {', '.join(SYNTHETIC_LABELS)}")


def _synth_design(
    n: int | None, paper_scale: bool, sizes: str | None, stratify: str | None, labels: str
):
    """The synthetic cohort's design from the options; every fault names its option."""
    from ovfdlr.synthetic.design import CohortDesign, parse_sizes

    _synth_labels(labels)
    if sum((n is not None, paper_scale, sizes is not None)) > 1:
        raise fail("give the cohort size one way: --n, --paper-scale or --sizes")
    if n is not None and n < 1:
        raise fail(f"--n must be at least 1 (got {n})")
    try:
        counts = parse_sizes(sizes) if sizes is not None else None
    except ValueError as exc:
        raise fail(f"--sizes: {exc}") from None
    names = [] if stratify in (None, "", "none") else [c.strip() for c in stratify.split(",")]
    try:
        return CohortDesign.of(
            n, paper_scale=paper_scale, sizes=counts, stratify=names, labels=labels
        )
    except ValueError as exc:
        raise fail(
            f"--stratify: {exc}" if stratify not in (None, "", "none") else str(exc)
        ) from None


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
    labels: LabelsOption = "astlof",
    training_cohort: Annotated[
        str, typer.Option(help="The training cohort's name (unlabelled cases there warn).")
    ] = "train",
) -> None:
    """Check a cohort manifest and every image and mask it names; report all problems at once.

    Every image and mask is read with the input checks (docs/input-checks.md): a file cut
    short, a corrupt stream, an inconsistent header, a DICOM series with missing or duplicated
    slices, a mask that is an image, an ITK warning ... is an error named by its check.

    Exits 1 when any error is found (or any warning with --strict); a valid manifest prints the
    cases per cohort and class and per centre.
    """
    from ovfdlr.cohort import validate_manifest

    scheme = _label_scheme(labels)
    report = validate_manifest(
        manifest,
        cohorts=cohort or None,
        labels=scheme,
        training=training_cohort,
        min_roi_voxels=min_roi_voxels,
        tolerance=tolerance,
        jobs=jobs,
        progress=True,
    )
    _print_report(report, scheme)
    if problems_csv is not None:
        problems_csv.parent.mkdir(parents=True, exist_ok=True)
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
    sizes: SizesOption = None,
    stratify: StratifyOption = None,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
    jobs: Annotated[int, typer.Option(help="Worker processes; 0 = all cores.")] = 0,
    labels: SynthLabelsOption = "astlof",
) -> None:
    """Generate the synthetic multi-centre vertebral CT cohort (images, masks, manifest, truth).

    Cohorts are drawn at the class mix of the population (about 40/30/30 % for ASTLOF) unless
    --stratify names them: those hold an equal number of cases of every class."""
    from ovfdlr.synthetic import generate_cohort

    design = _synth_design(n, paper_scale, sizes, stratify, labels)
    try:  # a class that cannot be filled fails before any file is written
        manifest = generate_cohort(out, seed=seed, jobs=jobs, design=design)
    except ValueError as exc:
        raise fail(f"--stratify: {exc}") from None
    console.print(f"wrote {len(manifest)} cases to {out / 'manifest.csv'}")
    from ovfdlr.scoring import cohort_order

    table = pd.crosstab(manifest["cohort"], manifest["label"]).rename_axis(index="cohort")
    print_frame(table.loc[cohort_order(table.index)], "Cases per cohort and class")


def _preflight(problems) -> None:
    """Stop with one error listing every problem found before any stage ran."""
    from rich.markup import escape

    from ovfdlr.preflight import PreflightError, raise_for_problems

    try:
        raise_for_problems(problems)
    except PreflightError as exc:
        raise fail(escape(str(exc))) from None


def _run_and_summarise(config, out: Path) -> None:
    from ovfdlr.experiment import RunError, primary_summary, run_experiment, summary_table
    from ovfdlr.runlock import RunFolderBusy

    try:
        payload = run_experiment(config, out)
    except (RunError, ValueError, OSError, RunFolderBusy) as exc:
        raise fail(str(exc)) from None
    timings = pd.DataFrame(payload["stages"]).set_index("name").round({"seconds": 1})
    print_frame(timings, "Stages")
    print_frame(summary_table(out, payload), "Chosen model per arm", index=False)
    what, primary = primary_summary(out)
    if len(primary):
        print_frame(primary, f"Primary endpoint: {what}", index=False)
        console.print(f"every test: {out / 'tables' / 'comparison.csv'}", highlight=False)
    for arm, info in payload["arms"].items():
        deep = info.get("deep")
        if deep and not deep.get("pretrained"):
            err.print(
                f"[yellow]note:[/] arm '{arm}' used an UNTRAINED ResNet-50: its deep "
                "features carry no pretrained knowledge",
                highlight=False,
            )
    if payload["failed_cases"]:
        err.print(
            f"[yellow]warning:[/] {payload['failed_cases']} case(s) failed; see "
            f"{out / 'errors.csv'}",
            highlight=False,
        )
    console.print(f"[green]report:[/] {out / 'report.html'}")


@app.command()
def run(
    config: Annotated[
        Path, typer.Argument(help="Experiment YAML (see docs/cli.md, docs/architecture.md).")
    ],
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default: runs/<config name>).")
    ] = None,
) -> None:
    """Run every stage of an experiment (cached per stage, resumable) and write the report."""
    from ovfdlr.config import ConfigError, load_config
    from ovfdlr.preflight import check_experiment

    try:
        experiment = load_config(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    out = out or Path("runs") / config.stem
    _preflight(check_experiment(experiment, out, out_option="--out"))
    _run_and_summarise(experiment, out)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/demo"),
    n: Annotated[
        int | None,
        typer.Option(help="Number of vertebrae, split 750:187:110:51 (instead of the default)."),
    ] = None,
    paper_scale: Annotated[bool, typer.Option(help="The paper's cohort sizes (1,098).")] = False,
    sizes: SizesOption = None,
    stratify: Annotated[
        str | None,
        typer.Option(
            help="Cohorts with an equal number of cases per class (default: external,"
            "prospective for the default cohort, none with --n, --sizes or --paper-scale); "
            "none for none."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    jobs: Annotated[int, typer.Option(help="Worker processes; 0 = all cores.")] = 0,
    labels: SynthLabelsOption = "astlof",
    nested_cv: Annotated[
        bool,
        typer.Option(
            "--nested-cv/--no-nested-cv",
            help="Nested cross-validation of each arm (3 outer folds; each costs a whole fit).",
        ),
    ] = True,
) -> None:
    """The main job on the embedded synthetic cohort: generate it, run the two-arm experiment
    (radiomics + morphometry, and the same fused with ResNet-50 features), write the report.

    The default cohort: 68 training and 17 internal vertebrae at the class mix of the population,
    and 8 vertebrae of every class in the external and in the prospective cohort."""
    import time

    from ovfdlr.config import load_config
    from ovfdlr.demo import DEMO_STRATIFIED, demo_sizes, demo_weights, write_demo_config
    from ovfdlr.synthetic import generate_cohort

    if n is None and not paper_scale and sizes is None:  # the default design
        _synth_labels(labels)
        sizes = ",".join(f"{k}={v}" for k, v in demo_sizes(labels).items())
        if stratify is None:
            stratify = ",".join(DEMO_STRATIFIED)
    design = _synth_design(n, paper_scale, sizes, stratify, labels)
    _, pretrained = demo_weights()
    if not pretrained:
        err.print(
            "[yellow]note:[/] torchvision's ImageNet weights are not cached here: the deep "
            "arm uses a seeded, UNTRAINED ResNet-50",
            highlight=False,
        )
    cohort_dir = out / "cohort"
    start = time.perf_counter()
    try:
        generate_cohort(cohort_dir, seed=seed, jobs=jobs, design=design)
    except ValueError as exc:
        raise fail(f"--stratify: {exc}") from None
    console.print(f"[dim]stage[/] synthetic cohort: {time.perf_counter() - start:.1f} s")
    config = write_demo_config(
        out, cohort_dir / "manifest.csv", seed=seed, jobs=jobs, labels=labels, nested_cv=nested_cv
    )
    _run_and_summarise(load_config(config), out)


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
    typer.Option(
        help="Per-case cache folder (default $OVFDLR_CACHE, else $XDG_CACHE_HOME/ovfdlr, else "
        "~/.cache/ovfdlr)."
    ),
]
AllowFailuresOption = Annotated[
    bool, typer.Option(help="Exit 0 even when some cases failed (they are in errors.csv).")
]


def _load_cohort(manifest: Path, labels=None, training: str = "train"):
    from ovfdlr.cohort import ManifestError, load_manifest

    try:
        return load_manifest(manifest, labels=labels, training=training)
    except ManifestError as exc:
        err.print(str(exc), highlight=False, soft_wrap=True)
        raise fail(f"{manifest}: fix the manifest first (ovfdlr validate {manifest})") from None


def _check_outputs(out: Path, cache: Path | None) -> Path:
    """Fail before any work when the output or the cache cannot be written; return the cache."""
    import tempfile

    from ovfdlr.cache import default_cache_dir

    if out.is_dir():
        raise fail(f"--out {out} is a folder; give the Parquet file to write")
    folder = cache if cache is not None else default_cache_dir()
    for target in (out.parent, folder):
        try:
            target.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=target).close()
        except OSError as exc:
            raise fail(f"cannot write to {target}: {exc.strerror or exc}") from None
    return folder


def _run_stage(function, *args, **kwargs):
    """Call an extraction; a scheduler that cannot be reached, and a cache entry that cannot
    be written (no space, over the file size limit), are one-line errors."""
    from ovfdlr.atomic import WriteError

    try:
        return function(*args, **kwargs)
    except WriteError as exc:
        raise fail(str(exc)) from None
    except (OSError, TimeoutError) as exc:
        if kwargs.get("scheduler"):
            raise fail(f"cannot reach the Dask scheduler at {kwargs['scheduler']}: {exc}") from None
        raise
    except ValueError as exc:
        raise fail(str(exc)) from None


def _finish_extraction(result, out: Path, stage: str, allow_failures: bool) -> None:
    from ovfdlr.atomic import WriteError
    from ovfdlr.extraction import write_errors, write_tables

    errors_csv = out.parent / "errors.csv"
    try:
        written = write_tables(result, out)
        write_errors(errors_csv, out.name, result.errors)
    except WriteError as exc:
        raise fail(str(exc)) from None
    damaged = f", damaged cache entries recomputed {result.damaged}" if result.damaged else ""
    console.print(
        f"{stage}: {len(result.features)} cases x {result.features.shape[1]} features -> "
        f"{written['features']} (computed {result.computed}, cached "
        f"{result.cached}, failed {result.failed}{damaged})"
    )
    if result.failed:
        for row in result.errors.itertuples(index=False):
            err.print(f"[red]failed[/] {row.case_id}: {row.reason}", highlight=False)
        message = f"{result.failed} case(s) failed; reasons in {errors_csv}"
        if not allow_failures:
            raise fail(message)
        err.print(f"[yellow]warning:[/] {message}")


@extract_app.command("radiomics")
def extract_radiomics_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV.")],
    out: Annotated[Path, typer.Option(help="Feature table to write (Parquet).")],
    params: Annotated[
        Path | None,
        typer.Option(help="PyRadiomics parameter file (YAML/JSON); default ct-vertebra.yaml."),
    ] = None,
    engine: Annotated[
        str,
        typer.Option(
            help="native (ovfdlr's engine, the default) or pyradiomics (PyRadiomics itself, "
            "ovfdlr's optional extra 'pyradiomics'): PyRadiomics' names and values; ibsi "
            "(IBSI-compliant, MIRP, the optional extra 'ibsi'; its IBSI tags are written to "
            "<out>.ibsi_tags.csv)."
        ),
    ] = "native",
    jobs: JobsOption = 0,
    scheduler: SchedulerOption = None,
    cache: CacheOption = None,
    allow_failures: AllowFailuresOption = False,
) -> None:
    """Radiomics features of every vertebra: PyRadiomics' names and values, or IBSI's.

    Diagnostics go to <out>.diagnostics.parquet, failed cases to errors.csv beside <out>.
    """
    from ovfdlr.preflight import check_extraction
    from ovfdlr.radiomics import ENGINES, RadiomicsParamsError, extract_radiomics, load_params

    if engine not in ENGINES:
        raise fail(f"--engine: unknown radiomics engine '{engine}' (known: {', '.join(ENGINES)})")
    _preflight(
        check_extraction(manifest, out, cache=cache, params=params, radiomics=True, engine=engine)
    )
    try:
        parameters = load_params(params)
    except RadiomicsParamsError as exc:
        raise fail(str(exc)) from None
    cache_dir = _check_outputs(out, cache)
    cohort = _load_cohort(manifest)
    result = _run_stage(
        extract_radiomics,
        cohort,
        parameters,
        cache_dir=cache_dir,
        jobs=jobs,
        scheduler=scheduler,
        engine=engine,
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
    from ovfdlr.preflight import check_extraction

    _preflight(check_extraction(manifest, out, cache=cache))
    cache_dir = _check_outputs(out, cache)
    cohort = _load_cohort(manifest)
    result = _run_stage(
        extract_morphometry, cohort, cache_dir=cache_dir, jobs=jobs, scheduler=scheduler
    )
    _finish_extraction(result, out, "morphometry", allow_failures)


@extract_app.command("deep")
def extract_deep_command(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV.")],
    out: Annotated[Path, typer.Option(help="Feature table to write (Parquet).")],
    weights: Annotated[
        str,
        typer.Option(
            help="imagenet, imagenet:PATH, radimagenet (imported with ovfdlr weights import), "
            "radimagenet:PATH (Keras .h5 or PyTorch), file:PATH or random:SEED."
        ),
    ],
    arm: Annotated[str, typer.Option(help="Arm name: columns are dtl-<arm>_0000 ...")],
    plane: Annotated[
        str, typer.Option(help="sagittal, axial, coronal, max-area or 2.5d.")
    ] = "sagittal",
    margin: Annotated[float, typer.Option(help="Crop margin around the ROI (fraction).")] = 0.2,
    window_level: Annotated[float, typer.Option(help="Window level (HU).")] = 400.0,
    window_width: Annotated[float, typer.Option(help="Window width (HU).")] = 1800.0,
    normalization: Annotated[
        str | None,
        typer.Option(
            help="Override the weights' preprocessing: imagenet, radimagenet-keras, "
            "radimagenet-torch."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 16,
    threads: Annotated[int | None, typer.Option(help="Torch threads (default: torch's).")] = None,
    device: Annotated[
        str, typer.Option(help="auto (CUDA when present, else the CPU), cpu or cuda.")
    ] = "auto",
    mixed_precision: Annotated[
        bool,
        typer.Option(help="Autocast inference (float16 on CUDA, bfloat16 on the CPU)."),
    ] = False,
    pca: Annotated[
        int | None, typer.Option(help="Reduce to K principal components fitted on training.")
    ] = None,
    training_cohort: Annotated[str, typer.Option(help="The training cohort's name.")] = "train",
    finetune_epochs: Annotated[
        int, typer.Option(help="Fine-tune on the training cohort first (0 = no).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Seed of the fine-tuning.")] = 0,
    gradcam: Annotated[
        list[str] | None,
        typer.Option(
            "--gradcam", help="Case id for a Grad-CAM overlay (repeat; needs fine-tuning)."
        ),
    ] = None,
    jobs: JobsOption = 0,
    cache: CacheOption = None,
    allow_failures: AllowFailuresOption = False,
    labels: LabelsOption = "astlof",
) -> None:
    """ResNet-50 transfer-learning features (2048 per case) with ImageNet or RadImageNet weights.

    Fine-tuned weights (safetensors, with their training curve), the PCA and Grad-CAM overlays
    are written beside <out>.
    """
    from ovfdlr.deep.errors import WeightsError
    from ovfdlr.deep.finetune import FinetuneSettings
    from ovfdlr.deep.inputs import InputError, InputSettings
    from ovfdlr.deep.stage import run_deep_stage

    try:
        settings = InputSettings(
            plane=plane, margin=margin, window_level=window_level, window_width=window_width
        )
    except InputError as exc:
        raise fail(str(exc)) from None
    if gradcam and finetune_epochs < 1:
        raise fail("--gradcam needs a fine-tuned model: give --finetune-epochs N")
    from ovfdlr.deep.inputs import NORMALIZATIONS

    if normalization is not None and normalization not in NORMALIZATIONS:
        raise fail(f"--normalization '{normalization}' is not one of {', '.join(NORMALIZATIONS)}")
    from ovfdlr.preflight import check_extraction

    scheme = _label_scheme(labels)
    _preflight(
        check_extraction(
            manifest,
            out,
            cache=cache,
            weights_spec=weights,
            labels=scheme,
            training=training_cohort,
            pca=pca,
            finetune_epochs=finetune_epochs,
            seed=seed,
            device_name=device,
        )
    )
    from ovfdlr.deep.device import resolve_device
    from ovfdlr.deep.errors import DeviceError

    try:
        used, note = resolve_device(device, "--device")
    except DeviceError as exc:
        raise fail(str(exc)) from None
    if note:
        err.print(f"[dim]note: {note}[/]", highlight=False, soft_wrap=True)
    cache_dir = _check_outputs(out, cache)
    cohort = _load_cohort(manifest, scheme, training_cohort)
    try:
        result = run_deep_stage(
            cohort,
            weights,
            arm,
            out.parent,
            settings=settings,
            finetune=FinetuneSettings(epochs=finetune_epochs, seed=seed),
            normalization=normalization,
            pca_components=pca,
            training=training_cohort,
            labels=scheme,
            gradcam_cases=gradcam,
            batch_size=batch_size,
            threads=threads,
            jobs=jobs,
            cache_dir=cache_dir,
            device=used,
            mixed_precision=mixed_precision,
        )
    except (WeightsError, InputError, ValueError) as exc:
        raise fail(str(exc)) from None
    extraction = result.extraction
    extraction.features = result.features
    console.print(f"backbone: {result.backbone_label}")
    if result.finetuned_path:
        console.print(f"fine-tuned weights: {result.finetuned_path}")
    for path in result.gradcam:
        console.print(f"grad-cam: {path}")
    _finish_extraction(extraction, out, "deep", allow_failures)


@app.command()
def preview(
    manifest: Annotated[Path, typer.Argument(help="Manifest CSV.")],
    out: Annotated[Path, typer.Option(help="Folder for the PNG contact sheets.")],
    plane: Annotated[str, typer.Option(help="sagittal, axial, coronal, max-area or 2.5d.")] = (
        "sagittal"
    ),
    margin: Annotated[float, typer.Option(help="Crop margin around the ROI (fraction).")] = 0.2,
    window_level: Annotated[float, typer.Option(help="Window level (HU).")] = 400.0,
    window_width: Annotated[float, typer.Option(help="Window width (HU).")] = 1800.0,
    jobs: JobsOption = 0,
) -> None:
    """Contact sheets of the 2-D network inputs with their ROI outline, to check by eye."""
    from ovfdlr.deep.inputs import InputError, InputSettings
    from ovfdlr.deep.preview import contact_sheets

    try:
        settings = InputSettings(
            plane=plane, margin=margin, window_level=window_level, window_width=window_width
        )
    except InputError as exc:
        raise fail(str(exc)) from None
    from ovfdlr.preflight import check_preview

    _preflight(check_preview(manifest, out))
    cohort = _load_cohort(manifest)
    sheets, failed = contact_sheets(cohort, out, settings, jobs=jobs)
    for case_id, reason in failed:
        err.print(f"[red]failed[/] {case_id}: {reason}", highlight=False)
    console.print(f"wrote {len(sheets)} sheet(s) to {out}")
    if failed:
        raise fail(f"{len(failed)} case(s) could not be prepared")


# ---------------------------------------------------------------------------------------------
# modelling


@app.command()
def train(
    features: Annotated[
        list[Path], typer.Argument(help="Feature tables (Parquet, index case_id) of one arm.")
    ],
    manifest: Annotated[Path, typer.Option(help="Manifest CSV (labels, cohorts, patients).")],
    out: Annotated[Path, typer.Option(help="Folder for the arm's tables, figures and models.")],
    arm: Annotated[str | None, typer.Option(help="Arm name (default: the folder's name).")] = None,
    classifiers: Annotated[
        str, typer.Option(help="Comma-separated: lr,svm,knn,rf,et,xgb,lgbm,mlp.")
    ] = "lr,svm,knn,rf,et,xgb,lgbm,mlp",
    select_on: Annotated[
        str, typer.Option(help="Pick the arm's model on 'cv' (training) or 'internal'.")
    ] = "cv",
    training_cohort: Annotated[str, typer.Option(help="The training cohort's name.")] = "train",
    internal_cohort: Annotated[str, typer.Option(help="The internal cohort's name.")] = (
        "internal"
    ),
    folds: Annotated[int, typer.Option(help="Patient-grouped CV folds.")] = 5,
    quick: Annotated[bool, typer.Option(help="Tiny search spaces (for trials).")] = False,
    explain: Annotated[bool, typer.Option(help="SHAP for the chosen model.")] = True,
    seed: Annotated[int, typer.Option(help="Seed of folds, models and bootstraps.")] = 0,
    jobs: JobsOption = 0,
    labels: LabelsOption = "astlof",
) -> None:
    """Select features, train the eight classifiers and evaluate them on every cohort, for one arm.

    Selection and tuning see the training cohort only; the chosen model is picked on training
    CV or the internal cohort, never on external or prospective data.
    """
    from ovfdlr.arm import read_features, train_arm
    from ovfdlr.preflight import check_training
    from ovfdlr.selection import SelectionError
    from ovfdlr.training import TrainingError, TrainSettings

    if select_on not in ("cv", "internal"):
        raise fail(f"--select-on must be 'cv' or 'internal' (got '{select_on}')")
    scheme = _label_scheme(labels)
    settings = TrainSettings(
        labels=scheme,
        classifiers=tuple(c.strip() for c in classifiers.split(",") if c.strip()),
        quick=quick,
        folds=folds,
        seed=seed,
        select_on=select_on,
        training=training_cohort,
        internal=internal_cohort,
        jobs=jobs,
    )
    _preflight(check_training(features, manifest, out, settings))
    try:
        table = read_features(features)
    except (FileNotFoundError, SelectionError, OSError) as exc:
        raise fail(str(exc)) from None
    cohort = _load_cohort(manifest, scheme, training_cohort)
    try:
        result = train_arm(table, cohort, arm or out.name, out, settings, explain_model=explain)
    except (TrainingError, SelectionError, ValueError) as exc:
        raise fail(str(exc)) from None
    for warning in result.warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    performance = result.evaluation.performance
    chosen = performance[performance["classifier"] == result.fit.chosen]
    columns = ["n", "macro_auc", "macro_auc_lower", "macro_auc_upper", "accuracy"]
    summary = chosen.set_index(["cohort", "scoring"])[columns].round(3)
    print_frame(
        summary,
        f"{result.fit.arm}: chosen model {result.fit.chosen} ({len(result.fit.selected)} features)",
    )
    console.print(f"tables, figures and models in {out}")


@app.command()
def compare(
    dir_a: Annotated[Path, typer.Argument(help="Trained arm folder A.")],
    dir_b: Annotated[Path, typer.Argument(help="Trained arm folder B.")],
    out: Annotated[Path | None, typer.Option(help="Write the tests to this CSV.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap cross-check.")] = 0,
) -> None:
    """Paired tests between two arms' chosen models on each cohort: per-class DeLong and the
    macro-AUC test (DeLong at the population's class mix, with a paired patient-bootstrap
    cross-check), on the cohorts that played no part in fitting or choosing."""
    from ovfdlr.arm import compare_dirs
    from ovfdlr.evaluation import adjust_comparisons, arm_names

    try:
        table = compare_dirs(dir_a, dir_b, seed=seed)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    if table.empty:
        raise fail(
            f"{dir_a} and {dir_b} share no labelled case on a cohort that played no part in "
            "fitting or choosing the models"
        )
    # the primary endpoint: this pair's macro AUC on the external and prospective cohorts
    primary = [c for c in ("external", "prospective") if c in set(table["cohort"])]
    pair = (arm_names(table["arm_a"]).iloc[0], arm_names(table["arm_b"]).iloc[0])
    table = adjust_comparisons(table, pair, primary)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(out, index=False)
    shown = table[
        [
            "cohort",
            "scoring",
            "test",
            "class",
            "auc_a",
            "auc_b",
            "difference",
            "p_value",
            "p_adjusted",
            "family",
            "ci_lower",
            "ci_upper",
            "note",
        ]
    ].round(4)
    print_frame(shown, f"{table['arm_a'].iloc[0]} vs {table['arm_b'].iloc[0]}", index=False)


def _prediction_weights(bundle, weights: str | None) -> list:
    """Preflight problems of the pretrained weights a deep bundle needs on this machine (the
    bundle's spec, or the same family at ``--weights``); none for other bundles."""
    from ovfdlr.preflight import weights as check_weights

    deep = bundle.record.feature_sets.deep
    if deep is None or deep.finetuned:
        return []
    spec, option = deep.weights, "bundle weights"
    family = spec.partition(":")[0]
    if weights and family != "random":
        spec, option = f"{family}:{weights}", "--weights"
    return check_weights(spec, option)


@app.command()
def predict(
    bundle: Annotated[Path, typer.Argument(help="A bundle folder (bundles/<arm> of a run).")],
    image: Annotated[Path | None, typer.Option(help="CT volume (file or DICOM folder).")] = None,
    mask: Annotated[Path | None, typer.Option(help="Vertebral-body mask (label map).")] = None,
    mask_label: Annotated[int, typer.Option(help="Label of the vertebra in the mask.")] = 1,
    vertebra: Annotated[
        str | None,
        typer.Option(help="The vertebra by name (L1, T12 ...) instead of --mask-label."),
    ] = None,
    numbering: Annotated[
        str, typer.Option(help="Label numbering of the mask for --vertebra: v2, v1 or verse.")
    ] = "v2",
    manifest: Annotated[Path | None, typer.Option(help="Score every case of a manifest.")] = None,
    out: Annotated[
        Path,
        typer.Option(
            help="Output name: writes <out>.json and <out>.csv (the name as given; an ending "
            ".json or .csv is dropped first)."
        ),
    ] = Path("predictions"),
    weights: Annotated[
        str | None, typer.Option(help="Where the bundle's pretrained weights file is here.")
    ] = None,
    jobs: JobsOption = 1,
    cache: CacheOption = None,
) -> None:
    """Score new vertebrae: class probabilities, predicted class, top SHAP contributions, and
    every quantity outside the model's training envelope (docs/predictions.md).

    The features are computed in separate processes while the model loads. One case is named
    <image file>:<vertebra> (ct.nii.gz:L1 with --vertebra, ct.nii.gz:label20 with --mask-label).
    """
    from rich.markup import escape

    from ovfdlr.bundle import BundleError, load_bundle
    from ovfdlr.deep.errors import WeightsError
    from ovfdlr.parallel import BackgroundError
    from ovfdlr.predict import describe, header, output_paths, run_prediction

    if (manifest is None) == (image is None or mask is None):
        raise fail("give --image and --mask for one case, or --manifest for many")
    if vertebra is not None:
        from ovfdlr.totalseg import TotalSegError, vertebra_label

        try:
            mask_label = vertebra_label(vertebra, numbering)
        except TotalSegError as exc:
            raise fail(f"--vertebra: {exc}") from None
    try:
        verified = load_bundle(bundle, model=False)
    except BundleError as exc:
        raise fail(str(exc)) from None
    from ovfdlr.preflight import bundle_radiomics

    _preflight(_prediction_weights(verified, weights) + bundle_radiomics(verified))
    if manifest is not None:
        cohort = _load_cohort(manifest, verified.labels)
    else:
        # every vertebra of one CT gets its own case_id; they share the patient
        if vertebra is not None:
            case_id = f"{image.name}:{vertebra.removeprefix('vertebrae_').upper()}"
        else:
            case_id = f"{image.name}:label{mask_label}"
        cohort = pd.DataFrame(
            {
                "case_id": [case_id],
                "patient_id": [image.name],
                "image": [str(image)],
                "mask": [str(mask)],
                "mask_label": [mask_label],
                "label": [pd.NA],
                "cohort": ["new"],
                "centre": [""],
            },
            index=[case_id],
        )
    cache_dir = _check_outputs(output_paths(out)[0], cache)
    try:
        result = run_prediction(
            verified, cohort, out=out, weights=weights, jobs=jobs, cache_dir=cache_dir
        )
    except (BundleError, WeightsError, ValueError) as exc:
        raise fail(str(exc)) from None
    except BackgroundError as exc:
        raise fail(f"the feature computation failed: {exc}") from None
    failures = result.failures
    for row in failures.itertuples(index=False):
        err.print(f"[red]failed[/] {row.case_id}: {row.reason}", highlight=False)
    if result.table.empty:
        raise fail("no case could be scored")
    for line in header(result.table):
        console.print(line, highlight=False, markup=False, soft_wrap=True)
    for case_id, row in result.table.iterrows():
        console.print(
            f"[bold]{escape(str(case_id))}[/]: {escape(describe(result.bundle, row))}",
            highlight=False,
            soft_wrap=True,
        )
    flagged = int(result.table["out_of_domain"].fillna(False).sum())
    if flagged:
        console.print(
            f"[yellow]note:[/] {flagged} of {len(result.table)} case(s) outside the model's "
            "domain: their probabilities are extrapolations",
            highlight=False,
        )
    console.print(f"wrote {', '.join(str(p) for p in result.written)}")
    if len(failures):
        raise fail(f"{len(failures)} case(s) could not be scored")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by ovfdlr run.")],
    check: Annotated[bool, typer.Option(help="Open it in headless Chromium and check it.")] = False,
) -> None:
    """(Re)write a run's report.html, optionally checking it in a real browser."""
    from ovfdlr.runlock import RunFolderBusy, RunLock

    try:
        with RunLock(run_dir) if run_dir.is_dir() else contextlib.nullcontext():
            _write_report(run_dir, check)  # the run folder's writer while it writes into it
    except (RunFolderBusy, OSError) as exc:
        raise fail(str(exc)) from None


def _write_report(run_dir: Path, check: bool) -> None:
    from ovfdlr.report.html import render_report

    try:
        path = render_report(run_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    console.print(f"report: {path}")
    if check:
        from ovfdlr.report.browser import check_report

        result = check_report(path, path.with_suffix(".png"))
        console.print(
            f"images loaded {result.images_loaded}/{result.images_total}; "
            f"script errors: {len(result.script_errors)}; page {result.page_height} px high at "
            f"{result.page_width} px; "
            + (
                f"primary endpoint at {result.primary_top}-{result.primary_bottom} px; "
                if result.primary_top is not None
                else "no primary endpoint; "
            )
            + f"first screen: {result.screenshot}"
        )
        if result.images_loaded != result.images_total or result.script_errors:
            raise fail("the report did not render cleanly in Chromium")


# ---------------------------------------------------------------------------------------------
# manifests from segmentation tools

manifest_app = typer.Typer(
    help="Build a manifest from segmentation outputs (TotalSegmentator).",
    no_args_is_help=True,
)
app.add_typer(manifest_app, name="manifest")


@manifest_app.command("totalseg")
def manifest_totalseg_command(
    ct: Annotated[
        Path,
        typer.Argument(help="CT file or DICOM folder, or a folder of CT files (one case each)."),
    ],
    seg: Annotated[
        Path,
        typer.Option(
            help="TotalSegmentator output: multi-label .nii.gz or per-structure folder; for a "
            "folder of CTs, a folder with <ct stem>.nii.gz or <ct stem>/ per CT."
        ),
    ],
    out: Annotated[Path, typer.Option(help="Manifest CSV to write.")],
    body: Annotated[
        Path | None,
        typer.Option(
            help="TotalSegmentator vertebrae_body output (1 = body): keep only the vertebral "
            "bodies (for a folder of CTs, a folder with one per CT)."
        ),
    ] = None,
    labels_csv: Annotated[
        Path | None,
        typer.Option(help="CSV keyed by --key and level: patient_id, label, cohort, centre ..."),
    ] = None,
    key: Annotated[
        str, typer.Option(help="Column of the label CSV holding the CT's file name (or stem).")
    ] = "image",
    levels: Annotated[
        str | None, typer.Option(help="Only these levels, comma-separated (e.g. L1,L2,T12).")
    ] = None,
    numbering: Annotated[
        str, typer.Option(help="Label numbers of the segmentation: v2, v1 or verse.")
    ] = "v2",
    drop_cut: Annotated[
        bool, typer.Option(help="Leave out vertebrae touching the scan edge.")
    ] = False,
    cohort: Annotated[
        str, typer.Option(help="Cohort of rows the label CSV gives none for.")
    ] = "train",
    centre: Annotated[
        str | None, typer.Option(help="Centre of rows the label CSV gives none for.")
    ] = None,
    labels: LabelsOption = "astlof",
) -> None:
    """One manifest row per vertebra from TotalSegmentator outputs (see docs/totalsegmentator.md).

    Derived label maps go to <out stem>_masks/ and the warnings to <out stem>_warnings.csv;
    nothing is written when an input is bad.
    """
    from ovfdlr.totalseg import TotalSegError, write_manifest

    scheme = _label_scheme(labels)
    try:
        frame = write_manifest(
            ct,
            seg,
            out,
            body=body,
            labels_csv=labels_csv,
            key=key,
            levels=levels,
            numbering=numbering,
            labels=scheme,
            drop_cut=drop_cut,
            cohort=cohort,
            centre=centre,
        )
    except TotalSegError as exc:
        raise fail(str(exc)) from None
    from rich.markup import escape

    for warning in frame.attrs.get("warnings", []):
        err.print(
            f"[yellow]warning:[/] {escape(warning['message'])} \\[{warning['check']}]",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"wrote {len(frame)} vertebra row(s) to {escape(str(out))}", highlight=False, soft_wrap=True
    )


# ---------------------------------------------------------------------------------------------
# the weights people use

weights_app = typer.Typer(
    help="The ResNet-50 weights people use: list what is here, fetch ImageNet's, import "
    "RadImageNet's.",
    no_args_is_help=True,
)
app.add_typer(weights_app, name="weights")


@weights_app.command("list")
def weights_list_command(
    config: Annotated[
        Path | None,
        typer.Option(help="An experiment config: also show the weights each of its arms uses."),
    ] = None,
) -> None:
    """What weights are available here by name, and (with --config) what each arm would use."""
    from rich.markup import escape

    from ovfdlr.config import ConfigError, load_config
    from ovfdlr.deep.errors import WeightsError
    from ovfdlr.deep.store import available, resolve

    try:
        rows = available()
    except WeightsError as exc:
        raise fail(str(exc)) from None
    say = lambda text: console.print(escape(text), highlight=False, soft_wrap=True)  # noqa: E731
    say("weights by name:")
    for row in rows:
        if row["available"]:
            where = f" {row['file']}" if row["file"] else ""
            digest = f" (SHA-256 {row['sha256']})" if row["sha256"] else ""
            say(f"  {row['name']}: available{where}{digest}")
        else:
            say(f"  {row['name']}: not here; {row['get']}")
    if config is None:
        return
    try:
        experiment = load_config(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    say(f"arms of {config}:")
    for arm in experiment.arms:
        if not arm.deep:
            say(f"  {arm.name}: no deep features")
            continue
        found = resolve(arm.deep.weights)
        digest = f" (SHA-256 {found['sha256']})" if found["sha256"] else ""
        say(f"  {arm.name}: {arm.deep.weights} -> {found['file'] or found['status']}{digest}")


@weights_app.command("fetch")
def weights_fetch_command(
    name: Annotated[str, typer.Argument(help="imagenet (torchvision's ImageNet ResNet-50).")],
    url: Annotated[
        str | None, typer.Option(help="Download from this URL instead of torchvision's.")
    ] = None,
) -> None:
    """Download torchvision's ImageNet ResNet-50 into torchvision's cache (with a progress bar).

    RadImageNet's weights are distributed by their authors on request and cannot be fetched:
    import the file you were given with ovfdlr weights import radimagenet FILE."""
    from ovfdlr.deep.errors import WeightsError
    from ovfdlr.deep.store import fetch_imagenet

    if name != "imagenet":
        raise fail(
            f"cannot fetch '{name}': only imagenet is downloadable; for RadImageNet run "
            "ovfdlr weights import radimagenet FILE"
        )
    try:
        path = fetch_imagenet(url)
    except WeightsError as exc:
        raise fail(str(exc)) from None
    console.print(f"imagenet: {path}", highlight=False, soft_wrap=True)


@weights_app.command("import")
def weights_import_command(
    name: Annotated[str, typer.Argument(help="radimagenet, or imagenet (torchvision's file).")],
    file: Annotated[Path, typer.Argument(help="The weights file.")],
) -> None:
    """Check a weights file loads strictly, record its SHA-256 and make it available by name
    (--weights radimagenet, or imagenet)."""
    from ovfdlr.deep.errors import WeightsError
    from ovfdlr.deep.store import import_weights

    try:
        result = import_weights(name, file)
    except WeightsError as exc:
        raise fail(str(exc)) from None
    if isinstance(result, Path):
        console.print(f"imagenet: {result}", highlight=False, soft_wrap=True)
    else:
        console.print(
            f"{name}: {result.path} (SHA-256 {result.sha256}, {result.architecture}, "
            f"{result.normalization} preprocessing); use --weights {name}",
            highlight=False,
            soft_wrap=True,
        )
