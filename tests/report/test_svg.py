"""The inline-SVG charts: axes that cover the data, escaped labels."""

from __future__ import annotations

import re

import numpy as np
import pytest

from skdeita.report import _svg


@pytest.mark.parametrize(
    ("lo", "hi"), [(0.0, 0.9), (-1.2, 0.55), (3.0, 3.0), (1e-4, 2e-4), (0.0, 15293.0)]
)
def test_ticks_cover_the_range_in_round_steps(lo, hi):
    ticks = _svg.nice_ticks(lo, hi)
    assert ticks[0] <= lo and ticks[-1] >= hi
    steps = np.diff(ticks)
    assert np.allclose(steps, steps[0]) and 2 <= len(ticks) <= 12


def test_labels_are_escaped():
    svg = _svg.line_chart(
        np.array([0.0, 1.0]),
        [("<b>kept</b>", np.array([1.0, 2.0]), "#000")],
        "a < b",
        "x & y",
        "rows",
        marks=[(0.5, "<i>", "#111")],
    )
    assert "<b>" not in svg and "<i>" not in svg
    assert "&lt;b&gt;kept&lt;/b&gt;" in svg and "x &amp; y" in svg


def test_every_point_lies_inside_the_plot_area():
    xy = np.random.default_rng(0).normal(size=(200, 2)) * 3
    svg = _svg.scatter(xy, [("all", np.ones(200, dtype=bool), "#000")], "map")
    cx = np.array([float(v) for v in re.findall(r'cx="([-\d.]+)"', svg)])
    cy = np.array([float(v) for v in re.findall(r'cy="([-\d.]+)"', svg)])
    assert len(cx) == 200
    assert cx.min() >= 64 - 1e-6 and cx.max() <= 640 - 16 + 1e-6
    assert cy.min() >= 30 - 1e-6 and cy.max() <= 440 - 46 + 1e-6


def test_a_histogram_of_no_values_says_so():
    svg = _svg.histogram(np.array([np.nan]), np.array([]), "t", "x")
    assert "no values" in svg
