"""The DEITA scorers' model: pickled without weights (unless asked), loaded
lazily, once, in float32 and without remote code."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
from sklearn.base import clone

from .conftest import complexity, rows_frame

pytestmark = pytest.mark.scoring

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


# -- pickling, loading -----------------------------------------------------------


def test_pickle_holds_no_weights_and_reloads(complexity_dir, complexity_out):
    df = rows_frame()
    scorer = complexity(complexity_dir).fit(df)
    scorer.transform(df.iloc[:2])
    assert scorer._model is not None
    blob = pickle.dumps(scorer)
    assert len(blob) < 20_000
    restored = pickle.loads(blob)
    assert "_pinned_model" not in vars(restored)  # it uses this process's loaded model
    out = restored.transform(df)
    pd.testing.assert_frame_equal(out, complexity_out)


def test_pickle_with_store_weights_keeps_the_model(complexity_dir, complexity_out):
    df = rows_frame()
    scorer = complexity(complexity_dir, store_weights_in_pickle=True).fit(df)
    scorer.transform(df.iloc[:2])
    blob = pickle.dumps(scorer)
    assert len(blob) > 50_000
    restored = pickle.loads(blob)
    assert getattr(restored, "_model", None) is not None
    assert restored._model is not scorer._model
    pd.testing.assert_frame_equal(restored.transform(df), complexity_out)


def test_trust_remote_code_is_false_by_default(record_loads, complexity_dir):
    complexity(complexity_dir).fit_transform(rows_frame().iloc[:2])
    assert record_loads["tokenizer"] and record_loads["model"]
    for kwargs in record_loads["tokenizer"] + record_loads["model"]:
        assert kwargs.get("trust_remote_code") is False


def test_model_is_loaded_in_float32_by_default(record_loads, complexity_dir):
    scorer = complexity(complexity_dir).fit(rows_frame().iloc[:2])
    scorer.transform(rows_frame().iloc[:2])
    assert [k.get("dtype") for k in record_loads["model"]] == [torch.float32]
    assert next(scorer._model.model.parameters()).dtype == torch.float32


def test_constructing_and_fitting_load_nothing(record_loads, complexity_dir):
    scorer = complexity(complexity_dir)
    assert scorer._model is None
    scorer.fit(rows_frame())
    assert scorer._model is None
    assert record_loads == {"tokenizer": [], "model": []}


def test_model_is_loaded_once_and_shared_by_equal_estimators(record_loads, complexity_dir):
    df = rows_frame().iloc[:3]
    first = complexity(complexity_dir).fit(df)
    first.transform(df)
    first.transform(df)
    second = complexity(complexity_dir, batch_size=2).fit(df)
    second.transform(df)
    third = clone(first).fit(df)
    third.transform(df)
    assert len(record_loads["model"]) == 1
    assert len(record_loads["tokenizer"]) == 1
    assert first._model is second._model is third._model
