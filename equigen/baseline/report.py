"""Metrics (scikit-learn), per-model output files and plots, and the side-by-side report."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    accuracy_score,
    confusion_matrix,
    precision_recall_fscore_support,
    top_k_accuracy_score,
)

from equigen.storage import write_atomic  # noqa: E402


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
    """Loss and accuracy, train vs validation, per epoch; the chosen epoch marked."""
    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    panels = (("loss", "Loss", "cross-entropy"), ("acc", "Accuracy", "accuracy"))
    for ax, (key, title, ylabel) in zip(axes, panels):
        ax.plot(epochs, [h[f"train_{key}"] for h in history], "o-", label="train")
        ax.plot(epochs, [h[f"val_{key}"] for h in history], "s-", label="validation")
        ax.axvline(best_epoch, color="grey", linestyle="--", label=f"best epoch ({best_epoch})")
        ax.set_title(f"{model}: {title}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.set_xticks(epochs if len(epochs) <= 20 else epochs[:: max(1, len(epochs) // 10)])
        ax.grid(alpha=0.3)
        ax.legend()
    fig.savefig(path, dpi=120, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)


TABLE = (  # (report.json key, report.md header, format)
    ("accuracy", "Accuracy", "{:.3f}"),
    ("top3_accuracy", "Top-3", "{:.3f}"),
    ("macro_precision", "Macro P", "{:.3f}"),
    ("macro_recall", "Macro R", "{:.3f}"),
    ("macro_f1", "Macro F1", "{:.3f}"),
    ("weighted_f1", "Weighted F1", "{:.3f}"),
    ("best_epoch", "Best epoch", "{}"),
    ("params", "Params", "{:,}"),
    ("train_images_per_s", "Train img/s", "{:.1f}"),
)


def write_report(run_dir: Path, results: dict[str, dict], names: list[str], context: dict) -> Path:
    """report.md (tables and plot links) and report.json (the same numbers) in `run_dir`."""
    models = list(results)
    rows = [{"model": m, **{k: results[m][k] for k, _, _ in TABLE}} for m in models]
    per_genre = {g: {m: results[m]["per_genre"][g]["f1"] for m in models} for g in names}
    support = {g: results[models[0]]["per_genre"][g]["support"] for g in names}
    write_json(run_dir / "report.json", {**context, "models": rows, "per_genre_f1": per_genre, "test_support": support})

    lines = [f"# Baseline report: {run_dir.name}", ""]
    for key, value in context.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items())
        elif isinstance(value, float):
            value = f"{value:.3f}"
        lines.append(f"- {key.replace('_', ' ')}: {value}")
    lines += [
        "",
        "## Test-set results",
        "",
        "| Model | " + " | ".join(h for _, h, _ in TABLE) + " |",
        "|---|" + "---:|" * len(TABLE),
    ]
    for r in rows:
        lines.append(f"| {r['model']} | " + " | ".join(fmt.format(r[k]) for k, _, fmt in TABLE) + " |")
    lines += [
        "",
        "## Per-genre F1 (test)",
        "",
        "| Genre | Support | " + " | ".join(models) + " |",
        "|---|---:|" + "---:|" * len(models),
    ]
    for g in names:
        lines.append(f"| {g} | {support[g]} | " + " | ".join(f"{per_genre[g][m]:.3f}" for m in models) + " |")
    lines += ["", "## Plots", ""]
    for m in models:
        lines += [
            f"### {m}",
            "",
            f"![{m} confusion matrix]({m}/confusion_matrix.png)",
            "",
            f"![{m} learning curves]({m}/learning_curves.png)",
            "",
        ]
    path = run_dir / "report.md"
    write_atomic(path, "\n".join(lines))
    return path
