"""The report's sections: their anchors, headings and the one sentence that says what each
shows, in page order. The template, the contents list and the checklist mapping
(:mod:`ovfdlr.report.checklists`) take them from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Section:
    id: str
    title: str
    says: str  # one sentence: what the section shows


SECTIONS: tuple[Section, ...] = (
    Section(
        "summary",
        "Summary",
        "The question, the cohorts, the primary endpoint, the chosen model of each arm and its "
        "macro AUC on every cohort.",
    ),
    Section(
        "performance",
        "Performance",
        "Every classifier of every arm on every cohort, with 95% CIs and the reason wherever "
        "a value cannot be estimated.",
    ),
    Section(
        "roc",
        "ROC curves and confusion matrices",
        "The chosen model's one-vs-rest ROC curves and its confusion matrix at the argmax "
        "decision, per cohort.",
    ),
    Section(
        "comparison",
        "Arm comparison",
        "Every paired test between the chosen models of two arms, with its family and its "
        "Holm-adjusted p-value.",
    ),
    Section(
        "calibration",
        "Calibration and decision curves",
        "How far the chosen model's probabilities can be taken at face value, and the net "
        "benefit of acting on them.",
    ),
    Section(
        "subgroups",
        "Subgroups",
        "The chosen model's macro AUC within each validation cohort by centre, sex and age band.",
    ),
    Section(
        "shap",
        "SHAP explanations",
        "Which features drive the chosen model's predictions: overall, per class and in two "
        "example cases.",
    ),
    Section(
        "selection",
        "Feature selection",
        "How the candidate features were narrowed to the final model's, fitted on the training "
        "cohort only.",
    ),
    Section(
        "hyperparameters",
        "Hyper-parameters",
        "The hyper-parameters each classifier was tuned to and its cross-validated macro AUC.",
    ),
    Section(
        "sample-size",
        "Sample size",
        "Cases per class in each cohort, and the minimum training size a model of this size "
        "needs by Riley et al.'s criteria.",
    ),
    Section(
        "cohort",
        "Cohort",
        "The cohorts by centre, and their patients' age and sex.",
    ),
    Section(
        "inputs",
        "Prepared inputs",
        "The 2-D images the deep networks saw: the chosen slice of each vertebra, cropped and "
        "windowed.",
    ),
    Section(
        "finetuning",
        "Fine-tuning and Grad-CAM",
        "The fine-tuning curve and Grad-CAM overlays of the arms whose network was fine-tuned.",
    ),
    Section(
        "limitations",
        "Limitations",
        "What these results cannot claim: from this run, and from the task itself.",
    ),
    Section(
        "checklists",
        "Reporting checklists",
        "Where this report answers each item of TRIPOD+AI and CLEAR; every other item is for "
        "the authors to supply.",
    ),
    Section(
        "metadata",
        "Run metadata and versions",
        "What ran, with which software, settings and data: enough to reproduce every number.",
    ),
    Section(
        "files",
        "Files",
        "Every table of this page as CSV and every figure as PNG and SVG, beside the report.",
    ),
)

BY_ID: dict[str, Section] = {s.id: s for s in SECTIONS}
