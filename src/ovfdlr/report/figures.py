"""The figures of an arm and of a run, drawn with matplotlib and saved as PNG and SVG.

Each function takes tables (as written under ``tables/``) and returns a matplotlib figure;
:func:`save` writes it as ``<stem>.png`` and ``<stem>.svg``.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ovfdlr.labels import DEFAULT, LabelScheme

PALETTE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d")


def class_colour(labels: LabelScheme, value) -> str:
    """The colour of class ``value``: by its position in the scheme (grey when unknown)."""
    try:
        return PALETTE[labels.index(int(value)) % len(PALETTE)]
    except (ValueError, TypeError):
        return "grey"


def class_text(labels: LabelScheme, value) -> str:
    try:
        return labels.label_text(int(value))
    except (ValueError, TypeError):
        return str(value)


def save(figure, stem: str | Path, *, dpi: int = 110) -> list[Path]:
    """Write ``stem``.png and ``stem``.svg and close the figure."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    from ovfdlr.atomic import atomic_path

    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    try:
        with atomic_path(paths[0]) as temporary:
            figure.savefig(temporary, format="png", dpi=dpi, bbox_inches="tight")
        with atomic_path(paths[1]) as temporary:
            figure.savefig(temporary, format="svg", bbox_inches="tight", metadata={"Date": None})
    finally:
        plt.close(figure)
    return paths


def roc_figure(
    curves: pd.DataFrame,
    per_class: pd.DataFrame,
    cohort: str,
    title: str = "",
    labels: LabelScheme = DEFAULT,
):
    """One-vs-rest ROC curves per class with macro and micro averages, AUCs in the legend."""
    figure, axis = plt.subplots(figsize=(4.6, 4.4))
    aucs = {}
    for row in per_class.itertuples(index=False):
        aucs[str(row[0])] = (row.auc, row.lower, row.upper)
    for name, group in curves.groupby("curve", sort=False):
        label = str(name)
        style = {"lw": 1.6}
        if label.startswith("class"):
            c = int(label.split()[-1])
            style["color"] = class_colour(labels, c)
            auc = aucs.get(str(c)) or aucs.get(label)
            text = class_text(labels, c)
            if auc:
                text += f": {auc[0]:.3f} ({auc[1]:.3f}-{auc[2]:.3f})"
        else:
            style |= {"color": "black", "ls": "--" if label == "macro" else ":"}
            text = f"{label} average"
        axis.plot(group["fpr"], group["tpr"], label=text, **style)
    axis.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8)
    axis.set(
        xlabel="1 - specificity",
        ylabel="sensitivity",
        xlim=(0, 1),
        ylim=(0, 1.01),
        title=title or cohort,
    )
    axis.legend(fontsize=7, loc="lower right")
    axis.set_aspect("equal")
    return figure


def confusion_figure(confusion: pd.DataFrame, cohort: str):
    """Confusion matrix (counts and row percentages) of the chosen model on one cohort."""
    matrix = confusion.pivot(index="true", columns="predicted", values="count").fillna(0)
    figure, axis = plt.subplots(figsize=(3.6, 3.2))
    shares = matrix.div(matrix.sum(axis=1).replace(0, np.nan), axis=0).fillna(0)
    axis.imshow(shares.to_numpy(), cmap="Blues", vmin=0, vmax=1)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            axis.text(
                j,
                i,
                f"{int(matrix.iat[i, j])}\n{shares.iat[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if shares.iat[i, j] > 0.6 else "black",
            )
    axis.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns])
    axis.set_yticks(range(matrix.shape[0]), [str(c) for c in matrix.index])
    axis.set(xlabel="predicted class", ylabel="true class", title=cohort)
    return figure


def calibration_figure(curves: pd.DataFrame, cohort: str, labels: LabelScheme = DEFAULT):
    """Reliability diagram per class."""
    figure, axis = plt.subplots(figsize=(4.2, 4.0))
    for c, group in curves.groupby("class"):
        group = group[group["count"] > 0]
        axis.plot(
            group["mean_predicted"],
            group["observed_fraction"],
            marker="o",
            ms=3,
            color=class_colour(labels, c),
            label=class_text(labels, c),
        )
    axis.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8)
    axis.set(
        xlabel="predicted probability",
        ylabel="observed fraction",
        xlim=(0, 1),
        ylim=(0, 1),
        title=cohort,
    )
    axis.legend(fontsize=7)
    return figure


def decision_figure(decision: pd.DataFrame, cohort: str, labels: LabelScheme = DEFAULT):
    """Net benefit per class (one-vs-rest) against treat-all and treat-none."""
    classes = sorted(decision["class"].unique())
    figure, axes = plt.subplots(1, len(classes), figsize=(3.4 * len(classes), 3.0), sharey=True)
    axes = np.atleast_1d(axes)
    for axis, c in zip(axes, classes, strict=True):
        group = decision[decision["class"] == c]
        axis.plot(
            group["threshold"],
            group["net_benefit_model"],
            color=class_colour(labels, c),
            label="model",
        )
        axis.plot(
            group["threshold"], group["net_benefit_all"], color="grey", lw=0.8, label="treat all"
        )
        axis.plot(
            group["threshold"], group["net_benefit_none"], color="black", lw=0.8, label="treat none"
        )
        top = max(group["net_benefit_model"].max(), group["net_benefit_all"].max(), 0.05)
        axis.set(
            xlabel="threshold probability",
            title=class_text(labels, c),
            ylim=(-0.05, top * 1.1),
        )
    axes[0].set_ylabel("net benefit")
    axes[0].legend(fontsize=7)
    figure.suptitle(cohort, fontsize=9)
    return figure


def plain_log_axis(axis, which: str = "x") -> None:
    """A log axis labelled at the powers of ten only, as plain numbers (1, 10, 100, 1,000):
    matplotlib's default also labels minor ticks (2x10^2, 3x10^2, ...) when the range spans
    less than two decades, and those labels overprint each other."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    scale = getattr(axis, f"{which}axis")
    scale.set_major_locator(LogLocator(base=10, numticks=12))
    scale.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.10g}"))
    scale.set_minor_formatter(NullFormatter())


def funnel_figure(funnel: pd.DataFrame, arm: str):
    """Features left after each selection step."""
    figure, axis = plt.subplots(figsize=(5.0, 2.8))
    counts = funnel["features"].to_numpy()[::-1]
    axis.barh(funnel["step"][::-1], counts, color="#4c72b0")
    for i, value in enumerate(counts):
        axis.text(value, i, f" {value:,}", va="center", fontsize=8)
    axis.set(xlabel="features (log scale)", title=f"feature selection ({arm})")
    axis.set_xscale("log")
    positive = counts[counts > 0]
    low = 10 ** np.floor(np.log10(positive.min())) if len(positive) else 1
    axis.set_xlim(low / 2 if low >= 1 else 0.5, max(positive.max(), 1) * 4 if len(positive) else 10)
    plain_log_axis(axis)
    return figure


def lasso_figure(path: pd.DataFrame, chosen_C: float, arm: str):
    """LASSO cross-validation curve with the number of selected features."""
    figure, axis = plt.subplots(figsize=(5.0, 3.2))
    axis.errorbar(
        path["C"],
        path["cv_score_mean"],
        yerr=path["cv_score_sd"],
        marker="o",
        ms=3,
        capsize=2,
        color="#c44e52",
    )
    axis.axvline(chosen_C, color="grey", ls="--", lw=0.8)
    axis.set(
        xscale="log",
        xlabel="C (inverse L1 penalty)",
        ylabel="CV score (-log loss)",
        title=f"LASSO cross-validation ({arm})",
    )
    twin = axis.twinx()
    twin.plot(path["C"], path["n_features"], color="#4c72b0", lw=1)
    twin.set_ylabel("features selected", color="#4c72b0")
    plain_log_axis(axis)
    return figure


def shap_bar_figure(importance: pd.DataFrame, labels: LabelScheme = DEFAULT, top: int = 15):
    """Mean |SHAP| per feature, stacked by class."""
    head = importance.head(top)[::-1]
    figure, axis = plt.subplots(figsize=(6.0, 0.3 * len(head) + 1.2))
    left = np.zeros(len(head))
    k = labels.n_classes
    for c in labels.values:
        column = f"class {c}"
        if column in head:
            axis.barh(
                head.index,
                head[column] / k,
                left=left,
                color=class_colour(labels, c),
                label=class_text(labels, c),
            )
            left += head[column].to_numpy() / k
    axis.set(xlabel="mean |SHAP| (averaged over classes)", title="global feature importance")
    axis.legend(fontsize=7, loc="lower right")
    return figure


def shap_beeswarm_figure(result, class_index: int, labels: LabelScheme = DEFAULT, top: int = 12):
    """SHAP beeswarm for one class (shap's own plot)."""
    import shap

    figure = plt.figure(figsize=(6.5, 0.35 * top + 1.5))
    shap.plots.beeswarm(
        result.explanation(class_index), max_display=top, show=False, plot_size=None
    )
    name = class_text(labels, labels.values[class_index])
    plt.title(f"SHAP, {name} ({result.output_name})", fontsize=9)
    return figure


def shap_waterfall_figure(result, case: int, class_index: int, title: str, top: int = 10):
    """SHAP waterfall of one case for one class (shap's own plot)."""
    import shap

    shap.plots.waterfall(result.explanation(class_index, case), max_display=top, show=False)
    figure = plt.gcf()
    figure.set_size_inches(7, 0.35 * top + 1.8)
    plt.title(title, fontsize=9)
    return figure


def finetune_figure(curve: pd.DataFrame, arm: str):
    """Fine-tuning curve: training and hold-out loss, and hold-out accuracy, per epoch."""
    from matplotlib.ticker import MaxNLocator

    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(7.0, 2.8))
    loss_axis.plot(curve["epoch"], curve["train_loss"], marker="o", ms=3, label="training")
    if "holdout_loss" in curve:
        loss_axis.plot(curve["epoch"], curve["holdout_loss"], marker="o", ms=3, label="hold-out")
    loss_axis.set(xlabel="epoch", ylabel="cross-entropy loss")
    loss_axis.legend(fontsize=7)
    if "holdout_accuracy" in curve:
        accuracy_axis.plot(curve["epoch"], curve["holdout_accuracy"], marker="o", ms=3, color="k")
    accuracy_axis.set(xlabel="epoch", ylabel="hold-out accuracy", ylim=(0, 1))
    for axis in (loss_axis, accuracy_axis):
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    figure.suptitle(f"fine-tuning ({arm})", fontsize=9)
    figure.tight_layout()
    return figure


def forest_figure(rows: pd.DataFrame, title: str = "macro one-vs-rest AUC (95% CI)"):
    """A forest plot: one line per view (``view``, with what it can claim, ``claim``) and one
    marker per arm (``arm``): the point estimate ``auc`` with its 95% CI ``lower``-``upper``
    (a marker without a bar where the CI is not estimable). The dotted line is chance (0.5)."""
    # a row per view and claim: where the arms' claims differ (one chose its model on the
    # internal cohort, the other by cross-validation) the view has a row for each
    keys = [f"{v}\n{c}" for v, c in zip(rows["view"], rows["claim"], strict=True)]
    rows = rows.assign(_key=keys)
    views = list(dict.fromkeys(keys))
    arms = list(dict.fromkeys(rows["arm"]))
    height = 0.42 * len(views) * max(1, len(arms)) ** 0.5 + 1.0
    figure, axis = plt.subplots(figsize=(7.6, height))
    step = 0.7 / max(1, len(arms))
    markers = ("o", "s", "D", "^", "v", "P")
    for j, arm in enumerate(arms):
        of_arm = rows[rows["arm"] == arm]
        y = [views.index(v) + (j - (len(arms) - 1) / 2) * step for v in of_arm["_key"]]
        auc = of_arm["auc"].to_numpy(float)
        lower = of_arm["lower"].to_numpy(float)
        upper = of_arm["upper"].to_numpy(float)
        has = np.isfinite(lower) & np.isfinite(upper)
        axis.errorbar(
            auc[has],
            np.asarray(y)[has],
            xerr=[np.clip(auc[has] - lower[has], 0, None), np.clip(upper[has] - auc[has], 0, None)],
            fmt="none",
            ecolor=PALETTE[j % len(PALETTE)],
            elinewidth=1.4,
            capsize=2.5,
        )
        axis.plot(
            auc,
            y,
            markers[j % len(markers)],
            color=PALETTE[j % len(PALETTE)],
            ms=5,
            label=arm,
            linestyle="none",
        )
    axis.set_yticks(range(len(views)))
    axis.set_yticklabels(views, fontsize=8)
    axis.invert_yaxis()
    axis.axvline(0.5, color="grey", ls=":", lw=0.8)
    finite = rows[["auc", "lower", "upper"]].to_numpy(float)
    low = np.nanmin(finite) if np.isfinite(finite).any() else 0.5
    axis.set_xlim(min(0.45, np.floor(low * 10) / 10), 1.02)
    axis.set_xlabel(title)
    axis.grid(axis="x", color="#e3e7ea", lw=0.6)
    axis.legend(
        title="arm", fontsize=8, title_fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1)
    )
    figure.tight_layout()
    return figure
