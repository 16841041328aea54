"""The report page: content, escaping, settings, sampling, size."""

from __future__ import annotations

import html
import json
import re

import numpy as np
import pandas as pd
import pytest

from skdeita.report import report_html, write_report

from .conftest import SCRIPT, annotate_by_loop, make_pool


def _page(frame, **kwargs):
    kwargs.setdefault("diversity_threshold", 0.1)
    return report_html(frame, **kwargs)


def test_counts_per_outcome_are_on_the_page(annotated):
    page = _page(annotated, data_budget=120)
    counts = annotated["deita_status"].value_counts()
    for status, label in [
        ("kept", "kept"),
        ("blocked", "blocked"),
        ("over_budget", "over budget"),
        ("excluded", "excluded"),
    ]:
        row = re.search(rf"{label}</td><td class=\"num\">([\d,]+)</td>", page)
        assert row is not None, label
        assert int(row.group(1).replace(",", "")) == counts.get(status, 0)
    assert counts["excluded"] == 2


def test_script_text_is_shown_escaped_and_nothing_can_run(annotated):
    page = _page(annotated)
    assert "<script" not in page.lower()
    assert html.escape(SCRIPT) in page  # in the closest-pairs table
    assert "default-src 'none'" in page  # the CSP forbids scripts and requests
    assert not re.search(r"(src|href)=\"(?!data:)", page)


def test_labels_column_names_and_manifest_are_escaped(annotated):
    frame = annotated.rename(index={"row-4": "<b>row-4</b>"}, columns={"response": "re<sp>"})
    frame["deita_blocked_by"] = frame["deita_blocked_by"].replace("row-4", "<b>row-4</b>")
    manifest = {"command": ["skdeita", "</pre><script>alert(1)</script>"]}
    page = _page(frame, manifest=manifest, text_cols=["instruction", "re<sp>"])
    assert "<b>" not in page and "<sp>" not in page and "<script" not in page
    assert "&lt;b&gt;row-4&lt;/b&gt;" in page
    assert "&lt;/pre&gt;&lt;script&gt;" in page


def test_a_pool_is_selected_first_with_the_given_settings(pool, annotated):
    with pytest.raises(ValueError, match="no score"):
        _page(pool, data_budget=120)  # the selector's own rule: missing scores raise
    scored = pool.dropna(subset=["evol_instruction_score"])
    page = _page(scored, data_budget=120)
    expected = annotate_by_loop(scored, budget=120, threshold=0.1)
    counts = expected["deita_status"].value_counts()
    assert f'kept</td><td class="num">{counts["kept"]:,}<' in page
    assert f'blocked</td><td class="num">{counts["blocked"]:,}<' in page
    assert "The input is a pool" in page


def test_settings_come_from_the_call_then_the_manifest_then_defaults(annotated):
    manifest = {
        "parameters": {
            "selection": {
                "estimator": "DeitaSelector",
                "data_budget": 120,
                "diversity_threshold": 0.1,
                "neighbors": "selected",
            }
        }
    }
    page = _page(annotated.drop(columns=[]), manifest=manifest, diversity_threshold=None)
    assert re.search(r"budget</th><td>120</td><td class=\"note\">manifest", page)
    assert re.search(r"distance metric</th><td>cosine</td><td class=\"note\">default", page)
    page = _page(annotated, manifest=manifest, diversity_threshold=0.2)
    assert re.search(r"diversity threshold</th><td>0.2</td><td class=\"note\">given", page)


def test_budget_is_inferred_when_rows_were_left_over_budget(annotated):
    page = report_html(annotated, threshold_curve=False)
    assert re.search(r"budget</th><td>120</td><td class=\"note\">inferred", page)


def test_threshold_curve_marks_the_chosen_threshold_and_agrees_with_the_table(annotated):
    from skdeita import threshold_table

    page = _page(annotated, data_budget=120, diversity_threshold=0.15)
    assert "chosen 0.15" in page and "DEITA sim. 0.9" in page
    rows = annotated[annotated.deita_status != "excluded"]
    table = threshold_table(rows, data_budget=120, diversity_threshold=0.15).table.set_index(
        "threshold"
    )
    bold = re.search(r'<tr style="font-weight:600">(.*?)</tr>', page).group(1)
    cells = re.findall(r'<td class="num">([^<]*)</td>', bold)
    assert cells[0] == "0.15"
    assert int(cells[1].replace(",", "")) == table.loc[0.15, "kept"]
    assert int(cells[2].replace(",", "")) == table.loc[0.15, "blocked"]


def test_big_pools_are_sampled_on_the_map_and_the_page_says_so(annotated):
    page = _page(annotated, max_map_points=100, threshold_curve=False)
    fig = re.search(r'<figure id="fig-map".*?</figure>', page, re.S).group(0)
    assert fig.count("<circle") == 100
    assert "A sample of 100 of 400 rows" in fig
    kept_shown = len(re.findall(r"\(kept\)</title>", fig))
    assert kept_shown == 50  # kept rows fill up to half of the sample


def test_page_size_does_not_grow_with_the_pool():
    sizes = []
    for n in (2_000, 20_000):
        frame = make_pool(n=n, d=4)
        frame = frame.dropna(subset=["evol_instruction_score"])
        page = _page(frame, data_budget=300, threshold_curve=False, max_map_points=1000)
        sizes.append(len(page))
    assert sizes[1] < 1.1 * sizes[0]


def test_manifest_is_shown_whole(annotated):
    manifest = {"skdeita_manifest": 1, "outcomes": {"kept": 120}, "note": "ünïcode"}
    page = _page(annotated, manifest=manifest)
    shown = re.search(r"<pre>(.*?)</pre>", page, re.S).group(1)
    assert json.loads(html.unescape(shown)) == manifest


def test_write_report_is_atomic_and_checks_the_folder(annotated, tmp_path):
    path = write_report(annotated, tmp_path / "r.html", threshold_curve=False)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]
    with pytest.raises(ValueError, match="does not exist"):
        write_report(annotated, tmp_path / "nope" / "r.html")


def test_bad_settings_and_text_columns_are_named(annotated):
    with pytest.raises(ValueError, match="text_cols names \\['nope'\\]"):
        report_html(annotated, text_cols=["nope"])
    with pytest.raises(ValueError, match="distance_metric"):
        report_html(annotated, distance_metric="nope")
    bad = annotated.assign(deita_status=annotated["deita_status"].replace("kept", "KEPT"))
    with pytest.raises(ValueError, match="'KEPT'"):
        report_html(bad)


def test_per_turn_scores_are_averaged_per_row():
    from skdeita.report._sections import _per_row

    values = _per_row(pd.Series([[1.0, 3.0], 4.0, None, [2.0]], dtype=object))
    np.testing.assert_array_equal(values, [2.0, 4.0, np.nan, 2.0])


def test_a_selection_against_reference_rows_is_said_on_the_page(annotated):
    manifest = {
        "parameters": {
            "selection": {"estimator": "DeitaSelector", "reference": {"dataframe": {"rows": 3}}}
        }
    }
    page = _page(annotated, manifest=manifest, threshold_curve=False)
    assert "made against reference rows" in page
    assert "made against reference rows" not in _page(annotated, threshold_curve=False)
