"""DeitaSelector on a Dask DataFrame equals the pandas selection exactly."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

from skdeita import BudgetNotReachedWarning, DeitaSelector

from .conftest import make_pool, split

pytest.importorskip("distributed")
dd = pytest.importorskip("dask.dataframe")

SIZES = [7, 0, 311, 1, 0, 180, 101]  # very different sizes, empty partitions


def pandas_and_dask(selector: DeitaSelector, ddf):
    """Both selections, warnings recorded, fitted selectors returned too."""
    frame = ddf.compute()
    with warnings.catch_warnings(record=True) as w_pd:
        warnings.simplefilter("always")
        ref_sel = DeitaSelector(**selector.get_params())
        expected = ref_sel.fit_transform(frame)
    with warnings.catch_warnings(record=True) as w_dd:
        warnings.simplefilter("always")
        out = selector.fit_transform(ddf)
    assert isinstance(out, dd.DataFrame)
    got = out.compute()
    assert [str(w.message) for w in w_dd] == [str(w.message) for w in w_pd]
    return expected, got, ref_sel


def assert_same(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    # Same labels in the same order, same columns, bit-identical numbers.
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


@pytest.mark.parametrize(
    "params",
    [
        dict(data_budget=60, diversity_threshold=0.05),
        dict(data_budget=400, diversity_threshold=0.02),  # larger than any partition
        dict(data_budget=0.1, diversity_threshold=0.0),  # a fraction, ties only
        dict(data_budget=None, diversity_threshold=0.03),  # every row visited
        dict(data_budget=40, distance_metric="euclidean", normalize_embeddings=False,
             diversity_threshold=0.5),
        dict(data_budget=50, output="annotate", diversity_threshold=0.05),
        dict(data_budget=30, neighbors="dataset", diversity_threshold=0.02),
        dict(data_budget=25, neighbors="dataset", output="annotate", diversity_threshold=0.02),
    ],
)  # fmt: skip
def test_selection_equals_pandas(client, params):
    ddf = split(make_pool(), SIZES)
    selector = DeitaSelector(show_progress_bar=False, **params)
    expected, got, ref = pandas_and_dask(selector, ddf)
    assert_same(expected, got)
    assert selector.selected_index_.equals(ref.selected_index_)
    for name in ("n_selected_", "budget_", "budget_reached_", "n_visited_"):
        assert getattr(selector, name) == getattr(ref, name), name
    if params.get("output") == "annotate":
        assert got.index.equals(ddf.compute().index)


def test_many_stages_and_blocks_give_the_same_selection(client):
    import dask

    pool = make_pool(n=3000, seed=3)
    ddf = split(pool, [1500, 0, 900, 600])
    # 128-row blocks and 512-row stages: the walk crosses many of both.
    config = {"skdeita.selection.block-bytes": 4096, "skdeita.selection.stage-bytes": 16384}
    for params in (
        dict(data_budget=None, diversity_threshold=0.03),
        dict(data_budget=700, diversity_threshold=0.01, block_size=100),
    ):
        with dask.config.set(config):
            expected, got, _ = pandas_and_dask(DeitaSelector(**params), ddf)
        assert_same(expected, got)


def test_reference_missing_scores_and_float64_lists(client):
    pool = make_pool(n=300, seed=5)
    pool["embedding"] = [v.astype(np.float64).tolist() for v in pool["embedding"]]
    pool.loc[pool.index[[3, 50, 51]], ["evol_instruction_score", "evol_response_score"]] = np.nan
    pool.loc[pool.index[[7, 8]], "evol_response_score"] = np.nan  # one score: fallback
    reference = np.stack(pool["embedding"].iloc[:5].map(np.asarray).tolist()) + 0.01
    ddf = split(pool, [100, 0, 150, 50])
    selector = DeitaSelector(
        40, diversity_threshold=0.05, reference=reference, missing_scores="drop"
    )
    expected, got, _ = pandas_and_dask(selector, ddf)
    assert_same(expected, got)
    selector.set_params(output="annotate", reference=pool.iloc[:3][["embedding"]])
    expected, got, _ = pandas_and_dask(selector, ddf)
    assert_same(expected, got)


def test_fit_then_transform_and_budget_warning(client):
    ddf = split(make_pool(n=200), [100, 100])
    with pytest.warns(BudgetNotReachedWarning):
        selector = DeitaSelector(500, diversity_threshold=0.2).fit(ddf)  # unreachable budget
    ref = DeitaSelector(500, diversity_threshold=0.2)
    with pytest.warns(BudgetNotReachedWarning, match=r"kept \d+ of 200 rows"):
        out = selector.transform(ddf).compute()
    with pytest.warns(BudgetNotReachedWarning):
        assert_same(ref.fit_transform(ddf.compute()), out)
    assert not selector.budget_reached_
    assert out.index.equals(selector.selected_index_)


def test_parquet_dataset_equals_pandas(client, tmp_path):
    pool = make_pool(n=500, seed=7, index_start=0)
    bounds = np.cumsum([0, 240, 0, 9, 251])
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pool.iloc[a:b].to_parquet(tmp_path / f"part.{k}.parquet")  # list<float> column
    ddf = dd.read_parquet(sorted(tmp_path.glob("*.parquet")))  # default string conversion
    assert ddf.npartitions == 4
    expected, got, _ = pandas_and_dask(DeitaSelector(80, diversity_threshold=0.05), ddf)
    assert_same(expected, got)


def test_missing_scores_raise_like_pandas(client):
    pool = make_pool(n=100)
    pool.loc[[150, 170], ["evol_instruction_score", "evol_response_score"]] = np.nan
    ddf = split(pool, [30, 40, 30])
    with pytest.raises(ValueError, match=r"Rows \[150, 170\] have no score .* \(2 rows in all\)"):
        DeitaSelector(10).fit(ddf)


def test_printed_vectors_are_a_clear_error(client):
    pool = make_pool(n=20)
    ddf = dd.from_pandas(pool, npartitions=2)  # Dask's string conversion: arrays -> text
    with pytest.raises(TypeError, match=r"printed arrays.*Parquet list<float32>"):
        DeitaSelector(5).fit(ddf)


def test_fit_transform_is_lazy_in_its_output(client):
    ddf = split(make_pool(n=200), [120, 80])
    out = DeitaSelector(20, output="annotate").fit_transform(ddf)
    assert out.npartitions == ddf.npartitions
    assert list(out.columns) == [*ddf.columns, *DeitaSelector(output="annotate")._added_columns()]


_CLIENT_SCRIPT = """
import json, sys, warnings
import dask.dataframe as dd
from distributed import Client
from skdeita import DeitaSelector

def status(field):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith(field))

client = Client(sys.argv[1])
ddf = dd.read_parquet(sys.argv[2:])
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")  # the high-water mark from here: the selection only
before = status("VmRSS")
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    sel = DeitaSelector(10_000, diversity_threshold=0.1, show_progress_bar=False).fit(ddf)
print(json.dumps({"extra": status("VmHWM") - before, "visited": sel.n_visited_,
                  "index": sel.selected_index_.tolist()}))
client.close()
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self")
def test_million_rows_from_parquet_exact_with_bounded_client_memory(client, tmp_path):
    """1M x 64 float32 (256 MB of embeddings): the client's extra peak stays
    under a quarter of the matrix (64 MB) and the selection equals pandas'."""
    n, dim, per_file = 1_000_000, 64, 125_000
    rng = np.random.default_rng(0)
    centers = rng.standard_normal((n // 50, dim), dtype=np.float32)
    files = []
    for k in range(n // per_file):
        emb = centers[rng.integers(0, len(centers), per_file)]
        emb += 0.2 * rng.standard_normal((per_file, dim), dtype=np.float32)
        frame = pd.DataFrame(
            {
                "embedding": list(emb),
                "evol_instruction_score": rng.integers(1, 6, per_file).astype(float),
                "evol_response_score": rng.integers(1, 6, per_file).astype(float),
            },
            index=pd.RangeIndex(k * per_file, (k + 1) * per_file),
        )
        files.append(str(tmp_path / f"part.{k}.parquet"))
        frame.to_parquet(files[-1])
        del emb, frame
    run = subprocess.run(
        [sys.executable, "-c", _CLIENT_SCRIPT, client.scheduler.address, *files],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["extra"] < 64 * 2**20, got["extra"] / 2**20
    pool = pd.concat([pd.read_parquet(f) for f in files])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = DeitaSelector(10_000, diversity_threshold=0.1).fit(pool)
    assert got["index"] == ref.selected_index_.tolist()
    assert got["visited"] == ref.n_visited_


def _another_frame_each_call(k):
    rng = np.random.default_rng()  # fresh entropy: other rows on every pass
    return make_pool(n=int(rng.integers(40, 160)), seed=int(rng.integers(1 << 30)))


def test_an_input_that_changes_between_passes_is_an_input_changed_error(client):
    import dask

    from skdeita.exceptions import InputChangedError

    with dask.config.set({"dataframe.convert-string": False}):
        ddf = dd.from_map(
            _another_frame_each_call, range(3), meta=make_pool(n=1).iloc[:0], enforce_metadata=False
        )
    with pytest.raises(InputChangedError, match=r"Partition \d .*[Pp]ersist"):
        DeitaSelector(10).fit(ddf)
