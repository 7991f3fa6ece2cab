"""Uncertainty for the baseline comparison: bootstrap intervals over test items, paired differences, McNemar.

Pure functions (numpy in, numpy or floats out, no I/O). Test items are the unit of resampling: a model's test
accuracy varies with which covers happen to be in the test split, and several training seeds of one model are
averaged *inside* each resample, so an interval reflects both the test sample and the seed-to-seed spread.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np

MINUS = "\u2212"  # typographic minus sign, for text a reader sees

# Elements of one resample chunk's index arrays: ~4M int64 values (32 MB) per temporary array.
CHUNK_ELEMENTS = 1 << 22


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts b and c.

    p = min(1, 2 P[X <= min(b, c)]), X ~ Binomial(b + c, 1/2). Summed in exact integers from the largest term
    down, stopping once the rest provably cannot change a double (relative tail < 2**-64); so it is exact to
    double precision and fast (about sqrt(n) terms) even for n in the hundreds of thousands, where float
    binomial terms would underflow.
    """
    b, c = int(b), int(c)
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    term = math.comb(n, k)  # the largest term of the lower tail: terms grow with k while k <= n / 2
    total = term
    while k > 0:
        # Every earlier term is at most k / (n - k + 1) times the one after it, so the terms not yet added
        # sum to at most term * k / (n - 2k + 1) (a geometric bound; k <= n / 2 keeps the ratio below 1).
        if term * k * (1 << 64) < total * (n - 2 * k + 1):
            break
        term = term * k // (n - k + 1)  # C(n, k - 1), exactly
        k -= 1
        total += term
    return min(1.0, total / (1 << (n - 1)))  # int / int is correctly rounded, however large


def discordant(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> tuple[int, int]:
    """(b, c): items A gets right and B wrong, and items A gets wrong and B right (McNemar's counts)."""
    y_true, pred_a, pred_b = (np.asarray(a) for a in (y_true, pred_a, pred_b))
    if not y_true.shape == pred_a.shape == pred_b.shape:
        raise ValueError(f"shapes differ: y_true {y_true.shape}, pred_a {pred_a.shape}, pred_b {pred_b.shape}")
    right_a, right_b = pred_a == y_true, pred_b == y_true
    return int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))


def mean_sd(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) across seeds; sd 0.0 when there is one value."""
    x = np.asarray(values, dtype=float).ravel()
    if x.size == 0:
        raise ValueError("mean_sd needs at least one value")
    sd = float(x.std(ddof=1)) if x.size > 1 else 0.0
    return float(x.mean()), sd


def bootstrap_indices(n: int, rounds: int, seed: int) -> np.ndarray:
    """(rounds, n) item indices drawn with replacement; one matrix shared by every model and seed (pairing)."""
    if n < 1 or rounds < 1:
        raise ValueError(f"need n >= 1 and rounds >= 1, got n={n}, rounds={rounds}")
    dtype = np.int32 if n <= np.iinfo(np.int32).max else np.int64  # half the memory of int64
    return np.random.default_rng(seed).integers(0, n, size=(rounds, n), dtype=dtype)


def _row_chunks(rounds: int, n: int, chunk_elements: int) -> Iterator[slice]:
    """Consecutive row ranges of a (rounds, n) resample matrix, each about chunk_elements values."""
    step = max(1, chunk_elements // max(1, n))
    for start in range(0, rounds, step):
        yield slice(start, min(start + step, rounds))


def _check_labels(num_classes: int, **arrays: np.ndarray) -> None:
    """Out-of-range labels would land silently in another cell of a flat bincount, so refuse them."""
    for name, a in arrays.items():
        if a.size and (a.min() < 0 or a.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1}")


def confusion_counts(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    num_classes: int,
    idx: np.ndarray,
    *,
    chunk_elements: int = CHUNK_ELEMENTS,
) -> np.ndarray:
    """(rounds, K, K) confusion matrices (rows true, columns predicted) of each resample in `idx` (rounds, n).

    One bincount per chunk over the index resample * K*K + true * K + predicted; chunks of rows keep the
    temporaries near chunk_elements values (10,000 items x 1,000 rounds stays in tens of MB).
    """
    y_true, y_pred, idx = np.asarray(y_true), np.asarray(y_pred), np.asarray(idx)
    if y_true.shape != y_pred.shape or y_true.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of one length, got {y_true.shape} and {y_pred.shape}")
    if idx.ndim != 2:
        raise ValueError(f"idx must be (rounds, n), got shape {idx.shape}")
    _check_labels(num_classes, y_true=y_true, y_pred=y_pred)
    cells = num_classes * num_classes
    code = y_true.astype(np.int64) * num_classes + y_pred  # the cell of each item
    rounds, n = idx.shape
    out = np.empty((rounds, num_classes, num_classes), dtype=np.int64)
    for rows in _row_chunks(rounds, n, chunk_elements):
        m = rows.stop - rows.start
        flat = code[idx[rows]] + (np.arange(m, dtype=np.int64) * cells)[:, None]
        out[rows] = np.bincount(flat.ravel(), minlength=m * cells).reshape(m, num_classes, num_classes)
    return out


def f1_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 (..., K) from (..., K, K) counts; 0 where a class is neither true nor predicted.

    2 TP / (2 TP + FP + FN), which is sklearn's f1_score(average=None, zero_division=0) to the last bit.
    """
    cm = np.asarray(cm)
    tp = np.diagonal(cm, axis1=-2, axis2=-1).astype(float)
    denominator = cm.sum(axis=-1) + cm.sum(axis=-2)  # (TP + FN) + (TP + FP)
    return np.divide(2.0 * tp, denominator, out=np.zeros(tp.shape), where=denominator > 0)


def macro_f1(cm: np.ndarray) -> np.ndarray:
    """Unweighted mean of per-class F1 over all K classes (sklearn's macro F1 with labels=range(K))."""
    return f1_from_confusion(cm).mean(axis=-1)


def accuracy_from_confusion(cm: np.ndarray) -> np.ndarray:
    """Trace over total, per matrix (...)."""
    cm = np.asarray(cm)
    return np.trace(cm, axis1=-2, axis2=-1) / cm.sum(axis=(-2, -1))


def _percentile_interval(samples: np.ndarray, level: float) -> np.ndarray:
    """Percentile bootstrap interval along axis 0: (2, ...) of lower and upper bounds."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tail = (1.0 - level) / 2.0
    return np.quantile(samples, [tail, 1.0 - tail], axis=0)


def _as_seed_matrix(preds: np.ndarray, n: int, name: str) -> np.ndarray:
    """(S, n) predictions; one seed's (n,) vector is accepted as S = 1."""
    preds = np.asarray(preds)
    preds = preds[None, :] if preds.ndim == 1 else preds
    if preds.ndim != 2 or preds.shape[1] != n or preds.shape[0] < 1:
        raise ValueError(f"{name} must be (seeds, {n}), got shape {preds.shape}")
    return preds


def metric_intervals(
    y_true: np.ndarray,
    preds: np.ndarray,
    num_classes: int,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict:
    """Seed-averaged accuracy, macro F1 and per-genre F1 of one model, each with a percentile bootstrap interval.

    `preds` is (S, n): S training seeds on the same n test items. Every seed is scored on the same resampled
    items and the S scores are averaged inside each resample. A class missing from a resample scores F1 = 0
    there (sklearn's zero_division=0), which pulls the lower bound of a rare class's interval down.
    """
    y_true = np.asarray(y_true)
    preds = _as_seed_matrix(preds, y_true.size, "preds")
    idx = bootstrap_indices(y_true.size, rounds, seed)
    full = np.arange(y_true.size)[None, :]
    acc, macro, per_genre = np.zeros(rounds), np.zeros(rounds), np.zeros((rounds, num_classes))
    acc_point, macro_point, per_genre_point = 0.0, 0.0, np.zeros(num_classes)
    for seed_preds in preds:
        cm = confusion_counts(y_true, seed_preds, num_classes, idx)
        f1 = f1_from_confusion(cm)
        acc += accuracy_from_confusion(cm)
        per_genre += f1
        macro += f1.mean(axis=-1)
        cm_full = confusion_counts(y_true, seed_preds, num_classes, full)[0]
        acc_point += float(accuracy_from_confusion(cm_full))
        f1_full = f1_from_confusion(cm_full)
        per_genre_point += f1_full
        macro_point += float(f1_full.mean())
    s = preds.shape[0]
    acc_ci = _percentile_interval(acc / s, level)
    macro_ci = _percentile_interval(macro / s, level)
    return {
        "accuracy": (float(acc_ci[0]), float(acc_ci[1])),
        "macro_f1": (float(macro_ci[0]), float(macro_ci[1])),
        "per_genre_f1": _percentile_interval(per_genre / s, level).T,  # (K, 2): lower, upper
        "accuracy_mean": acc_point / s,
        "macro_f1_mean": macro_point / s,
        "per_genre_f1_mean": per_genre_point / s,
    }


def paired_difference(
    y_true: np.ndarray,
    preds_a: np.ndarray,
    preds_b: np.ndarray,
    rounds: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Seed-averaged accuracy(A) - accuracy(B) and its paired percentile bootstrap interval over test items.

    Paired twice: seed s of A against seed s of B, and both models scored on the same resampled items, so the
    item-to-item difficulty both models share cancels out of the interval.
    """
    y_true = np.asarray(y_true)
    preds_a = _as_seed_matrix(preds_a, y_true.size, "preds_a")
    preds_b = _as_seed_matrix(preds_b, y_true.size, "preds_b")
    if preds_a.shape != preds_b.shape:
        raise ValueError(f"preds_a and preds_b must have the same seeds, got {preds_a.shape} and {preds_b.shape}")
    # Accuracy is a mean over items, so the seed-averaged difference is the mean of this per-item difference.
    per_item = (preds_a == y_true).mean(axis=0) - (preds_b == y_true).mean(axis=0)
    idx = bootstrap_indices(y_true.size, rounds, seed)
    resampled = np.empty(rounds)
    for rows in _row_chunks(rounds, y_true.size, CHUNK_ELEMENTS):
        resampled[rows] = per_item[idx[rows]].mean(axis=1)
    lo, hi = _percentile_interval(resampled, level)
    return float(per_item.mean()), float(lo), float(hi)


def ensemble_predictions(scores: np.ndarray) -> np.ndarray:
    """(n,) class of the seed-averaged probabilities, from (S, n, K) softmax scores."""
    scores = np.asarray(scores)
    if scores.ndim != 3:
        raise ValueError(f"scores must be (seeds, n, classes), got shape {scores.shape}")
    return scores.mean(axis=0).argmax(axis=-1)


def most_confident_errors(
    y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray, num_classes: int, per_genre: int
) -> list[np.ndarray]:
    """For each true class, the indices of up to `per_genre` wrong items, most confident (highest p) first."""
    y_true, y_pred, confidence = np.asarray(y_true), np.asarray(y_pred), np.asarray(confidence, dtype=float)
    wrong = np.flatnonzero(y_pred != y_true)
    ranked = wrong[np.argsort(-confidence[wrong], kind="stable")]  # ties keep test-set order
    return [ranked[y_true[ranked] == g][:per_genre] for g in range(num_classes)]


def _signed(value: float, decimals: int = 1, plus: bool = False) -> str:
    """Fixed decimals, typographic minus, no "-0.0"; an explicit "+" on positives when `plus`."""
    text = f"{value:.{decimals}f}"
    if float(text) == 0:
        return f"{0:.{decimals}f}"
    if text.startswith("-"):
        return MINUS + text[1:]
    return "+" + text if plus else text


def _p_text(p: float) -> str:
    """'p = 0.11' with two significant digits, 'p < 0.001' below that."""
    if p < 0.001:
        return "p < 0.001"
    return "p = " + np.format_float_positional(p, precision=2, unique=False, fractional=False, trim="k")


def significance_sentence(
    a: str, b: str, diff: float, lo: float, hi: float, p: float, alpha: float = 0.05, level: float = 0.95
) -> str:
    """One line for a report: the accuracy gap A - B in percentage points, its interval, McNemar's verdict.

    diff, lo and hi are fractions (0.018 is 1.8 pp); e.g. "efficientnet_b0 − resnet50: +1.8 pp, 95 % CI
    [−0.4, 4.0], McNemar p = 0.11: not significant at 0.05".
    """
    verdict = "significant" if p < alpha else "not significant"
    return (
        f"{a} {MINUS} {b}: {_signed(100 * diff, plus=True)} pp, {level * 100:g} % CI "
        f"[{_signed(100 * lo)}, {_signed(100 * hi)}], McNemar {_p_text(p)}: {verdict} at {alpha:g}"
    )
