"""``skdeita select``: the text it embeds follows --instruction-col and --response-col."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from skdeita.cli import main


@pytest.fixture
def pool(tmp_path):
    """Scored rows whose response column is named ``output``, with no embeddings."""
    frame = pd.DataFrame(
        {
            "instruction": ["Sort a list.", "Bake bread.", "Name a prime.", "Boil an egg."],
            "output": ["Use sorted(xs).", "Mix, proof, bake.", "Seven.", "Ten minutes."],
            "evol_instruction_score": [2.0, 3.0, 1.5, 2.5],
            "evol_response_score": [4.0, 3.5, 2.0, 3.0],
        }
    )
    path = tmp_path / "pool.jsonl"
    frame.to_json(path, orient="records", lines=True)
    return frame, path


def _select(path, out, *extra) -> int:
    argv = ["select", str(path), "-o", str(out), "--budget", "4", "--threshold", "0"]
    return main([*argv, "--annotate", "--no-cache", "--no-progress", *extra])


def _embedded(frame, template, minilm_path) -> np.ndarray:
    from skdeita import EmbeddingTransformer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = EmbeddingTransformer(minilm_path, template=template, show_progress_bar=False)
        return np.stack(out.fit_transform(frame)["embedding"].tolist())


def _written(out) -> np.ndarray:
    got = pd.read_json(out, lines=True).sort_values("instruction", kind="stable")
    return got


def test_the_default_text_follows_response_col(pool, tmp_path, minilm_path):
    frame, path = pool
    out = tmp_path / "out.jsonl"
    assert _select(path, out, "--response-col", "output", "--model", minilm_path) == 0
    got = pd.read_json(out, lines=True).set_index("instruction").loc[frame["instruction"]]
    expected = _embedded(frame, "{instruction}\n\n{output}", minilm_path)
    np.testing.assert_allclose(np.stack(got["embedding"].tolist()), expected, atol=1e-6)


def test_an_explicit_text_template_wins(pool, tmp_path, minilm_path):
    frame, path = pool
    out = tmp_path / "out.jsonl"
    argv = ["--response-col", "output", "--text-template", "{output}", "--model", minilm_path]
    assert _select(path, out, *argv) == 0
    got = pd.read_json(out, lines=True).set_index("instruction").loc[frame["instruction"]]
    expected = _embedded(frame, "{output}", minilm_path)
    np.testing.assert_allclose(np.stack(got["embedding"].tolist()), expected, atol=1e-6)
    default = _embedded(frame, "{instruction}\n\n{output}", minilm_path)
    assert not np.allclose(expected, default)  # the two texts differ: the test can tell


def test_a_wrong_embedding_col_is_reported_as_that_option(tmp_path, capsys):
    rows = [
        {"embedding": [1.0, float(i)], "evol_instruction_score": 1.0, "evol_response_score": 2.0}
        for i in range(3)
    ]
    src = tmp_path / "pool.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["select", str(src), "-o", str(tmp_path / "o.jsonl"), "--budget", "2"]
    assert main([*argv, "--embedding-col", "embeddings"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert err.startswith(f"skdeita: error: {src} has no column 'embeddings' (--embedding-col)")
    assert "--embedding-col: did you mean 'embedding'?" in err
    assert "template" not in err


def test_a_near_miss_embedding_col_warns_before_embedding_anew(pool, tmp_path, capsys, minilm_path):
    frame, path = pool
    frame.assign(embedding=[[1.0, float(i)] for i in range(4)]).to_json(
        path, orient="records", lines=True
    )
    argv = ["--response-col", "output", "--embedding-col", "embeding", "--model", minilm_path]
    assert _select(path, tmp_path / "out.jsonl", *argv) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == (
        f"skdeita: warning: {path} has no column 'embeding' (--embedding-col), so its rows are "
        "embedded from their texts. Did you mean 'embedding'?"
    )
    # First, before the model loads (when it is not loaded yet) and the rows are embedded.
    assert all(not line.startswith("skdeita: warning:") for line in lines[1:])


@pytest.mark.parametrize(
    ("column", "option"), [("a.b", "--instruction-col"), ("0", "--instruction-col")]
)
def test_a_column_name_that_cannot_be_a_template_field_is_an_error(
    pool, tmp_path, capsys, column, option
):
    frame, path = pool
    frame.rename(columns={"instruction": column}).to_json(path, orient="records", lines=True)
    assert _select(path, tmp_path / "o.jsonl", "--instruction-col", column) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"skdeita: error: {option} {column!r}: a column whose name holds")
