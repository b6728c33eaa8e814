"""The run report: every section from a run folder, embedded figures, privacy, and a real
browser loading it (headless Chromium)."""

from __future__ import annotations

import builtins
import io
import itertools
import json
import re
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
import yaml
from markupsafe import escape

from ovfdlr.arm import compare_dirs, train_arm
from ovfdlr.classifiers import display_name
from ovfdlr.cohort import centre_table, class_table
from ovfdlr.evaluation import adjust_comparisons
from ovfdlr.experiment import _demographics
from ovfdlr.layout import RunLayout
from ovfdlr.records import DeepNetwork, ManifestRef, RunArm, RunRecord, StageEntry, read_arm
from ovfdlr.records import write_run as write_run_record
from ovfdlr.report import browser, figures
from ovfdlr.report import formatting as fmt
from ovfdlr.report.browser import BrowserError, check_report, parse_check
from ovfdlr.report.context import ReportError
from ovfdlr.report.html import render_report
from ovfdlr.training import TrainSettings

from .conftest import simulated_features

SETTINGS = TrainSettings(classifiers=("lr", "rf"), quick=True, folds=3, jobs=1)
PATIENT_NAME, PATIENT_ID = "Doe^Jane", "PID-123456"
SECTIONS = (
    "top",
    "summary",
    "performance",
    "roc",
    "comparison",
    "calibration",
    "subgroups",
    "shap",
    "selection",
    "hyperparameters",
    "sample-size",
    "cohort",
    "inputs",
    "finetuning",
    "limitations",
    "checklists",
    "metadata",
    "files",
)
DATA_URI = re.compile(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"')


# ---------------------------------------------------------------------------------------------
# a small run folder, as `ovfdlr run` writes it


def write_dicom_series(folder: Path) -> Path:
    """A three-slice DICOM series whose headers name a patient."""
    folder.mkdir(parents=True, exist_ok=True)
    volume = sitk.GetImageFromArray(np.full((3, 16, 16), 100, np.int16))
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(3):
        image = volume[:, :, z]
        for tag, value in (
            ("0010|0010", PATIENT_NAME),
            ("0010|0020", PATIENT_ID),
            ("0008|0060", "CT"),
            ("0020|0013", str(z + 1)),
            ("0020|0032", f"0\\0\\{z}"),
        ):
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{z:03d}.dcm"))
        writer.Execute(image)
    return folder


def small_figure(title: str):
    figure, axis = plt.subplots(figsize=(3, 2))
    axis.imshow(np.random.default_rng(0).random((16, 24)), cmap="gray")
    axis.set_title(title, fontsize=8)
    axis.axis("off")
    return figure


def write_run(run: Path) -> Path:
    """Two trained arms (one with an untrained network), their comparison, cohort tables, a
    contact sheet, a fine-tuning curve with a Grad-CAM overlay, run.json and config.yaml."""
    features, cohort = simulated_features(150, 20, demographics=True)
    other = features + np.random.default_rng(1).normal(0, 1.5, features.shape)
    tables = run / "tables"
    tables.mkdir(parents=True)
    train_arm(features, cohort, "radimagenet", run / "arms/radimagenet", SETTINGS, progress=False)
    train_arm(
        other,
        cohort,
        "untrained",
        run / "arms/untrained",
        SETTINGS,
        explain_model=False,
        progress=False,
    )
    adjust_comparisons(
        compare_dirs(run / "arms/radimagenet", run / "arms/untrained"),
        ("radimagenet", "untrained"),
        ["external"],
    ).to_csv(tables / "comparison.csv", index=False)
    class_table(cohort).to_csv(tables / "cohort_classes.csv")
    centre_table(cohort).to_csv(tables / "cohort_centres.csv")
    # as the run writes it (the writer's column names, e.g. female_pct)
    _demographics(cohort).to_csv(tables / "cohort_demographics.csv", index=False)
    figures.save(small_figure("inputs 1-24"), run / "figures/inputs-001")
    (run / "features").mkdir()
    pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "steps": [4, 8, 12],
            "train_loss": [1.1, 0.9, 0.8],
            "holdout_loss": [1.05, 0.95, 0.97],
            "holdout_accuracy": [0.40, 0.50, 0.48],
        }
    ).to_csv(run / "features/finetuned-radimagenet.curve.csv", index=False)
    gradcam = run / "features/gradcam-radimagenet/gradcam-c001.png"
    gradcam.parent.mkdir(parents=True)
    overlay = small_figure("c001")  # as ovfdlr.deep.gradcam writes them: PNG and SVG
    overlay.savefig(gradcam)
    overlay.savefig(gradcam.with_suffix(".svg"))

    # the cohort the manifest names: one case is a DICOM series with a patient's name inside
    manifest_dir = run / "cohort"
    write_dicom_series(manifest_dir / "dicom-c000")
    manifest = cohort.assign(image="dicom-c000", mask="c000_mask.nii.gz", mask_label=1)
    manifest.to_csv(manifest_dir / "manifest.csv", index=False)
    pd.DataFrame([{"case_id": "c149", "stage": "radiomics", "reason": "empty mask"}]).to_csv(
        run / "errors.csv", index=False
    )
    (run / "run.log").write_text("run started\n")
    config = {"seed": 0, "manifest": "cohort/manifest.csv", "arms": ["radimagenet", "untrained"]}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    layout = RunLayout(run)
    arms = {
        "radimagenet": RunArm(
            folder=layout.arm_folder("radimagenet"),
            feature_sets=["radiomics", "morphometry", "deep"],
            deep=DeepNetwork(
                weights="radimagenet:resnet50",
                label="ResNet-50 (RadImageNet)",
                pretrained=True,
                finetuned=True,
            ),
            chosen=read_arm(layout.arm("radimagenet").arm_json).chosen,
        ),
        "untrained": RunArm(
            folder=layout.arm_folder("untrained"),
            feature_sets=["radiomics", "deep"],
            deep=DeepNetwork(
                weights="untrained:seed=0",
                label="ResNet-50 (random weights)",
                pretrained=False,
                finetuned=False,
            ),
            chosen=read_arm(layout.arm("untrained").arm_json).chosen,
        ),
    }
    record = RunRecord(
        ovfdlr="0.1.0",
        created="2025-01-31T10:20:30+00:00",
        name="report",
        seed=0,
        config_sha256="ab" * 32,
        versions={
            "ovfdlr": "0.1.0",
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "radiomics engine": "native 0.1.0",
        },
        manifest=ManifestRef(path="cohort/manifest.csv", sha256="cd" * 32, cases=150),
        data_sha256="ef" * 32,
        stages=[
            StageEntry(name="cohort", seconds=0.5, status="computed"),
            StageEntry(name="radiomics", seconds=75.2, status="cached"),
            StageEntry(name="train", seconds=20.0, status="computed"),
        ],
        arms=arms,
        comparisons=[["radimagenet", "untrained"]],
        training_cohort="train",
        warnings=["1 case failed in radiomics"],
        failed_cases=1,
        synthetic={"generator_version": "1.0.0", "seed": 7, "stratified": {"external": {}}},
    )
    write_run_record(layout.run_json, record)
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return write_run(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture(scope="module")
def report(run_dir) -> Path:
    return render_report(run_dir)


@pytest.fixture(scope="module")
def html(report) -> str:
    return report.read_text(encoding="utf-8")


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("*.skops", "*.svg", "report.html"))
    return copy


def section(html: str, name: str) -> str:
    """The text of one section of the report."""
    start = html.index(f'id="{name}"')
    end = html.find("<section ", start + 1)
    return html[start : end if end > 0 else len(html)]


# ---------------------------------------------------------------------------------------------
# the page


def test_report_is_written_beside_the_run_with_every_section_in_order(run_dir, report, html):
    from ovfdlr.report.sections import SECTIONS as DEFINED

    assert report == run_dir / "report.html"
    positions = [html.index(f'id="{name}"') for name in SECTIONS]
    assert positions == sorted(positions)
    assert [s.id for s in DEFINED] == list(SECTIONS[1:])
    for s in DEFINED[1:]:  # each detail section: its heading, then the sentence of what it shows
        text = section(html, s.id)
        assert f"<h2>{s.title}</h2>" in text and f'<p class="says">{escape(s.says)}</p>' in text


def test_first_screen(run_dir, html):
    """The question, the cohorts per class, the primary endpoint, the forest plot of macro AUC
    per arm and view, and the chosen models: all before the first detail section."""
    first = section(html, "summary")
    assert "Which <strong>astlof</strong> class" in first
    classes = pd.read_csv(run_dir / "tables/cohort_classes.csv")
    for row in classes.itertuples(index=False):
        assert f"<td>{row.cohort}</td><td>{row[1]}</td><td>{row[2]}</td>" in first
    primary = first[first.index('id="primary-endpoint"') :]
    primary = primary[: primary.index("</div>")]
    comparison = pd.read_csv(run_dir / "tables/comparison.csv")
    rows = comparison[
        (comparison["family"] == "primary") & (comparison["test"] == "macro (DeLong)")
    ]
    assert len(rows) == 1 and "Holm" in primary
    row = rows.iloc[0]
    assert fmt.estimate(row.difference, row.ci_lower, row.ci_upper) in primary
    assert fmt.p_value(row.p_adjusted) in primary
    forest = pd.read_csv(run_dir / "tables/report/summary-macro-auc.csv")
    assert set(forest["arm"]) == {"radimagenet", "untrained"}
    assert set(forest["view"]) == {
        "train (apparent)",
        "train (out-of-fold)",
        "internal",
        "external",
    }
    assert 'alt="macro AUC (95% CI) per arm and cohort"' in first
    assert (run_dir / "figures/report/summary-forest.svg").is_file()
    for name in ("radimagenet", "untrained"):
        chosen = json.loads((run_dir / f"arms/{name}/arm.json").read_text(encoding="utf-8"))[
            "chosen"
        ]
        assert f"<td>{name}</td><td>{display_name(chosen)}</td>" in first
        assert fmt.number(forest.query("arm == @name and view == 'external'").auc.iloc[0]) in first


def test_every_table_links_its_csv_and_every_figure_its_png_and_svg(run_dir, html):
    tables = html.count("<table>")
    links = re.findall(
        r'</table>\s*(?:</details>\s*)?<p class="links">table: <a href="([^"]+)"', html
    )
    assert tables > 20 and len(links) == tables
    for link in links:
        assert link.endswith(".csv") and (run_dir / link).is_file(), link
    figures = re.findall(
        r'<a href="([^"]+\.png)">PNG</a>( · <a href="([^"]+\.svg)">SVG</a>)?', html
    )
    assert len(figures) == html.count("<img ")
    for png, _, svg in figures:
        assert (run_dir / png).is_file() and svg == png[:-4] + ".svg" and (run_dir / svg).is_file()


def test_long_tables_are_collapsed_with_their_csv_linked():
    from ovfdlr.report.context import COLLAPSE_ROWS, Table
    from ovfdlr.report.html import _environment

    macros = _environment().get_template("macros.html.j2").module
    short = Table(["a"], [["1"]] * COLLAPSE_ROWS, "t.csv")
    long = Table(["a"], [["1"]] * (COLLAPSE_ROWS + 1), "t.csv")
    assert "<details" not in str(macros.table(short))
    text = str(macros.table(long))
    assert text.index("<details") < text.index("<table>")
    assert f"{COLLAPSE_ROWS + 1} rows: show the table" in text and 'href="t.csv"' in text
    assert "<details" not in str(macros.table(long, open=True))


def test_every_figure_is_embedded_once(run_dir, html):
    expected = (
        list(run_dir.glob("arms/*/figures/*.png"))
        + list(run_dir.glob("figures/*.png"))
        + list(run_dir.glob("figures/report/*.png"))
        + list(run_dir.glob("features/gradcam-*/*.png"))
    )
    assert (run_dir / "figures/finetune-radimagenet.png").is_file()
    assert (run_dir / "figures/finetune-radimagenet.svg").is_file()
    assert len(DATA_URI.findall(html)) == len(expected) == html.count("<img ")
    for kind in ("roc", "confusion", "calibration", "decision"):
        for arm in ("radimagenet", "untrained"):
            assert len(list(run_dir.glob(f"arms/{arm}/figures/{kind}-*.png"))) == 4


def test_self_contained_with_links_that_resolve(run_dir, html):
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    links = re.findall(r'href="([^"#][^"]*)"', html)
    assert any(link.endswith(".svg") for link in links)
    assert any(link.endswith(".csv") for link in links)
    for link in links:
        assert (run_dir / link).exists(), link
    for csv in ("tables/comparison.csv", "arms/radimagenet/tables/performance.csv"):
        assert f'href="{csv}"' in html


def test_header_states_the_weights_and_warns_of_the_untrained_network(html):
    header = section(html, "top")
    assert 'id="untrained-warning"' in header
    assert "untrained network" in header and "untrained" in header
    assert "2025-01-31T10:20:30+00:00" in header and "ovfdlr 0.1.0" in header
    question = section(html, "summary")
    assert "deep features from ResNet-50 (RadImageNet)" in question
    assert "UNTRAINED ResNet-50" in question


def test_no_warning_when_every_network_is_pretrained(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)
    manifest = json.loads((run / "run.json").read_text(encoding="utf-8"))
    manifest["arms"]["untrained"]["deep"]["pretrained"] = True
    (run / "run.json").write_text(json.dumps(manifest))
    text = render_report(run).read_text(encoding="utf-8")
    assert "untrained-warning" not in text and "UNTRAINED" not in text


def test_metadata_section(html):
    meta = section(html, "metadata")
    assert "<details>" in meta and "manifest: cohort/manifest.csv" in meta
    assert "ab" * 32 in meta and "cd" * 32 in meta and "ef" * 32 in meta
    assert "1 min 15 s" in meta and "cached" in meta and "total" in meta
    assert "1 case failed in radiomics" in meta
    assert 'href="errors.csv"' in meta and "c149" in meta
    assert f"<td>{np.__version__}</td>" in meta


def test_cohort_section(html):
    cohort = section(html, "cohort")
    assert "<th>age_mean</th>" in cohort and "<td>B</td>" in cohort


def test_selection_and_performance_tables(run_dir, html):
    for arm in ("radimagenet", "untrained"):
        summary = json.loads((run_dir / f"arms/{arm}/arm.json").read_text(encoding="utf-8"))
        selection = section(html, "selection")
        for feature in summary["selected_features"]:
            assert f"<td>{feature}</td>" in selection
        performance = section(html, "performance")
        block = performance[performance.index(f'id="performance-{arm}"') :]
        chosen, every = block.split("</table>")[:2]
        assert chosen.count("<tr") == 1 + 4  # header + the chosen model x 4 cohorts
        assert every.count("<tr") == 1 + 2 * 4  # header + 2 classifiers x 4 cohorts
        assert chosen.count('class="chosen"') == every.count('class="chosen"') == 4
        assert "(chosen)" in chosen
        block = chosen
        auc = summary["macro_auc"]["internal"]
        assert fmt.estimate(auc["auc"], auc["lower"], auc["upper"]) in block


def test_p_values_are_shown_within_the_unit_interval(html):
    comparison = section(html, "comparison")
    rows = re.findall(r"<tr>(<td>.*?)</tr>", comparison)
    # 2 held-out cohorts (the training cohort's views chose the models) x (2 macro tests + 3
    # classes); the raw and the Holm-adjusted p side by side, fmt.MISSING where there is none
    assert len(rows) == 2 * 5
    for row in rows:
        cells = re.findall(r"<td>(.*?)</td>", row)
        for value in (cells[8], cells[9]):
            assert value in ("&lt; 0.001", fmt.MISSING) or re.fullmatch(r"[01]\.\d{3}", value)
        assert cells[10] in ("primary", "secondary", "not adjusted")


@pytest.mark.parametrize(
    ("p", "text"),
    [(0.0, "< 0.001"), (0.0004, "< 0.001"), (0.0123, "0.012"), (1.0 + 1e-12, "1.000")],
)
def test_p_value_format(p, text):
    assert fmt.p_value(p) == text


def test_a_p_value_above_one_is_refused(run_dir, tmp_path):
    with pytest.raises(ValueError, match="outside"):
        fmt.p_value(2.343)
    run = copy_run(run_dir, tmp_path)
    comparison = pd.read_csv(run / "tables/comparison.csv")
    comparison.loc[3, "p_value"] = 2.343
    comparison.to_csv(run / "tables/comparison.csv", index=False)
    with pytest.raises(ReportError, match=r"comparison\.csv, row 5: p-value 2\.343"):
        render_report(run)


def test_sections_of_explanations_fine_tuning_and_limitations(html):
    shap = section(html, "shap")
    assert shap.count("<img ") == 1 + 3 + 2  # bar, beeswarms, waterfalls of one arm
    assert "This arm's model was not explained" in shap
    tuning = section(html, "finetuning")
    assert tuning.count("<img ") == 2 and "gradcam-c001" not in tuning.split("<img")[0]
    limitations = section(html, "limitations")
    for phrase in ("MRI", "oedema", "vacuum cleft", "pain", "not a treatment decision"):
        assert phrase in limitations


def test_limitations_come_from_the_run(run_dir, html, tmp_path):
    limitations = section(html, "limitations")
    items = re.findall(r"<li><strong>(.*?)</strong>", limitations)
    assert items[-2:] == [
        "The labels contain what CT cannot see.",
        "Probabilities are not a treatment decision.",
    ]
    for title in (
        "Synthetic data says nothing about patients.",
        "Stratified validation cohorts.",
        "Untrained network.",
        "Failed cases.",
        "A training cohort below the minimum sample size.",
    ):
        assert title in items, items
    assert "generator 1.0.0, seed 7" in limitations and "external was drawn" in limitations
    # real data: no word of synthetic data; a fine-tuned arm without nested CV is named
    run = copy_run(run_dir, tmp_path)
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    record["synthetic"] = None
    (run / "run.json").write_text(json.dumps(record))
    arm = json.loads((run / "arms/radimagenet/arm.json").read_text(encoding="utf-8"))
    arm["nested_cv"] = {"ran": False, "reason": "the arm's network was fine-tuned"}
    (run / "arms/radimagenet/arm.json").write_text(json.dumps(arm))
    text = section(render_report(run).read_text(encoding="utf-8"), "limitations")
    assert "Synthetic" not in text and "Stratified" not in text
    assert "No nested cross-validation for radimagenet." in text
    assert "the arm&#39;s network was fine-tuned" in text


def test_sample_size_section(run_dir, html):
    from ovfdlr.stats.samplesize import multinomial_sample_size

    part = section(html, "sample-size")
    minimum = pd.read_csv(run_dir / "tables/report/sample-size-minimum.csv")
    assert list(minimum["basis"]) == ["candidate features", "selected features"] * 2
    classes = pd.read_csv(run_dir / "tables/cohort_classes.csv").set_index("cohort")
    train = classes.loc["train", ["class 0", "class 1", "class 2"]].astype(float)
    arm = json.loads((run_dir / "arms/radimagenet/arm.json").read_text(encoding="utf-8"))
    expected = multinomial_sample_size(
        len(arm["selected_features"]), (train / train.sum()).to_numpy(), c_statistic=0.8
    )
    row = minimum.iloc[1]
    assert row["minimum"] == expected.n and row["training cases"] == train.sum()
    assert row["met"] == ("yes" if train.sum() >= expected.n else "no")
    assert "anticipated C-statistic of 0.8" in part and "shrinkage 0.9" in part
    cases = pd.read_csv(run_dir / "tables/report/sample-size-cases.csv").set_index("cohort")
    assert cases.loc["train", "class 1: cases"] == classes.loc["train", "class 1"]


def test_every_checklist_item_has_a_row(html):
    from ovfdlr.report.checklists import CHECKLISTS, SUPPLIED_BY_AUTHORS, load

    part = section(html, "checklists")
    for checklist in CHECKLISTS:
        items = load(checklist)
        assert sorted(set(items["parent"].astype(int))) == list(range(1, checklist.items + 1))
        block = part[part.index(f"<h3>{checklist.name}</h3>") :]
        block = block[: block.index("</table>")]
        rows = re.findall(r"<tr><td>(.*?)</td><td>.*?</td><td>.*?</td><td>(.*?)</td></tr>", block)
        assert [r[0] for r in rows] == list(items["item"])
        answered = [r for r in rows if r[1] != SUPPLIED_BY_AUTHORS]
        assert 0 < len(answered) < len(rows)
        for _, where in answered:
            assert re.fullmatch(r'<a href="#[a-z-]+">[^<]+</a>', where), where
        # an item answered only by a section that shows nothing in this run is the authors'
        unanswered = items[items["report"] == ""]
        assert {r[0] for r in rows if r[1] == SUPPLIED_BY_AUTHORS} >= set(unanswered["item"])


def test_optional_parts_can_be_missing(run_dir, tmp_path):
    run = copy_run(run_dir, tmp_path)
    for path in (
        "tables/comparison.csv",
        "tables/cohort_demographics.csv",
        "figures/inputs-001.png",
        "errors.csv",
    ):
        (run / path).unlink()
    shutil.rmtree(run / "features")
    text = render_report(run, tmp_path / "elsewhere" / "r.html").read_text(encoding="utf-8")
    assert "This run compares no arms." in text
    assert "No arm was fine-tuned" in text
    assert "records no age or sex" in text
    assert "No contact sheet" in text
    assert 'href="../run/arms/radimagenet/tables/performance.csv"' in text


@pytest.mark.parametrize(
    "missing", ["run.json", "tables/cohort_classes.csv", "arms/untrained/tables/performance.csv"]
)
def test_a_missing_required_file_is_named(run_dir, tmp_path, missing):
    run = copy_run(run_dir, tmp_path)
    (run / missing).unlink()
    with pytest.raises(ReportError, match=re.escape(str(run / missing))):
        render_report(run)


def test_no_identifier_from_image_headers(run_dir, tmp_path, monkeypatch):
    """The report reads no image: names in a DICOM header of the cohort never reach it."""
    series = run_dir / "cohort/dicom-c000"
    header = (series / "slice000.dcm").read_bytes()
    assert PATIENT_NAME.encode() in header and PATIENT_ID.encode() in header

    opened: list[str] = []
    real_open = builtins.open

    def recording_open(file, *args, **kwargs):
        opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def refuse(*args, **kwargs):
        raise AssertionError("the report must not read images")

    monkeypatch.setattr(builtins, "open", recording_open)
    monkeypatch.setattr(io, "open", recording_open)
    monkeypatch.setattr(sitk, "ReadImage", refuse)
    monkeypatch.setattr(pydicom, "dcmread", refuse)
    text = render_report(run_dir, tmp_path / "report.html").read_text(encoding="utf-8")
    assert opened, "the recorder saw no file: the check would prove nothing"
    assert not [f for f in opened if "/cohort/" in f or f.endswith((".dcm", ".nii.gz"))]
    for needle in (PATIENT_NAME, PATIENT_ID, "Doe&#94;Jane", "Doe^"):
        assert needle not in text


# ---------------------------------------------------------------------------------------------
# a real browser


@pytest.mark.usefixtures("chromium")
def test_browser_loads_every_image_without_script_errors(run_dir, report, html, tmp_path):
    png = tmp_path / "report.png"
    check = check_report(report, png)
    assert check.images_total == html.count("<img ") > 40
    assert check.images_loaded == check.images_total
    assert check.script_errors == []
    assert check.ok and check.screenshot == png
    # the primary endpoint lies within the first screen of a 1,400-pixel-wide window
    assert check.page_width == 1400
    assert 0 < check.primary_top < check.primary_bottom <= 900
    assert check.page_height > 3 * 900
    pixels = plt.imread(png)
    assert pixels.shape[:2] == (2000, 1400)
    assert pixels[..., :3].std() > 0.05  # not a blank page


@pytest.mark.usefixtures("chromium")
def test_browser_check_sees_broken_images_and_script_errors(report, tmp_path):
    broken = tmp_path / "broken.html"
    text = report.read_text(encoding="utf-8").replace(
        "</body>",
        '<img src="data:image/png;base64,AAAA"><script>notDefined();</script></body>',
    )
    broken.write_text(text, encoding="utf-8")
    check = check_report(broken, timeout=60)
    assert check.images_loaded == check.images_total - 1
    assert len(check.script_errors) == 1 and "notDefined" in check.script_errors[0]
    assert not check.ok


def test_parse_check_without_the_check_element():
    with pytest.raises(BrowserError, match="not an ovfdlr report"):
        parse_check("<html><body></body></html>")
    total, loaded, errors = parse_check('<div id="report-check"></div>')
    assert (total, loaded) == (0, 0) and "did not run" in errors[0]


def test_a_missing_chromium_names_the_package(monkeypatch, tmp_path):
    monkeypatch.delenv("OVFDLR_CHROMIUM", raising=False)
    monkeypatch.setattr(browser, "DEFAULT_BINARY", str(tmp_path / "no-chromium"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(BrowserError, match="install the Debian package 'chromium'"):
        browser.find_chromium()


@pytest.mark.parametrize(
    "counts", [(3195, 3138, 1939, 834, 128), (1147, 1100, 420, 160, 35), (9, 5)]
)
def test_log_axis_labels_do_not_overprint(counts):
    """The selection funnel's log axis is labelled at powers of ten only, in plain numbers,
    and no two labels overlap (matplotlib's default labels minor ticks as 2x10^2, 3x10^2...)."""
    funnel = pd.DataFrame({"step": [f"step {i}" for i in range(len(counts))], "features": counts})
    figure = figures.funnel_figure(funnel, "deep")
    figure.canvas.draw()
    axis = figure.axes[0]
    renderer = figure.canvas.get_renderer()
    labels = [t for t in axis.get_xticklabels(minor=False) + axis.get_xticklabels(minor=True)]
    shown = [t for t in labels if t.get_text() and t.get_visible()]
    lo, hi = axis.get_xlim()
    shown = [t for t in shown if lo <= t.get_position()[0] <= hi]
    assert len(shown) >= 2
    assert all(re.fullmatch(r"[\d,]+", t.get_text()) for t in shown), [t.get_text() for t in shown]
    boxes = sorted((t.get_window_extent(renderer) for t in shown), key=lambda b: b.x0)
    assert all(a.x1 < b.x0 for a, b in itertools.pairwise(boxes))
    plt.close(figure)


def test_console_summary_of_the_primary_endpoint(run_dir, tmp_path):
    """What `ovfdlr run` prints after the chosen models: the primary endpoint's tests."""
    from ovfdlr.experiment import primary_summary

    what, table = primary_summary(run_dir)
    comparison = pd.read_csv(run_dir / "tables/comparison.csv")
    row = comparison.query("family == 'primary' and test == 'macro (DeLong)'").iloc[0]
    assert what == f"{row.arm_a} - {row.arm_b}, macro (DeLong)"
    assert table["cohort"].tolist() == ["external"]
    assert table["difference (95% CI)"].iloc[0] == (
        f"{row.difference:.3f} ({row.ci_lower:.3f}\u2013{row.ci_upper:.3f})"
    )
    assert table["p (Holm)"].iloc[0] == fmt.p_value(row.p_adjusted)
    # a test that could not be done says why, and a p-value outside [0, 1] is refused
    broken = copy_run(run_dir, tmp_path / "broken")
    frame = pd.read_csv(broken / "tables/comparison.csv")
    primary = (frame["family"] == "primary") & (frame["test"] == "macro (DeLong)")
    frame.loc[primary, ["difference", "ci_lower", "ci_upper", "p_value", "p_adjusted"]] = np.nan
    frame["note"] = frame["note"].astype(object)
    frame.loc[primary, "note"] = "test n/a: 1 case in class 1"
    frame.to_csv(broken / "tables/comparison.csv", index=False)
    row = primary_summary(broken)[1].iloc[0]
    assert row["difference (95% CI)"] == "no test: test n/a: 1 case in class 1"
    assert row["p"] == fmt.MISSING and "nan" not in " ".join(map(str, row))
    frame.loc[primary, "p_value"] = 2.343
    frame.to_csv(broken / "tables/comparison.csv", index=False)
    with pytest.raises(ValueError, match="outside"):
        primary_summary(broken)
    run = copy_run(run_dir, tmp_path)
    (run / "tables/comparison.csv").unlink()
    assert primary_summary(run)[1].empty


def test_claims_follow_how_each_arm_chose_its_model():
    """A held-out cohort that chose an arm's model is labelled so, for that arm only; the
    forest plot then gives the view a row per claim, and the question says where each arm's
    model was chosen."""
    from ovfdlr.labels import astlof
    from ovfdlr.report.summary import CHOSE_CLAIM, VIEW_CLAIMS, chosen_macro_auc, question
    from ovfdlr.scoring import HELD_OUT

    performance = pd.DataFrame(
        {
            "classifier": ["lr"] * 3 + ["rf"] * 3,
            "cohort": ["train", "internal", "external"] * 2,
            "scoring": ["apparent", "held-out", "held-out"] * 2,
            "n": [60, 20, 20] * 2,
            "note": [np.nan] * 6,
            "macro_auc": [0.99, 0.8, 0.7, 0.98, 0.75, 0.72],
            "macro_auc_lower": [0.97, 0.7, 0.6, 0.96, 0.6, 0.6],
            "macro_auc_upper": [1.0, 0.9, 0.8, 1.0, 0.85, 0.84],
        }
    )
    on_internal = {"chosen": "lr", "chosen_on": "internal", "settings": {"internal": "internal"}}
    on_cv = {"chosen": "rf", "chosen_on": "cv", "settings": {}}
    a = chosen_macro_auc("a", on_internal, performance)
    b = chosen_macro_auc("b", on_cv, performance)
    assert a.set_index("view").loc["internal", "claim"] == CHOSE_CLAIM
    assert a.set_index("view").loc["external", "claim"] == VIEW_CLAIMS[HELD_OUT]
    assert b.set_index("view").loc["internal", "claim"] == VIEW_CLAIMS[HELD_OUT]
    assert a["auc"].tolist() == [0.99, 0.8, 0.7] and b["auc"].tolist() == [0.98, 0.75, 0.72]
    figure = figures.forest_figure(pd.concat([a, b], ignore_index=True))
    ticks = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert f"internal\n{CHOSE_CLAIM}" in ticks and f"internal\n{VIEW_CLAIMS[HELD_OUT]}" in ticks
    assert len(ticks) == 4  # train, internal twice, external
    plt.close(figure)
    asked = question(astlof(), [("a", on_internal), ("b", on_cv)], "train")
    assert asked["choice"] == (
        "a's model is chosen by the internal cohort; b's model is chosen by cross-validation "
        "on the train cohort"
    )
    assert question(astlof(), [("b", on_cv)], "train")["choice"] == (
        "models are chosen by cross-validation on the train cohort"
    )


def test_console_summary_lists_a_view_without_an_estimate(run_dir, tmp_path):
    from ovfdlr.experiment import summary_table

    run = copy_run(run_dir, tmp_path)
    record = json.loads((run / "run.json").read_text(encoding="utf-8"))
    chosen = record["arms"]["radimagenet"]["chosen"]
    path = run / "arms/radimagenet/tables/performance.csv"
    frame = pd.read_csv(path)
    external = (frame["classifier"] == chosen) & (frame["cohort"] == "external")
    frame.loc[external, ["macro_auc", "macro_auc_lower", "macro_auc_upper"]] = np.nan
    frame["note"] = frame["note"].astype(object)
    frame.loc[external, "note"] = "AUC n/a: no case in class 2"
    frame.to_csv(path, index=False)
    table = summary_table(run, record)
    views = table[table["arm"] == "radimagenet"].set_index("cohort")["macro AUC (95% CI)"]
    assert views["external"] == "no AUC: AUC n/a: no case in class 2"
    assert not table["macro AUC (95% CI)"].str.contains("nan").any()


def test_minimum_sample_size_of_a_binary_and_a_three_class_arm():
    """Both bases of every arm, the positive class's prevalence for two classes, and events
    per parameter over the whole model's parameters ((K - 1) per feature)."""
    from ovfdlr.labels import astlof, binary
    from ovfdlr.report.sample_size import minimum_table
    from ovfdlr.stats.samplesize import binary_sample_size, multinomial_sample_size

    arm = {"n_input_features": 40, "selected_features": ["a", "b", "c"]}
    counts = pd.Series({"class 0": 150, "class 1": 50})
    table, method, assumptions = minimum_table([("x", arm)], counts, binary(), 0.75, patients=180)
    assert table["basis"].tolist() == ["candidate features", "selected features"]
    for row, p in zip(table.itertuples(index=False), (40, 3), strict=True):
        assert row.minimum == binary_sample_size(p, 0.25, c_statistic=0.75).n
        assert row.parameters == p and row.met == ("yes" if row.minimum <= 200 else "no")
        assert row[table.columns.get_loc("events per parameter")] == pytest.approx(50 / p)
    assert "Riley" in method and "of 180 patients" in assumptions
    assert "for every pair" not in assumptions and "C-statistic of 0.75" in assumptions
    counts = pd.Series({"class 0": 100, "class 1": 60, "class 2": 40})
    table, _, assumptions = minimum_table([("x", arm)], counts, astlof(), 0.8)
    expected = multinomial_sample_size(3, [0.5, 0.3, 0.2], c_statistic=0.8)
    assert table.iloc[1]["minimum"] == expected.n
    assert table.iloc[1]["events per parameter"] == pytest.approx(40 / (3 * 2))
    assert "for every pair of classes" in assumptions and "patients" not in assumptions


def test_a_sample_size_that_cannot_be_computed_says_why():
    """A class without training cases: the row names the reason instead of a traceback."""
    from ovfdlr.labels import astlof
    from ovfdlr.report.sample_size import minimum_table

    arm = {"n_input_features": 40, "selected_features": ["a"]}
    counts = pd.Series({"class 0": 100, "class 1": 60, "class 2": 0})
    table, _, _ = minimum_table([("x", arm)], counts, astlof(), 0.8)
    assert len(table) == 2
    assert table["met"].str.startswith("not computed: ").all()
    assert "minimum" not in table.columns


def test_tables_in_view_and_cohort_order():
    from ovfdlr.scoring import in_view_order, rows_in_cohort_order

    frame = pd.DataFrame(
        {
            "cohort": ["external", "train", "internal", "train", "train", "zeta"],
            "scoring": ["held-out", "nested-cv", "held-out", "apparent", "out-of-fold", "held-out"],
            "class": [0, 1, 2, 3, 4, 5],
        }
    )
    ordered = in_view_order(frame)
    assert ordered["class"].tolist() == [3, 4, 1, 2, 0, 5]
    older = pd.DataFrame({"cohort": ["internal", "train (cv)", "train"], "x": [1, 2, 3]})
    assert in_view_order(older)["scoring"].tolist() == ["apparent", "out-of-fold", "held-out"]
    counts = pd.DataFrame(
        {"cohort": ["(all)", "prospective", "train", "external"], "n": [4, 3, 2, 1]}
    )
    assert rows_in_cohort_order(counts)["cohort"].tolist() == [
        "train",
        "external",
        "prospective",
        "(all)",
    ]


def test_metadata_names_the_radiomics_engine_and_its_compliance(run_dir, html):
    """The run's radiomics engine, its version (as run.json recorded it) and what it complies
    with; the ibsi engine's agreement table and tags appear only for an ibsi run."""
    from ovfdlr.engines import COMPLIANCE

    versions = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))["versions"]
    assert versions["radiomics engine"].startswith("native ")
    metadata = section(html, "metadata")
    assert "<h3>Radiomics engine</h3>" in metadata
    assert f"<strong>native</strong> ({versions['radiomics engine']})" in metadata
    assert escape(COMPLIANCE["native"]) in metadata
    assert "IBSI tag of every radiomics column" not in metadata


def test_ibsi_run_metadata_prints_the_agreement_and_the_tags(tmp_path):
    """For a run with engine: ibsi, the metadata carry IBSI's agreement table (the shipped
    measurement) and each radiomics column's IBSI tag."""
    from ovfdlr.layout import RunLayout
    from ovfdlr.report.context import radiomics_engine
    from ovfdlr.report.reading import RunFolder

    layout = RunLayout(tmp_path)
    layout.config.write_text(
        yaml.safe_dump({"radiomics": {"engine": "ibsi"}, "arms": [{"name": "r"}]})
    )
    tags = layout.feature_table("radiomics").with_name("radiomics.ibsi_tags.csv")
    tags.parent.mkdir(parents=True)
    tags.write_text("feature,ibsi_tag\noriginal_glcm_ClusterShade_3D_avg,cm_clust_shade_3D_avg\n")
    manifest = {
        "arms": {"r": {"feature_sets": ["radiomics"]}},
        "versions": {"radiomics engine": "ibsi 0.1.0 mirp 2.7.0"},
    }
    found = radiomics_engine(
        RunFolder(tmp_path, tmp_path), manifest, layout.config.read_text(encoding="utf-8")
    )
    assert found["engine"] == "ibsi" and found["version"] == "ibsi 0.1.0 mirp 2.7.0"
    shipped = pd.read_csv(
        Path(__file__).parents[1] / "src" / "ovfdlr" / "params" / "ibsi-agreement.csv"
    )
    assert found["agreement"].rows == shipped.astype(str).values.tolist()
    assert found["tags"].rows == [["original_glcm_ClusterShade_3D_avg", "cm_clust_shade_3D_avg"]]
