"""Reading tables: a file whose content is another format than its name says."""

from __future__ import annotations

import pandas as pd
import pytest

from skdeita.cli import main


def _rows():
    return pd.DataFrame(
        {
            "embedding": [[1.0, 0.0], [0.0, 1.0]],
            "evol_instruction_score": [1.0, 2.0],
            "evol_response_score": [2.0, 2.0],
        }
    )


def _select(src, tmp_path, capsys) -> tuple[int, str]:
    code = main(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--budget", "1"])
    return code, capsys.readouterr().err.strip()


@pytest.mark.parametrize("name", ["pool.jsonl", "pool.csv", "pool.json"])
def test_a_parquet_file_with_another_name_is_named_as_parquet(name, tmp_path, capsys):
    pytest.importorskip("pyarrow")
    src = tmp_path / name
    _rows().to_parquet(src)
    code, err = _select(src, tmp_path, capsys)
    assert code == 2 and "\n" not in err
    assert err.startswith(f"skdeita: error: {src} is a Parquet file (it begins with Parquet's")
    assert err.endswith("rename it to pool.parquet")
    assert not (tmp_path / "o.jsonl").exists()


def test_a_jsonl_file_named_parquet_is_named_as_such(tmp_path, capsys):
    src = tmp_path / "pool.parquet"
    _rows().to_json(src, orient="records", lines=True)
    code, err = _select(src, tmp_path, capsys)
    assert code == 2 and "\n" not in err
    assert err.startswith(f"skdeita: error: {src} is not a Parquet file")
    assert "it looks like JSONL" in err


def test_a_file_whose_content_matches_its_name_is_read(tmp_path, capsys):
    pytest.importorskip("pyarrow")
    src = tmp_path / "pool.parquet"
    _rows().to_parquet(src)
    code, err = _select(src, tmp_path, capsys)
    assert code == 0, err
    assert len(pd.read_json(tmp_path / "o.jsonl", lines=True)) == 1
