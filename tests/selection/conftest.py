"""Shared data for the selection edge cases: one small pool, selected through
deita_select or DeitaSelector with the same parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd

from skdeita import DeitaSelector, deita_select

_EMB = np.array(
    [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]]
)
_SCORES = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
_LABELS = ["a", "b", "c", "d", "e"]


def _selection_frame(emb=None, instruction=None, response=None) -> pd.DataFrame:
    emb = _EMB if emb is None else emb
    return pd.DataFrame(
        {
            "embedding": pd.Series([r for r in emb], dtype=object, index=_LABELS),
            "evol_instruction_score": pd.Series(
                _SCORES if instruction is None else instruction, index=_LABELS
            ),
            "evol_response_score": pd.Series(
                np.ones(5) if response is None else response, index=_LABELS
            ),
        }
    )


def _select_with(target: str, params=None, emb=None, scores=None, response=None):
    """Run the function or the estimator on the same data and parameters."""
    params = dict(params or {})
    if target == "function":
        return deita_select(
            _EMB if emb is None else emb, _SCORES if scores is None else scores, **params
        )
    frame = _selection_frame(emb, scores, response)
    return DeitaSelector(show_progress_bar=False, **params).fit_transform(frame)
