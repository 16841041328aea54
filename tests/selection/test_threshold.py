"""threshold_table: every threshold of one call equals its own deita_select run."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest

from skdeita import deita_select, threshold_table

from .._reference import reference_select


def _pool(n=300, d=8, seed=0):
    """Random rows with exact duplicates, near-duplicates and tied scores."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, d))
    if n >= 60:
        emb[10:20] = emb[0:10]  # exact duplicates
        emb[20:40] = emb[40:60] + 0.05 * rng.normal(size=(20, d))  # near-duplicates
    scores = rng.integers(1, 30, n).astype(float)  # many ties
    return emb, scores


def _separate(emb, scores, budget, threshold, **params):
    """One threshold through deita_select: what the table's row must say."""
    res = deita_select(emb, scores, data_budget=budget, diversity_threshold=threshold, **params)
    kept = set(res.selected.tolist())
    visited = res.order[: res.n_visited]
    blocked = np.array([i for i in visited if i not in kept], dtype=int)
    return {
        "kept": len(kept),
        "blocked": len(blocked),
        "over_budget": len(emb) - res.n_visited,
        "budget_reached": bool(res.budget_reached),
        "median_blocked_distance": float(np.median(res.distances[blocked]))
        if len(blocked)
        else math.nan,
        "mean_kept_score": float(np.mean(np.asarray(scores)[res.selected]))
        if len(kept)
        else math.nan,
    }


def _assert_rows_equal(table, emb, scores, budget, **params):
    for row in table.itertuples(index=False):
        expected = _separate(emb, scores, budget, row.threshold, **params)
        got = {k: getattr(row, k) for k in expected}
        for key, value in expected.items():
            if isinstance(value, float) and math.isnan(value):
                assert math.isnan(got[key]), (row.threshold, key)
            else:
                assert got[key] == value, (row.threshold, key, got[key], value)


@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
@pytest.mark.parametrize("budget", [5, 40, None])
def test_each_threshold_equals_a_separate_selection(neighbors, budget):
    emb, scores = _pool()
    thresholds = [0.0, 0.02, 0.1, 0.3, 0.6, 1.0, 1.4]
    result = threshold_table(
        emb, scores, data_budget=budget, thresholds=thresholds, neighbors=neighbors
    )
    assert result.table["threshold"].tolist() == thresholds
    _assert_rows_equal(result.table, emb, scores, result.budget, neighbors=neighbors)


@pytest.mark.parametrize(
    ("metric", "normalize", "thresholds"),
    [
        ("euclidean", False, [0.0, 1.0, 2.5, 4.0]),
        ("cityblock", True, [0.0, 0.5, 1.5, 3.0]),
        ("correlation", True, [0.0, 0.1, 0.5]),
    ],
)
@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_other_metrics_equal_separate_selections(metric, normalize, thresholds, neighbors):
    emb, scores = _pool(n=150)
    params = dict(distance_metric=metric, normalize_embeddings=normalize, neighbors=neighbors)
    result = threshold_table(emb, scores, data_budget=30, thresholds=thresholds, **params)
    _assert_rows_equal(result.table, emb, scores, 30, **params)


@pytest.mark.parametrize("block_size", [1, 7, 1024])
def test_block_size_changes_nothing(block_size):
    emb, scores = _pool(n=120)
    base = threshold_table(emb, scores, data_budget=25, thresholds=[0.05, 0.2, 0.5])
    other = threshold_table(
        emb, scores, data_budget=25, thresholds=[0.05, 0.2, 0.5], block_size=block_size
    )
    pd.testing.assert_frame_equal(base.table, other.table)


@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_counts_and_median_match_the_plain_loop(neighbors):
    emb, scores = _pool(n=120, seed=3)
    for threshold in (0.05, 0.3, 0.8):
        kept, seen = reference_select(emb, scores, 20, threshold, neighbors=neighbors)
        blocked = [d for i, d in seen.items() if i not in set(kept)]
        row = threshold_table(
            emb, scores, data_budget=20, thresholds=[threshold], neighbors=neighbors
        ).table.iloc[0]
        assert row.kept == len(kept)
        assert row.blocked == len(blocked)
        assert row.over_budget == len(emb) - len(seen)
        if blocked:
            assert row.median_blocked_distance == pytest.approx(np.median(blocked), abs=1e-12)


@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_reference_rows_block_for_every_threshold(neighbors):
    emb, scores = _pool(n=100)
    reference = emb[:5] + 0.01
    result = threshold_table(
        emb,
        scores,
        data_budget=15,
        thresholds=[0.0, 0.05, 0.4],
        neighbors=neighbors,
        reference=reference,
    )
    _assert_rows_equal(result.table, emb, scores, 15, neighbors=neighbors, reference=reference)


def test_alpaca_eval_embeddings_equal_separate_selections(alpaca_embeddings):
    emb = alpaca_embeddings[:2500]
    scores = np.random.default_rng(0).uniform(1, 36, len(emb)).round(1)
    for neighbors in ("selected", "dataset"):
        result = threshold_table(emb, scores, data_budget=400, neighbors=neighbors)
        _assert_rows_equal(result.table, emb, scores, 400, neighbors=neighbors)


class _CountingRows(list):
    """A sequence of rows that counts how often each row is read."""

    def __init__(self, rows):
        super().__init__(rows)
        self.reads = np.zeros(len(rows), dtype=int)

    def __getitem__(self, i):
        if isinstance(i, int | np.integer):
            self.reads[i] += 1
        return super().__getitem__(i)


def test_paper_rule_reads_each_row_once_for_all_thresholds():
    emb, scores = _pool(n=200)
    rows = _CountingRows(list(emb))
    threshold_table(rows, scores, data_budget=60, thresholds=np.linspace(0, 1.2, 12))
    # Validation reads every row once; the walk reads each visited row once
    # more, whatever the number of thresholds.
    assert rows.reads.max() <= 2


def test_dataframe_input_equals_arrays_and_counts_excluded_rows():
    emb, scores = _pool(n=80)
    frame = pd.DataFrame(
        {
            "embedding": list(emb),
            "evol_instruction_score": scores,
            "evol_response_score": np.ones(len(emb)),
        },
        index=[f"r{i}" for i in range(len(emb))],
    )
    frame.loc[["r3", "r7"], ["evol_instruction_score", "evol_response_score"]] = np.nan
    with pytest.raises(ValueError, match=r"Rows \['r3', 'r7'\] have no score"):
        threshold_table(frame, data_budget=10)
    with pytest.warns(UserWarning, match="2 rows have no score"):
        from_frame = threshold_table(frame, data_budget=10, missing_scores="drop")
    keep = np.setdiff1d(np.arange(len(emb)), [3, 7])
    from_arrays = threshold_table(emb[keep], scores[keep], data_budget=10)
    pd.testing.assert_frame_equal(from_frame.table, from_arrays.table)
    assert from_frame.n_excluded == 2 and from_frame.n_rows == len(keep)


def test_deita_and_distilabel_equivalents_in_each_metric():
    emb, scores = _pool(n=10)
    cos = threshold_table(emb, scores, thresholds=[0.1])
    assert cos.deita_threshold == pytest.approx(0.1)
    assert cos.distilabel_threshold == pytest.approx(0.9)
    euc = threshold_table(emb, scores, thresholds=[0.1], distance_metric="euclidean")
    assert euc.deita_threshold == pytest.approx(math.sqrt(0.2))
    assert euc.distilabel_threshold == pytest.approx(math.sqrt(1.8))
    sq = threshold_table(emb, scores, thresholds=[0.1], distance_metric="sqeuclidean")
    assert (sq.deita_threshold, sq.distilabel_threshold) == pytest.approx((0.2, 1.8))
    raw = threshold_table(
        emb, scores, thresholds=[0.1], distance_metric="euclidean", normalize_embeddings=False
    )
    assert raw.deita_threshold is None and raw.distilabel_threshold is None
    assert any("no exact equivalent" in n for n in raw.notes)
    l1 = threshold_table(emb, scores, thresholds=[0.1], distance_metric="manhattan")
    assert l1.deita_threshold is None and l1.distilabel_threshold == 0.9


def test_euclidean_equivalent_selects_what_cosine_0_1_selects():
    emb, scores = _pool(n=300, seed=5)
    euclid = threshold_table(emb, scores, data_budget=50, distance_metric="euclidean")
    cosine = threshold_table(emb, scores, data_budget=50, thresholds=[0.1])
    # Unit vectors: |a - b|^2 = 2 (1 - cos), so sqrt(0.2) keeps what 0.1 keeps.
    row = euclid.table[np.isclose(euclid.table.threshold, euclid.deita_threshold)].iloc[0]
    assert row.kept == cosine.table.kept[0]
    assert row.blocked == cosine.table.blocked[0]


def test_default_grid_holds_both_equivalents_and_the_chosen_threshold():
    emb, scores = _pool(n=50)
    result = threshold_table(emb, scores, data_budget=10, diversity_threshold=0.33)
    t = result.table.threshold.to_numpy()
    assert np.all(np.diff(t) > 0)
    for value in (0.1, 0.9, 0.33):
        assert np.isclose(t, value).any()
    text = result.to_text()
    assert "chosen" in text and "DEITA 0.9 similarity" in text and "distilabel default" in text


def test_default_grid_without_equivalent_spans_nearest_row_distances():
    emb, scores = _pool(n=60)
    result = threshold_table(
        emb, scores, data_budget=10, distance_metric="euclidean", normalize_embeddings=False
    )
    t = result.table.threshold.to_numpy()
    assert len(t) >= 5 and t[0] >= 0
    # The grid spreads over the scale of the data's nearest-row distances.
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    assert t.max() <= d.min(axis=1).max() + 1e-9


@pytest.mark.parametrize(
    ("thresholds", "message"),
    [
        ([], "non-empty"),
        ([0.1, -1.0], "-1.0"),
        ([float("nan")], "nan"),
        ([True], "True"),
        (["0.1"], "'0.1'"),
    ],
)
def test_bad_thresholds_name_the_parameter(thresholds, message):
    emb, scores = _pool(n=10)
    with pytest.raises(ValueError, match="thresholds") as exc:
        threshold_table(emb, scores, thresholds=thresholds)
    assert message in str(exc.value)


def test_scores_go_with_arrays_not_with_frames():
    emb, scores = _pool(n=10)
    with pytest.raises(ValueError, match="scores is required"):
        threshold_table(emb)
    frame = pd.DataFrame({"embedding": list(emb), "evol_instruction_score": scores})
    with pytest.raises(ValueError, match="scores must be None"):
        threshold_table(frame, scores, response_score_col=None)


def test_no_budget_warning_is_raised():
    emb, scores = _pool(n=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = threshold_table(emb, scores, data_budget=30, thresholds=[1.5])
    assert not result.table.budget_reached[0]
