"""The plots render (Agg) and draw what they say."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skdeita import DeitaSelector
from skdeita.plotting import plot_selection_map, plot_threshold_curve

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")


def frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(6, 5))
    emb = centers[rng.integers(0, 6, n)] + 0.2 * rng.normal(size=(n, 5))
    return pd.DataFrame(
        {
            "embedding": list(emb),
            "evol_instruction_score": rng.uniform(1, 6, n),
            "evol_response_score": rng.uniform(1, 6, n),
        }
    )


def test_selection_map_draws_kept_and_dropped(tmp_path):
    out = DeitaSelector(data_budget=20, diversity_threshold=0.0, output="annotate").fit_transform(
        frame()
    )
    ax = plot_selection_map(out)
    dropped, kept = ax.collections[:2]
    assert len(kept.get_offsets()) == 20 and len(dropped.get_offsets()) == 100
    ax.figure.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 10_000


def test_selection_map_needs_annotated_output():
    out = DeitaSelector(data_budget=5).fit_transform(frame())
    with pytest.raises(ValueError, match="deita_selected"):
        plot_selection_map(out)


def test_threshold_curve_counts_kept_rows_per_threshold(tmp_path):
    df = frame()
    thresholds = [0.0, 0.1, 1.0]
    ax = plot_threshold_curve(df, DeitaSelector(data_budget=30), thresholds)
    kept_line = ax.lines[0]
    expected = [
        len(DeitaSelector(data_budget=30, diversity_threshold=t).fit_transform(df))
        for t in thresholds
    ]
    assert list(kept_line.get_ydata()) == expected
    assert ax.lines[1].get_ydata()[0] == 30  # the budget line
    ax.figure.savefig(tmp_path / "curve.png")
