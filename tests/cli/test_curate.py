"""``skdeita curate``: a raw pool to a curated file, checked before any model loads."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from skdeita import ComplexityScorer, QualityScorer
from skdeita.cli import main
from skdeita.datasets import load_sample

pytestmark = pytest.mark.scoring
pytest.importorskip("sentence_transformers")


@pytest.fixture
def scorers(tiny_scorer_pair):
    return tiny_scorer_pair


@pytest.fixture
def pool_file(tmp_path):
    pool = load_sample()[["instruction", "response"]].head(24)
    path = tmp_path / "pool.jsonl"
    pool.to_json(path, orient="records", lines=True)
    return path


def curate(pool_file, out, scorers, *extra):
    c, q = scorers
    args = ["curate", str(pool_file), "-o", str(out), "--budget", "6", "--no-progress"]
    return main(args + ["--complexity-model", c, "--quality-model", q, *extra])


def test_curate_equals_the_scorers_then_select(pool_file, scorers, tmp_path, capsys):
    assert curate(pool_file, tmp_path / "curated.jsonl", scorers) == 0
    pool = pd.read_json(pool_file, lines=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scored = ComplexityScorer(scorers[0], show_progress_bar=False).fit_transform(pool)
        scored = QualityScorer(scorers[1], show_progress_bar=False).fit_transform(scored)
    scored.to_json(tmp_path / "scored.jsonl", orient="records", lines=True)
    selected = ["select", str(tmp_path / "scored.jsonl"), "-o", str(tmp_path / "sel.jsonl")]
    assert main(selected + ["--budget", "6", "--no-progress"]) == 0
    got = pd.read_json(tmp_path / "curated.jsonl", lines=True)
    expected = pd.read_json(tmp_path / "sel.jsonl", lines=True)
    assert len(got) == 6
    pd.testing.assert_frame_equal(got, expected)
    assert "rows kept: 6" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--instruction-col", "prompt"], "no column 'prompt' (--instruction-col)"),
        (["--messages-col", "conversations"], "no column 'conversations' (--messages-col)"),
        (["--text-template", "{question}"], "no column 'question' (--text-template field"),
        (["--metric", "nope"], "--metric must be"),
    ],
)
def test_curate_checks_everything_before_loading_a_model(
    pool_file, tmp_path, capsys, extra, message
):
    missing = (str(tmp_path / "no-such-model"), str(tmp_path / "no-such-model"))
    assert curate(pool_file, tmp_path / "o.jsonl", missing, *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("skdeita: error:") and message in err
    assert "Traceback" not in err and not (tmp_path / "o.jsonl").exists()


def test_curate_reports_a_missing_model_only_after_the_input_is_valid(pool_file, tmp_path, capsys):
    missing = (str(tmp_path / "no-such-model"), str(tmp_path / "no-such-model"))
    assert curate(pool_file, tmp_path / "o.jsonl", missing) == 2
    assert "no-such-model" in capsys.readouterr().err


def test_curate_reads_conversations_from_csv(scorers, tmp_path, capsys):
    conversations = [
        [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": "Yes."}]
        for i in range(8)
    ]
    src = tmp_path / "chats.csv"
    pd.DataFrame({"conversations": [json.dumps(c) for c in conversations]}).to_csv(src, index=False)
    out = tmp_path / "curated.jsonl"
    assert curate(src, out, scorers, "--messages-col", "conversations") == 0
    got = pd.read_json(out, lines=True)
    assert all(len(v) == 1 for v in got["evol_instruction_score"])
    assert got["deita_score"].notna().all()


def test_response_col_flows_into_the_default_embedding_text(pool_file, scorers, tmp_path):
    """``--response-col output`` alone (no --text-template) curates a pool whose
    response column is named ``output`` exactly as the default names curate it."""
    assert curate(pool_file, tmp_path / "default.jsonl", scorers) == 0
    renamed = tmp_path / "renamed.jsonl"
    pool = pd.read_json(pool_file, lines=True)
    pool.rename(columns={"response": "output"}).to_json(renamed, orient="records", lines=True)
    assert curate(renamed, tmp_path / "output.jsonl", scorers, "--response-col", "output") == 0
    got = pd.read_json(tmp_path / "output.jsonl", lines=True)
    expected = pd.read_json(tmp_path / "default.jsonl", lines=True)
    pd.testing.assert_frame_equal(got.rename(columns={"output": "response"}), expected)
