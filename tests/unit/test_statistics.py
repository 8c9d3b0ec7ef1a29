"""The statistics module against brute force, libraries and hand-computed values."""

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from replication import statistics as st


def brute_delong(y, scores):
    """DeLong, DeLong & Clarke-Pearson (1988) written out: the kernel psi over every (positive, negative) pair,
    structural components per case, their sample covariances over m and n."""
    y = np.asarray(y)
    comps_pos, comps_neg, aucs = [], [], []
    for s in scores:
        s = np.asarray(s, float)
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        aucs.append(psi.mean())
        comps_pos.append(psi.mean(axis=1))
        comps_neg.append(psi.mean(axis=0))
    m, n = (y == 1).sum(), (y == 0).sum()
    k = len(scores)
    cov = np.empty((k, k))
    for r in range(k):
        for c in range(k):
            s10 = np.sum((comps_pos[r] - aucs[r]) * (comps_pos[c] - aucs[c])) / (m - 1)
            s01 = np.sum((comps_neg[r] - aucs[r]) * (comps_neg[c] - aucs[c])) / (n - 1)
            cov[r, c] = s10 / m + s01 / n
    return np.array(aucs), cov


@pytest.fixture
def case():
    rng = np.random.default_rng(3)
    y = rng.permutation(np.r_[np.ones(13), np.zeros(17)]).astype(int)
    a = y * 0.8 + rng.normal(size=30)
    b = np.round(y * 0.3 + rng.normal(size=30), 1)   # rounded: ties inside and across classes
    return y, a, b


def test_delong_matches_brute_force_with_ties(case):
    y, a, b = case
    aucs, cov = st.delong_covariance(y, [a, b])
    want_aucs, want_cov = brute_delong(y, [a, b])
    np.testing.assert_allclose(aucs, want_aucs, atol=1e-12)
    np.testing.assert_allclose(aucs, [roc_auc_score(y, a), roc_auc_score(y, b)], atol=1e-12)
    np.testing.assert_allclose(cov, want_cov, atol=1e-12)
    assert cov[0, 1] == pytest.approx(cov[1, 0])


def test_delong_test_is_the_z_of_the_brute_force_difference(case):
    y, a, b = case
    aucs, cov = brute_delong(y, [a, b])
    se = np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    z = (aucs[0] - aucs[1]) / se
    got = st.delong_test(y, a, b)
    assert got["estimate"] == pytest.approx(aucs[0] - aucs[1])
    assert got["z"] == pytest.approx(z)
    assert got["p_value"] == pytest.approx(2 * stats.norm.sf(abs(z)))
    assert got["high"] - got["low"] == pytest.approx(2 * 1.959964 * se, rel=1e-5)
    assert got["n"] == 30 and got["test"] == "DeLong"
    # antisymmetric: b − a is the negative with the same p
    swapped = st.delong_test(y, b, a)
    assert swapped["estimate"] == pytest.approx(-got["estimate"]) and swapped["p_value"] == pytest.approx(got["p_value"])


def test_delong_identical_scores_give_no_difference(case):
    y, a, _ = case
    got = st.delong_test(y, a, a.copy())
    assert got["estimate"] == 0 and got["z"] == 0 and got["p_value"] == 1.0


def test_delong_hand_case():
    # 2 positives (0.9, 0.4), 2 negatives (0.6, 0.1): pairs 1, 1, 0, 1 → AUROC 0.75
    # components: positives (1, 0.5), negatives (0.5, 1); var = 0.125/2 + 0.125/2 = 0.125
    aucs, cov = st.delong_covariance([1, 1, 0, 0], [[0.9, 0.4, 0.6, 0.1]])
    assert aucs[0] == pytest.approx(0.75) and cov[0, 0] == pytest.approx(0.125)
    interval = st.auroc_interval([1, 1, 0, 0], [0.9, 0.4, 0.6, 0.1])
    assert interval["se"] == pytest.approx(np.sqrt(0.125)) and interval["high"] == 1.0 and interval["low"] >= 0.0


def test_auroc_interval_covers_at_roughly_its_level():
    """Coverage of the DeLong interval over simulated test sets of a model with known AUROC."""
    rng = np.random.default_rng(0)
    shift = np.sqrt(2) * stats.norm.ppf(0.8)   # binormal, equal variance: AUROC = Φ(shift/√2) = 0.8
    covered = 0
    for _ in range(400):
        y = np.r_[np.ones(60), np.zeros(60)].astype(int)
        s = rng.normal(size=120) + shift * y
        r = st.auroc_interval(y, s)
        covered += r["low"] <= 0.8 <= r["high"]
    assert 0.91 <= covered / 400 <= 0.98


def test_mcnemar_exact_is_the_binomial_test():
    y = np.ones(40, int)
    a = np.r_[np.ones(30), np.zeros(10)].astype(int)   # a right on 30
    b = np.r_[np.ones(22), np.zeros(18)].astype(int)   # b right on 22 (a subset of a's)
    got = st.mcnemar_test(y, a, b)
    assert (got["a_only"], got["b_only"]) == (8, 0)
    assert got["p_value"] == pytest.approx(stats.binomtest(0, 8, 0.5).pvalue)
    assert got["estimate"] == pytest.approx(8 / 40) and got["test"] == "McNemar (exact)"
    se = np.sqrt(8 - 64 / 40) / 40
    assert got["high"] - got["estimate"] == pytest.approx(1.959964 * se, rel=1e-5)


def test_mcnemar_chi_square_when_many_discordant():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    a = np.where(rng.random(300) < 0.8, y, 1 - y)
    b = np.where(rng.random(300) < 0.7, y, 1 - y)
    got = st.mcnemar_test(y, a, b)
    n01, n10 = got["a_only"], got["b_only"]
    assert n01 + n10 >= 25
    chi2 = (abs(n01 - n10) - 1) ** 2 / (n01 + n10)
    assert got["p_value"] == pytest.approx(stats.chi2.sf(chi2, 1))
    assert st.mcnemar_test(y, a, a)["p_value"] == 1.0


def test_paired_bootstrap_keeps_class_counts_and_covers_estimate(case):
    y, a, b = case
    seen = []

    def metric(yy, s):
        seen.append(int(yy.sum()))
        return roc_auc_score(yy, s)

    got = st.paired_bootstrap(y, a, b, metric, resamples=300, seed=4)
    assert set(seen) == {13}                 # every resample keeps the 13 positives
    assert got["low"] <= got["estimate"] <= got["high"]
    assert got["estimate"] == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    again = st.paired_bootstrap(y, a, b, roc_auc_score, resamples=300, seed=4)
    assert (again["low"], again["high"]) == (got["low"], got["high"])
    # the default (vectorised midrank AUROC) draws the same resamples as the library metric
    fast = st.paired_bootstrap(y, a, b, None, resamples=300, seed=4)
    assert fast["low"] == pytest.approx(got["low"]) and fast["high"] == pytest.approx(got["high"])
    assert fast["estimate"] == pytest.approx(got["estimate"])
    same = st.paired_bootstrap(y, a, a, None, resamples=50)
    assert same["low"] == same["high"] == 0 and same["p_value"] == 1.0


def test_corrected_resampled_t_by_hand():
    d = [0.02, 0.05, -0.01, 0.04, 0.03]
    got = st.corrected_resampled_t(d, n_train=400, n_test=100)
    mean, var = np.mean(d), np.var(d, ddof=1)
    se = np.sqrt((1 / 5 + 100 / 400) * var)
    assert got["mean"] == pytest.approx(mean) and got["se"] == pytest.approx(se)
    assert got["t"] == pytest.approx(mean / se)
    assert got["p_value"] == pytest.approx(2 * stats.t.sf(mean / se, 4))
    assert got["high"] - got["mean"] == pytest.approx(stats.t.ppf(0.975, 4) * se)
    # the correction only widens: the plain t-test's p is smaller
    assert stats.ttest_1samp(d, 0).pvalue < got["p_value"]


def test_corrected_resampled_t_degenerate_cases():
    with pytest.raises(ValueError, match="at least 2"):
        st.corrected_resampled_t([0.1], 100, 20)
    assert st.corrected_resampled_t([0.0, 0.0], 100, 20)["p_value"] == 1.0
    constant = st.corrected_resampled_t([0.1, 0.1, 0.1], 100, 20)
    assert constant["p_value"] == 0.0 and constant["t"] is None


def test_choose_threshold():
    y = [0, 0, 0, 1, 1, 1]
    # separable at any cut in (0.3, 0.7); the nearest to 0.5 of the tied candidates is 0.5 itself
    assert st.choose_threshold(y, [0.1, 0.2, 0.3, 0.7, 0.8, 0.9]) == 0.5
    # every score below 0.5: the best cut lies between 0.2 and 0.3
    assert st.choose_threshold(y, [0.05, 0.1, 0.2, 0.3, 0.35, 0.4]) == pytest.approx(0.25)
    # an uninformative constant score: no cut beats another... the majority side wins, nearest 0.5
    t = st.choose_threshold([0, 0, 1], [0.7, 0.7, 0.7])
    assert np.mean((np.array([0.7] * 3) >= t) == np.array([0, 0, 1])) == pytest.approx(2 / 3)


def test_binary_report():
    y = np.array([0, 0, 0, 1, 1, 1, 1, 0])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.3, 0.6, 0.45, 0.2])
    r = st.binary_report(y, s, threshold=0.4)
    assert r["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert r["accuracy"] == pytest.approx(np.mean((s >= 0.4) == y))
    assert r["accuracy_at_0.5"] == pytest.approx(np.mean((s >= 0.5) == y))
    # threshold 0.4: TPR 3/4 (0.8, 0.6, 0.45), TNR 3/4 (0.1, 0.35, 0.2) → 0.75
    assert r["balanced_accuracy"] == pytest.approx(0.75)
    assert (r["n"], r["positives"]) == (8, 4)


def test_loud_errors():
    with pytest.raises(ValueError, match="both classes"):
        st.auroc_interval([1, 1, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        st.delong_test([0, 2, 1], [1, 2, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="not finite"):
        st.auroc_interval([0, 1, 0, 1], [0.1, np.nan, 0.2, 0.3])
    with pytest.raises(ValueError, match="3 scores for 4"):
        st.auroc_interval([0, 1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="at least 2 of each"):
        st.auroc_interval([0, 1, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="confidence"):
        st.auroc_interval([0, 1, 0, 1], [0.1, 0.2, 0.3, 0.4], confidence=1.5)
