"""Metrics (scikit-learn), per-model output files and plots, and the side-by-side report."""

from __future__ import annotations

import json
import warnings
from importlib import resources
from io import BytesIO
from pathlib import Path
from string import Template

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from equigen.baseline.stats import most_confident_errors  # noqa: E402
from equigen.core.storage import write_atomic  # noqa: E402


def compute_metrics(y_true: np.ndarray, scores: np.ndarray, names: list[str]) -> tuple[dict, np.ndarray]:
    """Test-set metrics and the (true x predicted) confusion matrix of counts."""
    labels = list(range(len(names)))
    y_pred = scores.argmax(axis=1)
    with warnings.catch_warnings():
        # With <= 3 classes top-3 is trivially 1.0; sklearn says so in a warning we don't need.
        warnings.simplefilter("ignore", UserWarning)
        top3 = 1.0 if len(names) == 2 else top_k_accuracy_score(y_true, scores, k=3, labels=labels)
    out = {"accuracy": float(accuracy_score(y_true, y_pred)), "top3_accuracy": float(top3)}
    for avg in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg, zero_division=0)
        out.update({f"{avg}_precision": float(p), f"{avg}_recall": float(r), f"{avg}_f1": float(f)})
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
    out["per_genre"] = {
        g: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, g in enumerate(names)
    }
    return out, confusion_matrix(y_true, y_pred, labels=labels)


def write_json(path: Path, obj) -> None:
    """Atomically: a reader (or a killed run) never sees half a file."""
    write_atomic(path, json.dumps(obj, indent=2) + "\n")


def write_confusion_csv(path: Path, cm: np.ndarray, names: list[str]) -> None:
    """Counts; rows are the true genre, columns the predicted one."""
    pd.DataFrame(cm, index=names, columns=names).to_csv(path, index_label="true\\predicted")


def read_confusion_csv(path: Path) -> np.ndarray:
    """The counts write_confusion_csv wrote (an empty matrix if the file is missing)."""
    if not path.is_file():
        return np.zeros((0, 0), dtype=np.int64)
    return pd.read_csv(path, index_col=0).to_numpy()


def plot_confusion(path: Path, cm: np.ndarray, names: list[str], title: str) -> None:
    """Row-normalised matrix (each row is the recall spread of one true genre), values annotated."""
    n = len(names)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    side = max(5.0, 0.55 * n + 2.5)
    fig, ax = plt.subplots(figsize=(side + 1.0, side), layout="constrained")
    im = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="fraction of true genre")
    fontsize = 9 if n <= 8 else 7 if n <= 16 else 5
    for i in range(n):
        for j in range(n):
            v = norm[i, j]
            ax.text(
                j,
                i,
                f"{v:.2f}".lstrip("0") if v < 1 else "1",
                ha="center",
                va="center",
                fontsize=fontsize,
                color="white" if v > 0.55 else "black",
            )
    ax.set_xticks(range(n), names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("Predicted genre")
    ax.set_ylabel("True genre")
    ax.set_title(title)
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def plot_learning_curves(path: Path, history: list[dict], best_epoch: int, model: str) -> None:
    """Loss, accuracy (train vs validation) and the train-validation gap per epoch; the chosen epoch marked.

    The gap panel puts both signs of overfitting on one axis: positive means train looks better than validation.
    """
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2), layout="constrained")
    ticks = epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)]
    panels = (("loss", "Loss", "cross-entropy"), ("acc", "Accuracy", "accuracy"))
    for ax, (key, title, ylabel) in zip(axes, panels):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "s-", label="validation")
        ax.set_title(f"{model}: {title}")
        ax.set_ylabel(ylabel)
    gap = axes[2]
    gap.plot(epochs, [h["train_acc"] - h["val_acc"] for h in history], "o-", label="accuracy: train − validation")
    gap.plot(epochs, [h["val_loss"] - h["train_loss"] for h in history], "s-", label="loss: validation − train")
    gap.axhline(0.0, color="black", linewidth=0.8)
    gap.set_title(f"{model}: Overfitting gap")
    gap.set_ylabel("gap (positive = overfitting)")
    for ax in axes:
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
        ax.set_xlabel("epoch")
        ax.set_xticks(ticks)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8 if ax is gap else None)
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def plot_per_genre_f1(
    path: Path, names: list[str], per_model: dict[str, tuple[np.ndarray, np.ndarray]], title: str
) -> None:
    """Per-genre F1 of each model side by side, with 95 % bootstrap intervals, to show which gaps are real.

    `per_model` maps a model to (F1 means (K,), interval (K, 2) of lower and upper bounds).
    """
    k, models = len(names), list(per_model)
    bar = 0.8 / max(1, len(models))
    fig, ax = plt.subplots(figsize=(8.0, 1.5 + k * (0.18 * len(models) + 0.25)), layout="constrained")
    for i, model in enumerate(models):
        mean, ci = (np.asarray(a, dtype=float) for a in per_model[model])
        # Percentile bounds can sit a hair on the wrong side of a seed-averaged mean; matplotlib refuses negatives.
        err = np.clip(np.stack([mean - ci[:, 0], ci[:, 1] - mean]), 0.0, None)
        y = np.arange(k) - 0.4 + bar * (i + 0.5)
        ax.barh(y, mean, height=bar * 0.9, xerr=err, capsize=2, error_kw={"linewidth": 0.8}, label=model)
    ax.set_yticks(range(k), names)
    ax.invert_yaxis()  # first genre on top, as in the tables
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("F1 (test; bars: mean over seeds, whiskers: 95 % bootstrap interval)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


def _cover_thumbnail(data: bytes, size: int = 96) -> np.ndarray | None:
    """RGB thumbnail of encoded image bytes; None when the bytes are not an image PIL can read."""
    try:
        with Image.open(BytesIO(data)) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError):  # UnidentifiedImageError is an OSError
        return None
    rgb.thumbnail((size, size))
    return np.asarray(rgb)


def plot_confident_errors(
    path: Path,
    images: list[bytes],
    true: np.ndarray,
    pred: np.ndarray,
    prob: np.ndarray,
    names: list[str],
    per_genre: int = 4,
    title: str = "",
) -> None:
    """One row per true genre: its `per_genre` most confidently wrong test covers, for eyeballing why.

    `images[i]` is item i's encoded cover. `prob` is the predicted class's probability (n,), or the full
    softmax (n, K) from which it is taken.
    """
    true, pred, prob = np.asarray(true), np.asarray(pred), np.asarray(prob, dtype=float)
    confidence = prob[np.arange(len(pred)), pred] if prob.ndim == 2 else prob
    rows = most_confident_errors(true, pred, confidence, len(names), per_genre)
    tile = min(1.5, 16.0 / max(1, len(names)))  # inches; 15 genres stay about 16 inches tall
    fig, axes = plt.subplots(
        len(names),
        per_genre,
        figsize=(1.2 + per_genre * tile, 0.4 + len(names) * tile * 1.1),
        squeeze=False,
    )
    # Fixed spacing: the constrained-layout solver over 60 axes took a third of the plot's ~3.7 s on 2 cores.
    fig.subplots_adjust(left=0.08, right=0.98, top=0.95, bottom=0.02, wspace=0.1, hspace=0.45)
    for g, (row, picked) in enumerate(zip(axes, rows)):
        for col, ax in enumerate(row):
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if col < len(picked):
                i = picked[col]
                thumb = _cover_thumbnail(images[i])
                if thumb is None:
                    ax.text(0.5, 0.5, "unreadable image", ha="center", va="center", fontsize=6, transform=ax.transAxes)
                else:
                    ax.imshow(thumb)
                ax.set_title(f"{names[true[i]]} → {names[pred[i]]} (p={confidence[i]:.2f})", fontsize=6)
            elif col == 0:
                ax.text(0.5, 0.5, "no errors", ha="center", va="center", fontsize=7, transform=ax.transAxes)
        row[0].set_ylabel(names[g], fontsize=8)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


TABLE = (  # (metrics key, report.md header, format); shown as mean ± sd over seeds
    ("accuracy", "Accuracy", "{:.3f}"),
    ("macro_f1", "Macro F1", "{:.3f}"),
    ("top3_accuracy", "Top-3", "{:.3f}"),
    ("macro_precision", "Macro P", "{:.3f}"),
    ("macro_recall", "Macro R", "{:.3f}"),
    ("weighted_f1", "Weighted F1", "{:.3f}"),
    ("best_epoch", "Best epoch", "{:.1f}"),
    ("train_images_per_s", "Train img/s", "{:.1f}"),
)
WITH_CI = ("accuracy", "macro_f1")
GAPS = (  # (overfitting key, report.md header)
    ("gap_acc_at_best", "Train − val accuracy at best epoch"),
    ("gap_loss_at_best", "Val − train loss at best epoch"),
    ("gap_acc_final", "Train − val accuracy at last epoch"),
    ("max_gap_acc", "Largest accuracy gap"),
    ("epochs_after_best", "Epochs after best"),
)


def _pm(value: float, sd: float, fmt: str, seeds: int) -> str:
    return fmt.format(value) + (f" ± {fmt.format(sd)}" if seeds > 1 else "")


def _ci(lo_hi) -> str:
    lo, hi = lo_hi
    return f"[{lo:.3f}, {hi:.3f}]"


REPORT_TEMPLATE = "data/report_template.md"  # inside the package; ${name} placeholders (string.Template)


def write_report(run_dir: Path, summary, names: list[str], context: dict) -> Path:
    """report.md (the comparison sentence first, then tables and plot links) and report.json (the same numbers)."""
    results, models = summary.models, list(summary.models)
    seeds = len(context.get("seeds", [0]))
    rows = [
        {"model": m, **{k: r[k] for k, _, _ in TABLE}, "params": r["params"], "sd": r["sd"], "ci95": r["ci95"]}
        for m, r in results.items()
    ]
    per_genre = {g: {m: results[m]["per_genre"][g]["f1"] for m in models} for g in names}
    per_genre_ci = {g: {m: results[m]["per_genre"][g]["f1_ci95"] for m in models} for g in names}
    support = {g: results[models[0]]["per_genre"][g]["support"] for g in names}
    write_json(
        run_dir / "report.json",
        {
            **context,
            "models": rows,
            "per_genre_f1": per_genre,
            "per_genre_f1_ci95": per_genre_ci,
            "test_support": support,
            "overfitting": {m: results[m]["overfitting"] for m in models},
            "comparisons": [_comparison_json(c) for c in summary.comparisons],
        },
    )
    plot_per_genre_f1(
        run_dir / "per_genre_f1.png",
        names,
        {
            m: (np.array([per_genre[g][m] for g in names]), np.array([per_genre_ci[g][m] for g in names]))
            for m in models
        },
        f"Per-genre F1 on the test split (mean of {seeds} seed{'s' if seeds > 1 else ''}, 95 % CI over test items)",
    )
    text = _template().substitute(
        run_name=run_dir.name,
        headline=_headline(summary.comparisons, sum(support.values()), seeds),
        context="".join(f"- {key.replace('_', ' ')}: {_context_value(value)}\n" for key, value in context.items()),
        spread=f"mean ± sd over {seeds} seeds; " if seeds > 1 else "",
        results_table=_results_table(rows, seeds),
        overfitting_table=_table(
            ["Model", *(h for _, h in GAPS)],
            [[m, *(f"{results[m]['overfitting'].get(k, float('nan')):.3f}" for k, _ in GAPS)] for m in models],
        ),
        per_genre_table=_table(
            ["Genre", "Support", *models],
            [[g, support[g], *(f"{per_genre[g][m]:.3f} {_ci(per_genre_ci[g][m])}" for m in models)] for g in names],
        ),
        plots="\n\n".join(_model_plots(m, results[m]["seeds"]) for m in models),
    )
    path = run_dir / "report.md"
    write_atomic(path, text)
    return path


def _template() -> Template:
    """The report's prose, kept out of the code so it reads and diffs as Markdown."""
    return Template(resources.files("equigen").joinpath(REPORT_TEMPLATE).read_text(encoding="utf-8"))


def _comparison_json(c) -> dict:
    return {
        "a": c.a,
        "b": c.b,
        "accuracy_diff": c.diff,
        "ci95": [c.lo, c.hi],
        "a_only_right": c.a_only,
        "b_only_right": c.b_only,
        "mcnemar_p": c.p,
        "sentence": c.sentence,
    }


def _headline(comparisons, n_test: int, seeds: int) -> str:
    """The first comparison in bold and how it was tested, then the others; empty with one model."""
    if not comparisons:
        return ""
    first = comparisons[0]
    lines = [
        f"**{first.sentence}**",
        "",
        f"Paired on the same {n_test:,} test items. The difference is the mean over {seeds} seed"
        f"{'s' if seeds > 1 else ''} of the accuracy difference; its 95 % interval is a bootstrap over test items "
        f"(1,000 resamples, the same items for both models). McNemar's exact test compares the seed ensembles' "
        f"right/wrong answers (only {first.a} right: {first.a_only}, only {first.b} right: {first.b_only}).",
        *(f"- {c.sentence}" for c in comparisons[1:]),
    ]
    return "\n".join(lines) + "\n\n"


def _context_value(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> str:
    """A Markdown table: the first column left-aligned, the others right-aligned."""
    lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _results_table(rows: list[dict], seeds: int) -> str:
    """Each model's test metrics (mean ± sd over seeds), with the bootstrap interval of those in WITH_CI."""
    header = []
    for k, h, _ in TABLE:
        header += [h, f"{h} 95 % CI"] if k in WITH_CI else [h]
    body = []
    for r in rows:
        cells = [r["model"]]
        for k, _, fmt in TABLE:
            cells.append(_pm(r[k], r["sd"][k], fmt, seeds))
            if k in WITH_CI:
                cells.append(_ci(r["ci95"][k]))
        body.append([*cells, f"{r['params']:,}"])
    return _table(["Model", *header, "Params"], body)


def _model_plots(model: str, seeds) -> str:
    lines = [
        f"### {model}",
        "",
        f"![{model} confusion matrix]({model}/confusion_matrix.png)",
        "",
        f"![{model} most confidently wrong test covers]({model}/confident_errors.png)",
        "",
        *(f"![{model} learning curves, seed {s}]({model}/seed-{s}/learning_curves.png)" for s in seeds),
    ]
    return "\n".join(lines)
