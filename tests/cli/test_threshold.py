"""``skdeita threshold``: the table of threshold_table, from a file."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from skdeita import threshold_table
from skdeita.cli import main


def _pool(path, n=60, seed=0):
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "embedding": [list(map(float, v)) for v in rng.normal(size=(n, 5))],
            "evol_instruction_score": rng.uniform(1, 6, n).round(2),
            "evol_response_score": rng.uniform(1, 6, n).round(2),
        }
    )
    frame.to_json(path, orient="records", lines=True)
    return frame


def _run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_prints_and_writes_the_table_of_threshold_table(tmp_path, capsys):
    frame = _pool(tmp_path / "pool.jsonl")
    argv = ["threshold", tmp_path / "pool.jsonl", "--budget", "12", "--threshold", "0.3"]
    code, out, err = _run([*argv, "-o", tmp_path / "t.csv"], capsys)
    assert code == 0, err
    expected = threshold_table(
        frame.assign(embedding=[np.asarray(v) for v in frame.embedding]),
        data_budget=12,
        diversity_threshold=0.3,
    )
    assert expected.to_text() in out
    written = pd.read_csv(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(written, expected.table, check_dtype=False)


def test_given_thresholds_and_rule_are_used(tmp_path, capsys):
    _pool(tmp_path / "pool.jsonl")
    argv = ["threshold", tmp_path / "pool.jsonl", "--budget", "0.5"]
    code, out, _ = _run([*argv, "--thresholds", "0.05,0.5", "--neighbors", "dataset"], capsys)
    assert code == 0
    assert "neighbors='dataset'" in out
    body = out.split("threshold", 1)[1].split("\n\n")[0].splitlines()[1:]
    assert [float(line.split()[0]) for line in body] == [0.05, 0.5]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--thresholds", "0.1,x"], "'x' is not a number"),
        (["--thresholds", "-1"], "finite distances >= 0"),
        (["--embedding-col", "vec"], "no column 'vec'"),
        (["-o", "table.txt"], "use a .csv or .jsonl"),
        (["--metric", "mahalanobis"], "Got 'mahalanobis' instead"),
    ],
)
def test_bad_options_are_one_line_and_exit_code_2(tmp_path, capsys, extra, message):
    _pool(tmp_path / "pool.jsonl")
    code, out, err = _run(["threshold", tmp_path / "pool.jsonl", "--budget", "5", *extra], capsys)
    assert code == 2
    assert message in err and "\n" not in err
    assert out == ""


def test_rows_without_scores_are_named(tmp_path, capsys):
    rows = [
        {"embedding": [1.0, 0.0], "evol_instruction_score": 2.0, "evol_response_score": 1.0},
        {"embedding": [0.0, 1.0], "evol_instruction_score": None, "evol_response_score": None},
    ]
    (tmp_path / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = _run(["threshold", tmp_path / "p.jsonl", "--budget", "1"], capsys)
    assert code == 2 and "Rows [1] have no score" in err
    code, out, err = _run(
        ["threshold", tmp_path / "p.jsonl", "--budget", "1", "--missing-scores", "drop"], capsys
    )
    assert code == 0 and "1 rows without a score left out" in out
    assert err == (
        "skdeita: warning: 1 rows have no score in ['evol_instruction_score', "
        "'evol_response_score'] and are left out (first: [1])."
    )
