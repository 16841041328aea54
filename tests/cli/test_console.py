"""What a command prints besides errors: warnings as one line each, wherever
they are raised, and no progress bar with --no-progress (model loading included)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from skdeita.cli import main


def _pool(path, rows=3, *, one_score_missing=False):
    lines = []
    for i in range(rows):
        row = {
            "instruction": f"question {i}",
            "response": f"answer {i}",
            "embedding": [1.0, float(i)],
            "evol_instruction_score": 1.0 + i,
            "evol_response_score": 2.0,
        }
        if one_score_missing and i == 0:
            row["evol_response_score"] = None
        lines.append(json.dumps(row) + "\n")
    path.write_text("".join(lines))
    return path


def test_warnings_print_as_one_line_without_a_python_location(tmp_path):
    """A warning raised while checking (one score of two) and one raised while
    selecting (the budget), from the command as a user runs it."""
    src = _pool(tmp_path / "pool.jsonl", one_score_missing=True)
    done = subprocess.run(
        [sys.executable, "-m", "skdeita", "select", str(src), "-o", str(tmp_path / "o.jsonl")]
        + ["--budget", "50", "--threshold", "0", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": ""},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines == [
        "skdeita: warning: 1 rows have only one of the two scores; their deita_score is that "
        "score alone (see deita_score_computed_with).",
        "skdeita: warning: DeitaSelector kept 3 of 3 rows, fewer than the budget: the pool has "
        "3 rows, fewer than --budget 50.",
    ]


def test_a_budget_above_the_pool_says_so_and_what_the_threshold_blocked(tmp_path, capsys):
    src = _pool(tmp_path / "pool.jsonl", rows=4)
    argv = ["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--budget", "120"]
    assert main([*argv, "--metric", "euclidean", "--threshold", "1.5", "--no-progress"]) == 0
    warning = capsys.readouterr().err.strip()
    assert warning == (
        "skdeita: warning: DeitaSelector kept 1 of 4 rows, fewer than the budget: the pool has "
        "4 rows, fewer than --budget 120, and only these passed --threshold 1.5."
    )


def test_a_budget_the_threshold_blocks_advises_the_threshold(tmp_path, capsys):
    src = _pool(tmp_path / "pool.jsonl", rows=4)
    argv = ["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--budget", "3"]
    assert main([*argv, "--metric", "euclidean", "--threshold", "1.5", "--no-progress"]) == 0
    warning = capsys.readouterr().err.strip()
    assert warning.startswith("skdeita: warning: DeitaSelector kept 1 of 4 rows, fewer than")
    assert "only these passed --threshold 1.5. Lower the threshold or the budget" in warning


class _Terminal(io.StringIO):
    """A stderr that says it is a terminal: bars are on unless turned off."""

    def isatty(self) -> bool:
        return True


def _on_a_terminal(monkeypatch, argv) -> str:
    from skdeita.utils._model_cache import clear_model_cache

    clear_model_cache()  # the model loads (and would show its loading bar) in this run
    terminal = _Terminal()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", terminal)
        assert main(argv) == 0
    return terminal.getvalue()


def test_no_progress_silences_every_bar_model_loading_included(tmp_path, monkeypatch, minilm_path):
    pytest.importorskip("sentence_transformers")
    import transformers
    from transformers.utils import logging as tf_logging

    src = _pool(tmp_path / "pool.jsonl", rows=6)
    src.write_text(src.read_text().replace('"embedding"', '"vector"'))  # to be embedded
    argv = ["select", str(src), "--budget", "3", "--model", minilm_path, "--no-cache"]
    before = tf_logging.is_progress_bar_enabled()

    quiet = _on_a_terminal(monkeypatch, [*argv, "-o", str(tmp_path / "a.jsonl"), "--no-progress"])
    assert "\r" not in quiet and "%|" not in quiet, quiet
    assert all(line.startswith("skdeita: ") for line in quiet.splitlines()), quiet

    # The control: the same run on a terminal shows bars (the embedder's own;
    # transformers 5 also shows its "Loading weights" bar).
    shown = _on_a_terminal(monkeypatch, [*argv, "-o", str(tmp_path / "b.jsonl")])
    assert "%|" in shown, shown
    if int(transformers.__version__.split(".")[0]) >= 5:
        assert "Loading weights" in shown
    assert tf_logging.is_progress_bar_enabled() == before  # the caller's state is restored
