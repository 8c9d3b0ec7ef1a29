"""Intervals and paired tests for the binary comparisons on one fixed test split, and across resampled splits.

Library first: McNemar from statsmodels, the t and normal quantiles from scipy, balanced accuracy and AUROC from
scikit-learn. DeLong's covariance of correlated AUROCs is written here because none of those libraries has it;
it follows the fast midrank form of Sun & Xu (2014, IEEE Signal Processing Letters 21:1389) and is tested against
the brute-force structural components of DeLong, DeLong & Clarke-Pearson (1988).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
from scipy import stats
from scipy.stats import rankdata
from sklearn.metrics import balanced_accuracy_score


def _binary(y: Any, name: str = "y") -> np.ndarray:
    y = np.asarray(y).ravel()
    values = set(np.unique(y).tolist())
    if not values <= {0, 1}:
        raise ValueError(f"{name}: labels must be 0/1, found {sorted(values)[:5]}")
    if len(values) < 2:
        raise ValueError(f"{name}: both classes are needed ({len(y)} cases, all {sorted(values)}); AUROC is undefined")
    return y.astype(int)


def _scores(score: Any, n: int, name: str) -> np.ndarray:
    score = np.asarray(score, dtype=np.float64).ravel()
    if len(score) != n:
        raise ValueError(f"{name}: {len(score)} scores for {n} labels")
    if not np.isfinite(score).all():
        raise ValueError(f"{name}: {int((~np.isfinite(score)).sum())} scores are not finite")
    return score


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: {confidence} is not in (0, 1)")
    return float(stats.norm.ppf(0.5 + confidence / 2))


def delong_covariance(y: Any, scores: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """AUROC of each score vector on the same cases and DeLong's covariance matrix of those AUROCs (k × k)."""
    y = _binary(y)
    rows = np.stack([_scores(s, len(y), f"scores[{i}]") for i, s in enumerate(scores)])
    positives, negatives = rows[:, y == 1], rows[:, y == 0]
    m, n = positives.shape[1], negatives.shape[1]
    if min(m, n) < 2:
        raise ValueError(f"y: {m} positive and {n} negative cases; DeLong's variance needs at least 2 of each")
    aucs, v_pos, v_neg = [], [], []
    for pos, neg in zip(positives, negatives):
        rank_all = rankdata(np.concatenate([pos, neg]))           # midranks: ties count one half
        rank_pos, rank_neg = rankdata(pos), rankdata(neg)
        aucs.append((rank_all[:m].sum() - m * (m + 1) / 2) / (m * n))
        v_pos.append((rank_all[:m] - rank_pos) / n)               # per positive: share of negatives scored below it
        v_neg.append(1 - (rank_all[m:] - rank_neg) / m)           # per negative: share of positives scored above it
    v_pos, v_neg = np.array(v_pos), np.array(v_neg)
    cov = np.atleast_2d(np.cov(v_pos, ddof=1)) / m + np.atleast_2d(np.cov(v_neg, ddof=1)) / n
    return np.array(aucs), cov


def auroc_interval(y: Any, score: Any, confidence: float = 0.95) -> dict[str, Any]:
    """AUROC with DeLong's standard error and a normal interval clipped to [0, 1]."""
    y = _binary(y)
    aucs, cov = delong_covariance(y, [score])
    auc, se = float(aucs[0]), float(np.sqrt(max(cov[0, 0], 0.0)))
    z = _z(confidence)
    return {"auroc": auc, "low": max(0.0, auc - z * se), "high": min(1.0, auc + z * se), "se": se,
            "n": int(len(y)), "positives": int(y.sum())}


def delong_test(y: Any, score_a: Any, score_b: Any, confidence: float = 0.95) -> dict[str, Any]:
    """AUROC(a) − AUROC(b) on the same cases: DeLong's paired z-test and its normal interval."""
    y = _binary(y)
    aucs, cov = delong_covariance(y, [score_a, score_b])
    estimate = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1], 0.0)))
    if se == 0.0:   # identical rankings (or both perfect): no evidence of a difference
        z_value, p = 0.0, 1.0
    else:
        z_value = estimate / se
        p = float(2 * stats.norm.sf(abs(z_value)))
    half = _z(confidence) * se
    return {"estimate": estimate, "low": estimate - half, "high": estimate + half, "se": se, "z": float(z_value),
            "p_value": p, "n": int(len(y)), "test": "DeLong"}


def mcnemar_test(y: Any, pred_a: Any, pred_b: Any, confidence: float = 0.95) -> dict[str, Any]:
    """Accuracy(a) − accuracy(b) on the same cases: McNemar's test on the discordant pairs (exact binomial when
    fewer than 25 are discordant, else the continuity-corrected chi-square), with a Wald interval for the paired
    difference of proportions."""
    from statsmodels.stats.contingency_tables import mcnemar

    y = np.asarray(y).ravel().astype(int)
    a = np.asarray(pred_a).ravel().astype(int) == y
    b = np.asarray(pred_b).ravel().astype(int) == y
    if not len(a) == len(b) == len(y) or len(y) == 0:
        raise ValueError(f"mcnemar_test: {len(y)} labels, {len(a)} and {len(b)} predictions")
    n = len(y)
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    table = [[int((a & b).sum()), a_only], [b_only, int((~a & ~b).sum())]]
    exact = a_only + b_only < 25
    result = mcnemar(table, exact=exact, correction=True)
    p = 1.0 if a_only + b_only == 0 else float(result.pvalue)
    estimate = (a_only - b_only) / n
    se = np.sqrt(max((a_only + b_only) - (a_only - b_only) ** 2 / n, 0.0)) / n
    half = _z(confidence) * se
    return {"estimate": float(estimate), "low": float(estimate - half), "high": float(estimate + half),
            "a_only": a_only, "b_only": b_only, "p_value": p, "n": n,
            "test": "McNemar (exact)" if exact else "McNemar (chi-square, continuity-corrected)"}


def auroc_by_rank(y: np.ndarray, score: np.ndarray) -> np.ndarray:
    """AUROC as the Mann-Whitney statistic from midranks, along the last axis: (n,) or (resamples, n) with the
    same class counts in every row. Written here because scikit-learn's roc_auc_score takes one curve per call,
    ~20x slower than this inside a bootstrap."""
    y, score = np.asarray(y), np.asarray(score, dtype=np.float64)
    ranks = rankdata(score, axis=-1)
    m = (y == 1).sum(axis=-1)
    n = y.shape[-1] - m
    return ((ranks * (y == 1)).sum(axis=-1) - m * (m + 1) / 2) / (m * n)


def paired_bootstrap(y: Any, score_a: Any, score_b: Any, metric: Callable[[np.ndarray, np.ndarray], float] | None = None,
                     resamples: int = 2000, confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """metric(a) − metric(b) (AUROC when `metric` is None) with a percentile interval: the same cases resampled for
    both, within each class so that every resample keeps the test split's class counts (AUROC stays defined)."""
    y = _binary(y)
    a, b = _scores(score_a, len(y), "score_a"), _scores(score_b, len(y), "score_b")
    if resamples < 1:
        raise ValueError(f"resamples: {resamples} is not >= 1")
    _z(confidence)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in (0, 1)]
    idx = np.concatenate([rng.choice(g, (resamples, len(g)), replace=True) for g in groups], axis=1)
    if metric is None:
        estimate = float(auroc_by_rank(y, a) - auroc_by_rank(y, b))
        draws = auroc_by_rank(y[idx], a[idx]) - auroc_by_rank(y[idx], b[idx])
    else:
        estimate = float(metric(y, a) - metric(y, b))
        draws = np.array([metric(y[i], a[i]) - metric(y[i], b[i]) for i in idx])
    tail = (1 - confidence) / 2
    low, high = np.quantile(draws, [tail, 1 - tail])
    # two-sided bootstrap p-value: how often a resample lands on the other side of zero (at least 1/(R+1))
    p = min(1.0, 2 * (min((draws <= 0).sum(), (draws >= 0).sum()) + 1) / (resamples + 1))
    return {"estimate": estimate, "low": float(low), "high": float(high), "p_value": float(p),
            "resamples": int(resamples), "n": int(len(y)), "test": "paired stratified bootstrap (percentile)"}


def corrected_resampled_t(differences: Sequence[float], n_train: float, n_test: float,
                          confidence: float = 0.95) -> dict[str, Any]:
    """Mean of per-split differences with the corrected resampled t-test of Nadeau & Bengio (2003): resampled
    splits share cases, so the variance of the mean is (1/J + n_test/n_train) · s², not s²/J."""
    d = np.asarray(differences, dtype=np.float64).ravel()
    j = len(d)
    if j < 2:
        raise ValueError(f"corrected_resampled_t: {j} split(s); at least 2 are needed for a variance")
    if not np.isfinite(d).all():
        raise ValueError(f"corrected_resampled_t: non-finite differences {d.tolist()}")
    if n_train <= 0 or n_test <= 0:
        raise ValueError(f"corrected_resampled_t: n_train {n_train} and n_test {n_test} must be positive")
    mean = float(d.mean())
    se = float(np.sqrt((1 / j + n_test / n_train) * d.var(ddof=1)))
    _z(confidence)
    quantile = float(stats.t.ppf(0.5 + confidence / 2, j - 1))
    if se <= 1e-12 * max(1.0, abs(mean)):   # every split gave the same difference: no spread to test against
        t_value, p = (0.0, 1.0) if mean == 0 else (None, 0.0)
    else:
        t_value = mean / se
        p = float(2 * stats.t.sf(abs(t_value), j - 1))
    return {"mean": mean, "low": mean - quantile * se, "high": mean + quantile * se, "se": se, "t": t_value,
            "p_value": p, "splits": j, "test": "corrected resampled t (Nadeau & Bengio 2003)"}


def choose_threshold(y_val: Any, score_val: Any) -> float:
    """The decision threshold of highest validation accuracy (midpoints between distinct scores, and 0.5); ties go
    to the one nearest 0.5 so that a model with no validation preference keeps the paper's threshold."""
    y = np.asarray(y_val).ravel().astype(int)
    s = _scores(score_val, len(y), "score_val")
    if len(y) == 0:
        raise ValueError("choose_threshold: no validation cases")
    distinct = np.unique(s)
    candidates = np.concatenate([[0.5, distinct[0] - 1e-6, distinct[-1] + 1e-6], (distinct[1:] + distinct[:-1]) / 2])
    accuracy = np.array([np.mean((s >= t) == y) for t in candidates])
    best = np.flatnonzero(accuracy == accuracy.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - 0.5))]])


def binary_report(y: Any, score: Any, threshold: float, confidence: float = 0.95) -> dict[str, Any]:
    """One model on the test cases: AUROC with its DeLong interval; accuracy at the threshold chosen on validation
    and at 0.5 (the paper's); balanced accuracy at the chosen threshold."""
    y = _binary(y)
    s = _scores(score, len(y), "score")
    interval = auroc_interval(y, s, confidence)
    predicted = (s >= threshold).astype(int)
    return {"auroc": interval["auroc"], "auroc_low": interval["low"], "auroc_high": interval["high"],
            "accuracy": float(np.mean(predicted == y)), "accuracy_at_0.5": float(np.mean((s >= 0.5) == y)),
            "balanced_accuracy": float(balanced_accuracy_score(y, predicted)), "threshold": float(threshold),
            "n": int(len(y)), "positives": int(y.sum())}


def paired_comparison(y: Any, score_a: Any, score_b: Any, pred_a: Any, pred_b: Any, resamples: int = 2000,
                      confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """a − b on the same test cases: DeLong's test of AUROC, McNemar's of accuracy, a paired bootstrap interval of
    the AUROC difference."""
    return {"auroc": delong_test(y, score_a, score_b, confidence),
            "accuracy": mcnemar_test(y, pred_a, pred_b, confidence),
            "auroc_bootstrap": paired_bootstrap(y, score_a, score_b, None, resamples, confidence, seed)}


def check_statistics(confidence: float, resamples: int, where: str = "statistics") -> None:
    """Loud parameter errors for the shared `statistics` section."""
    from replication.errors import ParameterError

    if not 0 < confidence < 1:
        raise ParameterError(f"{where}.confidence", confidence, "a number in (0, 1)")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ParameterError(f"{where}.resamples", resamples, "an integer >= 1")


def majority_report(y: Any, majority: float) -> dict[str, Any]:
    """The training split's majority class on the test cases, in `binary_report`'s keys: a constant score, so
    AUROC is 0.5 by definition (no interval) and balanced accuracy 0.5."""
    y = np.asarray(y).ravel().astype(int)
    accuracy = float(np.mean(y == majority))
    return {"auroc": 0.5, "auroc_low": 0.5, "auroc_high": 0.5, "accuracy": accuracy, "accuracy_at_0.5": accuracy,
            "balanced_accuracy": 0.5, "threshold": 0.5, "n": int(len(y)), "positives": int(y.sum())}


def compare_on_test(y_val: Any, y_test: Any, scores: Mapping[str, tuple[Any, Any]], pairs: Sequence[tuple[str, str]],
                    majority: float | None, resamples: int, confidence: float, seed: int) -> dict[str, Any]:
    """One split: each model's test report at the threshold chosen on its validation scores (`scores`: name ->
    (validation scores, test scores) on the same cases), the training majority class when given, and for each
    (a, b) in `pairs` whose models are both present the paired tests of a − b."""
    y_val, y_test = np.asarray(y_val).astype(int), np.asarray(y_test).astype(int)
    reports, predictions = {}, {}
    for name, (val, test) in scores.items():
        threshold = choose_threshold(y_val, val)
        reports[name] = binary_report(y_test, test, threshold, confidence)
        predictions[name] = (np.asarray(test) >= threshold).astype(int)
    if majority is not None:
        reports["majority class"] = majority_report(y_test, majority)
    comparisons = {f"{a} - {b}": paired_comparison(y_test, scores[a][1], scores[b][1], predictions[a], predictions[b], resamples, confidence, seed)
                   for a, b in pairs if a in scores and b in scores}
    return {"test": reports, "comparisons": comparisons}


def summarise_splits(splits: Sequence[Mapping[str, Any]], n_train: float, n_test: float, confidence: float) -> dict[str, Any]:
    """Across splits (each from `compare_on_test`): every model's mean test numbers (with the AUROC's sd), and each
    difference's mean with the corrected resampled t interval and p-value, plus how many splits' own DeLong test
    had p below 1 − confidence (and in how many of those a was the higher); `differences` is empty with one split (no variance to correct)."""
    models = {}
    for name in dict.fromkeys(n for s in splits for n in s["test"]):
        rows = [s["test"][name] for s in splits if name in s["test"]]
        models[name] = {key: float(np.mean([r[key] for r in rows])) for key in ("auroc", "accuracy", "accuracy_at_0.5", "balanced_accuracy")}
        models[name]["auroc_sd"] = float(np.std([r["auroc"] for r in rows], ddof=1)) if len(rows) > 1 else 0.0
        models[name]["splits"] = len(rows)
    differences = {}
    for key in dict.fromkeys(k for s in splits for k in s["comparisons"]):
        rows = [s["comparisons"][key] for s in splits if key in s["comparisons"]]
        if len(rows) < 2:
            continue
        differences[key] = {metric: corrected_resampled_t([r[metric]["estimate"] for r in rows], n_train, n_test, confidence)
                            for metric in ("auroc", "accuracy")}
        significant = [r["auroc"] for r in rows if r["auroc"]["p_value"] < 1 - confidence]
        differences[key]["significant_splits"] = len(significant)
        differences[key]["significant_splits_a_higher"] = int(sum(r["estimate"] > 0 for r in significant))
    return {"models": models, "differences": differences}


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, Any]:
    """The flat part of a `summarise_splits` result that `dvc metrics` compares: per model the mean test AUROC,
    accuracy and balanced accuracy; per difference the AUROC and accuracy means with interval and p-value."""
    keys = ("mean", "low", "high", "p_value")
    return {"models": {name: {"test_auroc": m["auroc"], "test_accuracy": m["accuracy"], "test_balanced_accuracy": m["balanced_accuracy"]}
                       for name, m in summary["models"].items()},
            "differences": {key: {metric: {k: d[metric][k] for k in keys} for metric in ("auroc", "accuracy")}
                            for key, d in summary["differences"].items()}}


def tests_markdown(summary: Mapping[str, Any], splits: Sequence[Mapping[str, Any]], title: str, baselines: Sequence[str] = (),
                   confidence: float = 0.95) -> str:
    """A `summarise_splits` result as Markdown: mean test numbers per model (`baselines` marked as such), then each
    difference across splits (corrected resampled t), or with one split that split's DeLong and McNemar tests."""
    n = len(splits)
    cell = lambda d, e="mean": f"{d[e]:+.3f} [{d['low']:+.3f}, {d['high']:+.3f}], p = {d['p_value']:.3g}"  # noqa: E731
    lines = [f"**{title}** (test split, mean over {n} split{'s' if n != 1 else ''}; accuracy at the threshold chosen on validation)\n",
             "| model | test AUROC | sd | accuracy | accuracy at 0.5 | balanced accuracy |", "|---|---|---|---|---|---|"]
    for name, m in summary["models"].items():
        label = f"{name} (baseline)" if name in baselines else name
        lines.append(f"| {label} | {m['auroc']:.3f} | {m['auroc_sd']:.3f} | {m['accuracy']:.3f} | {m['accuracy_at_0.5']:.3f} | {m['balanced_accuracy']:.3f} |")
    if summary["differences"]:
        lines += ["", f"| difference | AUROC: mean [interval], p | accuracy: mean [interval], p | splits with DeLong p < {1 - confidence:.2g} |",
                  "|---|---|---|---|"]
        for key, d in summary["differences"].items():
            lines.append(f"| {key} | {cell(d['auroc'])} | {cell(d['accuracy'])} | {d['significant_splits']} of {n} "
                         f"({d['significant_splits_a_higher']} with the first higher) |")
        lines += ["", "Across splits: corrected resampled t-test (Nadeau & Bengio 2003); per split (in the stage's JSON): DeLong, "
                  "McNemar and a stratified paired bootstrap on the same test cases."]
    elif splits and splits[0]["comparisons"]:
        lines += ["", "| difference (one split) | AUROC (DeLong): estimate [interval], p | accuracy (McNemar): estimate [interval], p | n |",
                  "|---|---|---|---|"]
        for key, c in splits[0]["comparisons"].items():
            lines.append(f"| {key} | {cell(c['auroc'], 'estimate')} | {cell(c['accuracy'], 'estimate')} | {c['auroc']['n']} |")
    return "\n".join(lines) + "\n"
