"""The DEITA scorers' score cache: served without running the model, only new or
failed rows scored again, keyed by model."""

from __future__ import annotations

import contextlib

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from skdeita.exceptions import ScoringFailedWarning

from .conftest import (
    COMPLEXITY_TEMPLATE,
    TOL,
    complexity,
    inject_failure,
    quality,
    rows_frame,
)

pytestmark = pytest.mark.scoring

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


@contextlib.contextmanager
def counting_model_runs(scorer):
    """Batch sizes of every run of the loaded model's transformer body.

    A forward pre-hook on the decoder (``model.get_decoder()``) sees every
    forward, whether the scorer goes through ``generate`` or calls the model
    directly; an empty list means the model did not run.
    """
    decoder = scorer._get_model().model.get_decoder()
    runs: list[int] = []

    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            ids = kwargs["inputs_embeds"]
        runs.append(int(ids.shape[0]))

    handle = decoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield runs
    finally:
        handle.remove()


@pytest.fixture
def prompts_scored(monkeypatch) -> list[int]:
    """How many prompts reach the model (every batch, whatever the path)."""
    from skdeita.scoring import _first_token

    counts: list[int] = []
    real = _first_token.first_token_scores

    def counting(lm, sequences, token_ids):
        counts.append(len(sequences))
        return real(lm, sequences, token_ids)

    monkeypatch.setattr(_first_token, "first_token_scores", counting)
    return counts


# -- the score cache -----------------------------------------------------------


def test_cache_serves_a_clone_without_running_the_model(tmp_path, quality_dir, reference):
    df = rows_frame()
    first = quality(quality_dir, cache=tmp_path).fit(df)
    out1 = first.transform(df)
    assert any(tmp_path.rglob("*.rec"))
    second = clone(first).fit(df)
    with counting_model_runs(second) as runs:
        out2 = second.transform(df)
    assert second._model is first._model  # the hook watched the model that scores
    assert runs == []
    pd.testing.assert_series_equal(out2["evol_response_score"], out1["evol_response_score"])
    np.testing.assert_allclose(out1["evol_response_score"], reference["quality"], atol=TOL)


def test_cache_scores_only_new_rows(tmp_path, complexity_dir):
    df = rows_frame()
    complexity(complexity_dir, cache=tmp_path).fit_transform(df.iloc[:6])
    scorer = complexity(complexity_dir, cache=tmp_path).fit(df)
    with counting_model_runs(scorer) as runs:
        scorer.transform(df)
    assert runs and max(runs) == 4  # the four new rows, in one batch of up to 8


def test_cache_does_not_keep_a_failed_row(monkeypatch, tmp_path, complexity_dir, reference):
    df = rows_frame()
    bad = COMPLEXITY_TEMPLATE.format(instruction=df.loc["r9", "instruction"])
    with monkeypatch.context() as patch:
        inject_failure(patch, complexity_dir, bad)
        with pytest.warns(ScoringFailedWarning):
            out1 = complexity(complexity_dir, cache=tmp_path, on_error="nan").fit_transform(df)
    assert np.isnan(out1.loc["r9", "evol_instruction_score"])
    scorer = complexity(complexity_dir, cache=tmp_path, on_error="nan").fit(df)
    with counting_model_runs(scorer) as runs:
        out2 = scorer.transform(df)
    assert runs and set(runs) == {1}  # only the row that failed runs again
    np.testing.assert_allclose(out2["evol_instruction_score"], reference["complexity"], atol=TOL)


def test_cache_is_keyed_by_model(tmp_path, complexity_dir, quality_dir, complexity_out):
    df = rows_frame()
    complexity(complexity_dir, cache=tmp_path).fit_transform(df)
    out = complexity(quality_dir, cache=tmp_path).fit_transform(df)
    diff = out["evol_instruction_score"] - complexity_out["evol_instruction_score"]
    assert diff.abs().max() > 0.05


# -- checkpoints: a killed run resumes -------------------------------------------

_SCORE_IN_A_CHILD = """
import sys
import pandas as pd
from skdeita import ComplexityScorer
model, cache, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = pd.read_json(sys.argv[4])
scorer = ComplexityScorer(model, batch_size=1, cache=cache, device="cpu", show_progress_bar=False)
scorer.fit_transform(rows)
"""


def many_rows(n: int) -> pd.DataFrame:
    words = "sort list bread ocean poem python paris sleep tips wind night numbers".split()
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {"instruction": [" ".join(rng.choice(words, 3 + i % 9)) + f" {i}" for i in range(n)]},
        index=[f"q{i}" for i in range(n)],
    )


def cached_count(scorer, rows, tmp_path) -> int:
    """How many rows the cache folder holds now (read as another process would)."""
    import warnings

    from skdeita.utils._disk_cache import ResultStore

    _, prompts = scorer._check_input(rows)
    store = ResultStore.from_param(
        tmp_path, scorer._cache_identity(), "scores", width=1, dtype=np.float64
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a record cut by the kill is reported by the run
        return int(store.lookup(scorer._units(prompts).keys)[0].sum())


def test_a_run_killed_by_sigkill_resumes_where_it_stopped(tmp_path, complexity_dir, prompts_scored):
    import os
    import signal
    import subprocess
    import sys
    import time

    rows = many_rows(400)
    rows_file = tmp_path / "rows.json"
    rows.to_json(rows_file)
    cache = tmp_path / "cache"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SCORE_IN_A_CHILD,
            str(complexity_dir),
            str(cache),
            "400",
            str(rows_file),
        ],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    probe = complexity(complexity_dir, cache=cache).fit(rows)
    deadline = time.monotonic() + 300
    try:  # watch the cache folder, not the clock: kill once some batches are on disk
        while cached_count(probe, rows, cache) < 20:
            assert child.poll() is None, "the run finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL
    done = cached_count(probe, rows, cache)
    assert 20 <= done < 400
    resumed = complexity(complexity_dir, cache=cache, batch_size=7).fit(rows)
    out = resumed.transform(rows)
    assert resumed.cache_stats_["rows_from_cache"] >= done
    assert sum(prompts_scored) == 400 - resumed.cache_stats_["rows_from_cache"]
    whole = complexity(complexity_dir).fit_transform(rows)
    # Batch shapes differ between the runs: equal up to float noise (bench_batch_noise).
    np.testing.assert_allclose(
        out["evol_instruction_score"], whole["evol_instruction_score"], rtol=0, atol=TOL
    )


def test_cache_stats_and_log_say_how_many_rows_came_from_the_cache(
    tmp_path, complexity_dir, caplog
):
    import logging

    df = rows_frame()
    complexity(complexity_dir, cache=tmp_path).fit_transform(df.iloc[:6])
    scorer = complexity(complexity_dir, cache=tmp_path).fit(df)
    with caplog.at_level(logging.INFO, logger="skdeita"):
        scorer.transform(df)
    assert scorer.cache_stats_["rows"] == 10 and scorer.cache_stats_["rows_from_cache"] == 6
    assert "ComplexityScorer: 6 of 10 rows from cache" in caplog.text


def test_cache_is_keyed_by_every_weight_not_the_path(tmp_path, complexity_dir, prompts_scored):
    import shutil

    from safetensors.torch import load_file, save_file

    df = rows_frame()
    copy = tmp_path / "model"
    shutil.copytree(complexity_dir, copy)
    first = complexity(copy, cache=tmp_path / "cache").fit_transform(df)
    weights = copy / "model.safetensors"
    tensors = load_file(weights)
    middle = sorted(k for k in tensors if "layers.1." in k and k.endswith("mlp.down_proj.weight"))
    assert middle  # a middle layer, not the first or the last parameter
    tensors[middle[0]] = tensors[middle[0]] * 3.0
    save_file(tensors, weights, metadata={"format": "pt"})
    from skdeita.utils import _model_cache

    _model_cache.clear_model_cache()
    prompts_scored.clear()
    second = complexity(copy, cache=tmp_path / "cache").fit_transform(df)
    assert sum(prompts_scored) == len(df)  # nothing was served from the old weights' entries
    assert not np.allclose(first["evol_instruction_score"], second["evol_instruction_score"])


@pytest.mark.parametrize("change", [{"max_length": 150}, {"dtype": "bfloat16"}])
def test_cache_is_keyed_by_parameters_that_change_a_value(
    tmp_path, complexity_dir, change, prompts_scored
):
    df = rows_frame()
    complexity(complexity_dir, cache=tmp_path).fit_transform(df)
    prompts_scored.clear()
    complexity(complexity_dir, cache=tmp_path, **change).fit_transform(df)
    assert sum(prompts_scored) == len(df)


def test_a_damaged_cache_file_is_skipped_with_a_warning_and_recomputed(
    tmp_path, complexity_dir, prompts_scored
):
    from skdeita.exceptions import CacheDamagedWarning

    df = rows_frame()
    before = complexity(complexity_dir, cache=tmp_path).fit_transform(df)
    for record in tmp_path.rglob("*.rec"):
        record.write_bytes(b"garbage" * 50)
    prompts_scored.clear()
    scorer = complexity(complexity_dir, cache=tmp_path).fit(df)
    with pytest.warns(CacheDamagedWarning, match=r"\.rec"):
        after = scorer.transform(df)
    assert sum(prompts_scored) == len(df)
    pd.testing.assert_frame_equal(after, before, atol=TOL)
