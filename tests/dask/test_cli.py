"""``skdeita select --cluster``: the same output as without it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skdeita.cli import main
from skdeita.cli._io import read_table

from .conftest import make_pool

pytest.importorskip("distributed")
pytest.importorskip("dask.dataframe")
pytest.importorskip("pyarrow")


def write_dataset(folder, sizes, seed=0):
    folder.mkdir()
    pool = make_pool(n=sum(sizes), seed=seed, index_start=0)
    bounds = np.cumsum([0, *sizes])
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        pool.iloc[a:b].to_parquet(folder / f"part.{k}.parquet")
    return folder


def run(args, capsys) -> str:
    assert main([*args, "--no-progress"]) == 0
    return capsys.readouterr().out


def test_select_on_a_local_cluster_equals_select_without(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", [120, 0, 7, 260, 13])
    common = ["select", f"{data}/", "--budget", "60", "--threshold", "0.05"]
    plain = run([*common, "-o", str(tmp_path / "plain")], capsys)
    dask_ = run([*common, "-o", str(tmp_path / "dask"), "--cluster", "local:2"], capsys)
    assert plain.replace("plain", "X") == dask_.replace("dask", "X")
    expected, got = read_table(tmp_path / "plain"), read_table(tmp_path / "dask")
    assert len(got) == 60
    pd.testing.assert_frame_equal(got, expected, check_exact=True)


def test_select_annotate_on_a_running_scheduler(client, tmp_path, capsys):
    data = write_dataset(tmp_path / "data", [50, 90, 0, 60], seed=1)
    glob = f"{data}/part.*.parquet"
    common = ["select", glob, "--budget", "0.1", "--annotate"]
    run([*common, "-o", str(tmp_path / "plain.parquet")], capsys)
    address = client.scheduler.address
    run([*common, "-o", str(tmp_path / "dask.parquet"), "--cluster", address], capsys)
    expected = read_table(tmp_path / "plain.parquet")
    got = read_table(tmp_path / "dask.parquet")
    pd.testing.assert_frame_equal(got, expected, check_exact=True)
    assert int(got["deita_selected"].sum()) == 20


@pytest.mark.parametrize(
    ("value", "message"),
    [("local:0", "use local:N"), ("somewhere", "use local:N")],
)
def test_bad_cluster_is_a_usage_error(tmp_path, value, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["select", "in.parquet", "-o", "out.parquet", "--budget", "2", "--cluster", value])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_existing_output_folder_is_refused(tmp_path, capsys):
    data = write_dataset(tmp_path / "data", [10])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    assert main(["select", str(data), "-o", str(tmp_path / "out"), "--budget", "2"]) == 2
    assert "existing folder" in capsys.readouterr().err


@pytest.mark.scoring
def test_curate_on_a_local_cluster_selects_the_rows_curate_selects_without(
    tiny_scorer_pair, tmp_path, capsys
):
    pytest.importorskip("sentence_transformers")
    from skdeita.datasets import load_sample

    pool = load_sample()[["instruction", "response"]].head(30).reset_index(drop=True)
    data = tmp_path / "pool"
    data.mkdir()
    for k, (a, b) in enumerate([(0, 11), (11, 11), (11, 30)]):  # one partition empty
        pool.iloc[a:b].to_parquet(data / f"part.{k}.parquet")
    c, q = tiny_scorer_pair
    common = ["curate", f"{data}/", "--budget", "8", "--complexity-model", c]
    common += ["--quality-model", q]
    plain = run([*common, "-o", str(tmp_path / "plain.parquet")], capsys)
    dask_ = run([*common, "-o", str(tmp_path / "dask"), "--cluster", "local:2"], capsys)
    assert plain.replace("plain.parquet", "X") == dask_.replace("dask", "X")
    expected, got = read_table(tmp_path / "plain.parquet"), read_table(tmp_path / "dask")
    assert len(got) == 8
    assert got.index.tolist() == expected.index.tolist()  # the same rows, in the same order
    # Scores and embeddings come from other batches on the workers: equal to
    # float32 rounding, never batch-dependent beyond it.
    np.testing.assert_allclose(
        np.stack(got.pop("embedding")), np.stack(expected.pop("embedding")), rtol=1e-4, atol=1e-6
    )
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=1e-5)
