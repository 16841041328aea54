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


FITTED = (
    "n_selected_",
    "budget_",
    "budget_reached_",
    "n_visited_",
    "n_features_in_",
)


def pandas_and_dask(selector: DeitaSelector, ddf):
    """Both selections, warnings recorded and compared, fitted attributes
    compared; the fitted pandas selector is returned too."""
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
    assert [(w.category, str(w.message)) for w in w_dd] == [
        (w.category, str(w.message)) for w in w_pd
    ]
    assert_same_fit(selector, ref_sel)
    return expected, got, ref_sel


def assert_same_fit(got: DeitaSelector, expected: DeitaSelector) -> None:
    assert got.selected_index_.equals(expected.selected_index_)
    for name in FITTED:
        assert getattr(got, name) == getattr(expected, name), name
    assert got.feature_names_in_.tolist() == expected.feature_names_in_.tolist()
    assert got.get_feature_names_out().tolist() == expected.get_feature_names_out().tolist()


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
    expected, got, _ = pandas_and_dask(selector, ddf)
    assert_same(expected, got)
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


# -- any Dask DataFrame a user builds --------------------------------------------


def _piece(frame):
    return frame


def _build(kind: str, pool: pd.DataFrame, tmp_path):
    """``pool`` as a Dask DataFrame built the way a user would, several partitions."""
    import dask

    thirds = [pool.iloc[:120], pool.iloc[120:121], pool.iloc[121:]]
    with dask.config.set({"dataframe.convert-string": False}):
        if kind == "from_pandas":
            return dd.from_pandas(pool, npartitions=3, sort=False)
        if kind == "from_delayed":
            parts = [dask.delayed(_piece)(t) for t in thirds]
            return dd.from_delayed(parts, meta=pool.iloc[:0], verify_meta=False)
        if kind == "from_map":
            return dd.from_map(_piece, thirds, meta=pool.iloc[:0], enforce_metadata=False)
        if kind == "concat":
            return dd.concat([split(thirds[0], [60, 60]), split(pool.iloc[120:], [1, 179])])
    for k, third in enumerate(thirds):
        third.to_parquet(tmp_path / f"part.{k}.parquet")
    return dd.read_parquet(sorted(tmp_path.glob("*.parquet")))  # default string conversion


@pytest.mark.parametrize("output", ["subset", "annotate"])
@pytest.mark.parametrize(
    "kind", ["from_pandas", "read_parquet", "from_delayed", "from_map", "concat"]
)
def test_any_dask_dataframe_equals_pandas(client, tmp_path, kind, output):
    ddf = _build(kind, make_pool(n=300, seed=11, index_start=0), tmp_path)
    assert ddf.npartitions >= 3
    selector = DeitaSelector(40, diversity_threshold=0.05, output=output)
    expected, got, _ = pandas_and_dask(selector, ddf)
    assert_same(expected, got)


@pytest.mark.parametrize("output", ["subset", "annotate"])
def test_dataset_rule_without_the_dropped_rows_equals_pandas(client, output):
    # Rows with no score are neither candidates nor neighbours, on both paths.
    pool = make_pool(n=240, seed=13)
    pool.loc[pool.index[[0, 5, 6, 200]], ["evol_instruction_score", "evol_response_score"]] = None
    selector = DeitaSelector(
        30, neighbors="dataset", missing_scores="drop", diversity_threshold=0.03, output=output
    )
    expected, got, _ = pandas_and_dask(selector, split(pool, [7, 0, 150, 83]))
    assert_same(expected, got)


@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_attribution_across_partitions_equals_pandas(client, neighbors):
    # Blocking rows often live in another partition; string labels, a reference.
    pool = make_pool(n=240, seed=23)
    pool.index = [f"row{i}" for i in range(len(pool))]
    pool.loc[["row3", "row99"], ["evol_instruction_score", "evol_response_score"]] = None
    curated = pool.iloc[[10, 150]][["embedding"]].set_axis(["cur-a", "cur-b"])
    selector = DeitaSelector(
        None if neighbors == "selected" else 40, diversity_threshold=0.05, output="annotate",
        neighbors=neighbors, missing_scores="drop", reference=curated,
    )  # fmt: skip
    expected, got, _ = pandas_and_dask(selector, split(pool, [60, 0, 100, 80]))
    assert_same(expected, got)
    assert set(got["deita_status"]) >= {"kept", "blocked", "excluded"}
    blocked = got[got["deita_status"] == "blocked"]
    assert blocked["deita_blocked_by"].notna().any()
    assert blocked["deita_blocked_by_reference"].notna().any()


def test_one_score_column_and_per_turn_lists_equal_pandas(client):
    pool = make_pool(n=120, seed=17)
    turns = [[1.0, 2.0] if i % 3 == 0 else 1.5 for i in range(len(pool))]
    pool["evol_instruction_score"] = pd.Series(turns, index=pool.index, dtype=object)
    pool["evol_response_score"] = pd.Series(
        [[2.0, 0.5] if i % 3 == 0 else 3.0 for i in range(len(pool))],
        index=pool.index,
        dtype=object,
    )
    for params in (
        dict(output="annotate"),
        dict(response_score_col=None, output="subset"),
        dict(instruction_score_col=None, output="annotate", neighbors="dataset"),
    ):
        selector = DeitaSelector(25, diversity_threshold=0.05, **params)
        expected, got, _ = pandas_and_dask(selector, split(pool, [50, 70]))
        assert_same(expected, got)


@pytest.mark.parametrize("block_size", [1, 7, 4096])
@pytest.mark.parametrize("neighbors", ["selected", "dataset"])
def test_any_block_size_gives_the_pandas_annotation(client, block_size, neighbors):
    ddf = split(make_pool(n=200, seed=19), [90, 0, 110])
    selector = DeitaSelector(
        35, diversity_threshold=0.04, output="annotate", neighbors=neighbors, block_size=block_size
    )
    expected, got, _ = pandas_and_dask(selector, ddf)
    assert_same(expected, got)
    default = DeitaSelector(35, diversity_threshold=0.04, output="annotate", neighbors=neighbors)
    assert_same(default.fit_transform(ddf.compute()), got)


@pytest.mark.parametrize(
    "params",
    [
        dict(instruction_score_col=None, response_score_col=None),
        dict(diversity_threshold=float("inf")),
        dict(data_budget=True),
        dict(embedding_col="vectors"),
        dict(instruction_score_col="complexity"),
    ],
)
def test_parameter_and_column_errors_equal_pandas(client, params):
    ddf = split(make_pool(n=40), [20, 20])
    with pytest.raises((TypeError, ValueError)) as on_pandas:
        DeitaSelector(**params).fit(ddf.compute())
    with pytest.raises(type(on_pandas.value)) as on_dask:
        DeitaSelector(**params).fit(ddf)
    assert str(on_dask.value) == str(on_pandas.value)


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
