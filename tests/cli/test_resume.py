"""``skdeita curate``/``select``/``rank`` keep their results in a cache beside the
output by default: a run killed at any point and run again with the same
command finishes with the output an uninterrupted run gives, saying how many
rows it reused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from skdeita.cli import main

pytestmark = pytest.mark.scoring
pytest.importorskip("sentence_transformers")

WORDS = "sort list bread ocean poem python paris sleep tips wind night numbers rain".split()


def pool(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame(
        {
            "instruction": [" ".join(rng.choice(WORDS, 3 + i % 8)) + f" {i}" for i in range(n)],
            "response": [" ".join(rng.choice(WORDS, 4 + i % 5)) for i in range(n)],
        }
    )


def curate_args(pool_file, out, scorers, *extra) -> list[str]:
    c, q = scorers
    return [
        "curate", str(pool_file), "-o", str(out), "--budget", "20", "--no-progress",
        "--complexity-model", c, "--quality-model", q, *extra,
    ]  # fmt: skip


def cli(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen(
        [sys.executable, "-m", "skdeita", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def records_in(folder: Path) -> int:
    """Bytes of journal records in the cache folder (what a kill must not lose)."""
    return sum(p.stat().st_size for p in folder.rglob("*.rec")) if folder.exists() else 0


def test_curate_killed_mid_run_resumes_with_the_same_command(tmp_path, tiny_scorer_pair):
    rows = pool(500)
    pool_file = tmp_path / "pool.jsonl"
    rows.to_json(pool_file, orient="records", lines=True)
    out = tmp_path / "curated.jsonl"
    args = curate_args(pool_file, out, tiny_scorer_pair, "--batch-size", "1")
    first = cli(args)
    cache = tmp_path / "curated.jsonl.cache"  # the documented default place
    deadline = time.monotonic() + 300
    try:  # watch the cache folder, not the clock
        while records_in(cache / "skdeita-scores") < 20_000:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        first.send_signal(signal.SIGKILL)
    finally:
        first.communicate()
    assert first.returncode == -signal.SIGKILL and not out.exists()
    second = cli(args)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    reused = [line for line in stderr.splitlines() if "rows from cache" in line]
    complexity = next(line for line in reused if line.startswith("skdeita: complexity scores:"))
    n_cached = int(complexity.split(": ")[2].split(" of ")[0].replace(",", ""))
    assert 0 < n_cached < 500 and complexity.endswith(" of 500 rows from cache")
    assert any(line.startswith("skdeita: quality scores:") for line in reused)
    uninterrupted = tmp_path / "whole.jsonl"
    whole = cli(curate_args(pool_file, uninterrupted, tiny_scorer_pair, "--no-cache"))
    assert whole.communicate(timeout=600) and whole.returncode == 0
    assert not (tmp_path / "whole.jsonl.cache").exists()
    got = pd.read_json(out, lines=True)
    expected = pd.read_json(uninterrupted, lines=True)
    assert got["instruction"].tolist() == expected["instruction"].tolist()
    np.testing.assert_allclose(got["deita_score"], expected["deita_score"], atol=1e-3)


def test_a_second_run_takes_every_row_from_the_cache(tmp_path, tiny_scorer_pair, capsys):
    pool_file = tmp_path / "pool.jsonl"
    pool(30).to_json(pool_file, orient="records", lines=True)
    out = tmp_path / "curated.jsonl"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(curate_args(pool_file, out, tiny_scorer_pair)) == 0
        first = out.read_text()
        out.unlink()
        capsys.readouterr()
        assert main(curate_args(pool_file, out, tiny_scorer_pair)) == 0
    err = capsys.readouterr().err
    for label in ("complexity scores", "quality scores", "embeddings"):
        assert f"skdeita: {label}: 30 of 30 rows from cache" in err
    assert f"skdeita: cache: {out}.cache" in err
    assert out.read_text() == first


def test_cache_dir_option_and_no_cache(tmp_path, tiny_scorer_pair, capsys):
    pool_file = tmp_path / "pool.jsonl"
    pool(12).to_json(pool_file, orient="records", lines=True)
    chosen = tmp_path / "elsewhere"
    a = curate_args(pool_file, tmp_path / "a.jsonl", tiny_scorer_pair, "--cache", str(chosen))
    b = curate_args(pool_file, tmp_path / "b.jsonl", tiny_scorer_pair, "--no-cache")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(a) == 0
        assert f"skdeita: cache: {chosen}" in capsys.readouterr().err
        assert main(b) == 0
    err = capsys.readouterr().err
    assert "cache" not in err.replace("--no-cache", "")
    assert list(chosen.glob("skdeita-scores/*/*.rec"))
    assert not (tmp_path / "a.jsonl.cache").exists() and not (tmp_path / "b.jsonl.cache").exists()


def test_an_unwritable_cache_folder_fails_before_any_model_loads(
    tmp_path, tiny_scorer_pair, capsys
):
    pool_file = tmp_path / "pool.jsonl"
    pool(6).to_json(pool_file, orient="records", lines=True)
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    args = curate_args(pool_file, tmp_path / "o.jsonl", tiny_scorer_pair, "--cache", str(blocker))
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cache folder" in err[0] and "--no-cache" in err[0]
    assert "loading" not in " ".join(err)


def test_select_report_option_writes_the_subset_and_the_page(tmp_path, capsys):
    from skdeita.datasets import load_sample

    sample = load_sample().head(40)
    pool_file = tmp_path / "scored.jsonl"
    sample.to_json(pool_file, orient="records", lines=True)
    plain, with_page = tmp_path / "plain.jsonl", tmp_path / "paged.jsonl"
    base = ["select", str(pool_file), "--budget", "10", "--no-progress"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main([*base, "-o", str(plain)]) == 0
        assert main([*base, "-o", str(with_page), "--report", str(tmp_path / "r.html")]) == 0
    assert plain.read_text() == with_page.read_text()
    assert "<svg" in (tmp_path / "r.html").read_text()
    assert Path(f"{with_page}.manifest.json").is_file()
