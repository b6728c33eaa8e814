"""Holm's step-down adjustment, for a p-value vector and per family of a results table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ovfdlr.stats import StatsError, adjust_family, holm


def reference_holm(p):
    """Holm (1979) written out: sort the non-NaN p-values ascending and take the running
    maximum of min(1, (m - j + 1) p_(j)); NaN entries are not in the family and stay NaN."""
    p = np.asarray(p, dtype=float)
    out = np.full(p.shape, np.nan)
    idx = [i for i in range(p.size) if not np.isnan(p[i])]
    idx.sort(key=lambda i: p[i])
    m = len(idx)
    running = 0.0
    for j, i in enumerate(idx, start=1):
        running = max(running, min(1.0, (m - j + 1) * p[i]))
        out[i] = running
    return out


def test_holm_matches_r_p_adjust():
    # R: p.adjust(c(0.01, 0.02, 0.03, 0.04, 0.05), "holm") -> 0.05 0.08 0.09 0.09 0.09
    # by hand: 5 x 0.01 = 0.05; 4 x 0.02 = 0.08; 3 x 0.03 = 0.09; 2 x 0.04 = 0.08 -> 0.09;
    # 1 x 0.05 = 0.05 -> 0.09
    got = holm([0.01, 0.02, 0.03, 0.04, 0.05])
    np.testing.assert_allclose(got, [0.05, 0.08, 0.09, 0.09, 0.09], rtol=1e-12)
    # the input order is kept
    # sorted 0.01, 0.03, 0.05: 3 x 0.01 = 0.03; 2 x 0.03 = 0.06; 1 x 0.05 = 0.05 -> 0.06
    np.testing.assert_allclose(holm([0.05, 0.01, 0.03]), [0.06, 0.03, 0.06], rtol=1e-12)


def test_holm_hand_computed_with_ties_and_nan():
    p = [0.04, np.nan, 0.01, 0.04, 0.30, np.nan, 0.002]
    # family of m = 5: sorted 0.002, 0.01, 0.04, 0.04, 0.30
    # 5 x 0.002 = 0.01; 4 x 0.01 = 0.04; 3 x 0.04 = 0.12; 2 x 0.04 = 0.08 -> 0.12; 1 x 0.3 = 0.3
    expected = [0.12, np.nan, 0.04, 0.12, 0.30, np.nan, 0.01]
    got = holm(p)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    np.testing.assert_allclose(got, reference_holm(p), rtol=1e-12)
    # capped at 1
    np.testing.assert_array_equal(holm([0.5, 0.6, 0.9]), [1.0, 1.0, 1.0])
    assert holm([]).shape == (0,)
    assert np.isnan(holm([np.nan, np.nan])).all()
    np.testing.assert_array_equal(holm([0.0, 1.0]), [0.0, 1.0])


def test_holm_random_against_reference_monotone_and_in_range():
    # few families: statsmodels' multipletests calls gc.collect() on every call (~50 ms here)
    rng = np.random.default_rng(5)
    for _ in range(12):
        m = int(rng.integers(1, 30))
        p = np.round(rng.beta(0.5, 1.5, m), 2)  # rounding makes ties
        p[rng.random(m) < 0.1] = np.nan
        got = holm(p)
        np.testing.assert_allclose(got, reference_holm(p), rtol=1e-12, atol=0)
        ok = ~np.isnan(p)
        assert np.array_equal(np.isnan(got), ~ok)
        assert ((got[ok] >= p[ok]) & (got[ok] <= 1.0)).all()
        order = np.argsort(p[ok], kind="stable")
        assert (np.diff(got[ok][order]) >= 0).all()  # monotone in the raw p-values


def test_holm_bad_input():
    with pytest.raises(StatsError, match="within \\[0, 1\\]"):
        holm([0.2, 1.5])
    with pytest.raises(StatsError, match="within \\[0, 1\\]"):
        holm([-0.1])
    with pytest.raises(StatsError, match="one-dimensional"):
        holm([[0.1, 0.2]])
    with pytest.raises(StatsError, match="numeric"):
        holm(["a", "b"])


def test_adjust_family():
    table = pd.DataFrame(
        {
            "family": ["per-class", "arms", "per-class", "arms", "per-class", "arms"],
            "test": ["class 0", "A vs B", "class 1", "A vs C", "class 2", "B vs C"],
            "p_value": [0.01, 0.04, 0.02, np.nan, 0.03, 0.01],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    out = adjust_family(table)
    assert list(out.columns) == ["family", "test", "p_value", "p_adjusted", "adjustment"]
    assert list(out.index) == [10, 11, 12, 13, 14, 15]
    assert list(out["test"]) == list(table["test"])
    # per-class: 0.01, 0.02, 0.03 (m = 3) -> 0.03, 0.04, 0.04
    # arms: 0.04, NaN, 0.01 (m = 2) -> 0.04, NaN, 0.02
    np.testing.assert_allclose(
        out["p_adjusted"], [0.03, 0.04, 0.04, np.nan, 0.04, 0.02], rtol=1e-12
    )
    assert list(out["adjustment"]) == [
        "Holm within per-class (m = 3)",
        "Holm within arms (m = 2)",
        "Holm within per-class (m = 3)",
        "Holm within arms (m = 2)",
        "Holm within per-class (m = 3)",
        "Holm within arms (m = 2)",
    ]
    assert "p_adjusted" not in table.columns  # the input is not modified

    renamed = table.rename(columns={"p_value": "p", "family": "group"})
    again = adjust_family(renamed, p_column="p", family_column="group")
    np.testing.assert_array_equal(again["p_adjusted"], out["p_adjusted"])


def test_adjust_family_bad_input():
    table = pd.DataFrame({"family": ["a", None], "p_value": [0.1, 0.2]})
    with pytest.raises(StatsError, match="missing values"):
        adjust_family(table)
    with pytest.raises(StatsError, match="no column 'p'"):
        adjust_family(table, p_column="p")
    with pytest.raises(StatsError, match="DataFrame"):
        adjust_family({"family": ["a"], "p_value": [0.1]})
    with pytest.raises(StatsError, match="within \\[0, 1\\]"):
        adjust_family(pd.DataFrame({"family": ["a", "a"], "p_value": [0.1, 2.0]}))
