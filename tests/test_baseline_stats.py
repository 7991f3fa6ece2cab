"""equigen.baseline.stats against scipy / sklearn / naive loops, and the report's uncertainty plots (smoke)."""

from __future__ import annotations

import io
import math
import tracemalloc
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image
from scipy import stats as sps
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from equigen.baseline.report import plot_confident_errors, plot_learning_curves, plot_per_genre_f1
from equigen.baseline.stats import (
    bootstrap_indices,
    confusion_counts,
    discordant,
    ensemble_predictions,
    f1_from_confusion,
    macro_f1,
    mcnemar_exact,
    mean_sd,
    metric_intervals,
    most_confident_errors,
    paired_difference,
    significance_sentence,
)

# (b, c) discordant counts: empty, one-sided, small, balanced, unbalanced, large.
TABLES = [
    (0, 0),
    (1, 0),
    (0, 1),
    (1, 1),
    (0, 5),
    (2, 7),
    (7, 2),
    (5, 5),
    (3, 4),
    (10, 30),
    (25, 26),
    (150, 86),
    (400, 3),
    (1200, 1100),
    (1100, 1200),
    (5000, 5200),
    (20000, 19000),
]


def scipy_mcnemar(b: int, c: int) -> tuple[float, float]:
    """The two references: 2 * binomial CDF (clipped at 1) and scipy's two-sided exact binomial test."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0, 1.0
    return min(1.0, 2 * float(sps.binom.cdf(k, n, 0.5))), float(sps.binomtest(k, n, 0.5).pvalue)


@pytest.mark.parametrize("b, c", TABLES)
def test_mcnemar_matches_scipy(b, c):
    via_cdf, via_binomtest = scipy_mcnemar(b, c)
    p = mcnemar_exact(b, c)
    assert p == pytest.approx(via_cdf, rel=1e-9, abs=1e-300)
    assert p == pytest.approx(via_binomtest, rel=1e-9, abs=1e-300)
    assert 0.0 <= p <= 1.0 and p == mcnemar_exact(c, b)


def test_mcnemar_is_exact_to_double_precision():
    """The early stop of the summation changes nothing: equal to the full rational sum, correctly rounded."""
    rng = np.random.default_rng(3)
    for _ in range(60):
        n = int(rng.integers(1, 3000))
        b = int(rng.integers(0, n + 1))
        c = n - b
        k = min(b, c)
        exact = min(Fraction(1), Fraction(sum(math.comb(n, j) for j in range(k + 1)), 2 ** (n - 1)))
        assert mcnemar_exact(b, c) == pytest.approx(float(exact), rel=1e-15, abs=0)


def test_mcnemar_large_tables_are_fast_and_finite():
    """n = 100,000 discordant pairs: no overflow or underflow to nonsense, and agrees with scipy."""
    for b, c in [(49_800, 50_200), (49_000, 51_000), (50_000, 50_000), (10, 99_990)]:
        p = mcnemar_exact(b, c)
        assert math.isfinite(p) and p == pytest.approx(scipy_mcnemar(b, c)[0], rel=1e-9, abs=1e-300)
    assert mcnemar_exact(50_000, 50_000) == 1.0
    assert 0.0 < mcnemar_exact(49_000, 51_000) < 1e-9


def test_mcnemar_agresti_presidential_approval():
    """Agresti's approval table [[794, 150], [86, 570]]: only the off-diagonal counts enter the test."""
    table = np.array([[794, 150], [86, 570]])
    p = mcnemar_exact(table[0, 1], table[1, 0])
    assert p == pytest.approx(scipy_mcnemar(150, 86)[0], rel=1e-9)
    assert p == pytest.approx(scipy_mcnemar(150, 86)[1], rel=1e-9)
    assert 1e-5 < p < 1e-4  # a clear change in approval (the asymptotic test gives z^2 = 17.36)


def test_mcnemar_matches_statsmodels():
    contingency_tables = pytest.importorskip("statsmodels.stats.contingency_tables")
    for b, c in TABLES:
        table = np.array([[50, b], [c, 40]])
        expected = contingency_tables.mcnemar(table, exact=True).pvalue
        assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-9, abs=1e-300)


def test_mcnemar_rejects_negative_counts():
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 3)


def test_discordant_counts_each_kind_of_disagreement():
    y = np.array([0, 1, 2, 0, 1, 2, 0])
    a = np.array([0, 1, 2, 1, 1, 0, 2])  # right on 0, 1, 2, 4
    b = np.array([0, 0, 2, 0, 2, 2, 1])  # right on 0, 2, 3, 5
    assert discordant(y, a, b) == (2, 2)  # A only: 1, 4; B only: 3, 5
    assert discordant(y, a, a) == (0, 0)
    assert discordant(y, y, b) == (int(np.sum(b != y)), 0)


def test_mean_sd():
    values = [0.71, 0.74, 0.69]
    mean, sd = mean_sd(values)
    assert mean == pytest.approx(np.mean(values)) and sd == pytest.approx(np.std(values, ddof=1))
    assert mean_sd([0.5]) == (0.5, 0.0)
    with pytest.raises(ValueError):
        mean_sd([])


def test_bootstrap_indices_shape_range_and_seed():
    idx = bootstrap_indices(50, 200, seed=7)
    assert idx.shape == (200, 50) and idx.dtype in (np.int32, np.int64)
    assert idx.min() >= 0 and idx.max() < 50 and len(np.unique(idx)) == 50
    assert np.array_equal(idx, bootstrap_indices(50, 200, seed=7))
    assert not np.array_equal(idx, bootstrap_indices(50, 200, seed=8))


def naive_confusions(y_true, y_pred, k, idx):
    return np.stack([confusion_matrix(y_true[row], y_pred[row], labels=range(k)) for row in idx])


def test_confusion_counts_chunked_equals_naive_loop():
    rng = np.random.default_rng(0)
    k, n = 5, 37
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    idx = bootstrap_indices(n, 23, seed=1)
    expected = naive_confusions(y_true, y_pred, k, idx)
    for chunk in (1, n, 5 * n + 3, 10**9):  # one row per chunk, ..., everything at once
        got = confusion_counts(y_true, y_pred, k, idx, chunk_elements=chunk)
        assert got.shape == (23, k, k) and np.array_equal(got, expected)
    assert (got.sum(axis=(1, 2)) == n).all()


def test_confusion_counts_refuses_out_of_range_labels():
    with pytest.raises(ValueError):
        confusion_counts(np.array([0, 3]), np.array([0, 1]), 3, bootstrap_indices(2, 2, 0))


def test_confusion_counts_memory_stays_small_at_full_scale():
    """10,000 items x 1,000 rounds x 15 classes: the chunked bincount's own allocations stay in tens of MB."""
    rng = np.random.default_rng(0)
    n, rounds, k = 10_000, 1_000, 15
    y_true, y_pred = rng.integers(0, k, n), rng.integers(0, k, n)
    idx = bootstrap_indices(n, rounds, seed=0)
    tracemalloc.start()
    try:
        cm = confusion_counts(y_true, y_pred, k, idx)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert cm.shape == (rounds, k, k) and (cm.sum(axis=(1, 2)) == n).all()
    assert peak < 200 * 2**20  # well under 1 GB (naively: 10M int64 flat indices and more, per temporary)


def test_f1_from_confusion_matches_sklearn_with_absent_classes():
    """Class 4 never true, class 5 never predicted, class 6 neither: sklearn's zero_division=0 semantics."""
    rng = np.random.default_rng(5)
    k, n = 7, 60
    y_true = rng.choice([0, 1, 2, 3, 5], size=n)
    y_pred = rng.choice([0, 1, 2, 3, 4], size=n)
    idx = bootstrap_indices(n, 40, seed=2)
    cms = confusion_counts(y_true, y_pred, k, idx)
    f1, macro = f1_from_confusion(cms), macro_f1(cms)
    assert f1.shape == (40, k) and macro.shape == (40,)
    for r, row in enumerate(idx):
        expected = f1_score(y_true[row], y_pred[row], labels=range(k), average=None, zero_division=0)
        np.testing.assert_allclose(f1[r], expected, rtol=0, atol=1e-15)
        expected_macro = f1_score(y_true[row], y_pred[row], labels=range(k), average="macro", zero_division=0)
        assert macro[r] == pytest.approx(expected_macro, abs=1e-15)
    assert (f1[:, 4] == 0).all() and (f1[:, 5] == 0).all() and (f1[:, 6] == 0).all()
    assert f1[:, :4].max() > 0


def noisy_predictions(y_true: np.ndarray, k: int, accuracy: float, seeds: int, rng) -> np.ndarray:
    """(seeds, n): each item kept right with probability `accuracy`, else moved to another class."""
    right = rng.random((seeds, y_true.size)) < accuracy
    wrong = (y_true + rng.integers(1, k, (seeds, y_true.size))) % k
    return np.where(right, y_true, wrong)


def test_metric_intervals_point_estimates_are_sklearn_averaged_over_seeds():
    rng = np.random.default_rng(1)
    k, n = 6, 300
    y = rng.integers(0, k, n)
    preds = noisy_predictions(y, k, 0.6, seeds=3, rng=rng)
    out = metric_intervals(y, preds, k, rounds=200, seed=0)
    labels = range(k)
    assert out["accuracy_mean"] == pytest.approx(np.mean([accuracy_score(y, p) for p in preds]), abs=1e-12)
    expected_macro = np.mean([f1_score(y, p, labels=labels, average="macro", zero_division=0) for p in preds])
    assert out["macro_f1_mean"] == pytest.approx(expected_macro, abs=1e-12)
    expected_per_genre = np.mean([f1_score(y, p, labels=labels, average=None, zero_division=0) for p in preds], 0)
    np.testing.assert_allclose(out["per_genre_f1_mean"], expected_per_genre, atol=1e-12)
    assert out["per_genre_f1"].shape == (k, 2)
    lo, hi = out["accuracy"]
    assert lo < out["accuracy_mean"] < hi and hi - lo < 0.15
    lo, hi = out["macro_f1"]
    assert lo < out["macro_f1_mean"] < hi
    ci = out["per_genre_f1"]
    assert (ci[:, 0] <= out["per_genre_f1_mean"]).all() and (out["per_genre_f1_mean"] <= ci[:, 1]).all()


def test_metric_intervals_resample_items_once_for_all_seeds():
    """Same as a naive loop: one resample of items, every seed scored on it by sklearn, seeds averaged."""
    rng = np.random.default_rng(2)
    k, n, rounds = 4, 80, 60
    y = rng.integers(0, k, n)
    preds = noisy_predictions(y, k, 0.7, seeds=2, rng=rng)
    out = metric_intervals(y, preds, k, rounds=rounds, seed=11, level=0.9)
    acc, macro = [], []
    for row in bootstrap_indices(n, rounds, seed=11):
        acc.append(np.mean([accuracy_score(y[row], p[row]) for p in preds]))
        macro.append(
            np.mean([f1_score(y[row], p[row], labels=range(k), average="macro", zero_division=0) for p in preds])
        )
    np.testing.assert_allclose(out["accuracy"], np.quantile(acc, [0.05, 0.95]), atol=1e-12)
    np.testing.assert_allclose(out["macro_f1"], np.quantile(macro, [0.05, 0.95]), atol=1e-12)


def test_metric_intervals_narrow_with_more_items_and_are_deterministic():
    k = 5
    y = np.arange(400) % k
    pred = np.where(np.arange(400) % 10 < 7, y, (y + 1) % k)  # exactly 70 % right
    small = metric_intervals(y, pred[None], k, rounds=400, seed=0)
    big = metric_intervals(np.tile(y, 4), np.tile(pred, 4)[None], k, rounds=400, seed=0)
    assert small["accuracy_mean"] == big["accuracy_mean"] == pytest.approx(0.7)
    width = {name: r["accuracy"][1] - r["accuracy"][0] for name, r in (("small", small), ("big", big))}
    assert 0 < width["big"] < 0.7 * width["small"]  # ~ 1/sqrt(4) = 0.5 of it
    again = metric_intervals(y, pred[None], k, rounds=400, seed=0)
    assert again["accuracy"] == small["accuracy"] and again["macro_f1"] == small["macro_f1"]
    np.testing.assert_array_equal(again["per_genre_f1"], small["per_genre_f1"])
    assert metric_intervals(y, pred[None], k, rounds=400, seed=1)["accuracy"] != small["accuracy"]


def test_paired_difference_of_identical_models_is_exactly_zero():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 200)
    preds = noisy_predictions(y, 3, 0.6, seeds=3, rng=rng)
    assert paired_difference(y, preds, preds.copy(), rounds=300) == (0.0, 0.0, 0.0)


def test_paired_difference_detects_a_model_right_on_a_superset():
    rng = np.random.default_rng(6)
    k, n = 4, 500
    y = rng.integers(0, k, n)
    b = noisy_predictions(y, k, 0.6, seeds=2, rng=rng)
    a = b.copy()
    fixed = rng.random(n) < 0.5  # A also gets right half of the items B misses
    a[:, fixed] = y[fixed]
    diff, lo, hi = paired_difference(y, a, b, rounds=500, seed=0)
    expected = np.mean([accuracy_score(y, pa) - accuracy_score(y, pb) for pa, pb in zip(a, b)])
    assert diff == pytest.approx(expected, abs=1e-12) and diff > 0.15
    assert 0 < lo < diff < hi
    assert paired_difference(y, b, a, rounds=500, seed=0) == pytest.approx((-diff, -hi, -lo), abs=1e-12)


def test_paired_difference_equals_naive_paired_bootstrap():
    rng = np.random.default_rng(8)
    k, n, rounds = 3, 90, 80
    y = rng.integers(0, k, n)
    a, b = noisy_predictions(y, k, 0.7, 2, rng), noisy_predictions(y, k, 0.6, 2, rng)
    diffs = [
        np.mean([accuracy_score(y[row], pa[row]) - accuracy_score(y[row], pb[row]) for pa, pb in zip(a, b)])
        for row in bootstrap_indices(n, rounds, seed=3)
    ]
    _, lo, hi = paired_difference(y, a, b, rounds=rounds, seed=3)
    np.testing.assert_allclose([lo, hi], np.quantile(diffs, [0.025, 0.975]), atol=1e-12)


def test_ensemble_predictions_average_probabilities_before_argmax():
    scores = np.array(
        [
            [[0.5, 0.45, 0.05], [0.1, 0.2, 0.7]],
            [[0.5, 0.45, 0.05], [0.2, 0.5, 0.3]],
            [[0.0, 1.0, 0.0], [0.1, 0.1, 0.8]],
        ]
    )
    # Item 0: two of three seeds vote class 0, but the mean probability (0.33, 0.63, 0.03) is class 1.
    np.testing.assert_array_equal(ensemble_predictions(scores), [1, 2])
    np.testing.assert_array_equal(ensemble_predictions(scores[:1]), scores[0].argmax(axis=1))


def test_most_confident_errors_ranks_wrong_items_per_true_genre():
    true = np.array([0, 0, 0, 1, 1, 2, 0])
    pred = np.array([1, 2, 0, 0, 1, 2, 1])
    conf = np.array([0.6, 0.9, 0.99, 0.7, 0.8, 0.5, 0.6])
    rows = most_confident_errors(true, pred, conf, num_classes=3, per_genre=2)
    assert [list(r) for r in rows] == [[1, 0], [3], []]  # item 2 is right; ties (0, 6) keep test order


def test_significance_sentence_formats():
    text = significance_sentence("efficientnet_b0", "resnet50", 0.018, -0.004, 0.040, 0.11)
    assert text == (
        "efficientnet_b0 \u2212 resnet50: +1.8 pp, 95 % CI [\u22120.4, 4.0], McNemar p = 0.11: not significant at 0.05"
    )
    text = significance_sentence("a", "b", -0.052, -0.081, -0.023, 0.0004)
    assert text == "a \u2212 b: \u22125.2 pp, 95 % CI [\u22128.1, \u22122.3], McNemar p < 0.001: significant at 0.05"
    text = significance_sentence("a", "b", 0.0, 0.0, 0.0, 1.0)
    assert "0.0 pp" in text and "[0.0, 0.0]" in text and "p = 1.0" in text and "not significant" in text
    assert "p = 0.0012: significant" in significance_sentence("a", "b", 0.03, 0.01, 0.05, 0.00123)
    assert "-" not in significance_sentence("a", "b", -0.00001, -0.0004, 0.01, 0.5)  # no "-0.0", no hyphen


def jpeg_bytes(rng, size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def assert_png(path):
    assert path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100


def test_plot_per_genre_f1_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"genre_{i}" for i in range(15)]
    per_model = {}
    for model in ("resnet50", "efficientnet_b0"):
        mean = rng.uniform(0.2, 0.8, 15)
        per_model[model] = (mean, np.stack([mean - 0.1, np.minimum(1.0, mean + 0.1)], axis=1))
    path = tmp_path / "per_genre_f1.png"
    plot_per_genre_f1(path, names, per_model, "Per-genre F1 (3 seeds)")
    assert_png(path)


def test_plot_confident_errors_writes_png(tmp_path):
    rng = np.random.default_rng(1)
    names = [f"genre_{i}" for i in range(6)]
    n = 60
    true = np.arange(n) % 6
    pred = np.where(rng.random(n) < 0.5, true, (true + 1) % 6)
    pred[true == 5] = 5  # one genre without errors
    prob = rng.dirichlet(np.ones(6), n)
    images = [jpeg_bytes(rng) for _ in range(n - 1)] + [b"not an image"]
    path = tmp_path / "confident_errors.png"
    plot_confident_errors(path, images, true, pred, prob, names, per_genre=4, title="resnet50: confident errors")
    assert_png(path)
    path = tmp_path / "confident_errors_1d.png"  # predicted-class probability only
    plot_confident_errors(path, images, true, pred, prob.max(axis=1), names, per_genre=4)
    assert_png(path)


def test_plot_learning_curves_writes_png_with_gap_panel(tmp_path):
    history = [
        {"epoch": e, "train_loss": 2.0 / e, "train_acc": 0.4 + 0.05 * e, "val_loss": 1.8 / e + 0.04 * e, "val_acc": 0.5}
        for e in range(1, 9)
    ]
    path = tmp_path / "learning_curves.png"
    plot_learning_curves(path, history, best_epoch=4, model="resnet50")
    assert_png(path)
    with Image.open(path) as img:
        assert img.size[0] > 1.2 * img.size[1]  # three panels side by side
