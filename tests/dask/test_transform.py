"""Model-backed estimators on a Dask DataFrame: lazy, per partition, the
model loaded once per worker process, results equal to pandas."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

from skdeita import DeitaSelector, EmbeddingTransformer
from skdeita.utils import _model_cache

pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("sentence_transformers")

TEXTS = [
    "How do I sort a list in Python?",
    "Bake bread at home with a cast-iron pot.",
    "Explain the difference between TCP and UDP.",
    "Write a haiku about autumn rain.",
    "What is the capital of Australia?",
    "Summarise the plot of Hamlet in two sentences.",
]


def text_pool(n=40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "instruction": [f"{TEXTS[i % 6]} (variant {i})" for i in range(n)],
            "response": [TEXTS[(i * 5 + 1) % 6] for i in range(n)],
            "evol_instruction_score": rng.integers(1, 6, n).astype(float),
            "evol_response_score": rng.integers(1, 4, n).astype(float),
        },
        index=pd.RangeIndex(1000, 1000 + n),
    )


def _record_and_return(piece, folder):
    """A partition loader that leaves a file behind each time it runs."""
    import os
    import uuid

    open(os.path.join(folder, uuid.uuid4().hex), "w").close()
    return piece


def counted(frame: pd.DataFrame, sizes, folder):
    """Partitions of these sizes (Dask's string conversion on: text columns are
    string[pyarrow]); each computation of a partition leaves a file in folder."""
    bounds = np.cumsum([0, *sizes])
    pieces = [frame.iloc[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    return dd.from_map(_record_and_return, pieces, folder=str(folder), meta=frame.iloc[:0])


def loaded_models(client) -> dict:
    def ids():
        return [(key[0], id(entry[1])) for key, entry in _model_cache._LOADED.items()]

    return client.run(ids)


def test_embeddings_equal_pandas_lazily_with_one_model_per_worker(client, tmp_path):
    pool = text_pool()
    ddf = counted(pool, [3, 0, 25, 12], tmp_path)
    assert pd.api.types.is_string_dtype(ddf._meta["instruction"].dtype)
    assert ddf._meta["instruction"].dtype != object  # string[pyarrow], accepted
    emb = EmbeddingTransformer(template="{instruction}\n\n{response}", show_progress_bar=False)
    out = emb.fit_transform(ddf)
    # Lazy: no partition computed, same partitions, meta from _meta.
    assert list(tmp_path.iterdir()) == []
    assert out.npartitions == ddf.npartitions
    assert list(out.columns) == [*pool.columns, "embedding"]
    assert out._meta["embedding"].dtype == object
    assert emb.embedding_dim_ == 384
    # The task graph holds the estimator without its weights.
    assert len(pickle.dumps(dict(out.__dask_graph__()))) < 1_000_000

    got = out.compute()
    assert len(list(tmp_path.iterdir())) == ddf.npartitions
    expected = EmbeddingTransformer(
        template="{instruction}\n\n{response}", show_progress_bar=False
    ).fit_transform(ddf.compute())
    assert got.index.equals(expected.index)
    np.testing.assert_allclose(
        np.stack(got["embedding"]), np.stack(expected["embedding"]), atol=1e-5
    )
    pd.testing.assert_frame_equal(got.drop(columns="embedding"), pool, check_dtype=False)

    # Once per worker process: a second transform reuses each worker's model.
    before = loaded_models(client)
    assert all(len([k for k, _ in v if k == "EmbeddingTransformer"]) == 1 for v in before.values())
    emb.transform(ddf).compute()
    assert loaded_models(client) == before


def test_pipeline_on_dask_equals_pandas(client):
    from sklearn.pipeline import make_pipeline

    pool = text_pool(30)
    ddf = dd.from_pandas(pool, npartitions=3)

    def pipe():
        return make_pipeline(
            EmbeddingTransformer(template="{instruction}", show_progress_bar=False),
            DeitaSelector(8, diversity_threshold=0.05),
        )

    got = pipe().fit_transform(ddf).compute()
    expected = pipe().fit_transform(ddf.compute())
    assert got.index.tolist() == expected.index.tolist()
    np.testing.assert_allclose(
        got["nearest_neighbor_distance"], expected["nearest_neighbor_distance"], atol=1e-5
    )


def test_wide_output_and_series_input(client):
    pool = text_pool(10)
    ddf = dd.from_pandas(pool, npartitions=2)
    emb = EmbeddingTransformer(text_col="instruction", output="wide", show_progress_bar=False)
    out = emb.fit_transform(ddf)
    assert out.columns[-1] == "embedding_383"
    assert out._meta["embedding_000"].dtype == np.float32
    got = out.compute()
    np.testing.assert_allclose(
        got.iloc[:, -384:].to_numpy(),
        emb.transform(pool).iloc[:, -384:].to_numpy(),
        atol=1e-5,
    )
    series = EmbeddingTransformer(show_progress_bar=False).fit_transform(ddf["instruction"])
    assert list(series.columns) == ["instruction", "embedding"]
    assert len(series.compute()) == 10


def test_bad_columns_fail_before_any_work(client):
    ddf = dd.from_pandas(text_pool(10), npartitions=2)
    with pytest.raises(ValueError, match="not in X"):
        EmbeddingTransformer(text_col="nope").fit(ddf)


def test_every_model_backed_estimator_gets_the_dask_path(client, tiny_ranker_dir, tiny_scorer_dir):
    from skdeita import ComplexityScorer, PairRMRanker

    rng = np.random.default_rng(0)
    words = ["alpha", "beta", "gamma", "delta", "sort", "list", "bread", "rain"]

    def text(k):
        return " ".join(rng.choice(words, k))

    rows = pd.DataFrame(
        {
            "input": [text(5) for _ in range(9)],
            "candidates": [[text(4), text(6), text(3)] for _ in range(9)],
            "instruction": [text(6) for _ in range(9)],
            "response": [text(8) for _ in range(9)],
        },
        index=[f"r{i}" for i in range(9)],
    )
    import dask

    with dask.config.set({"dataframe.convert-string": False}):  # keeps the candidate lists
        ddf = dd.from_pandas(rows, npartitions=3)
    for est in (
        PairRMRanker(str(tiny_ranker_dir), return_scores=True, device="cpu"),
        ComplexityScorer(str(tiny_scorer_dir), device="cpu"),
    ):
        est.set_params(show_progress_bar=False)
        out = est.fit_transform(ddf)
        assert out.npartitions == 3
        got, expected = out.compute(), est.transform(ddf.compute())
        assert got.index.equals(expected.index)
        for col in est._added_columns():
            assert out._meta[col].dtype == expected[col].dtype, col
            a = np.concatenate([np.ravel(v) for v in got[col]])
            b = np.concatenate([np.ravel(v) for v in expected[col]])
            if a.dtype.kind in "iuf":
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # batch padding
            else:
                assert a.tolist() == b.tolist(), col


def test_identical_rows_in_different_partitions_get_identical_bits(client, tmp_path):
    pool = text_pool(12)
    for row in (7, 11):  # copies of row 0 in the second and third partitions
        pool.iloc[row, :2] = pool.iloc[0, :2]
    ddf = counted(pool, [4, 4, 4], tmp_path)
    emb = EmbeddingTransformer(
        template="{instruction}\n\n{response}", batch_size=3, show_progress_bar=False
    )
    out = emb.fit_transform(ddf).compute()
    vectors = np.stack(out["embedding"])
    assert np.array_equal(vectors[0], vectors[7]) and np.array_equal(vectors[0], vectors[11])
    # Each partition was read once for the hashing pass and the transform together.
    assert len(list(tmp_path.iterdir())) == 3
    local = np.stack(emb.transform(pool)["embedding"])
    np.testing.assert_allclose(vectors, local, atol=1e-5)


def test_keys_shared_by_partitions_are_computed_alone(monkeypatch):
    from skdeita.utils import _dask

    pool = text_pool(8)
    emb = EmbeddingTransformer(template="{instruction}", batch_size=4, show_progress_bar=False)
    emb.fit(pool)
    parts = [pool.iloc[:4], pool.iloc[4:]]
    keys = [_dask._partition_keys(p, emb) for p in parts]
    assert len(_dask._shared_keys(*keys)) == 0
    parts[1] = pd.concat([parts[1], pool.iloc[[1]]])  # row 1 is now in both partitions
    keys = [_dask._partition_keys(p, emb) for p in parts]
    shared = _dask._shared_keys(*keys)
    assert len(shared) == 1
    seen = []
    real = EmbeddingTransformer._compute_units

    def spy(self, texts, positions, isolated):
        seen.append([texts[p] for p, alone in zip(positions, isolated, strict=True) if alone])
        return real(self, texts, positions, isolated)

    monkeypatch.setattr(EmbeddingTransformer, "_compute_units", spy)
    _dask._transform_partition(parts[0], emb, shared)
    assert seen == [[pool["instruction"].iloc[1]]]


def test_a_killed_worker_loses_only_unwritten_batches_and_the_retry_equals_pandas(
    tiny_scorer_dir, tmp_path, caplog
):
    import logging
    import os
    import signal
    import time
    import warnings

    import distributed

    from skdeita import ComplexityScorer
    from skdeita.utils._disk_cache import ResultStore

    words = "sort list bread ocean poem python paris sleep tips wind night numbers".split()
    rng = np.random.default_rng(3)
    n = 1600
    rows = pd.DataFrame(
        {"instruction": [" ".join(rng.choice(words, 3 + i % 7)) + f" {i}" for i in range(n)]},
        index=pd.RangeIndex(n),
    )
    cache = tmp_path / "cache"
    est = ComplexityScorer(
        str(tiny_scorer_dir), batch_size=1, cache=cache, device="cpu", show_progress_bar=False
    )
    _, prompts = est._check_input(rows)
    keys = est._units(prompts).keys
    store = ResultStore.from_param(
        cache, est._cache_identity(), "scores", width=1, dtype=np.float64
    )

    def cached(part=None) -> int:
        """Rows in the cache now: of partition ``part`` (0 or 1), or of both."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a record cut by the kill is the run's to report
            found = store.lookup(keys)[0]
        half = n // 2
        return int(found.sum() if part is None else found[part * half : (part + 1) * half].sum())

    def running(client) -> dict[int, str]:
        """Partition -> the worker running its transform task."""
        return {
            int(key[1]): worker
            for worker, tasks in client.processing().items()
            for key in tasks
            if isinstance(key, tuple)
            and "complexityscorer" in str(key[0])
            and "-keys-" not in str(key[0])
        }

    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=50,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        from skdeita.utils._dask import forward_logs

        forward_logs(client)
        caplog.set_level(logging.INFO, logger="skdeita")
        ddf = dd.from_pandas(rows, npartitions=2)
        future = client.compute(est.fit(ddf).transform(ddf))
        deadline = time.monotonic() + 300
        # Watch the cache folder, not the clock: kill the worker of a partition
        # that has checkpointed some rows and is still running.
        while True:
            assert not future.done() and time.monotonic() < deadline
            target = [(p, w) for p, w in running(client).items() if 30 <= cached(p) < n // 2]
            if target:
                break
            time.sleep(0.05)
        part, worker = target[0]
        victim = client.run(os.getpid, workers=[worker])[worker]
        os.kill(victim, signal.SIGKILL)
        at_kill = cached()
        got = future.result(timeout=900)
    assert 30 <= at_kill < n and cached() == n
    # The retried partition resumed: some of its rows came from the cache.
    resumed = [r.getMessage() for r in caplog.records if "rows from cache" in r.getMessage()]
    assert any(not m.startswith("ComplexityScorer: 0 of") for m in resumed), resumed
    expected = est.transform(rows)  # everything from the cache now: the same bits
    got = got.sort_index()
    np.testing.assert_array_equal(got["evol_instruction_score"], expected["evol_instruction_score"])
    whole = ComplexityScorer(str(tiny_scorer_dir), device="cpu", show_progress_bar=False)
    np.testing.assert_allclose(
        got["evol_instruction_score"],
        whole.fit_transform(rows)["evol_instruction_score"],
        atol=1e-4,  # batch shapes differ: float noise only
    )
