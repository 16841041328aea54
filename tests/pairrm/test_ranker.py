"""PairRMRanker against llm-blender's own Blender.rank on a tiny real ranker."""

from __future__ import annotations

import copy
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError

from skdeita import ModelNotFoundError, PairRMRanker, preference_pairs
from skdeita.pairrm._preference import order_by_ranks

pytestmark = pytest.mark.pairrm

WORDS = (
    "the sea wind night poem bread flour water salt sleep tips list tuple python "
    "paris tokyo france japan numbers order morning answer helpful honest"
).split()


def random_text(rng, n_words):
    return " ".join(rng.choice(WORDS, n_words))


def make_rows(n_rows, n_cands, seed=0, words=(3, 12)):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "input": [random_text(rng, rng.integers(*words)) for _ in range(n_rows)],
            "candidates": [
                [random_text(rng, rng.integers(*words)) for _ in range(n_cands)]
                for _ in range(n_rows)
            ],
        },
        index=[f"row{i}" for i in range(n_rows)],
    )


@pytest.fixture(scope="module")
def ranker(tiny_ranker_dir):
    frame = make_rows(1, 2)
    return PairRMRanker(
        str(tiny_ranker_dir), return_scores=True, device="cpu", show_progress_bar=False
    ).fit(frame)


def blender_rank(blender, df, **kwargs):
    """llm-blender's scores and ranks, row by row (batch_size=1)."""
    scores = blender.rank(
        df["input"].tolist(), df["candidates"].tolist(), return_scores=True, batch_size=1, **kwargs
    )
    ranks = blender.rank(df["input"].tolist(), df["candidates"].tolist(), batch_size=1, **kwargs)
    return scores, ranks


@pytest.mark.parametrize("n_cands", [1, 2, 3, 4, 5, 6])
def test_ranks_and_scores_equal_llm_blender(ranker, reference_blender, n_cands):
    df = make_rows(4, n_cands, seed=n_cands)
    out = ranker.transform(df)
    scores, ranks = blender_rank(reference_blender, df)
    assert out["ranks"].tolist() == ranks.tolist()
    np.testing.assert_allclose(np.stack(out["scores"]), scores, rtol=1e-4, atol=1e-3)


def test_short_rows_equal_llm_blender_default_batching(ranker, reference_blender):
    df = make_rows(10, 3, seed=11)  # nothing truncated: batching cannot matter
    ranks = reference_blender.rank(df["input"].tolist(), df["candidates"].tolist())
    assert ranker.transform(df)["ranks"].tolist() == ranks.tolist()


def test_identical_candidates_tie_exactly_like_llm_blender(ranker, reference_blender):
    df = pd.DataFrame(
        {
            "input": ["write a poem about the sea"] * 2,
            "candidates": [["the sea", "night wind", "the sea"], ["a", "a", "a"]],
        }
    )
    out = ranker.transform(df)
    _, ranks = blender_rank(reference_blender, df)
    assert out["ranks"].tolist() == ranks.tolist()
    assert out["ranks"].iloc[1] == [1, 1, 1]
    s = out["scores"].iloc[0]
    assert s[0] == s[2]


def test_texts_past_truncation_limits_equal_llm_blender(ranker, reference_blender):
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {
            "input": [random_text(rng, 900), random_text(rng, 20)],
            "candidates": [
                [random_text(rng, 500), random_text(rng, 30)],
                [random_text(rng, 700), random_text(rng, 650)],
            ],
        }
    )
    out = ranker.transform(df)
    scores, ranks = blender_rank(reference_blender, df)
    assert out["ranks"].tolist() == ranks.tolist()
    np.testing.assert_allclose(np.stack(out["scores"]), scores, rtol=1e-4, atol=1e-3)


def test_rows_with_different_candidate_counts(ranker, reference_blender):
    parts = [make_rows(2, c, seed=20 + c) for c in (2, 5, 3)]
    df = pd.concat(parts).set_axis([f"r{i}" for i in range(6)])
    out = ranker.transform(df)
    expected = sum((blender_rank(reference_blender, p)[1].tolist() for p in parts), [])
    assert out["ranks"].tolist() == expected
    assert out.index.tolist() == df.index.tolist()


def test_ranked_candidates_follow_a_stable_argsort_of_ranks(ranker):
    out = ranker.transform(make_rows(6, 4, seed=3))
    for cands, ranks, ranked in zip(
        make_rows(6, 4, seed=3)["candidates"], out["ranks"], out["ranked_candidates"], strict=True
    ):
        assert ranked == [cands[i] for i in np.argsort(ranks, kind="stable")]


def test_order_by_ranks_fixes_distilabels_inverse_permutation():
    assert order_by_ranks(["a", "b", "c"], [2, 3, 1]) == ["c", "a", "b"]
    assert order_by_ranks(["fine", "good", "bad"], [2, 1, 3]) == ["good", "fine", "bad"]
    assert order_by_ranks(["x", "y", "z"], [1, 1, 3]) == ["x", "y", "z"]


def test_instructions_are_prepended_like_llm_blender(ranker, reference_blender):
    df = make_rows(3, 3, seed=8)
    prefixed = PairRMRanker(
        ranker.model, instructions="answer well: ", return_scores=True, show_progress_bar=False
    ).fit(df)
    out = prefixed.transform(df)
    _, ranks = blender_rank(reference_blender, df, instructions=["answer well: "] * 3)
    assert out["ranks"].tolist() == ranks.tolist()


def test_compare_equals_llm_blender_compare(ranker, reference_blender):
    df = make_rows(4, 2, seed=9)
    a = [c[0] for c in df["candidates"]]
    b = [c[1] for c in df["candidates"]]
    ours = ranker.compare(df["input"].tolist(), a, b, return_logits=True)
    theirs = reference_blender.compare(df["input"].tolist(), a, b, return_logits=True, batch_size=1)
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-3)
    probs = ranker.compare(df["input"].tolist(), a, b)
    np.testing.assert_array_equal(probs > 0.5, np.asarray(theirs) > 0)


def test_preference_pairs_take_best_and_worst(ranker):
    out = ranker.transform(make_rows(3, 4, seed=12))
    pairs = preference_pairs(out)
    assert pairs.index.tolist() == out.index.tolist()
    for label, row in pairs.iterrows():
        assert row["chosen"] == out.loc[label, "ranked_candidates"][0]
        assert row["rejected"] == out.loc[label, "ranked_candidates"][-1]
        assert row["chosen_rank"] == 1


def test_preference_pairs_warn_about_rows_without_a_pair():
    ranked = pd.DataFrame(
        {"input": ["a", "b"], "ranks": [[1], [1, 1]], "ranked_candidates": [["x"], ["y", "y"]]}
    )
    with pytest.warns(UserWarning, match="2 rows give no preference pair"):
        assert len(preference_pairs(ranked)) == 0


def test_caller_frame_is_not_mutated(ranker):
    df = make_rows(3, 3)
    before = copy.deepcopy(df)
    ranker.transform(df)
    pd.testing.assert_frame_equal(df, before)


def test_pickle_holds_no_weights_and_reloads(ranker):
    df = make_rows(2, 3, seed=4)
    blob = pickle.dumps(ranker)
    assert len(blob) < 20_000
    again = pickle.loads(blob)
    assert again.transform(df)["ranks"].tolist() == ranker.transform(df)["ranks"].tolist()


def test_pickle_with_weights_ranks_the_same(ranker):
    df = make_rows(3, 3, seed=13)
    heavy = PairRMRanker(ranker.model, store_weights_in_pickle=True, show_progress_bar=False)
    heavy = pickle.loads(pickle.dumps(heavy.fit(df)))
    assert heavy.__dict__.get("_pinned_model") is not None  # no reload
    assert heavy.transform(df)["ranks"].tolist() == ranker.transform(df)["ranks"].tolist()


def test_threads_sharing_the_model_get_the_same_results(ranker):
    from concurrent.futures import ThreadPoolExecutor

    frames = [make_rows(3, 4, seed=30 + k) for k in range(4)]
    alone = [ranker.transform(f)["scores"].tolist() for f in frames]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda f: ranker.transform(f)["scores"].tolist(), frames))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_allclose(np.concatenate(a), np.concatenate(b), rtol=1e-5, atol=1e-3)


def test_fp16_and_dtype_are_exclusive(tiny_ranker_dir):
    with pytest.raises(ValueError, match="fp16 or dtype, not both"):
        PairRMRanker(str(tiny_ranker_dir), fp16=False, dtype="float32").fit(make_rows(1, 2))


def test_bfloat16_on_cpu(tiny_ranker_dir):
    low = PairRMRanker(str(tiny_ranker_dir), dtype="bfloat16", show_progress_bar=False)
    out = low.fit_transform(make_rows(2, 3, seed=14))
    assert low.dtype_ == "bfloat16" and low.device_ == "cpu"
    assert all(sorted(r) in ([1, 2, 3], [1, 1, 3], [1, 2, 2], [1, 1, 1]) for r in out["ranks"])


def test_transform_before_fit_is_not_fitted(tiny_ranker_dir):
    with pytest.raises(NotFittedError):
        PairRMRanker(str(tiny_ranker_dir)).transform(make_rows(1, 2))


def test_feature_names_match_output(ranker):
    df = make_rows(2, 2)
    assert ranker.get_feature_names_out(df.columns).tolist() == list(ranker.transform(df).columns)


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("cell", [[], None, np.nan])
def test_empty_or_missing_candidates_name_the_row(ranker, cell):
    df = make_rows(3, 2)
    df["candidates"] = pd.Series([["a", "b"], cell, ["c"]], index=df.index, dtype=object)
    with pytest.raises(
        ValueError, match=r"Rows \['row1'\] have a missing input or a missing/empty"
    ):
        ranker.transform(df)


def test_invalid_rows_can_be_skipped_with_a_warning(ranker):
    df = make_rows(3, 2)
    df["candidates"] = pd.Series([["a", "b"], [], ["c", "d"]], index=df.index, dtype=object)
    skipping = PairRMRanker(ranker.model, on_invalid="skip", show_progress_bar=False).fit(df)
    with pytest.warns(UserWarning, match=r"1 rows are left unranked.*\['row1'\]"):
        out = skipping.transform(df)
    assert out.loc["row1", "ranks"] is None
    assert len(out["ranks"].iloc[0]) == 2


@pytest.mark.parametrize("cell", ["just a string", ["a", None], ["a", 3]])
def test_candidates_must_be_lists_of_strings(ranker, cell):
    df = make_rows(2, 2)
    df["candidates"] = pd.Series([["a", "b"], cell], index=df.index, dtype=object)
    with pytest.raises(TypeError, match=r"rows \['row1'\] hold something else"):
        ranker.transform(df)


def test_missing_columns_are_listed(ranker):
    with pytest.raises(ValueError, match=r"'candidates' \(candidates_col\).*Available columns"):
        ranker.transform(pd.DataFrame({"input": ["a"], "responses": [["x"]]}))


def test_ranker_dir_without_weights_names_what_is_missing(tiny_ranker_dir, tmp_path):
    broken = tmp_path / "ranker"
    shutil.copytree(tiny_ranker_dir, broken)
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelNotFoundError, match="missing model.safetensors or pytorch_model.bin"):
        PairRMRanker(str(broken)).fit(make_rows(1, 2))


def test_hub_name_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="not available offline.*`hf download llm-blender"):
        PairRMRanker().fit(make_rows(1, 2))


def test_identical_rows_get_identical_bits_and_each_pair_is_ranked_once(ranker, monkeypatch):
    model = ranker._get_model()
    pairs_seen: list[int] = []
    real = type(model)._score_batch

    def counting(self, pairs):
        pairs_seen.append(len(pairs))
        return real(self, pairs)

    monkeypatch.setattr(type(model), "_score_batch", counting)
    base = make_rows(4, 3, seed=21)
    pool = pd.concat([base, base.iloc[[2, 0]], base.iloc[[2]]])
    pool.index = [f"p{i}" for i in range(len(pool))]
    est = PairRMRanker(ranker.model, return_scores=True, batch_size=2, show_progress_bar=False)
    out = est.fit(pool).transform(pool)
    scores = out["scores"].tolist()
    assert scores[4] == scores[2] == scores[6] and scores[5] == scores[0]
    assert sum(pairs_seen) == 4 * 3 * 2  # each distinct ordered pair once


def test_cache_serves_a_second_run_and_counts_the_rows(ranker, tmp_path):
    df = make_rows(5, 3, seed=41)
    first = PairRMRanker(ranker.model, cache=tmp_path, return_scores=True, show_progress_bar=False)
    out1 = first.fit(df).transform(df)
    assert first.cache_stats_["rows_from_cache"] == 0
    assert list(tmp_path.glob("skdeita-pairrm/*/*.rec"))
    more = pd.concat([df, make_rows(2, 4, seed=42)])
    second = PairRMRanker(ranker.model, cache=tmp_path, return_scores=True, show_progress_bar=False)
    out2 = second.fit(more).transform(more)
    assert second.cache_stats_["rows_from_cache"] == 5 and second.cache_stats_["rows"] == 7
    assert second.cache_stats_["units_computed"] == 2 * 4 * 3  # only the new rows' pairs
    assert out2["scores"].iloc[:5].tolist() == out1["scores"].tolist()  # the stored bits
