"""Errors and warnings in command-line terms: options, the file, its own columns."""

from __future__ import annotations

import json

import pytest

from skdeita.cli import main
from skdeita.cli._terms import in_cli_terms

from ..conftest import NO_MODEL


def _run(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err.strip()


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def raw(tmp_path):
    rows = [{"instruction": f"q {i}", "output": f"a {i}"} for i in range(4)]
    return _jsonl(tmp_path / "raw.jsonl", rows)


def _curate(src, out, *extra):
    models = ["--complexity-model", NO_MODEL, "--quality-model", NO_MODEL]
    return [
        "curate",
        src,
        "-o",
        out,
        "--budget",
        "2",
        *models,
        "--embedding-model",
        NO_MODEL,
        *extra,
    ]


def test_select_without_scores_says_so_and_points_to_curate(raw, tmp_path, capsys):
    code, err = _run(["select", raw, "-o", tmp_path / "o.jsonl", "--budget", "2"], capsys)
    assert code == 2 and "\n" not in err
    assert err.startswith(f"skdeita: error: {raw} has no DEITA scores")
    assert "'evol_instruction_score' (--instruction-score-col)" in err
    assert "'evol_response_score' (--response-score-col)" in err
    assert "`skdeita curate` computes them" in err
    assert err.endswith("Its columns: ['instruction', 'output'].")


def test_a_missing_column_is_named_by_its_option_and_the_file(raw, tmp_path, capsys):
    code, err = _run(_curate(raw, tmp_path / "o.jsonl", "--response-col", "outptu"), capsys)
    assert code == 2 and "\n" not in err
    assert err == (
        f"skdeita: error: {raw} has no column 'outptu' (--response-col). Did you mean "
        "'output'? Its columns: ['instruction', 'output']."
    )


def test_no_suggestion_or_listed_column_that_only_an_earlier_step_adds(raw, tmp_path, capsys):
    # The scorers add evol_response_score before the embedder reads the template:
    # a near miss of it is not in the file, so it is neither suggested nor listed.
    template = "{instruction} {output} {evol_response_scor}"
    argv = _curate(
        raw, tmp_path / "o.jsonl", "--response-col", "output", "--text-template", template
    )
    code, err = _run(argv, capsys)
    assert code == 2 and "\n" not in err
    assert "no column 'evol_response_scor' (--text-template field {evol_response_scor})" in err
    assert "Did you mean" not in err and "evol_response_score'" not in err
    assert err.endswith("Its columns: ['instruction', 'output'].")


def test_a_score_column_typo_is_suggested_from_the_file(tmp_path, capsys):
    rows = [
        {"embedding": [1.0, float(i)], "evol_instruction_score": 1.0, "evol_response_score": 2.0}
        for i in range(3)
    ]
    src = _jsonl(tmp_path / "pool.jsonl", rows)
    argv = ["select", src, "-o", tmp_path / "o.jsonl", "--budget", "2"]
    code, err = _run([*argv, "--instruction-score-col", "evol_instruction_scor"], capsys)
    assert code == 2
    assert "no column 'evol_instruction_scor' (--instruction-score-col)" in err
    assert "Did you mean 'evol_instruction_score'?" in err and "skdeita curate" not in err


def test_a_model_is_named_by_its_option(raw, tmp_path, capsys):
    argv = _curate(raw, tmp_path / "o.jsonl", "--response-col", "output")
    code, err = _run(argv, capsys)
    assert code == 2 and "\n" not in err
    assert f"--complexity-model '{NO_MODEL}'" in err and "model=" not in err


def test_an_empty_column_option_is_named(raw, tmp_path, capsys):
    code, err = _run(_curate(raw, tmp_path / "o.jsonl", "--response-col", ""), capsys)
    assert (code, err) == (2, "skdeita: error: --response-col must name a column.")


def test_a_budget_rule_speaks_of_what_can_be_typed(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(
            ["select", str(tmp_path / "p.jsonl"), "-o", str(tmp_path / "o.jsonl"), "--budget", "0"]
        )
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "\n" not in err
    assert "argument --budget: must be an int in the range [1, inf) or a float" in err
    assert "None" not in err and "data_budget" not in err


@pytest.mark.parametrize(
    ("message", "command", "expected"),
    [
        (
            "The 'distance_metric' parameter of DeitaSelector must be a str. Got 'x' instead.",
            "select",
            "--metric must be a str. Got 'x' instead.",
        ),
        (
            "Column 'q' (instruction_score_col) is not in X. Available columns: ['q2'].",
            "select",
            "Column 'q' (--instruction-score-col) is not in the input. Available columns: ['q2'].",
        ),
        (
            "fewer than data_budget=500, diversity_threshold=0.1",
            None,
            "fewer than --budget 500, --threshold 0.1",
        ),
        (
            "QualityScorer model='m': no such model directory",
            "curate",
            "--quality-model 'm': no such model directory",
        ),
        ("EmbeddingTransformer model='m' is missing", "select", "--model 'm' is missing"),
        # Column names and paths that look like parameters are left alone.
        (
            "Column 'response_col' has missing text",
            "curate",
            "Column 'response_col' has missing text",
        ),
        ("/data/batch_size/x.jsonl: no such file", None, "/data/batch_size/x.jsonl: no such file"),
        ("X has duplicate column names ['a']", None, "The input has duplicate column names ['a']"),
    ],
)
def test_in_cli_terms(message, command, expected):
    assert in_cli_terms(message, command) == expected
