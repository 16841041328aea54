"""``skdeita curate --backend vllm`` equals ``--backend transformers``: the
same rows kept, scores within 1e-4; bad ``--backend-kwargs`` are one line,
exit 2, before any engine starts."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("vllm")
pytest.importorskip("torch")

from skdeita._testing import make_tiny_llama_scorer  # noqa: E402
from skdeita.cli import main  # noqa: E402

from .conftest import INSTRUCTIONS, TOL  # noqa: E402

pytestmark = pytest.mark.vllm


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm-cli")
    return (
        str(make_tiny_llama_scorer(root / "scorer", seed=7, head_dim=64, bury_digits=True)),
        str(make_tiny_llama_scorer(root / "embedder", seed=8)),
    )


@pytest.fixture(scope="module")
def pool_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("vllm-cli-pool") / "pool.jsonl"
    responses = [f"Answer {i}: " + "sorted(xs) " * (i % 3 + 1) for i in range(len(INSTRUCTIONS))]
    pool = pd.DataFrame({"instruction": INSTRUCTIONS, "response": responses})
    pool.to_json(path, orient="records", lines=True)
    return path


def curate(pool_file, out, models, *extra) -> int:
    scorer, embedder = models
    args = ["curate", str(pool_file), "-o", str(out), "--budget", "5", "--no-progress"]
    args += ["--complexity-model", scorer, "--quality-model", scorer, "--no-cache"]
    args += ["--embedding-model", embedder, "--embedding-backend", "transformers"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return main([*args, "--pooling", "last", "--device", "cpu", *extra])
        except SystemExit as exc:  # argparse's usage errors
            return exc.code


def test_curate_on_vllm_equals_curate_on_transformers(tmp_path, pool_file, models):
    # Threshold 0: the tiny embedder's vectors are near each other; the scores
    # alone then decide which 5 rows are kept, and in which order.
    both = ("--annotate", "--threshold", "0")
    assert curate(pool_file, tmp_path / "tf.jsonl", models, *both) == 0
    assert curate(pool_file, tmp_path / "vllm.jsonl", models, *both, "--backend", "vllm") == 0
    tf = pd.read_json(tmp_path / "tf.jsonl", lines=True)
    vl = pd.read_json(tmp_path / "vllm.jsonl", lines=True)
    for col in ("evol_instruction_score", "evol_response_score"):
        np.testing.assert_allclose(vl[col], tf[col], rtol=0, atol=TOL)
    assert vl["deita_rank"].fillna(0).tolist() == tf["deita_rank"].fillna(0).tolist()
    assert vl["deita_selected"].sum() == 5


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ('{"gpu_memory_utilisation": 0.5}', "gpu_memory_utilisation"),
        ('{"model": "other"}', "model"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_backend_kwargs_are_one_line_before_any_engine(
    tmp_path, pool_file, models, capsys, value, words
):
    got = curate(
        pool_file, tmp_path / "o.jsonl", models, "--backend", "vllm", "--backend-kwargs", value
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert got == 2 and len(err) == 1 and words in err[0], err
    assert "loading" not in err[0]
