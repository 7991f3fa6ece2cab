"""From per-seed test results to what a researcher reports: mean ± sd over seeds, bootstrap intervals over test
items, overfitting gaps, and the paired comparison of two models on the same test items (pure: no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from equigen.baseline.stats import (
    discordant,
    ensemble_predictions,
    mcnemar_exact,
    mean_sd,
    metric_intervals,
    paired_difference,
    significance_sentence,
)

BOOTSTRAP_ROUNDS = 1000
BOOTSTRAP_SEED = 0
# Per-seed metrics averaged over seeds (each also gets an sd).
AVERAGED = (
    "accuracy",
    "top3_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "weighted_precision",
    "weighted_recall",
    "weighted_f1",
    "best_epoch",
    "best_val_macro_f1",
    "epochs_run",
    "train_images_per_s",
)


@dataclass
class SeedRun:
    """One (model, seed) training: its test metrics, test softmax scores (n x K) and per-epoch history."""

    seed: int
    metrics: dict
    scores: np.ndarray
    history: list[dict]


@dataclass(frozen=True)
class Comparison:
    """Model a against model b on the same test items."""

    a: str
    b: str
    diff: float  # mean over seeds of accuracy(a) - accuracy(b)
    lo: float
    hi: float
    a_only: int  # items the a-ensemble gets right and the b-ensemble wrong (McNemar's b)
    b_only: int  # the other way round (McNemar's c)
    p: float  # McNemar's exact test on the seed-ensemble predictions
    sentence: str


@dataclass(frozen=True)
class RunSummary:
    models: dict[str, dict]  # model -> aggregated metrics (what <model>/metrics.json holds)
    comparisons: list[Comparison] = field(default_factory=list)
    ensemble: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # model -> (pred, prob)

    @property
    def sentence(self) -> str | None:
        """The headline comparison (the later model against the first), None with one model."""
        return self.comparisons[0].sentence if self.comparisons else None


def overfitting(history: list[dict], best_epoch: int) -> dict:
    """How far training ran ahead of validation: the train - validation accuracy gap and the validation - train
    loss gap at the best epoch and at the last, the largest accuracy gap, and epochs trained past the best."""
    if not history:
        return {}
    by_epoch = {h["epoch"]: h for h in history}
    best, last = by_epoch.get(best_epoch, history[-1]), history[-1]
    return {
        "best_epoch": best_epoch,
        "gap_acc_at_best": best["train_acc"] - best["val_acc"],
        "gap_loss_at_best": best["val_loss"] - best["train_loss"],
        "gap_acc_final": last["train_acc"] - last["val_acc"],
        "gap_loss_final": last["val_loss"] - last["train_loss"],
        "max_gap_acc": max(h["train_acc"] - h["val_acc"] for h in history),
        "epochs_after_best": last["epoch"] - best_epoch,
    }


def summarize_model(runs: list[SeedRun], names: list[str], y_true: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Aggregated metrics of one model over its seeds, and its seed-ensemble predictions and probabilities."""
    first = runs[0].metrics
    out: dict = {"model": first["model"], "seeds": [r.seed for r in runs]}
    sd: dict = {}
    for key in AVERAGED:
        out[key], sd[key] = mean_sd([r.metrics[key] for r in runs])
    out["sd"] = sd
    preds = np.stack([r.scores.argmax(1) for r in runs])
    intervals = metric_intervals(y_true, preds, len(names), rounds=BOOTSTRAP_ROUNDS, seed=BOOTSTRAP_SEED)
    out["ci95"] = {"accuracy": list(intervals["accuracy"]), "macro_f1": list(intervals["macro_f1"])}
    out["per_genre"] = {}
    for i, g in enumerate(names):
        f1s = [r.metrics["per_genre"][g]["f1"] for r in runs]
        out["per_genre"][g] = {
            "precision": float(np.mean([r.metrics["per_genre"][g]["precision"] for r in runs])),
            "recall": float(np.mean([r.metrics["per_genre"][g]["recall"] for r in runs])),
            "f1": mean_sd(f1s)[0],
            "f1_sd": mean_sd(f1s)[1],
            "f1_ci95": [float(x) for x in intervals["per_genre_f1"][i]],
            "support": first["per_genre"][g]["support"],
        }
    fits = [r.metrics["overfitting"] for r in runs if r.metrics.get("overfitting")]
    out["overfitting"] = {k: float(np.mean([f[k] for f in fits])) for k in (fits[0] if fits else {})}
    scores = np.stack([r.scores for r in runs])
    ensemble = ensemble_predictions(scores)
    prob = scores.mean(axis=0)
    out["ensemble_accuracy"] = float((ensemble == y_true).mean())
    for key in ("params", "chance", "images", "device", "preprocessing", "config"):
        out[key] = first.get(key)
    out["per_seed"] = {str(r.seed): {k: r.metrics[k] for k in AVERAGED} for r in runs}
    return out, ensemble, prob


def compare(a: str, b: str, runs: dict[str, list[SeedRun]], ensemble: dict, y_true: np.ndarray) -> Comparison:
    """a - b on the same test items: the accuracy difference (mean over seeds, paired bootstrap CI over items)
    and McNemar's exact test on the two seed ensembles' right/wrong answers."""
    preds_a = np.stack([r.scores.argmax(1) for r in runs[a]])
    preds_b = np.stack([r.scores.argmax(1) for r in runs[b]])
    diff, lo, hi = paired_difference(y_true, preds_a, preds_b, rounds=BOOTSTRAP_ROUNDS, seed=BOOTSTRAP_SEED)
    a_only, b_only = discordant(y_true, ensemble[a][0], ensemble[b][0])
    p = mcnemar_exact(a_only, b_only)
    return Comparison(a, b, diff, lo, hi, a_only, b_only, p, significance_sentence(a, b, diff, lo, hi, p))


def summarize(runs: dict[str, list[SeedRun]], names: list[str], y_true: np.ndarray) -> RunSummary:
    """Every model aggregated over its seeds, and each later model compared with each earlier one."""
    models, ensemble = {}, {}
    for name, seed_runs in runs.items():
        models[name], pred, prob = summarize_model(seed_runs, names, y_true)
        ensemble[name] = (pred, prob)
    order = list(runs)
    pairs = [(order[j], order[i]) for i in range(len(order)) for j in range(i + 1, len(order))]
    comparisons = [compare(a, b, runs, ensemble, y_true) for a, b in pairs]
    for c in comparisons:
        models[c.a].setdefault("compared_with", {})[c.b] = {
            "accuracy_diff": c.diff,
            "ci95": [c.lo, c.hi],
            "mcnemar_p": c.p,
            "only_this_right": c.a_only,
            "only_other_right": c.b_only,
        }
    return RunSummary(models, comparisons, ensemble)
