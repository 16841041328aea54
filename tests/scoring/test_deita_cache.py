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


# -- the score cache -----------------------------------------------------------


def test_cache_serves_a_clone_without_running_the_model(tmp_path, quality_dir, reference):
    df = rows_frame()
    first = quality(quality_dir, cache=tmp_path).fit(df)
    out1 = first.transform(df)
    assert any(tmp_path.rglob("*.npz"))
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
