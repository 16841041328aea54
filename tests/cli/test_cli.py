"""The skdeita command line."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from skdeita.cli import main


def embedded_frame(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "instruction": [f"question {i}" for i in range(n)],
            "response": [f"answer {i}" for i in range(n)],
            "embedding": [list(map(float, v)) for v in rng.normal(size=(n, 6))],
            "evol_instruction_score": rng.uniform(1, 6, n).round(2),
            "evol_response_score": rng.uniform(1, 6, n).round(2),
        }
    )


def write(frame, path):
    if path.suffix == ".csv":
        out = frame.copy()
        out["embedding"] = out["embedding"].map(json.dumps)
        out.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_json(path, orient="records", lines=True)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_select_round_trip_in_each_format(tmp_path, suffix, capsys):
    if suffix == ".parquet":
        pytest.importorskip("pyarrow")
    src, dst = tmp_path / f"in{suffix}", tmp_path / f"out{suffix}"
    write(embedded_frame(), src)
    before = digest(src)
    assert (
        main(
            [
                "select",
                str(src),
                "-o",
                str(dst),
                "--budget",
                "10",
                "--threshold",
                "0.2",
                "--no-progress",
            ]
        )
        == 0
    )
    summary = capsys.readouterr().out
    assert "rows in: 40  rows kept: 10  budget: 10 (reached)  threshold: 0.2" in summary
    got = {
        ".jsonl": lambda p: pd.read_json(p, lines=True),
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
    }[suffix](dst)
    assert len(got) == 10 and got["deita_score"].is_monotonic_decreasing
    assert digest(src) == before


def test_select_matches_the_estimator(tmp_path):
    from skdeita import DeitaSelector

    df = embedded_frame()
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(df, src)
    main(
        [
            "select",
            str(src),
            "-o",
            str(dst),
            "--budget",
            "0.25",
            "--neighbors",
            "dataset",
            "--threshold",
            "0.05",
            "--no-progress",
        ]
    )
    expected = DeitaSelector(0.25, diversity_threshold=0.05, neighbors="dataset").fit_transform(df)
    got = pd.read_json(dst, lines=True)
    assert got["instruction"].tolist() == expected["instruction"].tolist()


def test_annotate_keeps_every_row(tmp_path):
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(embedded_frame(), src)
    main(["select", str(src), "-o", str(dst), "--budget", "5", "--annotate", "--no-progress"])
    got = pd.read_json(dst, lines=True)
    assert len(got) == 40 and got["deita_selected"].sum() == 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["select", "{src}", "-o", "{tmp}/out.txt", "--budget", "5"], "unknown file type '.txt'"),
        (["select", "{tmp}/missing.jsonl", "-o", "{tmp}/o.jsonl", "--budget", "5"], "no such file"),
        (["select", "{src}", "-o", "{src}", "--budget", "5"], "is the input file"),
        (
            [
                "select",
                "{src}",
                "-o",
                "{tmp}/o.jsonl",
                "--budget",
                "5",
                "--embedding-col",
                "emb",
                "--text-template",
                "{{prompt}}",
            ],
            "no column 'emb' (--embedding-col), and no column 'prompt' (--text-template field",
        ),
        (
            ["select", "{src}", "-o", "{tmp}/o.jsonl", "--budget", "5", "--metric", "nope"],
            "--metric must be",
        ),
        (["select", "{src}", "-o", "{tmp}/nodir/o.jsonl", "--budget", "5"], "does not exist"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    src = tmp_path / "in.jsonl"
    write(embedded_frame(), src)
    argv = [a.format(src=src, tmp=tmp_path) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("skdeita: error:") and "\n" not in err and message in err
    assert "Traceback" not in err


def test_unreadable_file_is_reported(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("{not json\n")
    assert main(["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--budget", "2"]) == 2
    assert "cannot read as jsonl" in capsys.readouterr().err


def test_bad_budget_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as exc:
        main(["select", "in.jsonl", "-o", "out.jsonl", "--budget", "-3"])
    assert exc.value.code == 2


def test_interrupted_select_leaves_no_output_and_input_intact(tmp_path):
    pytest.importorskip("sentence_transformers")
    from skdeita.datasets import load_sample

    pool = pd.concat([load_sample()] * 12, ignore_index=True)  # embedding takes a while
    pool["response"] = pool["response"] + pool.index.astype(str)  # no dedupe shortcut
    src, dst = tmp_path / "pool.jsonl", tmp_path / "curated.jsonl"
    write(pool, src)
    before = digest(src)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "skdeita",
            "select",
            str(src),
            "-o",
            str(dst),
            "--budget",
            "100",
            "--no-progress",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    time.sleep(6)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert not dst.exists()
    # No temporary file left; the cache folder is kept on purpose (the same command resumes).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curated.jsonl.cache", "pool.jsonl"]
    assert digest(src) == before


@pytest.mark.pairrm
def test_rank_writes_ranks_and_ranked_candidates(tmp_path, tiny_ranker_dir, capsys):
    rows = pd.DataFrame(
        {
            "input": ["write a poem", "give tips"],
            "candidates": [["the sea", "wind", "night"], ["sleep", "water"]],
        }
    )
    src, dst = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    write(rows, src)
    argv = ["rank", str(src), "-o", str(dst), "--model", str(tiny_ranker_dir), "--device", "cpu"]
    assert main([*argv, "--no-progress"]) == 0
    got = pd.read_json(dst, lines=True)
    assert [len(r) for r in got["ranks"]] == [3, 2]
    assert all(min(r) == 1 for r in got["ranks"])
    for cands, ranks, ranked in zip(
        got["candidates"], got["ranks"], got["ranked_candidates"], strict=True
    ):
        assert ranked == [cands[i] for i in np.argsort(ranks, kind="stable")]
    assert "rows ranked: 2" in capsys.readouterr().out
